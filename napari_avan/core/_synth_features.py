"""Drawing of synapses and distractors into the darkness map of the synthetic EM generator.

Presynaptic side: a vesicle cloud and an optional T-bar. Postsynaptic side: a thin density
(weaker than the vesicles, so the direction of a synapse is read from the vesicles). Both sides:
the same slight thickening of the membrane under the cleft. Distractors reuse the same pieces:
mitochondria, vesicle clouds without a cleft, dense contacts without vesicles.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from napari_avan.core._synth_geometry import Diagram
from napari_avan.core._synth_render import stamp, vesicle_kernel, vesicle_sites
from napari_avan.core._synth_synapses import SynapseResult, cleft_window, contact_band


@dataclass
class Canvas:
    """Everything the drawing functions read, plus the darkness map they write.

    Attributes:
        dark: (Z, Y, X) float32 darkness, written in place.
        diag: the cell diagram.
        wy, wx: warped pixel coordinates (nm).
        segmentation: final segment ids.
        pocket: extracellular pockets.
        voxel_nm: voxel size (z, y, x).
        membrane_nm: membrane thickness.
        margin_nm: crop margin covering the coordinate warp.
    """

    dark: np.ndarray
    diag: Diagram
    wy: np.ndarray
    wx: np.ndarray
    segmentation: np.ndarray
    pocket: np.ndarray
    voxel_nm: tuple[float, float, float]
    membrane_nm: float
    margin_nm: float

    @property
    def z_nm(self) -> np.ndarray:
        return np.arange(self.dark.shape[0]) * self.voxel_nm[0]

    def crop(self, cy: float, cx: float, radius_nm: float) -> tuple[slice, slice] | None:
        """Pixel crop around a point of the warped frame."""
        n_y, n_x = self.dark.shape[1:]
        reach = radius_nm + self.margin_nm
        y0 = max(int((cy - reach) / self.voxel_nm[1]), 0)
        y1 = min(int((cy + reach) / self.voxel_nm[1]) + 2, n_y)
        x0 = max(int((cx - reach) / self.voxel_nm[2]), 0)
        x1 = min(int((cx + reach) / self.voxel_nm[2]) + 2, n_x)
        if y0 >= y1 or x0 >= x1:
            return None
        return slice(y0, y1), slice(x0, x1)


@dataclass
class VesicleStyle:
    """Vesicle size and cloud shape."""

    diameter_nm: float
    density: float
    cloud_radius_nm: float


def draw_vesicles(
    canvas: Canvas,
    rng: np.random.Generator,
    z: int,
    inside: np.ndarray,
    crop: tuple[slice, slice],
    centre: tuple[float, float],
    style: VesicleStyle,
    density: float,
) -> int:
    """Draw a vesicle cloud around ``centre`` inside the ``inside`` mask of one crop."""
    px = canvas.voxel_nm[1]
    r_nm = style.diameter_nm / 2
    allowed = inside & (canvas.diag.d12[z][crop] >= canvas.membrane_nm / 2 + r_nm + 1.0)
    dist = np.hypot(canvas.wy[z][crop] - centre[0], canvas.wx[z][crop] - centre[1])
    iy, ix = vesicle_sites(
        rng,
        allowed,
        dist,
        spacing_px=1.22 * style.diameter_nm / px,
        density=density,
        cloud_radius_nm=style.cloud_radius_nm,
    )
    ring = max(4.0 / px, 0.7)
    kernels = [vesicle_kernel(f * r_nm / px, ring) for f in (0.85, 1.0, 1.12)]
    which = rng.integers(0, 3, iy.size)
    for y, x, k in zip(iy, ix, which, strict=True):
        stamp(canvas.dark, z, int(y) + crop[0].start, int(x) + crop[1].start, kernels[int(k)])
    return int(iy.size)


def draw_synapse(
    canvas: Canvas,
    rng: np.random.Generator,
    res: SynapseResult,
    *,
    vesicles: VesicleStyle,
    t_bar: bool,
    psd_strength: float,
) -> None:
    """Vesicles and T-bar on the pre side, a density on the post side, membrane thickening."""
    plan = res.plan
    z_nm = canvas.z_nm
    vz = canvas.voxel_nm[0]
    t = canvas.membrane_nm
    diag = canvas.diag
    normal = np.array([np.sin(plan.theta), np.cos(plan.theta)])
    tangent = np.array([-normal[1], normal[0]])
    for z in range(canvas.dark.shape[0]):
        dz = abs(float(z_nm[z] - z_nm[plan.z0]))
        q = (float(plan.qy[z]), float(plan.qx[z]))
        if dz <= plan.lz_nm + vz:
            crop = canvas.crop(q[0], q[1], vesicles.cloud_radius_nm)
            if crop is not None:
                inside = (canvas.segmentation[z][crop] == res.pre_id) & ~canvas.pocket[z][crop]
                taper = 1.0 - 0.5 * (dz / (plan.lz_nm + vz)) ** 2
                draw_vesicles(canvas, rng, z, inside, crop, q, vesicles, vesicles.density * taper)
        if t_bar and dz <= max(0.6 * vz, 0.6 * plan.lz_nm):
            crop = canvas.crop(q[0], q[1], 160.0)
            if crop is not None:
                rel_y = canvas.wy[z][crop] - q[0]
                rel_x = canvas.wx[z][crop] - q[1]
                along = rel_y * normal[0] + rel_x * normal[1]  # > 0 towards the posts
                across = rel_y * tangent[0] + rel_x * tangent[1]
                # pedestal standing on the membrane, platform on top: a "T" seen side-on
                depth = -along - t / 2
                ped = np.exp(-0.5 * (across / 16.0) ** 2) / (
                    1.0 + np.exp((np.abs(depth - 25.0) - 25.0) / 4.0)
                )
                plat = np.exp(-0.5 * ((depth - 55.0) / 12.0) ** 2 - 0.5 * (across / 55.0) ** 2)
                taper = 1.0 - 0.4 * dz / max(0.6 * vz, 0.6 * plan.lz_nm)
                dens = 0.75 * taper * np.maximum(ped, plat)
                dens *= canvas.segmentation[z][crop] == res.pre_id
                view = canvas.dark[z][crop]
                np.maximum(view, dens.astype(np.float32), out=view)
        got = cleft_window(plan, z, z_nm, canvas.wy, canvas.wx, canvas.voxel_nm, canvas.margin_nm)
        if got is None:
            continue
        crop, win = got
        k1 = diag.k1[z][crop]
        k2 = diag.k2[z][crop]
        d12 = diag.d12[z][crop]
        pre_side, post_side = contact_band(k1, k2, d12, plan.pre, res.post_tubes, t / 2 + 30.0)
        view = canvas.dark[z][crop]
        thick = 0.3 * np.exp(-0.5 * (d12 / (0.5 * t)) ** 2) * (win & (pre_side | post_side))
        view += thick.astype(np.float32)
        psd = np.exp(-0.5 * ((d12 - t / 2 - 8.0) / 7.0) ** 2) * (win & post_side)
        view += (psd_strength * psd).astype(np.float32)


def draw_dense_contact(
    canvas: Canvas, z: int, pair: tuple[int, int], centre: tuple[float, float], radius_nm: float
) -> None:
    """A vesicle-free contact: symmetric membrane thickening and densities on both sides."""
    crop = canvas.crop(centre[0], centre[1], radius_nm)
    if crop is None:
        return
    diag = canvas.diag
    t = canvas.membrane_nm
    k1 = diag.k1[z][crop]
    k2 = diag.k2[z][crop]
    d12 = diag.d12[z][crop]
    win = (canvas.wy[z][crop] - centre[0]) ** 2 + (
        canvas.wx[z][crop] - centre[1]
    ) ** 2 <= radius_nm**2
    a, b = pair
    band = win & (((k1 == a) & (k2 == b)) | ((k1 == b) & (k2 == a)))
    dens = 0.25 * np.exp(-0.5 * (d12 / (0.45 * t)) ** 2)
    dens += 0.15 * np.exp(-0.5 * ((d12 - t / 2 - 8.0) / 7.0) ** 2)
    view = canvas.dark[z][crop]
    view += (dens * band).astype(np.float32)


def draw_mitochondrion(
    canvas: Canvas,
    rng: np.random.Generator,
    tube: int,
    centres: tuple[np.ndarray, np.ndarray],
    z0: int,
    half_z_nm: float,
    axes_nm: tuple[float, float],
    angle: float,
) -> None:
    """A mitochondrion: dark ellipse with an outer membrane and cristae, inside one tube."""
    z_nm = canvas.z_nm
    t = canvas.membrane_nm
    period = rng.uniform(22.0, 34.0)
    phase = rng.uniform(0, 2 * np.pi)
    ca, sa = np.cos(angle), np.sin(angle)
    for z in range(canvas.dark.shape[0]):
        dz = abs(float(z_nm[z] - z_nm[z0]))
        if dz > half_z_nm:
            continue
        s = 0.45 + 0.55 * np.sqrt(max(0.0, 1.0 - (dz / half_z_nm) ** 2))
        a, b = axes_nm[0] * s, axes_nm[1] * s
        cy, cx = float(centres[0][z]), float(centres[1][z])
        crop = canvas.crop(cy, cx, a)
        if crop is None:
            continue
        rel_y = canvas.wy[z][crop] - cy
        rel_x = canvas.wx[z][crop] - cx
        u = rel_y * ca + rel_x * sa
        v = -rel_y * sa + rel_x * ca
        rho = np.sqrt((u / a) ** 2 + (v / b) ** 2)
        host = (canvas.diag.k1[z][crop] == tube) & (canvas.diag.d12[z][crop] >= t / 2 + 3.0)
        fill = 1.0 / (1.0 + np.exp((rho - 1.0) * b / 2.0))
        edge = np.exp(-0.5 * ((rho - 1.0) * b / 3.5) ** 2)
        cristae = 0.5 + 0.5 * np.cos(2 * np.pi * u / period + phase)
        dens = fill * (0.3 + 0.22 * cristae**3) + 0.3 * edge
        view = canvas.dark[z][crop]
        view += (np.minimum(dens, 0.75) * host).astype(np.float32)
