"""Evaluation metrics: what ``napari-avan evaluate`` computes and reports.

Conventions shared by every metric here:

* precision = tp / (tp + fp), recall = tp / (tp + fn), F1 = 2 tp / (2 tp + fp + fn)
  (the harmonic mean of precision and recall where that is defined);
* a ratio with a zero denominator is 1.0: nothing predicted has precision 1.0 (no false
  claims), nothing to find has recall 1.0, and both empty gives precision = recall = F1 = 1.0.
  F1 is then 0.0 whenever exactly one side is empty and 1.0 when both are.

Label overlaps come from one joint count over the voxels labelled in either volume (a sort of
paired ids), never from a mask per label.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from napari_avan.core.geometry import check_label_volume, check_same_shape
from napari_avan.core.tables import as_partner_table
from napari_avan.types import AvanInputError

#: Default IoU a predicted cleft needs with a true cleft to match it (``--iou`` of evaluate).
DEFAULT_IOU_THRESHOLD = 0.1


def _ratio(num: float, den: float) -> float:
    """num / den, with 0 / 0 = 1.0 (see the module docstring)."""
    return 1.0 if den == 0 else float(num) / float(den)


def precision_recall_f1(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    """Precision, recall and F1 from counts, each 0 / 0 = 1.0."""
    return _ratio(tp, tp + fp), _ratio(tp, tp + fn), _ratio(2 * tp, 2 * tp + fp + fn)


def plain_json(value: Any) -> Any:
    """Metrics as plain JSON numbers: numpy scalars to int, float and bool; tuples to lists."""
    if isinstance(value, dict):
        return {k: plain_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain_json(v) for v in value]
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value)
    return value


class _Metrics:
    """Mixin: ``to_dict`` of a dataclass with plain ints, floats, bools and lists."""

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-serialisable dict (tuples become lists)."""
        return plain_json(asdict(self))  # type: ignore[call-overload]


# --- overlaps ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelOverlap:
    """Voxel overlaps of two label volumes.

    Attributes:
        pred_ids: (P,) nonzero ids of the first volume, increasing.
        pred_size: (P,) their voxel counts.
        true_ids: (T,) nonzero ids of the second volume, increasing.
        true_size: (T,) their voxel counts.
        pair_pred: (K,) index into ``pred_ids`` of each overlapping pair.
        pair_true: (K,) index into ``true_ids`` of each overlapping pair.
        pair_voxels: (K,) voxels shared by the pair (> 0), pairs sorted by (pred, true).
    """

    pred_ids: np.ndarray
    pred_size: np.ndarray
    true_ids: np.ndarray
    true_size: np.ndarray
    pair_pred: np.ndarray
    pair_true: np.ndarray
    pair_voxels: np.ndarray

    @property
    def pair_iou(self) -> np.ndarray:
        """(K,) intersection over union of each overlapping pair."""
        inter = self.pair_voxels.astype(np.float64)
        union = self.pred_size[self.pair_pred] + self.true_size[self.pair_true] - inter
        return inter / union


def label_overlap(pred: np.ndarray, truth: np.ndarray) -> LabelOverlap:
    """Sizes of every label of two volumes and the voxel count of every overlapping pair."""
    pred = check_label_volume(pred, "predicted labels")
    truth = check_label_volume(truth, "true labels")
    check_same_shape(predicted=pred, truth=truth)
    p = pred.ravel()
    t = truth.ravel()
    fg = np.flatnonzero((p != 0) | (t != 0))
    p_ids, p_inv = np.unique(p[fg], return_inverse=True)
    t_ids, t_inv = np.unique(t[fg], return_inverse=True)
    # drop the background entry (index 0 when present) from both id lists
    p_off = int(p_ids.size > 0 and p_ids[0] == 0)
    t_off = int(t_ids.size > 0 and t_ids[0] == 0)
    p_size = np.bincount(p_inv, minlength=p_ids.size)[p_off:].astype(np.int64)
    t_size = np.bincount(t_inv, minlength=t_ids.size)[t_off:].astype(np.int64)
    both = (p[fg] != 0) & (t[fg] != 0)
    pi = p_inv[both].astype(np.int64) - p_off
    ti = t_inv[both].astype(np.int64) - t_off
    n_true = max(t_ids.size - t_off, 1)
    codes, counts = np.unique(pi * n_true + ti, return_counts=True)
    return LabelOverlap(
        pred_ids=p_ids[p_off:],
        pred_size=p_size,
        true_ids=t_ids[t_off:],
        true_size=t_size,
        pair_pred=codes // n_true,
        pair_true=codes % n_true,
        pair_voxels=counts.astype(np.int64),
    )


def _match(
    n_pred: int, n_true: int, rows: np.ndarray, cols: np.ndarray, iou: np.ndarray
) -> list[tuple[int, int, float]]:
    """One-to-one matching of the allowed pairs: most matches, then largest total IoU.

    The bipartite graph of allowed pairs is split into connected components, each solved
    exactly with the Hungarian algorithm on weights ``K + iou`` (K larger than any
    component's possible number of matches, so a matching with more pairs always wins).
    """
    if rows.size == 0:
        return []
    graph = coo_matrix(
        (np.ones(rows.size), (rows, cols + n_pred)), shape=(n_pred + n_true,) * 2
    ).tocsr()
    _, component = connected_components(graph, directed=False)
    pair_comp = component[rows]
    order = np.argsort(pair_comp, kind="stable")
    bounds = np.flatnonzero(np.diff(pair_comp[order])) + 1
    out: list[tuple[int, int, float]] = []
    for sel in np.split(order, bounds):
        if sel.size == 1:  # the usual case: a pair that overlaps nothing else
            out.append((int(rows[sel[0]]), int(cols[sel[0]]), float(iou[sel[0]])))
            continue
        r_ids, r_loc = np.unique(rows[sel], return_inverse=True)
        c_ids, c_loc = np.unique(cols[sel], return_inverse=True)
        big = min(r_ids.size, c_ids.size) + 1.0
        weight = np.zeros((r_ids.size, c_ids.size))
        pair_iou = np.full_like(weight, np.nan)
        weight[r_loc, c_loc] = big + iou[sel]
        pair_iou[r_loc, c_loc] = iou[sel]
        ri, ci = linear_sum_assignment(weight, maximize=True)
        # the solver may pad with disallowed (zero-weight) pairs: drop them
        keep = ~np.isnan(pair_iou[ri, ci])
        out.extend(
            (int(r_ids[r]), int(c_ids[c]), float(pair_iou[r, c]))
            for r, c in zip(ri[keep], ci[keep], strict=True)
        )
    return out


@dataclass(frozen=True)
class CleftMetrics(_Metrics):
    """Cleft detection metrics (``napari-avan evaluate clefts``).

    Attributes:
        precision, recall, f1: object-level, from the one-to-one matching.
        tp: matched pairs; fp: unmatched predicted clefts; fn: unmatched true clefts.
        n_pred, n_true: numbers of predicted and true clefts.
        voxel_precision, voxel_recall, voxel_f1: of the binary masks (label > 0).
        voxel_tp, voxel_fp, voxel_fn: voxel counts behind them.
        iou_threshold, any_overlap: the matching rule used.
        matches: (pred_id, true_id, iou) of each matched pair, by increasing true id.
    """

    precision: float
    recall: float
    f1: float
    tp: int
    fp: int
    fn: int
    n_pred: int
    n_true: int
    voxel_precision: float
    voxel_recall: float
    voxel_f1: float
    voxel_tp: int
    voxel_fp: int
    voxel_fn: int
    iou_threshold: float
    any_overlap: bool
    matches: tuple[tuple[int, int, float], ...]


def cleft_metrics(
    pred: np.ndarray,
    truth: np.ndarray,
    *,
    iou_threshold: float = DEFAULT_IOU_THRESHOLD,
    any_overlap: bool = False,
) -> CleftMetrics:
    """Object and voxel precision, recall and F1 of predicted against true cleft labels.

    A predicted and a true cleft may match when their IoU is >= ``iou_threshold`` (or, with
    ``any_overlap``, when they share at least one voxel); pairs that share no voxel never
    match. Each cleft matches at most one cleft on the other side; among all such
    one-to-one matchings the one with the most pairs is used, ties broken by the largest
    total IoU (exact, see :func:`_match`). A true cleft split in two predictions yields one
    match and one false positive; two true clefts merged into one prediction yield one match
    and one false negative.

    Args:
        pred: (z, y, x) predicted cleft labels, 0 = background.
        truth: (z, y, x) true cleft labels, same shape.
        iou_threshold: minimum IoU of a matching pair (ignored with ``any_overlap``).
        any_overlap: match on any shared voxel instead of the IoU threshold.

    Returns:
        The metrics; 0/0 ratios are 1.0 (module docstring).
    """
    if not np.isfinite(iou_threshold) or not 0 <= iou_threshold <= 1:
        raise AvanInputError(f"IoU threshold {iou_threshold!r} must lie in [0, 1]")
    ov = label_overlap(pred, truth)
    iou = ov.pair_iou
    allowed = np.ones(iou.size, bool) if any_overlap else iou >= iou_threshold
    matched = _match(
        ov.pred_ids.size,
        ov.true_ids.size,
        ov.pair_pred[allowed],
        ov.pair_true[allowed],
        iou[allowed],
    )
    matches = tuple(
        sorted(
            ((int(ov.pred_ids[r]), int(ov.true_ids[c]), v) for r, c, v in matched),
            key=lambda m: (m[1], m[0]),
        )
    )
    n_pred, n_true, tp = int(ov.pred_ids.size), int(ov.true_ids.size), len(matches)
    precision, recall, f1 = precision_recall_f1(tp, n_pred - tp, n_true - tp)
    v_tp = int(ov.pair_voxels.sum())
    v_fp = int(ov.pred_size.sum()) - v_tp
    v_fn = int(ov.true_size.sum()) - v_tp
    v_precision, v_recall, v_f1 = precision_recall_f1(v_tp, v_fp, v_fn)
    return CleftMetrics(
        precision=precision,
        recall=recall,
        f1=f1,
        tp=tp,
        fp=n_pred - tp,
        fn=n_true - tp,
        n_pred=n_pred,
        n_true=n_true,
        voxel_precision=v_precision,
        voxel_recall=v_recall,
        voxel_f1=v_f1,
        voxel_tp=v_tp,
        voxel_fp=v_fp,
        voxel_fn=v_fn,
        iou_threshold=float(iou_threshold),
        any_overlap=bool(any_overlap),
        matches=matches,
    )


# --- assignment -------------------------------------------------------------------------------


@dataclass(frozen=True)
class AssignmentMetrics(_Metrics):
    """Partner assignment metrics on the true clefts (``napari-avan evaluate assignment``).

    Attributes:
        polyadic: whether the polyadic scores are the headline (``f1``) or the dyadic one
            (``accuracy``); every field is computed either way.
        n_clefts: true clefts evaluated.
        accuracy: fraction of true clefts whose predicted edge set equals the true one (for
            a dyadic cleft: the predicted (pre, post) is the true pair, and only it).
        pre_accuracy: fraction of true clefts whose predicted presynaptic ids equal the true
            ones.
        precision, recall, f1: edge scores pooled over all true clefts.
        tp, fp, fn: the pooled edge counts.
        cleft_precision, cleft_recall, cleft_f1: edge scores per cleft, averaged over the
            true clefts.
        n_pred_edges, n_true_edges: distinct edges on true clefts.
        n_ignored_pred_edges: predicted edges on cleft ids absent from the truth (ignored).
    """

    polyadic: bool
    n_clefts: int
    accuracy: float
    pre_accuracy: float
    precision: float
    recall: float
    f1: float
    tp: int
    fp: int
    fn: int
    cleft_precision: float
    cleft_recall: float
    cleft_f1: float
    n_pred_edges: int
    n_true_edges: int
    n_ignored_pred_edges: int


def _edge_sets(partners: pd.DataFrame) -> dict[int, set[tuple[int, int]]]:
    out: dict[int, set[tuple[int, int]]] = {}
    for cleft, pre, post in partners.itertuples(index=False, name=None):
        out.setdefault(int(cleft), set()).add((int(pre), int(post)))
    return out


def assignment_metrics(
    pred: pd.DataFrame, truth: pd.DataFrame, *, polyadic: bool | None = None
) -> AssignmentMetrics:
    """Score predicted partners of the TRUE clefts (cleft ids shared by both tables).

    Tables are partner tables (``cleft_id, pre_id, post_id``) or edge tables (rejected
    edges dropped). Each cleft's edges are treated as a set (repeated rows count once).
    A true cleft with no prediction scores accuracy 0, pre accuracy 0, precision 1 (no
    false claim), recall 0 and F1 0; predictions on cleft ids not in the truth are ignored
    and counted in ``n_ignored_pred_edges``.

    Args:
        pred: predicted partners.
        truth: true partners.
        polyadic: headline mode; None decides from the truth (polyadic when any true cleft
            has more than one row).

    Raises:
        AvanInputError: when ``polyadic`` is False but the truth has several edges on a
            cleft, or a table is malformed.
    """
    true_sets = _edge_sets(as_partner_table(truth))
    pred_sets = _edge_sets(as_partner_table(pred))
    multi = [c for c, edges in true_sets.items() if len(edges) > 1]
    if polyadic is None:
        polyadic = bool(multi)
    elif not polyadic and multi:
        raise AvanInputError(
            f"the truth has {len(multi)} clefts with several partner pairs (e.g. cleft "
            f"{min(multi)}): evaluate them as polyadic (polyadic=True or None)"
        )
    tp = fp = fn = 0
    exact = pre_ok = 0
    cleft_p: list[float] = []
    cleft_r: list[float] = []
    cleft_f: list[float] = []
    for cleft in sorted(true_sets):
        true_edges = true_sets[cleft]
        pred_edges = pred_sets.get(cleft, set())
        hit = len(true_edges & pred_edges)
        c_fp, c_fn = len(pred_edges) - hit, len(true_edges) - hit
        tp, fp, fn = tp + hit, fp + c_fp, fn + c_fn
        p, r, f = precision_recall_f1(hit, c_fp, c_fn)
        cleft_p.append(p)
        cleft_r.append(r)
        cleft_f.append(f)
        exact += pred_edges == true_edges
        pre_ok += bool(pred_edges) and {e[0] for e in pred_edges} == {e[0] for e in true_edges}
    n = len(true_sets)
    precision, recall, f1 = precision_recall_f1(tp, fp, fn)
    ignored = sum(len(e) for c, e in pred_sets.items() if c not in true_sets)
    return AssignmentMetrics(
        polyadic=bool(polyadic),
        n_clefts=n,
        accuracy=_ratio(exact, n),
        pre_accuracy=_ratio(pre_ok, n),
        precision=precision,
        recall=recall,
        f1=f1,
        tp=tp,
        fp=fp,
        fn=fn,
        cleft_precision=float(np.mean(cleft_p)) if n else 1.0,
        cleft_recall=float(np.mean(cleft_r)) if n else 1.0,
        cleft_f1=float(np.mean(cleft_f)) if n else 1.0,
        n_pred_edges=tp + fp,
        n_true_edges=tp + fn,
        n_ignored_pred_edges=ignored,
    )


# --- edges (combined system) ------------------------------------------------------------------


@dataclass(frozen=True)
class EdgeMetrics(_Metrics):
    """Combined detection + assignment metrics (``napari-avan evaluate edges``).

    Attributes:
        precision, recall, f1: of predicted edges against true edges.
        tp: distinct true edges found; fp: predicted edges that are wrong, on an unmatched
            cleft, or repeat an edge already counted; fn: true edges not found.
        n_pred_edges: predicted edge rows scored; n_true_edges: distinct true edges.
        n_duplicates: predicted rows that repeat an already-found true edge (part of fp).
        n_pred_clefts: predicted clefts in the volume; n_unmatched_clefts: those that
            overlap no true cleft.
    """

    precision: float
    recall: float
    f1: float
    tp: int
    fp: int
    fn: int
    n_pred_edges: int
    n_true_edges: int
    n_duplicates: int
    n_pred_clefts: int
    n_unmatched_clefts: int


def check_cleft_ids(table: pd.DataFrame, ids: np.ndarray, what: str) -> None:
    """Refuse a partner table naming clefts absent from the labels (``what``: whose)."""
    absent = np.setdiff1d(table["cleft_id"].to_numpy(), ids.astype(np.int64))
    if absent.size:
        shown = ", ".join(str(int(i)) for i in absent[:10])
        raise AvanInputError(
            f"{what} edge table names {absent.size} cleft id(s) with no voxel in the {what} "
            f"clefts: {shown}{' ...' if absent.size > 10 else ''}"
        )


def edge_metrics(
    pred_clefts: np.ndarray,
    pred_edges: pd.DataFrame,
    true_clefts: np.ndarray,
    truth: pd.DataFrame,
) -> EdgeMetrics:
    """Score the edges of a whole system (detected clefts plus their partners).

    Each predicted cleft is mapped to the true cleft sharing the most voxels with it (ties:
    the lowest true id); a predicted cleft overlapping no true cleft is unmatched and all
    its edges are false positives. A predicted edge (cleft, pre, post) becomes (true cleft,
    pre, post) and is a true positive when that edge is in the truth and not already
    counted: predicting one true edge twice (e.g. from two pieces of a split cleft, or two
    identical rows) gives one tp and one fp.

    Args:
        pred_clefts: (z, y, x) predicted cleft labels.
        pred_edges: predicted partners (partner or edge table; rejected edges dropped).
        true_clefts: (z, y, x) true cleft labels, same shape.
        truth: true partners (partner or edge table).

    Raises:
        AvanInputError: when shapes differ or a table names a cleft absent from its volume.
    """
    ov = label_overlap(pred_clefts, true_clefts)
    pred_table = as_partner_table(pred_edges)
    true_table = as_partner_table(truth)
    check_cleft_ids(pred_table, ov.pred_ids, "predicted")
    check_cleft_ids(true_table, ov.true_ids, "true")
    # best true cleft per predicted cleft: sort pairs by (pred, -voxels, true id), take first
    order = np.lexsort((ov.true_ids[ov.pair_true], -ov.pair_voxels, ov.pair_pred))
    pp = ov.pair_pred[order]
    first = np.concatenate(([True], pp[1:] != pp[:-1])) if pp.size else np.zeros(0, bool)
    best = dict(
        zip(
            ov.pred_ids[pp[first]].astype(np.int64).tolist(),
            ov.true_ids[ov.pair_true[order][first]].astype(np.int64).tolist(),
            strict=True,
        )
    )
    true_edges = {(int(c), int(a), int(b)) for c, a, b in true_table.itertuples(index=False)}
    found: set[tuple[int, int, int]] = set()
    tp = duplicates = 0
    for cleft, pre, post in pred_table.itertuples(index=False, name=None):
        target = best.get(int(cleft))
        if target is None:
            continue
        edge = (target, int(pre), int(post))
        if edge in true_edges:
            if edge in found:
                duplicates += 1
            else:
                found.add(edge)
                tp += 1
    n_pred = len(pred_table)
    n_true = len(true_edges)
    fp, fn = n_pred - tp, n_true - tp
    precision, recall, f1 = precision_recall_f1(tp, fp, fn)
    return EdgeMetrics(
        precision=precision,
        recall=recall,
        f1=f1,
        tp=tp,
        fp=fp,
        fn=fn,
        n_pred_edges=n_pred,
        n_true_edges=n_true,
        n_duplicates=duplicates,
        n_pred_clefts=int(ov.pred_ids.size),
        n_unmatched_clefts=int(ov.pred_ids.size - len(best)),
    )
