"""Where things are, read from napari objects: layer voxel sizes and checks, the visible
region, a drawn box.

The arithmetic (:func:`napari_avan.core.geometry.viewport_box` and the other box helpers)
takes plain numbers (camera centre and zoom, canvas size, layer scale) and lives in
:mod:`napari_avan.core.geometry`, where it is tested without a viewer; the functions here
are thin wrappers that read those numbers from layers and viewers.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import numpy as np

from napari_avan.core.geometry import Box, clip_range, viewport_box
from napari_avan.types import AvanInputError, VoxelSize, check_voxel_size


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


def released_without_drag(event: Any) -> Generator[None, None, bool]:
    """Inside a napari mouse-drag callback (a generator): wait for the button's release;
    True when the mouse did not move in between (a click, not a drag). Use as
    ``if (yield from released_without_drag(event)): ...``."""
    dragged = False
    yield
    while event.type == "mouse_move":
        dragged = True
        yield
    return not dragged


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
            box.append(clip_range(centre - below, centre - below + max(1, depth), n))
        else:
            box.append(clip_range(lo[axis], hi[axis] + 1, n))
    if any(s.stop <= s.start for s in box):
        raise AvanInputError("the drawn box lies outside the volume: draw it over the image")
    return (box[0], box[1], box[2])
