"""Validation figures of a model being trained, on whole validation volumes at the working
voxel size, through the same code that serves users."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from napari_avan.core.candidates import DEFAULT_PROXIMITY_THRESHOLD, signed_proximity
from napari_avan.core.clefts import clefts_from_probability, known_clefts
from napari_avan.core.metrics import assignment_metrics, cleft_metrics, precision_recall_f1
from napari_avan.models.checkpoint import LoadedModel
from napari_avan.models.device import RunPlan
from napari_avan.models.pruners import (
    PrunerCandidates,
    decide,
    predict_proximity,
    score_candidates,
)
from napari_avan.models.train.settings import TrainingVolume
from napari_avan.models.tune import detector_probability
from napari_avan.types import VoxelSize


def proximity_map(
    model: LoadedModel, image: np.ndarray, voxel_size_nm: VoxelSize, run: RunPlan
) -> np.ndarray:
    """The signed proximity map a proximity pruner's candidates come from, during training."""
    return predict_proximity(model, image, voxel_size_nm, run=run)


def proximity_target(vol: TrainingVolume, voxel: Sequence[float]) -> np.ndarray:
    """Parag et al.'s signed proximity of a training volume's clefts (float32)."""
    return signed_proximity(vol.clefts, vol.segmentation, vol.partners, voxel).astype(np.float32)


def validate_detector(
    model: LoadedModel, volumes: Sequence[TrainingVolume], run: RunPlan, min_size: int
) -> dict[str, float]:
    """Object and voxel F1 of the detector on whole validation volumes (working size)."""
    tp = fp = fn = vtp = vfp = vfn = 0
    for vol in volumes:
        prob = detector_probability(model, vol.image, run)
        labels = clefts_from_probability(prob, threshold=0.5, min_size=min_size)
        m = cleft_metrics(known_clefts(labels, vol.unknown), vol.clefts)
        tp, fp, fn = tp + m.tp, fp + m.fp, fn + m.fn
        vtp, vfp, vfn = vtp + m.voxel_tp, vfp + m.voxel_fp, vfn + m.voxel_fn
    return {
        "cleft_f1": precision_recall_f1(tp, fp, fn)[2],
        "voxel_f1": precision_recall_f1(vtp, vfp, vfn)[2],
    }


def validate_avan(
    model: LoadedModel, volumes: Sequence[TrainingVolume], run: RunPlan
) -> dict[str, float]:
    """Dyadic accuracy, pre accuracy and polyadic edge F1 on every validation cleft (pre
    accuracy from the argmax pair on dyadic truth, from the thresholded edges on polyadic)."""
    from napari_avan.models.assign import iter_assign

    voxel = tuple(model.metadata["voxel_size_nm"])
    scores: dict[str, list[float]] = {"accuracy": [], "pre_accuracy": [], "edge_f1": []}
    for vol in volumes:
        if vol.partners.empty:
            continue
        ids = sorted(set(vol.partners["cleft_id"].tolist()))
        dyadic_truth = not vol.partners["cleft_id"].duplicated().any()
        # dyadic truth: the argmax pair is scored too; every volume: the thresholded edges
        for polyadic in (False, True) if dyadic_truth else (True,):
            rows = []
            for step in iter_assign(
                model, vol.image, vol.clefts, vol.segmentation, voxel, cleft_ids=ids, run=run,
                polyadic=polyadic,
            ):  # fmt: skip
                rows += [(a.cleft_id, p, q) for a in step.finished for p, q in a.edges]
            pred = pd.DataFrame(rows, columns=["cleft_id", "pre_id", "post_id"])
            m = assignment_metrics(pred, vol.partners, polyadic=polyadic)
            if polyadic:
                scores["edge_f1"] += [m.f1] * m.n_clefts
                if not dyadic_truth:
                    scores["pre_accuracy"] += [m.pre_accuracy] * m.n_clefts
            else:
                scores["accuracy"] += [m.accuracy] * m.n_clefts
                scores["pre_accuracy"] += [m.pre_accuracy] * m.n_clefts
    # no dyadic validation volume: accuracy is not measured and ranks nothing (NaN-free 0)
    return {k: float(np.mean(v)) if v else 0.0 for k, v in scores.items()}


def validate_proximity(
    model: LoadedModel,
    volumes: Sequence[TrainingVolume],
    targets: Sequence[np.ndarray],
    run: RunPlan,
) -> dict[str, float]:
    """Voxel F1 of each side of the signed proximity (at +-0.3, the pieces' threshold)."""
    t = DEFAULT_PROXIMITY_THRESHOLD
    counts = np.zeros((2, 3))
    voxel = tuple(model.metadata["voxel_size_nm"])
    for vol, target in zip(volumes, targets, strict=True):
        prox = proximity_map(model, vol.image, voxel, run)
        for side, sign in enumerate((1, -1)):
            pred, true = prox * sign >= t, target * sign >= t
            counts[side] += [np.sum(pred & true), np.sum(pred & ~true), np.sum(~pred & true)]
    pre_f1 = precision_recall_f1(*(int(c) for c in counts[0]))[2]
    post_f1 = precision_recall_f1(*(int(c) for c in counts[1]))[2]
    return {"sign_f1": (pre_f1 + post_f1) / 2, "pre_f1": pre_f1, "post_f1": post_f1}


def validate_pruner(
    model: LoadedModel,
    volumes: Sequence[TrainingVolume],
    candidates: Sequence[PrunerCandidates],
    run: RunPlan,
) -> dict[str, float]:
    """AVAN's validation figures for a pruner: accuracy and pre accuracy of the best pair
    (dyadic truth), edge F1 at probability 0.5 (every volume)."""
    scores: dict[str, list[float]] = {"accuracy": [], "pre_accuracy": [], "edge_f1": []}
    for vol, cands in zip(volumes, candidates, strict=True):
        if vol.partners.empty:
            continue
        ids = sorted(set(vol.partners["cleft_id"].tolist()))
        probs = score_candidates(model, cands, run=run)
        dyadic_truth = not vol.partners["cleft_id"].duplicated().any()
        for polyadic in (False, True) if dyadic_truth else (True,):
            pred = decide(cands.table, probs, polyadic=polyadic, cleft_ids=ids)
            m = assignment_metrics(pred, vol.partners, polyadic=polyadic)
            if polyadic:
                scores["edge_f1"] += [m.f1] * m.n_clefts
            else:
                scores["accuracy"] += [m.accuracy] * m.n_clefts
                scores["pre_accuracy"] += [m.pre_accuracy] * m.n_clefts
    return {k: float(np.mean(v)) if v else 0.0 for k, v in scores.items()}
