"""Volumes a task reads in parts: opened lazily from a spec, or one region held in memory.

Both are sliced like numpy arrays (``volume[z0:z1, y0:y1, x0:x1]`` or ``volume[z, y, x]``)
and return numpy, so algorithms written for arrays (AVAN assignment, the edge table) run on
them unchanged and read only what they slice.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from napari_avan.types import VoxelSize


class LazyVolume:
    """A volume spec, opened on first use; slicing reads only the chunks it touches."""

    def __init__(self, spec: str, voxel_size_nm: VoxelSize | None, role: str) -> None:
        self.spec, self.voxel_size_nm, self.role = spec, voxel_size_nm, role
        self._data: Any = None

    @property
    def data(self) -> Any:
        if self._data is None:
            from napari_avan.io import read_volume

            volume = read_volume(self.spec, self.voxel_size_nm, lazy=True, role=self.role)
            self._data = volume.data
        return self._data

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(n) for n in self.data.shape)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.data.dtype)

    @property
    def ndim(self) -> int:
        return 3

    @property
    def chunks(self) -> tuple[int, ...] | None:
        """The source's chunk shape (dask's ``chunksize``), for reading whole chunks."""
        size = getattr(self.data, "chunksize", None)
        return None if size is None else tuple(int(n) for n in size)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        whole = self[(slice(None),) * 3]
        return whole if dtype is None else whole.astype(dtype)

    def __getitem__(self, key: Any) -> np.ndarray:
        part = self.data[key]
        if hasattr(part, "compute"):
            # inside a dask task: no nested graph; callbacks=[]: see core.session.store
            part = part.compute(scheduler="synchronous", callbacks=[])
        return np.asarray(part)


class Window:
    """A region of a volume held in memory (from ``origin``, of ``data.shape``), sliced in
    the volume's coordinates; a slice reaching outside the region reads ``source``."""

    def __init__(self, source: LazyVolume, origin: Sequence[int], data: np.ndarray) -> None:
        self.source, self.origin, self.region = source, tuple(int(o) for o in origin), data
        self.shape = source.shape
        self.dtype = data.dtype
        self.ndim = 3

    @classmethod
    def read(cls, source: LazyVolume, box: Sequence[tuple[int, int]]) -> Window:
        key = tuple(slice(a, b) for a, b in box)
        return cls(source, [a for a, _ in box], source[key])

    def _local(self, key: Any) -> tuple[Any, ...] | None:
        if not isinstance(key, tuple) or len(key) != 3:
            return None
        local: list[Any] = []
        for k, o, n, size in zip(key, self.origin, self.region.shape, self.shape, strict=True):
            if isinstance(k, slice):
                if k.step not in (None, 1):
                    return None
                start = 0 if k.start is None else int(k.start)
                stop = size if k.stop is None else int(k.stop)
                if start < 0 or stop < 0 or start < o or stop > o + n:
                    return None
                local.append(slice(start - o, stop - o))
            elif isinstance(k, (int, np.integer)):
                if not o <= int(k) < o + n:
                    return None
                local.append(int(k) - o)
            else:
                return None
        return tuple(local)

    def __getitem__(self, key: Any) -> Any:
        local = self._local(key)
        if local is None:
            return self.source[key]
        return self.region[local]
