"""Cleft labels kept on disk: a session over a volume larger than memory.

A session holds its current cleft labels in memory when they fit
(:data:`IN_MEMORY_LIMIT_BYTES`), else as a :class:`ChunkedLabels`: the session's own zarr
array, read region by region and written chunk by chunk as decisions change it. Either way a
decision stores only the voxels it changed (flat indices into the volume), so the journal, undo
and crash recovery are the same; only where the labels live differs.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from napari_avan.types import AvanInputError

#: Labels up to this size are held in memory; larger ones stay in the session's store.
#: ``NAPARI_AVAN_LABELS_IN_MEMORY_MIB`` overrides it (in MiB).
IN_MEMORY_LIMIT_BYTES = 1 << 30
#: Voxels read at once when scanning a volume (statistics, searches, copies): 16 MiB of
#: uint32 labels.
SCAN_VOXELS = 4 << 20


def in_memory_limit() -> int:
    """Bytes of labels a session holds in memory (see :data:`IN_MEMORY_LIMIT_BYTES`)."""
    value = os.environ.get("NAPARI_AVAN_LABELS_IN_MEMORY_MIB")
    if value is None:
        return IN_MEMORY_LIMIT_BYTES
    try:
        return int(float(value) * (1 << 20))
    except ValueError as err:
        raise AvanInputError(
            f"NAPARI_AVAN_LABELS_IN_MEMORY_MIB={value!r} is not a number of MiB"
        ) from err


def fits_in_memory(shape: Sequence[int], dtype: Any) -> bool:
    """Whether a session holds labels of this shape in memory (as ``uint32``, or ``uint64``
    for 8-byte ids)."""
    itemsize = 8 if np.dtype(dtype).itemsize > 4 else 4
    return int(np.prod([int(n) for n in shape])) * itemsize <= in_memory_limit()


def chunk_shape(array: Any, default: Sequence[int] = (32, 256, 256)) -> tuple[int, ...]:
    """The chunk shape of a zarr or dask array (dask: its largest chunks), else ``default``."""
    chunks = getattr(array, "chunks", None)
    if not chunks:
        return tuple(int(c) for c in default)
    return tuple(int(max(c)) if isinstance(c, tuple) else int(c) for c in chunks)


def scan_boxes(
    shape: Sequence[int], chunks: Sequence[int], voxels: int = SCAN_VOXELS
) -> Iterator[tuple[slice, slice, slice]]:
    """Boxes covering a volume in scan order, aligned to ``chunks``: whole chunk rows in y and
    x when they fit in ``voxels``, so each box reads whole chunks."""
    shape = [int(n) for n in shape]
    chunks = [max(1, min(int(c), n)) for c, n in zip(chunks, shape, strict=True)]
    step = list(chunks)
    for axis in (2, 1, 0):  # grow x, then y, then z, while the box stays small
        while step[axis] < shape[axis] and np.prod(step) * 2 <= voxels:
            step[axis] = min(shape[axis], step[axis] * 2)
        if step[axis] < shape[axis]:
            break
    for z in range(0, shape[0], step[0]):
        for y in range(0, shape[1], step[1]):
            for x in range(0, shape[2], step[2]):
                yield (
                    slice(z, min(z + step[0], shape[0])),
                    slice(y, min(y + step[1], shape[1])),
                    slice(x, min(x + step[2], shape[2])),
                )


class RegionReader:
    """A volume read by boxes, each read coming back as numpy (a dask region computed): numpy,
    zarr, h5py or dask, for code that slices and expects numpy.

    A dask region is computed with ``callbacks=[]``. Without it dask takes the process-wide
    callbacks for the computation and empties them meanwhile; napari registers its
    opportunistic cache there while it slices a dask layer, so a computation in a worker
    thread at that moment corrupts the cache's bookkeeping (a ``KeyError`` in napari's
    slicing) or loses it. Hand layers' dask arrays to worker threads through this.
    """

    def __init__(self, source: Any) -> None:
        self.source = source
        self.shape = tuple(int(n) for n in source.shape)
        self.dtype = np.dtype(source.dtype)
        self.ndim = len(self.shape)

    def __getitem__(self, key: Any) -> np.ndarray:
        region = self.source[key]
        compute = getattr(region, "compute", None)
        return np.asarray(compute(callbacks=[]) if callable(compute) else region)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        whole = self[(slice(None),) * self.ndim]
        return whole if dtype is None else whole.astype(dtype)

    @property
    def chunks(self) -> tuple[int, ...] | None:
        """The source's chunk shape (dask's largest chunks), or None."""
        if getattr(self.source, "chunks", None) is None:
            return None
        return chunk_shape(self.source)


class ChunkedLabels:
    """A session's cleft labels in a zarr array, changed in place chunk by chunk.

    Reading (``labels[box]``) returns a numpy copy of the region, as a numpy array's view
    would hold it; napari can show the object as a layer's data. Changes go through
    :meth:`scatter` (the session's decisions only). :meth:`overlay` lets a reader see a change
    that is not written (a re-seeded cleft while its partners are found).
    """

    def __init__(self, array: Any) -> None:
        self._array = array
        self._overlay: tuple[np.ndarray, np.ndarray] | None = None

    @classmethod
    def open(cls, path: Any, mode: str = "r+") -> ChunkedLabels:
        import zarr

        return cls(zarr.open_array(str(path), mode=mode))

    # -------------------------------------------------------------- array-like

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(n) for n in self._array.shape)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self._array.dtype)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    @property
    def chunks(self) -> tuple[int, ...]:
        return tuple(int(c) for c in self._array.chunks)

    @property
    def array(self) -> Any:
        """The zarr array (read it; change it only through :meth:`scatter`)."""
        return self._array

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"ChunkedLabels(shape={self.shape}, dtype={self.dtype}, store={self._array.store})"

    def __getitem__(self, key: Any) -> Any:
        region = np.asarray(self._array[key])
        if self._overlay is not None:
            box = _basic_box(key, self.shape)
            if box is None:
                raise AvanInputError("labels under an overlay are read by boxes of slices only")
            index, values = self._overlay
            coords = np.stack(np.unravel_index(index, self.shape), axis=1)
            lo = np.array([s.start for s in box])
            hi = np.array([s.stop for s in box])
            inside = np.all((coords >= lo) & (coords < hi), axis=1)
            if inside.any():
                full = np.asarray(self._array[box]).copy()
                local = coords[inside] - lo
                full[tuple(local.T)] = values[inside]
                region = full[_relative(key, box)]
        return region

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        whole = self[(slice(None),) * 3]
        return whole if dtype is None else whole.astype(dtype)

    # -------------------------------------------------------------- changes

    def gather(self, index: np.ndarray) -> np.ndarray:
        """The labels at flat voxel indices (read chunk by chunk)."""
        index = np.asarray(index, np.int64)
        out = np.zeros(index.shape, self.dtype)
        for box, rows, local in self._by_chunk(index):
            out[rows] = np.asarray(self[box])[local]
        return out

    def scatter(self, index: np.ndarray, values: np.ndarray) -> None:
        """Set the labels at flat voxel indices, rewriting each chunk they fall in once."""
        index = np.asarray(index, np.int64)
        values = np.broadcast_to(np.asarray(values, self.dtype), index.shape)
        for box, rows, local in self._by_chunk(index):
            region = np.asarray(self._array[box]).copy()
            region[local] = values[rows]
            self._array[box] = region

    def find(self, value: int, within: Sequence[int] = ()) -> np.ndarray:
        """Flat indices of every voxel labelled ``value``, in increasing order: a scan of the
        volume, or of the box ``within`` (z0, y0, x0, z1, y1, x1), region by region."""
        lo = np.asarray(within[:3] if within else (0, 0, 0), np.int64)
        hi = np.asarray(within[3:] if within else self.shape, np.int64)
        parts = []
        for part in scan_boxes([int(n) for n in hi - lo], self.chunks):
            box = tuple(
                slice(int(s.start + o), int(s.stop + o)) for s, o in zip(part, lo, strict=True)
            )
            where = np.argwhere(np.asarray(self[box]) == value)
            if where.size:
                where += np.array([s.start for s in box])
                parts.append(np.ravel_multi_index(tuple(where.T), self.shape))
        if not parts:
            return np.zeros(0, np.int64)
        return np.sort(np.concatenate(parts)).astype(np.int64)

    def max(self) -> int:
        """The largest id (a scan)."""
        return max(
            (int(np.asarray(self[box]).max()) for box in scan_boxes(self.shape, self.chunks)),
            default=0,
        )

    def overlay(self, index: np.ndarray | None, values: np.ndarray | None) -> None:
        """Let reads see ``values`` at ``index`` without writing them (None: no overlay)."""
        if index is None or values is None:
            self._overlay = None
        else:
            self._overlay = (np.asarray(index, np.int64), np.asarray(values, self.dtype))

    def copy_from(self, source: Any) -> None:
        """Fill the array from ``source`` (any array-like of its shape), region by region."""
        for box in scan_boxes(self.shape, chunk_shape(source, self.chunks)):
            self._array[box] = np.asarray(source[box], self.dtype)

    def _by_chunk(
        self, index: np.ndarray
    ) -> Iterator[tuple[tuple[slice, ...], np.ndarray, tuple[np.ndarray, ...]]]:
        """For each chunk holding some of ``index``: its box, which entries, and their
        coordinates in the box."""
        if index.size == 0:
            return
        shape, chunks = self.shape, np.asarray(self.chunks)
        coords = np.stack(np.unravel_index(index, shape), axis=1)
        cell = coords // chunks
        keys = np.ravel_multi_index(tuple(cell.T), tuple(-(-np.asarray(shape) // chunks)))
        order = np.argsort(keys, kind="stable")
        starts = np.flatnonzero(np.r_[True, keys[order][1:] != keys[order][:-1]])
        for begin, end in zip(starts, np.r_[starts[1:], order.size], strict=True):
            rows = order[begin:end]
            corner = cell[rows[0]] * chunks
            box = tuple(
                slice(int(c), min(int(c) + int(n), s))
                for c, n, s in zip(corner, chunks, shape, strict=True)
            )
            local = tuple((coords[rows] - corner).T)
            yield box, rows, local


def _basic_box(key: Any, shape: Sequence[int]) -> tuple[slice, ...] | None:
    """The box a key of slices (or ints) reads, steps of 1 only; None for any other key."""
    if not isinstance(key, tuple):
        key = (key,)
    if any(k is Ellipsis for k in key):
        at = next(i for i, k in enumerate(key) if k is Ellipsis)
        key = key[:at] + (slice(None),) * (len(shape) - len(key) + 1) + key[at + 1 :]
    key = key + (slice(None),) * (len(shape) - len(key))
    box = []
    for k, n in zip(key, shape, strict=True):
        if isinstance(k, (int, np.integer)):
            i = int(k) + (n if k < 0 else 0)
            box.append(slice(i, i + 1))
        elif isinstance(k, slice) and k.step in (None, 1):
            start, stop, _ = k.indices(n)
            box.append(slice(start, max(start, stop)))
        else:
            return None
    return tuple(box)


def _relative(key: Any, box: tuple[slice, ...]) -> tuple[Any, ...]:
    """``key`` applied to the array of ``box``: integers keep dropping their axis."""
    if not isinstance(key, tuple):
        key = (key,)
    if any(k is Ellipsis for k in key):
        at = next(i for i, k in enumerate(key) if k is Ellipsis)
        key = key[:at] + (slice(None),) * (len(box) - len(key) + 1) + key[at + 1 :]
    key = key + (slice(None),) * (len(box) - len(key))
    return tuple(0 if isinstance(k, (int, np.integer)) else slice(None) for k in key)


def chunked_statistics(labels: Any, values: Any = None, chunks: Sequence[int] | None = None) -> Any:
    """:func:`napari_avan.core.geometry.label_statistics` of an array-like read region by
    region (memory: one region, and a row per label). ``value_mean`` sums in another order
    than the whole-volume function, so it may differ in the last bits."""
    from napari_avan.core.geometry import LabelStatistics, label_statistics

    shape = tuple(int(n) for n in labels.shape)
    chunks = chunks or chunk_shape(labels)
    ids_parts, rows = [], []
    for box in scan_boxes(shape, tuple(int(c) for c in chunks)):
        block = np.asarray(labels[box])
        part = label_statistics(block, None if values is None else np.asarray(values[box]))
        if not part.ids.size:
            continue
        corner = np.array([s.start for s in box])
        ids_parts.append(part.ids)
        size = part.size.astype(np.float64)
        rows.append(
            (
                part.size,
                (part.centroid + corner) * size[:, None],
                part.bbox_begin + corner,
                part.bbox_end + corner,
                part.value_mean * size,
            )
        )
    dtype = np.dtype(labels.dtype)
    if not ids_parts:
        return label_statistics(np.zeros((1, 1, 1), dtype))
    ids, where = np.unique(np.concatenate(ids_parts), return_inverse=True)
    n = ids.size
    size = np.zeros(n, np.int64)
    coord = np.zeros((n, 3))
    begin = np.full((n, 3), np.iinfo(np.int64).max, np.int64)
    end = np.zeros((n, 3), np.int64)
    value = np.zeros(n)
    stacked = [np.concatenate(part) for part in zip(*rows, strict=True)]
    np.add.at(size, where, stacked[0])
    np.add.at(coord, where, stacked[1])
    np.minimum.at(begin, where, stacked[2])
    np.maximum.at(end, where, stacked[3])
    np.add.at(value, where, stacked[4])
    return LabelStatistics(
        ids=ids.astype(dtype),
        size=size,
        centroid=coord / size[:, None],
        bbox_begin=begin,
        bbox_end=end,
        value_mean=value / size if values is not None else np.full(n, np.nan),
    )


def nonzero_voxels(data: Any) -> np.ndarray:
    """(n, 3) voxels above 0 of a volume (a layer painted in): numpy, or a zarr array (v3,
    default chunk keys) read only in the chunks that were written."""
    import zarr

    if not isinstance(data, zarr.Array) or data.metadata.zarr_format != 3:
        return np.argwhere(np.asarray(data) > 0)
    from zarr.core.sync import sync

    async def listed() -> list[str]:
        return [k async for k in data.store_path.store.list_prefix(data.store_path.path)]

    chunks = np.asarray(data.chunks)
    found = []
    for key in sync(listed()):
        parts = key.rsplit("c/", 1)[-1].split("/") if "c/" in key else []
        if len(parts) != 3 or not all(p.isdigit() for p in parts):
            continue
        corner = np.asarray([int(p) for p in parts]) * chunks
        box = tuple(slice(int(c), int(c + n)) for c, n in zip(corner, chunks, strict=True))
        where = np.argwhere(np.asarray(data[box]) > 0)
        if where.size:
            found.append(where + corner)
    return np.concatenate(found) if found else np.zeros((0, 3), np.int64)
