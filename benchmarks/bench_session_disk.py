"""A proofreading session over cleft labels larger than memory: labels kept on disk against
labels held in memory, by volume size.

For each size (``--sizes``, GiB of uint32 labels) a zarr store of cleft labels is written tile
by tile (16 x 1024 x 1024 tiles, 60 cleft-like slabs each, ids unique), never whole. Then, in a
child process per size and mode (so each peak RSS is its own), a session is created from the
store, gets ``--decisions`` random decisions (accept, reject, delete, merge, re-seed from
voxels, undo; each timed with its journal fsync and label writes) and is reopened. Prints the
CPU, and per size and mode: peak RSS, creation, decision latency (median and p99) and
reopening time.

    python benchmarks/bench_session_disk.py [--sizes 0.25,1,2] [--decisions 300] [--json F]

``--modes disk`` skips the in-memory sessions (they need the labels' size in RAM, twice
while they are created).
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import cpu_name

TILE = (16, 1024, 1024)
CLEFTS_PER_TILE = 60
VOXEL = (40.0, 4.0, 4.0)
GIB = 2**30


def volume_shape(gib: float) -> tuple[int, int, int]:
    """Whole tiles holding about ``gib`` GiB of uint32: in-plane 2 x 2 tiles, then deeper."""
    tiles = max(1, round(gib * GIB / (4 * np.prod(TILE))))
    if tiles < 4:
        return (TILE[0], TILE[1] * tiles, TILE[2])
    return (TILE[0] * (tiles // 4), TILE[1] * 2, TILE[2] * 2)


def write_labels(path: Path, shape: tuple[int, int, int], seed: int) -> int:
    """Cleft-like slabs (3 sections, about 20 x 30 voxels) written tile by tile; their count."""
    import zarr

    array = zarr.create_array(
        store=str(path), shape=shape, dtype=np.uint32, chunks=(8, 256, 256), fill_value=0
    )
    rng = np.random.default_rng(seed)
    cleft = 0
    for z in range(0, shape[0], TILE[0]):
        for y in range(0, shape[1], TILE[1]):
            for x in range(0, shape[2], TILE[2]):
                tile = np.zeros(TILE, np.uint32)
                for _ in range(CLEFTS_PER_TILE):
                    cleft += 1
                    a = rng.integers(0, TILE[0] - 3)
                    b, c = rng.integers(0, TILE[1] - 30), rng.integers(0, TILE[2] - 30)
                    tile[a : a + 3, b : b + 20, c : c + 30][
                        tile[a : a + 3, b : b + 20, c : c + 30] == 0
                    ] = cleft
                array[z : z + TILE[0], y : y + TILE[1], x : x + TILE[2]] = tile
    return cleft


def _decision(session: Any, rng: random.Random) -> dict[str, Any]:
    clefts = sorted(session.records)
    kind = rng.choice(["accept", "reject", "delete", "merge", "reseed", "undo"])
    if kind == "undo":
        return {"action": "undo"}
    if kind == "merge":
        return {"action": "merge", "clefts": rng.sample(clefts, 2)}
    if kind == "reseed":
        z, y, x = (
            rng.randrange(n - m) for n, m in zip(session.labels.shape, (3, 30, 30), strict=True)
        )
        return {"action": "reseed", "voxels": [[z, y, x + k] for k in range(12)]}
    return {"action": kind, "cleft": rng.choice(clefts)}


def child(args: argparse.Namespace) -> None:
    """In a child process: create, decide, reopen; figures as JSON on stdout."""
    import zarr

    from napari_avan.core.session import Session

    source = zarr.open_array(args.labels, mode="r")
    in_memory = args.mode == "memory"
    started = time.perf_counter()
    session = Session.create(Path(args.session), source, VOXEL, in_memory=in_memory)
    created = time.perf_counter() - started
    rng = random.Random(args.seed)
    times: list[float] = []
    while len(times) < args.decisions:
        decision = _decision(session, rng)
        started = time.perf_counter()
        try:
            session.apply(decision)
        except Exception:  # a re-seed on taken voxels, nothing to undo: not timed
            continue
        times.append(time.perf_counter() - started)
    started = time.perf_counter()
    reopened = Session.open(Path(args.session))
    reopen = time.perf_counter() - started
    assert len(reopened.entries) == len(session.entries)
    ms = np.asarray(times) * 1000
    print(
        json.dumps(
            {
                "create_s": created,
                "decision_median_ms": float(np.median(ms)),
                "decision_p99_ms": float(np.percentile(ms, 99)),
                "reopen_s": reopen,
                "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB,
                "clefts": len(reopened.records),
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="0.25,1,2", help="GiB of uint32 labels")
    parser.add_argument("--modes", default="disk,memory")
    parser.add_argument("--decisions", type=int, default=300)
    parser.add_argument("--json", help="write the figures here too")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--labels", help=argparse.SUPPRESS)
    parser.add_argument("--session", help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    print(f"CPU: {cpu_name()}; {args.decisions} decisions per session")
    print(f"{'labels':>9} {'mode':>6} {'clefts':>7} {'peak RSS':>9} {'create':>8} "
          f"{'median':>8} {'p99':>8} {'reopen':>7}")  # fmt: skip
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-session-disk-") as tmp:
        for gib in (float(s) for s in args.sizes.split(",")):
            shape = volume_shape(gib)
            labels = Path(tmp) / f"labels-{gib}.zarr"
            write_labels(labels, shape, seed=1)
            for mode in args.modes.split(","):
                session = Path(tmp) / f"session-{gib}-{mode}"
                out = subprocess.run(
                    [sys.executable, __file__, "--child", "--labels", str(labels),
                     "--session", str(session), "--mode", mode,
                     "--decisions", str(args.decisions)],
                    capture_output=True, text=True, check=False,
                )  # fmt: skip
                if out.returncode:
                    raise SystemExit(f"{mode} at {gib} GiB failed:\n{out.stderr[-3000:]}")
                row = {"gib": gib, "shape": list(shape), "mode": mode,
                       **json.loads(out.stdout.strip().splitlines()[-1])}  # fmt: skip
                rows.append(row)
                print(
                    f"{gib:>7.2f} G {mode:>6} {row['clefts']:>7} {row['peak_rss_gib']:>7.2f} G "
                    f"{row['create_s']:>7.1f}s {row['decision_median_ms']:>6.1f}ms "
                    f"{row['decision_p99_ms']:>6.1f}ms {row['reopen_s']:>6.2f}s",
                    flush=True,
                )
                import shutil

                shutil.rmtree(session)
            import shutil

            shutil.rmtree(labels)
    if args.json:
        Path(args.json).write_text(json.dumps({"cpu": cpu_name(), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
