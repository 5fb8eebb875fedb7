"""The dock widgets in a real viewer under Xvfb: detect, click a cleft, bulk-assign, cancel."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest

from napari_avan._napari._gui_testing import (
    cleft_world_point,
    click_canvas,
    open_sample_and_docks,
    process_events,
    wait_until,
)

pytestmark = pytest.mark.gui


def _notifications() -> list[str]:
    from napari.utils.notifications import notification_manager

    return [str(n.message) for n in notification_manager.records]


def _reference(partners: Any, cleft_id: int) -> Any:
    """The same cleft assigned on the whole volume, without the GUI."""
    from napari_avan._napari._models import MODELS
    from napari_avan.models.assign import assign_cleft

    model, run = MODELS.get(partners.model_spec, "avan", "auto")
    image, clefts, seg = partners._checked_layers()
    return assign_cleft(
        model,
        np.asarray(image.data),
        np.asarray(clefts.data),
        np.asarray(seg.data),
        tuple(image.scale),
        cleft_id,
        run=run,
        **partners._assign_kwargs(),
    )


#: What a table cell may show: an integer (ids) or a number with 3 fixed decimals (scores).
INTEGER = re.compile(r"^\d+$")
FIXED_3 = re.compile(r"^\d+\.\d{3}$")


def _shown_texts(table: Any) -> list[list[str]]:
    """Cell texts as drawn on screen: through the table's item delegate, not item.text()."""
    from qtpy.QtCore import QLocale, Qt

    native = table.native
    delegate = native.itemDelegate()
    return [
        [
            delegate.displayText(native.item(r, c).data(Qt.ItemDataRole.DisplayRole), QLocale())
            for c in range(native.columnCount())
        ]
        for r in range(native.rowCount())
    ]


def _assert_columns_fit(table: Any) -> None:
    """Every column shows its whole header and contents, and all fit without scrolling."""
    native = table.native
    header = native.horizontalHeader()
    widths = [header.sectionSize(i) for i in range(native.columnCount())]
    for i, width in enumerate(widths):
        assert width >= header.sectionSizeHint(i), (i, widths)
        assert width >= native.sizeHintForColumn(i), (i, widths)
    assert sum(widths) <= native.viewport().width(), (widths, native.viewport().width())
    assert native.horizontalScrollBar().maximum() == 0


def test_cell_text_uses_fixed_decimals() -> None:
    from napari_avan._napari._partners_widget import cell_text

    assert [cell_text(v) for v in (0.015, 0.923, 1e-7, 1.0, np.float32(0.5))] == [
        "0.015",
        "0.923",
        "0.000",
        "1.000",
        "0.500",
    ]
    assert [cell_text(v) for v in (7, np.uint32(4294967295), "post")] == [
        "7",
        "4294967295",
        "post",
    ]


def test_widgets_come_from_the_manifest(make_napari_viewer) -> None:
    from napari_avan._napari._detect_widget import DetectWidget
    from napari_avan._napari._partners_widget import PartnersWidget

    viewer = make_napari_viewer()
    detect, partners = open_sample_and_docks(viewer)
    assert isinstance(detect, DetectWidget) and isinstance(partners, PartnersWidget)
    assert detect.image.value.name == "EM"
    assert (partners.clefts.value.name, partners.segmentation.value.name) == (
        "clefts",
        "segmentation",
    )
    # thresholds come from the bundled models' validated post-processing
    assert detect.threshold.value == pytest.approx(0.5, abs=0.45)
    assert 0 < partners.post_threshold.value < 1


def test_detect_in_a_drawn_box(make_napari_viewer) -> None:
    viewer = make_napari_viewer()
    detect, _ = open_sample_and_docks(viewer)
    truth = viewer.layers["clefts"].data
    scale = np.asarray(viewer.layers["EM"].scale)
    # a box around the largest true cleft, drawn on its middle section
    ids, sizes = np.unique(truth[truth > 0], return_counts=True)
    target = int(ids[np.argmax(sizes)])
    voxels = np.argwhere(truth == target)
    lo, hi = voxels.min(axis=0), voxels.max(axis=0)
    z = int(np.median(voxels[:, 0]))
    corners = np.array([[z, lo[1] - 8, lo[2] - 8], [z, hi[1] + 8, hi[2] + 8]], float)
    rect = np.array(
        [
            [z, corners[0, 1], corners[0, 2]],
            [z, corners[0, 1], corners[1, 2]],
            [z, corners[1, 1], corners[1, 2]],
            [z, corners[1, 1], corners[0, 2]],
        ]
    )
    shapes = viewer.add_shapes([rect], shape_type="rectangle", scale=scale, name="box")
    detect.reset_choices()
    detect.scope.value = "drawn box"
    detect.box_layer.value = shapes
    detect.run()
    wait_until(lambda: not detect.runner.busy, timeout=120)
    assert "clefts found" in detect.status.value, detect.status.value
    prob = viewer.layers["cleft probability"]
    found = viewer.layers["predicted clefts"]
    assert tuple(prob.scale) == tuple(found.scale) == tuple(scale)
    assert prob.data.shape == found.data.shape == truth.shape
    box = detect.region()
    written = np.zeros(truth.shape, bool)
    written[box] = True
    assert not prob.data[~written].any() and not found.data[~written].any()
    # the detector finds the target cleft (a match as in `evaluate clefts`: IoU >= 0.1)
    hits, counts = np.unique(found.data[truth == target], return_counts=True)
    best = int(hits[1:][np.argmax(counts[1:])]) if hits.size > 1 else 0
    union = np.count_nonzero((found.data == best) | (truth == target))
    assert best and counts[hits == best][0] / union >= 0.1
    table = found.metadata["cleft_table"]
    assert set(table["cleft_segid"]) == set(np.unique(found.data[found.data > 0]).tolist())


def test_click_a_cleft_shows_its_partners(make_napari_viewer) -> None:
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1200, 800)
    _, partners = open_sample_and_docks(viewer)
    clefts = viewer.layers["clefts"]
    truth = clefts.metadata["partners"]
    cleft_id = int(truth["cleft_id"].iloc[0])
    point = cleft_world_point(clefts, cleft_id)
    viewer.dims.set_point(0, point[0])
    viewer.scene.camera.center = tuple(point)
    viewer.scene.camera.zoom = 2.0
    process_events(0.2)
    # the real canvas path: vispy press and release -> napari mouse callbacks -> worker
    click_canvas(viewer, point)
    wait_until(lambda: cleft_id in partners.results and not partners.runner.busy, timeout=60)
    out = partners.results[cleft_id].assignment
    ref = _reference(partners, cleft_id)
    assert (out.pre_ids, out.post_ids) == (ref.pre_ids, ref.post_ids)
    np.testing.assert_allclose(out.pre_scores, ref.pre_scores, atol=1e-5)
    pre, post = viewer.layers["presynaptic"], viewer.layers["postsynaptic"]
    seg = viewer.layers["segmentation"].data
    assert set(np.unique(pre.data[pre.data > 0]).tolist()) == set(out.pre_ids)
    assert set(np.unique(post.data[post.data > 0]).tolist()) == set(out.post_ids)
    # painted voxels are exactly the partners' voxels near the cleft (the ellipsoid in
    # the patch-sized box around it)
    from napari_avan.core.geometry import inscribed_ellipsoid

    region = partners.results[cleft_id].region
    near = inscribed_ellipsoid(seg[region].shape)
    np.testing.assert_array_equal(pre.data[region] > 0, near & np.isin(seg[region], out.pre_ids))
    outside = np.ones(seg.shape, bool)
    outside[region] = False
    assert not pre.data[outside].any() and not post.data[outside].any()
    # the tables
    edges = partners.edges
    assert list(zip(edges["presyn_segid"], edges["postsyn_segid"], strict=True)) == out.edges
    assert partners.synapses.data.to_list()[0][:3] == [cleft_id, *out.edges[0]]
    assert {row[0] for row in partners.scores.data.to_list()} == set(out.candidates.tolist())
    # the tables as shown: ids as integers, scores with 3 fixed decimals (no 1.500e-02
    # beside 0.9230), every column whole at the default dock width
    process_events(0.2)
    for table, kinds in ((partners.scores, "iffr"), (partners.synapses, "iiiffs")):
        shown = _shown_texts(table)
        assert shown and all(len(row) == len(kinds) for row in shown)
        for row in shown:
            for text, kind in zip(row, kinds, strict=True):
                pattern = {"i": INTEGER, "f": FIXED_3}.get(kind)
                allowed = ("pre", "post", "") if kind == "r" else ("predicted",)
                assert pattern.match(text) if pattern else text in allowed, row
        _assert_columns_fit(table)
    assert any(float(row[1]) < 0.1 for row in _shown_texts(partners.scores))  # was 1e-notation
    points = viewer.layers["synapses"]
    assert len(points.data) == len(edges)
    assert list(points.features["cleft_segid"]) == [cleft_id] * len(edges)
    # fixed colours on screen: magenta pre, green post
    viewer.layers["segmentation"].visible = False
    viewer.layers["clefts"].visible = False
    process_events(0.2)
    shot = viewer.screenshot(canvas_only=True, flash=False).astype(int)
    r, g, b = shot[..., 0], shot[..., 1], shot[..., 2]
    magenta = (r > 150) & (b > 150) & (g < 120)
    green = (g > 150) & (r < 120) & (b < 120)
    assert magenta.sum() > 100 and green.sum() > 100, (magenta.sum(), green.sum())


def test_bulk_assign_matches_the_whole_volume_path(make_napari_viewer) -> None:
    from napari_avan.models.assign import iter_assign

    viewer = make_napari_viewer()
    _, partners = open_sample_and_docks(viewer)
    clefts = viewer.layers["clefts"]
    viewer.dims.set_point(0, 20 * clefts.scale[0])
    viewer.reset_view()
    process_events(0.1)
    partners.assign_viewport()
    wait_until(lambda: not partners.runner.busy, timeout=120)
    # the last results are drawn in steps after the run: the table fills last but one
    wait_until(lambda: len(partners.synapses.data.to_list()) == len(partners.edges), 10)
    process_events(0.2)
    visible = set(np.unique(clefts.data[20]).tolist()) - {0}
    assert visible and set(partners.results) == visible, partners.status.value
    from napari_avan._napari._models import MODELS

    model, run = MODELS.get(partners.model_spec, "avan", "auto")
    image, cl, seg = partners._checked_layers()
    whole = {
        a.cleft_id: (a.pre_ids, a.post_ids)
        for step in iter_assign(
            model,
            np.asarray(image.data),
            np.asarray(cl.data),
            np.asarray(seg.data),
            tuple(image.scale),
            cleft_ids=sorted(visible),
            run=run,
            **partners._assign_kwargs(),
        )
        for a in step.finished
    }
    got = {c: (o.assignment.pre_ids, o.assignment.post_ids) for c, o in partners.results.items()}
    assert got == whole
    assert set(partners.edges["cleft_segid"]) <= visible
    assert len(partners.synapses.data.to_list()) == len(partners.edges)
    # selecting a row centres the camera on that cleft and selects it
    viewer.scene.camera.center = (0, 0, 0)
    partners.synapses.native.selectRow(0)
    process_events(0.1)
    row = partners.edges.iloc[0]
    world = np.asarray(clefts.data_to_world((row.centroid_z, row.centroid_y, row.centroid_x)))
    np.testing.assert_allclose(viewer.scene.camera.center[-2:], world[-2:], atol=1e-3)
    assert clefts.selected_label == int(row.cleft_segid)


def test_cancel_stops_a_bulk_run(make_napari_viewer) -> None:
    import time

    viewer = make_napari_viewer()
    _, partners = open_sample_and_docks(viewer)
    clefts = viewer.layers["clefts"]
    viewer.dims.ndisplay = 3  # 3D: the whole volume is visible, so every cleft runs
    process_events(0.1)
    first = partners.assign_viewport()
    assert first is not None
    wait_until(lambda: len(partners.results) > 0, timeout=60)
    pressed = time.perf_counter()
    partners.cancel_button.clicked.emit() if hasattr(
        partners.cancel_button, "clicked"
    ) else partners.cancel()
    wait_until(lambda: not partners.runner.busy, timeout=10)
    assert time.perf_counter() - pressed < 2.0
    n_clefts = len(np.unique(clefts.data)) - 1
    assert 0 < len(partners.results) < n_clefts
    assert partners.status.value.startswith("cancelled")
    assert partners.assign_button.enabled and not partners.cancel_button.enabled


def test_bad_choices_give_a_message_not_a_crash(make_napari_viewer) -> None:
    viewer = make_napari_viewer()
    image = np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)
    flat = viewer.add_image(image, name="flat", scale=(4, 4))
    _, detect = viewer.window.add_plugin_dock_widget("napari-avan", "Detect clefts")
    detect.reset_choices()
    detect.image.value = flat
    detect.run()
    assert "2D" in detect.status.value and not detect.runner.busy
    assert any("2D" in m for m in _notifications())

    viewer.layers.clear()
    volume = np.zeros((4, 32, 32), np.uint8)
    viewer.add_image(volume, name="em")
    _, partners = viewer.window.add_plugin_dock_widget("napari-avan", "Partners")
    # no voxel size: the scale is napari's default
    detect.reset_choices()
    detect.image.value = viewer.layers["em"]
    detect.run()
    assert "no voxel size" in detect.status.value
    # no segmentation layer
    cl = viewer.add_labels(np.zeros((4, 32, 32), np.uint32), name="clefts")
    partners.reset_choices()
    assert partners.assign_viewport() is None
    assert "segmentation" in partners.status.value
    # layers of different shapes
    viewer.layers["em"].scale = (40, 4, 4)
    cl.scale = (40, 4, 4)
    seg = viewer.add_labels(np.zeros((4, 32, 30), np.uint32), name="segmentation", scale=(40, 4, 4))
    partners.reset_choices()
    partners.clefts.value, partners.segmentation.value = cl, seg
    assert partners.assign_viewport() is None
    assert "differ in shape" in partners.status.value
    assert not partners.click(np.array([0.0, 10.0, 10.0]))
    assert not partners.runner.busy


def test_detect_the_viewport_and_cancel(make_napari_viewer) -> None:
    import time

    from napari_avan._napari._detect_widget import CONTEXT_VOXELS
    from napari_avan._napari._geometry import camera_of, viewer_viewport_box
    from napari_avan.core.geometry import grow_box

    viewer = make_napari_viewer(show=True)
    detect, _ = open_sample_and_docks(viewer)
    em = viewer.layers["EM"]
    viewer.dims.set_point(0, 16 * em.scale[0])
    camera_of(viewer).center = tuple(em.data_to_world((16, 64, 64)))
    camera_of(viewer).zoom = 4.0
    process_events(0.2)
    expected = grow_box(viewer_viewport_box(viewer, em, depth=16), CONTEXT_VOXELS, em.data.shape)
    assert expected[1].stop - expected[1].start < em.data.shape[1]  # only part is visible
    assert detect.region() == expected
    detect.run()
    wait_until(lambda: not detect.runner.busy, timeout=120)
    prob = viewer.layers["cleft probability"].data
    inside = np.zeros(prob.shape, bool)
    inside[expected] = True
    assert prob[inside].max() > 0.5 and not prob[~inside].any()

    # a whole-volume run cancelled at its first progress step writes nothing new
    before = prob.copy()
    detect.scope.value = "whole volume"
    job = detect.runner
    detect.run()
    assert job.busy and detect.cancel_button.enabled
    wait_until(lambda: job.job is None or job.job.pbar is None or job.job.pbar.n > 0, 60)
    pressed = time.perf_counter()
    detect.cancel_button.clicked.emit()
    wait_until(lambda: not detect.runner.busy, timeout=10)
    # one detector patch (about 1 s on 2 cores) may finish first; leave room for a busy CI
    assert time.perf_counter() - pressed < 5.0
    assert detect.status.value.startswith("cancelled")
    np.testing.assert_array_equal(viewer.layers["cleft probability"].data, before)
    assert detect.run_button.enabled and not detect.cancel_button.enabled


def test_closing_the_partners_dock_stops_its_click_handler(make_napari_viewer) -> None:
    viewer = make_napari_viewer()
    viewer.open_sample("napari-avan", "synthetic-polyadic")
    dock, partners = viewer.window.add_plugin_dock_widget("napari-avan", "Partners")
    assert partners._on_mouse in viewer.mouse_drag_callbacks
    viewer.window.remove_dock_widget(dock)
    process_events(0.2)
    # the next click on the canvas finds the widget gone, starts nothing and unhooks it
    clefts = viewer.layers["clefts"]
    point = cleft_world_point(clefts, int(clefts.data.max()))
    viewer.dims.set_point(0, point[0])
    click_canvas(viewer, point)
    process_events(0.2)
    assert partners._on_mouse not in viewer.mouse_drag_callbacks
    assert not partners.runner.busy and not partners.results


def test_click_a_cleft_in_3d(make_napari_viewer) -> None:
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1000, 800)
    _, partners = open_sample_and_docks(viewer)
    clefts = viewer.layers["clefts"]
    for name in ("segmentation", "EM"):
        viewer.layers[name].visible = False
    # a column (y, x) crossed by exactly one cleft, so the view ray along z meets it alone
    data = np.asarray(clefts.data)
    ids_per_column = np.array(
        [
            [len(set(np.unique(data[:, y, x]).tolist()) - {0}) for x in range(0, data.shape[2], 4)]
            for y in range(0, data.shape[1], 4)
        ]
    )
    ys, xs = np.nonzero(ids_per_column == 1)
    y, x = int(ys[len(ys) // 2] * 4), int(xs[len(xs) // 2] * 4)
    z = int(np.flatnonzero(data[:, y, x])[0])
    cleft_id = int(data[z, y, x])
    viewer.dims.ndisplay = 3
    viewer.reset_view()
    process_events(0.3)
    world = clefts.data_to_world((z, y, x))
    click_canvas(viewer, world)
    wait_until(lambda: not partners.runner.busy and bool(partners.results), timeout=60)
    assert set(partners.results) == {cleft_id}
    assert partners.status.value.startswith(f"cleft {cleft_id}:")


def test_a_failure_in_a_worker_is_a_notification(make_napari_viewer, tmp_path) -> None:
    import shutil

    from napari_avan.models.checkpoint import BUNDLED_DIR

    viewer = make_napari_viewer()
    detect, partners = open_sample_and_docks(viewer)
    broken = tmp_path / "broken-avan"
    shutil.copytree(BUNDLED_DIR / "avan", broken)
    weights = next(broken.glob("*.pt"))
    weights.write_bytes(b"not a torch file")
    partners.model_dir.value = broken
    clefts = viewer.layers["clefts"]
    point = cleft_world_point(clefts, int(clefts.data.max()))
    viewer.dims.set_point(0, point[0])
    assert partners.click(point, None, [1, 2])
    wait_until(lambda: not partners.runner.busy, timeout=60)
    assert not partners.results
    assert "broken-avan" in partners.status.value, partners.status.value
    assert any("Partners of cleft" in m for m in _notifications())
    assert partners.assign_button.enabled and not partners.cancel_button.enabled

    # one heavy job at a time: detection is refused while a bulk run goes on
    partners.model_dir.value = ""
    partners._load_defaults()
    viewer.dims.ndisplay = 3
    process_events(0.1)
    assert partners.assign_viewport() is not None
    detect.scope.value = "whole volume"
    detect.run()
    assert "busy" in detect.status.value
    partners.cancel()
    wait_until(lambda: not partners.runner.busy, timeout=30)
