"""Post-processing chosen on validation data only (issue 4).

``train`` runs :func:`tune_postprocess` on its best model when it ends; the result is kept
as the model's ``postprocess`` metadata, which ``detect`` and ``assign`` take as their
defaults:

- cleft detector: probability threshold and minimum cleft volume (nm^3), by cleft object F1;
- AVAN: the polyadic (pre, post) thresholds, by pooled edge F1;
- pruners: the polyadic probability threshold, by pooled edge F1.

Polyadic thresholds are tuned on the validation volumes whose truth is polyadic (all of
them when none is). Ties go to the value nearest 0.5 (thresholds) and the smallest volume.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from napari_avan.core.clefts import clefts_from_probability, known_clefts
from napari_avan.core.metrics import assignment_metrics, cleft_metrics, precision_recall_f1
from napari_avan.models.checkpoint import LoadedModel
from napari_avan.models.detect import cleft_map, detector_windows, output_activation
from napari_avan.models.device import RunPlan
from napari_avan.models.inference import predict
from napari_avan.models.networks import UNetConfig
from napari_avan.types import AvanInputError

DETECTOR_THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
#: Minimum cleft volumes tried (nm^3): 50 to 1000 voxels of 40 x 4 x 4 nm.
DETECTOR_MIN_VOLUMES_NM3 = (32_000.0, 128_000.0, 320_000.0, 640_000.0)
PARTNER_THRESHOLDS = tuple(float(t) for t in np.round(np.arange(0.2, 0.91, 0.05), 2))


def detector_probability(model: LoadedModel, image: np.ndarray, run: RunPlan) -> np.ndarray:
    """The detector's cleft probability of an image already at its working voxel size (a
    signed proximity detector's: the magnitude of its map, as detection reads it)."""
    config = model.network.config
    if not isinstance(config, UNetConfig):
        raise AvanInputError("this model is not a cleft detector")
    patch, overlap = detector_windows(model.metadata, image.shape, config.divisor)
    out = predict(
        model.network, image, patch=patch, overlap=overlap, out_channels=config.out_channels,
        run=run, activation=output_activation(model.metadata),
    )  # fmt: skip
    return cleft_map(model.metadata, out)


def _polyadic_first(volumes: Sequence[Any]) -> list[Any]:
    with_partners = [v for v in volumes if not v.partners.empty]
    poly = [v for v in with_partners if v.partners["cleft_id"].duplicated().any()]
    return poly or with_partners


def _near_half(t: float) -> float:
    return -abs(t - 0.5)


def _closeness(value: float, prior: Any, scale: float) -> float:
    """How near ``value`` is to a prior setting (0 = equal; more negative = further)."""
    return 0.0 if prior is None else -abs(value - float(prior)) / scale


def tune_detector(
    model: LoadedModel,
    volumes: Sequence[Any],
    run: RunPlan,
    prior: dict[str, Any] | None = None,
    max_volume_nm3: float | None = None,
) -> dict[str, Any]:
    """Threshold and minimum volume with the best pooled cleft F1 on ``volumes``.

    Minimum volumes above ``max_volume_nm3`` (the smallest true cleft trained on: a
    larger minimum would delete clefts like it) are not tried, unless none is below.
    Ties (common on a few validation clefts) go to the threshold nearest 0.5, then to the
    minimum volume nearest ``prior``'s (the model fine-tuned from), else the smallest.
    """
    prior_v = (prior or {}).get("min_volume_nm3")
    sizes = [v for v in DETECTOR_MIN_VOLUMES_NM3 if max_volume_nm3 is None or v <= max_volume_nm3]
    sizes = sizes or [DETECTOR_MIN_VOLUMES_NM3[0]]
    voxel = np.prod(model.metadata["voxel_size_nm"])
    probs = [detector_probability(model, v.image, run) for v in volumes]
    results = []
    for threshold in DETECTOR_THRESHOLDS:
        for volume_nm3 in sizes:
            size = max(1, round(volume_nm3 / voxel))
            tp = fp = fn = 0
            for vol, prob in zip(volumes, probs, strict=True):
                labels = clefts_from_probability(prob, threshold=threshold, min_size=size)
                m = cleft_metrics(known_clefts(labels, vol.unknown), vol.clefts)
                tp, fp, fn = tp + m.tp, fp + m.fp, fn + m.fn
            f1 = precision_recall_f1(tp, fp, fn)[2]
            if prior_v is None:
                near_v = -volume_nm3
            else:
                near_v = _closeness(np.log(volume_nm3), np.log(float(prior_v)), 1.0)
            results.append(((f1, _near_half(threshold), near_v), threshold, volume_nm3))
    (f1, *_), threshold, volume_nm3 = max(results)
    return {
        "threshold": threshold,
        "min_volume_nm3": volume_nm3,
        "validation_cleft_f1": f1,
        "chosen_by": f"grid on {len(volumes)} validation volumes: threshold "
        f"{DETECTOR_THRESHOLDS[0]}-{DETECTOR_THRESHOLDS[-1]} x min volume "
        f"{sizes[0]:.0f}-{sizes[-1]:.0f} nm^3, cleft F1",
    }


def _pooled_f1(predictions: Sequence[pd.DataFrame], volumes: Sequence[Any]) -> float:
    tp = fp = fn = 0
    for pred, vol in zip(predictions, volumes, strict=True):
        m = assignment_metrics(pred, vol.partners, polyadic=True)
        tp, fp, fn = tp + m.tp, fp + m.fp, fn + m.fn
    return precision_recall_f1(tp, fp, fn)[2]


def tune_avan(
    model: LoadedModel,
    volumes: Sequence[Any],
    run: RunPlan,
    prior: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Polyadic (pre, post) thresholds with the best pooled edge F1 on ``volumes``.

    Where every validation cleft has one presynaptic partner (polyadic synapses fan out on
    the postsynaptic side), the pre threshold is 1.0, never exceeded: the presynaptic
    partner is the argmax. Ties keep what is nearest ``prior`` (the thresholds of the
    model fine-tuned from), else the thresholds nearest 0.5.
    """
    from napari_avan.models.assign import decide_partners, iter_assign

    chosen = _polyadic_first(volumes)
    if not chosen:
        return {}
    voxel = tuple(model.metadata["voxel_size_nm"])
    found = []
    for vol in chosen:
        ids = sorted(set(vol.partners["cleft_id"].tolist()))
        cleft_scores = []
        for step in iter_assign(
            model, vol.image, vol.clefts, vol.segmentation, voxel, cleft_ids=ids, run=run
        ):
            cleft_scores += step.finished
        found.append(cleft_scores)
    single_pre = all(
        int(v.partners.groupby("cleft_id")["pre_id"].nunique().max()) <= 1 for v in chosen
    )
    pre_grid = (1.0,) if single_pre else PARTNER_THRESHOLDS
    prior = prior or {}
    results = []
    for t_pre in pre_grid:
        for t_post in PARTNER_THRESHOLDS:
            preds = []
            for cleft_scores in found:
                rows = []
                for a in cleft_scores:
                    d = decide_partners(
                        a.cleft_id, a.candidates, a.pre_scores, a.post_scores, True, t_pre, t_post
                    )
                    rows += [(a.cleft_id, p, q) for p, q in d.edges]
                preds.append(pd.DataFrame(rows, columns=["cleft_id", "pre_id", "post_id"]))
            f1 = _pooled_f1(preds, chosen)
            if "post_threshold" in prior:
                tie = _closeness(t_post, prior["post_threshold"], 0.05)
                if not single_pre and "pre_threshold" in prior:
                    tie += _closeness(t_pre, prior["pre_threshold"], 0.05)
            else:
                tie = _near_half(t_pre) + _near_half(t_post)
            results.append(((f1, tie), t_pre, t_post))
    (f1, _), t_pre, t_post = max(results)
    pre_text = (
        "pre the argmax (one presynaptic partner per validation cleft)"
        if single_pre
        else f"pre and post thresholds {PARTNER_THRESHOLDS[0]}-{PARTNER_THRESHOLDS[-1]}"
    )
    return {
        "pre_threshold": t_pre,
        "post_threshold": t_post,
        "validation_edge_f1": f1,
        "chosen_by": f"grid on {len(chosen)} validation volumes: {pre_text}, post thresholds "
        f"{PARTNER_THRESHOLDS[0]}-{PARTNER_THRESHOLDS[-1]}, pooled polyadic edge F1",
    }


def tune_pruner(
    model: LoadedModel, volumes: Sequence[Any], candidates: Sequence[Any], run: RunPlan
) -> dict[str, Any]:
    """The polyadic probability threshold with the best pooled edge F1 on ``volumes``."""
    from napari_avan.models.pruners import decide, score_candidates

    chosen = {id(v) for v in _polyadic_first(volumes)}
    pairs = [(v, c) for v, c in zip(volumes, candidates, strict=True) if id(v) in chosen]
    if not pairs:
        return {}
    scored = [(v, c, score_candidates(model, c, run=run)) for v, c in pairs]
    results = []
    for t in PARTNER_THRESHOLDS:
        preds = [
            decide(c.table, s, polyadic=True, threshold=t,
                   cleft_ids=sorted(set(v.partners["cleft_id"].tolist())))
            for v, c, s in scored
        ]  # fmt: skip
        results.append(((_pooled_f1(preds, [v for v, _, _ in scored]), _near_half(t)), t))
    (f1, _), t = max(results)
    return {
        "threshold": t,
        "validation_edge_f1": f1,
        "chosen_by": f"grid on {len(scored)} validation volumes: threshold "
        f"{PARTNER_THRESHOLDS[0]}-{PARTNER_THRESHOLDS[-1]}, pooled polyadic edge F1",
    }
