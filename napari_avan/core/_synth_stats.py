"""Realism statistics of EM volumes, to compare synthetic data with targets from real ssTEM."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

#: Measured on the real ssTEM crop ``vnc_stack1_left``.
REAL_TARGETS: dict[str, float] = {
    "mean": 128.0,
    "sd": 55.0,
    "p1": 12.0,
    "p50": 134.0,
    "p99": 223.0,
    "membrane_mean": 69.0,
    "interior_mean": 146.0,
    "membrane_fraction": 0.23,
}


def membrane_mask(
    segmentation: np.ndarray, voxel_size_nm: tuple[float, float, float], thickness_nm: float
) -> np.ndarray:
    """Pixels within a membrane of ``thickness_nm`` centred on the in-plane segment borders.

    Label 0 counts as its own region, so the rims of extracellular pockets are membrane too.
    """
    seg = np.asarray(segmentation)
    border = np.zeros(seg.shape, bool)
    border[:, 1:] |= seg[:, 1:] != seg[:, :-1]
    border[:, :-1] |= seg[:, :-1] != seg[:, 1:]
    border[:, :, 1:] |= seg[:, :, 1:] != seg[:, :, :-1]
    border[:, :, :-1] |= seg[:, :, :-1] != seg[:, :, 1:]
    px = (float(voxel_size_nm[1]), float(voxel_size_nm[2]))
    # a border pixel and those up to (t/2 - 1 px) from it, on each side: about t wide in all
    reach = thickness_nm / 2 - min(px)
    out = np.empty(seg.shape, bool)
    for z in range(seg.shape[0]):
        if reach <= 0:
            out[z] = border[z]
            continue
        out[z] = ndi.distance_transform_edt(~border[z], sampling=px) <= reach
    return out


def realism_stats(
    image: np.ndarray, membrane: np.ndarray, interior: np.ndarray | None = None
) -> dict[str, float]:
    """Grey-level statistics of an EM volume, keyed like :data:`REAL_TARGETS`.

    Args:
        image: uint8 EM.
        membrane: membrane pixels.
        interior: cell interior pixels; default: everything that is not membrane.
    """
    img = np.asarray(image)
    inside = ~membrane if interior is None else interior
    p1, p50, p99 = np.percentile(img, [1, 50, 99])
    return {
        "mean": float(img.mean()),
        "sd": float(img.std()),
        "p1": float(p1),
        "p50": float(p50),
        "p99": float(p99),
        "membrane_mean": float(img[membrane].mean()),
        "interior_mean": float(img[inside].mean()),
        "membrane_fraction": float(membrane.mean()),
    }


def profile_stats(segmentation: np.ndarray, voxel_size_nm: tuple[float, float, float]) -> dict:
    """Per-section cell profiles: count per um^2 and median equivalent radius (nm)."""
    import cc3d

    seg = np.asarray(segmentation)
    areas = []
    for z in range(seg.shape[0]):
        pieces = cc3d.connected_components(seg[z], connectivity=4)
        counts = np.bincount(pieces.ravel())[1:]
        areas.append(counts[counts > 0])
    area_nm2 = np.concatenate(areas) * voxel_size_nm[1] * voxel_size_nm[2]
    section_um2 = seg.shape[1] * seg.shape[2] * voxel_size_nm[1] * voxel_size_nm[2] / 1e6
    radius = np.sqrt(area_nm2 / np.pi)
    return {
        "profiles_per_um2": float(area_nm2.size / seg.shape[0] / section_um2),
        "median_radius_nm": float(np.median(radius)),
        "p90_radius_nm": float(np.percentile(radius, 90)),
    }
