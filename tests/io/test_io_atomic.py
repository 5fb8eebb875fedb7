"""Atomic writes: no overwrite unless asked, and a failed write leaves nothing behind."""

from __future__ import annotations

import errno
import os
import shutil
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

    def partial_write(out: Any, *args: Any, **kwargs: Any) -> None:
        out.write(b"II*\x00 half a tiff")
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


def _cut_first_chunk(store: Path, key: str) -> None:
    chunk = next(
        p for p in sorted((store / key).rglob("*")) if p.is_file() and p.name != "zarr.json"
    )
    chunk.write_bytes(chunk.read_bytes()[: chunk.stat().st_size // 2])


def test_corrupt_chunk_is_named_eagerly_and_lazily(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    store = write_volume(tmp_path / "g.zarr", rng.integers(0, 255, (4, 64, 64), np.uint8), VOXEL,
                         key="image")  # fmt: skip
    _cut_first_chunk(store, "image")
    with pytest.raises(
        AvanInputError, match=r"cannot read .*g\.zarr:image: .*truncated or corrupt"
    ):
        read_volume(f"{store}:image", lazy=False)
    lazy = read_volume(f"{store}:image", lazy=True)  # opening reads no chunk
    with pytest.raises(AvanInputError, match=r"g\.zarr:image.*truncated or corrupt"):
        lazy.data.sum().compute()


def test_garbled_hdf5_is_named(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    path = write_volume(tmp_path / "v.h5", rng.integers(0, 255, (4, 256, 256), np.uint8), VOXEL)
    data = bytearray(path.read_bytes())
    for i in range(4096, len(data), 7):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(AvanInputError, match=r"v\.h5.*(truncated or corrupt|HDF5)"):
        read_volume(str(path), lazy=False)


def test_hidden_temporaries_are_never_keys(tmp_path: Path) -> None:
    from napari_avan.io import list_keys

    store = write_volume(tmp_path / "g.zarr", _first(), VOXEL, key="image")
    shutil.copytree(store / "image", store / ".segmentation.tmp-0123")  # as a SIGKILL leaves it
    assert list_keys(store) == ["image"]
    np.testing.assert_array_equal(read_volume(str(store), lazy=False).data, _first())


def test_tables_land_together_or_not_at_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from napari_avan.io import write_tables

    first, second = tmp_path / "clefts.csv", tmp_path / "edges.csv"
    calls = []

    def fail_second(self: pd.DataFrame, path: Any, *args: Any, **kwargs: Any) -> None:
        calls.append(path)
        if len(calls) == 2:
            _disk_full()
        Path(path).write_text("a\n1\n")

    monkeypatch.setattr(pd.DataFrame, "to_csv", fail_second)
    with pytest.raises(AvanInputError, match=r"could not write .*edges\.csv: No space left"):
        write_tables({first: pd.DataFrame({"a": [1]}), second: pd.DataFrame({"a": [2]})})
    monkeypatch.undo()
    assert _listing(tmp_path) == []
    write_tables({first: pd.DataFrame({"a": [1]}), second: pd.DataFrame({"a": [2]})})
    assert _listing(tmp_path) == ["clefts.csv", "edges.csv"]


def test_interrupts_are_held_until_the_block_ends() -> None:
    import signal

    from napari_avan.core.files import interrupts_held

    done = []
    with pytest.raises(KeyboardInterrupt):
        with interrupts_held():
            signal.raise_signal(signal.SIGINT)
            done.append("rest of the block")
    assert done == ["rest of the block"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_temporaries_of_killed_processes_are_swept(tmp_path: Path) -> None:
    import subprocess
    import sys

    from napari_avan.core.files import temp_sibling

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    pid = int(dead.stdout)
    target = tmp_path / "v.npy"
    mine = temp_sibling(target)  # this process is alive: its temporary stays
    left = mine.with_name(mine.name.replace(f"-{os.getpid()}-", f"-{pid}-"))
    original = left.with_name(left.name.replace(".tmp-", ".old-"))
    mine.write_bytes(b"in progress")
    left.write_bytes(b"half")
    with open(original, "wb") as handle:  # a swap killed between its two renames
        np.save(handle, _first())
    write_volume(tmp_path / "w.npy", _first(), VOXEL)  # another destination: nothing swept
    assert left.exists() and original.exists()
    with pytest.raises(AvanInputError, match="already exists"):
        write_volume(target, _second(), VOXEL)  # the original was put back first
    assert not left.exists() and not original.exists() and mine.exists()
    np.testing.assert_array_equal(np.load(target), _first())


def test_nested_temporaries_of_killed_processes_are_swept(tmp_path: Path) -> None:
    import subprocess
    import sys

    from napari_avan.core.files import temp_sibling

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    target = tmp_path / "out.zarr"
    outer = temp_sibling(target)
    outer = outer.with_name(outer.name.replace(f"-{os.getpid()}-", f"-{int(dead.stdout)}-"))
    inner = temp_sibling(outer)  # written by the dead process too, under its own pid here
    inner = inner.with_name(inner.name.replace(f"-{os.getpid()}-", f"-{int(dead.stdout)}-"))
    other = tmp_path / ".out.zarr.backup"  # not ours: kept
    for folder in (outer, inner, other):
        folder.mkdir()
    write_volume(target, _first(), VOXEL)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.zarr.backup", "out.zarr"]
