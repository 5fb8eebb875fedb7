"""How the Partners widget feels: click-to-partners latency, event-loop stalls, Cancel.

Runs a shown napari viewer (use ``xvfb-run -a`` without a display) with the Partners
widget docked through npe2, and drives it as a user would:

* clicks: the camera moves to a cleft, then a real press/release on the canvas; the
  latency runs from the press to the partners painted in the layers (median of N clicks,
  after one warm-up click that loads the model);
* stall: a QTimer ticks every 5 ms on the GUI thread during a bulk "Assign viewport" of
  the whole volume (3D view); the longest gap between ticks, less the interval, is the
  longest time the event loop could not respond;
* cancel: the time from pressing Cancel during a bulk run to the worker stopping.

    xvfb-run -a python benchmarks/bench_gui.py               # synthetic sample and VNC crop
    xvfb-run -a python benchmarks/bench_gui.py --data vnc --clicks 30

Prints one block of figures per dataset and, with ``--json``, writes them to a file.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

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


def measure_bulk(viewer: Any, partners: Any, cancel_after: int | None) -> dict[str, Any]:
    """Assign the viewport (2D, zoomed out to the whole section with the most clefts)
    while a 5 ms timer measures the event loop."""
    from qtpy.QtCore import QEventLoop, QTimer

    from napari_avan._napari._gui_testing import process_events

    clefts = viewer.layers["clefts"]
    per_section = [len(np.unique(s)) - 1 for s in np.asarray(clefts.data)]
    section = int(np.argmax(per_section))
    viewer.dims.ndisplay = 2
    viewer.dims.set_point(0, float(clefts.data_to_world((section, 0, 0))[0]))
    viewer.reset_view()
    process_events(0.1)
    partners.results.clear()
    ticks: list[float] = []
    timer = QTimer()
    timer.setInterval(5)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    loop = QEventLoop()
    cancelled_at: list[float] = []

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
    timer.stop()
    watcher.stop()
    gaps = np.diff(ticks) if len(ticks) > 1 else np.array([0.0])
    out = {
        "bulk_clefts": len(partners.results),
        "bulk_s": end - start,
        "longest_stall_ms": max(0.0, float(gaps.max()) * 1000 - 5),
        "stall_p99_ms": max(0.0, float(np.percentile(gaps, 99)) * 1000 - 5),
    }
    if cancel_after is not None:
        out = {
            "cancel_to_stopped_s": end - cancelled_at[0] if cancelled_at else float("nan"),
            "clefts_before_cancel": len(partners.results),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", choices=["synthetic", "vnc", "both"], default="both")
    parser.add_argument("--clicks", type=int, default=20)
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args(argv)

    import napari
    import torch

    from napari_avan._napari._models import gui_threads
    from napari_avan.models.device import available_cores

    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1400, 900)
    _, partners = viewer.window.add_plugin_dock_widget("napari-avan", "Partners")
    results: dict[str, Any] = {
        "cores": available_cores(),
        "torch_threads": gui_threads(),
        "torch": torch.__version__,
    }
    datasets = ["synthetic", "vnc"] if args.data == "both" else [args.data]
    for data in datasets:
        load(viewer, data)
        partners.reset_choices()
        figures: dict[str, Any] = {"shape": list(viewer.layers["EM"].data.shape)}
        figures.update(measure_clicks(viewer, partners, args.clicks))
        figures.update(measure_bulk(viewer, partners, cancel_after=None))
        figures.update(measure_bulk(viewer, partners, cancel_after=2))
        results[data] = figures
        print(f"[{data}] shape {figures['shape']}")
        for key, value in figures.items():
            if key != "shape":
                print(f"  {key}: {value:.3f}" if isinstance(value, float) else f"  {key}: {value}")
    print(f"cores {results['cores']}, torch threads {results['torch_threads']}")
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
