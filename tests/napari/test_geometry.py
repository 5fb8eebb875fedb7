"""Layer voxel sizes and layer checks on napari layers (the box arithmetic is tested
without napari in tests/core/test_geometry_boxes.py)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from napari_avan._napari._geometry import (
    check_aligned,
    check_volume_layer,
    layer_voxel_size,
)
from napari_avan.types import AvanInputError

# --------------------------------------------------------------------------- layer checks


def _image(shape: tuple[int, ...] = (4, 8, 8), **kwargs: Any) -> Any:
    import napari

    return napari.layers.Image(np.zeros(shape, dtype=np.uint8), **kwargs)


def _labels(shape: tuple[int, ...] = (4, 8, 8), **kwargs: Any) -> Any:
    import napari

    return napari.layers.Labels(np.zeros(shape, dtype=np.uint32), **kwargs)


def test_layer_voxel_size_prefers_metadata_over_scale() -> None:
    layer = _image(scale=(50, 5, 5), metadata={"voxel_size_nm": (40, 4, 4)}, name="em")
    assert layer_voxel_size(layer) == (40.0, 4.0, 4.0)
    # metadata also rescues a layer left at napari's default scale
    default = _labels(metadata={"voxel_size_nm": [45, 4.5, 4.5]})
    assert layer_voxel_size(default) == (45.0, 4.5, 4.5)


def test_layer_voxel_size_falls_back_on_the_scale() -> None:
    assert layer_voxel_size(_image(scale=(40, 4, 4))) == (40.0, 4.0, 4.0)
    assert layer_voxel_size(_labels(scale=(1, 4, 4))) == (1.0, 4.0, 4.0)


def test_default_scale_without_metadata_has_no_voxel_size() -> None:
    with pytest.raises(AvanInputError, match="no voxel size") as info:
        layer_voxel_size(_image(name="raw"))
    assert "'raw'" in str(info.value)


def test_bad_metadata_voxel_size_is_named() -> None:
    with pytest.raises(AvanInputError, match="voxel size of layer 'em'"):
        layer_voxel_size(_image(scale=(40, 4, 4), metadata={"voxel_size_nm": (0, 4, 4)}, name="em"))


def test_check_volume_layer() -> None:
    check_volume_layer(_image())  # a volume passes
    check_volume_layer(_labels())
    with pytest.raises(AvanInputError, match="2D"):
        check_volume_layer(_image((8, 8), name="flat"))
    with pytest.raises(AvanInputError, match="4D"):
        check_volume_layer(_labels((2, 4, 8, 8)))
    with pytest.raises(AvanInputError, match="2D"):
        layer_voxel_size(_labels((8, 8), scale=(4, 4)))
    with pytest.raises(AvanInputError, match="RGB"):
        check_volume_layer(_image((4, 8, 8, 3), rgb=True, name="colour"))
    with pytest.raises(AvanInputError, match="no layer"):
        check_volume_layer(None)


def test_check_aligned_returns_the_shared_shape() -> None:
    em = _image((4, 8, 9), scale=(40, 4, 4), name="em")
    seg = _labels((4, 8, 9), metadata={"voxel_size_nm": (40, 4, 4)}, name="seg")
    clefts = _labels((4, 8, 9), scale=(40, 4, 4), name="clefts")
    assert check_aligned(em, seg, clefts) == (4, 8, 9)
    assert check_aligned(em) == (4, 8, 9)


def test_check_aligned_names_a_shape_mismatch() -> None:
    em = _image((4, 8, 9), scale=(40, 4, 4), name="em")
    seg = _labels((4, 8, 8), scale=(40, 4, 4), name="seg")
    with pytest.raises(AvanInputError, match="differ in shape") as info:
        check_aligned(em, seg)
    assert "'em'" in str(info.value) and "'seg'" in str(info.value)


def test_check_aligned_names_a_voxel_size_mismatch() -> None:
    em = _image((4, 8, 9), scale=(40, 4, 4), name="em")
    seg = _labels((4, 8, 9), scale=(50, 4, 4), name="seg")
    with pytest.raises(AvanInputError, match="differ in voxel size"):
        check_aligned(em, seg)
    # metadata counts, not the scale
    meta = _labels((4, 8, 9), scale=(40, 4, 4), metadata={"voxel_size_nm": (40, 5, 5)})
    with pytest.raises(AvanInputError, match="differ in voxel size"):
        check_aligned(em, meta)
    # a layer without a voxel size is reported as such
    with pytest.raises(AvanInputError, match="no voxel size"):
        check_aligned(em, _labels((4, 8, 9)))


def test_check_aligned_names_a_translate_mismatch() -> None:
    em = _image((4, 8, 9), scale=(40, 4, 4), name="em")
    moved = _labels((4, 8, 9), scale=(40, 4, 4), translate=(0, 8, 0), name="moved")
    with pytest.raises(AvanInputError, match="not aligned"):
        check_aligned(em, moved)
