"""The CREMI challenge's metrics (cremi.org), computed on our volumes and tables.

Two metrics, so that results can be put beside the challenge's published numbers:

* :func:`cleft_distances`, the "synaptic cleft" metric: how far predicted cleft voxels lie
  from true ones and true from predicted, in nm (ADF, ADGT and their mean, the CREMI score),
  plus the voxels farther than a cut-off (false positives and false negatives);
* :func:`partner_fscore`, the "synaptic partner identification" metric: the F-score of
  predicted (pre, post) partner pairs matched one-to-one to true pairs, adapted to our
  partner tables, which locate a pair by its cleft rather than by two annotated sites.

Our own metrics (:mod:`napari_avan.core.metrics`) stay the headline of ``napari-avan
evaluate``; these are reported beside them with ``--cremi``. Implemented here from the
challenge's published definitions; numpy and scipy only.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.ndimage import distance_transform_edt
from scipy.optimize import linear_sum_assignment

from napari_avan.core.geometry import check_label_volume, label_statistics
from napari_avan.core.metrics import check_cleft_ids, plain_json, precision_recall_f1
from napari_avan.core.tables import as_partner_table
from napari_avan.types import AvanInputError, VoxelSize, check_same_shape, check_voxel_size

#: The challenge's cut-off for false positive and false negative cleft voxels, in nm.
DEFAULT_CLEFT_CUTOFF_NM = 200.0

#: The challenge's matching distance for synaptic partner pairs, in nm.
DEFAULT_PARTNER_DISTANCE_NM = 400.0

#: The "no cleft" label of CREMI files (the uint64 maximum). Our readers map it to 0.
CREMI_BACKGROUND = 0xFFFFFFFFFFFFFFFF


def _finite_or_none(value: Any) -> Any:
    """JSON has no infinity: non-finite floats become None (null)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# --- cleft distances --------------------------------------------------------------------------


@dataclass(frozen=True)
class CleftDistances:
    """The CREMI synaptic cleft metric (``napari-avan evaluate clefts --cremi``).

    Distances are Euclidean, in nm, from a voxel centre to the nearest voxel centre of the
    other side. ``inf`` means that side's voxels have nothing to measure to (the other side
    is empty); every statistic of such a side (mean, std, median, max) is then ``inf``, and
    :meth:`to_dict` writes it as None (JSON null). A side with no voxels has no distances:
    its statistics are 0.0 (nothing predicted makes no false claim, nothing to find is not
    missed; the 0 / 0 convention of :mod:`napari_avan.core.metrics`).

    Attributes:
        adf: average distance of false positives: the mean over predicted cleft voxels of
            their distance to the nearest true cleft voxel.
        adgt: average distance of ground truth: the mean over true cleft voxels of their
            distance to the nearest predicted cleft voxel.
        cremi_score: (adf + adgt) / 2, the challenge's ranking score (lower is better).
        fp_voxels: predicted cleft voxels farther than ``cutoff_nm`` from every true one.
        fn_voxels: true cleft voxels farther than ``cutoff_nm`` from every predicted one.
        adf_std, adf_median, adf_max: of the predicted voxels' distances.
        adgt_std, adgt_median, adgt_max: of the true voxels' distances.
        n_pred_voxels, n_true_voxels: cleft voxels on each side.
        cutoff_nm: the cut-off used for the counts.
        voxel_size_nm: (z, y, x) the distances were measured with.
    """

    adf: float
    adgt: float
    cremi_score: float
    fp_voxels: int
    fn_voxels: int
    adf_std: float
    adf_median: float
    adf_max: float
    adgt_std: float
    adgt_median: float
    adgt_max: float
    n_pred_voxels: int
    n_true_voxels: int
    cutoff_nm: float
    voxel_size_nm: tuple[float, float, float]

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-serialisable dict; ``inf`` becomes None (JSON null)."""
        return {k: _finite_or_none(v) for k, v in plain_json(asdict(self)).items()}


def _cleft_mask(labels: Any, background: int, what: str) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.dtype == bool:
        arr = arr.view(np.uint8)
    if arr.ndim != 3:
        raise AvanInputError(f"{what} must be a 3D (z, y, x) array, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise AvanInputError(
            f"{what} must hold integer label ids, got dtype {arr.dtype}: convert them"
        )
    # An out-of-range background (CREMI's uint64 maximum in a uint32 array) matches no voxel.
    return np.asarray(arr != background)


def _distances_to(mask: np.ndarray, at: np.ndarray, voxel_size: VoxelSize) -> np.ndarray:
    """Distance in nm from each voxel of ``at`` to the nearest voxel of ``mask``.

    An empty ``mask`` has no nearest voxel: every distance is infinite (the transform of
    an all-True array would return meaningless finite values, so it is not run).
    """
    n = int(np.count_nonzero(at))
    if not mask.any():
        return np.full(n, np.inf)
    if n == 0:
        return np.zeros(0)
    edt = distance_transform_edt(~mask, sampling=voxel_size)
    return np.asarray(edt[at], dtype=np.float64)


def _summary(distances: np.ndarray) -> tuple[float, float, float, float]:
    """(mean, std, median, max) of ``distances``: all 0.0 when empty, all inf when infinite."""
    if distances.size == 0:
        return 0.0, 0.0, 0.0, 0.0
    if not np.isfinite(distances).all():
        return math.inf, math.inf, math.inf, math.inf
    return (
        float(distances.mean()),
        float(distances.std()),
        float(np.median(distances)),
        float(distances.max()),
    )


def cleft_distances(
    pred_clefts: np.ndarray,
    true_clefts: np.ndarray,
    voxel_size: VoxelSize | tuple[float, ...] | list[float],
    *,
    cutoff_nm: float = DEFAULT_CLEFT_CUTOFF_NM,
    background: int = 0,
) -> CleftDistances:
    """The CREMI synaptic cleft metric: ADF, ADGT, their mean and the voxels beyond a cut-off.

    A voxel is cleft when its label is not ``background``; which cleft it belongs to does
    not matter. Distances come from Euclidean distance transforms in nm
    (``scipy.ndimage.distance_transform_edt`` with ``sampling=voxel_size``) of "not truth"
    (for predicted voxels) and "not prediction" (for true voxels); each transform holds one
    float64 per voxel of the volume, run one after the other.

    Empty sides (see :class:`CleftDistances`): with both empty every value is 0; with an
    empty prediction ADF is 0, ADGT and the score are ``inf`` and every true voxel is a
    false negative; with an empty truth ADF and the score are ``inf``, ADGT is 0 and every
    predicted voxel is a false positive.

    Args:
        pred_clefts: (z, y, x) predicted cleft labels.
        true_clefts: (z, y, x) true cleft labels, same shape.
        voxel_size: (z, y, x) in nm.
        cutoff_nm: a predicted (true) voxel farther than this from every true (predicted)
            one is a false positive (negative) voxel; the challenge uses 200 nm.
        background: the label of non-cleft voxels: 0 (ours, and CREMI files as our readers
            return them) or :data:`CREMI_BACKGROUND` for arrays read from CREMI files as is.

    Raises:
        AvanInputError: shapes differ, a volume is not 3D integer labels, the voxel size is
            not three positive numbers, or the cut-off is negative or not finite.
    """
    vs = check_voxel_size(voxel_size)
    cutoff = float(cutoff_nm)
    if not math.isfinite(cutoff) or cutoff < 0:
        raise AvanInputError(f"the cut-off {cutoff_nm!r} nm must be a finite number >= 0")
    pred_labels, true_labels = np.asarray(pred_clefts), np.asarray(true_clefts)
    check_same_shape(predicted_clefts=pred_labels, true_clefts=true_labels)
    pred = _cleft_mask(pred_labels, background, "predicted clefts")
    truth = _cleft_mask(true_labels, background, "true clefts")
    # one transform at a time: each is a float64 copy of the whole volume
    fp_dist = _distances_to(truth, pred, vs)
    fn_dist = _distances_to(pred, truth, vs)
    adf, adf_std, adf_median, adf_max = _summary(fp_dist)
    adgt, adgt_std, adgt_median, adgt_max = _summary(fn_dist)
    return CleftDistances(
        adf=adf,
        adgt=adgt,
        cremi_score=(adf + adgt) / 2,
        fp_voxels=int(np.count_nonzero(fp_dist > cutoff)),
        fn_voxels=int(np.count_nonzero(fn_dist > cutoff)),
        adf_std=adf_std,
        adf_median=adf_median,
        adf_max=adf_max,
        adgt_std=adgt_std,
        adgt_median=adgt_median,
        adgt_max=adgt_max,
        n_pred_voxels=int(fp_dist.size),
        n_true_voxels=int(fn_dist.size),
        cutoff_nm=cutoff,
        voxel_size_nm=vs,
    )


# --- synaptic partners ------------------------------------------------------------------------


@dataclass(frozen=True)
class PartnerFScore:
    """The CREMI synaptic partner metric (``napari-avan evaluate edges --cremi``).

    Attributes:
        tp: predicted pairs matched to a true pair.
        fp: predicted rows not matched (including repeated rows).
        fn: distinct true pairs not matched.
        precision, recall: tp / (tp + fp), tp / (tp + fn); 0 / 0 = 1.0.
        fscore: 2 tp / (2 tp + fp + fn), the challenge's score (1.0 when both are empty).
        n_pred_pairs: predicted rows scored; n_true_pairs: distinct true pairs.
        n_duplicates: predicted rows repeating an earlier row (part of ``fp``).
        max_distance_nm: the matching distance used.
    """

    tp: int
    fp: int
    fn: int
    precision: float
    recall: float
    fscore: float
    n_pred_pairs: int
    n_true_pairs: int
    n_duplicates: int
    max_distance_nm: float

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-serialisable dict."""
        return plain_json(asdict(self))


def _locations_nm(
    table: pd.DataFrame, clefts: np.ndarray, voxel_size: VoxelSize, what: str
) -> np.ndarray:
    """(N, 3) centroid in nm of each row's cleft (its ids checked against the volume)."""
    stats = label_statistics(clefts)
    ids = stats.ids.astype(np.int64)
    check_cleft_ids(table, ids, what)
    rows = np.searchsorted(ids, table["cleft_id"].to_numpy(np.int64))
    return np.asarray(stats.centroid[rows] * np.asarray(voxel_size), dtype=np.float64)


def _closest_matching(distance: np.ndarray, allowed: np.ndarray) -> list[tuple[int, int]]:
    """One-to-one matching of allowed (row, col) pairs: the most pairs, then least distance.

    Exact: every disallowed pair costs more than all allowed pairs together, so the
    minimum-cost assignment uses as few of them as possible (as many allowed pairs as can
    be matched), and among those the least total distance; the disallowed ones are dropped.
    """
    if not allowed.any():
        return []
    forbidden = 1.0 + float(distance[allowed].sum())
    rows, cols = linear_sum_assignment(np.where(allowed, distance, forbidden))
    keep = allowed[rows, cols]
    return [(int(r), int(c)) for r, c in zip(rows[keep], cols[keep], strict=True)]


def partner_fscore(
    pred_clefts: np.ndarray,
    pred_partners: pd.DataFrame,
    true_clefts: np.ndarray,
    true_partners: pd.DataFrame,
    voxel_size: VoxelSize | tuple[float, ...] | list[float],
    *,
    max_distance_nm: float = DEFAULT_PARTNER_DISTANCE_NM,
) -> PartnerFScore:
    """The CREMI synaptic partner F-score, adapted to partner tables located by their clefts.

    In the challenge a predicted (pre site, post site) pair is a true positive when it is
    matched one-to-one to a true pair with the same pre and post neurons whose sites lie
    within 400 nm; unmatched predicted pairs are false positives, unmatched true pairs false
    negatives, and F-score = 2 tp / (2 tp + fp + fn).

    Adaptation: our tables have no site locations, only rows (cleft_id, pre_id, post_id)
    whose segment ids are those of the truth's segmentation. The location of a pair is the
    centroid in nm of its cleft (of the predicted cleft label for predicted rows, of the
    true cleft label for true rows). A predicted row may match a true row with the same
    (pre_id, post_id) whose location lies within ``max_distance_nm`` of its own; the
    matching is one-to-one with the most pairs, then the least total distance (exact, see
    :func:`_closest_matching`). A predicted row repeating an earlier row (same cleft, pre
    and post) is a false positive; repeated true rows count once.

    Args:
        pred_clefts: (z, y, x) predicted cleft labels, 0 = background.
        pred_partners: predicted partners (partner or edge table; rejected edges dropped).
        true_clefts: (z, y, x) true cleft labels, same shape.
        true_partners: true partners (partner or edge table).
        voxel_size: (z, y, x) in nm.
        max_distance_nm: the largest distance between matched locations (challenge: 400).

    Raises:
        AvanInputError: shapes differ, the voxel size or distance is invalid, a table is
            malformed or names a cleft absent from its volume.
    """
    vs = check_voxel_size(voxel_size)
    limit = float(max_distance_nm)
    if not math.isfinite(limit) or limit < 0:
        raise AvanInputError(
            f"the matching distance {max_distance_nm!r} nm must be a finite number >= 0"
        )
    pred_clefts = check_label_volume(pred_clefts, "predicted clefts")
    true_clefts = check_label_volume(true_clefts, "true clefts")
    check_same_shape(predicted_clefts=pred_clefts, true_clefts=true_clefts)
    pred_all = as_partner_table(pred_partners)
    pred_table = pred_all.drop_duplicates(ignore_index=True)
    true_table = as_partner_table(true_partners).drop_duplicates(ignore_index=True)
    pred_at = _locations_nm(pred_table, pred_clefts, vs, "predicted")
    true_at = _locations_nm(true_table, true_clefts, vs, "true")

    true_by_pair: dict[tuple[int, int], list[int]] = {}
    for i, (pre, post) in enumerate(true_table[["pre_id", "post_id"]].itertuples(index=False)):
        true_by_pair.setdefault((int(pre), int(post)), []).append(i)
    pred_by_pair: dict[tuple[int, int], list[int]] = {}
    for i, (pre, post) in enumerate(pred_table[["pre_id", "post_id"]].itertuples(index=False)):
        pred_by_pair.setdefault((int(pre), int(post)), []).append(i)
    tp = 0
    for pair, pred_rows in pred_by_pair.items():
        true_rows = true_by_pair.get(pair)
        if true_rows is None:
            continue
        diff = pred_at[pred_rows][:, None, :] - true_at[true_rows][None, :, :]
        distance = np.sqrt((diff**2).sum(axis=-1))
        tp += len(_closest_matching(distance, distance <= limit))

    n_pred, n_true = len(pred_all), len(true_table)
    fp, fn = n_pred - tp, n_true - tp
    precision, recall, fscore = precision_recall_f1(tp, fp, fn)
    return PartnerFScore(
        tp=tp,
        fp=fp,
        fn=fn,
        precision=precision,
        recall=recall,
        fscore=fscore,
        n_pred_pairs=n_pred,
        n_true_pairs=n_true,
        n_duplicates=n_pred - len(pred_table),
        max_distance_nm=limit,
    )
