"""HDF5 volumes (including the CREMI layout): datasets with a ``resolution`` attribute."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from napari_avan.core.files import (
    atomic_path,
    json_safe,
    read_failed,
    refuse_overwrite,
    write_buffered,
)
from napari_avan.io._arrays import default_chunks, store_into
from napari_avan.io._meta import Found, missing_key, several_arrays, voxel_size_from_attrs
from napari_avan.io.spec import VolumeSpec
from napari_avan.types import AvanInputError, VoxelSize

#: CREMI dataset paths.
CREMI_RAW = "volumes/raw"
CREMI_NEURON_IDS = "volumes/labels/neuron_ids"
CREMI_CLEFTS = "volumes/labels/clefts"


def cremi_background(dtype: Any) -> int:
    """The "no cleft" label CREMI uses in ``volumes/labels/clefts``: the dtype's maximum."""
    return int(np.iinfo(dtype).max)


def _open_read(path: Path) -> Any:
    import h5py

    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise AvanInputError(f"cannot open {path} as HDF5: {err}") from err


@contextlib.contextmanager
def built_in_memory(tmp: Path, base: Path | None = None) -> Iterator[Any]:
    """An HDF5 file built in memory, then written to ``tmp`` by plain file writes.

    The HDF5 library handles a failed write (a full disk) badly: it can crash the
    process while closing the file. Python's own file writes fail cleanly with an
    OSError, which :func:`atomic_path` turns into a message and a removed temporary.

    Args:
        tmp: where the finished file goes.
        base: an existing HDF5 file to start from (its datasets are kept).
    """
    import h5py

    buffer = io.BytesIO(base.read_bytes() if base is not None else b"")
    with h5py.File(buffer, "r+" if base is not None else "w") as f:
        yield f
    write_buffered(tmp, lambda out: out.write(buffer.getbuffer()))


def dataset_names(f: Any, *, min_ndim: int = 0) -> list[str]:
    """Paths of the datasets in an open HDF5 file or group with at least ``min_ndim`` axes."""
    import h5py

    names: list[str] = []

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset) and obj.ndim >= min_ndim:
            names.append(name)

    f.visititems(visit)
    return sorted(names)


def _volume_names(f: Any) -> list[str]:
    return dataset_names(f, min_ndim=2) or dataset_names(f)


class HDF5Dataset:
    """A picklable, lazily opened view of one HDF5 dataset, for :func:`dask.array.from_array`.

    The file is opened on first access in each process and kept open; pickling sends only
    the path and key, so dask workers open their own handle.
    """

    def __init__(self, path: Path, key: str, shape: tuple[int, ...], dtype: Any) -> None:
        self.path = Path(path)
        self.key = key
        self.shape = shape
        self.dtype = np.dtype(dtype)
        self.ndim = len(shape)
        self._file: Any = None
        self._lock = threading.Lock()

    def __getitem__(self, index: Any) -> np.ndarray:
        with self._lock:
            try:
                if self._file is None:
                    import h5py

                    self._file = h5py.File(self.path, "r")
                return np.asarray(self._file[self.key][index])
            except Exception as err:  # h5py raises OSError, KeyError, RuntimeError...
                raise read_failed(f"{self.path}:{self.key}", err) from err

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_file"] = None
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()


def _token(path: Path, key: str) -> str:
    stat = path.stat()
    text = f"{path.resolve()}|{key}|{stat.st_mtime_ns}|{stat.st_size}"
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()


def read_hdf5(spec: VolumeSpec, lazy: bool) -> Found:
    """Find the dataset an HDF5 spec names, with its voxel size (``resolution`` attr).

    CREMI ``volumes/labels/clefts`` use the dtype's maximum as "no cleft"; it is
    mapped to 0 here (0 is background; docs/architecture.md, label ids).
    """
    import h5py

    where = str(spec.path)
    with _open_read(spec.path) as f:
        key = spec.key
        if key is not None:
            if key not in f:
                raise missing_key(key, where, _volume_names(f))
            node = f[key]
            if isinstance(node, h5py.Group):
                names = dataset_names(node, min_ndim=2)
                if len(names) != 1:
                    if not names:
                        raise AvanInputError(f"group {key!r} in {where} holds no volumes")
                    raise several_arrays(f"{where}:{key}", [f"{key}/{n}" for n in names])
                key = f"{key}/{names[0]}"
        else:
            names = dataset_names(f, min_ndim=2)
            if not names:
                raise AvanInputError(f"{where} holds no 2D or 3D datasets: check the file")
            if len(names) > 1:
                raise several_arrays(where, names)
            key = names[0]
        dset = f[key]
        attrs = {str(k): json_safe(v) for k, v in dset.attrs.items()}
        voxel_size = voxel_size_from_attrs(attrs)
        if "offset" in attrs:
            attrs["offset_nm"] = attrs["offset"]
        attrs["key"] = key
        shape = tuple(int(s) for s in dset.shape)
        data: Any
        if lazy and dset.chunks is not None:
            import dask.array as da

            source = HDF5Dataset(spec.path, key, shape, dset.dtype)
            data = da.from_array(
                source,
                chunks=dset.chunks,
                name=f"hdf5-{_token(spec.path, key)}",
                meta=np.empty((0,) * len(shape), dtype=dset.dtype),
            )
        else:
            data = dset[()]
    if key.strip("/") == CREMI_CLEFTS and np.dtype(data.dtype).kind == "u":
        data = _map_value(data, cremi_background(data.dtype), 0)
        attrs["cremi_background_mapped"] = True
    return Found(data=data, voxel_size_nm=voxel_size, attrs=attrs)


def _map_value(data: Any, old: int, new: int) -> Any:
    """``data`` with ``old`` replaced by ``new``, dtype kept (numpy or dask)."""
    value = data.dtype.type(new)
    if isinstance(data, np.ndarray):
        return np.where(data == old, value, data)
    import dask.array as da

    return da.where(data == old, value, data)


def list_hdf5_keys(path: Path) -> list[str]:
    """Paths of the 2D-or-more datasets in an HDF5 file."""
    with _open_read(path) as f:
        return dataset_names(f, min_ndim=2)


def _attr_value(value: Any) -> Any:
    """An HDF5-storable attribute: numbers, strings and flat lists as is, the rest as JSON."""
    value = json_safe(value)
    if isinstance(value, (bool, int, float, str)):
        return value
    if (
        isinstance(value, list)
        and value
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    ):
        return np.asarray(value)
    return json.dumps(value)


def write_dataset(
    f: Any,
    key: str,
    data: Any,
    voxel_size_nm: VoxelSize | None,
    *,
    chunks: tuple[int, ...] | None = None,
    attrs: dict[str, Any] | None = None,
) -> Any:
    """Create dataset ``key`` in an open HDF5 file (gzip, chunked) with ``resolution``."""
    if key in f:
        del f[key]
    shape = tuple(int(s) for s in data.shape)
    dset = f.create_dataset(
        key,
        shape=shape,
        dtype=data.dtype,
        chunks=chunks or default_chunks(shape),
        compression="gzip",
        compression_opts=1,
    )
    store_into(dset, data, lock=True)
    for name, value in (attrs or {}).items():
        dset.attrs[name] = _attr_value(value)
    if voxel_size_nm is not None:
        dset.attrs["resolution"] = np.asarray(voxel_size_nm, dtype=np.float64)
    return dset


def write_hdf5(
    path: Path,
    data: Any,
    voxel_size_nm: VoxelSize | None,
    *,
    key: str | None,
    default_key: str,
    overwrite: bool,
    chunks: tuple[int, ...] | None,
    attrs: dict[str, Any] | None,
) -> Path:
    """Write ``data`` as dataset ``key`` of an HDF5 file.

    Without ``key`` a new file is written holding ``default_key``. With ``key`` and an
    existing file, the file is copied to a temporary sibling, the dataset added to the
    copy and the copy renamed over the original, so the original is never half-written.
    """

    if key is not None:
        key = key.strip("/")
        if not key:
            raise AvanInputError("empty HDF5 key: use a dataset path like 'volumes/raw'")
    if key is None or not path.exists():
        with atomic_path(path, overwrite=overwrite) as tmp, built_in_memory(tmp) as f:
            write_dataset(f, key or default_key, data, voxel_size_nm, chunks=chunks, attrs=attrs)
        return path
    with _open_read(path) as f:
        exists = key in f
    if exists and not overwrite:
        raise refuse_overwrite(path, f"key {key!r}")
    with atomic_path(path, overwrite=True) as tmp, built_in_memory(tmp, base=path) as f:
        write_dataset(f, key, data, voxel_size_nm, chunks=chunks, attrs=attrs)
    return path
