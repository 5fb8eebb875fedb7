"""The figures of a detector and AVAN on a region with its truth (models.scoring)."""

from __future__ import annotations

from napari_avan.core.metrics import cleft_metrics
from napari_avan.core.synth import synthesize
from napari_avan.models.checkpoint import resolve_model
from napari_avan.models.detect import detect, min_size_voxels
from napari_avan.models.scoring import score_avan, score_detector


def test_detector_figures_are_its_own_detection_scored_with_unknown_clefts_dropped() -> None:
    s = synthesize(seed=9011, shape=(16, 192, 192))
    model = resolve_model("cleft-detector", "cleft-detector")
    found = detect(model, s.image, s.voxel_size_nm).clefts
    assert found.max() >= 2, "the bundled detector finds the synthetic clefts"
    full = score_detector(model, s.image, s.clefts, s.voxel_size_nm)
    m = cleft_metrics(found, s.clefts)
    assert (full["cleft_tp"], full["cleft_fp"], full["cleft_fn"]) == (m.tp, m.fp, m.fn)
    assert full["cleft_f1"] == m.f1 and full["dropped_unknown"] == 0
    post = model.metadata["postprocess"]
    assert full["threshold"] == post["threshold"]
    assert full["min_size_voxels"] == min_size_voxels(model, s.voxel_size_nm) > 1
    # one predicted cleft of unknown truth: it is neither a true nor a false positive
    unknown = found == 1
    part = score_detector(model, s.image, s.clefts, s.voxel_size_nm, unknown=unknown)
    assert part["dropped_unknown"] == 1
    assert part["cleft_tp"] + part["cleft_fp"] == m.tp + m.fp - 1


def test_avan_figures_are_its_polyadic_assignment_of_the_true_clefts() -> None:
    s = synthesize(seed=9012, shape=(16, 192, 192))
    model = resolve_model("avan", "avan")
    figures = score_avan(model, s.image, s.clefts, s.segmentation, s.partners, s.voxel_size_nm)
    n = len(set(s.partners["cleft_id"]))
    assert figures["assigned_clefts"] == n > 0
    assert 0.0 <= figures["pre_accuracy"] <= 1.0 and 0.0 <= figures["edge_f1"] <= 1.0
    tp, fp, fn = figures["edge_tp"], figures["edge_fp"], figures["edge_fn"]
    assert tp + fn == len(s.partners.drop_duplicates(["cleft_id", "pre_id", "post_id"]))
    assert figures["edge_f1"] == (2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    empty = score_avan(model, s.image, s.clefts, s.segmentation, s.partners.iloc[:0],
                       s.voxel_size_nm)  # fmt: skip
    assert empty["pre_accuracy"] is None and empty["assigned_clefts"] == 0
