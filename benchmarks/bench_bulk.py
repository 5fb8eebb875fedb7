"""Bulk detection at scale: peak memory and throughput against volume size (issue 16 targets).

Volumes are synthetic EM (one 32 x 512 x 512 sample at 40 x 4 x 4 nm) tiled into zarr stores of
0.25, 0.5, 1 and 2 GiB (uint8, chunks 32 x 512 x 512), written tile by tile so this script never
holds a whole volume. Each run is a child process; its peak RSS is sampled every 0.1 s over the
whole process tree (the run, and the dask nanny and worker processes of a local cluster).

Prints, with the CPU model and the device plan beside them:

- **throughput**: on a volume that fits in memory (``--throughput-gib``, default 1/16 GiB), the
  whole-volume command (``napari-avan detect``) against bulk detection with 1 and 2 workers
  (``--workers``), in Mvoxel/s of the input; the target is 2 workers >= 90 % of the
  whole-volume path;
- **memory sweep**: bulk detection with ``--sweep-workers`` (default 2) on each size of
  ``--sizes``: wall time, throughput and peak RSS; the target is a peak within 20 % across
  the sizes and below 3 GiB;
- for each bulk run, the share of task time in reading, the network, other computing
  (resampling, blending, labelling) and writing, and of the run in stitching here.

``--sweep-model small`` runs the sweep with a small network (widths 4-8, random weights) in
the bundled detector's windows, voxel size and post-processing: the same blocks, reads,
writes and stitching at a fraction of the network's cost, for a sweep that ends in minutes
on a laptop CPU (the bundled detector takes about an hour for the four sizes at 1 Mvoxel/s).

Run::

    python benchmarks/bench_bulk.py
    python benchmarks/bench_bulk.py --sizes 0.25,0.5,1,2 --sweep-model small --json /tmp/b.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import cpu_name

TILE = (32, 512, 512)
VOXEL = (40.0, 4.0, 4.0)
GIB = 2**30
BLOCK = (32, 512, 512)  # the default


def volume_shape(gib: float) -> tuple[int, int, int]:
    """A (z, y, x) of whole tiles holding about ``gib`` GiB of uint8: two tiles deep, then
    square-ish in-plane, deeper beyond 1 GiB."""
    voxels = gib * GIB
    z = 2 * TILE[0] if gib <= 1 else 4 * TILE[0]
    side = voxels / z
    ky = max(1, round(np.sqrt(side) / TILE[1]))
    kx = max(1, round(side / (ky * TILE[1]) / TILE[2]))
    return z, ky * TILE[1], kx * TILE[2]


def make_volume(path: Path, shape: tuple[int, int, int], tile: np.ndarray) -> None:
    """A zarr volume of ``shape`` tiled from ``tile`` (its dtype), written tile by tile."""
    import zarr

    if path.exists():
        shutil.rmtree(path)
    array = zarr.create_array(
        store=str(path), shape=shape, chunks=TILE, dtype=tile.dtype, zarr_format=3,
        attributes={"voxel_size_nm": list(VOXEL)}, dimension_names=("z", "y", "x"),
    )  # fmt: skip
    for z in range(0, shape[0], TILE[0]):
        for y in range(0, shape[1], TILE[1]):
            for x in range(0, shape[2], TILE[2]):
                # flip alternate tiles so that neighbours meet without a seam of repeats
                t = tile[:, :: (-1) ** (y // TILE[1]), :: (-1) ** (x // TILE[2])]
                array[z : z + TILE[0], y : y + TILE[1], x : x + TILE[2]] = t


def small_model(folder: Path, tile: np.ndarray) -> Path:
    """A small random-weight network with the bundled detector's metadata, its threshold
    at the 99.5th percentile of its output on ``tile`` (a detector's share of cleft voxels,
    so that labelling and stitching see many clefts, as with a trained one)."""
    import torch

    from napari_avan.models.checkpoint import resolve_model, save_model
    from napari_avan.models.detect import detect
    from napari_avan.models.networks import ResidualSymmetricUNet, UNetConfig

    bundled = resolve_model(None, "cleft-detector")
    keep = ("task", "voxel_size_nm", "patch", "overlap", "postprocess", "target", "normalisation")
    meta = {k: bundled.metadata[k] for k in keep if k in bundled.metadata}
    torch.manual_seed(0)
    network = ResidualSymmetricUNet(UNetConfig(widths=(4, 8), groups=2))
    save_model(folder, network, meta, overwrite=True)
    prob = detect(resolve_model(str(folder), "cleft-detector"), tile, VOXEL).prob
    meta["postprocess"] = {
        **meta.get("postprocess", {}),
        "threshold": float(np.quantile(prob, 0.995)),
    }
    save_model(folder, network, meta, overwrite=True)
    return folder


def peak_rss(command: list[str]) -> tuple[float, float, str]:
    """Run ``command``; its wall seconds, the peak RSS (GiB) of its process tree, stdout."""
    import psutil

    started = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        root = psutil.Process(proc.pid)
        while not stop.is_set():
            try:
                tree = [root, *root.children(recursive=True)]
                total = 0
                for p in tree:
                    try:
                        total += p.memory_info().rss
                    except psutil.Error:
                        pass
                peak = max(peak, total)
            except psutil.Error:
                pass
            time.sleep(0.1)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    out, err = proc.communicate()
    stop.set()
    thread.join()
    if proc.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{err[-3000:]}")
    return time.perf_counter() - started, peak / GIB, out


def child_bulk(args: argparse.Namespace) -> None:
    """In a child process: one bulk detection; its result as JSON on stdout."""
    from napari_avan.bulk import iter_bulk_detect, plan_job

    job = plan_job(args.image, Path(args.out), model=args.model, block=BLOCK, device=args.device)
    result = None
    for step in iter_bulk_detect(job, workers=args.workers, overwrite=True):
        result = step.result
    assert result is not None
    print(json.dumps({"n_clefts": result.n_clefts, "seconds": result.run.seconds}))


def child_whole(args: argparse.Namespace) -> None:
    """In a child process: the whole-volume path as ``napari-avan detect`` runs it."""
    from napari_avan.cli import main

    model = ["--model", args.model] if args.model else []
    command = ["detect", args.image, "--out", args.out, "--device", args.device, "--quiet"]
    code = main([*command, "--overwrite", *model])
    print(json.dumps({"code": code}))


def shares(seconds: dict[str, float]) -> str:
    task = sum(v for k, v in seconds.items() if k in ("read", "network", "compute", "write"))
    parts = [f"{k} {100 * seconds.get(k, 0) / task:.0f} %" for k in ("read", "network", "compute",
             "write")]  # fmt: skip
    return (f"task time: {', '.join(parts)}; stitching here {seconds.get('stitch', 0):.1f} s "
            f"({100 * seconds.get('stitch', 0) / seconds['wall']:.1f} % of the run)")  # fmt: skip


def run_bulk(image: Path, out: Path, workers: int, model: str | None, device: str) -> dict:
    cmd = [sys.executable, __file__, "--child", "bulk", "--image", str(image), "--out", str(out),
           "--workers", str(workers), "--device", device,
           *(["--model", model] if model else [])]  # fmt: skip
    wall, rss, out_text = peak_rss(cmd)
    info = json.loads(out_text.strip().splitlines()[-1])
    return {"wall_s": wall, "peak_rss_gib": rss, **info}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="0.25,0.5,1,2", help="GiB of the sweep's volumes")
    parser.add_argument("--throughput-gib", type=float, default=1 / 16)
    parser.add_argument("--workers", default="1,2", help="worker counts of the throughput test")
    parser.add_argument("--sweep-workers", type=int, default=2)
    parser.add_argument("--sweep-model", choices=["bundled", "small"], default="bundled")
    parser.add_argument("--model", default=None, help="detector of the throughput test")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--work", default=None, help="folder for the volumes (default: temp)")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--json", default=None)
    parser.add_argument("--child", choices=["bulk", "whole"], help=argparse.SUPPRESS)
    parser.add_argument("--image", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "bulk":
        args.workers = int(args.workers)
        child_bulk(args)
        return 0
    if args.child == "whole":
        child_whole(args)
        return 0

    from napari_avan.core.synth import synthesize
    from napari_avan.models.device import plan

    work = Path(args.work or tempfile.mkdtemp(prefix="bench_bulk_"))
    work.mkdir(parents=True, exist_ok=True)
    run = plan(args.device)
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores; device plan {run.describe()}")
    tile = synthesize(seed=0, shape=TILE).image
    report: dict[str, Any] = {"cpu": cpu_name(), "plan": run.describe(), "block": BLOCK}

    if not args.skip_throughput:
        shape = volume_shape(args.throughput_gib)
        image = work / "throughput.zarr"
        make_volume(image, shape, tile)
        n = int(np.prod(shape))
        cmd = [sys.executable, __file__, "--child", "whole", "--image", str(image),
               "--out", str(work / "whole.zarr"), "--device", args.device,
               *(["--model", args.model] if args.model else [])]  # fmt: skip
        wall, rss, _ = peak_rss(cmd)
        rows = [{"path": "whole volume", "wall_s": wall, "peak_rss_gib": rss}]
        print(f"throughput on {shape} ({n * 1e-6:.0f} Mvoxel, {n / GIB:.3f} GiB), "
              f"detector {args.model or 'cleft-detector'}, block {BLOCK}:")  # fmt: skip
        print(
            f"  whole volume: {wall:.1f} s, {n / wall * 1e-6:.2f} Mvoxel/s, peak RSS {rss:.2f} GiB"
        )
        for w in (int(v) for v in args.workers.split(",")):
            r = run_bulk(image, work / f"bulk{w}.zarr", w, args.model, args.device)
            ratio = wall / r["wall_s"]
            print(f"  bulk, {w} worker{'s' if w > 1 else ''}: {r['wall_s']:.1f} s, "
                  f"{n / r['wall_s'] * 1e-6:.2f} Mvoxel/s ({100 * ratio:.0f} % of the "
                  f"whole-volume path), peak RSS {r['peak_rss_gib']:.2f} GiB; "
                  f"{shares(r['seconds'])}")  # fmt: skip
            rows.append({"path": f"bulk {w}", **r, "ratio_to_whole": ratio})
        report["throughput"] = {"shape": shape, "rows": rows}
        shutil.rmtree(image)

    model = None
    if args.sweep_model == "small":
        model = str(small_model(work / "small-detector", tile))
    sweep = []
    label = "the bundled detector" if model is None else "a small network (see --sweep-model)"
    print(f"memory sweep, {args.sweep_workers} workers, {label}, block {BLOCK}:")
    for gib in (float(v) for v in args.sizes.split(",")):
        shape = volume_shape(gib)
        image = work / f"sweep_{gib}.zarr"
        make_volume(image, shape, tile)
        n = int(np.prod(shape))
        r = run_bulk(image, work / "sweep_out.zarr", args.sweep_workers, model, args.device)
        print(f"  {n / GIB:.2f} GiB {shape}: {r['wall_s']:.0f} s, {n / r['wall_s'] * 1e-6:.2f} "
              f"Mvoxel/s, peak RSS {r['peak_rss_gib']:.2f} GiB, {r['n_clefts']} clefts; "
              f"{shares(r['seconds'])}")  # fmt: skip
        sweep.append({"gib": n / GIB, "shape": shape, **r})
        shutil.rmtree(image)
        shutil.rmtree(work / "sweep_out.zarr", ignore_errors=True)
    if sweep:
        peaks = [r["peak_rss_gib"] for r in sweep]
        spread = max(peaks) / min(peaks) - 1
        print(f"  peak RSS {min(peaks):.2f}-{max(peaks):.2f} GiB: spread {100 * spread:.0f} % "
              f"(target within 20 %, below 3 GiB)")  # fmt: skip
    report["sweep"] = {"model": args.sweep_model, "workers": args.sweep_workers, "rows": sweep}
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, default=str))
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
