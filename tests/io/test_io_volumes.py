"""Volumes: round trips in every format, lazy reading, shape and voxel-size errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import dask.array as da
import h5py
import numpy as np
import pytest
import tifffile
import zarr

from napari_avan.io import read_volume, write_volume
from napari_avan.types import AvanInputError, Volume, check_same_shape

VOXEL = (50.0, 4.6, 4.6)

# format name, file name
FORMATS = [
    ("zarr", "vol.zarr"),
    ("zarr2", "vol.zarr"),
    ("ome-zarr", "vol.ome.zarr"),
    ("ome-zarr2", "vol.zarr"),
    ("hdf5", "vol.h5"),
    ("cremi", "vol.hdf"),
    ("tiff", "vol.tif"),
    ("npy", "vol.npy"),
    ("npz", "vol.npz"),
]

DTYPES = ["uint8", "uint32", "uint64", "float32"]


def make(dtype: str, shape: tuple[int, int, int] = (3, 20, 17)) -> np.ndarray:
    rng = np.random.default_rng(0)
    if np.dtype(dtype).kind == "f":
        return rng.random(shape, dtype=np.float32).astype(dtype)
    high = 255 if dtype == "uint8" else 2**31
    data = rng.integers(0, high, size=shape).astype(dtype)
    if dtype == "uint64":
        data[0, 0, 0] = 2**63 + 12345  # beyond int64 and float64 precision
    return data


@pytest.mark.parametrize(("fmt", "name"), FORMATS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_round_trip(tmp_path: Path, fmt: str, name: str, dtype: str) -> None:
    data = make(dtype)
    path = write_volume(tmp_path / name, data, VOXEL, format=fmt)
    volume = read_volume(str(path), lazy=False)
    assert isinstance(volume.data, np.ndarray)
    assert volume.dtype == data.dtype
    np.testing.assert_array_equal(volume.data, data)
    assert volume.voxel_size_nm == VOXEL
    assert volume.shape == data.shape


@pytest.mark.parametrize(("fmt", "name"), FORMATS)
def test_awkward_voxel_size_round_trips_exactly(tmp_path: Path, fmt: str, name: str) -> None:
    voxel = (40.000000000000014, 3.8461538461538463, 0.1 + 0.2)
    path = write_volume(tmp_path / name, make("uint8"), voxel, format=fmt)
    assert read_volume(str(path)).voxel_size_nm == voxel


@pytest.mark.parametrize(("fmt", "name"), FORMATS)
def test_no_voxel_size_reads_back_none(tmp_path: Path, fmt: str, name: str) -> None:
    path = write_volume(tmp_path / name, make("uint8"), None, format=fmt)
    assert read_volume(str(path)).voxel_size_nm is None
    assert read_volume(str(path), (8, 8, 8)).voxel_size_nm == (8.0, 8.0, 8.0)


def test_single_section_stack_stays_3d(tmp_path: Path) -> None:
    data = make("uint8", (1, 20, 17))
    for name in ("one.tif", "one.zarr", "one.h5", "one.npz"):
        path = write_volume(tmp_path / name, data, VOXEL)
        assert read_volume(str(path)).shape == (1, 20, 17)


def test_zarr_reads_lazily_as_dask(tmp_path: Path) -> None:
    data = make("uint32", (4, 20, 17))
    path = write_volume(tmp_path / "vol.zarr", data, VOXEL, chunks=(2, 10, 10))
    volume = read_volume(str(path))
    assert isinstance(volume.data, da.Array)
    assert volume.data.chunksize == (2, 10, 10)
    np.testing.assert_array_equal(volume.data.compute(), data)
    eager = read_volume(str(path), lazy=False)
    assert isinstance(eager.data, np.ndarray)


def test_chunked_hdf5_reads_lazily_and_pickles(tmp_path: Path) -> None:
    import pickle

    data = make("uint8", (4, 20, 17))
    path = write_volume(tmp_path / "vol.h5", data, VOXEL, chunks=(1, 20, 17))
    volume = read_volume(str(path))
    assert isinstance(volume.data, da.Array)
    copy = pickle.loads(pickle.dumps(volume.data))
    np.testing.assert_array_equal(copy.compute(), data)


def test_writes_dask_input(tmp_path: Path) -> None:
    data = make("uint32", (4, 20, 17))
    lazy = da.from_array(data, chunks=(3, 7, 5))
    for name in ("d.zarr", "d.h5", "d.tif"):
        path = write_volume(tmp_path / name, lazy, VOXEL, chunks=(2, 10, 10))
        np.testing.assert_array_equal(read_volume(str(path), lazy=False).data, data)


def test_zarr_group_member_and_key_errors(tmp_path: Path) -> None:
    store = tmp_path / "out.zarr"
    image = make("uint8")
    clefts = make("uint32")
    write_volume(store, image, VOXEL, key="image")
    write_volume(store, clefts, VOXEL, key="labels/clefts")
    np.testing.assert_array_equal(read_volume(f"{store}:labels/clefts").data.compute(), clefts)
    # a path into the store is the same as PATH:KEY
    assert read_volume(str(store / "labels" / "clefts")).voxel_size_nm == VOXEL
    with pytest.raises(
        AvanInputError, match=r"key 'foo' not in .*; available: image, labels/clefts"
    ):
        read_volume(f"{store}:foo")
    with pytest.raises(AvanInputError, match=r"several arrays \(image, labels/clefts\)"):
        read_volume(str(store))
    # a group with one array needs no key
    assert read_volume(f"{store}:labels").shape == clefts.shape


def test_adding_to_an_existing_v2_group_keeps_v2(tmp_path: Path) -> None:
    store = tmp_path / "v2.zarr"
    write_volume(store, make("uint8"), VOXEL, format="zarr2", key="image")
    write_volume(store, make("uint32"), VOXEL, key="clefts")
    assert (store / "clefts" / ".zarray").is_file()
    assert read_volume(f"{store}:clefts").attrs["zarr_format"] == 2
    write_volume(tmp_path / "v3.zarr", make("uint8"), VOXEL, key="a")  # a new store is v3
    with pytest.raises(AvanInputError, match="zarr v3 group: cannot add a zarr v2 array"):
        write_volume(tmp_path / "v3.zarr", make("uint8"), VOXEL, format="zarr2", key="b")


@pytest.mark.filterwarnings("ignore:Consolidated metadata:UserWarning")
def test_consolidated_group_sees_new_member(tmp_path: Path) -> None:
    store = tmp_path / "c.zarr"
    write_volume(store, make("uint8"), VOXEL, key="image")
    zarr.consolidate_metadata(str(store))
    write_volume(store, make("uint32"), VOXEL, key="clefts")
    group = zarr.open_group(str(store), mode="r")
    assert sorted(group.array_keys()) == ["clefts", "image"]


def test_key_into_a_zarr_array_is_refused(tmp_path: Path) -> None:
    path = write_volume(tmp_path / "a.zarr", make("uint8"), VOXEL)
    with pytest.raises(AvanInputError, match=r"is a zarr array, not a group: drop ':raw'"):
        read_volume(f"{path}:raw")
    with pytest.raises(AvanInputError, match="is a zarr array, not a group: cannot add 'raw'"):
        write_volume(path, make("uint8"), VOXEL, key="raw")


def test_write_accepts_a_volume(tmp_path: Path) -> None:
    volume = Volume(make("uint32"), VOXEL)
    path = write_volume(tmp_path / "v.zarr", volume, volume.voxel_size_nm)
    np.testing.assert_array_equal(read_volume(str(path), lazy=False).data, volume.data)


def test_hdf5_keys(tmp_path: Path) -> None:
    path = tmp_path / "x.h5"
    image = make("uint8")
    seg = make("uint64")
    write_volume(path, image, VOXEL, format="cremi")
    write_volume(path, seg, VOXEL, key="volumes/labels/neuron_ids")
    back = read_volume(f"{path}:volumes/labels/neuron_ids", lazy=False, role="segmentation")
    np.testing.assert_array_equal(back.data, seg)
    assert back.dtype == np.uint64
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(f["volumes/raw"].attrs["resolution"], VOXEL)
    with pytest.raises(
        AvanInputError, match=r"key 'volumes/rwa' not in .*available: volumes/labels"
    ):
        read_volume(f"{path}:volumes/rwa")
    with pytest.raises(AvanInputError, match="several arrays"):
        read_volume(str(path))
    with pytest.raises(AvanInputError, match="several arrays"):
        read_volume(f"{path}:volumes")


def test_hdf5_voxel_size_conventions(tmp_path: Path) -> None:
    path = tmp_path / "ilastik.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("exported_data", data=np.zeros((2, 20, 20), np.uint8))
        f["exported_data"].attrs["element_size_um"] = [0.04, 0.004, 0.004]
    assert read_volume(str(path)).voxel_size_nm == (40.0, 4.0, 4.0)


def test_npz_keys_and_voxel_size(tmp_path: Path) -> None:
    path = tmp_path / "x.npz"
    image = make("uint8")
    seg = make("uint32")
    np.savez(path, image=image, segmentation=seg, voxel_size_nm=np.array(VOXEL))
    volume = read_volume(f"{path}:segmentation")
    np.testing.assert_array_equal(volume.data, seg)
    assert volume.voxel_size_nm == VOXEL
    with pytest.raises(
        AvanInputError, match=r"key 'foo' not in .*x\.npz; available: image, segmentation"
    ):
        read_volume(f"{path}:foo")
    with pytest.raises(AvanInputError, match=r"several arrays \(image, segmentation\)"):
        read_volume(str(path))
    # adding a key keeps the other arrays
    clefts = make("uint32")
    write_volume(path, clefts, VOXEL, key="clefts")
    with np.load(path) as npz:
        assert sorted(npz.files) == ["clefts", "image", "segmentation", "voxel_size_nm"]
    with pytest.raises(AvanInputError, match="one voxel size"):
        write_volume(path, clefts, (1, 1, 1), key="other")


def test_npy_sidecar_holds_voxel_size(tmp_path: Path) -> None:
    path = write_volume(tmp_path / "x.npy", make("uint8"), VOXEL)
    meta = json.loads((tmp_path / "x.npy.json").read_text())
    assert meta["voxel_size_nm"] == list(VOXEL)
    write_volume(path, make("uint8"), None, overwrite=True)
    assert not (tmp_path / "x.npy.json").exists()


def test_imagej_tiff_from_other_tools(tmp_path: Path) -> None:
    path = tmp_path / "fiji.tif"
    data = make("uint8")
    tifffile.imwrite(
        path,
        data,
        imagej=True,
        resolution=(1 / 0.004, 1 / 0.005),
        metadata={"spacing": 0.04, "unit": "micron", "axes": "ZYX"},
    )
    volume = read_volume(str(path))
    np.testing.assert_array_equal(volume.data, data)
    assert volume.voxel_size_nm == pytest.approx((40.0, 5.0, 4.0), rel=1e-6)


def test_multipage_tiff_is_z(tmp_path: Path) -> None:
    path = tmp_path / "pages.tif"
    data = make("uint8", (3, 20, 17))
    with tifffile.TiffWriter(path) as tif:
        for section in data:
            tif.write(section, contiguous=False)
    np.testing.assert_array_equal(read_volume(str(path)).data, data)


def test_tiff_has_no_keys(tmp_path: Path) -> None:
    path = write_volume(tmp_path / "x.tif", make("uint8"), VOXEL)
    with pytest.raises(AvanInputError, match="has no keys"):
        read_volume(f"{path}:raw")


def test_2d_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "section.npy"
    np.save(path, np.zeros((20, 30), np.uint8))
    with pytest.raises(AvanInputError, match=r"is 2D \(Y, X\).*give a 3D \(z, y, x\) stack"):
        read_volume(str(path))
    tif = tmp_path / "section.tif"
    tifffile.imwrite(tif, np.zeros((20, 30), np.uint8))
    with pytest.raises(AvanInputError, match="is 2D"):
        read_volume(str(tif))


@pytest.mark.parametrize("shape", [(20, 30, 3), (20, 30, 4), (5, 20, 30, 3)])
def test_rgb_is_refused(tmp_path: Path, shape: tuple[int, ...]) -> None:
    path = tmp_path / "rgb.npy"
    np.save(path, np.zeros(shape, np.uint8))
    with pytest.raises(AvanInputError, match=r"RGB.*convert it to grayscale"):
        read_volume(str(path))


def test_rgb_tiff_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "rgb.tif"
    tifffile.imwrite(path, np.zeros((5, 6, 3), np.uint8), photometric="rgb")
    with pytest.raises(AvanInputError, match="RGB"):
        read_volume(str(path))


def test_4d_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "tczyx.npy"
    np.save(path, np.zeros((2, 3, 4, 5), np.uint8))
    with pytest.raises(AvanInputError, match="has 4 dimensions"):
        read_volume(str(path))


def test_float_labels_are_refused(tmp_path: Path) -> None:
    path = write_volume(tmp_path / "x.npy", make("float32"), VOXEL)
    with pytest.raises(
        AvanInputError, match=r"segmentation .* dtype float32: labels must be integer"
    ):
        read_volume(str(path), role="segmentation")


@pytest.mark.parametrize("bad", [(0, 4, 4), (40, -4, 4), (40, 4), ("a", 4, 4)])
def test_bad_voxel_size(tmp_path: Path, bad: Any) -> None:
    path = write_volume(tmp_path / "x.npy", make("uint8"), VOXEL)
    with pytest.raises(AvanInputError, match="voxel size"):
        read_volume(str(path), bad)
    with pytest.raises(AvanInputError, match="voxel size"):
        write_volume(tmp_path / "y.npy", make("uint8"), bad)
    assert not (tmp_path / "y.npy").exists()


def test_bad_voxel_size_in_metadata(tmp_path: Path) -> None:
    path = tmp_path / "x.h5"
    with h5py.File(path, "w") as f:
        f["raw"] = np.zeros((2, 20, 20), np.uint8)
        f["raw"].attrs["resolution"] = [0.0, 4.0, 4.0]
    with pytest.raises(AvanInputError, match=r"voxel size in .*--voxel-size"):
        read_volume(str(path))
    assert read_volume(str(path), (40, 4, 4)).voxel_size_nm == (40.0, 4.0, 4.0)


def test_write_refuses_2d_and_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(AvanInputError, match="is 2D"):
        write_volume(tmp_path / "x.zarr", np.zeros((4, 4)), VOXEL)
    with pytest.raises(AvanInputError, match="cannot tell the format"):
        write_volume(tmp_path / "x.png", make("uint8"), VOXEL)
    with pytest.raises(AvanInputError, match="unknown output format 'png'"):
        write_volume(tmp_path / "x.zarr", make("uint8"), VOXEL, format="png")
    assert list(tmp_path.iterdir()) == []


def test_check_same_shape() -> None:
    a = Volume(np.zeros((2, 3, 4)))
    b = Volume(np.zeros((2, 3, 5)))
    check_same_shape(image=a, segmentation=a)
    with pytest.raises(
        AvanInputError, match=r"segmentation has shape \(2, 3, 5\) but image has shape \(2, 3, 4\)"
    ):
        check_same_shape(image=a, segmentation=b)
