"""Array helpers shared by the writers: chunking, fill values, dask-aware stores."""

from __future__ import annotations

from typing import Any

import numpy as np

from napari_avan.core.files import interrupts_held, read_failed
from napari_avan.types import AvanInputError, Volume

#: Default chunk shape (z, y, x) for zarr and HDF5 volumes (clipped to the volume).
DEFAULT_CHUNKS = (32, 256, 256)


def is_dask(data: Any) -> bool:
    """Whether ``data`` is a dask array (without importing dask)."""
    return type(data).__module__.split(".")[0] == "dask" and hasattr(data, "compute")


def as_numpy(data: Any) -> np.ndarray:
    """``data`` as a numpy array (computing a dask array)."""
    if is_dask(data):
        # callbacks=[]: thread-safe beside napari's dask cache (see core.session.store)
        return np.asarray(data.compute(callbacks=[]))
    return np.asarray(data)


def as_array(data: Any) -> Any:
    """The array of ``data``: a :class:`Volume`'s data, an array with shape and dtype
    unchanged (numpy, dask, zarr, h5py), anything else through :func:`numpy.asarray`."""
    if isinstance(data, Volume):
        data = data.data
    if hasattr(data, "shape") and hasattr(data, "dtype") and hasattr(data, "ndim"):
        return data
    return np.asarray(data)


class GuardedArray:
    """An array view whose reads turn any failure into an error naming the source.

    Lazy (dask) volumes read their chunks long after :func:`read_volume` returns; a
    corrupt chunk then raises whatever the codec raises. Wrapped in this class, it
    raises :class:`AvanInputError` naming the file instead. Picklable when ``array`` is.
    """

    def __init__(self, array: Any, source: str) -> None:
        self.array = array
        self.source = source
        self.shape = tuple(int(s) for s in array.shape)
        self.dtype = np.dtype(array.dtype)
        self.ndim = len(self.shape)

    def __getitem__(self, index: Any) -> np.ndarray:
        try:
            return np.asarray(self.array[index])
        except AvanInputError:
            raise
        except Exception as err:
            raise read_failed(self.source, err) from err


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
        data = np.asarray(data)
        for part in slabs(target, data.shape):
            with interrupts_held():
                target[part] = data[part]


def slabs(array: Any, shape: tuple[int, ...]) -> list[tuple[slice, ...]]:
    """Index tuples covering ``shape`` in slabs along axis 0, one chunk row of ``array`` each."""
    chunks = getattr(array, "chunks", None)
    step = int(chunks[0]) if chunks and len(chunks) == len(shape) else max(1, int(shape[0]))
    rest = (slice(None),) * (len(shape) - 1)
    return [(slice(z, z + step), *rest) for z in range(0, max(1, int(shape[0])), step)]


def read_in_slabs(array: Any) -> np.ndarray:
    """All of a zarr array, read one chunk row at a time (interrupts held in between)."""
    out = np.empty(tuple(int(s) for s in array.shape), dtype=array.dtype)
    for part in slabs(array, out.shape):
        with interrupts_held():
            out[part] = array[part]
    return out
