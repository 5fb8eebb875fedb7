"""The Proofread dock in a real, shown viewer under Xvfb, driven by real key presses and
canvas clicks: a whole review of the synthetic sample equals the same decisions made
through the session's API; keys released when the dock goes; export from the dock."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from napari_avan._napari._gui_testing import (
    cleft_world_point,
    click_canvas,
    open_sample_and_docks,
    press_key,
    process_events,
    wait_until,
)

pytestmark = pytest.mark.gui


def _docks(viewer: Any) -> tuple[Any, Any]:
    viewer.window._qt_window.resize(1400, 900)
    _, partners = open_sample_and_docks(viewer)
    _, proofread = viewer.window.add_plugin_dock_widget("napari-avan", "Proofread")
    process_events(0.2)
    return partners, proofread


def _state(session: Any) -> tuple[bytes, dict[int, Any]]:
    return session.labels.tobytes(), {c: r.to_json() for c, r in sorted(session.records.items())}


def _segment_voxel(seg: np.ndarray, segment: int, z: int) -> tuple[int, int, int]:
    """A voxel deep inside ``segment`` on section ``z`` (away from its border)."""
    from scipy import ndimage

    inside = ndimage.binary_erosion(seg[z] == segment, iterations=3)
    ys, xs = np.nonzero(inside)
    k = len(ys) // 2
    return (z, int(ys[k]), int(xs[k]))


def test_a_keyboard_review_equals_the_same_decisions_through_the_api(
    make_napari_viewer, tmp_path: Path
) -> None:
    from napari_avan.core.session import Session

    viewer = make_napari_viewer(show=True)
    partners, proofread = _docks(viewer)
    assert proofread._keys.bound
    clefts, seg_layer = viewer.layers["clefts"], viewer.layers["segmentation"]
    seg = np.asarray(seg_layer.data)
    original = np.array(clefts.data)
    # the Partners dock assigns one cleft: its session is the one the Proofread dock shows
    first = int(np.unique(clefts.data)[1])
    point = cleft_world_point(clefts, first)
    viewer.dims.set_point(0, point[0])
    assert partners.click(point, None, [1, 2])
    wait_until(lambda: first in partners.results and not partners.runner.busy, timeout=60)
    session = proofread.session
    assert session is partners.session and session is not None
    proofread.rebuild_queue()  # the scored cleft is the most uncertain: first in the queue
    assert proofread.current_cleft == first
    q = list(proofread.queue)
    record = session.records[first]
    z = (record.box[0] + record.box[3] - 1) // 2
    y0, x0, y1, x1 = record.box[1], record.box[2], record.box[4], record.box[5]
    window = seg[z, max(0, y0 - 30) : y1 + 30, max(0, x0 - 30) : x1 + 30]
    ids, sizes = np.unique(window, return_counts=True)
    near = [int(i) for i, n in zip(ids, sizes, strict=True)
            if i and i not in record.pre + record.post and n > 200]  # fmt: skip
    assert record.pre and record.post and near, record

    # the review, by keys and clicks
    press_key(viewer, "s")  # swap pre and post
    new_pre, toggled = near[0], record.post[0]
    voxel = _segment_voxel(seg, new_pre, z)
    viewer.dims.set_point(0, float(seg_layer.data_to_world(voxel)[0]))
    process_events(0.05)
    click_canvas(viewer, seg_layer.data_to_world(voxel), modifiers=("Control",))
    voxel = _segment_voxel(seg, toggled, z)
    click_canvas(viewer, seg_layer.data_to_world(voxel), modifiers=("Shift",))
    process_events(0.05)
    press_key(viewer, "a")  # accept: the next pending cleft is shown
    assert proofread.current_cleft == q[1]
    press_key(viewer, "r")
    press_key(viewer, "u")  # unsure: kept for a second pass at the end
    assert proofread.queue[-1] == q[2] and proofread.current_cleft == q[3]
    press_key(viewer, "p")
    assert proofread.current_cleft == q[2]
    press_key(viewer, "n")
    press_key(viewer, "Control-z")  # undoes the note; shows that cleft
    assert proofread.current_cleft == q[2] and session.records[q[2]].note == ""
    press_key(viewer, "Control-Shift-z")
    assert session.records[q[2]].note == "unsure"
    # re-seed a removed cleft: delete q[3], then click where it was in missed-synapse mode
    proofread.show_item(proofread.queue.index(q[3]))
    removed = np.argwhere(session.labels == q[3])
    centre = removed[np.argmin(((removed - removed.mean(axis=0)) ** 2).sum(axis=1))]
    proofread.delete_button.clicked.emit() if hasattr(
        proofread.delete_button, "clicked"
    ) else proofread.delete()
    assert q[3] not in session.records
    assert not (np.asarray(clefts.data) == q[3]).any()  # the layer shows the session's labels
    assert not clefts.editable  # painting there would bypass the journal
    proofread.reseed_mode.value = True
    world = seg_layer.data_to_world(centre)
    viewer.dims.set_point(0, float(world[0]))
    process_events(0.05)
    click_canvas(viewer, world)
    process_events(0.05)
    added = max(session.records)
    assert added > max(q) and session.records[added].origin == "added"
    assert proofread.current_cleft == added and not proofread.reseed_mode.value
    assert proofread.progress.value.startswith("2 of")  # accepted and rejected

    # the same decisions through the API, on a session made the same way
    api = Session.create(tmp_path / "api", original, session.voxel_size_nm)
    api.apply(session.entries[0]["decision"])  # AVAN's assignment of the first cleft
    api.segmentation = seg
    api.assigner = session.assigner
    pre, post = list(record.pre), list(record.post)
    pre, post = post, pre  # swap
    post = [s for s in post if s != new_pre]
    pre = [new_pre]
    post = [s for s in post if s != toggled] if toggled in post else [*post, toggled]
    for decision in (
        {"action": "set_partners", "cleft": first, "pre": list(record.post),
         "post": list(record.pre)},
        {"action": "set_partners", "cleft": first, "pre": [new_pre],
         "post": [s for s in record.pre if s != new_pre]},
        {"action": "set_partners", "cleft": first, "pre": pre, "post": post},
        {"action": "accept", "cleft": first},
        {"action": "reject", "cleft": q[1]},
        {"action": "note", "cleft": q[2], "text": "unsure"},
        {"action": "undo"},
        {"action": "redo"},
        {"action": "delete", "cleft": q[3]},
        {"action": "reseed", "seed": [int(v) for v in centre]},
    ):  # fmt: skip
        api.apply(decision)
    mine, theirs = _state(session), _state(api)
    assert mine[0] == theirs[0]
    for cleft in sorted(set(mine[1]) | set(theirs[1])):
        assert mine[1].get(cleft) == theirs[1].get(cleft), cleft
    assert _state(Session.open(session.path)) == _state(session)


def test_keys_are_released_when_the_dock_goes(make_napari_viewer) -> None:
    viewer = make_napari_viewer(show=True)
    _, proofread = _docks(viewer)
    proofread.assign_new.value = False
    proofread.new_session()
    seg = viewer.layers["segmentation"]
    assert not seg.visible  # hidden once while reviewing: partners show whole instead
    # the current cleft is outlined, not filled: its border voxels on each section
    from scipy import ndimage

    from napari_avan._napari._proofread_widget import OUTLINE

    cleft = np.asarray(proofread.session.labels) == proofread.current_cleft
    inner = ndimage.binary_erosion(cleft, structure=np.ones((1, 3, 3), bool))
    outline = np.asarray(viewer.layers[OUTLINE].data) > 0
    np.testing.assert_array_equal(outline, cleft & ~inner)
    assert inner.any()  # so the test can tell an outline from a fill
    labels = viewer.add_labels(np.zeros(seg.data.shape, np.uint8), name="mine",
                               scale=seg.scale)  # fmt: skip
    viewer.layers.selection.active = labels
    labels.mode = "pan_zoom"
    before = proofread.current_cleft
    press_key(viewer, "n")  # ours: the next cleft, the labels layer untouched
    assert proofread.current_cleft != before and labels.mode == "pan_zoom"
    viewer.window.remove_dock_widget(proofread.native.parent())
    process_events(0.1)
    assert not proofread._keys.bound
    press_key(viewer, "p")  # napari's own again: the labels layer paints
    assert labels.mode == "paint"


def test_export_from_the_dock_says_where_and_what(make_napari_viewer, tmp_path: Path) -> None:
    from napari_avan.io import read_cremi

    viewer = make_napari_viewer()
    _, proofread = _docks(viewer)
    session = proofread.new_session()  # and AVAN assigns every cleft in a worker
    wait_until(lambda: not proofread.runner_busy(), timeout=120)
    assert all(r.candidates for r in session.records.values())
    assert proofread.status.value.startswith(f"assigned {len(session.records)} clefts")
    assert session.status()["decisions"] == len(session.records)
    proofread.decide("accept")
    proofread.decide("reject")
    out = proofread.export(tmp_path / "review.h5", "cremi")
    assert str(out) in proofread.status.value
    assert "1 accepted, 1 rejected" in proofread.status.value
    data = read_cremi(out)
    rejected = [c for c, r in session.records.items() if r.status == "rejected"]
    assert rejected and not np.isin(data.clefts.data, rejected).any()
    proofread._guard(lambda: proofread.export(tmp_path / "review.h5", "cremi"))
    assert "exists" in proofread.status.value


def test_a_painted_cleft_is_committed_as_a_new_one(make_napari_viewer) -> None:
    from napari_avan._napari._proofread_widget import NEW_CLEFT
    from napari_avan.types import AvanInputError

    viewer = make_napari_viewer()
    _, proofread = _docks(viewer)
    proofread.assign_new.value = False
    session = proofread.new_session()
    with pytest.raises(AvanInputError, match="paint the missed cleft"):
        proofread.commit_painted()  # makes the empty layer to paint in
    layer = viewer.layers[NEW_CLEFT]
    free = np.argwhere(session.labels[10] == 0)[:5]
    for y, x in free:  # napari's own brush, one dab per voxel
        layer.brush_size = 1
        layer.paint((10, int(y), int(x)), 1, refresh=True)
    before = set(session.records)
    cleft = proofread.commit_painted()
    assert cleft not in before and session.records[cleft].origin == "added"
    assert sorted(map(tuple, np.argwhere(session.labels == cleft).tolist())) == sorted(
        (10, int(y), int(x)) for y, x in free
    )
    assert session.records[cleft].candidates  # AVAN assigned it at once
    assert not np.asarray(layer.data).any()  # emptied, ready for the next one
    assert proofread.current_cleft == cleft
    proofread.undo()
    assert cleft not in session.records and not (session.labels == cleft).any()


def test_a_removed_dock_stops_following_the_session(make_napari_viewer) -> None:
    viewer = make_napari_viewer()
    partners, proofread = _docks(viewer)
    proofread.assign_new.value = False
    first = proofread.new_session()
    assert proofread.session is first and proofread.queue
    viewer.window.remove_dock_widget(proofread.native.parent())
    copy = viewer.add_labels(np.array(viewer.layers["clefts"].data), name="copy",
                             scale=viewer.layers["clefts"].scale)  # fmt: skip
    partners.reset_choices()
    partners.clefts.value = copy  # a new pair of layers: the Partners dock starts another
    second = partners.ensure_session()
    assert second is not first and partners.session is second
    # the removed dock no longer follows: no queue rebuilt, no thumbnails drawn for it
    assert proofread._on_hub not in proofread.hub._listeners
    assert not proofread.gallery.rendering


def test_a_dock_added_over_a_session_and_removed_leaves_the_next_one_alone(
    make_napari_viewer,
) -> None:
    viewer = make_napari_viewer()
    _, partners = open_sample_and_docks(viewer)
    partners.ensure_session()  # a session before the Proofread dock comes
    _, proofread = viewer.window.add_plugin_dock_widget("napari-avan", "Proofread")
    assert proofread.queue and not viewer.layers["clefts"].visible  # reviewing it
    viewer.window.remove_dock_widget(proofread.native.parent())
    copy = viewer.add_labels(np.array(viewer.layers["clefts"].data), name="copy",
                             scale=viewer.layers["clefts"].scale)  # fmt: skip
    partners.reset_choices()
    partners.clefts.value = copy
    partners.ensure_session()
    assert copy.visible  # the removed dock did not start reviewing (and hiding) it
