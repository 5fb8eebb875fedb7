"""A detector's and AVAN's figures on one region with its truth (the figures of a bootstrap
round's validation box, of the VNC recipe and of the bootstrap benchmark)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from napari_avan.types import VoxelSize


def score_detector(
    model: Any,
    image: np.ndarray,
    clefts: np.ndarray,
    voxel_size_nm: VoxelSize,
    *,
    unknown: np.ndarray | None = None,
    run: Any = None,
) -> dict[str, Any]:
    """Cleft precision, recall and F1 (a match needs IoU >= 0.1) of a detector with its own
    post-processing; predicted clefts touching ``unknown`` voxels are dropped (counted in
    ``dropped_unknown``). Also the post-processing used (``threshold``, ``min_size_voxels``)."""
    from napari_avan.core.clefts import known_clefts
    from napari_avan.core.metrics import cleft_metrics
    from napari_avan.models.detect import detect, min_size_voxels

    found = detect(model, image, voxel_size_nm, run=run).clefts
    kept = known_clefts(found, unknown)
    m = cleft_metrics(kept, clefts)
    post = model.metadata.get("postprocess") or {}
    return {
        "cleft_f1": m.f1, "cleft_precision": m.precision, "cleft_recall": m.recall,
        "cleft_tp": m.tp, "cleft_fp": m.fp, "cleft_fn": m.fn,
        "dropped_unknown": len(np.setdiff1d(np.unique(found), np.unique(kept))),
        "threshold": float(post.get("threshold", 0.5)),
        "min_size_voxels": min_size_voxels(model, voxel_size_nm),
    }  # fmt: skip


def score_avan(
    model: Any,
    image: np.ndarray,
    clefts: np.ndarray,
    segmentation: np.ndarray,
    partners: pd.DataFrame,
    voxel_size_nm: VoxelSize,
    *,
    run: Any = None,
) -> dict[str, Any]:
    """AVAN's polyadic assignment of the true clefts with partners in ``partners``:
    presynaptic accuracy, edge F1 with its counts, and the number of clefts scored (the
    figures are None when ``partners`` is empty)."""
    from napari_avan.core.metrics import assignment_metrics
    from napari_avan.models.assign import iter_assign

    out: dict[str, Any] = {
        "pre_accuracy": None, "edge_f1": None, "edge_tp": 0, "edge_fp": 0, "edge_fn": 0,
        "assigned_clefts": 0,
    }  # fmt: skip
    if partners.empty:
        return out
    ids = sorted(set(partners["cleft_id"].tolist()))
    rows = []
    for step in iter_assign(
        model, image, clefts, segmentation, voxel_size_nm, cleft_ids=ids, run=run,
        polyadic=True,
    ):  # fmt: skip
        rows += [(a.cleft_id, p, q) for a in step.finished for p, q in a.edges]
    pred = pd.DataFrame(rows, columns=["cleft_id", "pre_id", "post_id"])
    m = assignment_metrics(pred, partners, polyadic=True)
    out.update(pre_accuracy=m.pre_accuracy, edge_f1=m.f1, edge_tp=m.tp, edge_fp=m.fp,
               edge_fn=m.fn, assigned_clefts=m.n_clefts)  # fmt: skip
    return out
