"""Cleft labels from probability maps, checked against a slow reference."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from napari_avan.core.clefts import cleft_boundary, clefts_from_probability
from napari_avan.types import AvanInputError


def reference(prob: np.ndarray, threshold: float, min_size: int) -> np.ndarray:
    """scipy's 6-connected labelling, small components dropped, renumbered in scan order."""
    labels, _ = ndimage.label(prob > threshold)
    out = np.zeros(prob.shape, np.uint32)
    next_id = 1
    seen: dict[int, int] = {}
    for value in labels.ravel():
        if value and value not in seen:
            seen[value] = -1
            if np.count_nonzero(labels == value) >= min_size:
                seen[value] = next_id
                next_id += 1
    for old, new in seen.items():
        if new > 0:
            out[labels == old] = new
    return out


@pytest.mark.parametrize("seed", range(5))
def test_matches_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    prob = ndimage.gaussian_filter(rng.random((6, 40, 40)), 1.5)
    prob = (prob - prob.min()) / (prob.max() - prob.min())
    got = clefts_from_probability(prob, threshold=0.6, min_size=5)
    np.testing.assert_array_equal(got, reference(prob, 0.6, 5))
    assert got.dtype == np.uint32


def test_hand_built_case() -> None:
    prob = np.zeros((3, 10, 10))
    prob[1, 1:3, 1:4] = 0.9  # 6 voxels
    prob[1, 6, 6] = 0.9  # 1 voxel: dropped by min_size
    prob[0, 8, 1:3] = 0.7  # 2 voxels, diagonal to nothing
    prob[1, 5, 1] = 0.4  # below threshold
    labels = clefts_from_probability(prob, threshold=0.5, min_size=2)
    assert labels.max() == 2
    assert np.count_nonzero(labels == 2) == 6  # scan order: z=0 component comes first
    assert np.count_nonzero(labels == 1) == 2
    assert labels[1, 6, 6] == 0 and labels[1, 5, 1] == 0


def test_diagonal_voxels_are_not_joined_but_can_be_by_radius() -> None:
    prob = np.zeros((1, 12, 12))
    prob[0, 2:4, 2:4] = 1.0
    prob[0, 4:6, 4:6] = 1.0  # touches the first only at a corner
    assert clefts_from_probability(prob, min_size=1).max() == 2  # 6-connectivity
    joined = clefts_from_probability(prob, min_size=1, join_radius_nm=8.0, voxel_size_nm=(40, 4, 4))
    assert joined.max() == 1
    np.testing.assert_array_equal(joined > 0, prob > 0.5)  # joining adds no voxels


def test_bad_arguments_are_named() -> None:
    with pytest.raises(AvanInputError, match="threshold"):
        clefts_from_probability(np.zeros((1, 2, 2)), threshold=1.5)
    with pytest.raises(AvanInputError, match="voxel size"):
        clefts_from_probability(np.zeros((1, 2, 2)), join_radius_nm=10)
    with pytest.raises(AvanInputError, match=r"\(z, y, x\)"):
        clefts_from_probability(np.zeros((2, 2)))
    assert clefts_from_probability(np.zeros((2, 4, 4))).max() == 0


def test_a_clefts_boundary_is_its_in_plane_edge_not_the_arrays() -> None:
    mask = np.zeros((2, 6, 7), bool)
    mask[0, 1:4, 1:4] = True  # a 3 x 3 square: 8 edge voxels round 1 inner voxel
    mask[1, 2:6, 4:7] = True  # a 4 x 3 block against the array's corner
    edge = cleft_boundary(mask)
    assert not (edge & ~mask).any()
    assert edge[0].sum() == 8 and not edge[0, 2, 2]
    # in section 1 only the sides facing non-cleft voxels are boundary: y = 2 and x = 4
    expected = np.zeros((6, 7), bool)
    expected[2, 4:7] = expected[2:6, 4] = True
    np.testing.assert_array_equal(edge[1], expected)
    assert not cleft_boundary(np.zeros((1, 3, 3), bool)).any()
    with pytest.raises(AvanInputError, match="must be"):
        cleft_boundary(np.zeros((3, 3), bool))
