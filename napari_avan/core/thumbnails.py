"""Thumbnails of clefts for a review gallery: one RGB tile per cleft (numpy only).

A tile is the EM section through the cleft's middle, cropped square around the cleft's
box with some context, contrast stretched, with the presynaptic segments tinted magenta,
the postsynaptic ones green and the cleft drawn as a yellow outline. Only the cleft's box
(of the cleft labels) and the crop of one section (of each volume) are read, so the
volumes may be zarr or dask arrays as well as numpy ones.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from napari_avan.types import AvanInputError

#: Tint colours (RGB) and their opacity over the EM.
PRE_RGB = (255, 0, 255)
POST_RGB = (0, 255, 0)
TINT_ALPHA = 0.35
#: The cleft outline's colour (opaque).
OUTLINE_RGB = (255, 255, 0)
#: The smallest crop side in voxels, and the context kept on each side of the cleft's box
#: (a quarter of its larger side, at least this many voxels).
MIN_SIDE = 48
MIN_MARGIN = 12


def _check_box(box: Sequence[int], shape: tuple[int, ...]) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in box)
    except (TypeError, ValueError) as err:
        raise AvanInputError(
            f"cleft box {box!r} is not six integers (z0, y0, x0, z1, y1, x1)"
        ) from err
    if len(values) != 6:
        raise AvanInputError(
            f"cleft box {box!r} has {len(values)} entries: give (z0, y0, x0, z1, y1, x1)"
        )
    if any(values[i] >= values[i + 3] for i in range(3)):
        raise AvanInputError(f"cleft box {values} is empty: each end must exceed its start")
    return values


def _shape(volume: Any, what: str) -> tuple[int, ...]:
    shape = getattr(volume, "shape", None)
    if shape is None or len(shape) != 3:
        raise AvanInputError(f"the {what} must be a 3D (z, y, x) array, got shape {shape}")
    return tuple(int(s) for s in shape)


def _read_section(volume: Any, z: int, start: tuple[int, int], side: int) -> np.ndarray:
    """``volume[z]`` over the square (start, start + side), zero-padded outside the volume.

    Returns the crop and reads only the part of it inside the volume.
    """
    _, ny, nx = volume.shape
    y0, x0 = start
    ya, yb = max(y0, 0), min(y0 + side, ny)
    xa, xb = max(x0, 0), min(x0 + side, nx)
    part = np.asarray(volume[z, ya:yb, xa:xb])
    out = np.zeros((side, side), dtype=part.dtype)
    if yb > ya and xb > xa:
        out[ya - y0 : yb - y0, xa - x0 : xb - x0] = part
    return out


def _starts(side: int, size: int) -> np.ndarray:
    """First source index of each of ``size`` output pixels over ``side`` source pixels."""
    return (np.arange(size, dtype=np.int64) * side) // size


def _area(values: np.ndarray, size: int) -> np.ndarray:
    """Area (mean) resampling of a square array to size x size (nearest when enlarging)."""
    starts = _starts(values.shape[0], size)
    ones = np.ones(values.shape[0])
    # reduceat sums [starts[i], starts[i + 1]); repeated starts give a single element, so
    # the counts follow the same rule.
    counts = np.add.reduceat(ones, starts)
    rows = np.add.reduceat(values.astype(np.float64), starts, axis=0) / counts[:, None]
    return np.add.reduceat(rows, starts, axis=1) / counts[None, :]


def _any(mask: np.ndarray, size: int) -> np.ndarray:
    """Resample a square mask to size x size: an output pixel is set when any voxel it
    covers is (so thin clefts survive shrinking)."""
    starts = _starts(mask.shape[0], size)
    rows = np.logical_or.reduceat(mask, starts, axis=0)
    return np.logical_or.reduceat(rows, starts, axis=1)


def _nearest(values: np.ndarray, size: int) -> np.ndarray:
    """Nearest (pixel centre) resampling of a square array to size x size."""
    side = values.shape[0]
    index = ((2 * np.arange(size, dtype=np.int64) + 1) * side) // (2 * size)
    return values[np.ix_(index, index)]


def _outline(mask: np.ndarray) -> np.ndarray:
    """Pixels of ``mask`` with a 4-neighbour outside it (the tile's edge counts as outside)."""
    padded = np.pad(mask, 1, constant_values=False)
    interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:] & mask
    return mask & ~interior


def _stretch(section: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """Grey levels in [0, 255]: the 1st to 99th percentile of the pixels inside the
    volume stretched over the range; padding is black."""
    values = section.astype(np.float64)
    real = values[inside]
    if real.size == 0:
        return np.zeros(section.shape)
    lo, hi = np.percentile(real, [1.0, 99.0])
    if hi <= lo:
        lo, hi = float(real.min()), float(real.max())
    if hi <= lo:  # a flat section: mid grey
        grey = np.full(section.shape, 128.0)
    else:
        grey = np.clip((values - lo) / (hi - lo), 0.0, 1.0) * 255.0
    grey[~inside] = 0.0
    return grey


def _segment_ids(ids: Iterable[int], dtype: np.dtype[Any]) -> np.ndarray:
    """The positive ids that ``dtype`` can hold, as an array of that dtype."""
    values = [int(i) for i in ids]
    if dtype.kind in "ui":
        top = int(np.iinfo(dtype).max)
        return np.asarray([v for v in values if 0 < v <= top], dtype=dtype)
    return np.asarray([v for v in values if v > 0], dtype=np.float64)


def _crop_side(box: tuple[int, ...]) -> int:
    larger = max(box[4] - box[1], box[5] - box[2])
    return max(MIN_SIDE, larger + 2 * max(MIN_MARGIN, larger // 4))


def cleft_thumbnail(
    image: Any,
    clefts: Any,
    segmentation: Any | None,
    cleft_id: int,
    box: Sequence[int],
    pre: Iterable[int] = (),
    post: Iterable[int] = (),
    size: int = 96,
) -> np.ndarray:
    """An RGB tile showing one cleft and its partners.

    The section is the one with most of the cleft's voxels inside ``box`` (ties: the one
    nearest the box's middle). The crop is a square centred on the box's centre, its side
    the box's larger in-plane side plus a quarter of it on each side (at least
    :data:`MIN_MARGIN` voxels, and at least :data:`MIN_SIDE` in all); what falls outside
    the volume is black, so the cleft stays centred. The EM is stretched from its 1st to
    its 99th percentile and shrunk by averaging (enlarged by repeating pixels) to
    ``size`` x ``size``; segments in ``pre`` are tinted magenta and those in ``post`` green
    (35% opacity), and the cleft's boundary pixels on the section are yellow.

    Args:
        image: (z, y, x) EM, any array sliced by boxes (numpy, zarr, dask).
        clefts: (z, y, x) cleft labels, same shape, 0 background.
        segmentation: (z, y, x) neuron labels, same shape; None: no tint.
        cleft_id: the cleft to show.
        box: (z0, y0, x0, z1, y1, x1), ends exclusive, holding the cleft's voxels (e.g.
            :attr:`~napari_avan.core.session.decisions.CleftRecord.box`).
        pre: presynaptic segment ids.
        post: postsynaptic segment ids.
        size: the tile's side in pixels.

    Returns:
        A (size, size, 3) uint8 RGB array.

    Raises:
        AvanInputError: volumes of different shapes, a bad box or size, or no voxel of
            the cleft inside the box.
    """
    shape = _shape(clefts, "cleft labels")
    if _shape(image, "image") != shape:
        raise AvanInputError(f"image shape {tuple(image.shape)} differs from the clefts' {shape}")
    if segmentation is not None and _shape(segmentation, "segmentation") != shape:
        raise AvanInputError(
            f"segmentation shape {tuple(segmentation.shape)} differs from the clefts' {shape}"
        )
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 4:
        raise AvanInputError(f"thumbnail size {size!r} must be an integer of at least 4")
    size = int(size)
    cleft_id = int(cleft_id)
    box = _check_box(box, shape)

    # The cleft's voxels inside the box (the box clipped to the volume).
    lo = [max(box[i], 0) for i in range(3)]
    hi = [min(box[i + 3], shape[i]) for i in range(3)]
    counts = np.zeros(0, dtype=np.int64)
    if all(h > low for low, h in zip(lo, hi, strict=True)):
        inside = np.asarray(clefts[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]) == cleft_id
        counts = inside.sum(axis=(1, 2))
    if counts.size == 0 or not counts.any():
        raise AvanInputError(
            f"cleft {cleft_id} has no voxel inside its box {box}: the box is stale or the "
            "cleft was deleted; refresh the cleft's box from the labels"
        )
    middle = (box[0] + box[3] - 1) / 2.0
    sections = np.arange(lo[0], hi[0])
    best = np.flatnonzero(counts == counts.max())
    z = int(sections[best[np.argmin(np.abs(sections[best] - middle))]])

    side = _crop_side(box)
    start = ((box[1] + box[4] - side) // 2, (box[2] + box[5] - side) // 2)

    em = _read_section(image, z, start, side)
    present = np.zeros((side, side), dtype=bool)
    ya, xa = max(start[0], 0), max(start[1], 0)
    yb, xb = min(start[0] + side, shape[1]), min(start[1] + side, shape[2])
    present[ya - start[0] : yb - start[0], xa - start[1] : xb - start[1]] = True
    grey = _area(_stretch(em, present), size)
    rgb = np.repeat(grey[:, :, None], 3, axis=2)

    if segmentation is not None:
        seg = _nearest(_read_section(segmentation, z, start, side), size)
        for ids, colour in (
            (_segment_ids(pre, seg.dtype), PRE_RGB),
            (_segment_ids(post, seg.dtype), POST_RGB),
        ):
            if ids.size == 0:
                continue
            mask = np.isin(seg, ids)
            rgb[mask] = rgb[mask] * (1.0 - TINT_ALPHA) + np.asarray(colour) * TINT_ALPHA

    cleft = _any(_read_section(clefts, z, start, side) == cleft_id, size)
    rgb[_outline(cleft)] = OUTLINE_RGB
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
