"""Volume specs: PATH or PATH:KEY, format detection and its errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from napari_avan.io import list_keys, parse_spec, write_volume
from napari_avan.types import AvanInputError


def test_plain_path_has_no_key(tmp_path: Path) -> None:
    path = tmp_path / "vol.npy"
    np.save(path, np.zeros((2, 3, 4), np.uint8))
    spec = parse_spec(str(path))
    assert spec.path == path
    assert spec.key is None
    assert spec.format == "npy"
    assert str(spec) == str(path)


def test_hdf5_key_with_slashes(tmp_path: Path) -> None:
    path = tmp_path / "sample_A.hdf"
    path.write_bytes(b"")
    spec = parse_spec(f"{path}:volumes/labels/clefts")
    assert spec.path == path
    assert spec.key == "volumes/labels/clefts"
    assert spec.format == "hdf5"


def test_zarr_group_member_and_ome_level(tmp_path: Path) -> None:
    store = tmp_path / "out.zarr"
    store.mkdir()
    (store / "zarr.json").write_text(json.dumps({"zarr_format": 3, "node_type": "group"}))
    member = parse_spec(f"{store}:clefts")
    assert (member.path, member.key, member.format) == (store, "clefts", "zarr")
    level = parse_spec(f"{store}:raw/0")
    assert (level.path, level.key) == (store, "raw/0")


def test_split_uses_the_colon_whose_left_side_exists(tmp_path: Path) -> None:
    folder = tmp_path / "run:3"
    folder.mkdir()
    path = folder / "x.npz"
    path.write_bytes(b"")
    spec = parse_spec(f"{path}:image")
    assert spec.path == path
    assert spec.key == "image"
    assert parse_spec(str(path)).key is None


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("a.h5", "hdf5"),
        ("a.hdf5", "hdf5"),
        ("a.hdf", "hdf5"),
        ("a.cremi", "hdf5"),
        ("a.npz", "npz"),
        ("a.npy", "npy"),
        ("a.tif", "tiff"),
        ("a.TIFF", "tiff"),
    ],
)
def test_format_from_suffix(tmp_path: Path, name: str, fmt: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"")
    assert parse_spec(str(path)).format == fmt


def test_zarr_folder_without_suffix_is_found_by_its_metadata(tmp_path: Path) -> None:
    store = tmp_path / "volume"
    store.mkdir()
    (store / ".zarray").write_text("{}")
    assert parse_spec(str(store)).format == "zarr"


def test_nonexistent_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.zarr"
    with pytest.raises(AvanInputError, match=r"nope\.zarr does not exist"):
        parse_spec(f"{missing}:raw")


def test_unknown_format_lists_supported(tmp_path: Path) -> None:
    path = tmp_path / "image.png"
    path.write_bytes(b"")
    with pytest.raises(AvanInputError, match=r"unknown volume format; supported: zarr.*HDF5.*TIFF"):
        parse_spec(str(path))
    folder = tmp_path / "plain_folder"
    folder.mkdir()
    with pytest.raises(AvanInputError, match="unknown volume format"):
        parse_spec(str(folder))


def test_list_keys(tmp_path: Path) -> None:
    data = np.zeros((2, 5, 6), np.uint32)
    store = tmp_path / "out.zarr"
    write_volume(store, data, None, key="clefts")
    write_volume(store, data, None, key="labels/segmentation")
    assert list_keys(store) == ["clefts", "labels/segmentation"]
    h5 = tmp_path / "x.h5"
    write_volume(h5, data, None, format="cremi")
    assert list_keys(h5) == ["volumes/raw"]
    assert list_keys(write_volume(tmp_path / "x.npy", data, None)) == []


def test_importing_io_stays_cheap() -> None:
    code = (
        "import sys, napari_avan.io\n"
        "heavy = [m for m in ('zarr', 'h5py', 'tifffile', 'dask', 'pandas', 'napari', 'qtpy',"
        " 'magicgui', 'torch') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
