"""Tests of core.metrics: hand-computed cases (arithmetic in comments) and slow references.

Most volumes are one row of voxels, shape (1, 1, N), written as a list of labels.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from label_rows import spans

from napari_avan.core import metrics
from napari_avan.types import AvanInputError


def row(*labels: int) -> np.ndarray:
    return np.asarray(labels, dtype=np.uint32).reshape(1, 1, -1)


def partners(*rows: tuple[int, int, int]) -> pd.DataFrame:
    return pd.DataFrame(list(rows), columns=["cleft_id", "pre_id", "post_id"], dtype=np.int64)


TRUTH = row(1, 1, 1, 1, 0, 0, 2, 2, 0, 0)

# --- cleft metrics: hand-computed --------------------------------------------------------------


def test_cleft_metrics_perfect():
    m = metrics.cleft_metrics(TRUTH, TRUTH)
    assert (m.precision, m.recall, m.f1) == (1.0, 1.0, 1.0)
    assert (m.tp, m.fp, m.fn, m.n_pred, m.n_true) == (2, 0, 0, 2, 2)
    assert (m.voxel_precision, m.voxel_recall, m.voxel_f1) == (1.0, 1.0, 1.0)
    assert m.matches == ((1, 1, 1.0), (2, 2, 1.0))


def test_cleft_metrics_empty_prediction():
    m = metrics.cleft_metrics(np.zeros_like(TRUTH), TRUTH)
    # precision 0/0 -> 1.0 (no false claims); recall 0/2 = 0; F1 = 0 / (0 + 0 + 2) = 0
    assert (m.precision, m.recall, m.f1) == (1.0, 0.0, 0.0)
    assert (m.tp, m.fp, m.fn) == (0, 0, 2)
    assert (m.voxel_precision, m.voxel_recall, m.voxel_f1) == (1.0, 0.0, 0.0)


def test_cleft_metrics_empty_truth():
    m = metrics.cleft_metrics(TRUTH, np.zeros_like(TRUTH))
    # precision 0/2 = 0; recall 0/0 -> 1.0; F1 = 0
    assert (m.precision, m.recall, m.f1) == (0.0, 1.0, 0.0)
    assert (m.tp, m.fp, m.fn) == (0, 2, 0)
    assert (m.voxel_tp, m.voxel_fp, m.voxel_fn) == (0, 6, 0)


def test_cleft_metrics_both_empty():
    empty = np.zeros((2, 3, 4), np.uint64)
    m = metrics.cleft_metrics(empty, empty)
    assert (m.precision, m.recall, m.f1) == (1.0, 1.0, 1.0)
    assert (m.voxel_precision, m.voxel_recall, m.voxel_f1) == (1.0, 1.0, 1.0)
    assert (m.tp, m.fp, m.fn, m.n_pred, m.n_true) == (0, 0, 0, 0, 0)
    assert m.matches == ()


def test_cleft_metrics_split_cleft():
    truth = row(1, 1, 1, 1, 0)
    pred = row(5, 5, 6, 6, 0)
    m = metrics.cleft_metrics(pred, truth)
    # IoU(5, 1) = IoU(6, 1) = 2 / 4 = 0.5: one match, the other piece is a false positive
    assert (m.tp, m.fp, m.fn) == (1, 1, 0)
    # precision 1/2, recall 1/1, F1 = 2 / (2 + 1 + 0) = 2/3
    assert m.precision == 0.5 and m.recall == 1.0 and m.f1 == pytest.approx(2 / 3)
    assert m.matches[0][1] == 1 and m.matches[0][2] == 0.5
    assert m.voxel_f1 == 1.0  # the masks are identical


def test_cleft_metrics_merged_cleft():
    truth = row(1, 1, 0, 2, 2)
    pred = row(3, 3, 3, 3, 3)
    m = metrics.cleft_metrics(pred, truth)
    # IoU(3, 1) = IoU(3, 2) = 2 / 5 = 0.4: one match, one true cleft missed
    assert (m.tp, m.fp, m.fn) == (1, 0, 1)
    # precision 1/1, recall 1/2, F1 = 2 / (2 + 0 + 1) = 2/3
    assert m.precision == 1.0 and m.recall == 0.5 and m.f1 == pytest.approx(2 / 3)
    assert m.matches[0][0] == 3 and m.matches[0][2] == pytest.approx(0.4)
    # voxels: tp 4, fp 1 (the gap), fn 0 -> precision 4/5, recall 1, F1 = 8 / 9
    assert m.voxel_precision == pytest.approx(0.8) and m.voxel_f1 == pytest.approx(8 / 9)


def test_cleft_metrics_iou_threshold_boundary():
    truth = spans(12, l1=(0, 10))
    pred = spans(12, l2=(0, 1), l3=(11, 12))
    # IoU(2, 1) = 1 / (1 + 10 - 1) = 0.1: matches at the default threshold (>=)
    m = metrics.cleft_metrics(pred, truth)
    assert (m.tp, m.fp, m.fn) == (1, 1, 0)
    assert m.matches == ((2, 1, 0.1),)
    assert metrics.cleft_metrics(pred, truth, iou_threshold=0.1000001).tp == 0
    # label 3 shares no voxel with the truth: never a match, even at threshold 0
    assert metrics.cleft_metrics(pred, truth, iou_threshold=0.0).tp == 1


def test_cleft_metrics_any_overlap():
    truth = spans(30, l1=(0, 10))
    pred = spans(30, l4=(9, 29))
    # IoU = 1 / (10 + 20 - 1) = 1/29 < 0.1: no match by IoU, a match on any overlap
    assert metrics.cleft_metrics(pred, truth).tp == 0
    m = metrics.cleft_metrics(pred, truth, any_overlap=True)
    assert (m.tp, m.fp, m.fn) == (1, 0, 0)
    assert m.matches == ((4, 1, pytest.approx(1 / 29)),)
    assert m.any_overlap is True


def test_cleft_metrics_maximises_matches_not_greedy_iou():
    # true X = 1 on [0, 10), Y = 2 on [10, 20); pred A = 7 on [4, 13), B = 8 on [0, 4)
    truth = spans(20, l1=(0, 10), l2=(10, 20))
    pred = spans(20, l8=(0, 4), l7=(4, 13))
    # IoU(A, X) = 6 / (9 + 10 - 6) = 6/13; IoU(A, Y) = 3 / (9 + 10 - 3) = 3/16;
    # IoU(B, X) = 4 / 10. Greedy by IoU takes A-X and stops at 1 match; the best
    # one-to-one matching is A-Y plus B-X: 2 matches.
    m = metrics.cleft_metrics(pred, truth)
    assert (m.tp, m.fp, m.fn) == (2, 0, 0)
    assert m.matches == ((8, 1, 0.4), (7, 2, 3 / 16))
    # voxels: pred covers [0, 13) -> tp 13, fp 0, fn 7: recall 13/20, F1 = 26 / 33
    assert m.voxel_recall == pytest.approx(0.65) and m.voxel_f1 == pytest.approx(26 / 33)


def test_cleft_metrics_prefers_larger_total_iou_among_equal_counts():
    # one true cleft (3 voxels), two candidates of 2 voxels each:
    # IoU(5, 1) = 2 / (2 + 3 - 2) = 2/3; IoU(6, 1) = 1 / (2 + 3 - 1) = 1/4
    truth = row(1, 1, 1, 0)
    pred = row(5, 5, 6, 6)
    assert metrics.cleft_metrics(pred, truth).matches == ((5, 1, 2 / 3),)


def test_cleft_metrics_checks_inputs():
    with pytest.raises(AvanInputError, match="has shape"):
        metrics.cleft_metrics(TRUTH, TRUTH[..., :5])
    with pytest.raises(AvanInputError, match="IoU threshold"):
        metrics.cleft_metrics(TRUTH, TRUTH, iou_threshold=1.5)


def test_to_dict_is_json_safe():
    m = metrics.cleft_metrics(row(5, 5, 6, 6), row(1, 1, 1, 0))
    d = m.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert d["matches"] == [[5, 1, 2 / 3]]
    assert type(d["tp"]) is int and type(d["f1"]) is float


# --- cleft metrics: slow reference -------------------------------------------------------------


def _random_boxes(rng, shape, n):
    vol = np.zeros(shape, np.uint32)
    for label in rng.choice(np.arange(1, 50), size=n, replace=False):
        b = [rng.integers(0, s - 1) for s in shape]
        e = [rng.integers(bi + 1, min(bi + 4, s) + 1) for bi, s in zip(b, shape, strict=True)]
        vol[b[0] : e[0], b[1] : e[1], b[2] : e[2]] = label
    return vol


def _slow_iou(pred, truth):
    out = {}
    for p in np.unique(pred[pred > 0]):
        for t in np.unique(truth[truth > 0]):
            inter = int(((pred == p) & (truth == t)).sum())
            union = int(((pred == p) | (truth == t)).sum())
            if inter:
                out[(int(p), int(t))] = (inter, inter / union)
    return out


def _slow_best_matching(pairs):
    """(count, total IoU) of the best one-to-one matching, by exhaustive search."""
    preds = sorted({p for p, _ in pairs})

    def best(i, used):
        if i == len(preds):
            return (0, 0.0)
        options = [best(i + 1, used)]
        for (p, t), iou in pairs.items():
            if p == preds[i] and t not in used:
                c, s = best(i + 1, used | {t})
                options.append((c + 1, s + iou))
        return max(options, key=lambda o: (o[0], round(o[1], 9)))

    return best(0, frozenset())


@pytest.mark.parametrize("seed", range(12))
def test_cleft_metrics_match_slow_reference(seed):
    rng = np.random.default_rng(seed)
    shape = (3, 6, 7)
    pred = _random_boxes(rng, shape, rng.integers(0, 6))
    truth = _random_boxes(rng, shape, rng.integers(0, 6))
    threshold = [0.0, 0.1, 0.3][seed % 3]
    any_overlap = seed % 4 == 0
    iou = _slow_iou(pred, truth)
    allowed = {k: v[1] for k, v in iou.items() if any_overlap or v[1] >= threshold}
    count, total = _slow_best_matching(allowed)
    m = metrics.cleft_metrics(pred, truth, iou_threshold=threshold, any_overlap=any_overlap)
    assert m.tp == count
    assert sum(x[2] for x in m.matches) == pytest.approx(total)
    assert m.n_pred == len(np.unique(pred[pred > 0]))
    assert m.n_true == len(np.unique(truth[truth > 0]))
    for p, t, v in m.matches:
        assert v == pytest.approx(iou[(p, t)][1]) and (p, t) in allowed
    assert len({p for p, _, _ in m.matches}) == len({t for _, t, _ in m.matches}) == m.tp
    assert m.voxel_tp == int(((pred > 0) & (truth > 0)).sum())
    assert m.voxel_fp == int(((pred > 0) & (truth == 0)).sum())
    assert m.voxel_fn == int(((pred == 0) & (truth > 0)).sum())
    # the overlap table itself
    ov = metrics.label_overlap(pred, truth)
    got = {
        (int(ov.pred_ids[p]), int(ov.true_ids[t])): int(v)
        for p, t, v in zip(ov.pair_pred, ov.pair_true, ov.pair_voxels, strict=True)
    }
    assert got == {k: v[0] for k, v in iou.items()}


# --- assignment metrics ------------------------------------------------------------------------


def test_assignment_metrics_dyadic_hand_computed():
    truth = partners((1, 10, 20), (2, 11, 21), (3, 12, 22), (4, 13, 23))
    pred = partners(
        (1, 10, 20),  # right
        (2, 21, 11),  # pre and post swapped: wrong
        (3, 12, 99),  # right pre, wrong post
        (5, 1, 2),  # cleft 5 is not a true cleft: ignored (cleft 4 has no prediction)
    )
    m = metrics.assignment_metrics(pred, truth)
    assert m.polyadic is False and m.n_clefts == 4
    assert m.accuracy == 0.25  # only cleft 1 of 4
    assert m.pre_accuracy == 0.5  # clefts 1 and 3
    # pooled edges: tp 1, fp 2 (clefts 2, 3), fn 3 (clefts 2, 3, 4)
    assert (m.tp, m.fp, m.fn) == (1, 2, 3)
    assert m.precision == pytest.approx(1 / 3) and m.recall == 0.25
    assert m.f1 == pytest.approx(2 / 7)  # 2 / (2 + 2 + 3)
    # per cleft (P, R, F1): c1 (1, 1, 1), c2 (0, 0, 0), c3 (0, 0, 0), c4 (1 [0/0], 0, 0)
    assert m.cleft_precision == 0.5 and m.cleft_recall == 0.25 and m.cleft_f1 == 0.25
    assert m.n_ignored_pred_edges == 1
    assert (m.n_pred_edges, m.n_true_edges) == (3, 4)


def test_assignment_metrics_polyadic_partial():
    truth = partners((1, 10, 20), (1, 10, 21), (1, 10, 22), (2, 11, 30))
    pred = partners((1, 10, 20), (1, 10, 21), (1, 10, 99), (2, 11, 30))
    m = metrics.assignment_metrics(pred, truth)
    assert m.polyadic is True  # auto: cleft 1 has 3 true rows
    # cleft 1: 2 of 3 posts + 1 wrong -> tp 2, fp 1, fn 1: P = R = F1 = 2/3; cleft 2 perfect
    # pooled: tp 3, fp 1, fn 1 -> P = R = F1 = 3/4
    assert (m.tp, m.fp, m.fn) == (3, 1, 1)
    assert (m.precision, m.recall, m.f1) == (0.75, 0.75, 0.75)
    # per cleft mean: (2/3 + 1) / 2 = 5/6
    assert m.cleft_precision == pytest.approx(5 / 6)
    assert m.cleft_recall == pytest.approx(5 / 6) and m.cleft_f1 == pytest.approx(5 / 6)
    assert m.accuracy == 0.5  # cleft 2 only
    assert m.pre_accuracy == 1.0


def test_assignment_metrics_duplicates_and_forms():
    truth = partners((1, 10, 20))
    pred = partners((1, 10, 20), (1, 10, 20))  # a repeated row counts once
    m = metrics.assignment_metrics(pred, truth)
    assert (m.accuracy, m.f1, m.tp, m.fp) == (1.0, 1.0, 1, 0)
    edges = pd.DataFrame(
        {
            "cleft_segid": [1, 1],
            "presyn_segid": [10, 10],
            "postsyn_segid": [20, 77],
            "status": ["accepted", "rejected"],  # the rejected edge is not a prediction
        }
    )
    assert metrics.assignment_metrics(edges, truth).accuracy == 1.0
    empty = metrics.assignment_metrics(partners(), truth)
    assert (empty.accuracy, empty.precision, empty.recall, empty.f1) == (0.0, 1.0, 0.0, 0.0)
    nothing = metrics.assignment_metrics(partners(), partners())
    assert (nothing.accuracy, nothing.f1, nothing.cleft_f1) == (1.0, 1.0, 1.0)


def test_assignment_metrics_polyadic_flag():
    truth = partners((1, 10, 20), (1, 10, 21))
    assert metrics.assignment_metrics(truth, truth, polyadic=True).polyadic is True
    with pytest.raises(AvanInputError, match="polyadic"):
        metrics.assignment_metrics(truth, truth, polyadic=False)
    dyadic = partners((1, 10, 20))
    assert metrics.assignment_metrics(dyadic, dyadic, polyadic=True).polyadic is True
    with pytest.raises(AvanInputError, match="pre_id"):
        metrics.assignment_metrics(pd.DataFrame({"cleft_id": [1]}), dyadic)


# --- edge metrics ------------------------------------------------------------------------------

# true clefts 1 on [0, 4), 2 on [6, 10) in a row of 16 voxels
TRUE_CLEFTS = spans(16, l1=(0, 4), l2=(6, 10))
TRUE_EDGES = partners((1, 10, 20), (2, 11, 21), (2, 11, 22))


def test_edge_metrics_perfect():
    m = metrics.edge_metrics(TRUE_CLEFTS, TRUE_EDGES, TRUE_CLEFTS, TRUE_EDGES)
    assert (m.precision, m.recall, m.f1, m.tp, m.fp, m.fn) == (1.0, 1.0, 1.0, 3, 0, 0)


def test_edge_metrics_split_duplicate_and_unmatched():
    # 5 and 6 split true cleft 1; 7 is true cleft 2; 8 overlaps nothing
    pred = spans(16, l5=(0, 2), l6=(2, 4), l7=(6, 10), l8=(12, 14))
    edges = partners(
        (5, 10, 20),  # -> (1, 10, 20): tp
        (6, 10, 20),  # -> (1, 10, 20) again: duplicate, fp
        (7, 11, 21),  # -> (2, 11, 21): tp
        (7, 11, 23),  # wrong post: fp
        (8, 10, 20),  # unmatched cleft: fp
    )
    m = metrics.edge_metrics(pred, edges, TRUE_CLEFTS, TRUE_EDGES)
    # tp 2, fp 3, fn 1 (2, 11, 22): P = 2/5, R = 2/3, F1 = 4 / (4 + 3 + 1) = 0.5
    assert (m.tp, m.fp, m.fn) == (2, 3, 1)
    assert m.precision == 0.4 and m.recall == pytest.approx(2 / 3) and m.f1 == 0.5
    assert m.n_duplicates == 1 and m.n_unmatched_clefts == 1 and m.n_pred_clefts == 4
    assert (m.n_pred_edges, m.n_true_edges) == (5, 3)


def test_edge_metrics_merged_cleft_maps_to_largest_overlap():
    # 9 on [1, 10): 3 voxels of cleft 1, 4 of cleft 2 -> maps to cleft 2
    pred = spans(16, l9=(1, 10))
    edges = partners((9, 10, 20), (9, 11, 21))
    m = metrics.edge_metrics(pred, edges, TRUE_CLEFTS, TRUE_EDGES)
    # (2, 10, 20) is not true: fp; (2, 11, 21): tp. fn 2 -> P 1/2, R 1/3, F1 2/5
    assert (m.tp, m.fp, m.fn) == (1, 1, 2)
    assert m.f1 == pytest.approx(0.4)
    # on a tie (4 voxels each, [0, 10)) the lowest true id wins: cleft 1
    tie = metrics.edge_metrics(spans(16, l9=(0, 10)), edges, TRUE_CLEFTS, TRUE_EDGES)
    assert tie.tp == 1 and tie.fp == 1


def test_edge_metrics_swapped_and_empty():
    swapped = partners((1, 20, 10), (2, 11, 21), (2, 11, 22))
    m = metrics.edge_metrics(TRUE_CLEFTS, swapped, TRUE_CLEFTS, TRUE_EDGES)
    # (1, 20, 10) is not (1, 10, 20): tp 2, fp 1, fn 1
    assert (m.tp, m.fp, m.fn) == (2, 1, 1)
    none = metrics.edge_metrics(np.zeros_like(TRUE_CLEFTS), partners(), TRUE_CLEFTS, TRUE_EDGES)
    assert (none.precision, none.recall, none.f1) == (1.0, 0.0, 0.0)
    empty = np.zeros_like(TRUE_CLEFTS)
    both = metrics.edge_metrics(empty, partners(), empty, partners())
    assert (both.precision, both.recall, both.f1) == (1.0, 1.0, 1.0)
    only_pred = metrics.edge_metrics(TRUE_CLEFTS, TRUE_EDGES, empty, partners())
    assert (only_pred.precision, only_pred.recall, only_pred.f1, only_pred.fp) == (0, 1, 0, 3)


def test_edge_metrics_checks_cleft_ids():
    with pytest.raises(AvanInputError, match=r"predicted edge table .* 3"):
        metrics.edge_metrics(TRUE_CLEFTS, partners((3, 1, 2)), TRUE_CLEFTS, TRUE_EDGES)
    with pytest.raises(AvanInputError, match="has shape"):
        metrics.edge_metrics(TRUE_CLEFTS[..., :4], TRUE_EDGES, TRUE_CLEFTS, TRUE_EDGES)


def _slow_edge_metrics(pred, pred_edges, truth, true_edges):
    best = {}
    for p in np.unique(pred[pred > 0]):
        counts = {int(t): int(((pred == p) & (truth == t)).sum()) for t in np.unique(truth)}
        counts.pop(0, None)
        top = max(counts.values(), default=0)
        if top:
            best[int(p)] = min(t for t, c in counts.items() if c == top)
    truth_set = set(map(tuple, true_edges.to_numpy().tolist()))
    seen, tp = set(), 0
    for c, a, b in pred_edges.to_numpy().tolist():
        edge = (best.get(c), a, b)
        if edge in truth_set and edge not in seen:
            seen.add(edge)
            tp += 1
    return tp, len(pred_edges) - tp, len(truth_set) - tp


@pytest.mark.parametrize("seed", range(10))
def test_edge_metrics_match_slow_reference(seed):
    rng = np.random.default_rng(100 + seed)
    shape = (3, 6, 7)
    pred = _random_boxes(rng, shape, rng.integers(1, 6))
    truth = _random_boxes(rng, shape, rng.integers(1, 6))
    segments = [10, 11, 12]

    def random_edges(vol, n):
        ids = np.unique(vol[vol > 0])
        return partners(
            *[
                (int(rng.choice(ids)), int(rng.choice(segments)), int(rng.choice(segments)))
                for _ in range(n)
            ]
        )

    true_edges = random_edges(truth, 6)
    pred_edges = random_edges(pred, 8)
    m = metrics.edge_metrics(pred, pred_edges, truth, true_edges)
    assert (m.tp, m.fp, m.fn) == _slow_edge_metrics(pred, pred_edges, truth, true_edges)
