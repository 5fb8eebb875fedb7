"""The Bootstrap dock in a real viewer: a whole round from the Start button lands in the
session, its table, plot and layers; Cancel leaves the session as it was; the rectangle in
the ``validation box`` layer is the box the round gets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from napari_avan._napari._gui_testing import process_events, wait_until

pytestmark = pytest.mark.gui


@pytest.fixture(scope="module")
def sample() -> Any:
    from napari_avan.core.synth import synthesize

    return synthesize(seed=9001, shape=(32, 320, 320))


def _session(sample: Any, folder: Path) -> Any:
    """A session of the sample with 2/3 of its clefts accepted (the rest pending)."""
    from napari_avan.core.session import Session
    from napari_avan.core.session.decisions import records_from_partners
    from napari_avan.io.export import keep_session_volume

    session = Session.create(
        folder, sample.clefts, sample.voxel_size_nm, records=records_from_partners(sample.partners)
    )
    keep_session_volume(session, "image", sample.image)
    keep_session_volume(session, "segmentation", sample.segmentation)
    ids = sorted(session.records)
    for cleft in ids[: 2 * len(ids) // 3]:
        session.apply({"action": "accept", "cleft": cleft})
    return session


def _dock_over(viewer: Any, sample: Any, session: Any) -> tuple[Any, Any]:
    """The Bootstrap dock (added before the session: it follows the hub), then the session
    shown over image, clefts and segmentation layers. Returns the dock and the clefts."""
    from napari_avan._napari._bootstrap_widget import NO_SESSION
    from napari_avan._napari._session_hub import hub_for

    voxel = tuple(session.voxel_size_nm)
    image = viewer.add_image(sample.image, name="EM", scale=voxel)
    seg = viewer.add_labels(sample.segmentation, name="segmentation", scale=voxel)
    clefts = viewer.add_labels(np.array(session.labels), name="clefts", scale=voxel)
    _, dock = viewer.window.add_plugin_dock_widget("napari-avan", "Bootstrap")
    assert dock.session_label.value == NO_SESSION
    hub_for(viewer).show(session, image, clefts, seg)
    assert str(session.path) in dock.session_label.value
    return dock, clefts


@pytest.mark.slow
def test_a_round_from_the_start_button_lands_in_the_session_and_the_dock(
    make_napari_viewer, sample: Any, tmp_path: Path
) -> None:
    from napari_avan._napari._bootstrap_widget import BOX_LAYER, COLUMNS
    from napari_avan.core.session import Session

    session = _session(sample, tmp_path / "s")
    viewer = make_napari_viewer()
    dock, clefts = _dock_over(viewer, sample, session)
    before = np.array(clefts.data)
    assert "automatic" in dock.box_label.value and dock.validation_box() is None
    dock.steps, dock.val_every = 3, 3
    dock.start_button.native.click()
    assert dock.running and not dock.start_button.enabled and dock.cancel_button.enabled
    assert dock.out == session.path / "round1-models"
    wait_until(lambda: not dock.running, timeout=400)

    rounds = session.meta["rounds"]
    assert len(rounds) == 1, dock.status.value
    record = rounds[0]
    assert record["round"] == 1 and session.round == 1
    assert record["steps"] == {"detector": 3, "avan": 3}
    # the table: one row, its figures
    assert dock.table.rowCount() == 1
    cell = {name: dock.table.item(0, c).text() for c, name in enumerate(COLUMNS)}
    assert cell["round"] == "1"
    assert cell["cleft F1"] == f"{record['metrics']['cleft_f1']:.2f}"
    assert cell["reviewed"] == str(record["counts"]["training_clefts"])
    # the curve: a loss per step (detector's, then AVAN's), a figure per validation
    assert len(dock.curve.losses) == 6
    assert [name for _, name, _ in dock.curve.validation] == ["cleft F1", "edge F1"]
    assert [x for x, _ in dock.curve.lines["AVAN loss"].points] == [4, 5, 6]
    # the plot across rounds: round 0 is the models before the round
    points = dock.rounds_plot.lines["cleft F1"].points
    assert points == [
        (0, record["base_metrics"]["cleft_f1"]),
        (1, record["metrics"]["cleft_f1"]),
    ]
    assert dock.status.value.startswith("round 1:")
    assert dock.progress_bar.value == 100
    # the clefts layer followed the session's decisions: pending clefts replaced
    np.testing.assert_array_equal(np.asarray(clefts.data), session.labels)
    assert not np.array_equal(before, np.asarray(clefts.data))
    assert Session.open(session.path).meta["rounds"] == rounds  # saved
    # an automatic box is chosen again by the next round (it grows with the review)
    assert record["validation_box_chosen"] == "automatic"
    assert BOX_LAYER not in viewer.layers or not len(viewer.layers[BOX_LAYER].data)
    assert dock.validation_box() is None and "automatic" in dock.box_label.value
    assert dock.curve.grab().width() > 0 and dock.rounds_plot.grab().width() > 0


@pytest.mark.slow
def test_cancel_leaves_the_session_as_it_was(
    make_napari_viewer, sample: Any, tmp_path: Path
) -> None:
    from napari_avan._napari._bootstrap_widget import CANCELLED

    session = _session(sample, tmp_path / "s")
    viewer = make_napari_viewer()
    dock, clefts = _dock_over(viewer, sample, session)
    entries, meta = len(session.entries), json.dumps(session.meta, sort_keys=True)
    labels = np.array(clefts.data)
    dock.steps, dock.val_every = 500, 1000  # a round that cannot end before the cancel
    dock.start_button.native.click()
    out = dock.out
    assert out is not None
    wait_until(lambda: bool(dock.curve.losses), timeout=400)  # training has begun
    assert out.exists()
    dock.cancel_button.native.click()
    wait_until(lambda: not dock.running, timeout=120)
    assert dock.status.value == CANCELLED
    assert len(session.entries) == entries
    assert json.dumps(session.meta, sort_keys=True) == meta and "rounds" not in session.meta
    assert not out.exists()
    np.testing.assert_array_equal(np.asarray(clefts.data), labels)
    assert dock.table.rowCount() == 0 and dock.start_button.enabled


def test_the_rectangle_in_the_validation_box_layer_is_the_box(
    make_napari_viewer, sample: Any, tmp_path: Path
) -> None:
    from napari_avan._napari._bootstrap_widget import BOX_LAYER, NO_SESSION

    session = _session(sample, tmp_path / "s")
    depth = session.labels.shape[0]
    session.meta["validation_box"] = [0, 10, 0, depth, 60, 320]  # a last round's box
    viewer = make_napari_viewer()
    _, dock = viewer.window.add_plugin_dock_widget("napari-avan", "Bootstrap")
    dock.start_button.native.click()  # no session yet: said, nothing runs
    assert dock.status.value == NO_SESSION and not dock.running
    voxel = tuple(session.voxel_size_nm)
    image = viewer.add_image(sample.image, name="EM", scale=voxel)
    seg = viewer.add_labels(sample.segmentation, name="segmentation", scale=voxel)
    clefts = viewer.add_labels(np.array(session.labels), name="clefts", scale=voxel)
    dock.hub.show(session, image, clefts, seg)

    # the stored box is drawn when the session is shown
    layer = viewer.layers[BOX_LAYER]
    assert layer.ndim == 2 and tuple(layer.scale) == voxel[1:]  # shows on every section
    assert len(layer.data) == 1
    assert dock.validation_box() == (0, 10, 0, depth, 60, 320)
    assert "kept from the last round" in dock.box_label.value

    # Mark validation box: the layer emptied and ready to draw; the stored box until then
    dock.box_button.native.click()
    assert len(layer.data) == 0 and layer.mode == "add_rectangle"
    assert viewer.layers.selection.active is layer
    assert dock.validation_box() == (0, 10, 0, depth, 60, 320)

    layer.add_rectangles(np.array([[100.0, 40.0], [250.0, 300.0]]))
    process_events(0.05)
    assert dock.validation_box() == (0, 100, 40, depth, 250, 300)
    assert f"y 100-250, x 40-300, sections 0-{depth}" in dock.box_label.value
    assert "drawn" in dock.box_label.value
    # a rectangle over the edge is clipped to the volume; one off it is refused
    layer.add_rectangles(np.array([[-50.0, 200.0], [100.4, 400.0]]))
    assert dock.validation_box() == (0, 0, 200, depth, 100, 320)
    layer.add_rectangles(np.array([[400.0, 400.0], [500.0, 500.0]]))
    assert "outside the volume" in dock.box_label.value
    dock.start_button.native.click()
    assert "outside the volume" in dock.status.value and not dock.running

    # removed, the dock follows no more
    viewer.window.remove_dock_widget(dock.native.parent())
    dock.hub.show(session, image, clefts, seg)
    assert dock._on_hub not in dock.hub._listeners


def test_a_round_that_cannot_run_says_why_in_the_status_line(
    make_napari_viewer, sample: Any, tmp_path: Path
) -> None:
    from napari_avan.core.session import Session

    session = Session.create(tmp_path / "s", sample.clefts, sample.voxel_size_nm)
    viewer = make_napari_viewer()
    dock, _ = _dock_over(viewer, sample, session)  # nothing reviewed: nothing to train on
    dock.steps = 1
    dock.start_button.native.click()
    wait_until(lambda: not dock.running, timeout=120)
    assert "review more clefts first" in dock.status.value, dock.status.value
    assert "Traceback" not in dock.status.value
    assert dock.out is not None and not dock.out.exists()
    assert "rounds" not in session.meta and dock.start_button.enabled
