"""Tests of core.cremi: the CREMI cleft distances and partner F-score on hand-computed cases.

Voxel size (40, 4, 4) nm unless said: one voxel step is 40 nm in z and 4 nm in y and x.
"""

from __future__ import annotations

import json
import math
from itertools import product

import numpy as np
import pandas as pd
import pytest
from label_rows import spans

from napari_avan.core import cremi
from napari_avan.types import AvanInputError

VS = (40.0, 4.0, 4.0)


def volume(shape: tuple[int, int, int], *voxels: tuple[int, int, int]) -> np.ndarray:
    """uint32 zeros of ``shape`` with label 1 at each (z, y, x) of ``voxels``."""
    out = np.zeros(shape, np.uint32)
    for v in voxels:
        out[v] = 1
    return out


def partners(*rows: tuple[int, int, int]) -> pd.DataFrame:
    return pd.DataFrame(list(rows), columns=["cleft_id", "pre_id", "post_id"])


# --- cleft distances --------------------------------------------------------------------------


def test_one_voxel_each_three_voxels_apart_in_x() -> None:
    truth = volume((1, 1, 8), (0, 0, 1))
    pred = volume((1, 1, 8), (0, 0, 4))
    d = cremi.cleft_distances(pred, truth, VS)
    # 3 voxels * 4 nm = 12 nm both ways
    assert d.adf == d.adgt == d.cremi_score == 12.0
    assert d.adf_median == d.adf_max == d.adgt_median == d.adgt_max == 12.0
    assert d.adf_std == d.adgt_std == 0.0
    assert (d.fp_voxels, d.fn_voxels) == (0, 0)
    assert (d.n_pred_voxels, d.n_true_voxels) == (1, 1)
    assert d.cutoff_nm == 200.0 and d.voxel_size_nm == VS


def test_prediction_equal_to_truth_scores_zero() -> None:
    truth = np.zeros((3, 5, 5), np.uint64)
    truth[1, 1:4, 2] = 7
    truth[2, 0, 0:3] = 9
    pred = truth.copy()
    pred[pred == 9] = 3  # which cleft a voxel belongs to does not matter
    d = cremi.cleft_distances(pred, truth, VS)
    assert d.adf == d.adgt == d.cremi_score == d.adf_max == d.adgt_max == 0.0
    assert (d.fp_voxels, d.fn_voxels) == (0, 0)
    assert (d.n_pred_voxels, d.n_true_voxels) == (6, 6)


def test_distances_are_anisotropic() -> None:
    truth = volume((3, 1, 4), (0, 0, 0))
    pred = volume((3, 1, 4), (2, 0, 0), (0, 0, 3))
    d = cremi.cleft_distances(pred, truth, VS)
    # pred (2,0,0) is 2 sections = 80 nm from the truth, pred (0,0,3) is 3 * 4 = 12 nm
    assert d.adf == pytest.approx(46.0)
    assert d.adf_median == pytest.approx(46.0)
    assert d.adf_max == pytest.approx(80.0)
    assert d.adf_std == pytest.approx(34.0)
    # the true voxel's nearest prediction is the in-plane one, 12 nm away
    assert d.adgt == pytest.approx(12.0)
    assert d.cremi_score == pytest.approx(29.0)
    # a diagonal step: sqrt(40^2 + 4^2 + 4^2)
    d = cremi.cleft_distances(volume((2, 2, 2), (1, 1, 1)), volume((2, 2, 2), (0, 0, 0)), VS)
    assert d.adf == pytest.approx(math.sqrt(1600 + 16 + 16))


def test_voxels_beyond_the_cutoff_are_counted() -> None:
    truth = volume((6, 1, 80), (0, 0, 0))
    # 75 * 4 = 300 nm: beyond 200; 5 * 40 = 200 nm: not farther than the cut-off
    pred = volume((6, 1, 80), (0, 0, 0), (0, 0, 75), (5, 0, 0))
    d = cremi.cleft_distances(pred, truth, VS)
    assert (d.fp_voxels, d.fn_voxels) == (1, 0)
    assert d.adf == pytest.approx(500.0 / 3)
    d = cremi.cleft_distances(pred, truth, VS, cutoff_nm=100.0)
    assert (d.fp_voxels, d.fn_voxels) == (2, 0)
    # the other way round: the true voxel 300 nm from every prediction is a false negative
    d = cremi.cleft_distances(volume((1, 1, 80), (0, 0, 0)), volume((1, 1, 80), (0, 0, 75)), VS)
    assert (d.fp_voxels, d.fn_voxels) == (1, 1)


def test_both_empty_is_zero() -> None:
    empty = np.zeros((2, 3, 3), np.uint32)
    d = cremi.cleft_distances(empty, empty, VS)
    assert d.adf == d.adgt == d.cremi_score == d.adf_max == d.adgt_std == 0.0
    assert (d.fp_voxels, d.fn_voxels, d.n_pred_voxels, d.n_true_voxels) == (0, 0, 0, 0)


def test_empty_prediction_misses_every_true_voxel() -> None:
    truth = volume((2, 3, 3), (0, 0, 0), (1, 2, 2))
    d = cremi.cleft_distances(np.zeros_like(truth), truth, VS)
    assert d.adf == 0.0 and d.fp_voxels == 0
    assert d.adgt == d.adgt_max == d.adgt_median == d.adgt_std == d.cremi_score == math.inf
    assert d.fn_voxels == 2
    out = d.to_dict()
    assert out["adgt"] is None and out["cremi_score"] is None and out["adf"] == 0.0
    json.dumps(out, allow_nan=False)  # no Infinity in the JSON


def test_empty_truth_makes_every_prediction_a_false_positive() -> None:
    pred = volume((2, 3, 3), (0, 1, 1))
    d = cremi.cleft_distances(pred, np.zeros_like(pred), VS)
    assert d.adf == d.cremi_score == math.inf and d.adgt == 0.0
    assert (d.fp_voxels, d.fn_voxels) == (1, 0)
    assert d.to_dict()["adf"] is None


def test_cremi_background_value() -> None:
    bg = cremi.CREMI_BACKGROUND
    truth = np.full((1, 1, 6), bg, np.uint64)
    pred = truth.copy()
    truth[0, 0, 0] = 0  # id 0 is a cleft when the background is CREMI's
    pred[0, 0, 2] = 5
    d = cremi.cleft_distances(pred, truth, VS, background=bg)
    assert d.adf == d.adgt == 8.0
    assert (d.n_pred_voxels, d.n_true_voxels) == (1, 1)


def test_matches_a_brute_force_reference() -> None:
    rng = np.random.default_rng(3)
    vs = (30.0, 5.0, 7.0)
    pred = (rng.random((3, 5, 6)) < 0.1).astype(np.uint8)
    truth = (rng.random((3, 5, 6)) < 0.1).astype(np.uint8)
    scale = np.asarray(vs)
    p = np.argwhere(pred) * scale
    t = np.argwhere(truth) * scale
    pairwise = np.sqrt(((p[:, None, :] - t[None, :, :]) ** 2).sum(-1))
    d = cremi.cleft_distances(pred, truth, vs, cutoff_nm=40.0)
    assert d.adf == pytest.approx(pairwise.min(axis=1).mean())
    assert d.adgt == pytest.approx(pairwise.min(axis=0).mean())
    assert d.adf_median == pytest.approx(np.median(pairwise.min(axis=1)))
    assert d.fp_voxels == int((pairwise.min(axis=1) > 40.0).sum())
    assert d.fn_voxels == int((pairwise.min(axis=0) > 40.0).sum())


def test_shape_mismatch_names_both_shapes() -> None:
    with pytest.raises(AvanInputError, match=r"\(1, 1, 8\).*\(1, 1, 9\)|\(1, 1, 9\).*\(1, 1, 8\)"):
        cremi.cleft_distances(np.zeros((1, 1, 8), np.uint8), np.zeros((1, 1, 9), np.uint8), VS)


@pytest.mark.parametrize("bad", [(0, 4, 4), (40, 4), (40, float("nan"), 4)])
def test_bad_voxel_size(bad: tuple[float, ...]) -> None:
    vol = np.zeros((1, 1, 3), np.uint8)
    with pytest.raises(AvanInputError, match="voxel size"):
        cremi.cleft_distances(vol, vol, bad)


def test_bad_cutoff_and_labels() -> None:
    vol = np.zeros((1, 1, 3), np.uint8)
    with pytest.raises(AvanInputError, match="cut-off"):
        cremi.cleft_distances(vol, vol, VS, cutoff_nm=-1.0)
    with pytest.raises(AvanInputError, match="integer"):
        cremi.cleft_distances(vol.astype(float), vol.astype(float), VS)


def test_to_dict_is_plain_json() -> None:
    truth = volume((1, 1, 8), (0, 0, 1))
    out = cremi.cleft_distances(volume((1, 1, 8), (0, 0, 4)), truth, VS).to_dict()
    assert json.loads(json.dumps(out, allow_nan=False)) == out
    assert out["voxel_size_nm"] == [40.0, 4.0, 4.0] and out["cremi_score"] == 12.0


# --- partner F-score --------------------------------------------------------------------------

# x positions in voxels (4 nm): true cleft 1 on [0, 2) -> centroid 0.5 -> 2 nm;
# true cleft 2 on [200, 202) -> 200.5 -> 802 nm.
TRUE_CLEFTS = spans(300, l1=(0, 2), l2=(200, 202))
TRUTH = partners((1, 10, 20), (2, 30, 40))


def test_partner_fscore_hand_built() -> None:
    # predicted cleft 5 on [1, 3) -> 6 nm (4 nm from true cleft 1);
    # 6 at x=50 -> 200 nm (602 nm from true cleft 2); 7 at x=10 -> 40 nm
    pred_clefts = spans(300, l5=(1, 3), l6=(50, 51), l7=(10, 11))
    pred = partners(
        (5, 10, 20),  # matches (1, 10, 20): tp
        (5, 10, 20),  # the same row again: fp
        (6, 30, 40),  # right neurons, 602 nm away: fp (and (2, 30, 40) is a fn)
        (7, 10, 21),  # wrong post id: fp
    )
    s = cremi.partner_fscore(pred_clefts, pred, TRUE_CLEFTS, TRUTH, VS)
    assert (s.tp, s.fp, s.fn) == (1, 3, 1)
    assert s.precision == 0.25 and s.recall == 0.5
    assert s.fscore == pytest.approx(2 / 6)  # 2 tp / (2 tp + fp + fn)
    assert (s.n_pred_pairs, s.n_true_pairs, s.n_duplicates) == (4, 2, 1)
    assert s.max_distance_nm == 400.0
    # a wider matching distance lets the far pair match
    s = cremi.partner_fscore(pred_clefts, pred, TRUE_CLEFTS, TRUTH, VS, max_distance_nm=700)
    assert (s.tp, s.fp, s.fn) == (2, 2, 0)


def test_partner_distance_limit_is_inclusive() -> None:
    # predicted cleft on [100, 102) -> 402 nm: exactly 400 nm from true cleft 1
    pred_clefts = spans(300, l3=(100, 102))
    s = cremi.partner_fscore(pred_clefts, partners((3, 10, 20)), TRUE_CLEFTS, TRUTH, VS)
    assert (s.tp, s.fp, s.fn) == (1, 0, 1)
    s = cremi.partner_fscore(
        pred_clefts, partners((3, 10, 20)), TRUE_CLEFTS, TRUTH, VS, max_distance_nm=399.9
    )
    assert (s.tp, s.fp, s.fn) == (0, 1, 2)


def test_partner_matching_is_one_to_one() -> None:
    # two predicted pairs near the one true pair (10, 20): one tp, one fp
    pred_clefts = spans(300, l5=(1, 3), l6=(4, 5))
    pred = partners((5, 10, 20), (6, 10, 20))
    s = cremi.partner_fscore(pred_clefts, pred, TRUE_CLEFTS, TRUTH, VS)
    assert (s.tp, s.fp, s.fn) == (1, 1, 1)


def test_partner_matching_finds_the_most_pairs() -> None:
    # true pairs (10, 20) at 0 nm and 700 nm; predicted p at 348 nm is within reach of
    # both, q at 8 nm only of the first: matching p to the first would leave q unmatched.
    true_clefts = spans(200, l1=(0, 1), l2=(175, 176))
    truth = partners((1, 10, 20), (2, 10, 20))
    pred_clefts = spans(200, l3=(87, 88), l4=(2, 3))  # 348 nm and 8 nm
    pred = partners((3, 10, 20), (4, 10, 20))
    s = cremi.partner_fscore(pred_clefts, pred, true_clefts, truth, VS)
    assert (s.tp, s.fp, s.fn) == (2, 0, 0) and s.fscore == 1.0


def test_partner_closest_matching_against_all_assignments() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        distance = rng.uniform(0, 10, (3, 4))
        allowed = rng.random((3, 4)) < 0.5
        got = cremi._closest_matching(distance, allowed)
        assert len({r for r, _ in got}) == len({c for _, c in got}) == len(got)
        best = (0, 0.0)
        for cols in product(range(-1, 4), repeat=3):  # -1: row unmatched
            used = [c for c in cols if c >= 0]
            if len(set(used)) < len(used):
                continue
            pairs = [(r, c) for r, c in enumerate(cols) if c >= 0]
            if not all(allowed[r, c] for r, c in pairs):
                continue
            key = (len(pairs), -sum(distance[r, c] for r, c in pairs))
            best = max(best, key)
        assert len(got) == best[0]
        assert -sum(distance[r, c] for r, c in got) == pytest.approx(best[1])


def test_partner_empty_tables_and_edge_tables() -> None:
    empty = partners()
    s = cremi.partner_fscore(TRUE_CLEFTS, empty, TRUE_CLEFTS, empty, VS)
    assert (s.tp, s.fp, s.fn, s.fscore) == (0, 0, 0, 1.0)
    s = cremi.partner_fscore(TRUE_CLEFTS, empty, TRUE_CLEFTS, TRUTH, VS)
    assert (s.tp, s.fp, s.fn, s.fscore) == (0, 0, 2, 0.0)
    edges = pd.DataFrame(
        {
            "cleft_segid": [1, 2],
            "presyn_segid": [10, 30],
            "postsyn_segid": [20, 40],
            "status": ["accepted", "rejected"],  # rejected edges are no synapses
        }
    )
    s = cremi.partner_fscore(TRUE_CLEFTS, edges, TRUE_CLEFTS, TRUTH, VS)
    assert (s.tp, s.fp, s.fn) == (1, 0, 1)
    assert json.loads(json.dumps(s.to_dict())) == s.to_dict()


def test_partner_errors() -> None:
    with pytest.raises(AvanInputError, match="cleft id"):
        cremi.partner_fscore(TRUE_CLEFTS, partners((9, 10, 20)), TRUE_CLEFTS, TRUTH, VS)
    with pytest.raises(AvanInputError, match="shape"):
        cremi.partner_fscore(spans(10), TRUTH, TRUE_CLEFTS, TRUTH, VS)
    with pytest.raises(AvanInputError, match="distance"):
        cremi.partner_fscore(TRUE_CLEFTS, TRUTH, TRUE_CLEFTS, TRUTH, VS, max_distance_nm=-1)
