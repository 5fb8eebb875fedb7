"""Geometry for the synthetic EM generator: neurite tubes, smooth fields, the cell diagram.

Neurites are tubes running through z: each has an in-plane centre and a radius per section (nm).
Every section is partitioned by a weighted Voronoi diagram of the tube discs (score
``(|A (p - c)| - r) / r**0.5``, with A stretching obliquely cut profiles), evaluated on smoothly
warped pixel coordinates so that membranes are wavy rather than straight. Every score is 0 on its
own disc's rim, so tangent discs meet at their tangent point: synapse sites are built from discs
(a bouton with small post profiles around it) that the diagram keeps intact.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: Centre of the dummy tubes that pad candidate lists (far outside any volume).
_FAR_NM = 1.0e6
#: Scores are ``(|A (p - c)| - r) / r**_GAMMA``: 0 is additively weighted (straight-ish
#: borders), 1 multiplicatively weighted (round small profiles that bulge into large ones).
_GAMMA = 0.5


@dataclass
class TubeSet:
    """Tubes under construction: per-tube rows of per-section centre, radius and activity.

    All positions are in nm in the warped frame; ``cy[k, z]`` is the centre of tube ``k`` in
    section ``z``.
    """

    n_sections: int
    cy: list[np.ndarray] = field(default_factory=list)
    cx: list[np.ndarray] = field(default_factory=list)
    r: list[np.ndarray] = field(default_factory=list)
    active: list[np.ndarray] = field(default_factory=list)
    brightness: list[float] = field(default_factory=list)
    elongation: list[float] = field(default_factory=list)
    orientation: list[float] = field(default_factory=list)

    def add(
        self,
        cy: np.ndarray,
        cx: np.ndarray,
        r: np.ndarray,
        active: np.ndarray,
        brightness: float,
        elongation: float = 1.0,
        orientation: float = 0.0,
    ) -> int:
        """Append one tube and return its index.

        ``elongation`` >= 1 stretches the tube's profile along the in-plane direction
        ``orientation`` (radians), as for a neurite cut obliquely.
        """
        self.cy.append(np.asarray(cy, dtype=np.float64))
        self.cx.append(np.asarray(cx, dtype=np.float64))
        self.r.append(np.asarray(r, dtype=np.float64))
        self.active.append(np.asarray(active, dtype=bool))
        self.brightness.append(float(brightness))
        self.elongation.append(float(elongation))
        self.orientation.append(float(orientation))
        return len(self.cy) - 1

    def arrays(self) -> TubeArrays:
        """Stack the tubes into arrays."""
        return TubeArrays(
            cy=np.stack(self.cy),
            cx=np.stack(self.cx),
            r=np.stack(self.r),
            active=np.stack(self.active),
            brightness=np.asarray(self.brightness, dtype=np.float32),
            elongation=np.asarray(self.elongation),
            orientation=np.asarray(self.orientation),
        )


@dataclass
class TubeArrays:
    """Tubes as arrays: (K, Z) centres, radii and activity; (K,) per-tube properties."""

    cy: np.ndarray
    cx: np.ndarray
    r: np.ndarray
    active: np.ndarray
    brightness: np.ndarray
    elongation: np.ndarray
    orientation: np.ndarray


def pack_discs(
    rng: np.random.Generator,
    lo: tuple[float, float],
    hi: tuple[float, float],
    radius_nm: float,
    spread: float,
    overlap: float = 0.2,
    tile_nm: float = 2500.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random sequential packing of discs with log-normal radii in a rectangle.

    As many radii are drawn as would tile the area; they are placed largest first, each at
    the first of a few random spots where it overlaps no placed disc by more than
    ``overlap``; those that find no spot are dropped, so small discs fill the gaps. Large
    rectangles are packed tile by tile so the cost stays linear in the area.

    Returns:
        ``(cy, cx, r)`` arrays in nm.
    """
    ys = np.arange(lo[0], hi[0], tile_nm)
    xs = np.arange(lo[1], hi[1], tile_nm)
    out_y: list[np.ndarray] = []
    out_x: list[np.ndarray] = []
    out_r: list[np.ndarray] = []
    r_min, r_max = 0.3 * radius_nm, 5.0 * radius_nm
    mean_area = np.pi * radius_nm**2 * np.exp(2 * spread**2)
    tries = 32
    for y0 in ys:
        for x0 in xs:
            y1, x1 = min(y0 + tile_nm, hi[0]), min(x0 + tile_nm, hi[1])
            n_draw = int(1.2 * (y1 - y0) * (x1 - x0) / mean_area) + 4
            radii = np.sort(
                np.clip(radius_nm * np.exp(spread * rng.standard_normal(n_draw)), r_min, r_max)
            )[::-1]
            cy = np.empty(n_draw)
            cx = np.empty(n_draw)
            cr = np.empty(n_draw)
            n = 0
            for rad in radii:
                py = rng.uniform(y0, y1, tries)
                px = rng.uniform(x0, x1, tries)
                j = 0
                if n:
                    dist = np.hypot(py[:, None] - cy[None, :n], px[:, None] - cx[None, :n])
                    ok = np.all(dist >= (1.0 - overlap) * (rad + cr[None, :n]), axis=1)
                    hit = np.flatnonzero(ok)
                    if hit.size == 0:
                        continue
                    j = int(hit[0])
                cy[n], cx[n], cr[n] = py[j], px[j], rad
                n += 1
            out_y.append(cy[:n])
            out_x.append(cx[:n])
            out_r.append(cr[:n])
    return np.concatenate(out_y), np.concatenate(out_x), np.concatenate(out_r)


def _gauss_matrix(n_out: int, step_out: float, corr: float, pad: float) -> np.ndarray:
    """Rows: Gaussian weights from a coarse grid (spacing corr/2) to ``n_out`` fine points."""
    fine = np.arange(n_out) * step_out
    g = corr / 2.0
    coarse = np.arange(-pad - 2 * corr, fine[-1] + pad + 2 * corr + g, g)
    w = np.exp(-0.5 * ((fine[:, None] - coarse[None, :]) / corr) ** 2)
    w /= np.sqrt((w**2).sum(axis=1, keepdims=True))
    return w


def smooth_field(
    rng: np.random.Generator,
    shape: tuple[int, int, int],
    voxel_nm: tuple[float, float, float],
    corr_nm: float,
    corr_z_nm: float,
) -> np.ndarray:
    """Smooth Gaussian random field with unit variance, float32 of ``shape``.

    White noise on a coarse grid is spread to the voxels by separable Gaussian weights (matrix
    products), so smoothing and upsampling cost about as much as writing the output.
    """
    wz = _gauss_matrix(shape[0], voxel_nm[0], corr_z_nm, 0.0)
    wy = _gauss_matrix(shape[1], voxel_nm[1], corr_nm, 0.0)
    wx = _gauss_matrix(shape[2], voxel_nm[2], corr_nm, 0.0)
    n_z, n_y, n_x = shape
    ky, kx = wy.shape[1], wx.shape[1]
    noise = rng.standard_normal((wz.shape[1], ky * kx))
    coarse = (wz @ noise).astype(np.float32).reshape(n_z, ky, kx)  # (Z, ky, kx)
    # two plain 2D products (BLAS): over y, then over x
    step = wy.astype(np.float32) @ coarse.transpose(1, 0, 2).reshape(ky, n_z * kx)
    out = step.reshape(n_y * n_z, kx) @ wx.T.astype(np.float32)
    return np.ascontiguousarray(out.reshape(n_y, n_z, n_x).transpose(1, 0, 2))


@dataclass
class Diagram:
    """Per-voxel result of the cell diagram.

    Attributes:
        k1: index of the tube owning each voxel (int32).
        k2: the runner-up tube (the neighbour across the nearest membrane).
        d12: distance (nm) to the k1/k2 boundary.
        d13: distance (nm) to the boundary with the third tube (small at junctions).
    """

    k1: np.ndarray
    k2: np.ndarray
    d12: np.ndarray
    d13: np.ndarray


def _section_diagram(
    wy: np.ndarray,
    wx: np.ndarray,
    tubes: tuple[np.ndarray, ...],
    block: int,
    chunk: int = 48,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Weighted Voronoi of one section; returns local indices k1, k2, d12, d13.

    ``tubes`` holds per-tube ``(cy, cx, r, q, sin, cos)``: centre, radius, inverse elongation
    and the direction of elongation. The score of a tube at p is ``(|A (p - c)| - r) / r**g``
    where A shrinks the elongation axis by q; the smallest score wins. Every score is 0 on its
    own disc's rim, so discs that touch meet at their tangent point whatever ``g``.
    """
    h, w = wy.shape
    hb, wb = -(-h // block), -(-w // block)
    pad = ((0, hb * block - h), (0, wb * block - w))
    nb = hb * wb

    def to_blocks(a: np.ndarray) -> np.ndarray:
        tiles = np.pad(a, pad, mode="edge").reshape(hb, block, wb, block).transpose(0, 2, 1, 3)
        return tiles.reshape(nb, block * block)

    by = to_blocks(wy)
    bx = to_blocks(wx)
    n_real = tubes[0].size
    far = (_FAR_NM, -_FAR_NM, 1.0, 1.0, 0.0, 1.0)
    cy, cx, r, q, sn, cs = (
        np.concatenate([a, np.full(3, f)]).astype(np.float32)
        for a, f in zip(tubes, far, strict=True)
    )
    r = np.maximum(r, 1.0)
    inv_w = (r**-_GAMMA).astype(np.float32)
    p0y = by.mean(axis=1)
    p0x = bx.mean(axis=1)
    rho = np.sqrt(((by - p0y[:, None]) ** 2 + (bx - p0x[:, None]) ** 2).max(axis=1))
    dist = np.hypot(p0y[:, None] - cy[None, :], p0x[:, None] - cx[None, :])
    lower = (np.maximum(dist - rho[:, None], 0.0) * q[None, :] - r[None, :]) * inv_w[None, :]
    upper = (dist + rho[:, None] - r[None, :]) * inv_w[None, :]
    thr = np.partition(upper, 2, axis=1)[:, 2]
    cand = lower <= thr[:, None]
    counts = cand.sum(axis=1)
    # candidates first in each row; blocks sorted by count and scored in chunks, so that
    # padding to the longest candidate list of a chunk wastes little
    order = np.argsort(~cand, axis=1, kind="stable")
    by_count = np.argsort(counts, kind="stable")
    out = np.empty((2, nb, block * block), np.float32)
    out_k = np.empty((2, nb, block * block), np.int32)

    # scores are affine in the pixel coordinates before the norm: precompute per tube
    au, bu = q * sn, q * cs
    cu = -(au * cy + bu * cx)
    cv = -(cs * cy - sn * cx)
    for start in range(0, nb, chunk):
        rows = by_count[start : start + chunk]
        n_cand = int(counts[rows].max())
        valid = np.take_along_axis(cand[rows], order[rows, :n_cand], axis=1)
        idx = np.where(valid, order[rows, :n_cand], n_real).astype(np.int32)
        py, px = by[rows][:, None, :], bx[rows][:, None, :]
        kk = idx[:, :, None]
        u = py * au[kk] + px * bu[kk] + cu[kk]
        v = py * cs[kk] - px * sn[kk] + cv[kk]
        score = (np.sqrt(u * u + v * v) - r[kk]) * inv_w[kk]
        picks = []
        best = []
        for _ in range(3):
            a = score.argmin(axis=1)[:, None, :]
            picks.append(np.take_along_axis(idx, a[:, 0], axis=1))
            best.append(np.take_along_axis(score, a, axis=1)[:, 0])
            np.put_along_axis(score, a, np.inf, axis=1)
        # distance to a border ~ score gap / gradient gap; near a border the two gradients
        # point away from each other, so their difference is about the sum of the weights
        w1, w2, w3 = (inv_w[k] for k in picks)
        out_k[0, rows] = picks[0]
        out_k[1, rows] = picks[1]
        out[0, rows] = (best[1] - best[0]) / (w1 + w2)
        out[1, rows] = (best[2] - best[0]) / (w1 + w3)
    k1, k2 = out_k
    d12, d13 = out[0], out[1]

    def unblock(a: np.ndarray) -> np.ndarray:
        full = a.reshape(hb, wb, block, block).transpose(0, 2, 1, 3).reshape(hb * block, -1)
        return full[:h, :w]

    return unblock(k1), unblock(k2), unblock(d12), unblock(d13)


def cell_diagram(
    wy: np.ndarray,
    wx: np.ndarray,
    tubes: TubeArrays,
    block: int = 16,
) -> Diagram:
    """Partition every section among the active tubes.

    Args:
        wy, wx: (Z, Y, X) warped pixel coordinates in nm.
        tubes: the tubes (centres, radii, activity, elongation).
        block: pixel block size for candidate pruning.
    """
    n_z = wy.shape[0]
    k1 = np.empty(wy.shape, np.int32)
    k2 = np.empty(wy.shape, np.int32)
    d12 = np.empty(wy.shape, np.float32)
    d13 = np.empty(wy.shape, np.float32)
    cy, cx, r = tubes.cy, tubes.cx, tubes.r
    q = 1.0 / tubes.elongation
    sn, cs = np.sin(tubes.orientation), np.cos(tubes.orientation)
    big = float((r * tubes.elongation[:, None]).max()) + 400.0
    for z in range(n_z):
        y_lo, y_hi = float(wy[z].min()) - big, float(wy[z].max()) + big
        x_lo, x_hi = float(wx[z].min()) - big, float(wx[z].max()) + big
        near = (
            tubes.active[:, z]
            & (cy[:, z] > y_lo)
            & (cy[:, z] < y_hi)
            & (cx[:, z] > x_lo)
            & (cx[:, z] < x_hi)
        )
        ids = np.flatnonzero(near).astype(np.int32)
        params = (cy[ids, z], cx[ids, z], r[ids, z], q[ids], sn[ids], cs[ids])
        a1, a2, e12, e13 = _section_diagram(wy[z], wx[z], params, block)
        # dummies (index >= len(ids)) only win where no tube exists at all: map them to -1
        lut = np.concatenate([ids, np.full(3, -1, np.int32)])
        k1[z] = lut[a1]
        k2[z] = lut[a2]
        d12[z] = e12
        d13[z] = e13
    return Diagram(k1=k1, k2=k2, d12=d12, d13=d13)


def add_background_tubes(
    tubes: TubeSet,
    rng: np.random.Generator,
    shape: tuple[int, int, int],
    voxel_nm: tuple[float, float, float],
    radius_nm: float,
    spread: float,
    tilt: float,
) -> np.ndarray:
    """Fill the volume (and a margin around it) with wandering neurite tubes.

    Returns:
        Indices of the tubes added.
    """
    n_z, n_y, n_x = shape
    z_nm = np.arange(n_z) * voxel_nm[0]
    dz = z_nm - z_nm.mean()
    half = float(np.abs(dz).max())
    pad = min(250.0 + 2.0 * tilt * half + 2.0 * radius_nm, 4000.0)
    ext_y, ext_x = n_y * voxel_nm[1], n_x * voxel_nm[2]
    cy0, cx0, r0 = pack_discs(rng, (-pad, -pad), (ext_y + pad, ext_x + pad), radius_nm, spread)
    n = r0.size
    bundle = 0.6 * tilt * rng.standard_normal(2)
    vel = bundle[None, :] + 0.8 * tilt * rng.standard_normal((n, 2))
    # a few neurites run steeply through the sections: long, fragmentary profiles
    steep = rng.random(n) < 0.12
    heading = rng.uniform(0.0, 2 * np.pi, n)
    speed = rng.uniform(0.8, 2.2, n)
    vel[steep] = (speed[:, None] * np.stack([np.sin(heading), np.cos(heading)], axis=1))[steep]
    elong = np.sqrt(1.0 + (vel**2).sum(axis=1)) * (1.0 + 0.25 * np.abs(rng.standard_normal(n)))
    orient = np.arctan2(vel[:, 0], vel[:, 1])
    amp = rng.uniform(5.0, 35.0, (n, 2))
    period = rng.uniform(400.0, 1600.0, (n, 2))
    phase = rng.uniform(0.0, 2 * np.pi, (n, 2))
    r_period = rng.uniform(300.0, 1200.0, n)
    r_phase = rng.uniform(0.0, 2 * np.pi, n)
    dark = rng.random(n) < 0.08
    bright = np.clip(1.0 + 0.07 * rng.standard_normal(n), 0.8, 1.25) * np.where(dark, 0.85, 1.0)
    partial = rng.random(n) < 0.15
    starts = rng.integers(0, n_z, n)
    lengths = rng.integers(3, max(4, n_z + 1), n)
    first = len(tubes.cy)
    for k in range(n):
        wav = amp[k][:, None] * (
            np.sin(2 * np.pi * dz[None, :] / period[k][:, None] + phase[k][:, None])
            - np.sin(phase[k])[:, None]
        )
        cy = cy0[k] + vel[k, 0] * dz + wav[0]
        cx = cx0[k] + vel[k, 1] * dz + wav[1]
        r = r0[k] * (1.0 + 0.12 * np.sin(2 * np.pi * dz / r_period[k] + r_phase[k]))
        act = np.ones(n_z, bool)
        if partial[k]:
            act[:] = False
            act[starts[k] : starts[k] + lengths[k]] = True
        tubes.add(cy, cx, r, act, bright[k], elong[k], orient[k])
    return np.arange(first, first + n)
