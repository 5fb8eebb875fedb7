"""Latency of proofreading decisions, of reopening a session, and the undo history's memory.

A session of about 1,000 clefts over a 64 x 1024 x 1024 volume gets 1,000 random decisions
(accept, reject, note, set_partners, assign, delete, merge, reseed from voxels, undo,
redo; assign as the Partners dock records an AVAN result, with 8 scored candidates). Each
``Session.apply`` is timed with its journal fsync and its label-chunk writes; then the
session is reopened from disk. Prints the CPU, the median and p99 per action kind, the
reopening time and the memory the undo history holds (tracemalloc, after the decisions).

    python benchmarks/bench_session.py [--shape 64,1024,1024] [--clefts 1000] [--decisions 1000]

Then it times re-seeds whose partners AVAN assigns at once (the bundled AVAN on random EM
and a grid segmentation: the time, not the partners, is the point).
"""

from __future__ import annotations

import argparse
import gc
import random
import tempfile
import time
import tracemalloc
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from _machine import cpu_name  # beside this script

from napari_avan.core.session import CleftRecord, Session


def make_clefts(shape: tuple[int, int, int], n: int, seed: int) -> np.ndarray:
    """``n`` cleft-like slabs (3 sections, about 20 x 30 voxels), ids 1..n."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, np.uint32)
    for cleft in range(1, n + 1):
        z = rng.integers(0, shape[0] - 3)
        y = rng.integers(0, shape[1] - 20)
        x = rng.integers(0, shape[2] - 30)
        labels[z : z + 3, y : y + 20, x : x + 30] = cleft
    return labels


def decision(s: Session, rng: random.Random, shape: tuple[int, int, int]) -> dict[str, Any]:
    kinds = {"accept": 30, "reject": 15, "note": 5, "set_partners": 15, "assign": 15,
             "delete": 5, "merge": 5, "reseed": 10, "undo": 10, "redo": 5}  # fmt: skip
    kind = rng.choices(list(kinds), weights=list(kinds.values()))[0]
    if kind in ("undo", "redo"):
        return {"action": kind}
    cleft = rng.choice(list(s.records))
    if kind == "note":
        return {"action": "note", "cleft": cleft, "text": "check the post side"}
    if kind == "set_partners":
        return {"action": "set_partners", "cleft": cleft, "pre": [rng.randrange(1, 9999)],
                "post": [rng.randrange(1, 9999), rng.randrange(1, 9999)]}  # fmt: skip
    if kind == "assign":
        ids = rng.sample(range(1, 9999), 8)
        return {"action": "assign", "cleft": cleft, "pre": ids[:1], "post": ids[1:3],
                "candidates": ids, "pre_scores": [rng.random() for _ in ids],
                "post_scores": [rng.random() for _ in ids]}  # fmt: skip
    if kind == "merge":
        return {"action": "merge", "clefts": rng.sample(list(s.records), 2)}
    if kind == "reseed":
        z, y, x = (rng.randrange(n - 12) for n in shape)
        return {"action": "reseed",
                "voxels": [[z + dz, y + dy, x + dx] for dz in range(2) for dy in range(10)
                           for dx in range(12)]}  # fmt: skip
    return {"action": kind, "cleft": cleft}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="64,1024,1024")
    parser.add_argument("--clefts", type=int, default=1000)
    parser.add_argument("--decisions", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    shape = tuple(int(v) for v in args.shape.split(","))
    assert len(shape) == 3
    labels = make_clefts(shape, args.clefts, args.seed)  # type: ignore[arg-type]
    records = {
        i: CleftRecord(pre=(i + 10_000,), post=(i + 20_000,), pre_scores=(0.9, 0.3),
                       post_scores=(0.8, 0.6))
        for i in range(1, args.clefts + 1)
    }  # fmt: skip
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        s = Session.create(Path(folder) / "s", labels, (40.0, 4.0, 4.0), records=records)
        create_s = time.perf_counter() - start
        del labels
        gc.collect()
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        rng = random.Random(args.seed)
        times: dict[str, list[float]] = defaultdict(list)
        while sum(len(v) for v in times.values()) < args.decisions:
            d = decision(s, rng, shape)  # type: ignore[arg-type]
            start = time.perf_counter()
            try:
                s.apply(d)
            except ValueError:
                continue  # nothing to undo/redo, taken voxels
            times[d["action"]].append(time.perf_counter() - start)
        gc.collect()
        history_mb = (tracemalloc.get_traced_memory()[0] - base) / 2**20
        tracemalloc.stop()
        n = len(s.entries)
        start = time.perf_counter()
        reopened = Session.open(s.path)
        reopen_s = time.perf_counter() - start
        assert len(reopened.entries) == n and reopened.status() == s.status()
        avan_s = _reseeds_with_avan(reopened, shape, args.seed)  # type: ignore[arg-type]
    print(f"CPU: {cpu_name()}")
    print(f"session: {args.clefts} clefts over {shape}, created in {create_s:.1f} s")
    print(f"{'action':<14}{'n':>6}{'median ms':>12}{'p99 ms':>10}")
    every = []
    for action in sorted(times):
        ms = np.asarray(times[action]) * 1000
        every.extend(ms.tolist())
        print(f"{action:<14}{ms.size:>6}{np.median(ms):>12.1f}{np.percentile(ms, 99):>10.1f}")
    every_ms = np.asarray(every)
    print(f"{'all':<14}{every_ms.size:>6}{np.median(every_ms):>12.1f}"
          f"{np.percentile(every_ms, 99):>10.1f}")  # fmt: skip
    print(f"reopen after {n} decisions: {reopen_s:.2f} s")
    print(f"undo history after {n} decisions: {history_mb:.1f} MB")
    print(f"reseed with AVAN partners: median {np.median(avan_s):.2f} s, max "
          f"{max(avan_s):.2f} s ({len(avan_s)} re-seeds)")  # fmt: skip


def _reseeds_with_avan(s: Session, shape: tuple[int, int, int], seed: int) -> list[float]:
    from napari_avan.models.checkpoint import resolve_model
    from napari_avan.models.device import plan
    from napari_avan.models.partners import avan_assigner

    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, shape, dtype=np.uint8)
    zz, yy, xx = np.indices(shape, sparse=True)
    segmentation = (yy // 40 * 100 + xx // 40 + 1 + zz * 0).astype(np.uint32)
    s.assigner = avan_assigner(
        resolve_model(None, "avan"), image, segmentation, s.voxel_size_nm, run=plan("auto")
    )
    times = []
    for i in range(5):
        z, y, x = 8 + 10 * i, 300 + 100 * i, 200 + 120 * i
        voxels = [[z, y + a, x + b] for a in range(10) for b in range(12)]
        start = time.perf_counter()
        try:
            s.apply({"action": "reseed", "voxels": voxels})
        except ValueError:
            continue  # all taken by other clefts
        times.append(time.perf_counter() - start)
    return times


if __name__ == "__main__":
    main()
