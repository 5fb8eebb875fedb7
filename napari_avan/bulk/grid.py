"""The geometry of a blockwise detection: windows, window blocks, output blocks.

Detection predicts overlapping windows over the image resampled to the model's working voxel
size and reflect-padded (:mod:`napari_avan.models.inference`). A bulk run cuts that work
into tasks that each predict every window exactly once:

- **window blocks** (phase 1): the windows whose start lies in one cell of a grid over the
  padded working volume. The grid's cell ``group`` is a multiple of the window step and at
  least a patch, so a block's windows reach at most into the next cell along each axis (its
  *spill*) and every cell is fed by its own block and the previous one;
- **output blocks** (phase 2): the chunks of the output arrays at the image's voxel size
  (``--block``), each resampled from the working map, thresholded and labelled.

Everything here is integer arithmetic on shapes; no array is read.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from napari_avan.types import AvanInputError

Shape3 = tuple[int, int, int]
Span = tuple[int, int]
Box = tuple[Span, Span, Span]

#: Default output block (z, y, x voxels at the image's voxel size).
DEFAULT_BLOCK: Shape3 = (32, 512, 512)


def box_slices(box: Sequence[Span]) -> tuple[slice, ...]:
    """``box`` (``(start, stop)`` per axis) as slices."""
    return tuple(slice(a, b) for a, b in box)


def box_shape(box: Sequence[Span]) -> tuple[int, ...]:
    return tuple(b - a for a, b in box)


def block_indices(counts: Sequence[int]) -> list[Shape3]:
    """Every block index of a grid of ``counts`` blocks per axis, in scan order."""
    return [(int(z), int(y), int(x)) for z, y, x in itertools.product(*(range(n) for n in counts))]


def check_block(block: Sequence[int]) -> Shape3:
    """A ``--block`` shape, or a clear error."""
    values = tuple(int(b) for b in block)
    if len(values) != 3 or any(b < 1 for b in values):
        raise AvanInputError(f"block {tuple(block)} must be three positive sizes Z,Y,X (voxels)")
    return values[0], values[1], values[2]


@dataclass(frozen=True)
class OutputGrid:
    """The output arrays' chunks: blocks of ``block`` voxels over ``shape``."""

    shape: Shape3
    block: Shape3

    @property
    def counts(self) -> Shape3:
        z, y, x = (-(-n // b) for n, b in zip(self.shape, self.block, strict=True))
        return z, y, x

    def indices(self) -> list[Shape3]:
        return block_indices(self.counts)

    def box(self, index: Sequence[int]) -> Box:
        z, y, x = (
            (i * b, min(n, (i + 1) * b))
            for i, b, n in zip(index, self.block, self.shape, strict=True)
        )
        return z, y, x


@dataclass(frozen=True)
class WindowGrid:
    """The windows of a detection over a padded working volume, grouped into blocks.

    Attributes:
        work_shape: the image's shape at the model's working voxel size.
        pads: reflect padding (before, after) per axis, as the whole-volume path pads.
        pad_mode: ``reflect``, or ``symmetric`` for volumes too small to reflect.
        patch, overlap: the detector's window and the voxels neighbours share.
        starts: the window starts along each axis (padded coordinates), as the
            whole-volume path places them.
        group: the cell of the window-block grid (padded coordinates).
    """

    work_shape: Shape3
    pads: tuple[Span, Span, Span]
    pad_mode: str
    patch: Shape3
    overlap: Shape3
    starts: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]
    group: Shape3

    @property
    def padded_shape(self) -> Shape3:
        z, y, x = (n + a + b for n, (a, b) in zip(self.work_shape, self.pads, strict=True))
        return z, y, x

    @property
    def counts(self) -> Shape3:
        z, y, x = (-(-n // g) for n, g in zip(self.padded_shape, self.group, strict=True))
        return z, y, x

    def indices(self) -> list[Shape3]:
        return block_indices(self.counts)

    def cell(self, index: Sequence[int]) -> Box:
        """The cell of window block ``index``: where its windows start, and the voxels
        it finishes (padded coordinates)."""
        z, y, x = (
            (i * g, min(n, (i + 1) * g))
            for i, g, n in zip(index, self.group, self.padded_shape, strict=True)
        )
        return z, y, x

    def axis_starts(self, axis: int, i: int) -> tuple[int, ...]:
        a, b = i * self.group[axis], (i + 1) * self.group[axis]
        return tuple(s for s in self.starts[axis] if a <= s < b)

    def windows(self, index: Sequence[int]) -> list[Shape3]:
        """The starts of block ``index``'s windows (padded coordinates), in scan order."""
        z, y, x = (self.axis_starts(a, i) for a, i in enumerate(index))
        return [(int(a), int(b), int(c)) for a, b, c in itertools.product(z, y, x)]

    def coverage_end(self, axis: int, i: int) -> int:
        """Where the windows of block ``i`` along ``axis`` end (their cell's start when it
        has none)."""
        starts = self.axis_starts(axis, i)
        if not starts:
            return i * self.group[axis]
        return max(starts) + self.patch[axis]

    def coverage(self, index: Sequence[int]) -> Box:
        """The voxels block ``index``'s windows cover (padded coordinates)."""
        z, y, x = ((i * self.group[a], self.coverage_end(a, i)) for a, i in enumerate(index))
        return z, y, x

    def inflow_end(self, axis: int, i: int) -> int:
        """Voxels ``[i * group, inflow_end)`` of cell ``i`` along ``axis`` also receive the
        previous block's windows."""
        start = i * self.group[axis]
        if i == 0:
            return start
        return max(start, min(self.coverage_end(axis, i - 1), self.cell_end(axis, i)))

    def cell_end(self, axis: int, i: int) -> int:
        return min(self.padded_shape[axis], (i + 1) * self.group[axis])

    def inflow_slabs(self, index: Sequence[int]) -> list[Box]:
        """The parts of cell ``index`` that windows of earlier blocks reach: one slab per
        axis along which it receives them (they may overlap)."""
        cell = self.cell(index)
        slabs = []
        for axis, i in enumerate(index):
            end = self.inflow_end(axis, i)
            if end > cell[axis][0]:
                slab = list(cell)
                slab[axis] = (cell[axis][0], end)
                slabs.append((slab[0], slab[1], slab[2]))
        return slabs

    def source_index(self, axis: int, span: Span) -> np.ndarray:
        """For padded voxels ``span`` along ``axis``, the working voxel each copies (the
        padding reflects, as ``numpy.pad`` does)."""
        n = self.work_shape[axis]
        index = np.pad(np.arange(n), self.pads[axis], mode=self.pad_mode)  # type: ignore[call-overload]
        return np.asarray(index[span[0] : span[1]], dtype=np.int64)


def make_window_grid(
    work_shape: Sequence[int],
    patch: Sequence[int],
    overlap: Sequence[int],
    pads: Sequence[Span],
    target: Sequence[int],
) -> WindowGrid:
    """The window grid of a detection, its blocks about ``target`` padded voxels wide.

    ``pads`` is the whole-volume path's padding, which also decides the padding mode (a
    volume must be longer than its padding to reflect)."""
    from napari_avan.models.inference import window_starts

    shape = tuple(int(n) for n in work_shape)
    pads3 = tuple((int(a), int(b)) for a, b in pads)
    reflect = all(s > max(p) for s, p in zip(shape, pads3, strict=True))
    starts, group = [], []
    for n, (a, b), p, o, t in zip(shape, pads3, patch, overlap, target, strict=True):
        step = int(p) - int(o)
        starts.append(tuple(window_starts(n + a + b, int(p), step)))
        # a multiple of the step, at least a patch: a block spills only into the next cell
        cells = max(-(-int(p) // step), round(int(t) / step), 1)
        group.append(cells * step)
    return WindowGrid(
        work_shape=(shape[0], shape[1], shape[2]),
        pads=(pads3[0], pads3[1], pads3[2]),
        pad_mode="reflect" if reflect else "symmetric",
        patch=(int(patch[0]), int(patch[1]), int(patch[2])),
        overlap=(int(overlap[0]), int(overlap[1]), int(overlap[2])),
        starts=(starts[0], starts[1], starts[2]),
        group=(group[0], group[1], group[2]),
    )


def offsets() -> list[Shape3]:
    """The eight (dz, dy, dx) in {0, 1}^3: a window block feeds its own cell (0, 0, 0) and
    the next cell along any set of axes."""
    return [(z, y, x) for z, y, x in itertools.product((0, 1), repeat=3)]


def intersect(a: Sequence[Span], b: Sequence[Span]) -> Box | None:
    out = []
    for (a0, a1), (b0, b1) in zip(a, b, strict=True):
        lo, hi = max(a0, b0), min(a1, b1)
        if lo >= hi:
            return None
        out.append((lo, hi))
    return out[0], out[1], out[2]
