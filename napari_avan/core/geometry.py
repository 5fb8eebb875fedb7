"""Geometry helpers shared by the core: label statistics, boxes and in-plane dilation.

Everything is (z, y, x); voxel sizes are in nm as (z, y, x). Label statistics are computed
from the foreground voxels in one sort (no mask per label), so they cost about the same for
ten labels as for ten thousand.

Boxes (a tuple of three slices) locate crops: the visible part of a volume, the bounding
box of a cleft found without reading the whole volume, a box widened by a margin, the
clefts in a box, and table rows made in a crop moved back to volume coordinates. They take
plain numbers and array-likes (numpy, zarr, dask: only boxes are read); the plugin reads
those numbers from napari objects.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
from scipy import ndimage

from napari_avan.types import AvanInputError, check_same_shape, check_voxel_size

if TYPE_CHECKING:
    import pandas as pd

#: In-plane radius of the candidate-region dilation around a cleft (a radius-5 diamond at
#: about 8 nm per pixel).
DEFAULT_DILATION_RADIUS_NM = 40.0
#: Number of sections the candidate-region dilation spans, centred on each cleft section.
DEFAULT_DILATION_SECTIONS = 3

#: A (z, y, x) tuple of slices selecting a box of a volume.
BoxSlices = tuple[slice, slice, slice]
#: The same, under the name the box helpers below use.
Box = BoxSlices

#: Coordinate column prefixes of the edge and cleft tables that shift with a crop.
_POINT_PREFIXES = ("presyn_", "postsyn_", "centroid_", "bbox_b", "bbox_e")


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


# ----------------------------------------------------------------------------------- boxes


def clip_range(begin: float, end: float, size: int) -> slice:
    """The voxels [floor(begin), ceil(end)) along an axis of ``size``, clipped to it (an
    empty slice, never a reversed one, when the range misses the axis)."""
    lo = int(np.clip(np.floor(begin), 0, size))
    hi = int(np.clip(np.ceil(end), 0, size))
    return slice(lo, max(lo, hi))


def viewport_box(
    shape: Sequence[int],
    scale: Sequence[float],
    translate: Sequence[float],
    *,
    center_world: Sequence[float],
    zoom: float,
    canvas_hw: Sequence[int],
    displayed: Sequence[int],
    point_world: Sequence[float],
    depth: int = 1,
) -> Box:
    """The part of a volume the canvas shows, in data (voxel) coordinates.

    In a 2D view the displayed axes span the canvas (centre +- half the canvas over the
    zoom, in world units) and the other axis is the current slice widened to ``depth``
    sections. In a 3D view the whole volume is visible.

    Args:
        shape, scale, translate: the layer's data shape and world transform.
        center_world: camera centre (world, one value per axis or per displayed axis).
        zoom: screen pixels per world unit.
        canvas_hw: canvas height and width in screen pixels.
        displayed: the displayed axes (2 for a 2D view, 3 for 3D).
        point_world: the dims point (world), which fixes the slice of hidden axes.
        depth: sections around the current slice that count as visible.
    """
    if len(displayed) == 3:
        return (slice(0, shape[0]), slice(0, shape[1]), slice(0, shape[2]))
    if zoom <= 0:
        raise AvanInputError(f"camera zoom must be positive, got {zoom}")
    centre = list(center_world)[-len(displayed) :]
    half = [canvas_hw[0] / 2 / zoom, canvas_hw[1] / 2 / zoom]
    box: list[slice] = []
    for axis in range(3):
        s, t, n = float(scale[axis]), float(translate[axis]), int(shape[axis])
        if axis in displayed:
            k = list(displayed).index(axis)
            lo = (centre[k] - half[k] - t) / s
            hi = (centre[k] + half[k] - t) / s
            box.append(clip_range(lo + 0.5, hi + 0.5, n))
        else:
            index = int(np.clip(np.round((float(point_world[axis]) - t) / s), 0, n - 1))
            below = max(0, depth - 1) // 2
            box.append(clip_range(index - below, index - below + max(1, depth), n))
    return (box[0], box[1], box[2])


def grow_box(box: Box, margin: Sequence[int], shape: Sequence[int]) -> Box:
    """``box`` widened by ``margin`` voxels on each side, clipped to ``shape``."""
    out = [
        slice(max(0, s.start - m), min(int(n), s.stop + m))
        for s, m, n in zip(box, margin, shape, strict=True)
    ]
    return (out[0], out[1], out[2])


def union_box(boxes: Iterable[Box]) -> Box:
    """The smallest box holding all of ``boxes``."""
    chosen = list(boxes)
    out = [
        slice(min(b[axis].start for b in chosen), max(b[axis].stop for b in chosen))
        for axis in range(3)
    ]
    return (out[0], out[1], out[2])


def box_offset(box: Box) -> np.ndarray:
    """The (z, y, x) voxel offset of a box's first corner."""
    return np.array([s.start for s in box], dtype=np.int64)


def cleft_box(clefts: Any, cleft_id: int, point: Sequence[int], start_half: int = 64) -> Box:
    """The bounding box of cleft ``cleft_id`` found by scanning outward from ``point``.

    A window around ``point`` doubles until the cleft no longer touches its faces (or
    the window is the whole volume), so a click reads a few thousand voxels, not the
    volume. Returns the bounding box in volume coordinates.

    Args:
        clefts: (z, y, x) cleft labels, any array read by boxes (numpy, zarr, dask).
        cleft_id: the cleft.
        point: a voxel at or near the cleft.
        start_half: half the first window in y and x (an eighth of it, at least 2, in z).

    Raises:
        AvanInputError: the cleft has no voxel near ``point``.
    """
    shape = tuple(int(n) for n in clefts.shape)
    half = [max(2, start_half // 8), start_half, start_half]
    while True:
        window = tuple(
            slice(max(0, int(p) - h), min(n, int(p) + h + 1))
            for p, h, n in zip(point, half, shape, strict=True)
        )
        hits = np.argwhere(np.asarray(clefts[window]) == cleft_id)
        if hits.size == 0:
            raise AvanInputError(f"cleft {cleft_id} has no voxel near {tuple(point)}")
        lo = hits.min(axis=0)
        hi = hits.max(axis=0) + 1
        full = all(w.start == 0 and w.stop == n for w, n in zip(window, shape, strict=True))
        touches = any(
            (lo[a] == 0 and window[a].start > 0)
            or (hi[a] == window[a].stop - window[a].start and window[a].stop < shape[a])
            for a in range(3)
        )
        if full or not touches:
            begin = [w.start + int(b) for w, b in zip(window, lo, strict=True)]
            end = [w.start + int(e) for w, e in zip(window, hi, strict=True)]
            return (
                slice(begin[0], end[0]),
                slice(begin[1], end[1]),
                slice(begin[2], end[2]),
            )
        half = [h * 2 for h in half]


def clefts_in_box(clefts: Any, box: Box) -> dict[int, tuple[int, int, int]]:
    """Every cleft with a voxel in ``box``, with one such voxel (volume coordinates).

    ``clefts`` is any (z, y, x) label array; only ``box`` is read.
    """
    view = np.asarray(clefts[box])
    flat = view.ravel()
    nonzero = np.flatnonzero(flat)
    ids, first = np.unique(flat[nonzero], return_index=True)
    corner = box_offset(box)
    points: dict[int, tuple[int, int, int]] = {}
    for cid, index in zip(ids.tolist(), nonzero[first].tolist(), strict=True):
        z, y, x = np.unravel_index(index, view.shape)
        points[int(cid)] = (int(z + corner[0]), int(y + corner[1]), int(x + corner[2]))
    return points


def inscribed_ellipsoid(shape: Sequence[int]) -> np.ndarray:
    """Boolean mask of the ellipsoid inscribed in a box (in voxels, so about one patch
    around the cleft): partners are shown as rounded pieces near their synapse rather
    than cut by the box's faces."""
    axes = np.ogrid[tuple(slice(0, int(n)) for n in shape)]
    total = np.zeros(tuple(int(n) for n in shape), float)
    for grid, n in zip(axes, shape, strict=True):
        half = max(int(n) / 2, 0.5)
        total = total + ((grid + 0.5 - int(n) / 2) / half) ** 2
    return total <= 1.0


def shift_points(table: pd.DataFrame, offset: Sequence[int] | np.ndarray) -> pd.DataFrame:
    """Rows of an edge or cleft table made in a crop, moved to volume coordinates
    (``offset`` is the crop's corner): every point and box column shifts, nothing else."""
    out = table.copy()
    for prefix in _POINT_PREFIXES:
        for axis, delta in zip(("z", "y", "x"), offset, strict=True):
            column = f"{prefix}{axis}"
            if column in out.columns:
                out[column] = out[column] + int(delta)
    return out
