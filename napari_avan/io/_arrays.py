"""Array helpers shared by the writers: chunking, fill values, dask-aware stores."""

from __future__ import annotations

from typing import Any

import numpy as np

from napari_avan.types import Volume

#: Default chunk shape (z, y, x) for zarr and HDF5 volumes (clipped to the volume).
DEFAULT_CHUNKS = (32, 256, 256)


def is_dask(data: Any) -> bool:
    """Whether ``data`` is a dask array (without importing dask)."""
    return type(data).__module__.split(".")[0] == "dask" and hasattr(data, "compute")


def as_numpy(data: Any) -> np.ndarray:
    """``data`` as a numpy array (computing a dask array)."""
    if is_dask(data):
        return np.asarray(data.compute())
    return np.asarray(data)


def as_array(data: Any) -> Any:
    """The array of ``data``: a :class:`Volume`'s data, an array with shape and dtype
    unchanged (numpy, dask, zarr, h5py), anything else through :func:`numpy.asarray`."""
    if isinstance(data, Volume):
        data = data.data
    if hasattr(data, "shape") and hasattr(data, "dtype") and hasattr(data, "ndim"):
        return data
    return np.asarray(data)


def default_chunks(shape: tuple[int, ...]) -> tuple[int, ...]:
    """:data:`DEFAULT_CHUNKS` clipped to ``shape`` (at least 1 per axis)."""
    sizes = (
        DEFAULT_CHUNKS[-len(shape) :]
        if len(shape) <= 3
        else (1,) * (len(shape) - 3) + (DEFAULT_CHUNKS)
    )
    return tuple(max(1, min(int(s), c)) for s, c in zip(shape, sizes, strict=True))


def fill_value_for(dtype: Any) -> Any:
    """The zero of ``dtype`` as a Python scalar (False, 0 or 0.0)."""
    return np.zeros((), dtype=dtype).item()


def store_into(target: Any, data: Any, *, lock: bool = False) -> None:
    """Write ``data`` (numpy or dask) into a zarr array or HDF5 dataset ``target``.

    A dask array is written block by block, aligned to the target's chunks so that
    parallel writes never touch the same chunk; ``lock`` serialises the writes (HDF5).
    """
    if is_dask(data):
        import dask.array as da

        chunks = getattr(target, "chunks", None)
        if chunks is not None and len(chunks) == data.ndim:
            data = data.rechunk(chunks)
        da.store(data, target, lock=lock)
    else:
        target[...] = np.asarray(data)
