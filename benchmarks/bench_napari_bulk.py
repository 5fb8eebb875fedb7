"""napari over volumes larger than its memory budget: the Detect dock's whole volume block by
block, then a proofreading session with its labels on disk, in a shown viewer (run under
``xvfb-run -a``).

For each size (``--sizes``, GiB of uint8 EM), an image and a segmentation are tiled into zarr
stores (32 x 512 x 512 tiles of a synthetic sample, written tile by tile), and a child
process opens them in napari with the plugin's reader (lazily), runs *Detect clefts* on the
*whole volume* (block by block into a zarr store, in this process: ``workers`` 0), starts a
session on the predicted clefts in the *Proofread* dock (no assignment: partners are another
benchmark's subject), and makes 20 decisions with real key presses (``a``, ``r``, then
``Ctrl+Z``). The cleft labels are uint32, four times the image: past 0.25 GiB of EM they
exceed the session's 1 GiB in-memory limit and stay on disk.

Printed per size, with the CPU: the detector (``--model small``: a small random network with
the bundled detector's windows and post-processing, for a run of minutes; ``bundled``: the
bundled detector), the Detect run's wall time and Mvoxel/s, the clefts found, where the
session keeps its labels, the session's start time, the key-to-decision latency (median),
and the peak RSS of the napari process over the whole run (sampled every 0.1 s).

    xvfb-run -a python benchmarks/bench_napari_bulk.py [--sizes 0.25,1] [--model small]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import cpu_name
from bench_bulk import GIB, TILE, make_volume, small_model, volume_shape


def child(args: argparse.Namespace) -> None:
    """In a child process: the napari run; figures as JSON on the last line of stdout."""
    import psutil

    me = psutil.Process()
    peak = [0]
    phases: dict[str, float] = {}
    cached: dict[str, float] = {}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], me.memory_info().rss)
            time.sleep(0.1)

    def phase(name: str) -> None:
        """The peak RSS (GiB) since the last phase ended, and what napari's dask cache
        holds then (GiB)."""
        from napari.utils._dask_utils import _DASK_CACHE

        phases[name] = max(peak[0], me.memory_info().rss) / GIB
        cached[name] = _DASK_CACHE.cache.total_bytes / GIB
        peak[0] = 0

    threading.Thread(target=sample, daemon=True).start()
    import napari

    from napari_avan._napari._gui_testing import press_key, process_events, wait_until

    os.environ["NAPARI_AVAN_SESSIONS"] = str(Path(args.work) / "sessions")
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1400, 900)
    viewer.open(args.image, plugin="napari-avan")
    viewer.open(args.segmentation, plugin="napari-avan")
    process_events(0.5)
    phase("open")
    em = viewer.layers[0]
    seg = next(layer for layer in viewer.layers if layer is not em)
    _, detect = viewer.window.add_plugin_dock_widget("napari-avan", "Detect clefts")
    detect.image.value = em
    if args.model != "bundled":
        detect.model_dir.value = args.model  # a model folder overrides the bundled choice
    detect.scope.value = "whole volume"
    detect.output.value = str(Path(args.work) / "predictions.zarr")
    detect.workers.value = 0
    process_events(0.2)
    started = time.perf_counter()
    detect.run()
    wait_until(lambda: not detect.runner.busy, timeout=7200)
    detect_s = time.perf_counter() - started
    process_events(0.5)
    phase("detect")
    clefts = next(
        layer for layer in viewer.layers
        if (layer.metadata or {}).get("napari_avan_kind") == "predicted_clefts"
    )  # fmt: skip
    found = len(clefts.metadata["cleft_table"])

    _, proofread = viewer.window.add_plugin_dock_widget("napari-avan", "Proofread")
    proofread.image.value, proofread.clefts.value = em, clefts
    proofread.segmentation.value = seg
    proofread.assign_new.value = False
    started = time.perf_counter()
    session = proofread.new_session()
    process_events(0.2)
    start_s = time.perf_counter() - started
    phase("session start")
    latencies = []
    for key in ["a", "r"] * 9 + ["Control-z"] * 2:
        before = len(session.entries)
        started = time.perf_counter()
        press_key(viewer, key)
        wait_until(lambda before=before: len(session.entries) > before, timeout=60)
        process_events()
        latencies.append(time.perf_counter() - started)
    phase("decisions")
    stop.set()
    print(
        json.dumps(
            {
                "detect_s": detect_s,
                "clefts": found,
                "labels_on_disk": not session.in_memory,
                "session_start_s": start_s,
                "key_median_s": float(np.median(latencies)),
                "decisions": len(session.entries),
                "peak_rss_gib": max(phases.values()),
                "phases_peak_rss_gib": phases,
                "phases_dask_cache_gib": cached,
            }
        )
    )
    viewer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="0.25,1", help="GiB of uint8 EM")
    parser.add_argument("--model", default="small", help="small, bundled or a model folder")
    parser.add_argument("--json", help="write the figures here too")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--image", help=argparse.SUPPRESS)
    parser.add_argument("--segmentation", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    from napari_avan.core.synth import synthesize

    sample = synthesize(seed=0, shape=TILE)
    rows = []
    print(f"CPU: {cpu_name()}, {os.cpu_count()} cores; detector: {args.model}")
    with tempfile.TemporaryDirectory(prefix="bench-napari-bulk-") as tmp:
        model = args.model
        if model == "small":
            model = str(small_model(Path(tmp) / "small", sample.image))
        for gib in (float(s) for s in args.sizes.split(",")):
            shape = volume_shape(gib)
            work = Path(tmp) / f"run-{gib}"
            work.mkdir()
            image, seg = work / "em.zarr", work / "segmentation.zarr"
            make_volume(image, shape, sample.image)
            make_volume(seg, shape, sample.segmentation)
            out = subprocess.run(
                [sys.executable, __file__, "--child", "--image", str(image),
                 "--segmentation", str(seg), "--work", str(work), "--model", model],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            if out.returncode:
                raise SystemExit(f"{gib} GiB failed:\n{out.stderr[-4000:]}")
            row = {
                "gib": gib,
                "shape": list(shape),
                **json.loads(out.stdout.strip().splitlines()[-1]),
            }
            rows.append(row)
            n = int(np.prod(shape))
            where = "on disk" if row["labels_on_disk"] else "in memory"
            print(
                f"{gib:.2f} GiB EM {tuple(shape)}: detect {row['detect_s']:.0f} s "
                f"({n / row['detect_s'] * 1e-6:.2f} Mvoxel/s), {row['clefts']} clefts; session "
                f"labels {where}, started in {row['session_start_s']:.1f} s; key to decision "
                f"{1000 * row['key_median_s']:.0f} ms (median); napari peak RSS "
                f"{row['peak_rss_gib']:.2f} GiB ("
                + ", ".join(f"{k} {v:.2f}" for k, v in row["phases_peak_rss_gib"].items())
                + "; napari's dask cache "
                + ", ".join(f"{v:.2f}" for v in row["phases_dask_cache_gib"].values())
                + ")",
                flush=True,
            )
            import shutil

            shutil.rmtree(work)
    if args.json:
        Path(args.json).write_text(json.dumps({"cpu": cpu_name(), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
