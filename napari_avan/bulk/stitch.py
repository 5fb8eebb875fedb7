"""Clefts labelled block by block, stitched into global ids.

Each output block labels its thresholded voxels on its own (6-connected components, ids 1..n)
and measures them (:func:`block_statistics`). Labels that touch across a block face are the
same cleft: the pairs found on every face join them (connected components of the pair graph,
the union-find of face matching). The size filter runs on the joined clefts, and the kept ones
are numbered 1..N by their first voxel in scan order, as the whole-volume path numbers them
(:func:`napari_avan.core.clefts.clefts_from_probability`), so the labels and the cleft table
come out the same whatever the blocks.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from napari_avan.bulk.grid import Box, OutputGrid, Shape3
from napari_avan.core.geometry import LabelStatistics

#: Fields of one block's statistics, one row per local label 1..n.
STAT_FIELDS = ("size", "first", "coord_sum", "begin", "end", "value_sum")


def block_statistics(
    labels: np.ndarray,
    values: np.ndarray | None,
    origin: Sequence[int],
    volume_shape: Sequence[int],
) -> dict[str, np.ndarray]:
    """Per local label 1..n of a block (``labels`` from ``origin`` in a volume of
    ``volume_shape``): voxel count, first voxel (global linear index), sum of global
    coordinates (exact: integer sums below 2**53 in float64), bounding box (global) and the
    sum of ``values``. Works section by section, so memory stays a few sections' worth
    whatever the share of cleft voxels."""
    import cc3d

    n = int(labels.max()) if labels.size else 0
    z0, y0, x0 = (int(o) for o in origin)
    if n == 0:
        empty3 = np.zeros((0, 3), np.int64)
        return {"size": np.zeros(0, np.int64), "first": np.zeros(0, np.int64),
                "coord_sum": empty3, "begin": empty3, "end": empty3.copy(),
                "value_sum": np.zeros(0, np.float64)}  # fmt: skip
    found = cc3d.statistics(np.ascontiguousarray(labels))
    size = np.zeros(n + 1, np.int64)
    size[: len(found["voxel_counts"])] = found["voxel_counts"]
    begin = np.zeros((n + 1, 3), np.int64)
    end = np.zeros((n + 1, 3), np.int64)
    for label, box in enumerate(found["bounding_boxes"][: n + 1]):
        if box is not None and label:
            begin[label] = [b.start + o for b, o in zip(box, (z0, y0, x0), strict=True)]
            end[label] = [b.stop + o for b, o in zip(box, (z0, y0, x0), strict=True)]
    coord_sum = np.zeros((n + 1, 3), np.int64)
    value_sum = np.zeros(n + 1, np.float64)
    first = np.full(n + 1, np.iinfo(np.int64).max, np.int64)
    width = labels.shape[2]
    plane = int(volume_shape[1]) * int(volume_shape[2])
    for z in range(labels.shape[0]):
        section = labels[z].ravel()
        where = np.flatnonzero(section)  # only the cleft voxels: few, whatever the block
        if not where.size:
            continue
        lab = section[where].astype(np.intp)
        y, x = np.divmod(where, width)
        y, x = y + y0, x + x0
        counts = np.bincount(lab, minlength=n + 1)
        coord_sum[:, 0] += counts * (z + z0)
        # integer sums in float64 are exact below 2**53, far above a block's
        coord_sum[:, 1] += np.bincount(lab, weights=y, minlength=n + 1).astype(np.int64)
        coord_sum[:, 2] += np.bincount(lab, weights=x, minlength=n + 1).astype(np.int64)
        if values is not None:
            picked = np.asarray(values[z], np.float64).ravel()[where]
            value_sum += np.bincount(lab, weights=picked, minlength=n + 1)
        ids, at = np.unique(lab, return_index=True)  # the first of each, in scan order
        fresh = first[ids] == np.iinfo(np.int64).max
        first[ids[fresh]] = (z + z0) * plane + y[at[fresh]] * int(volume_shape[2]) + x[at[fresh]]
    return {
        "size": size[1:],
        "first": first[1:],
        "coord_sum": coord_sum[1:],
        "begin": begin[1:],
        "end": end[1:],
        "value_sum": value_sum[1:],
    }


def block_faces(grid: OutputGrid) -> Iterator[tuple[Shape3, Shape3, int, Box]]:
    """Every face between neighbouring blocks of ``grid``: ``(block, next block, axis,
    box)``, the box holding the last plane of the block and the first of the next."""
    for index in grid.indices():
        box = grid.box(index)
        for axis in range(3):
            nxt = list(index)
            nxt[axis] += 1
            if nxt[axis] >= grid.counts[axis]:
                continue
            face = list(box)
            face[axis] = (box[axis][1] - 1, box[axis][1] + 1)
            yield index, (nxt[0], nxt[1], nxt[2]), axis, (face[0], face[1], face[2])


def face_pairs(low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """The distinct (low label, high label) pairs facing each other across a block face:
    ``low`` is the last plane of one block, ``high`` the first plane of the next."""
    both = (low > 0) & (high > 0)
    if not both.any():
        return np.zeros((0, 2), np.int64)
    pairs = np.stack([low[both].astype(np.int64), high[both].astype(np.int64)], axis=1)
    return np.unique(pairs, axis=0)


@dataclass
class Stitched:
    """The result of stitching: per block, the global id of each local label (index 0 is
    background, 0 means dropped), and the statistics of the kept clefts."""

    lookups: dict[tuple[int, int, int], np.ndarray]
    statistics: LabelStatistics


def stitch(
    blocks: Mapping[tuple[int, int, int], Mapping[str, np.ndarray]],
    pairs: Sequence[tuple[tuple[int, int, int], tuple[int, int, int], np.ndarray]],
    min_size: int,
) -> Stitched:
    """Join block labels into clefts, drop the small ones, number the rest in scan order.

    Args:
        blocks: each block's :func:`block_statistics`.
        pairs: ``(block a, block b, pairs)``: local labels of ``a`` (first column) and of
            ``b`` (second) that touch across their face.
        min_size: clefts with fewer voxels are dropped (after joining).
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    order = sorted(blocks)
    offset: dict[tuple[int, int, int], int] = {}
    total = 0
    for key in order:
        offset[key] = total
        total += int(blocks[key]["size"].size)
    if pairs:
        rows = np.concatenate([p[:, 0] - 1 + offset[a] for a, _, p in pairs])
        cols = np.concatenate([p[:, 1] - 1 + offset[b] for _, b, p in pairs])
    else:
        rows = cols = np.zeros(0, np.int64)
    graph = coo_matrix((np.ones(rows.size, np.int8), (rows, cols)), shape=(total, total))
    n_comp, comp = connected_components(graph, directed=False) if total else (0, np.zeros(0, int))

    def gather(field: str) -> np.ndarray:
        parts = [np.asarray(blocks[k][field]) for k in order]
        return np.concatenate(parts) if parts else np.zeros(0)

    size = np.zeros(n_comp, np.int64)
    np.add.at(size, comp, gather("size").astype(np.int64))
    first = np.full(n_comp, np.iinfo(np.int64).max, np.int64)
    np.minimum.at(first, comp, gather("first").astype(np.int64))
    coord_sum = np.zeros((n_comp, 3), np.int64)
    begin = np.full((n_comp, 3), np.iinfo(np.int64).max, np.int64)
    end = np.full((n_comp, 3), -1, np.int64)
    cs, bg, en = (gather(f).reshape(-1, 3).astype(np.int64) for f in ("coord_sum", "begin", "end"))
    for axis in range(3):
        np.add.at(coord_sum[:, axis], comp, cs[:, axis])
        np.minimum.at(begin[:, axis], comp, bg[:, axis])
        np.maximum.at(end[:, axis], comp, en[:, axis])
    value_sum = np.zeros(n_comp, np.float64)
    np.add.at(value_sum, comp, gather("value_sum").astype(np.float64))

    kept = size >= max(int(min_size), 1)
    kept_ids = np.flatnonzero(kept)
    ranked = kept_ids[np.argsort(first[kept_ids], kind="stable")]
    final = np.zeros(n_comp, np.uint32)
    final[ranked] = np.arange(1, ranked.size + 1, dtype=np.uint32)
    lookups = {}
    for key in order:
        n = int(blocks[key]["size"].size)
        lookup = np.zeros(n + 1, np.uint32)
        lookup[1:] = final[comp[offset[key] : offset[key] + n]]
        lookups[key] = lookup
    sizes = size[ranked]
    statistics = LabelStatistics(
        ids=np.arange(1, ranked.size + 1, dtype=np.uint32),
        size=sizes,
        centroid=coord_sum[ranked] / np.maximum(sizes, 1)[:, None],
        bbox_begin=begin[ranked],
        bbox_end=end[ranked],
        value_mean=value_sum[ranked] / np.maximum(sizes, 1),
    )
    return Stitched(lookups, statistics)
