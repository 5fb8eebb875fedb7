"""Stitching block labels: against labelling the whole volume at once, on hand-made cases
and on random masks cut into many block shapes."""

from __future__ import annotations

import cc3d
import numpy as np
import pytest

from napari_avan.bulk.grid import OutputGrid, box_slices
from napari_avan.bulk.stitch import block_faces, block_statistics, face_pairs, stitch
from napari_avan.core.clefts import clefts_from_probability
from napari_avan.core.geometry import label_statistics


def _blockwise(prob: np.ndarray, block: tuple[int, int, int], threshold: float, min_size: int):
    """Label ``prob`` block by block and stitch, as a bulk run does; the labels and stats."""
    grid = OutputGrid(prob.shape, block)  # type: ignore[arg-type]
    local = np.zeros(prob.shape, np.uint32)
    stats = {}
    for index in grid.indices():
        box = grid.box(index)
        part = prob[box_slices(box)]
        labels = cc3d.connected_components(part > threshold, connectivity=6, out_dtype=np.uint32)
        local[box_slices(box)] = labels
        stats[index] = block_statistics(labels, part, [b[0] for b in box], prob.shape)
    pairs = []
    for index, nxt, axis, face in block_faces(grid):
        planes = local[box_slices(face)]
        found = face_pairs(np.take(planes, 0, axis), np.take(planes, 1, axis))
        if found.size:
            pairs.append((index, nxt, found))
    result = stitch(stats, pairs, min_size)
    out = np.zeros(prob.shape, np.uint32)
    for index in grid.indices():
        box = box_slices(grid.box(index))
        out[box] = result.lookups[index][local[box]]
    return out, result.statistics


def _assert_same_stats(got, want) -> None:
    np.testing.assert_array_equal(got.ids, want.ids)
    np.testing.assert_array_equal(got.size, want.size)
    np.testing.assert_array_equal(got.centroid, want.centroid)
    np.testing.assert_array_equal(got.bbox_begin, want.bbox_begin)
    np.testing.assert_array_equal(got.bbox_end, want.bbox_end)
    np.testing.assert_allclose(got.value_mean, want.value_mean, rtol=1e-12)


def test_a_u_shaped_cleft_crossing_a_face_twice_is_one_cleft() -> None:
    prob = np.zeros((1, 8, 8), np.float32)
    prob[0, 1:7, 2] = prob[0, 1:7, 5] = prob[0, 6, 2:6] = 0.9  # a U opening upwards
    prob[0, 1, 7] = 0.9  # a lone voxel: dropped by min_size
    labels, stats = _blockwise(prob, (1, 4, 4), 0.5, 2)
    assert labels.max() == 1 and stats.size.tolist() == [14]
    np.testing.assert_array_equal(labels, clefts_from_probability(prob, threshold=0.5, min_size=2))


def test_diagonal_neighbours_across_a_corner_stay_apart() -> None:
    prob = np.zeros((2, 4, 4), np.float32)
    prob[0, 1, 1] = prob[1, 2, 2] = 0.9  # touch only at a corner: not 6-connected
    labels, stats = _blockwise(prob, (1, 2, 2), 0.5, 1)
    assert labels.max() == 2 and stats.size.tolist() == [1, 1]


def test_small_pieces_are_kept_when_joined_across_blocks() -> None:
    prob = np.zeros((1, 1, 10), np.float32)
    prob[0, 0, 1:9] = 0.9  # 8 voxels, 2 in each block of 2... and parts of others
    labels, stats = _blockwise(prob, (1, 1, 3), 0.5, 5)
    assert stats.size.tolist() == [8]  # each piece (at most 3) alone would be dropped
    np.testing.assert_array_equal(labels, clefts_from_probability(prob, threshold=0.5, min_size=5))


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("block", [(1, 7, 5), (3, 3, 3), (4, 16, 2), (9, 20, 20)])
def test_random_masks_match_the_whole_volume(seed: int, block) -> None:
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    prob = ndimage.gaussian_filter(rng.random((9, 20, 20)), 1.0).astype(np.float32)
    threshold = float(np.quantile(prob, 0.8))
    labels, stats = _blockwise(prob, block, threshold, 4)
    whole = clefts_from_probability(prob, threshold=threshold, min_size=4)
    assert whole.max() > 3
    np.testing.assert_array_equal(labels, whole)
    _assert_same_stats(stats, label_statistics(whole, prob))


def test_block_statistics_against_a_direct_count() -> None:
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 5, (3, 6, 7)).astype(np.uint32)
    labels[labels == 3] = 0  # a missing id among the present ones
    values = rng.random(labels.shape)
    origin, shape = (2, 10, 20), (8, 30, 40)
    got = block_statistics(labels, values, origin, shape)
    for i, label in enumerate(range(1, 5)):
        where = np.argwhere(labels == label)
        if not where.size:
            assert got["size"][i] == 0
            continue
        coords = where + origin
        assert got["size"][i] == len(where)
        assert got["first"][i] == np.ravel_multi_index(tuple(coords[0]), shape)
        np.testing.assert_array_equal(got["coord_sum"][i], coords.sum(axis=0))
        np.testing.assert_array_equal(got["begin"][i], coords.min(axis=0))
        np.testing.assert_array_equal(got["end"][i], coords.max(axis=0) + 1)
        assert np.isclose(got["value_sum"][i], values[labels == label].sum(), rtol=1e-12)
