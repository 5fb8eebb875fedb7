"""Time the synthetic generator and compare its realism statistics with real ssTEM.

Run: ``python benchmarks/bench_synth.py [--seeds 20] [--shape 32,256,256]``. Prints the seconds
of every seed (dyadic and polyadic; target: each under 5 s on 2 CPU cores), their median and
maximum, the clefts made, and the grey-level statistics of the synthetic volumes next to the
targets measured once on the real VNC crop and, when ``../shared/data`` is there, that crop.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from napari_avan.core._synth_stats import (
    REAL_TARGETS,
    membrane_mask,
    profile_stats,
    realism_stats,
)
from napari_avan.core.synth import synthesize

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "vnc_stack1_left"
TARGET_SECONDS = 5.0
KEYS = tuple(REAL_TARGETS)
LABELS = ("mean", "sd", "p1", "p50", "p99", "membrane", "interior", "mem frac")


def row(name: str, stats: dict[str, float]) -> str:
    cells = []
    for key in KEYS:
        value = stats[key]
        cells.append(f"{value:9.3f}" if key == "membrane_fraction" else f"{value:9.1f}")
    return f"{name:22s}" + "".join(cells)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--shape", default="32,256,256")
    args = parser.parse_args()
    shape = tuple(int(s) for s in args.shape.split(","))
    voxel = (40.0, 4.0, 4.0)

    synthesize(seed=0, shape=(4, 64, 64))  # warm-up: imports and first-call costs
    worst = 0.0
    all_stats: dict[str, list[dict[str, float]]] = {}
    for polyadic in (False, True):
        kind = "polyadic" if polyadic else "dyadic"
        times, clefts, pairs = [], [], []
        all_stats[kind] = []
        for seed in range(args.seeds):
            start = time.perf_counter()
            sample = synthesize(seed=seed, shape=shape, voxel_size_nm=voxel, polyadic=polyadic)
            times.append(time.perf_counter() - start)
            clefts.append(int(sample.clefts.max()))
            pairs.append(len(sample.partners))
            print(f"{kind:8s} seed {seed:2d}: {times[-1]:5.2f} s, {clefts[-1]} clefts")
            membrane = membrane_mask(sample.segmentation, voxel, 30.0)
            interior = ~membrane & (sample.segmentation > 0)
            stats = realism_stats(sample.image, membrane, interior)
            stats.update(profile_stats(sample.segmentation, voxel))
            all_stats[kind].append(stats)
        worst = max(worst, max(times))
        print(
            f"{kind:8s} {args.seeds} seeds at {shape}: median {statistics.median(times):.2f} s, "
            f"max {max(times):.2f} s; clefts {min(clefts)}-{max(clefts)}, "
            f"partner pairs {min(pairs)}-{max(pairs)}"
        )

    print()
    print(f"{'grey levels':22s}" + "".join(f"{k:>9s}" for k in LABELS))
    print(row("target (real VNC crop)", REAL_TARGETS))
    if (REAL / "vnc_left.npz").exists():
        with np.load(REAL / "vnc_left.npz") as real:
            stats = realism_stats(real["image"], real["membranes"] > 0, real["class_labels"] == 255)
            profiles = profile_stats(real["segmentation"], (50.0, 4.6, 4.6))
        print(row("real VNC (annotated)", stats))
    for kind, runs in all_stats.items():
        mean = {k: float(np.mean([r[k] for r in runs])) for k in runs[0]}
        print(row(f"synthetic {kind}", mean))
    print()
    print("profiles per um^2, median / p90 equivalent radius (nm):")
    if (REAL / "vnc_left.npz").exists():
        print(
            f"  real VNC            {profiles['profiles_per_um2']:5.1f}  "
            f"{profiles['median_radius_nm']:5.0f} / {profiles['p90_radius_nm']:4.0f}"
        )
    for kind, runs in all_stats.items():
        mean = {k: float(np.mean([r[k] for r in runs])) for k in runs[0]}
        print(
            f"  synthetic {kind:9s} {mean['profiles_per_um2']:5.1f}  "
            f"{mean['median_radius_nm']:5.0f} / {mean['p90_radius_nm']:4.0f}"
        )
    verdict = "OK" if worst < TARGET_SECONDS else "TOO SLOW"
    print(f"\nslowest seed {worst:.2f} s (target < {TARGET_SECONDS:.0f} s): {verdict}")


if __name__ == "__main__":
    main()
