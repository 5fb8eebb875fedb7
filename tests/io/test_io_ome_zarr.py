"""OME-Zarr: NGFF 0.5 on zarr v3 and 0.4 on zarr v2, written by us and by hand."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytest
import zarr

from napari_avan.io import read_volume, write_volume
from napari_avan.types import AvanInputError

VOXEL = (50.0, 4.6, 4.6)


def _image(shape: tuple[int, ...] = (3, 20, 17)) -> np.ndarray:
    return np.arange(int(np.prod(shape)), dtype=np.uint16).reshape(shape)


def test_written_v05_metadata(tmp_path: Path) -> None:
    path = write_volume(tmp_path / "img.ome.zarr", _image(), VOXEL)
    meta = json.loads((path / "zarr.json").read_text())
    ome = meta["attributes"]["ome"]
    assert meta["zarr_format"] == 3
    assert ome["version"] == "0.5"
    (multiscale,) = ome["multiscales"]
    assert [a["name"] for a in multiscale["axes"]] == ["z", "y", "x"]
    assert {a["unit"] for a in multiscale["axes"]} == {"nanometer"}
    assert multiscale["datasets"] == [
        {"path": "0", "coordinateTransformations": [{"type": "scale", "scale": list(VOXEL)}]}
    ]
    level = json.loads((path / "0" / "zarr.json").read_text())
    assert level["dimension_names"] == ["z", "y", "x"]


def test_written_v04_metadata(tmp_path: Path) -> None:
    path = write_volume(tmp_path / "img.zarr", _image(), VOXEL, format="ome-zarr2")
    attrs = json.loads((path / ".zattrs").read_text())
    (multiscale,) = attrs["multiscales"]
    assert multiscale["version"] == "0.4"
    assert multiscale["datasets"][0]["coordinateTransformations"][0]["scale"] == list(VOXEL)
    assert (path / "0" / ".zarray").is_file()


@pytest.mark.parametrize("fmt", ["ome-zarr", "ome-zarr2"])
def test_level_by_key_and_image_inside_a_group(tmp_path: Path, fmt: str) -> None:
    data = _image()
    store = tmp_path / "project.zarr"
    write_volume(store, data, VOXEL, format=fmt, key="raw")
    for spec in (f"{store}:raw", f"{store}:raw/0", str(store / "raw"), str(store)):
        volume = read_volume(spec, lazy=False)
        np.testing.assert_array_equal(volume.data, data)
        assert volume.voxel_size_nm == VOXEL
        assert volume.attrs["ome_level"] == "0"


def _hand_written(path: Path, zarr_format: Literal[2, 3], unit: str | None) -> np.ndarray:
    """A 5D (t, c, z, y, x) two-level image as other tools write it, levels s0 and s1."""
    data = np.arange(2 * 8 * 10, dtype=np.uint8).reshape(1, 1, 2, 8, 10)
    space: dict[str, Any] = {"type": "space"}
    if unit is not None:
        space["unit"] = unit
    multiscale: dict[str, Any] = {
        "axes": [
            {"name": "t", "type": "time"},
            {"name": "c", "type": "channel"},
            {"name": "z", **space},
            {"name": "y", **space},
            {"name": "x", **space},
        ],
        "datasets": [
            {
                "path": "s0",
                "coordinateTransformations": [
                    {"type": "scale", "scale": [1.0, 1.0, 0.05, 0.0023, 0.0023]},
                    {"type": "translation", "translation": [0.0, 0.0, 0.1, 0.0, 0.0]},
                ],
            },
            {
                "path": "s1",
                "coordinateTransformations": [
                    {"type": "scale", "scale": [1.0, 1.0, 0.05, 0.0046, 0.0046]}
                ],
            },
        ],
        # a multiscale-wide scale multiplies each level's
        "coordinateTransformations": [{"type": "scale", "scale": [1.0, 1.0, 1.0, 2.0, 2.0]}],
    }
    if zarr_format == 2:
        attrs: dict[str, Any] = {"multiscales": [{"version": "0.4", **multiscale}]}
    else:
        attrs = {"ome": {"version": "0.5", "multiscales": [multiscale]}}
    group = zarr.open_group(str(path), mode="w", zarr_format=zarr_format, attributes=attrs)
    group.create_array("s0", data=data, chunks=(1, 1, 1, 8, 10))
    group.create_array("s1", data=data[..., ::2, ::2], chunks=(1, 1, 1, 4, 5))
    return data


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_hand_written_micrometer_5d(tmp_path: Path, zarr_format: Literal[2, 3]) -> None:
    path = tmp_path / "other.ome.zarr"
    data = _hand_written(path, zarr_format, "micrometer")
    volume = read_volume(str(path))
    assert volume.shape == (2, 8, 10)
    np.testing.assert_array_equal(volume.data.compute(), data[0, 0])
    assert volume.voxel_size_nm == (50.0, 4.6, 4.6)
    assert volume.attrs["offset_nm"] == [100.0, 0.0, 0.0]
    assert volume.attrs["squeezed_axes"] == ["t", "c"]
    level1 = read_volume(f"{path}:s1")
    assert level1.shape == (2, 4, 5)
    assert level1.voxel_size_nm == (50.0, 9.2, 9.2)
    # a level may also be named by its index
    assert read_volume(f"{path}:1").shape == (2, 4, 5)


def test_hand_written_without_unit_has_no_voxel_size(tmp_path: Path) -> None:
    path = tmp_path / "nounit.ome.zarr"
    _hand_written(path, 3, None)
    volume = read_volume(str(path))
    assert volume.voxel_size_nm is None
    assert volume.attrs["ome_scale"] == [0.05, 0.0046, 0.0046]
    assert read_volume(str(path), (50, 4.6, 4.6)).voxel_size_nm == (50.0, 4.6, 4.6)


def test_missing_level_lists_levels(tmp_path: Path) -> None:
    path = tmp_path / "img.ome.zarr"
    _hand_written(path, 3, "micrometer")
    with pytest.raises(AvanInputError, match=r"key 's7' not in .*available: s0, s1"):
        read_volume(f"{path}:s7")


def test_multichannel_ome_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "two_channels.ome.zarr"
    multiscale: dict[str, Any] = {
        "axes": [
            {"name": "c", "type": "channel"},
            {"name": "z", "type": "space", "unit": "nanometer"},
            {"name": "y", "type": "space", "unit": "nanometer"},
            {"name": "x", "type": "space", "unit": "nanometer"},
        ],
        "datasets": [
            {"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [1, 8, 4, 4]}]}
        ],
    }
    group = zarr.open_group(
        str(path), mode="w", attributes={"ome": {"version": "0.5", "multiscales": [multiscale]}}
    )
    group.create_array("0", data=np.zeros((2, 3, 20, 20), np.uint8))
    with pytest.raises(AvanInputError, match=r"has 4 dimensions \(c, z, y, x\)"):
        read_volume(str(path))


@pytest.mark.parametrize(("fmt", "zarr_format"), [("ome-zarr", 3), ("ome-zarr2", 2)])
def test_labels_are_listed_as_ngff_label_images(
    tmp_path: Path, fmt: str, zarr_format: Literal[2, 3]
) -> None:
    image = np.arange(4 * 8 * 8, dtype=np.uint8).reshape(4, 8, 8)
    labels = (image % 3).astype(np.uint32)
    out = tmp_path / "img.ome.zarr"
    write_volume(out, image, (40.0, 4.0, 4.0), format=fmt)
    for name in ("clefts", "segmentation"):
        write_volume(out, labels, (40.0, 4.0, 4.0), format=fmt, key=f"labels/{name}")
    group = zarr.open_group(str(out / "labels"), mode="r")
    attrs = group.attrs.asdict()
    listed = attrs["ome"]["labels"] if zarr_format == 3 else attrs["labels"]
    assert listed == ["clefts", "segmentation"]
    label_attrs = zarr.open_group(str(out / "labels" / "clefts"), mode="r").attrs.asdict()
    holder = label_attrs["ome"] if zarr_format == 3 else label_attrs
    assert "image-label" in holder
    back = read_volume(f"{out}:labels/clefts", lazy=False)
    np.testing.assert_array_equal(back.data, labels)
    assert back.voxel_size_nm == (40.0, 4.0, 4.0)
