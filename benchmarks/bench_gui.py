"""How the Partners widget feels: click-to-partners latency, event-loop stalls, Cancel.

Runs a shown napari viewer (use ``xvfb-run -a`` without a display) with the Partners
widget docked through npe2, and drives it as a user would:

* clicks: the camera moves to a cleft, then a real press/release on the canvas; the
  latency runs from the press to the partners painted in the layers (median of N clicks,
  after one warm-up click that loads the model);
* stall: a QTimer ticks every 5 ms on the GUI thread during a bulk "Assign viewport" of
  the visible clefts (and for one second after, while the results are drawn); the longest
  gap between ticks, less the interval, is the longest time the event loop could not
  respond;
* cancel: the time from pressing Cancel during a bulk run to the worker stopping;
* proofread: with the Proofread dock shown over the session, the longest event-loop stall
  (a 5 ms timer) while its gallery draws a page of thumbnails again; a real ``n`` key press
  on the canvas to the next cleft shown (centred, outlined, its partners coloured, the
  canvas repainted), median and p90; a Ctrl+click fixing a partner to its partners redrawn;
* session start: the time the first assignment spends starting the proofreading session
  (the labels written twice, the image and segmentation copied into it), on the GUI
  thread; sessions go to a temporary folder.

    xvfb-run -a python benchmarks/bench_gui.py               # synthetic sample and VNC crop
    xvfb-run -a python benchmarks/bench_gui.py --data vnc --clicks 30
    xvfb-run -a python benchmarks/bench_gui.py --data synthetic --bulk-view 3d

Prints one block of figures per dataset and, with ``--json``, writes them to a file.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from _machine import cpu_name  # beside this script

REPO = Path(__file__).resolve().parents[1]
VNC = REPO.parent / "shared" / "data" / "vnc_stack1_left" / "vnc_left.npz"


def load(viewer: Any, data: str) -> None:
    """Put the dataset's EM, segmentation and clefts in the viewer."""
    viewer.layers.clear()
    if data == "synthetic":
        viewer.open_sample("napari-avan", "synthetic-polyadic")
        return
    with np.load(VNC) as f:
        image, seg, clefts = f["image"], f["segmentation"], f["clefts"]
    voxel = (50.0, 4.6, 4.6)
    meta = {"voxel_size_nm": voxel}
    viewer.add_image(image, name="EM", scale=voxel, metadata=dict(meta))
    viewer.add_labels(seg, name="segmentation", scale=voxel, opacity=0.25, metadata=dict(meta))
    viewer.add_labels(clefts, name="clefts", scale=voxel, opacity=0.8, metadata=dict(meta))


def measure_clicks(viewer: Any, partners: Any, n_clicks: int) -> dict[str, Any]:
    from napari_avan._napari._geometry import camera_of
    from napari_avan._napari._gui_testing import (
        cleft_world_point,
        click_canvas,
        process_events,
        wait_until,
    )

    clefts = viewer.layers["clefts"]
    ids = [int(i) for i in np.unique(clefts.data) if i]
    viewer.dims.ndisplay = 2
    latencies: list[float] = []
    for k in range(n_clicks + 1):  # the first click loads the model: not counted
        cleft_id = ids[k % len(ids)]
        point = cleft_world_point(clefts, cleft_id)
        viewer.dims.set_point(0, float(point[0]))
        camera_of(viewer).center = tuple(point)
        camera_of(viewer).zoom = 2.0
        process_events(0.05)
        before = len(partners.click_latencies)
        start = time.perf_counter()
        click_canvas(viewer, point)
        wait_until(lambda b=before: len(partners.click_latencies) > b, timeout=120)
        elapsed = time.perf_counter() - start
        wait_until(lambda: not partners.runner.busy, timeout=120)
        if k:
            latencies.append(elapsed)
    return {
        "clicks": len(latencies),
        "click_median_s": statistics.median(latencies),
        "click_p90_s": float(np.percentile(latencies, 90)),
        "click_max_s": max(latencies),
    }


class _GcPauses:
    """Durations of Python's garbage collections (they hold the GIL, so they stall the GUI)."""

    def __init__(self) -> None:
        self.durations_ms: list[float] = []
        self._start = 0.0

    def callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.durations_ms.append((time.perf_counter() - self._start) * 1000)


def _gc_pauses() -> _GcPauses:
    pauses = _GcPauses()
    gc.callbacks.append(pauses.callback)
    return pauses


def measure_bulk(
    viewer: Any, partners: Any, cancel_after: int | None, ndisplay: int = 2
) -> dict[str, Any]:
    """Assign the viewport (2D: zoomed out to the whole section with the most clefts; 3D:
    the whole volume) while a 5 ms timer measures the event loop."""
    from qtpy.QtCore import QEventLoop, QTimer

    from napari_avan._napari._gui_testing import process_events

    clefts = viewer.layers["clefts"]
    per_section = [len(np.unique(s)) - 1 for s in np.asarray(clefts.data)]
    section = int(np.argmax(per_section))
    viewer.dims.ndisplay = 2
    viewer.dims.set_point(0, float(clefts.data_to_world((section, 0, 0))[0]))
    viewer.reset_view()
    viewer.dims.ndisplay = ndisplay
    process_events(0.1)
    partners.clear_results()
    ticks: list[float] = []
    timer = QTimer()
    timer.setInterval(5)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    loop = QEventLoop()
    cancelled_at: list[float] = []
    pauses = _gc_pauses()

    def poll() -> None:
        if cancel_after is not None and not cancelled_at and len(partners.results) >= cancel_after:
            cancelled_at.append(time.perf_counter())
            partners.cancel_button.clicked.emit()
        if not partners.runner.busy:
            loop.quit()

    watcher = QTimer()
    watcher.setInterval(20)
    watcher.timeout.connect(poll)
    start = time.perf_counter()
    timer.start()
    job = partners.assign_viewport()
    if job is None:
        raise RuntimeError(f"bulk run did not start: {partners.status.value}")
    watcher.start()
    loop.exec()
    end = time.perf_counter()
    process_events(1.0)  # the results' last redraw belongs to the run
    timer.stop()
    watcher.stop()
    gc.callbacks.remove(pauses.callback)
    gaps = np.diff(ticks) if len(ticks) > 1 else np.array([0.0])
    out = {
        "bulk_clefts": len(partners.results),
        "bulk_s": end - start,
        "longest_stall_ms": max(0.0, float(gaps.max()) * 1000 - 5),
        "stall_p99_ms": max(0.0, float(np.percentile(gaps, 99)) * 1000 - 5),
        "longest_gc_ms": max(pauses.durations_ms, default=0.0),
    }
    if cancel_after is not None:
        out = {
            "cancel_to_stopped_s": end - cancelled_at[0] if cancelled_at else float("nan"),
            "clefts_before_cancel": len(partners.results),
        }
    return out


def measure_proofread(viewer: Any, n_keys: int) -> dict[str, Any]:
    """Key press to next cleft shown, and a fixing click to partners redrawn, in the
    Proofread dock over the session the Partners dock recorded into."""
    from qtpy.QtCore import QTimer

    from napari_avan._napari._gui_testing import (
        click_canvas,
        press_key,
        process_events,
        wait_until,
    )

    _, proofread = viewer.window.add_plugin_dock_widget("napari-avan", "Proofread")
    process_events(0.2)
    wait_until(lambda: not proofread.gallery.rendering, timeout=60)
    # the gallery filling again (every thumbnail redrawn) while a 5 ms timer ticks
    ticks: list[float] = []
    timer = QTimer()
    timer.setInterval(5)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start()
    fill_start = time.perf_counter()
    proofread.rebuild_queue()
    wait_until(lambda: not proofread.gallery.rendering, timeout=60)
    fill_s = time.perf_counter() - fill_start
    process_events(0.1)
    timer.stop()
    gaps = np.diff(ticks) if len(ticks) > 1 else np.array([0.0])
    if not proofread.queue:
        raise RuntimeError("no cleft to review")
    keys: list[float] = []
    for _ in range(n_keys):
        before = proofread.current_cleft
        if proofread.position == len(proofread.queue) - 1:
            proofread.show_item(0)
            process_events(0.05)
            before = proofread.current_cleft
        start = time.perf_counter()
        press_key(viewer, "n")
        process_events(0)  # the repaint the key caused
        if proofread.current_cleft == before:
            raise RuntimeError("the key did not move to the next cleft")
        keys.append(time.perf_counter() - start)
        process_events(0.02)
    # fixing clicks: Ctrl+click a segment beside the current cleft makes it presynaptic
    seg = viewer.layers["segmentation"]
    clicks: list[float] = []
    for k in range(min(10, len(proofread.queue))):
        proofread.show_item(k)
        process_events(0.05)
        record = proofread.session.records[proofread.current_cleft]
        if not record.box:
            continue
        z = (record.box[0] + record.box[3] - 1) // 2
        y, x = record.box[1] - 3, (record.box[2] + record.box[5]) // 2
        voxel = (z, max(0, y), x)
        segment = int(seg.data[voxel])
        if segment == 0:
            continue
        start = time.perf_counter()
        click_canvas(viewer, seg.data_to_world(voxel), modifiers=("Control",))
        process_events(0)
        if proofread.session.records[proofread.current_cleft].pre != (segment,):
            raise RuntimeError("the fixing click did not set the partner")
        clicks.append(time.perf_counter() - start)
    viewer.window.remove_dock_widget(proofread.native.parent())
    return {
        "gallery_tiles": min(len(proofread.queue), proofread.gallery.per_page),
        "gallery_fill_s": fill_s,
        "gallery_longest_stall_ms": max(0.0, float(gaps.max()) * 1000 - 5),
        "keys": len(keys),
        "key_to_next_median_s": statistics.median(keys),
        "key_to_next_p90_s": float(np.percentile(keys, 90)),
        "fix_clicks": len(clicks),
        "fix_click_median_s": statistics.median(clicks) if clicks else float("nan"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", choices=["synthetic", "vnc", "both"], default="both")
    parser.add_argument("--clicks", type=int, default=20)
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    parser.add_argument(
        "--repeats", type=int, default=3, help="bulk and cancel runs (the worst is reported)"
    )
    parser.add_argument(
        "--bulk-view",
        choices=["2d", "3d"],
        default="2d",
        help="view during the bulk runs (3D renders every volume on each redraw)",
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: the widget's choice)"
    )
    args = parser.parse_args(argv)
    if args.threads is not None:
        from napari_avan._napari import _models

        _models.gui_threads = lambda: args.threads

    import os
    import tempfile

    import napari
    import torch

    from napari_avan.core.session.session import SESSIONS_ENV

    os.environ[SESSIONS_ENV] = tempfile.mkdtemp(prefix="bench-gui-sessions-")

    from napari_avan._napari import _models
    from napari_avan.models.device import available_cores

    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1400, 900)
    _, partners = viewer.window.add_plugin_dock_widget("napari-avan", "Partners")
    results: dict[str, Any] = {
        "cores": available_cores(),
        "torch_threads": _models.gui_threads(),
        "torch": torch.__version__,
    }
    datasets = ["synthetic", "vnc"] if args.data == "both" else [args.data]
    for data in datasets:
        load(viewer, data)
        partners.reset_choices()
        figures: dict[str, Any] = {"shape": list(viewer.layers["EM"].data.shape)}
        start = time.perf_counter()
        partners.ensure_session()
        figures["session_start_s"] = time.perf_counter() - start
        figures.update(measure_clicks(viewer, partners, args.clicks))
        ndisplay = 3 if args.bulk_view == "3d" else 2
        runs = [measure_bulk(viewer, partners, None, ndisplay) for _ in range(args.repeats)]
        stalls = [run["longest_stall_ms"] for run in runs]
        figures.update(runs[-1])
        figures["longest_stall_ms"] = max(stalls)
        figures["longest_stall_per_run_ms"] = [round(x, 1) for x in stalls]
        figures["longest_gc_per_run_ms"] = [round(run["longest_gc_ms"], 1) for run in runs]
        cancels = [measure_bulk(viewer, partners, 2, ndisplay) for _ in range(args.repeats)]
        figures["cancel_to_stopped_s"] = max(c["cancel_to_stopped_s"] for c in cancels)
        figures["clefts_before_cancel"] = cancels[-1]["clefts_before_cancel"]
        figures.update(measure_proofread(viewer, args.clicks))
        viewer.dims.ndisplay = 2
        results[data] = figures
        print(f"[{data}] shape {figures['shape']}")
        for key, value in figures.items():
            if key != "shape":
                print(f"  {key}: {value:.3f}" if isinstance(value, float) else f"  {key}: {value}")
    _, run = _models.MODELS.get(partners.model_spec, "avan", str(partners.device.value))
    results["cpu"] = cpu_name()
    results["avan_run"] = run.describe()
    print(f"{results['cpu']}: cores {results['cores']}, torch threads {results['torch_threads']}")
    print(f"AVAN ran on {results['avan_run']}")
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
