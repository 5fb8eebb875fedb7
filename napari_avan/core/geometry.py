"""Geometry helpers shared by the core: label statistics, boxes and in-plane dilation.

Everything is (z, y, x); voxel sizes are in nm as (z, y, x). Label statistics are computed
from the foreground voxels in one sort (no mask per label), so they cost about the same for
ten labels as for ten thousand.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from scipy import ndimage

from napari_avan.types import AvanInputError, check_same_shape, check_voxel_size

#: In-plane radius of the candidate-region dilation around a cleft (a radius-5 diamond at
#: about 8 nm per pixel).
DEFAULT_DILATION_RADIUS_NM = 40.0
#: Number of sections the candidate-region dilation spans, centred on each cleft section.
DEFAULT_DILATION_SECTIONS = 3

#: A (z, y, x) tuple of slices selecting a box of a volume.
BoxSlices = tuple[slice, slice, slice]


class LabelStatistics(NamedTuple):
    """Per-label statistics of a (z, y, x) label volume, one row per nonzero label.

    Attributes:
        ids: (N,) label ids in increasing order, the dtype of the labels.
        size: (N,) voxel counts (int64).
        centroid: (N, 3) mean (z, y, x) voxel coordinate (float64, voxel units).
        bbox_begin: (N, 3) first voxel (z, y, x) of the box, inclusive (int64).
        bbox_end: (N, 3) end of the box (z, y, x), exclusive (int64).
        value_mean: (N,) mean of ``values`` over each label (float64); NaN when no values
            were given.
    """

    ids: np.ndarray
    size: np.ndarray
    centroid: np.ndarray
    bbox_begin: np.ndarray
    bbox_end: np.ndarray
    value_mean: np.ndarray


def check_label_volume(labels: np.ndarray, what: str = "labels") -> np.ndarray:
    """Return ``labels`` as a 3D integer numpy array with no negative ids.

    Raises:
        AvanInputError: if it is not 3D, not integer, or holds negative ids.
    """
    arr = np.asarray(labels)
    if arr.ndim != 3:
        raise AvanInputError(f"{what} must be a 3D (z, y, x) array, got shape {arr.shape}")
    if arr.dtype == bool:
        arr = arr.view(np.uint8)
    if not np.issubdtype(arr.dtype, np.integer):
        raise AvanInputError(
            f"{what} must hold integer label ids (0 = background), got dtype {arr.dtype}"
        )
    if np.issubdtype(arr.dtype, np.signedinteger) and arr.size and int(arr.min()) < 0:
        raise AvanInputError(f"{what} holds negative ids: label ids must be >= 0 (0 = background)")
    return arr


def label_statistics(labels: np.ndarray, values: np.ndarray | None = None) -> LabelStatistics:
    """Size, centroid, bounding box and mean value of every nonzero label.

    Args:
        labels: (z, y, x) integer labels, 0 = background.
        values: optional (z, y, x) array (e.g. a probability map) averaged over each label.

    Returns:
        The statistics, one row per label id, ids increasing.
    """
    labels = check_label_volume(labels)
    if values is not None:
        check_same_shape(labels=labels, values=values)
    flat = labels.ravel()
    linear = np.flatnonzero(flat)
    lab = flat[linear]
    # one stable sort groups each label's voxels; reduceat then gives every statistic
    order = np.argsort(lab, kind="stable")
    lab = lab[order]
    linear = linear[order]
    n_fg = lab.size
    if n_fg == 0:
        empty3 = np.zeros((0, 3), dtype=np.int64)
        return LabelStatistics(
            ids=np.zeros(0, dtype=labels.dtype),
            size=np.zeros(0, dtype=np.int64),
            centroid=np.zeros((0, 3), dtype=np.float64),
            bbox_begin=empty3,
            bbox_end=empty3.copy(),
            value_mean=np.zeros(0, dtype=np.float64),
        )
    starts = np.concatenate(([0], np.flatnonzero(lab[1:] != lab[:-1]) + 1))
    ids = lab[starts]
    size = np.diff(np.append(starts, n_fg)).astype(np.int64)
    coords = np.unravel_index(linear, labels.shape)
    centroid = np.empty((ids.size, 3), dtype=np.float64)
    begin = np.empty((ids.size, 3), dtype=np.int64)
    end = np.empty((ids.size, 3), dtype=np.int64)
    for axis, c in enumerate(coords):
        c = c.astype(np.int64, copy=False)
        centroid[:, axis] = np.add.reduceat(c, starts) / size
        begin[:, axis] = np.minimum.reduceat(c, starts)
        end[:, axis] = np.maximum.reduceat(c, starts) + 1
    if values is None:
        value_mean = np.full(ids.size, np.nan)
    else:
        vals = np.asarray(values).ravel()[linear].astype(np.float64)
        value_mean = np.add.reduceat(vals, starts) / size
    return LabelStatistics(ids, size, centroid, begin, end, value_mean)


def inplane_structure(
    radius_nm: float = DEFAULT_DILATION_RADIUS_NM,
    voxel_size_nm: Sequence[float] | np.ndarray = (40.0, 8.0, 8.0),
    n_sections: int = DEFAULT_DILATION_SECTIONS,
) -> np.ndarray:
    """A diamond of in-plane radius ``radius_nm`` repeated on ``n_sections`` sections.

    A pixel offset (dy, dx) is inside when ``|dy| * vy + |dx| * vx <= radius_nm``, with
    (vy, vx) the in-plane voxel size, so the diamond keeps its size in nm on any grid
    (radius 40 nm at 8 nm is the radius-5 diamond of the default candidate region). The z
    voxel size is not used: the structure spans whole sections.

    Args:
        radius_nm: in-plane radius in nm (0 keeps a single pixel per section).
        voxel_size_nm: (z, y, x) voxel size in nm.
        n_sections: number of sections, odd and >= 1, centred on the middle one.

    Returns:
        A boolean (n_sections, 2 * ry + 1, 2 * rx + 1) structuring element.

    Raises:
        AvanInputError: if the radius is negative or not finite, or ``n_sections`` is not a
            positive odd integer.
    """
    _, vy, vx = check_voxel_size(voxel_size_nm)
    if not np.isfinite(radius_nm) or radius_nm < 0:
        raise AvanInputError(f"dilation radius {radius_nm!r} nm must be finite and >= 0")
    if int(n_sections) != n_sections or n_sections < 1 or n_sections % 2 == 0:
        raise AvanInputError(
            f"the dilation spans {n_sections!r} sections: give a positive odd number (e.g. 3)"
        )
    # tolerance so that e.g. 40 nm / 8 nm reaches exactly 5 pixels despite rounding
    tol = 1e-9 * max(radius_nm, 1.0)
    ry = int(np.floor((radius_nm + tol) / vy))
    rx = int(np.floor((radius_nm + tol) / vx))
    dy = np.abs(np.arange(-ry, ry + 1))[:, None] * vy
    dx = np.abs(np.arange(-rx, rx + 1))[None, :] * vx
    plane = dy + dx <= radius_nm + tol
    return np.repeat(plane[None], int(n_sections), axis=0)


def structure_half_size(structure: np.ndarray) -> tuple[int, int, int]:
    """Half the (z, y, x) extent of an odd-shaped structuring element.

    Raises:
        AvanInputError: if the structure is not 3D with an odd size on every axis.
    """
    shape = np.shape(structure)
    if len(shape) != 3 or any(s % 2 == 0 for s in shape):
        raise AvanInputError(
            f"structuring element must be 3D with an odd size on each axis, got shape {shape}"
        )
    return (shape[0] // 2, shape[1] // 2, shape[2] // 2)


def bbox_slices(
    begin: Sequence[int],
    end: Sequence[int],
    pad: Sequence[int] | int,
    shape: Sequence[int],
) -> BoxSlices:
    """Slices of the box [begin, end) grown by ``pad`` on each side and clipped to ``shape``.

    Args:
        begin: (z, y, x) first voxel, inclusive.
        end: (z, y, x) end, exclusive.
        pad: voxels added on each side, one number or one per axis (z, y, x).
        shape: (z, y, x) shape of the volume the slices index.
    """
    pads = (int(pad),) * 3 if isinstance(pad, int | np.integer) else tuple(int(p) for p in pad)
    z, y, x = (
        slice(max(0, int(b) - p), min(int(s), int(e) + p))
        for b, e, p, s in zip(begin, end, pads, shape, strict=True)
    )
    return (z, y, x)


def _row_half_widths(structure: np.ndarray) -> list[int] | None:
    """Half-widths of the x runs of a structure made of centred symmetric runs, else None.

    Such a structure (a diamond, disc or box repeated on every section) dilates as a max
    filter along z, then one max filter along x per row shifted along y: linear in the
    volume size instead of proportional to the number of structure elements.
    """
    st = np.asarray(structure, dtype=bool)
    if not (st == st[:1]).all():
        return None
    plane = st[0]
    cx = plane.shape[1] // 2
    widths = []
    for row in plane:
        w = int(row.sum())
        if w == 0:
            widths.append(-1)
            continue
        half = (w - 1) // 2
        if w % 2 == 0 or not row[cx - half : cx + half + 1].all():
            return None
        widths.append(half)
    return widths


def dilate_mask(mask: np.ndarray, structure: np.ndarray) -> np.ndarray:
    """Binary dilation of ``mask`` by a centred, odd-shaped ``structure``.

    Voxels outside the array count as background, so a mask touching the volume border
    simply stops there. Structures like :func:`inplane_structure` (the same symmetric plane
    on every section, each row a centred run) take a fast separable path.
    """
    hz, hy, _ = structure_half_size(structure)
    mask = np.asarray(mask, dtype=bool)
    widths = _row_half_widths(structure)
    if widths is None or mask.ndim != 3:
        return ndimage.binary_dilation(mask, structure=structure)
    m = mask.view(np.uint8)
    if hz:
        m = ndimage.maximum_filter1d(m, size=2 * hz + 1, axis=0, mode="constant", cval=0)
    out = np.zeros(mask.shape, dtype=bool)
    by_width: dict[int, np.ndarray] = {}
    n_y = mask.shape[1]
    for row, half in enumerate(widths):
        dy = row - hy
        if half < 0 or abs(dy) >= n_y:
            continue
        if half not in by_width:
            by_width[half] = (
                ndimage.maximum_filter1d(m, size=2 * half + 1, axis=2, mode="constant", cval=0)
                if half
                else m
            ).astype(bool)
        run = by_width[half]
        # out[p] |= run[p - dy] (the structure is symmetric, so the sign convention is moot)
        if dy >= 0:
            out[:, dy:, :] |= run[:, : n_y - dy, :]
        else:
            out[:, : n_y + dy, :] |= run[:, -dy:, :]
    return out


def dilated_label_region(
    labels: np.ndarray,
    label_id: int,
    bbox_begin: Sequence[int],
    bbox_end: Sequence[int],
    structure: np.ndarray,
) -> tuple[BoxSlices, np.ndarray]:
    """The label ``label_id`` dilated by ``structure``, computed in a padded crop.

    Args:
        labels: (z, y, x) label volume.
        label_id: the label to dilate.
        bbox_begin: (z, y, x) first voxel of the label's box, inclusive.
        bbox_end: (z, y, x) end of the label's box, exclusive.
        structure: odd-shaped structuring element, e.g. from :func:`inplane_structure`.

    Returns:
        ``(slices, region)``: the crop of the volume that holds the whole dilated label and
        the boolean dilated mask within that crop.
    """
    pad = structure_half_size(structure)
    slices = bbox_slices(bbox_begin, bbox_end, pad, labels.shape)
    region = dilate_mask(labels[slices] == label_id, structure)
    return slices, region
