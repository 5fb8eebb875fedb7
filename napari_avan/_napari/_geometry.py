"""Where things are: layer voxel sizes, the visible region, boxes around a cleft.

The functions that do the arithmetic take plain numbers (camera centre and zoom, canvas
size, layer scale) so they are tested without a viewer; thin wrappers read those numbers
from napari objects.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from napari_avan.types import AvanInputError, VoxelSize, check_voxel_size

Box = tuple[slice, slice, slice]


def layer_voxel_size(layer: Any) -> VoxelSize:
    """The (z, y, x) voxel size in nm of a 3D layer: its metadata, else its scale.

    Raises:
        AvanInputError: the layer is not 3D, or its scale is napari's default (1, 1, 1)
            and no voxel size is recorded.
    """
    check_volume_layer(layer)
    stored = (layer.metadata or {}).get("voxel_size_nm")
    if stored is not None:
        return check_voxel_size(stored, what=f"voxel size of layer '{layer.name}'")
    scale = tuple(float(s) for s in layer.scale)
    if all(s == 1.0 for s in scale):
        raise AvanInputError(
            f"layer '{layer.name}' has no voxel size: set its scale in nm, e.g. "
            f"viewer.layers['{layer.name}'].scale = (40, 4, 4), or open it with the "
            "napari-avan reader"
        )
    return check_voxel_size(scale, what=f"scale of layer '{layer.name}'")


def check_volume_layer(layer: Any) -> None:
    """Raise a clear error unless ``layer`` holds a single-channel (z, y, x) volume."""
    if layer is None:
        raise AvanInputError("no layer chosen: open a volume first (File > Open, or a sample)")
    if getattr(layer, "rgb", False):
        raise AvanInputError(f"layer '{layer.name}' is RGB: EM must be a greyscale volume")
    if layer.ndim != 3:
        raise AvanInputError(
            f"layer '{layer.name}' is {layer.ndim}D: napari-avan needs a (z, y, x) volume"
        )


def check_aligned(*layers: Any) -> tuple[int, ...]:
    """Check that volume layers share shape and voxel size; return the shape.

    Raises:
        AvanInputError: naming the two layers that differ and how.
    """
    first = layers[0]
    shape = tuple(int(n) for n in first.data.shape)
    voxel = layer_voxel_size(first)
    for other in layers[1:]:
        other_shape = tuple(int(n) for n in other.data.shape)
        if other_shape != shape:
            raise AvanInputError(
                f"layers '{first.name}' {shape} and '{other.name}' {other_shape} differ in "
                "shape: choose layers of the same volume"
            )
        other_voxel = layer_voxel_size(other)
        if not np.allclose(other_voxel, voxel):
            raise AvanInputError(
                f"layers '{first.name}' ({voxel} nm) and '{other.name}' ({other_voxel} nm) "
                "differ in voxel size: set their scales to the same voxel size"
            )
        if not np.allclose(np.asarray(other.translate), np.asarray(first.translate)):
            raise AvanInputError(
                f"layers '{first.name}' and '{other.name}' are not aligned (different "
                "translate): choose layers of the same volume"
            )
    return shape


def _clip_range(begin: float, end: float, size: int) -> slice:
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
            box.append(_clip_range(lo + 0.5, hi + 0.5, n))
        else:
            index = int(np.clip(np.round((float(point_world[axis]) - t) / s), 0, n - 1))
            below = max(0, depth - 1) // 2
            box.append(_clip_range(index - below, index - below + max(1, depth), n))
    return (box[0], box[1], box[2])


def camera_of(viewer: Any) -> Any:
    """The viewer's camera (``viewer.scene.camera`` since napari 0.9, else ``viewer.camera``)."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None else viewer.camera


def viewer_viewport_box(viewer: Any, layer: Any, depth: int = 1) -> Box:
    """:func:`viewport_box` for ``layer`` as ``viewer`` shows it now."""
    canvas = tuple(viewer.canvas.size)  # (height, width) in screen pixels
    return viewport_box(
        layer.data.shape,
        layer.scale,
        layer.translate,
        center_world=camera_of(viewer).center,
        zoom=float(camera_of(viewer).zoom),
        canvas_hw=canvas,
        displayed=list(viewer.dims.displayed),
        point_world=viewer.dims.point,
        depth=depth,
    )


def shapes_box(shapes_layer: Any, layer: Any, depth: int = 1) -> Box:
    """The box spanned by the selected (else the last) shape of a Shapes layer, in ``layer``'s
    voxels; an axis the shape is flat along (a rectangle drawn on one section) gets ``depth``
    sections around it.

    Raises:
        AvanInputError: the Shapes layer is empty or the box misses the volume.
    """
    if shapes_layer is None or len(shapes_layer.data) == 0:
        raise AvanInputError("draw a box first: add a Shapes layer and draw a rectangle")
    chosen = sorted(shapes_layer.selected_data) or [len(shapes_layer.data) - 1]
    vertices = np.concatenate([np.asarray(shapes_layer.data[i]) for i in chosen])
    if vertices.shape[1] != 3:
        raise AvanInputError(
            f"the Shapes layer '{shapes_layer.name}' is {vertices.shape[1]}D: draw the box "
            "while the volume is shown in 3D coordinates (z, y, x)"
        )
    world = np.stack([shapes_layer.data_to_world(v) for v in vertices])
    data = np.stack([np.asarray(layer.world_to_data(w)) for w in world])
    lo, hi = data.min(axis=0), data.max(axis=0)
    box: list[slice] = []
    for axis, n in enumerate(layer.data.shape):
        if hi[axis] - lo[axis] < 1:
            centre = int(np.round(lo[axis]))
            below = max(0, depth - 1) // 2
            box.append(_clip_range(centre - below, centre - below + max(1, depth), n))
        else:
            box.append(_clip_range(lo[axis], hi[axis] + 1, n))
    if any(s.stop <= s.start for s in box):
        raise AvanInputError("the drawn box lies outside the volume: draw it over the image")
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
