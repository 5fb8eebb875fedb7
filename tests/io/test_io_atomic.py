"""Atomic writes: no overwrite unless asked, and a failed write leaves nothing behind."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd
import pytest
import zarr

from napari_avan.io import read_volume, write_table, write_volume
from napari_avan.types import AvanInputError

VOXEL = (40.0, 4.0, 4.0)
FILES = ["v.zarr", "v.ome.zarr", "v.h5", "v.tif", "v.npy", "v.npz"]


def _first() -> np.ndarray:
    return np.ones((2, 20, 17), np.uint8)


def _second() -> np.ndarray:
    return np.full((2, 20, 17), 7, np.uint8)


def _listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def _disk_full(*args: Any, **kwargs: Any) -> Any:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


async def _disk_full_async(*args: Any, **kwargs: Any) -> Any:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("name", FILES)
def test_overwrite_refused_and_original_untouched(tmp_path: Path, name: str) -> None:
    path = write_volume(tmp_path / name, _first(), VOXEL)
    before = _listing(tmp_path)
    with pytest.raises(AvanInputError, match=rf"{name} already exists.*--overwrite"):
        write_volume(path, _second(), VOXEL)
    assert _listing(tmp_path) == before
    np.testing.assert_array_equal(read_volume(str(path), lazy=False).data, _first())
    write_volume(path, _second(), VOXEL, overwrite=True)
    np.testing.assert_array_equal(read_volume(str(path), lazy=False).data, _second())
    assert _listing(tmp_path) == before  # no temporaries or old copies left


@pytest.mark.parametrize(
    ("name", "key"), [("g.zarr", "clefts"), ("f.h5", "clefts"), ("n.npz", "clefts")]
)
def test_existing_key_refused(tmp_path: Path, name: str, key: str) -> None:
    path = write_volume(tmp_path / name, _first(), VOXEL, key=key)
    write_volume(path, _first(), VOXEL, key="other")
    with pytest.raises(AvanInputError, match=rf"key '{key}' in .*{name} already exists.*overwrite"):
        write_volume(path, _second(), VOXEL, key=key)
    np.testing.assert_array_equal(read_volume(f"{path}:{key}", lazy=False).data, _first())
    write_volume(path, _second(), VOXEL, key=key, overwrite=True)
    np.testing.assert_array_equal(read_volume(f"{path}:{key}", lazy=False).data, _second())
    np.testing.assert_array_equal(read_volume(f"{path}:other", lazy=False).data, _first())


@pytest.mark.parametrize(
    ("name", "target", "attribute", "is_async"),
    [
        ("v.zarr", zarr.storage.LocalStore, "set", True),
        ("v.ome.zarr", zarr.storage.LocalStore, "set", True),
        ("v.h5", h5py.Dataset, "__setitem__", False),
        ("v.npy", np, "save", False),
        ("v.npz", np, "savez_compressed", False),
    ],
)
def test_disk_full_leaves_nothing(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    target: Any,
    attribute: str,
    is_async: bool,
) -> None:
    monkeypatch.setattr(target, attribute, _disk_full_async if is_async else _disk_full)
    with pytest.raises(AvanInputError, match=rf"could not write .*{name}: No space left on device"):
        write_volume(tmp_path / name, _first(), VOXEL)
    assert _listing(tmp_path) == []


def test_disk_full_tiff_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tifffile

    def partial_write(path: Any, *args: Any, **kwargs: Any) -> None:
        Path(path).write_bytes(b"II*\x00 half a tiff")
        _disk_full()

    monkeypatch.setattr(tifffile, "imwrite", partial_write)
    with pytest.raises(AvanInputError, match="No space left on device"):
        write_volume(tmp_path / "v.tif", _first(), VOXEL)
    assert _listing(tmp_path) == []


def test_failed_key_write_keeps_the_group(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = write_volume(tmp_path / "g.zarr", _first(), VOXEL, key="image")
    h5 = write_volume(tmp_path / "f.h5", _first(), VOXEL, key="image")
    before = _listing(tmp_path)
    h5_bytes = h5.read_bytes()
    monkeypatch.setattr(zarr.storage.LocalStore, "set", _disk_full_async)
    monkeypatch.setattr(h5py.Dataset, "__setitem__", _disk_full)
    with pytest.raises(AvanInputError, match="No space left on device"):
        write_volume(store, _second(), VOXEL, key="labels/clefts")
    with pytest.raises(AvanInputError, match="No space left on device"):
        write_volume(h5, _second(), VOXEL, key="labels/clefts")
    monkeypatch.undo()
    assert _listing(tmp_path) == before  # intermediate group "labels" removed too
    assert h5.read_bytes() == h5_bytes
    np.testing.assert_array_equal(read_volume(f"{store}:image", lazy=False).data, _first())


def test_failed_rename_keeps_the_original(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_volume(tmp_path / "v.npy", _first(), VOXEL)
    table = write_table(pd.DataFrame({"a": [1]}), tmp_path / "t.csv")
    before = _listing(tmp_path)
    monkeypatch.setattr(os, "replace", _disk_full)
    with pytest.raises(AvanInputError, match=r"could not write .*v\.npy"):
        write_volume(path, _second(), VOXEL, overwrite=True)
    with pytest.raises(AvanInputError, match=r"could not write .*t\.csv"):
        write_table(pd.DataFrame({"a": [2]}), table, overwrite=True)
    monkeypatch.undo()
    assert _listing(tmp_path) == before
    np.testing.assert_array_equal(read_volume(str(path)).data, _first())
    assert table.read_text() == "a\n1\n"


def test_missing_output_folder(tmp_path: Path) -> None:
    with pytest.raises(AvanInputError, match="does not exist; create it first"):
        write_volume(tmp_path / "no" / "v.zarr", _first(), VOXEL)
