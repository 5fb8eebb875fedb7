"""Image formation for the synthetic EM generator.

The image is built as ``brightness * texture * (1 - darkness)`` in grey levels, where
``darkness`` collects membranes, junctions, mitochondria, vesicles, T-bars and densities. Then it
is blurred, made noisy, tone-mapped onto the grey-level histogram of the real ssTEM crop
``vnc_stack1_left`` and given per-section drift and optional section defects.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from napari_avan.core._synth_geometry import Diagram, smooth_field

#: Percentiles (0..100) and grey levels measured on the real ssTEM crop ``vnc_stack1_left``.
TARGET_PERCENTILES = np.array(
    [0, 0.1, 1, 2, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 98, 99, 99.9, 100], float
)
TARGET_LEVELS = np.array(
    [0, 2, 12, 19, 33, 49, 75, 96, 116, 134, 152, 167, 182, 196, 207, 217, 223, 240, 255], float
)

#: Grey level of an average cell interior before tone mapping.
INTERIOR_LEVEL = 150.0


def filtered_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma_px: float) -> np.ndarray:
    """In-plane Gaussian-filtered white noise with unit standard deviation (float32)."""
    white = rng.standard_normal(shape, dtype=np.float32)
    out = ndi.gaussian_filter(white, (0.0, sigma_px, sigma_px), mode="reflect", truncate=3.0)
    sd = float(out[:, ::3, ::3].std()) or 1.0
    out *= np.float32(1.0 / sd)
    return out


def cells_image(
    diag: Diagram,
    pocket: np.ndarray,
    brightness: np.ndarray,
    rng: np.random.Generator,
    *,
    voxel_nm: tuple[float, float, float],
    membrane_thickness_nm: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Textured cell interiors and the membrane darkness.

    Returns:
        ``(base, dark)``: float32 grey levels without membranes, and darkness in [0, 1).
    """
    shape = diag.k1.shape
    base = brightness[np.maximum(diag.k1, 0)] * np.float32(INTERIOR_LEVEL)
    px = voxel_nm[1]
    texture = 1.0 + 0.16 * filtered_noise(rng, shape, 5.0 / px)
    texture += 0.05 * filtered_noise(rng, shape, 14.0 / px)
    texture += 0.06 * smooth_field(rng, shape, voxel_nm, 40.0, 40.0)
    base *= texture
    base[pocket] *= np.float32(0.75)
    t = np.float32(membrane_thickness_nm)
    d = diag.d12
    # membranes vary in contrast along their length (staining, cutting angle)
    strength = np.clip(0.95 + 0.2 * smooth_field(rng, shape, voxel_nm, 60.0, 60.0), 0.6, 1.15)
    sig = t / np.float32(7.5)
    dark = np.float32(0.8) * np.exp(-0.5 * (d / sig) ** 2)
    dark += np.float32(0.12) * np.exp(-d / (0.4 * t))
    dark *= strength
    jun = np.exp(-0.5 * ((diag.d13 / (0.6 * t)) ** 2 + (d / (0.6 * t)) ** 2))
    dark += np.float32(0.15) * jun
    dark[pocket] = np.minimum(dark[pocket], 0.35)
    return base, dark


def vesicle_kernel(radius_px: float, ring_px: float) -> np.ndarray:
    """Darkness stamp of one vesicle: a dark membrane ring with a slightly dark lumen."""
    half = int(np.ceil(radius_px + 3 * ring_px)) + 1
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1]
    rho = np.hypot(yy, xx)
    ring = 0.85 * np.exp(-0.5 * ((rho - radius_px) / ring_px) ** 2)
    lumen = 0.12 / (1.0 + np.exp((rho - radius_px) / 0.5))
    return np.maximum(ring, lumen).astype(np.float32)


def stamp(dark: np.ndarray, z: int, cy: int, cx: int, kernel: np.ndarray) -> None:
    """Draw ``kernel`` centred at (cy, cx) into section ``z`` of ``dark`` (max blend)."""
    half = kernel.shape[0] // 2
    n_y, n_x = dark.shape[1:]
    y0, y1 = cy - half, cy + half + 1
    x0, x1 = cx - half, cx + half + 1
    ky0, kx0 = max(0, -y0), max(0, -x0)
    ky1 = kernel.shape[0] - max(0, y1 - n_y)
    kx1 = kernel.shape[1] - max(0, x1 - n_x)
    if ky0 >= ky1 or kx0 >= kx1:
        return
    view = dark[z, max(y0, 0) : min(y1, n_y), max(x0, 0) : min(x1, n_x)]
    np.maximum(view, kernel[ky0:ky1, kx0:kx1], out=view)


def vesicle_sites(
    rng: np.random.Generator,
    allowed: np.ndarray,
    dist_nm: np.ndarray,
    *,
    spacing_px: float,
    density: float,
    cloud_radius_nm: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Vesicle centres in a 2D crop: a jittered hexagonal lattice, thinned with distance.

    Lattice spacing above one diameter keeps vesicles from overlapping without any search.
    """
    n_y, n_x = allowed.shape
    row = spacing_px * np.sqrt(3) / 2
    oy, ox = rng.uniform(0, row), rng.uniform(0, spacing_px)
    ys = np.arange(oy, n_y, row)
    pts_y = np.repeat(ys, int(n_x / spacing_px) + 2)
    cols = np.tile(np.arange(int(n_x / spacing_px) + 2) * spacing_px, ys.size)
    pts_x = (
        cols
        + ox
        + (np.repeat(np.arange(ys.size), int(n_x / spacing_px) + 2) % 2) * (spacing_px / 2)
    )
    jitter = 0.07 * spacing_px
    pts_y = pts_y + rng.uniform(-jitter, jitter, pts_y.size)
    pts_x = pts_x + rng.uniform(-jitter, jitter, pts_x.size)
    iy = np.rint(pts_y).astype(np.int64)
    ix = np.rint(pts_x).astype(np.int64)
    inside = (iy >= 0) & (iy < n_y) & (ix >= 0) & (ix < n_x)
    iy, ix = iy[inside], ix[inside]
    ok = allowed[iy, ix]
    dist = dist_nm[iy, ix]
    ok &= dist <= cloud_radius_nm
    p = density * np.exp(-np.maximum(dist - 0.3 * cloud_radius_nm, 0) / (0.6 * cloud_radius_nm))
    ok &= rng.random(iy.size) < p
    return iy[ok], ix[ok]


def tone_map(image: np.ndarray) -> np.ndarray:
    """Map grey levels monotonically onto the real ssTEM histogram (float32 out)."""
    sample = image[:, ::3, ::3].ravel()
    src = np.percentile(sample, TARGET_PERCENTILES)
    src[0], src[-1] = float(image.min()), float(image.max())
    src = np.maximum.accumulate(src + np.arange(src.size) * 1e-4)
    flat = np.interp(image.ravel(), src, TARGET_LEVELS).astype(np.float32)
    return flat.reshape(image.shape)


def apply_drift(image: np.ndarray, rng: np.random.Generator, amount: float) -> None:
    """Slow per-section gain/offset changes and an in-plane illumination ramp (in place)."""
    if amount <= 0:
        return
    n_z, n_y, n_x = image.shape
    walk = np.cumsum(rng.standard_normal((3, n_z)), axis=1)
    walk -= walk.mean(axis=1, keepdims=True)
    walk /= max(float(np.abs(walk).max()), 1.0)
    gain = 1.0 + amount * walk[0]
    offset = 128.0 * amount * walk[1]
    yy = np.linspace(-1.0, 1.0, n_y, dtype=np.float32)[:, None]
    xx = np.linspace(-1.0, 1.0, n_x, dtype=np.float32)[None, :]
    angle = rng.uniform(0, 2 * np.pi) + 0.5 * walk[2]
    for z in range(n_z):
        ramp = np.float32(64.0 * amount) * (np.cos(angle[z]) * yy + np.sin(angle[z]) * xx)
        image[z] -= 128.0
        image[z] *= np.float32(gain[z])
        image[z] += np.float32(128.0 + offset[z]) + ramp


def apply_fold(image: np.ndarray, z: int, rng: np.random.Generator, width_px: float) -> None:
    """Draw a section fold: a dark band along a random line across section ``z`` (in place)."""
    n_y, n_x = image.shape[1:]
    angle = rng.uniform(0, np.pi)
    cy, cx = rng.uniform(0.2, 0.8) * n_y, rng.uniform(0.2, 0.8) * n_x
    yy, xx = np.mgrid[0:n_y, 0:n_x].astype(np.float32)
    dist = np.abs((yy - cy) * np.cos(angle) - (xx - cx) * np.sin(angle))
    band = np.exp(-0.5 * (dist / (width_px / 2.0)) ** 4)
    image[z] *= 1.0 - 0.8 * band
