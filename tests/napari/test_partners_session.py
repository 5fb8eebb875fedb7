"""The Partners dock as a view over a proofreading session, in a real viewer under Xvfb:
assignments journaled before they show, changes made elsewhere drawn at once, a session
saved and reopened from the dock, and a session's clefts saved through napari's writer."""

from __future__ import annotations

import json
from pathlib import Path
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


def _click(viewer: Any, partners: Any, cleft_id: int) -> None:
    clefts = partners.clefts.value
    point = cleft_world_point(clefts, cleft_id)
    viewer.dims.set_point(0, point[0])
    assert partners.click(point, None, [1, 2])
    wait_until(lambda: cleft_id in partners.results and not partners.runner.busy, timeout=60)


def _shown(partners: Any) -> dict[str, Any]:
    """What the dock shows: partner masks, the edge table, the synapse table's rows."""
    layers = partners._partner_layers()
    edges = (
        partners.edges_table()
        .drop(columns="updated")
        .sort_values(["cleft_segid", "presyn_segid", "postsyn_segid"])
    )
    return {
        "pre": np.array(layers[0].data),
        "post": np.array(layers[1].data),
        "edges": edges.reset_index(drop=True),
        "rows": sorted(map(tuple, partners.synapses.data.to_list())),
    }


def _assert_same_view(a: dict[str, Any], b: dict[str, Any]) -> None:
    np.testing.assert_array_equal(a["pre"], b["pre"])
    np.testing.assert_array_equal(a["post"], b["post"])
    pd.testing.assert_frame_equal(a["edges"], b["edges"], check_dtype=False)
    assert a["rows"] == b["rows"]


def test_assignments_are_journaled_decisions_and_the_view_follows_the_session(
    make_napari_viewer,
) -> None:
    from napari_avan.core.session import Session
    from napari_avan.core.session.session import sessions_home

    viewer = make_napari_viewer()
    _, partners = open_sample_and_docks(viewer)
    clefts = viewer.layers["clefts"]
    first, second = (int(i) for i in np.unique(clefts.data)[1:3])
    _click(viewer, partners, first)
    session = partners.session
    assert session is not None and session.path.parent == sessions_home()
    assert str(session.path) in partners.session_label.value
    # the assignment is on disk as an 'assign' decision before it shows
    lines = [json.loads(x) for x in (session.path / "journal.jsonl").read_text().splitlines()]
    assert [x["decision"]["action"] for x in lines] == ["assign"]
    out = partners.results[first].assignment
    record = Session.open(session.path).records[first]
    assert (list(record.pre), list(record.post)) == (out.pre_ids, out.post_ids)
    assert list(record.candidates) == out.candidates.tolist()
    # the session names the sample's volumes by a copy inside its folder
    for key, layer in (("image", "EM"), ("segmentation", "segmentation")):
        assert session.meta["volumes"][key] == f"{key}.zarr"
        from napari_avan.io.export import session_volume

        np.testing.assert_array_equal(
            session_volume(session, key, key), np.asarray(viewer.layers[layer].data)
        )

    # a change made elsewhere (a script, the Proofread dock) redraws the dock
    seg = viewer.layers["segmentation"].data
    region = partners.results[first].region
    others = [int(s) for s in np.unique(seg[region]) if s and s not in out.pre_ids + out.post_ids]
    assert others
    session.apply({"action": "set_partners", "cleft": first, "pre": [others[0]],
                   "post": out.post_ids})  # fmt: skip
    session.apply({"action": "reject", "cleft": first})
    process_events(0.1)
    wait_until(lambda: partners.synapses.data.to_list()[0][5] == "rejected", timeout=5)
    pre = viewer.layers["presynaptic"].data
    assert set(np.unique(pre[pre > 0]).tolist()) == {others[0]}
    assert set(partners.edges["presyn_segid"]) == {others[0]}
    assert set(partners.edges["status"]) == {"rejected"}
    # undone twice: the dock shows AVAN's partners again, pending
    session.undo()
    session.undo()
    process_events(0.1)
    wait_until(lambda: partners.synapses.data.to_list()[0][5] == "predicted", timeout=5)
    assert set(np.unique(pre[pre > 0]).tolist()) == set(out.pre_ids)
    partners.show_cleft(first, move_camera=False)
    assert partners.status.value.endswith("(pending)"), partners.status.value

    # another clefts layer: another session (results belong to one pair of layers)
    _click(viewer, partners, second)
    assert partners.session is session and set(partners.results) == {first, second}
    viewer.add_labels(np.array(clefts.data), name="other clefts", scale=clefts.scale)
    partners.reset_choices()
    partners.clefts.value = viewer.layers["other clefts"]
    _click(viewer, partners, second)
    assert partners.session is not session and set(partners.results) == {second}
    # assign, set_partners, reject, undo, undo, assign: the first session is kept
    assert len(Session.open(session.path).entries) == 6


def test_save_and_reopen_a_session_from_the_dock(make_napari_viewer, tmp_path: Path) -> None:
    from napari_avan.core.session import Session
    from napari_avan.io.export import export_session_files
    from napari_avan.types import AvanInputError

    viewer = make_napari_viewer()
    _, partners = open_sample_and_docks(viewer)
    clefts = viewer.layers["clefts"]
    first, second, third = (int(i) for i in np.unique(clefts.data)[1:4])
    _click(viewer, partners, first)
    started = partners.session.path
    partners.session.apply({"action": "accept", "cleft": first})
    target = tmp_path / "mine.session"
    assert partners.save_session(target) == target
    assert partners.session.path == target and str(target) in partners.session_label.value
    with pytest.raises(AvanInputError, match="exists"):
        partners.save_session(target)
    # work goes on in the saved copy; the folder it came from stays as it was
    _click(viewer, partners, second)
    assert len(Session.open(target).entries) == 3
    assert len(Session.open(started).entries) == 2
    before = _shown(partners)
    status = partners.session.status()

    # a new viewer: the session alone brings back the volumes, the layers and the tables
    # (the dock made directly: napari hands a plugin dock the viewer it thinks current,
    # which in one test process with two viewers is not always the newest)
    from napari_avan._napari._partners_widget import PartnersWidget

    viewer.close()
    other = make_napari_viewer()
    again = PartnersWidget(other)
    other.window.add_dock_widget(again, name="Partners")
    session = again.open_session(target)
    assert session.status() == status
    names = [layer.name for layer in other.layers]
    assert {"image (mine.session)", "segmentation (mine.session)"} <= set(names)
    assert again.clefts.value.name == "clefts (mine.session)"
    assert set(again.results) == {first, second}
    _assert_same_view(_shown(again), before)
    again.show_cleft(first, move_camera=False)
    assert again.status.value.endswith("(accepted)")
    # and it assigns on: the third cleft is journaled in the reopened session
    _click(other, again, third)
    assert Session.open(target).records[third].candidates

    # File > Save of the session's clefts layer writes the session's export
    out = tmp_path / "saved.zarr"
    written = again.clefts.value.save(str(out), plugin="napari-avan")
    assert written == [str(out)]
    expected = export_session_files(Session.open(target), "zarr", tmp_path / "expected.zarr")
    from napari_avan.io import read_table, read_volume

    for key in ("clefts", "segmentation", "image"):
        np.testing.assert_array_equal(
            read_volume(f"{out}:{key}", lazy=False).data,
            read_volume(f"{expected}:{key}", lazy=False).data,
        )
    pd.testing.assert_frame_equal(
        read_table(out / "edges.csv").drop(columns="updated"),
        read_table(expected / "edges.csv").drop(columns="updated"),
    )


def test_opening_what_is_not_a_session_says_so(make_napari_viewer, tmp_path: Path) -> None:
    viewer = make_napari_viewer()
    _, partners = viewer.window.add_plugin_dock_widget("napari-avan", "Partners")
    from napari_avan.types import AvanInputError

    with pytest.raises(AvanInputError, match="not a readable session folder"):
        partners.open_session(tmp_path)
    assert len(viewer.layers) == 0 and partners.session is None
