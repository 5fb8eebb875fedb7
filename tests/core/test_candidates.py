"""Tests of core.candidates: signed proximity, pruner candidates and best pair per cleft."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from napari_avan.core import candidates
from napari_avan.core.synth import synthesize
from napari_avan.types import AvanInputError, Sample

VOXEL = (40.0, 4.0, 4.0)
SEEDS = (0, 1, 2)


@pytest.fixture(scope="module")
def samples() -> list[Sample]:
    return [synthesize(seed=seed, shape=(16, 128, 128)) for seed in SEEDS]


def expected_value(d_nm: float, sigma_nm: float = 50.0, a: float = 5.0, v: float = 4.0) -> float:
    """Parag eq. 1 with d' = 1 + d / v, written out by hand."""
    d_prime = 1.0 + d_nm / v
    return math.exp(-(d_nm**2) / (2 * sigma_nm**2)) * (2 / (1 + math.exp(-a * d_prime)) - 1)


def two_sided_volume() -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """Segment 1 above y = 10, segment 2 below, segment 3 at x >= 18; cleft 7 on the border."""
    seg = np.ones((5, 20, 24), dtype=np.uint32)
    seg[:, 10:] = 2
    seg[:, :, 18:] = 3
    clefts = np.zeros(seg.shape, dtype=np.uint32)
    clefts[2, 9:11, 4:11] = 7
    partners = pd.DataFrame({"cleft_id": [7], "pre_id": [1], "post_id": [2]})
    return clefts, seg, partners


# --- signed proximity -------------------------------------------------------------------------


def test_signed_proximity_sign_follows_the_partners():
    clefts, seg, partners = two_sided_volume()
    prox = candidates.signed_proximity(clefts, seg, partners, VOXEL)
    assert prox.dtype == np.float32 and prox.shape == seg.shape
    assert (prox[seg == 1] >= 0).all() and (prox[seg == 1] > 0).sum() > 50
    assert (prox[seg == 2] <= 0).all() and (prox[seg == 2] < 0).sum() > 50
    assert (prox[seg == 3] == 0).all()
    # background in the middle of a partner segment is 0 too
    seg0 = seg.copy()
    seg0[2, 5, 5] = 0
    assert candidates.signed_proximity(clefts, seg0, partners, VOXEL)[2, 5, 5] == 0


def test_signed_proximity_matches_the_formula_at_hand_computed_points():
    clefts, seg, partners = two_sided_volume()
    prox = candidates.signed_proximity(clefts, seg, partners, VOXEL)
    # on the cleft: d = 0, d' = 1, factor tanh(5 / 2)
    assert prox[2, 9, 7] == pytest.approx(math.tanh(2.5), rel=1e-5)
    assert prox[2, 10, 7] == pytest.approx(-math.tanh(2.5), rel=1e-5)
    # five pixels above the cleft in-plane: d = 20 nm
    assert prox[2, 4, 7] == pytest.approx(expected_value(20.0), rel=1e-5)
    # one section up and three pixels over: d = sqrt(40^2 + 12^2) nm
    assert prox[3, 6, 7] == pytest.approx(expected_value(math.hypot(40.0, 12.0)), rel=1e-5)
    # below the cleft, past its x end: d = sqrt((3*4)^2 + (4*4)^2) = 20 nm, post side
    assert prox[2, 13, 14] == pytest.approx(-expected_value(20.0), rel=1e-5)
    # from one pixel away on, the magnitude decays with distance
    column = np.abs(prox[2, :9, 7])[::-1]  # y = 8, 7, ..., 0
    assert (np.diff(column) < 0).all()
    # sigma and a enter as documented
    other = candidates.signed_proximity(clefts, seg, partners, VOXEL, sigma_nm=20.0, a=1.0)
    assert other[2, 4, 7] == pytest.approx(expected_value(20.0, 20.0, 1.0), rel=1e-5)


def test_signed_proximity_is_zero_beyond_max_distance():
    clefts, seg, partners = two_sided_volume()
    prox = candidates.signed_proximity(clefts, seg, partners, VOXEL, max_distance_nm=30.0)
    assert prox[2, 2, 7] == pytest.approx(expected_value(28.0), rel=1e-5)
    assert prox[2, 1, 7] == 0  # 32 nm
    assert prox[3, 9, 7] == 0  # 40 nm, next section
    assert np.count_nonzero(prox[[0, 1, 3, 4]]) == 0
    # default cut-off 3 sigma = 150 nm: the next section is inside
    assert candidates.signed_proximity(clefts, seg, partners, VOXEL)[3, 9, 7] > 0


def test_signed_proximity_keeps_the_largest_magnitude_where_clefts_compete():
    seg = np.ones((3, 20, 30), dtype=np.uint32)
    seg[:, 10:] = 2
    clefts = np.zeros(seg.shape, dtype=np.uint32)
    clefts[1, 9:11, 2:5] = 7
    clefts[1, 9:11, 24:27] = 8
    # cleft 8 points the other way: segment 1 is its postsynaptic side
    partners = pd.DataFrame({"cleft_id": [7, 8], "pre_id": [1, 2], "post_id": [2, 1]})
    both = candidates.signed_proximity(clefts, seg, partners, VOXEL)
    p7 = candidates.signed_proximity(clefts, seg, partners.iloc[:1], VOXEL)
    p8 = candidates.signed_proximity(clefts, seg, partners.iloc[1:], VOXEL)
    np.testing.assert_array_equal(both, np.where(np.abs(p8) > np.abs(p7), p8, p7))
    assert both[1, 5, 6] > 0 and both[1, 5, 22] < 0  # segment 1, nearer cleft 7 / cleft 8
    assert both[1, 15, 6] < 0 and both[1, 15, 22] > 0  # segment 2


def test_signed_proximity_matches_a_full_volume_reference(samples):
    sample = samples[0]
    prox = candidates.signed_proximity(
        sample.clefts, sample.segmentation, sample.partners, sample.voxel_size_nm
    )
    ref = np.zeros(prox.shape, dtype=np.float64)
    for cleft_id, pre_id, post_id in sample.partners.itertuples(index=False):
        d = ndimage.distance_transform_edt(sample.clefts != cleft_id, sampling=VOXEL)
        sign = (sample.segmentation == pre_id).astype(float) - (sample.segmentation == post_id)
        value = sign * np.exp(-(d**2) / 5000.0) * np.tanh(2.5 * (1 + d / 4.0))
        value[d > 150.0] = 0
        ref = np.where(np.abs(value) > np.abs(ref), value, ref)
    np.testing.assert_allclose(prox, ref, atol=1e-6)
    for cleft_id, pre_id, post_id in sample.partners.itertuples(index=False):
        on_cleft = sample.clefts == cleft_id
        assert (prox[on_cleft & (sample.segmentation == pre_id)] > 0.9).all()
        assert (prox[on_cleft & (sample.segmentation == post_id)] < -0.9).all()


# --- mask pruner ------------------------------------------------------------------------------


def test_mask_pruner_candidates_hand_built():
    clefts, seg, _ = two_sided_volume()
    seg[0] = 4  # outside the 3-section dilation of the cleft on section 2
    seg[2, 8, 6] = 0  # background is never a candidate
    clefts[4, 0, 0] = 9  # a second cleft, in the corner of segment 1
    table = candidates.mask_pruner_candidates(clefts, seg, VOXEL)
    assert list(table.columns) == ["cleft_id", "pre_id", "post_id"]
    assert all(table[c].dtype == np.uint64 for c in table.columns)
    pairs = [(1, 2), (1, 3), (2, 1), (2, 3), (3, 1), (3, 2)]
    # cleft 9's diamond reaches segment 2 at (y, x) = (10, 0), 40 nm away
    expected = [(7, *p) for p in pairs] + [(9, 1, 2), (9, 2, 1)]
    assert [tuple(r) for r in table.itertuples(index=False)] == expected
    # a smaller radius reaches neither segment 3 (8 pixels = 32 nm from cleft 7) nor
    # segment 2 from cleft 9
    small = candidates.mask_pruner_candidates(clefts, seg, VOXEL, radius_nm=28.0)
    assert [tuple(r) for r in small.itertuples(index=False)] == [(7, 1, 2), (7, 2, 1)]


def test_mask_pruner_candidates_empty():
    seg = np.full((3, 8, 8), 5, dtype=np.uint64)
    clefts = np.zeros(seg.shape, dtype=np.uint16)
    clefts[1, 4, 4] = 1
    table = candidates.mask_pruner_candidates(clefts, seg, VOXEL)
    assert len(table) == 0
    assert list(table.columns) == ["cleft_id", "pre_id", "post_id"]
    assert all(table[c].dtype == np.uint64 for c in table.columns)


def test_mask_pruner_candidates_hold_the_true_pairs(samples):
    for sample in samples:
        table = candidates.mask_pruner_candidates(
            sample.clefts, sample.segmentation, sample.voxel_size_nm
        )
        rows = [tuple(int(v) for v in r) for r in table.itertuples(index=False)]
        assert rows == sorted(rows) and len(set(rows)) == len(rows)
        assert all(pre != post for _, pre, post in rows)
        assert all((c, post, pre) in rows for c, pre, post in rows)  # both directions
        assert all(pre != 0 and post != 0 for _, pre, post in rows)
        for cleft_id, pre_id, post_id in sample.partners.itertuples(index=False):
            assert (cleft_id, pre_id, post_id) in rows


# --- proximity pruner -------------------------------------------------------------------------


def proximity_scene() -> tuple[np.ndarray, np.ndarray]:
    """A hand-built proximity map: one positive blob over segments 1 and 3, three negatives."""
    seg = np.ones((5, 20, 60), dtype=np.uint32)
    seg[:, 10:] = 2
    seg[:, :10, 18:24] = 3
    seg[:, :, 40:] = 4
    prox = np.zeros(seg.shape, dtype=np.float32)
    prox[2, 6:10, 2:22] = 0.8  # segment 1 (x < 18) and segment 3 (x 18..21)
    prox[2, 10:14, 2:13] = -0.8  # segment 2, just below
    prox[2, 0:3, 2:7] = -0.5  # segment 1: same segment as the positive piece there
    prox[2, 10:14, 50:57] = -0.9  # segment 4, far away
    prox[4, 15, 30] = 0.9  # a single voxel, below min_size
    prox[0, 5, 5] = 0.29  # below the threshold
    return prox, seg


def test_proximity_pieces_split_components_by_segment():
    prox, seg = proximity_scene()
    pieces = candidates.proximity_pieces(prox, seg)
    assert pieces.pre_segment.tolist() == [0, 1, 3]
    assert pieces.post_segment.tolist() == [0, 1, 2, 4]
    assert (pieces.pre_labels == 1).sum() == 4 * 16 and (pieces.pre_labels == 2).sum() == 16
    assert pieces.pre_labels[4, 15, 30] == 0 and pieces.pre_labels[0, 5, 5] == 0
    kept = candidates.proximity_pieces(prox, seg, min_size=1)
    assert kept.pre_segment.tolist() == [0, 1, 3, 2]
    assert kept.pre_labels[4, 15, 30] == 3


def test_proximity_pruner_candidates_hand_built():
    prox, seg = proximity_scene()
    table = candidates.proximity_pruner_candidates(prox, seg, VOXEL)
    assert table["candidate_id"].tolist() == [1, 2]
    assert table["pre_id"].tolist() == [1, 3] and table["post_id"].tolist() == [2, 2]
    assert table["pre_id"].dtype == np.uint64 and table["post_id"].dtype == np.uint64
    assert table["pre_piece"].tolist() == [1, 2] and table["post_piece"].tolist() == [2, 2]
    first = table.iloc[0]
    assert (first["pre_size"], first["post_size"]) == (64, 44)
    assert (first["bbox_bz"], first["bbox_by"], first["bbox_bx"]) == (2, 6, 2)
    assert (first["bbox_ez"], first["bbox_ey"], first["bbox_ex"]) == (3, 14, 18)
    assert first["centroid_z"] == pytest.approx(2.0)
    assert first["centroid_y"] == pytest.approx((7.5 * 64 + 11.5 * 44) / 108)
    assert first["centroid_x"] == pytest.approx((9.5 * 64 + 7.0 * 44) / 108)
    # piece 2 (segment 3) is 7 pixels = 28 nm from the negative piece: out of a 20 nm reach
    near = candidates.proximity_pruner_candidates(prox, seg, VOXEL, radius_nm=20.0)
    assert list(zip(near["pre_id"], near["post_id"], strict=True)) == [(1, 2)]
    # precomputed pieces give the same table
    pieces = candidates.proximity_pieces(prox, seg)
    again = candidates.proximity_pruner_candidates(prox, seg, VOXEL, pieces=pieces)
    pd.testing.assert_frame_equal(again, table)


def test_candidate_masks_are_the_pieces():
    prox, seg = proximity_scene()
    pieces = candidates.proximity_pieces(prox, seg)
    table = candidates.proximity_pruner_candidates(prox, seg, VOXEL, pieces=pieces)
    row = table.iloc[0]
    masks = candidates.candidate_masks(pieces, row["pre_piece"], row["post_piece"])
    assert masks.pre.sum() == row["pre_size"] and masks.post.sum() == row["post_size"]
    assert (seg[masks.pre] == row["pre_id"]).all() and (prox[masks.pre] >= 0.3).all()
    assert (seg[masks.post] == row["post_id"]).all() and (prox[masks.post] <= -0.3).all()
    box = (slice(2, 3), slice(8, 12), slice(0, 10))
    cropped = candidates.candidate_masks(pieces, 1, 2, slices=box)
    assert cropped.pre.shape == (1, 4, 10) and cropped.slices == box
    np.testing.assert_array_equal(cropped.pre, masks.pre[box])
    with pytest.raises(AvanInputError, match="pre_piece and post_piece"):
        candidates.candidate_masks(pieces, 3, 1)


def test_proximity_candidates_from_the_true_partners_recover_them(samples):
    for sample in samples:
        prox = candidates.signed_proximity(
            sample.clefts, sample.segmentation, sample.partners, sample.voxel_size_nm
        )
        table = candidates.proximity_pruner_candidates(
            prox, sample.segmentation, sample.voxel_size_nm
        )
        pairs = set(zip(table["pre_id"].tolist(), table["post_id"].tolist(), strict=True))
        truth = set(zip(sample.partners["pre_id"], sample.partners["post_id"], strict=True))
        assert truth <= pairs
        assert (table["pre_id"] != table["post_id"]).all()
        assert set(table["pre_id"]) <= set(sample.partners["pre_id"])
        assert set(table["post_id"]) <= set(sample.partners["post_id"])
        key = list(zip(table["pre_piece"], table["post_piece"], strict=True))
        assert key == sorted(key) and table["candidate_id"].tolist() == list(
            range(1, len(table) + 1)
        )


# --- best pair per cleft ----------------------------------------------------------------------


def test_best_pair_per_cleft_picks_the_max():
    table = pd.DataFrame(
        {
            "cleft_id": [2, 1, 1, 1, 2],
            "pre_id": [10, 11, 12, 13, 14],
            "post_id": [20, 21, 22, 23, 24],
        }
    )
    best = candidates.best_pair_per_cleft(table, [0.3, 0.1, 0.9, 0.5, 0.3])
    assert list(best.columns) == ["cleft_id", "pre_id", "post_id", "score", "candidate"]
    assert best["cleft_id"].tolist() == [1, 2]
    assert best["pre_id"].tolist() == [12, 10]  # cleft 2: a tie, the first row wins
    assert best["post_id"].tolist() == [22, 20]
    assert best["score"].tolist() == [0.9, 0.3] and best["candidate"].tolist() == [2, 0]
    # with the true clefts, a cleft without candidates is listed as a miss
    true = np.zeros((1, 4, 4), dtype=np.uint32)
    true[0, 0, :3] = [1, 2, 3]
    full = candidates.best_pair_per_cleft(table, [0.3, 0.1, 0.9, 0.5, 0.3], true)
    assert full["cleft_id"].tolist() == [1, 2, 3]
    assert full["pre_id"].tolist() == [12, 10, 0] and np.isnan(full["score"].iloc[2])
    assert full["candidate"].tolist() == [2, 0, -1]


def test_best_pair_per_cleft_matches_proximity_candidates_by_box():
    true = np.zeros((3, 10, 10), dtype=np.uint32)
    true[1, 2, 2:4] = 5
    true[1, 3, 2] = 6
    true[1, 8, 8] = 7
    table = pd.DataFrame(
        {
            "candidate_id": [1, 2, 3],
            "pre_id": [1, 2, 3],
            "post_id": [4, 4, 4],
            "bbox_bx": [0, 0, 5],
            "bbox_by": [0, 0, 0],
            "bbox_bz": [0, 0, 0],
            "bbox_ex": [5, 3, 7],
            "bbox_ey": [5, 5, 5],
            "bbox_ez": [3, 3, 3],
        }
    )
    # candidate 1 holds two voxels of cleft 5 and one of cleft 6; candidate 2 one and one
    # (tie: lowest id, 5); candidate 3 no cleft at all
    best = candidates.best_pair_per_cleft(table, [0.2, 0.7, 5.0], true)
    assert best["cleft_id"].tolist() == [5, 6, 7]
    assert best["pre_id"].tolist() == [2, 0, 0]
    assert best["candidate"].tolist() == [1, -1, -1]


def test_best_pair_per_cleft_recovers_truth_on_synthetic_data(samples):
    for sample in samples:
        prox = candidates.signed_proximity(
            sample.clefts, sample.segmentation, sample.partners, sample.voxel_size_nm
        )
        table = candidates.proximity_pruner_candidates(
            prox, sample.segmentation, sample.voxel_size_nm
        )
        truth = set(zip(sample.partners["pre_id"], sample.partners["post_id"], strict=True))
        pairs = zip(table["pre_id"], table["post_id"], strict=True)
        scores = [1.0 if p in truth else 0.0 for p in pairs]
        best = candidates.best_pair_per_cleft(table, scores, sample.clefts)
        got = best[["cleft_id", "pre_id", "post_id"]].astype(np.int64)
        want = sample.partners.sort_values("cleft_id", ignore_index=True).astype(np.int64)
        pd.testing.assert_frame_equal(got, want)


# --- bad input --------------------------------------------------------------------------------


def test_bad_inputs_raise_clear_errors():
    clefts, seg, partners = two_sided_volume()
    with pytest.raises(AvanInputError, match=r"same \(z, y, x\) shape"):
        candidates.signed_proximity(clefts[:, :5], seg, partners, VOXEL)
    with pytest.raises(AvanInputError, match="integer"):
        candidates.signed_proximity(clefts, seg.astype(np.float32), partners, VOXEL)
    with pytest.raises(AvanInputError, match="three"):
        candidates.signed_proximity(clefts, seg, partners, (4.0, 4.0))
    with pytest.raises(AvanInputError, match="positive"):
        candidates.signed_proximity(clefts, seg, partners, (40.0, 0.0, 4.0))
    with pytest.raises(AvanInputError, match="post_id"):
        candidates.signed_proximity(clefts, seg, partners.drop(columns="post_id"), VOXEL)
    with pytest.raises(AvanInputError, match="no voxel in the cleft volume"):
        candidates.signed_proximity(clefts, seg, partners.assign(cleft_id=8), VOXEL)
    with pytest.raises(AvanInputError, match="sigma_nm"):
        candidates.signed_proximity(clefts, seg, partners, VOXEL, sigma_nm=-1.0)
    with pytest.raises(AvanInputError, match=r"same \(z, y, x\) shape"):
        candidates.mask_pruner_candidates(clefts, seg[:4], VOXEL)
    with pytest.raises(AvanInputError, match="odd"):
        candidates.mask_pruner_candidates(clefts, seg, VOXEL, n_sections=2)
    prox, pseg = proximity_scene()
    with pytest.raises(AvanInputError, match=r"\(0, 1\]"):
        candidates.proximity_pruner_candidates(prox, pseg, VOXEL, threshold=1.5)
    with pytest.raises(AvanInputError, match="3D"):
        candidates.proximity_pruner_candidates(prox[0], pseg, VOXEL)
    with pytest.raises(AvanInputError, match="min_size"):
        candidates.proximity_pieces(prox, pseg, min_size=-1)
    table = pd.DataFrame({"cleft_id": [1], "pre_id": [2], "post_id": [3]})
    with pytest.raises(AvanInputError, match="one per row"):
        candidates.best_pair_per_cleft(table, [0.1, 0.2])
    with pytest.raises(AvanInputError, match="finite"):
        candidates.best_pair_per_cleft(table, [float("nan")])
    with pytest.raises(AvanInputError, match="give true_clefts"):
        candidates.best_pair_per_cleft(table.drop(columns="cleft_id"), [0.1])
    with pytest.raises(AvanInputError, match="bbox"):
        candidates.best_pair_per_cleft(table.drop(columns="cleft_id"), [0.1], clefts)
