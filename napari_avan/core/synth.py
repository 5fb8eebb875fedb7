"""Synthetic EM volumes with exact ground truth (image, segmentation, clefts, partners).

The generator packs neurites that run roughly along z (tilted, wandering tubes whose
cross-sections are a weighted Voronoi partition with warped borders), draws dark membranes
of a physical thickness, and places synapses on contacts between neighbouring cells:

- the cleft label is a thin sheet along the contact, symmetric about the membrane, so the
  mask alone cannot tell pre from post;
- the presynaptic side carries a cloud of ~40 nm vesicles and (optionally) a T-bar-like
  dark density; the postsynaptic side a weaker density (PSD);
- polyadic synapses have one pre and 2 to 4 posts around one release site.

Distractors: mitochondria, vesicle clouds without a cleft, dark contacts without vesicles,
and the membrane junctions the packing makes anyway. Noise, in-plane blur, per-section
intensity drift and optional missing or defective sections follow. Physical sizes are in
nm, so 40x4x4 and 50x4.6x4.6 nm volumes both look right. Every voxel belongs to a cell
(the segmentation has no background). Everything is drawn from one seeded generator.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import numpy as np

from napari_avan.types import AvanInputError, Sample, check_voxel_size

GENERATOR = "napari-avan synth"
GENERATOR_VERSION = 1


@dataclass(frozen=True)
class SynthConfig:
    """Options of :func:`synthesize`; physical sizes in nm, densities per cubic micrometre.

    Attributes:
        shape: (z, y, x) voxels.
        voxel_size_nm: (z, y, x) nm.
        polyadic: one presynaptic and ``n_posts`` postsynaptic partners per cleft.
        n_synapses: number of synapses; None scales ``synapse_density`` with the volume
            (at least 2).
        n_posts: inclusive range of posts per polyadic cleft.
        cell_diameter_nm: typical neurite cross-section diameter.
        cell_tilt: how far neurites lean from z (nm in-plane per nm in z, sd).
        membrane_thickness_nm: dark membrane band (both leaflets and the gap).
        cleft_radius_nm: in-plane radius of a cleft around its release site.
        cleft_thickness_nm: cleft sheet width across the membrane (symmetric).
        cleft_depth_nm: inclusive range of the cleft's extent in z.
        vesicle_diameter_nm: synaptic vesicle diameter.
        vesicles_per_synapse: inclusive range of vesicles per release site.
        t_bar: draw a dark presynaptic density at each release site.
        mitochondria_density, decoy_vesicle_density, decoy_contact_density: distractors.
        noise_sd: Gaussian noise (grey levels).
        blur_sigma_nm: in-plane blur.
        drift: sd of the per-section gain and offset change (relative).
        missing_section_prob, defect_section_prob: chance that a section is blank, or
            carries a dark fold.
    """

    shape: tuple[int, int, int] = (32, 256, 256)
    voxel_size_nm: tuple[float, float, float] = (40.0, 4.0, 4.0)
    polyadic: bool = False
    n_synapses: int | None = None
    synapse_density: float = 6.0
    n_posts: tuple[int, int] = (2, 4)
    cell_diameter_nm: float = 260.0
    cell_tilt: float = 0.3
    membrane_thickness_nm: float = 30.0
    cleft_radius_nm: float = 110.0
    cleft_thickness_nm: float = 24.0
    cleft_depth_nm: tuple[float, float] = (80.0, 160.0)
    vesicle_diameter_nm: float = 40.0
    vesicles_per_synapse: tuple[int, int] = (30, 60)
    t_bar: bool = True
    mitochondria_density: float = 3.0
    decoy_vesicle_density: float = 1.5
    decoy_contact_density: float = 1.5
    noise_sd: float = 24.0
    blur_sigma_nm: float = 4.0
    drift: float = 0.03
    missing_section_prob: float = 0.0
    defect_section_prob: float = 0.0

    def validated(self) -> SynthConfig:
        """Return a copy with types normalised, or raise AvanInputError naming the option."""
        try:
            shape = tuple(int(s) for s in self.shape)
        except (TypeError, ValueError) as err:
            raise AvanInputError(f"shape {self.shape!r} is not three integers Z,Y,X") from err
        if len(shape) != 3 or shape[0] < 1 or shape[1] < 32 or shape[2] < 32:
            raise AvanInputError(
                f"shape {self.shape!r} is too small: give Z,Y,X with Z >= 1 and Y, X >= 32"
            )
        voxel = check_voxel_size(self.voxel_size_nm)
        lo, hi = (int(v) for v in self.n_posts)
        if not 1 <= lo <= hi:
            raise AvanInputError(f"n_posts {self.n_posts!r} must be a range like (2, 4)")
        if self.n_synapses is not None and int(self.n_synapses) < 0:
            raise AvanInputError("n_synapses must be zero or more")
        for name in (
            "cell_diameter_nm",
            "membrane_thickness_nm",
            "cleft_radius_nm",
            "cleft_thickness_nm",
            "vesicle_diameter_nm",
        ):
            if not float(getattr(self, name)) > 0:
                raise AvanInputError(f"{name} must be positive, got {getattr(self, name)!r}")
        for name in ("missing_section_prob", "defect_section_prob"):
            if not 0.0 <= float(getattr(self, name)) <= 1.0:
                raise AvanInputError(f"{name} must lie in [0, 1], got {getattr(self, name)!r}")
        return replace(
            self,
            shape=(shape[0], shape[1], shape[2]),
            voxel_size_nm=voxel,
            n_posts=(lo, hi),
        )


def synthesize(config: SynthConfig | None = None, *, seed: int = 0, **overrides: Any) -> Sample:
    """Generate a synthetic EM volume with exact ground truth.

    Args:
        config: options; defaults to :class:`SynthConfig()`.
        seed: seed of the random generator (same seed, same volume).
        **overrides: fields of :class:`SynthConfig` to replace, e.g. ``shape=(16, 128, 128)``.

    Returns:
        A :class:`~napari_avan.types.Sample`: image uint8, segmentation and clefts uint32,
        partners (``cleft_id, pre_id, post_id``, int64), voxel size and provenance.
    """
    import pandas as pd

    base = config or SynthConfig()
    known = {f.name for f in fields(SynthConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise AvanInputError(f"unknown synth option(s) {unknown}; known: {sorted(known)}")
    cfg = replace(base, **overrides).validated()
    rng = np.random.default_rng(seed)
    gen = _Generator(cfg, rng)
    gen.build_cells()
    rows = gen.place_synapses()
    gen.place_distractors()
    image = gen.render()
    partners = pd.DataFrame(rows, columns=["cleft_id", "pre_id", "post_id"], dtype=np.int64)
    attrs = {
        "generator": GENERATOR,
        "generator_version": GENERATOR_VERSION,
        "seed": int(seed),
        "config": _json_safe(asdict(cfg)),
    }
    return Sample(
        image=image,
        segmentation=gen.labels,
        clefts=gen.clefts,
        partners=partners,
        voxel_size_nm=cfg.voxel_size_nm,
        attrs=attrs,
    )


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [_json_safe(v) for v in value]
    return value


def _smooth_field(rng: np.random.Generator, shape: tuple[int, ...], cells: tuple[int, ...]) -> Any:
    """A smooth random field in [-1, 1]-ish: coarse noise upsampled linearly."""
    from scipy import ndimage

    coarse = rng.standard_normal(tuple(max(2, c) for c in cells)).astype(np.float32)
    zoom = [s / c for s, c in zip(shape, coarse.shape, strict=True)]
    out = ndimage.zoom(coarse, zoom, order=1, mode="nearest", grid_mode=True)
    return out[tuple(slice(0, s) for s in shape)]


def _disk(radius_px: float) -> np.ndarray:
    r = max(1, math.ceil(radius_px))
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    return (yy * yy + xx * xx) <= radius_px * radius_px


class _Generator:
    """Holds the arrays while a volume is built; one instance per call."""

    def __init__(self, cfg: SynthConfig, rng: np.random.Generator) -> None:
        self.cfg = cfg
        self.rng = rng
        self.shape = cfg.shape
        self.vz, self.vy, self.vx = cfg.voxel_size_nm
        z, y, x = cfg.shape
        self.volume_um3 = z * self.vz * y * self.vy * x * self.vx / 1e9
        self.clefts = np.zeros(cfg.shape, np.uint32)
        # darkness layers added to the bright cytoplasm (grey levels to subtract)
        self.dark = np.zeros(cfg.shape, np.float32)
        self.sites: list[tuple[int, float, float]] = []  # (z, y_nm, x_nm) of used sites

    # ------------------------------------------------------------------ cells
    def build_cells(self) -> None:
        from scipy import ndimage

        cfg, rng = self.cfg, self.rng
        nz, ny, nx = self.shape
        height, width = ny * self.vy, nx * self.vx
        d = cfg.cell_diameter_nm
        pad = d
        # jittered hexagonal packing of neurite centres at the first section
        rows = math.ceil((height + 2 * pad) / (d * 0.866)) + 1
        cols = math.ceil((width + 2 * pad) / d) + 1
        gy, gx = np.mgrid[0:rows, 0:cols].astype(np.float64)
        cy = gy * d * 0.866 - pad
        cx = gx * d + (gy % 2) * d / 2 - pad
        centres = np.stack([cy.ravel(), cx.ravel()], 1)
        centres += rng.normal(0, 0.28 * d, centres.shape)
        k = len(centres)
        # each neurite leans and wanders as z increases
        tilt = rng.normal(0, cfg.cell_tilt, (k, 2))
        zs = np.arange(nz) * self.vz
        wander = np.cumsum(rng.normal(0, 0.04 * d, (nz, k, 2)), axis=0)
        paths = centres[None] + tilt[None] * zs[:, None, None] + wander  # (nz, k, 2) nm
        # power-diagram weights make cross-sections of different sizes
        weights = (rng.uniform(-0.35, 0.35, k) * d * d).astype(np.float32)

        # warped pixel coordinates, so that borders curve
        amp = 0.2 * d
        coarse = (
            max(2, nz // 4 + 1),
            max(2, int(height // (0.5 * d)) + 2),
            max(2, int(width // (0.5 * d)) + 2),
        )
        warp_y = _smooth_field(rng, self.shape, coarse) * amp
        warp_x = _smooth_field(rng, self.shape, coarse) * amp
        py = (np.arange(ny, dtype=np.float32) + 0.5) * self.vy
        px = (np.arange(nx, dtype=np.float32) + 0.5) * self.vx
        labels = np.empty(self.shape, np.int32)
        for z in range(nz):
            yy = py[:, None] + warp_y[z]
            xx = px[None, :] + warp_x[z]
            best = np.full((ny, nx), np.inf, np.float32)
            arg = np.zeros((ny, nx), np.int32)
            cz = paths[z].astype(np.float32)
            # only neurites near the field of view can win a pixel
            near = np.flatnonzero(
                (cz[:, 0] > -2 * d)
                & (cz[:, 0] < height + 2 * d)
                & (cz[:, 1] > -2 * d)
                & (cz[:, 1] < width + 2 * d)
            )
            for i in near:
                dist = (yy - cz[i, 0]) ** 2 + (xx - cz[i, 1]) ** 2 - weights[i]
                closer = dist < best
                best[closer] = dist[closer]
                arg[closer] = i
            labels[z] = arg
        # a neurite cut into several pieces in one section becomes separate segments
        # only across z-gaps; here ids are simply renumbered 1..N in order of appearance
        _, inverse = np.unique(labels, return_inverse=True)
        self.labels = (inverse.reshape(self.shape) + 1).astype(np.uint32)

        # in-plane distance (nm) to the nearest border between two cells
        border = np.zeros(self.shape, bool)
        lab = self.labels
        border[:, 1:, :] |= lab[:, 1:, :] != lab[:, :-1, :]
        border[:, :-1, :] |= lab[:, :-1, :] != lab[:, 1:, :]
        border[:, :, 1:] |= lab[:, :, 1:] != lab[:, :, :-1]
        border[:, :, :-1] |= lab[:, :, :-1] != lab[:, :, 1:]
        self.border_dist = np.empty(self.shape, np.float32)
        for z in range(nz):
            # border pixels sit half a pixel from the true border
            self.border_dist[z] = ndimage.distance_transform_edt(
                ~border[z], sampling=(self.vy, self.vx)
            ) + 0.5 * min(self.vy, self.vx)

    # ------------------------------------------------------------------ synapses
    def _site_candidates(self, z: int) -> np.ndarray:
        """(n, 2) pixel positions on borders in section z, away from the volume edge."""
        ny, nx = self.shape[1:]
        margin_y = int(self.cfg.cleft_radius_nm / self.vy) + 2
        margin_x = int(self.cfg.cleft_radius_nm / self.vx) + 2
        near = self.border_dist[z] <= 0.5 * min(self.vy, self.vx) + 1e-3
        near[:margin_y] = False
        near[ny - margin_y :] = False
        near[:, :margin_x] = False
        near[:, nx - margin_x :] = False
        return np.argwhere(near)

    def _far_from_sites(self, z: int, y: float, x: float, min_nm: float) -> bool:
        for sz, sy, sx in self.sites:
            dz = (sz - z) * self.vz
            if (dz * dz + (sy - y) ** 2 + (sx - x) ** 2) < min_nm * min_nm:
                return False
        return True

    def _local(self, z0: int, z1: int, cy: int, cx: int, r_nm: float) -> tuple[slice, ...]:
        ry = math.ceil(r_nm / self.vy) + 3
        rx = math.ceil(r_nm / self.vx) + 3
        ny, nx = self.shape[1:]
        return (
            slice(max(0, z0), min(self.shape[0], z1)),
            slice(max(0, cy - ry), min(ny, cy + ry + 1)),
            slice(max(0, cx - rx), min(nx, cx + rx + 1)),
        )

    def _interface_band(self, lab: np.ndarray, a: int, b: int, half_px: float) -> np.ndarray:
        """Voxels of a or b within ``half_px`` (in-plane) of the a-b contact."""
        from scipy import ndimage

        st = _disk(half_px)[None]
        in_a, in_b = lab == a, lab == b
        near_b = ndimage.binary_dilation(in_b, structure=st)
        near_a = ndimage.binary_dilation(in_a, structure=st)
        return (in_a & near_b) | (in_b & near_a)

    def place_synapses(self) -> list[tuple[int, int, int]]:
        cfg, rng = self.cfg, self.rng
        nz = self.shape[0]
        wanted = cfg.n_synapses
        if wanted is None:
            wanted = max(2, round(cfg.synapse_density * self.volume_um3))
        rows: list[tuple[int, int, int]] = []
        cleft_id = 0
        attempts = 0
        while cleft_id < wanted and attempts < 60 * max(1, wanted):
            attempts += 1
            depth_nm = rng.uniform(*cfg.cleft_depth_nm)
            n_sec = int(np.clip(round(depth_nm / self.vz), 1, nz))
            z0 = int(rng.integers(0, nz - n_sec + 1))
            zc = z0 + n_sec // 2
            cand = self._site_candidates(zc)
            if len(cand) == 0:
                continue
            cy, cx = cand[rng.integers(len(cand))]
            if not self._far_from_sites(zc, cy * self.vy, cx * self.vx, 2.6 * cfg.cleft_radius_nm):
                continue
            made = self._make_synapse(cleft_id + 1, z0, n_sec, int(cy), int(cx))
            if made is None:
                continue
            cleft_id += 1
            rows.extend(made)
            self.sites.append((zc, cy * self.vy, cx * self.vx))
        return rows

    def _make_synapse(
        self, cleft_id: int, z0: int, n_sec: int, cy: int, cx: int
    ) -> list[tuple[int, int, int]] | None:
        cfg, rng = self.cfg, self.rng
        zc = z0 + n_sec // 2
        r_nm = cfg.cleft_radius_nm
        sl = self._local(z0, z0 + n_sec, cy, cx, 2.5 * r_nm)
        lab = self.labels[sl]
        zl = zc - sl[0].start
        # in-plane distance (nm) of every local voxel to the release site
        yy = (np.arange(sl[1].start, sl[1].stop) - cy) * self.vy
        xx = (np.arange(sl[2].start, sl[2].stop) - cx) * self.vx
        rr = np.sqrt(yy[:, None] ** 2 + xx[None, :] ** 2)
        # the two cells meeting at the site
        ly, lx = cy - sl[1].start, cx - sl[2].start
        window = lab[zl, max(0, ly - 2) : ly + 3, max(0, lx - 2) : lx + 3]
        ids, _counts = np.unique(window, return_counts=True)
        if len(ids) < 2:
            return None
        pre = int(lab[zl, ly, lx])
        # neighbours of pre around the site in the central section, by contact length
        half_px = 0.5 * cfg.cleft_thickness_nm / self.vy
        poly_r = 1.6 * r_nm if cfg.polyadic else r_nm
        centre = lab[zl]
        neigh: dict[int, int] = {}
        from scipy import ndimage

        pre_near = ndimage.binary_dilation(centre == pre, structure=_disk(2.0)) & (rr < poly_r)
        others, n = np.unique(centre[pre_near & (centre != pre)], return_counts=True)
        for o, c in zip(others.tolist(), n.tolist(), strict=True):
            neigh[int(o)] = int(c)
        if not neigh:
            return None
        min_contact = max(4, int(0.35 * r_nm / self.vy))
        ranked = [o for o, c in sorted(neigh.items(), key=lambda t: -t[1]) if c >= min_contact]
        if cfg.polyadic:
            lo, hi = cfg.n_posts
            want = int(rng.integers(lo, hi + 1))
            if len(ranked) < lo:
                return None
            posts = ranked[:want]
            radius = poly_r
        else:
            if not ranked:
                return None
            # the post is the cell across the border at the chosen site if it qualifies
            site_ids = [int(i) for i in ids if int(i) != pre and int(i) in ranked]
            posts = [site_ids[0] if site_ids else ranked[0]]
            radius = r_nm
        # taper the sheet towards the cleft's first and last sections
        zrel = np.abs(np.arange(sl[0].start, sl[0].stop) - (z0 + (n_sec - 1) / 2.0))
        taper = 1.0 - 0.45 * (zrel / max(1.0, n_sec / 2.0)) ** 2
        disc = rr[None] <= radius * taper[:, None, None]
        mask = np.zeros(lab.shape, bool)
        kept: list[int] = []
        for post in posts:
            band = self._interface_band(lab, pre, post, max(1.0, half_px)) & disc
            if band[lab == pre].sum() < 3 or band[lab == post].sum() < 3:
                continue
            mask |= band
            kept.append(post)
        if cfg.polyadic and len(kept) < cfg.n_posts[0]:
            return None
        if not kept:
            return None
        target = self.clefts[sl]
        if np.any(target[mask]):
            return None
        target[mask] = cleft_id

        # image content: PSD on the posts, T-bar and vesicles on the pre side
        dark = self.dark[sl]
        for post in kept:
            psd = self._interface_band(lab, pre, post, max(1.0, 2.2 * half_px)) & disc
            dark[psd & (lab == post)] += 22.0
        pre_mask = lab == pre
        if cfg.t_bar:
            tb = (rr[None] < 0.35 * r_nm) & pre_mask & (self.border_dist[sl] < 45.0)
            tb &= (np.abs(np.arange(sl[0].start, sl[0].stop) - zc) <= max(0, n_sec // 2 - 0))[
                :, None, None
            ]
            dark[tb] += 70.0
        self._vesicle_cloud(sl, pre_mask, rr, zc, int(rng.integers(*cfg.vesicles_per_synapse)))
        return [(cleft_id, pre, post) for post in kept]

    def _vesicle_cloud(
        self, sl: tuple[slice, ...], cell: np.ndarray, rr: np.ndarray, zc: int, n: int
    ) -> None:
        """Draw ``n`` vesicles inside ``cell`` (local mask) near the site at ``rr`` = 0."""
        cfg, rng = self.cfg, self.rng
        rad = cfg.vesicle_diameter_nm / 2.0
        bd = self.border_dist[sl]
        allowed = cell & (bd > rad + 8.0) & (rr[None] < 2.2 * cfg.cleft_radius_nm)
        # keep the cloud within one section of the site's centre
        zidx = np.arange(sl[0].start, sl[0].stop)
        allowed &= (np.abs(zidx - zc) <= 1)[:, None, None]
        spots = np.argwhere(allowed)
        if len(spots) == 0:
            return
        # prefer spots near the site: weight falls with distance
        d = rr[spots[:, 1], spots[:, 2]]
        p = np.exp(-d / (0.8 * cfg.cleft_radius_nm))
        p /= p.sum()
        pick = spots[rng.choice(len(spots), size=min(n, len(spots)), replace=False, p=p)]
        for z, y, x in pick:
            self._stamp_vesicle(sl[0].start + z, sl[1].start + y, sl[2].start + x, rad)

    def _stamp_vesicle(self, z: int, y: int, x: int, rad_nm: float) -> None:
        ry = math.ceil(rad_nm / self.vy) + 1
        rx = math.ceil(rad_nm / self.vx) + 1
        ny, nx = self.shape[1:]
        y0, y1 = max(0, y - ry), min(ny, y + ry + 1)
        x0, x1 = max(0, x - rx), min(nx, x + rx + 1)
        yy = (np.arange(y0, y1) - y)[:, None] * self.vy
        xx = (np.arange(x0, x1) - x)[None, :] * self.vx
        r = np.sqrt(yy * yy + xx * xx)
        # a dark membrane ring around a paler lumen
        ring = np.exp(-(((r - 0.8 * rad_nm) / (0.22 * rad_nm)) ** 2)) * 100.0
        lumen = (r < 0.65 * rad_nm) * 25.0
        self.dark[z, y0:y1, x0:x1] += (ring + lumen).astype(np.float32)

    # ------------------------------------------------------------------ distractors
    def place_distractors(self) -> None:
        cfg, rng = self.cfg, self.rng
        nz, ny, nx = self.shape
        self.mito = np.zeros(self.shape, bool)
        n_mito = rng.poisson(cfg.mitochondria_density * self.volume_um3)
        for _ in range(n_mito):
            z = int(rng.integers(nz))
            y = int(rng.integers(ny))
            x = int(rng.integers(nx))
            cell = int(self.labels[z, y, x])
            length = rng.uniform(120, 260)
            width = rng.uniform(60, 100)
            depth = rng.uniform(80, 240)
            ang = rng.uniform(0, np.pi)
            sl = self._local(
                z - int(depth / 2 / self.vz),
                z + int(depth / 2 / self.vz) + 1,
                y,
                x,
                length / 2 + 10,
            )
            zz = (np.arange(sl[0].start, sl[0].stop) - z)[:, None, None] * self.vz
            yy = (np.arange(sl[1].start, sl[1].stop) - y)[None, :, None] * self.vy
            xx = (np.arange(sl[2].start, sl[2].stop) - x)[None, None, :] * self.vx
            u = yy * np.cos(ang) + xx * np.sin(ang)
            v = -yy * np.sin(ang) + xx * np.cos(ang)
            inside = (u / (length / 2)) ** 2 + (v / (width / 2)) ** 2 + (zz / (depth / 2)) ** 2
            body = (inside < 1.0) & (self.labels[sl] == cell) & (self.border_dist[sl] > 20.0)
            body &= self.clefts[sl] == 0
            self.mito[sl] |= body
        # vesicle clouds on plain contacts (no cleft) and dark contacts without vesicles
        for kind, density in (
            ("vesicles", cfg.decoy_vesicle_density),
            ("contact", cfg.decoy_contact_density),
        ):
            for _ in range(rng.poisson(density * self.volume_um3)):
                z = int(rng.integers(nz))
                cand = self._site_candidates(z)
                if len(cand) == 0:
                    continue
                cy, cx = (int(v) for v in cand[rng.integers(len(cand))])
                if not self._far_from_sites(
                    z, cy * self.vy, cx * self.vx, 2.6 * cfg.cleft_radius_nm
                ):
                    continue
                sl = self._local(z - 1, z + 2, cy, cx, 2.5 * cfg.cleft_radius_nm)
                lab = self.labels[sl]
                yy = (np.arange(sl[1].start, sl[1].stop) - cy) * self.vy
                xx = (np.arange(sl[2].start, sl[2].stop) - cx) * self.vx
                rr = np.sqrt(yy[:, None] ** 2 + xx[None, :] ** 2)
                cell = lab == self.labels[z, cy, cx]
                if kind == "vesicles":
                    n = int(rng.integers(*cfg.vesicles_per_synapse))
                    self._vesicle_cloud(sl, cell, rr, z, n)
                else:
                    band = self.border_dist[sl] < 0.5 * cfg.membrane_thickness_nm + 10.0
                    band &= rr[None] < cfg.cleft_radius_nm
                    band &= (np.abs(np.arange(sl[0].start, sl[0].stop) - z) <= 1)[:, None, None]
                    self.dark[sl][band] += 30.0
                self.sites.append((z, cy * self.vy, cx * self.vx))

    # ------------------------------------------------------------------ image
    def render(self) -> np.ndarray:
        from scipy import ndimage

        cfg, rng = self.cfg, self.rng
        nz, ny, nx = self.shape
        n_cells = int(self.labels.max())
        # cytoplasm: per-cell brightness plus fine texture
        cell_level = rng.normal(145.0, 22.0, n_cells + 1).astype(np.float32)
        img = cell_level[self.labels]
        texture = _smooth_field(
            rng, self.shape, (nz, max(2, int(ny * self.vy / 25)), max(2, int(nx * self.vx / 25)))
        )
        img += 18.0 * texture
        # membranes: dark within half the thickness of a border, soft edge
        half = 0.5 * cfg.membrane_thickness_nm
        core = np.exp(-((self.border_dist / (0.55 * half)) ** 4))
        shoulder = np.clip(1.0 - self.border_dist / half, 0.0, 1.0)
        membrane = np.maximum(core, 0.5 * shoulder)
        img = img * (1.0 - membrane) + 22.0 * membrane
        # mitochondria: darker body with stripes (cristae) and a dark rim
        if self.mito.any():
            stripes = 0.5 + 0.5 * np.sin(
                (
                    np.arange(nx)[None, None, :] * self.vx * 0.9
                    + np.arange(ny)[None, :, None] * self.vy * 0.4
                )
                / 9.0
            )
            rim = self.mito & ~ndimage.binary_erosion(self.mito, structure=_disk(1.5)[None])
            img = np.where(self.mito, 105.0 - 25.0 * stripes, img)
            img[rim] = 60.0
        img -= self.dark
        # in-plane blur, per-section drift, noise
        sigma = cfg.blur_sigma_nm
        if sigma > 0:
            img = ndimage.gaussian_filter(img, (0.0, sigma / self.vy, sigma / self.vx))
        gain = 1.0 + np.cumsum(rng.normal(0, cfg.drift, nz))
        offset = np.cumsum(rng.normal(0, cfg.drift * 20.0, nz))
        img = (img - 128.0) * gain[:, None, None].astype(np.float32) + 128.0
        img += offset[:, None, None].astype(np.float32)
        img += rng.normal(0.0, cfg.noise_sd, self.shape).astype(np.float32)
        for z in range(nz):
            u = rng.random()
            if u < cfg.missing_section_prob:
                img[z] = 0.0
            elif u < cfg.missing_section_prob + cfg.defect_section_prob:
                # a fold: a dark band across the section
                ang = rng.uniform(0, np.pi)
                yy, xx = np.mgrid[0:ny, 0:nx]
                d = (yy - ny / 2) * np.cos(ang) + (xx - nx / 2) * np.sin(ang)
                img[z][np.abs(d - rng.uniform(-ny / 3, ny / 3)) < 3] = 15.0
        return np.clip(np.rint(img), 0, 255).astype(np.uint8)
