"""A proofreading session over volumes read lazily from files, with its labels kept on disk
(as for a volume larger than memory; the size limit is lowered here so that a small volume
takes that path): started from the layers in a shown viewer, assigned block by block, decided
on by keys, shown lazily from the session's store, and equal to the same work done on a
session held in memory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr

from napari_avan._napari._gui_testing import press_key, process_events, wait_until

pytestmark = pytest.mark.gui


def _volumes_on_disk(viewer: Any, tmp_path: Path) -> Path:
    """The polyadic sample written to one zarr store (EM, segmentation, clefts)."""
    from napari_avan.io import write_volume

    viewer.open_sample("napari-avan", "synthetic-polyadic")
    store = tmp_path / "sample.zarr"
    for name in ("EM", "segmentation", "clefts"):
        layer = viewer.layers[name]
        write_volume(store, np.asarray(layer.data), tuple(layer.scale), key=name)
    viewer.layers.clear()
    return store


def test_a_session_on_disk_from_file_layers_is_proofread_like_one_in_memory(
    make_napari_viewer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from napari_avan.core.session import Session
    from napari_avan.core.session.store import ChunkedLabels

    monkeypatch.setenv("NAPARI_AVAN_SESSIONS", str(tmp_path / "sessions"))
    viewer = make_napari_viewer(show=True)
    store = _volumes_on_disk(viewer, tmp_path)
    viewer.open(str(store), plugin="napari-avan")
    clefts_layer = viewer.layers["clefts"]
    source = np.asarray(clefts_layer.data)
    assert not isinstance(clefts_layer.data, np.ndarray)  # read lazily
    _, proofread = viewer.window.add_plugin_dock_widget("napari-avan", "Proofread")
    proofread.image.value = viewer.layers["EM"]
    proofread.clefts.value = clefts_layer
    proofread.segmentation.value = viewer.layers["segmentation"]

    # an unsaved image layer cannot be named by file: refused before anything is made
    monkeypatch.setenv("NAPARI_AVAN_LABELS_IN_MEMORY_MIB", "0.01")
    em = viewer.layers["EM"]
    unsaved = viewer.add_image(np.asarray(em.data), name="unsaved", scale=em.scale)
    proofread.image.value = unsaved
    with pytest.raises(Exception, match="not read from one"):
        proofread.new_session()
    assert not (tmp_path / "sessions").exists() or not any((tmp_path / "sessions").iterdir())
    viewer.layers.remove(unsaved)
    proofread.image.value = viewer.layers["EM"]

    session = proofread.new_session()  # assigns every cleft, block by block
    assert not session.in_memory and isinstance(session.labels, ChunkedLabels)
    wait_until(lambda: not proofread.runner_busy(), timeout=240)
    process_events(0.1)
    assert not (session.path / "assign-all").exists()
    assigned = [c for c, r in session.records.items() if r.candidates]
    assert len(assigned) == len(session.records) > 3
    # the layer shows the session's store, lazily
    assert clefts_layer.data is session.labels.array
    np.testing.assert_array_equal(np.asarray(clefts_layer.data), source)

    # the same session in memory, assigned on the whole volume: the same partners and scores
    reference = Session.create(
        tmp_path / "reference", source, session.voxel_size_nm, in_memory=True
    )
    from napari_avan.core.session import assign_decision
    from napari_avan.models.assign import iter_assign
    from napari_avan.models.checkpoint import resolve_model

    image = np.asarray(viewer.layers["EM"].data)
    seg = np.asarray(viewer.layers["segmentation"].data)
    model = resolve_model(None, "avan")
    post = model.metadata.get("postprocess") or {}
    for step in iter_assign(
        model, image, source, seg, session.voxel_size_nm, polyadic=True,
        pre_threshold=float(post.get("pre_threshold", 0.5)),
        post_threshold=float(post.get("post_threshold", 0.5)),
    ):  # fmt: skip
        for found in step.finished:
            reference.apply(assign_decision(found, model="avan"))
    for cleft, record in reference.records.items():
        mine = session.records[cleft]
        assert (mine.pre, mine.post, mine.candidates) == (
            record.pre,
            record.post,
            record.candidates,
        )
        np.testing.assert_allclose(mine.pre_scores, record.pre_scores, atol=1e-5)
    assert proofread.queue == reference.review_queue("uncertainty")

    # decisions by key: accept, reject, delete; undo; the layer follows the store
    q = list(proofread.queue)
    press_key(viewer, "a")
    press_key(viewer, "r")
    proofread.show_item(proofread.queue.index(q[2]))
    proofread.delete()
    for decision in (
        {"action": "accept", "cleft": q[0]},
        {"action": "reject", "cleft": q[1]},
        {"action": "delete", "cleft": q[2]},
    ):
        reference.apply(decision)
    assert session.records[q[0]].status == "accepted"
    assert q[2] not in session.records
    assert not (np.asarray(clefts_layer.data) == q[2]).any()
    stored = zarr.open_array(str(session.path / "clefts.zarr"))[...]
    np.testing.assert_array_equal(stored, reference.labels)
    press_key(viewer, "Control-z")
    reference.undo()
    np.testing.assert_array_equal(np.asarray(clefts_layer.data), reference.labels)

    # a cleft painted in the 'new cleft' layer (a zarr array in memory, not a whole volume)
    painted = proofread._new_cleft_layer()
    assert not isinstance(painted.data, np.ndarray)
    free = np.argwhere(reference.labels[10] == 0)[:5]
    for y, x in free:
        painted.data[10, int(y), int(x)] = 1
    added = proofread.commit_painted()
    assert session.records[added].origin == "added"
    assert (np.asarray(clefts_layer.data)[10][tuple(free.T)] == added).all()
    assert not np.asarray(painted.data[10]).any()

    # reopened: the same state, shown from the store
    reopened = Session.open(session.path)
    assert not reopened.in_memory
    np.testing.assert_array_equal(np.asarray(reopened.labels), np.asarray(clefts_layer.data))
    assert {c: r.status for c, r in reopened.records.items()} == {
        c: r.status for c, r in session.records.items()
    }

    # opened from its folder: a new clefts layer over the session's store, no copy
    opened = proofread.open_session(session.path)
    shown = viewer.layers[f"clefts ({session.path.name})"]
    assert not opened.in_memory and shown.data is opened.labels.array


def test_reads_in_a_worker_thread_leave_napari_slicing_alone(
    make_napari_viewer, tmp_path: Path
) -> None:
    """A worker thread reading a dask layer through ``thread_safe`` while napari slices it
    300 times: napari's slicing never fails, and the reads do not use napari's dask cache
    (a plain dask compute in a thread takes and empties the process-wide callbacks, napari's
    cache among them while it slices: its bookkeeping breaks, at random)."""
    import threading

    from dask.callbacks import Callback

    from napari_avan._napari._workers import thread_safe

    viewer = make_napari_viewer(show=True)
    viewer.open(str(_volumes_on_disk(viewer, tmp_path)), plugin="napari-avan")
    em = viewer.layers["EM"]
    reader = thread_safe(em.data)
    assert reader is not em.data  # a dask array, wrapped
    stop = threading.Event()
    reads = []

    def read() -> None:
        while not stop.is_set():
            reads.append(np.asarray(reader[0:8, 0:128, 0:128]).sum())

    before = set(Callback.active)
    worker = threading.Thread(target=read, daemon=True)
    worker.start()
    try:
        for k in range(300):
            viewer.dims.set_point(0, float((k * 7) % em.data.shape[0]) * em.scale[0])
    finally:
        stop.set()
        worker.join()
    assert len(reads) > 10 and len(set(reads)) == 1
    assert set(Callback.active) == before  # nothing left registered or taken away
