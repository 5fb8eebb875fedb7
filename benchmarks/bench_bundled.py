"""Bundled models on synthetic hold-out volumes (seeds never used in training).

Prints, per kind (dyadic, polyadic): cleft object F1 of the bundled detector, and, given the
true clefts, AVAN's dyadic accuracy and polyadic edge F1 (thresholds 0.5). Issue 4's targets:
cleft F1 >= 0.95, dyadic accuracy >= 99 %, polyadic edge F1 >= 0.95 on 10 volumes.
Run ``python benchmarks/bench_bundled.py [--volumes 10]``.
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

from napari_avan.cli import HOLDOUT_SEED
from napari_avan.core.metrics import assignment_metrics, cleft_metrics, precision_recall_f1
from napari_avan.core.synth import synthesize
from napari_avan.models.assign import iter_assign
from napari_avan.models.checkpoint import resolve_model
from napari_avan.models.detect import detect
from napari_avan.models.device import plan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volumes", type=int, default=10)
    parser.add_argument("--shape", default="32,256,256")
    args = parser.parse_args()
    shape = tuple(int(v) for v in args.shape.split(","))
    run = plan()
    detector, avan = resolve_model(None, "cleft-detector"), resolve_model(None, "avan")
    print(f"device: {run.describe()}; {args.volumes} volumes of {shape} per kind")
    for polyadic in (False, True):
        tp = fp = fn = 0
        scores = []
        for k in range(args.volumes):
            seed = HOLDOUT_SEED + 500 * polyadic + k
            s = synthesize(seed=seed, shape=shape, polyadic=polyadic)
            found = detect(detector, s.image, s.voxel_size_nm, run=run)
            m = cleft_metrics(found.clefts, s.clefts)
            tp, fp, fn = tp + m.tp, fp + m.fp, fn + m.fn
            rows = []
            for step in iter_assign(
                avan, s.image, s.clefts, s.segmentation, s.voxel_size_nm, run=run,
                polyadic=polyadic,
            ):  # fmt: skip
                rows += [(a.cleft_id, p, q) for a in step.finished for p, q in a.edges]
            pred = pd.DataFrame(rows, columns=["cleft_id", "pre_id", "post_id"])
            a = assignment_metrics(pred, s.partners, polyadic=polyadic)
            scores.append((a.accuracy, a.f1, a.n_clefts))
        f1 = precision_recall_f1(tp, fp, fn)[2]
        acc, edge_f1, n = (np.array(x) for x in zip(*scores, strict=True))
        kind = "polyadic" if polyadic else "dyadic"
        print(
            f"{kind:<9} cleft F1 {f1:.3f} (tp {tp}, fp {fp}, fn {fn}); assignment on true "
            f"clefts: accuracy {np.average(acc, weights=n):.3f}, edge F1 "
            f"{np.average(edge_f1, weights=n):.3f} ({int(n.sum())} clefts)"
        )


if __name__ == "__main__":
    main()
