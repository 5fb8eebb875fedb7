"""Model folders scored on the synthetic hold-out, each with its own post-processing.

The quick check that a fine-tuned model keeps what the bundled ones do on synthetic data:
``--volumes`` volumes of each kind from the hold-out seeds (9000+ dyadic, 9500+ polyadic;
never used in training or validation), with the settings recorded in each model's
``model.json`` (nothing is chosen here). Detectors (``--detector``): cleft precision,
recall and F1 (IoU >= 0.1) pooled per kind. AVANs (``--avan``): polyadic assignment of the
true clefts, presynaptic accuracy (read from the edges, as ``evaluate``) and the pooled
edge F1 per kind. ``bundled`` names the bundled model. The full comparison with the
pruners and thresholds chosen on validation volumes is ``assignment_table.py``.
``--variant`` picks the generator: ``v1`` (default) or v2 (``v2``, or one annotation style:
``v2-blob``, ``v2-sheet``; volumes of 32 x 256 x 256 voxels, the training default)::

    python benchmarks/holdout.py --detector bundled det_v2 --avan bundled avan_v2
    python benchmarks/holdout.py --detector det_blob --variant v2-blob
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from _machine import cpu_name

from napari_avan.core.metrics import precision_recall_f1
from napari_avan.models.checkpoint import resolve_model
from napari_avan.models.device import plan
from napari_avan.models.scoring import score_avan, score_detector
from napari_avan.models.training_data import HOLDOUT_SEED, SYNTHETIC_VARIANTS, synthetic_sample
from napari_avan.types import Sample

KINDS = {"dyadic": False, "polyadic": True}
VARIANTS = tuple(v for v in SYNTHETIC_VARIANTS if v != "v1+v2")


def _counts(tp: int, fp: int, fn: int) -> str:
    p, r, f = precision_recall_f1(tp, fp, fn)
    return f"precision {p:.3f}, recall {r:.3f}, F1 {f:.3f} (tp/fp/fn {tp}/{fp}/{fn})"


def score_cleft_detector(model: Any, volumes: list[Sample], run: Any) -> str:
    tp = fp = fn = 0
    for s in volumes:
        m = score_detector(model, s.image, s.clefts, s.voxel_size_nm, run=run)
        tp, fp, fn = tp + m["cleft_tp"], fp + m["cleft_fp"], fn + m["cleft_fn"]
    return "clefts: " + _counts(tp, fp, fn)


def score_assigner(model: Any, volumes: list[Sample], run: Any) -> str:
    tp = fp = fn = right = clefts = 0
    for s in volumes:
        m = score_avan(model, s.image, s.clefts, s.segmentation, s.partners, s.voxel_size_nm,
                       run=run)  # fmt: skip
        tp, fp, fn = tp + m["edge_tp"], fp + m["edge_fp"], fn + m["edge_fn"]
        right += round(m["pre_accuracy"] * m["assigned_clefts"])
        clefts += m["assigned_clefts"]
    return f"presynaptic accuracy {right / clefts:.3f} of {clefts} clefts; edges: " + _counts(
        tp, fp, fn
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detector", nargs="*", default=[], help="folders or 'bundled'")
    parser.add_argument("--avan", nargs="*", default=[], help="folders or 'bundled'")
    parser.add_argument("--volumes", type=int, default=10, help="hold-out volumes per kind")
    parser.add_argument("--variant", choices=VARIANTS, default="v1",
                        help="synthetic generator of the hold-out (default v1)")  # fmt: skip
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    args = parser.parse_args()
    if not args.detector and not args.avan:
        parser.error("name at least one --detector or --avan model")
    run = plan(args.device)
    print(f"machine: {cpu_name()}; device {run.describe()}; {args.volumes} {args.variant} "
          "volumes per kind")  # fmt: skip
    volumes = {
        kind: [
            synthetic_sample(HOLDOUT_SEED + 500 * poly + k, poly, variant=args.variant)
            for k in range(args.volumes)
        ]
        for kind, poly in KINDS.items()
    }
    jobs = [("cleft-detector", spec, score_cleft_detector) for spec in args.detector]
    jobs += [("avan", spec, score_assigner) for spec in args.avan]
    for task, spec, score in jobs:
        model = resolve_model(None if spec == "bundled" else spec, task)
        post = model.metadata.get("postprocess") or {}
        settings = {k: post[k] for k in ("threshold", "min_volume_nm3", "pre_threshold",
                                         "post_threshold") if k in post}  # fmt: skip
        print(f"{task} {spec} {settings}")
        for kind in KINDS:
            started = time.perf_counter()
            line = score(model, volumes[kind], run)
            print(f"  {kind}: {line} [{time.perf_counter() - started:.0f} s]", flush=True)


if __name__ == "__main__":
    main()
