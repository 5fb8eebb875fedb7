"""Time the synthetic generator and compare its intensity statistics with real ssTEM.

Run: ``python benchmarks/bench_synth.py [--seeds 20] [--shape 32,256,256]``. Prints the
seconds per seed (dyadic and polyadic), their median and maximum, and the image statistics
next to the real VNC crop in ../shared/data (DESIGN section 9 targets).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from napari_avan.core.synth import synthesize

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "vnc_stack1_left"


def image_stats(image: np.ndarray) -> str:
    p1, p50, p99 = np.percentile(image, [1, 50, 99])
    spread = f"p1/p50/p99 {p1:.0f}/{p50:.0f}/{p99:.0f}"
    return f"mean {image.mean():6.1f}  sd {image.std():5.1f}  {spread}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--shape", default="32,256,256")
    args = parser.parse_args()
    shape = tuple(int(s) for s in args.shape.split(","))

    for polyadic in (False, True):
        times, clefts, edges = [], [], []
        images = []
        for seed in range(args.seeds):
            start = time.perf_counter()
            sample = synthesize(seed=seed, shape=shape, polyadic=polyadic)
            times.append(time.perf_counter() - start)
            clefts.append(int(sample.clefts.max()))
            edges.append(len(sample.partners))
            if seed < 5:
                images.append(sample.image)
        kind = "polyadic" if polyadic else "dyadic"
        print(
            f"{kind:8s} {args.seeds} seeds at {shape}: median {statistics.median(times):.2f} s, "
            f"max {max(times):.2f} s; clefts per volume {min(clefts)}-{max(clefts)}, "
            f"edges {min(edges)}-{max(edges)}"
        )
        print(f"{'':8s} synthetic image: {image_stats(np.concatenate(images))}")
    if (REAL / "vnc_left.npz").exists():
        real = np.load(REAL / "vnc_left.npz")["image"]
        print(f"{'real':8s} VNC ssTEM image: {image_stats(real)}")
    print("DESIGN section 9 target: mean 128, sd 55, p1/p50/p99 12/134/223")


if __name__ == "__main__":
    main()
