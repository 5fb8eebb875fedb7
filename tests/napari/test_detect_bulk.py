"""Detect's whole-volume scope on a layer read from a file: block by block, out of core,
into a zarr store shown lazily; cancel and resume; other settings refused."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from napari_avan._napari._gui_testing import wait_until

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bulk"))
from bulk_cases import WORKING_NM, noise_image, small_detector

pytestmark = pytest.mark.gui

SHAPE = (24, 96, 96)
BLOCK = (16, 64, 64)


@pytest.fixture(scope="module")
def detector(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small real detector (see tests/bulk/bulk_cases.py)."""
    return small_detector(tmp_path_factory.mktemp("det") / "detector")


@pytest.fixture(scope="module")
def volume(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from napari_avan.io import write_volume

    path = tmp_path_factory.mktemp("em") / "em.zarr"
    write_volume(path, noise_image(SHAPE), WORKING_NM, chunks=(8, 32, 32))
    return path


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Sessions (and so predictions) under tmp_path; small output blocks."""
    from napari_avan._napari import _detect_widget
    from napari_avan.core.session.session import SESSIONS_ENV

    monkeypatch.setenv(SESSIONS_ENV, str(tmp_path / "sessions"))
    monkeypatch.setattr(_detect_widget, "BULK_BLOCK", BLOCK)
    return tmp_path


def _dock(viewer: Any, volume: Path, detector: Path) -> Any:
    (layer,) = viewer.open(str(volume), plugin="napari-avan")
    _, dock = viewer.window.add_plugin_dock_widget("napari-avan", "Detect clefts")
    dock.model_dir.value = detector
    dock.device.value = "cpu"
    dock.image.value = layer
    dock.scope.value = "whole volume"
    return dock


def _detect(dock: Any) -> None:
    dock.run()
    wait_until(lambda: not dock.runner.busy, timeout=60)


def _reference(detector: Path, volume: Path, out: Path, dock: Any) -> Path:
    """The same run without napari (what ``napari-avan detect --workers 0`` does)."""
    from napari_avan.bulk import iter_bulk_detect, plan_job

    job = plan_job(
        str(volume.resolve()),
        out,
        model=str(detector),
        voxel_size_nm=WORKING_NM,
        threshold=float(dock.threshold.value),
        min_size=int(dock.min_size.value),
        block=BLOCK,
        device="cpu",
    )
    for _ in iter_bulk_detect(job, workers=0):
        pass
    return out


def _assert_layers_show(viewer: Any, reference: Path) -> tuple[Any, Any]:
    import zarr

    prob = viewer.layers["cleft probability"]
    clefts = viewer.layers["predicted clefts"]
    for layer in (prob, clefts):
        assert isinstance(layer.data, zarr.Array)  # lazy: the store's arrays, no copy
    ref_prob = zarr.open_array(store=str(reference / "cleft_prob"), mode="r")[...]
    ref_clefts = zarr.open_array(store=str(reference / "clefts"), mode="r")[...]
    np.testing.assert_array_equal(prob.data[...], ref_prob)
    np.testing.assert_array_equal(clefts.data[...], ref_clefts)
    pd.testing.assert_frame_equal(
        clefts.metadata["cleft_table"], pd.read_csv(reference / "clefts.csv")
    )
    return prob, clefts


def _shown(dock: Any, widget: Any) -> bool:
    """Whether ``widget`` shows when its dock does (the test viewer is hidden)."""
    return bool(widget.native.isVisibleTo(dock.native))


def _snapshot(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")}


def _notifications() -> list[str]:
    from napari.utils.notifications import notification_manager

    return [str(n.message) for n in notification_manager.records]


def test_default_output_follows_the_image_and_the_sessions_folder(home: Path) -> None:
    from napari_avan._napari._detect_widget import default_output

    image = home / "raw.ome.zarr"
    image.mkdir()
    (image / "zarr.json").write_text('{"zarr_format": 3, "node_type": "group"}')
    predictions = home / "predictions"
    assert default_output(str(image)) == predictions / "raw-clefts.zarr"
    assert default_output(f"{image}:volumes/raw") == predictions / "raw-raw-clefts.zarr"


def test_whole_volume_of_a_file_runs_block_by_block(
    make_napari_viewer, home: Path, volume: Path, detector: Path
) -> None:
    from napari_avan._napari._layers import CLEFTS_KIND, PROB_KIND, SOURCE_SPEC_KEY
    from napari_avan.models.checkpoint import resolve_model
    from napari_avan.models.detect import detect

    viewer = make_napari_viewer()
    dock = _dock(viewer, volume, detector)
    out = home / "predictions" / "em-clefts.zarr"
    assert dock.bulk_source() == str(volume.resolve())
    assert _shown(dock, dock.output) and _shown(dock, dock.workers)
    assert Path(dock.output.value) == out
    assert "block by block" in dock.status.value
    _detect(dock)
    assert dock.status.value.startswith(f"{dock.last_result.n_clefts} clefts found"), (
        dock.status.value
    )
    reference = _reference(detector, volume, home / "reference.zarr", dock)
    prob, clefts = _assert_layers_show(viewer, out)
    _assert_layers_show(viewer, reference)
    assert not clefts.editable
    assert tuple(prob.scale) == tuple(clefts.scale) == WORKING_NM
    assert prob.metadata[SOURCE_SPEC_KEY] == f"{out}:cleft_prob"
    assert clefts.metadata[SOURCE_SPEC_KEY] == f"{out}:clefts"
    assert (prob.metadata["napari_avan_kind"], clefts.metadata["napari_avan_kind"]) == (
        PROB_KIND,
        CLEFTS_KIND,
    )
    assert clefts.metadata["source_layer"] == "em"
    # the in-memory path on the whole volume gives the same, bit for bit
    det = detect(
        resolve_model(str(detector), "cleft-detector"),
        noise_image(SHAPE),
        WORKING_NM,
        threshold=float(dock.threshold.value),
        min_size=int(dock.min_size.value),
    )
    assert int(det.clefts.max()) > 3
    np.testing.assert_array_equal(prob.data[...], det.prob)
    np.testing.assert_array_equal(clefts.data[...], det.clefts)
    table = clefts.metadata["cleft_table"]
    assert list(table.columns) == list(det.table.columns)
    exact = [c for c in table.columns if c != "score"]
    pd.testing.assert_frame_equal(table[exact], det.table[exact], check_dtype=False)

    # Detect again with the same settings shows the finished store: no duplicate layers
    count = len(viewer.layers)
    _detect(dock)
    assert len(viewer.layers) == count
    assert "made before with these settings" in dock.status.value
    _assert_layers_show(viewer, reference)

    # a layer that lives only in napari runs in memory; its layers are its own
    memory = viewer.add_image(noise_image(SHAPE), scale=WORKING_NM, name="copy")
    dock.image.value = memory
    assert dock.bulk_source() is None
    assert not _shown(dock, dock.output) and not _shown(dock, dock.workers)
    dock._output_layers(memory, WORKING_NM)
    assert len(viewer.layers) == count + 3
    assert isinstance(viewer.layers["predicted clefts [1]"].data, np.ndarray)


def test_cancel_resume_and_other_settings(
    make_napari_viewer,
    home: Path,
    volume: Path,
    detector: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from napari_avan.bulk import detect as bulk_detect

    predict = bulk_detect.predict_block

    def slow_predict(*args: Any, **kwargs: Any) -> Any:
        time.sleep(0.1)  # room to cancel between tasks
        return predict(*args, **kwargs)

    monkeypatch.setattr(bulk_detect, "predict_block", slow_predict)
    viewer = make_napari_viewer()
    dock = _dock(viewer, volume, detector)
    out = home / "predictions" / "em-clefts.zarr"
    dock.run()
    wait_until(lambda: dock.runner.job is None or dock.runner.job.pbar.n >= 2, 30)
    dock.cancel()
    wait_until(lambda: not dock.runner.busy, timeout=30)
    assert dock.status.value == (
        f"cancelled: finished blocks are kept in {out}; Detect again resumes"
    )
    assert list((out / "_bulk" / "done").iterdir())  # the ledger keeps finished tasks
    assert "cleft probability" not in viewer.layers
    threshold = float(dock.threshold.value)

    # other settings into the same store are refused; the store is left as it was
    for state in ("was started", "was made"):
        before = _snapshot(out)
        dock.threshold.value = threshold + 0.05
        _detect(dock)
        assert "other settings (threshold differ)" in dock.status.value, dock.status.value
        assert state in dock.status.value
        assert any("threshold differ" in m for m in _notifications())
        assert _snapshot(out) == before
        dock.threshold.value = threshold
        if state == "was started":  # the same settings resume the cancelled run
            _detect(dock)
            run = dock.last_result.run
            assert run.tasks_skipped > 0 and run.tasks_run > 0, run
            assert f"{run.tasks_skipped} done before" in dock.status.value
    reference = _reference(detector, volume, home / "reference.zarr", dock)
    _assert_layers_show(viewer, reference)
