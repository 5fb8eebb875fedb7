"""State the dock widgets keep between runs, in a real viewer under Xvfb: the clefts
layer's table over several Detect runs, which job a click waits for, and the models
cached for a session when a model folder is retrained in place."""

from __future__ import annotations

import copy
import json
import threading
from typing import Any

import numpy as np
import pandas as pd
import pytest

from napari_avan._napari._gui_testing import (
    cleft_world_point,
    open_sample_and_docks,
    process_events,
    wait_until,
)

pytestmark = pytest.mark.gui


def _detect(detect: Any) -> None:
    detect.run()
    assert detect.runner.busy, detect.status.value
    wait_until(lambda: not detect.runner.busy, timeout=180)
    assert "clefts found" in detect.status.value, detect.status.value


def _detect_in_a_drawn_box(viewer: Any, detect: Any) -> Any:
    """Point the Detect dock at a rectangle drawn on section 20; the region it will run on."""
    z = 20
    rect = np.array([[z, 100, 100], [z, 100, 200], [z, 200, 200], [z, 200, 100]], float)
    shapes = viewer.add_shapes(
        [rect], shape_type="rectangle", scale=viewer.layers["EM"].scale, name="box"
    )
    detect.reset_choices()
    detect.scope.value = "drawn box"
    detect.box_layer.value = shapes
    return detect.region()


def _assert_table_describes_layer(clefts: Any, prob: Any) -> pd.DataFrame:
    """The layer's cleft table is the one measured on the whole layer now."""
    from napari_avan.core.tables import cleft_table

    table = clefts.metadata["cleft_table"]
    fresh = cleft_table(np.asarray(clefts.data), np.asarray(prob.data))
    pd.testing.assert_frame_equal(
        table.reset_index(drop=True), fresh, check_exact=False, rtol=1e-9, atol=1e-9
    )
    return table


def test_detect_runs_keep_one_table_for_the_whole_layer(make_napari_viewer) -> None:
    viewer = make_napari_viewer()
    detect, _ = open_sample_and_docks(viewer)
    detect.scope.value = "whole volume"
    _detect(detect)
    clefts, prob = viewer.layers["predicted clefts"], viewer.layers["cleft probability"]
    first = _assert_table_describes_layer(clefts, prob)
    assert len(first) >= 3

    # a second run in a drawn box replaces the clefts of its region only
    box = _detect_in_a_drawn_box(viewer, detect)
    in_box = set(np.unique(clefts.data[box]).tolist()) - {0}
    untouched = first[~first["cleft_segid"].isin(in_box)]
    assert len(untouched) and in_box, (in_box, first["cleft_segid"].tolist())
    _detect(detect)
    second = _assert_table_describes_layer(clefts, prob)
    # the clefts it left alone keep their ids and rows; its own get ids never used before
    kept = second[second["cleft_segid"].isin(untouched["cleft_segid"])]
    pd.testing.assert_frame_equal(kept.reset_index(drop=True), untouched.reset_index(drop=True))
    new = set(np.unique(clefts.data[box]).tolist()) - {0}
    assert new and min(new) > int(first["cleft_segid"].max())

    # the same box finding nothing: its clefts are gone, from the table too
    size = detect.min_size.value
    detect.min_size.value = detect.min_size.max
    _detect(detect)
    assert detect.status.value.startswith("0 clefts found"), detect.status.value
    third = _assert_table_describes_layer(clefts, prob)
    assert not np.any(clefts.data[box]) and not set(third["cleft_segid"]) & new

    # and again finding clefts: their ids are new, not those of the clefts replaced
    detect.min_size.value = size
    _detect(detect)
    fourth = _assert_table_describes_layer(clefts, prob)
    newest = set(np.unique(clefts.data[box]).tolist()) - {0}
    assert newest and min(newest) > max(new)
    assert fourth["cleft_segid"].is_unique


def test_a_click_is_queued_behind_a_click_job_only(make_napari_viewer) -> None:
    from napari_avan._napari._workers import JobKind

    viewer = make_napari_viewer()
    detect, partners = open_sample_and_docks(viewer)
    clefts = viewer.layers["clefts"]
    first_id, second_id = (int(i) for i in np.unique(clefts.data)[1:3])
    first, second = (cleft_world_point(clefts, i) for i in (first_id, second_id))

    def click(point: np.ndarray) -> bool:
        viewer.dims.set_point(0, point[0])  # the click's section
        return partners.click(point, None, [1, 2])

    # a click while another click's job runs waits for it (the latest click wins)
    assert click(first)
    job = partners.runner.job
    assert job is not None and job.kind is JobKind.CLICK
    assert click(second)
    assert partners._pending_click is not None and partners._pending_click[0] == second_id
    wait_until(lambda: not partners.runner.busy and second_id in partners.results, timeout=60)
    assert set(partners.results) == {first_id, second_id}

    # any other job, whatever its name, refuses a click as busy: nothing is queued
    release = threading.Event()

    def work() -> Any:
        while not release.wait(0.01):
            yield None

    other = partners.runner.start(
        f"Partners of cleft {first_id} (not a click)",
        work,
        kind=JobKind.ASSIGN,
        on_yield=lambda _: None,
        on_done=lambda _: None,
        on_error=lambda _: None,
    )
    assert other is not None and other.kind is JobKind.ASSIGN
    try:
        partners.results.clear()
        assert click(first)
        assert partners._pending_click is None
        assert "busy" in partners.status.value, partners.status.value
    finally:
        release.set()
        wait_until(lambda: not partners.runner.busy, timeout=30)
    process_events(0.1)
    assert not partners.results

    # the kinds the widgets give their jobs
    detect.scope.value = "whole volume"
    detect.run()
    assert detect.runner.job is not None and detect.runner.job.kind is JobKind.DETECT
    assert click(first) and partners._pending_click is None
    detect.cancel()
    wait_until(lambda: not detect.runner.busy, timeout=30)
    viewer.dims.ndisplay = 3
    process_events(0.1)
    assert partners.assign_viewport() is not None
    assert partners.runner.job is not None and partners.runner.job.kind is JobKind.ASSIGN
    partners.cancel()
    wait_until(lambda: not partners.runner.busy, timeout=30)


def _save_detector(folder: Any, network: Any, metadata: dict[str, Any], threshold: float) -> str:
    """A cleft-detector folder as ``train clefts`` writes it; its weights' sha256."""
    from napari_avan.models.checkpoint import META_FILE, save_model

    post = {**metadata.get("postprocess", {}), "threshold": threshold}
    save_model(folder, network, {**metadata, "postprocess": post}, overwrite=True)
    return json.loads((folder / META_FILE).read_text())["weights_sha256"]


def test_a_model_retrained_into_its_folder_is_read_again(make_napari_viewer, tmp_path) -> None:
    import torch

    from napari_avan._napari._models import MODELS
    from napari_avan.models.checkpoint import resolve_model

    viewer = make_napari_viewer()
    detect, _ = open_sample_and_docks(viewer)
    base = resolve_model("cleft-detector", "cleft-detector")
    folder = tmp_path / "my-detector"
    first_sha = _save_detector(folder, base.network, base.metadata, 0.3)
    detect.model_dir.value = folder
    assert detect.threshold.value == pytest.approx(0.3)
    spec = detect.model_spec
    first, _ = MODELS.get(spec, "cleft-detector", "cpu")
    assert first.metadata["weights_sha256"] == first_sha
    assert MODELS.get(spec, "cleft-detector", "cpu")[0] is first  # unchanged: cached

    # retrained into the same folder while napari runs: other weights, other defaults
    network = copy.deepcopy(base.network)
    with torch.no_grad():
        next(iter(network.parameters())).mul_(0.5)
    second_sha = _save_detector(folder, network, base.metadata, 0.7)
    assert second_sha != first_sha
    detect._load_defaults()  # as choosing the model again does
    assert detect.threshold.value == pytest.approx(0.7)
    second, _ = MODELS.get(spec, "cleft-detector", "cpu")
    assert second is not first and second.metadata["weights_sha256"] == second_sha
    assert MODELS.get(spec, "cleft-detector", "cpu")[0] is second

    # a bundled model stays loaded for the session
    bundled, _ = MODELS.get("cleft-detector", "cleft-detector", "cpu")
    assert MODELS.get("cleft-detector", "cleft-detector", "cpu")[0] is bundled


def test_a_layer_picked_by_hand_and_then_removed_gives_way_to_names(
    make_napari_viewer,
) -> None:
    viewer = make_napari_viewer()
    _, partners = open_sample_and_docks(viewer)
    mine = viewer.add_labels(np.array(viewer.layers["clefts"].data), name="mine")
    partners.reset_choices()
    partners.clefts.value = mine  # by hand: kept over the names while it exists
    viewer.add_labels(np.zeros((2, 2, 2), np.uint8), name="other")
    partners.reset_choices()
    assert partners.clefts.value is mine
    viewer.layers.remove(mine)  # gone: the choice by name again, not whatever is first
    partners.reset_choices()
    assert partners.clefts.value is viewer.layers["clefts"]


def test_a_detect_run_into_a_session_s_clefts_is_decisions_of_that_session(
    make_napari_viewer,
) -> None:
    from napari_avan.core.session import Session

    viewer = make_napari_viewer()
    detect, partners = open_sample_and_docks(viewer)
    detect.scope.value = "whole volume"
    _detect(detect)
    clefts, prob = viewer.layers["predicted clefts"], viewer.layers["cleft probability"]
    partners.reset_choices()
    partners.clefts.value = clefts
    session = partners.ensure_session()
    start = dict(session.records)
    # a second run in a box: its clefts replace those of the box, through the session
    box = _detect_in_a_drawn_box(viewer, detect)
    in_box = set(np.unique(np.asarray(clefts.data)[box]).tolist()) - {0}
    assert in_box
    _detect(detect)
    actions = [e["decision"]["action"] for e in session.entries]
    assert actions.count("delete") == len(in_box) and "reseed" in actions
    np.testing.assert_array_equal(np.asarray(clefts.data), session.labels)  # the layer follows
    new = set(session.records) - set(start)
    assert new and all(session.records[c].origin == "predicted" for c in new)
    assert session.status()["added"] == 0  # found by the detector, not by a proofreader
    _assert_table_describes_layer(clefts, prob)
    assert partners.hub.bound_to(clefts, partners.segmentation.value)  # the same session
    assert partners.ensure_session() is session
    # and each of its changes undoes like any decision
    for _ in actions:
        session.undo()
    assert set(session.records) == set(start)
    np.testing.assert_array_equal(np.asarray(clefts.data), Session.open(session.path).labels)
