"""Growing a new cleft from a seed point: the proofreader's "there is a synapse here".

From the cleft probability map: the voxels above a lowered threshold, connected to the
seed, within a box of about one AVAN patch around it. Where the map is low there (the
detector missed it entirely), a small disc on the nearest contact between two segments,
in the seed's section; without a segmentation, a disc at the seed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from napari_avan.types import AvanInputError

#: Half-size (z, y, x) of the box a grown cleft stays in, in voxels.
GROW_HALF_BOX = (4, 48, 48)
#: The lowered probability threshold of growing.
GROW_THRESHOLD = 0.3
#: Fewest voxels a grown cleft may have before the contact-disc fallback is used.
GROW_MIN_VOXELS = 20
#: Radius (voxels, in-plane) of the fallback disc.
DISC_RADIUS = 5


def _box(seed: Sequence[int], shape: Sequence[int]) -> tuple[slice, ...]:
    return tuple(
        slice(max(0, s - h), min(n, s + h + 1))
        for s, h, n in zip(seed, GROW_HALF_BOX, shape, strict=True)
    )


def _disc(shape: Sequence[int], centre: Sequence[int]) -> np.ndarray:
    """Flat indices of an in-plane disc of :data:`DISC_RADIUS` at ``centre``."""
    z, y, x = (int(c) for c in centre)
    r = DISC_RADIUS
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    keep = yy**2 + xx**2 <= r * r
    ys, xs = yy[keep] + y, xx[keep] + x
    inside = (ys >= 0) & (ys < shape[1]) & (xs >= 0) & (xs < shape[2])
    zs = np.full(int(inside.sum()), z)
    return np.ravel_multi_index((zs, ys[inside], xs[inside]), tuple(shape))


def nearest_contact(segmentation: np.ndarray, seed: Sequence[int]) -> tuple[int, int, int] | None:
    """The voxel nearest the seed, in its section and box, where two segments touch."""
    z = int(seed[0])
    box = _box(seed, segmentation.shape)
    plane = np.asarray(segmentation[z, box[1], box[2]])
    contact = np.zeros(plane.shape, dtype=bool)
    for axis in (0, 1):
        a = np.moveaxis(plane, axis, 0)
        touch = (a[1:] != a[:-1]) & (a[1:] > 0) & (a[:-1] > 0)
        c = np.moveaxis(contact, axis, 0)
        c[1:] |= touch
        c[:-1] |= touch
    points = np.argwhere(contact)
    if points.size == 0:
        return None
    here = np.asarray([seed[1] - box[1].start, seed[2] - box[2].start])
    y, x = points[np.argmin(((points - here) ** 2).sum(axis=1))]
    return (z, int(y) + box[1].start, int(x) + box[2].start)


def grow_cleft(
    probability: np.ndarray | None,
    segmentation: np.ndarray | None,
    seed: Sequence[int],
    *,
    shape: Sequence[int],
    threshold: float = GROW_THRESHOLD,
) -> np.ndarray:
    """Flat voxel indices of a cleft grown from ``seed`` (see the module docstring).

    Raises:
        AvanInputError: the seed is outside the volume.
    """
    seed = tuple(int(s) for s in seed)
    if any(s < 0 or s >= n for s, n in zip(seed, shape, strict=True)):
        raise AvanInputError(f"reseed point {list(seed)} is outside the volume {tuple(shape)}")
    if probability is not None:
        box = _box(seed, shape)
        above = np.asarray(probability[box]) >= threshold
        local = tuple(s - b.start for s, b in zip(seed, box, strict=True))
        if above[local]:
            components, _ = ndimage.label(above)
            mask = components == components[local]
            if int(mask.sum()) >= GROW_MIN_VOXELS:
                points = np.argwhere(mask) + np.asarray([b.start for b in box])
                return np.ravel_multi_index(tuple(points.T), tuple(shape))
    centre = seed
    if segmentation is not None:
        centre = nearest_contact(segmentation, seed) or seed  # read around the seed only
    return _disc(shape, centre)
