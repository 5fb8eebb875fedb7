"""Zero-shot figures of the cleft detector and AVAN on real EM (the VNC ssTEM crop).

The bundled models were trained on synthetic EM only; this measures what they do on the
real Drosophila larval VNC crop (``../shared/data/vnc_stack1_left`` beside the repository:
ssTEM, 20 x 1024 x 400 voxels of 50 x 4.6 x 4.6 nm, 30 human-annotated synapse masks,
derived segmentation and partners; see its README) without any fine-tuning. These figures
are what the issue "models that work on real EM out of the box" is judged on; its
zero-shot targets are cleft recall >= 0.6 at precision >= 0.5 (any overlap) and AVAN
presynaptic accuracy >= 0.5.

Measured (each model with its own post-processing, recorded in its metadata):

- detector: cleft precision, recall and F1 with tp/fp/fn, from one detection scored twice:
  a match needs IoU >= 0.1 (the figure of ``napari-avan evaluate``), or any shared voxel;
  the threshold and minimum size used;
- the CREMI synaptic cleft metric of the detection: ADF, ADGT, their mean (the CREMI
  score, nm, lower is better) and the voxels farther than 200 nm (false positives and
  false negatives) (:func:`napari_avan.core.cremi.cleft_distances`);
- AVAN on the true clefts with the true (derived) partners: presynaptic accuracy and the
  polyadic edge F1 (as :func:`napari_avan.models.scoring.score_avan`), and the CREMI
  partner F-score of the same predicted edges, the predicted clefts there being the true
  cleft labels (:func:`napari_avan.core.cremi.partner_fscore`).

Regions (``--region``): ``all`` (default), the whole crop, since these models saw none of
it; ``val``, the part y >= 700, scoring only the clefts lying wholly there and ignoring the
ones crossing y = 700 (predicted clefts touching them are dropped), the rule of the
bootstrap benchmark's validation figures, so that a model fine-tuned on y < 700 with
``examples/vnc_recipe.py`` can be put beside the bundled ones.

Run::

    python benchmarks/real_em.py --json /tmp/real_em_all.json --plot /tmp/real_em_all.png
    python benchmarks/real_em.py --region val --json /tmp/real_em_val.json \\
        --plot /tmp/real_em_val.png
    python benchmarks/real_em.py --region val --detector vnc_recipe_out/detector \\
        --avan vnc_recipe_out/avan
    python benchmarks/real_em.py --adapt-norm

``--adapt-norm`` re-estimates the detector's BatchNorm statistics on the crop before
detecting (:func:`napari_avan.models.inference.adapt_batchnorm`, AdaBN), with the model's
own threshold and minimum size, which were chosen on synthetic volumes without it.

Figures print with the CPU model and device; ``--json`` writes them, ``--plot`` draws a few
z-sections (those with the most true cleft voxels): the EM in grey, the true clefts
outlined, the predicted clefts filled (matplotlib). The data's licence (CC BY-NC-SA 3.0)
allows such figures with the citation; never copy the data, or weights trained on it, into
the repository.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import cpu_name
from bench_bootstrap import REPO, VNC, Truth, vnc_truth

from napari_avan.core.metrics import CleftMetrics, plain_json
from napari_avan.types import AvanInputError

#: The issue's zero-shot targets (any-overlap matching for the clefts).
TARGET_RECALL, TARGET_PRECISION, TARGET_PRE_ACCURACY = 0.6, 0.5, 0.5
#: z-sections drawn by ``--plot``.
PLOT_SECTIONS = 4
CITATION = (
    "Data: Gerhard et al. 2013, Drosophila larval VNC ssTEM, doi:10.6084/m9.figshare.856713, "
    "CC BY-NC-SA 3.0"
)
NO_MATPLOTLIB = "--plot needs matplotlib, which is not installed: pip install matplotlib"


@dataclass
class Region:
    """The part of the crop scored: volumes, scored true clefts, ignored crossing clefts."""

    name: str
    describe: str
    y0: int  # first y of the part in the crop
    image: np.ndarray
    segmentation: np.ndarray
    clefts: np.ndarray  # the scored true clefts, others 0
    ignored: np.ndarray | None  # mask of true clefts crossing the split (not scored)
    partners: pd.DataFrame  # partner rows of the scored clefts
    ids: list[int]
    ignored_ids: list[int]


def region_of(truth: Truth, name: str) -> Region:
    """The whole crop (``all``) or the part y >= split (``val``) with its scored clefts."""
    lo = 0 if name == "all" else truth.split
    part = truth.part_from(lo)
    ignored_ids = sorted(int(i) for i in np.unique(truth.clefts[:, lo:][part.crossing]))
    describe = (
        f"the whole crop {tuple(truth.clefts.shape)}"
        if name == "all"
        else f"y >= {lo} {tuple(part.clefts.shape)}, clefts lying wholly there; "
        f"{len(ignored_ids)} crossing y = {lo} ignored"
    )
    return Region(
        name, describe, lo, part.image, part.segmentation, part.clefts,
        part.crossing if ignored_ids else None, part.partners, part.ids, ignored_ids,
    )  # fmt: skip


def load(spec: str, task: str) -> Any:
    """A model by bundled name or folder, or a clear error."""
    from napari_avan.models.checkpoint import resolve_model

    try:
        return resolve_model(spec, task)
    except (AvanInputError, OSError, RuntimeError) as err:
        print(f"error: the {task} model {spec!r} does not load: {err}", file=sys.stderr)
        raise SystemExit(2) from err


def _cleft_figures(m: CleftMetrics) -> dict[str, Any]:
    return {"precision": m.precision, "recall": m.recall, "f1": m.f1, "tp": m.tp,
            "fp": m.fp, "fn": m.fn, "n_pred": m.n_pred, "n_true": m.n_true,
            "voxel_f1": m.voxel_f1}  # fmt: skip


def score_detection(
    model: Any,
    region: Region,
    voxel: tuple[float, float, float],
    run: Any,
    adapt_norm: bool = False,
) -> tuple[dict[str, Any], np.ndarray, dict[str, float]]:
    """Detect once, score at IoU >= 0.1 and at any overlap, and the CREMI cleft distances.
    ``adapt_norm``: the detector's BatchNorm statistics re-estimated on the region first."""
    from napari_avan.core.clefts import known_clefts
    from napari_avan.core.cremi import cleft_distances
    from napari_avan.core.metrics import DEFAULT_IOU_THRESHOLD, cleft_metrics
    from napari_avan.models.detect import detect, min_size_voxels

    seconds: dict[str, float] = {}
    started = time.perf_counter()
    detection = detect(model, region.image, voxel, run=run, adapt_norm=adapt_norm)
    found = detection.clefts
    seconds["detect"] = time.perf_counter() - started
    started = time.perf_counter()
    kept = known_clefts(found, region.ignored)
    at_iou = cleft_metrics(kept, region.clefts, iou_threshold=DEFAULT_IOU_THRESHOLD)
    any_overlap = cleft_metrics(kept, region.clefts, any_overlap=True)
    seconds["score_clefts"] = time.perf_counter() - started
    started = time.perf_counter()
    cremi = cleft_distances(kept, region.clefts, voxel)
    seconds["cremi_distances"] = time.perf_counter() - started
    threshold = float((model.metadata.get("postprocess") or {}).get("threshold", 0.5))
    figures = {
        "adapt_norm": adapt_norm,
        "threshold": threshold,
        "min_size_voxels": min_size_voxels(model, voxel),
        "n_found": int(np.count_nonzero(np.unique(found))),
        "prob_max": float(detection.prob.max()),
        "prob_p999": float(np.quantile(detection.prob, 0.999)),
        "voxels_above_threshold": int(np.count_nonzero(detection.prob > threshold)),
        "dropped_touching_ignored": int(np.setdiff1d(np.unique(found), np.unique(kept)).size),
        "iou_threshold": DEFAULT_IOU_THRESHOLD,
        "at_iou": _cleft_figures(at_iou),
        "any_overlap": _cleft_figures(any_overlap),
        "cremi": cremi.to_dict(),
    }
    return figures, kept, seconds


def score_assignment(
    model: Any, region: Region, voxel: tuple[float, float, float], run: Any
) -> dict[str, Any]:
    """AVAN on the true clefts: the figures of ``score_avan`` and the CREMI partner F-score
    of the same edges (one assignment; ``score_avan`` does not return its edges).

    ``pre_accuracy`` (the target's figure) is read from the edges, so a cleft whose
    presynaptic partner is named but whose candidates all stay under the post threshold
    counts as wrong; ``named_pre_accuracy`` reads the named presynaptic partners
    themselves (the clefts whose set of them equals the true set)."""
    from napari_avan.core.cremi import partner_fscore
    from napari_avan.core.metrics import assignment_metrics
    from napari_avan.models.assign import iter_assign

    ids = sorted(set(int(c) for c in region.partners["cleft_id"]))
    true_pre = region.partners.groupby("cleft_id")["pre_id"].agg(lambda s: set(map(int, s)))
    rows, named = [], 0
    for step in iter_assign(model, region.image, region.clefts, region.segmentation, voxel,
                            cleft_ids=ids, run=run, polyadic=True):  # fmt: skip
        rows += [(a.cleft_id, p, q) for a in step.finished for p, q in a.edges]
        named += sum(set(a.pre_ids) == true_pre[a.cleft_id] for a in step.finished)
    pred = pd.DataFrame(rows, columns=["cleft_id", "pre_id", "post_id"], dtype=np.int64)
    m = assignment_metrics(pred, region.partners, polyadic=True)
    cremi = partner_fscore(region.clefts, pred, region.clefts, region.partners, voxel)
    return {
        "assigned_clefts": m.n_clefts, "pre_accuracy": m.pre_accuracy,
        "named_pre_accuracy": named / len(ids) if ids else None,
        "edge_precision": m.precision, "edge_recall": m.recall, "edge_f1": m.f1,
        "edge_tp": m.tp, "edge_fp": m.fp, "edge_fn": m.fn, "cremi_partner": cremi.to_dict(),
    }  # fmt: skip


def targets(result: dict[str, Any]) -> dict[str, Any]:
    """The issue's zero-shot targets and whether these figures meet them."""
    anyo = result["detector"]["any_overlap"]
    pre = result["avan"]["pre_accuracy"]
    return {
        "cleft": f"recall >= {TARGET_RECALL} at precision >= {TARGET_PRECISION} (any overlap)",
        "cleft_met": bool(
            anyo["recall"] >= TARGET_RECALL and anyo["precision"] >= TARGET_PRECISION
        ),
        "avan": f"presynaptic accuracy >= {TARGET_PRE_ACCURACY}",
        "avan_met": bool(pre >= TARGET_PRE_ACCURACY),
    }


def _prf(m: dict[str, Any]) -> str:
    return (f"precision {m['precision']:.3f}, recall {m['recall']:.3f}, F1 {m['f1']:.3f} "
            f"(tp/fp/fn {m['tp']}/{m['fp']}/{m['fn']}; {m['n_pred']} predicted)")  # fmt: skip


def _nm(v: float | None) -> str:
    return "inf" if v is None else f"{v:.1f} nm"


def report(result: dict[str, Any]) -> None:
    """Print the figures."""
    det, av, s = result["detector"], result["avan"], result["seconds"]
    c, cp = det["cremi"], av["cremi_partner"]
    print(("BatchNorm statistics re-estimated on the crop (--adapt-norm); "
           if det.get("adapt_norm") else "")
          + f"detector post-processing: threshold {det['threshold']:.2f}, min size "
          f"{det['min_size_voxels']} voxels; probability max {det['prob_max']:.3f}, "
          f"99.9th percentile {det['prob_p999']:.3f}, {det['voxels_above_threshold']} voxels "
          f"above the threshold; {det['n_found']} clefts found"
          + (f", {det['dropped_touching_ignored']} dropped (touching an ignored cleft)"
             if result["region"] == "val" else ""))  # fmt: skip
    print(f"  clefts, IoU >= {det['iou_threshold']:g}: {_prf(det['at_iou'])}")
    print(f"  clefts, any overlap: {_prf(det['any_overlap'])}")
    print(f"  CREMI clefts: ADF {_nm(c['adf'])}, ADGT {_nm(c['adgt'])}, CREMI score "
          f"{_nm(c['cremi_score'])}; FP voxels {c['fp_voxels']}, FN voxels {c['fn_voxels']} "
          f"(> {c['cutoff_nm']:g} nm; of {c['n_pred_voxels']} predicted, "
          f"{c['n_true_voxels']} true)")  # fmt: skip
    print(f"AVAN on the {av['assigned_clefts']} true clefts with their partners: presynaptic "
          f"accuracy {av['pre_accuracy']:.3f}, polyadic edge F1 {av['edge_f1']:.3f} (tp/fp/fn "
          f"{av['edge_tp']}/{av['edge_fp']}/{av['edge_fn']}); CREMI partner F-score "
          f"{cp['fscore']:.3f} (tp/fp/fn {cp['tp']}/{cp['fp']}/{cp['fn']}); presynaptic "
          f"partner named right (whether or not a postsynaptic one passes) "
          f"{av['named_pre_accuracy']:.3f}")  # fmt: skip
    print("seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in s.items()))
    t = result["targets"]
    print(f"zero-shot targets: cleft {t['cleft']}: {'met' if t['cleft_met'] else 'NOT met'}; "
          f"AVAN {t['avan']}: {'met' if t['avan_met'] else 'NOT met'}")  # fmt: skip


def _short(spec: str) -> str:
    return Path(spec).name if Path(spec).exists() else spec


def plot(result: dict[str, Any], region: Region, pred: np.ndarray, path: Path) -> None:
    """A few z-sections (most true cleft voxels): EM grey, true clefts outlined, predicted
    clefts filled; titled with the figures."""
    try:
        import matplotlib
    except ImportError as err:
        raise SystemExit(NO_MATPLOTLIB) from err
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    true_colour, pred_colour, ignored_colour = "#ffd400", "#00e5ff", "#ff4fd8"
    per_z = np.count_nonzero(region.clefts, axis=(1, 2))
    sections = sorted(int(z) for z in np.argsort(-per_z, kind="stable")[:PLOT_SECTIONS])
    _, height, width = region.image.shape
    panel_w = 4.2
    fig, axes = plt.subplots(1, len(sections), squeeze=False,
                             figsize=(panel_w * len(sections),
                                      panel_w * height / width + 1.9))  # fmt: skip
    xs, ys = np.arange(width), region.y0 + np.arange(height)
    extent = (-0.5, width - 0.5, region.y0 + height - 0.5, region.y0 - 0.5)
    fill = ListedColormap([pred_colour])
    for ax, z in zip(axes[0], sections, strict=True):
        ax.imshow(region.image[z], cmap="gray", extent=extent, interpolation="nearest")
        mask = pred[z] > 0
        if mask.any():
            ax.imshow(np.ma.masked_where(~mask, np.ones(mask.shape)), cmap=fill, alpha=0.45,
                      vmin=0, vmax=1, extent=extent, interpolation="nearest")  # fmt: skip
        for labels, colour, style in ((region.clefts[z], true_colour, "solid"),
                                      (region.ignored[z] if region.ignored is not None
                                       else None, ignored_colour, "dashed")):  # fmt: skip
            if labels is not None and np.any(labels):
                ax.contour(xs, ys, (np.asarray(labels) > 0).astype(float), levels=[0.5],
                           colors=colour, linewidths=1.0, linestyles=style)  # fmt: skip
        ax.set_title(f"z = {z} ({int(per_z[z])} true cleft voxels)", fontsize=9)
        ax.tick_params(labelsize=7)
    handles = [Line2D([], [], color=true_colour, lw=1.5, label="true clefts (outline)"),
               Patch(color=pred_colour, alpha=0.45, label="predicted clefts")]  # fmt: skip
    if region.ignored is not None:
        handles.append(Line2D([], [], color=ignored_colour, lw=1.5, ls="--",
                              label=f"crossing y = {region.y0}: ignored"))  # fmt: skip
    fig.legend(handles=handles, loc="lower left", ncol=len(handles), fontsize=8, frameon=False)
    det, av = result["detector"], result["avan"]
    a, o = det["at_iou"], det["any_overlap"]
    score = det["cremi"]["cremi_score"]
    names = [_short(result["models"][k]["spec"]) for k in ("detector", "avan")]
    fig.suptitle(
        f"{names[0]} + {names[1]} zero-shot on real EM, {result['data']} region {result['region']} "
        f"({result['true_clefts_scored']} true clefts)\n"
        f"clefts IoU >= {det['iou_threshold']:g}: P {a['precision']:.2f} R {a['recall']:.2f} "
        f"F1 {a['f1']:.2f} ({a['tp']}/{a['fp']}/{a['fn']}); any overlap: P {o['precision']:.2f} "
        f"R {o['recall']:.2f} F1 {o['f1']:.2f} ({o['tp']}/{o['fp']}/{o['fn']}); CREMI score "
        f"{_nm(score)}\nAVAN on the true clefts: presynaptic accuracy {av['pre_accuracy']:.2f}, "
        f"polyadic edge F1 {av['edge_f1']:.2f}, CREMI partner F-score "
        f"{av['cremi_partner']['fscore']:.2f}",
        fontsize=10,
    )
    fig.text(0.99, 0.01, CITATION, ha="right", va="bottom", fontsize=7, color="0.35")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(path, dpi=72)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detector", default="cleft-detector",
                        help="bundled name or model folder (default: cleft-detector)")  # fmt: skip
    parser.add_argument("--avan", default="avan",
                        help="bundled name or model folder (default: avan)")  # fmt: skip
    parser.add_argument("--region", choices=["all", "val"], default="all",
                        help="all: the whole crop; val: y >= 700, clefts wholly there")  # fmt: skip
    parser.add_argument("--adapt-norm", action="store_true",
                        help="re-estimate the detector's BatchNorm statistics on the crop "
                             "first (AdaBN; no labels used)")  # fmt: skip
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--plot", type=Path, help="draw a few z-sections here (PNG)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    args = parser.parse_args()
    if args.plot and importlib.util.find_spec("matplotlib") is None:
        print(NO_MATPLOTLIB, file=sys.stderr)
        return 2
    if not (VNC / "vnc_left.npz").is_file() or not (VNC / "partners.csv").is_file():
        print(f"error: the real EM data is not at {VNC}: it is expected in "
              f"../shared/data/vnc_stack1_left relative to the repository root ({REPO}), "
              "with vnc_left.npz and partners.csv", file=sys.stderr)  # fmt: skip
        return 2
    from napari_avan.models.device import plan

    started_all = time.perf_counter()
    seconds: dict[str, float] = {}
    detector, avan = load(args.detector, "cleft-detector"), load(args.avan, "avan")
    seconds["load_models"] = time.perf_counter() - started_all
    run = plan(args.device)
    print(f"machine: {cpu_name()}; device {run.describe()}")
    print(f"detector: {args.detector} ({detector.path}); AVAN: {args.avan} ({avan.path})")
    started = time.perf_counter()
    truth = vnc_truth()
    region = region_of(truth, args.region)
    seconds["load_data"] = time.perf_counter() - started
    voxel = truth.voxel
    print(f"{truth.name}, region {args.region}: {region.describe}; {len(region.ids)} true "
          f"clefts scored; voxel {voxel} nm")  # fmt: skip
    det, pred, det_seconds = score_detection(detector, region, voxel, run, args.adapt_norm)
    seconds.update(det_seconds)
    started = time.perf_counter()
    av = score_assignment(avan, region, voxel, run)
    seconds["avan"] = time.perf_counter() - started
    seconds["total"] = time.perf_counter() - started_all
    result: dict[str, Any] = {
        "data": truth.name, "region": args.region, "region_description": region.describe,
        "shape": list(region.image.shape), "voxel_size_nm": list(voxel),
        "cpu": cpu_name(), "device": run.describe(),
        "models": {"detector": {"spec": args.detector, "path": str(detector.path)},
                   "avan": {"spec": args.avan, "path": str(avan.path)}},
        "true_clefts_scored": len(region.ids), "scored_cleft_ids": region.ids,
        "ignored_crossing_cleft_ids": region.ignored_ids,
        "detector": det, "avan": av, "seconds": {k: round(v, 2) for k, v in seconds.items()},
    }  # fmt: skip
    result["targets"] = targets(result)
    result = plain_json(result)
    report(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"figures written to {args.json}")
    if args.plot:
        plot(result, region, pred, args.plot)
        print(f"sections drawn in {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
