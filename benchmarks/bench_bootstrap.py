"""Bootstrapped rounds with a simulated proofreader: how much each round of review buys.

The proofreader decides from the ground truth. Each round it works through the review
queue of a proofreading session (most uncertain first, or in random order: the second arm)
inside the review region: a predicted cleft that overlaps a true cleft not yet confirmed is
accepted, its partners first set to the true ones when AVAN's differ; any other is
rejected. It stops once it has confirmed its quota of true clefts (or reviewed twice the
quota), then paints the missed true clefts of the review region (a re-seed from the true
mask, partners set) until the quota is met. Then a round runs (:mod:`napari_avan.models.
bootstrap`: fine-tune both models for ``--minutes``, detect and assign again). After each
round the session's models are scored on a validation region that no review ever touched,
against its ground truth: cleft F1 (IoU >= 0.1), AVAN's presynaptic accuracy and polyadic
edge F1 on the true clefts.

Arms (``--data``):

- ``synthetic``: a synthetic volume (hold-out seed), review y < 2/3 of it, validate on the
  rest; the starting detector is deliberately weak (trained from scratch for
  ``--weak-steps`` steps). The value of the ranking: errors found (rejections and partner
  fixes) in the first 10 reviews of the whole queue, uncertainty order against random
  order, over ``--ranking-seeds`` larger volumes (``--ranking-shape``; with the small one
  both orders would review nearly the whole queue).
- ``vnc``: the real VNC crop (``../shared/data/vnc_stack1_left``, ssTEM): review y < 700,
  validate y >= 700 (the 10 clefts wholly there; the 2 crossing y = 700 are never
  reviewed and predictions touching them are not counted), from the bundled models; the
  quota is a third of the 18 clefts wholly in y < 700 per round.

Run ``python benchmarks/bench_bootstrap.py --data vnc --rounds 3 --minutes 10`` and
``python benchmarks/bench_bootstrap.py --data synthetic``. Figures print per round with the
CPU model; ``--json`` writes them, ``--plot`` draws them (matplotlib). Weights trained on
the VNC data stay under ``--work`` (default ``bootstrap_out/``, git-ignored): the data's
licence forbids shipping them.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import cpu_name

from napari_avan.core.geometry import label_statistics
from napari_avan.core.session import Session, record_from_assignment
from napari_avan.io.export import keep_session_volume
from napari_avan.models.bootstrap import apply_round, iter_round, score_box
from napari_avan.models.checkpoint import resolve_model
from napari_avan.models.device import plan

REPO = Path(__file__).resolve().parents[1]
VNC = REPO.parent / "shared" / "data" / "vnc_stack1_left"
VNC_VOXEL = (50.0, 4.6, 4.6)
FIRST_REVIEWS = 10


@dataclass
class Truth:
    """A volume with its truth, cut along y into a review region and a validation region."""

    name: str
    image: np.ndarray
    segmentation: np.ndarray
    clefts: np.ndarray
    partners: pd.DataFrame
    voxel: tuple[float, float, float]
    split: int  # review y < split, validate y >= split

    def ids_in(self, lo: int, hi: int) -> list[int]:
        """True clefts lying wholly in lo <= y < hi."""
        stats = label_statistics(self.clefts)
        return [
            int(i)
            for i, b, e in zip(stats.ids, stats.bbox_begin, stats.bbox_end, strict=True)
            if b[1] >= lo and e[1] <= hi
        ]

    def part_from(self, lo: int) -> Part:
        """The volumes from y = lo on, scoring the clefts lying wholly there: the clefts
        crossing y = lo are taken out of the labels and marked as of unknown truth."""
        ids = self.ids_in(lo, self.clefts.shape[1])
        window = (slice(None), slice(lo, None), slice(None))
        clefts = self.clefts[window]
        crossing = (clefts > 0) & ~np.isin(clefts, ids)
        partners = self.partners[self.partners["cleft_id"].isin(ids)].reset_index(drop=True)
        return Part(self.image[window], self.segmentation[window],
                    np.where(crossing, 0, clefts).astype(clefts.dtype), crossing, partners,
                    ids)  # fmt: skip


@dataclass
class Part:
    """A part of a :class:`Truth` (see :meth:`Truth.part_from`)."""

    image: np.ndarray
    segmentation: np.ndarray
    clefts: np.ndarray  # the clefts lying wholly in the part
    crossing: np.ndarray  # voxels of the clefts crossing into the part (unknown truth)
    partners: pd.DataFrame  # rows of the clefts lying wholly in the part
    ids: list[int]


def vnc_truth() -> Truth:
    from napari_avan.io import read_partners

    with np.load(VNC / "vnc_left.npz") as data:
        image, seg, clefts = data["image"], data["segmentation"], data["clefts"]
    return Truth("vnc_stack1_left", image, seg, clefts, read_partners(VNC / "partners.csv"),
                 VNC_VOXEL, 700)  # fmt: skip


def synthetic_truth(seed: int, shape: tuple[int, int, int]) -> Truth:
    from napari_avan.core.synth import synthesize

    s = synthesize(seed=seed, shape=shape)
    return Truth(f"synthetic seed {seed}", s.image, s.segmentation, s.clefts, s.partners,
                 tuple(s.voxel_size_nm), shape[1] * 2 // 3)  # type: ignore[arg-type]  # fmt: skip


def true_partners(truth: Truth, cleft: int) -> tuple[list[int], list[int]]:
    rows = truth.partners[truth.partners["cleft_id"] == cleft]
    return (list(dict.fromkeys(int(v) for v in rows["pre_id"])),
            list(dict.fromkeys(int(v) for v in rows["post_id"])))  # fmt: skip


def weak_detector(truth_seed: int, steps: int, work: Path, run: Any) -> Path:
    """A cleft detector trained from scratch for a few steps on another synthetic volume."""
    from napari_avan.models.train import TrainSettings, iter_train, prepare_volume
    from napari_avan.models.training_data import synthetic_groups

    folder = work / f"weak-detector-{steps}"
    if (folder / "model.json").is_file():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    train_g, val_g = (
        synthetic_groups(1, False, truth_seed, (32, 256, 256)),
        synthetic_groups(1, False, truth_seed + 1, (32, 256, 256)),
    )
    working = (40.0, 8.0, 8.0)

    def prepared(groups: Any) -> Any:
        return [prepare_volume(g.image, g.segmentation, g.clefts, g.partners, g.voxel_size_nm,
                               working, g.name) for g in groups]  # fmt: skip

    settings = TrainSettings("clefts", steps=steps, val_every=steps, voxel_size_nm=working)
    for _ in iter_train(settings, prepared(train_g), prepared(val_g), folder, run=run):
        pass
    return folder


def start_session(truth: Truth, folder: Path, detector: str, avan: str, run: Any) -> Session:
    """A session of the detector's clefts over the whole volume, assigned by AVAN."""
    from napari_avan.models.assign import iter_assign
    from napari_avan.models.detect import detect

    det = detect(resolve_model(detector, "cleft-detector"), truth.image, truth.voxel, run=run)
    records = {}
    if det.clefts.any():
        model = resolve_model(avan, "avan")
        for step in iter_assign(model, truth.image, det.clefts, truth.segmentation,
                                truth.voxel, run=run, polyadic=True):  # fmt: skip
            records.update({int(a.cleft_id): record_from_assignment(a) for a in step.finished})
    session = Session.create(folder, det.clefts, truth.voxel, records=records,
                             probability=det.prob,
                             models={"detector": detector, "avan": avan})  # fmt: skip
    keep_session_volume(session, "image", truth.image)
    keep_session_volume(session, "segmentation", truth.segmentation)
    keep_session_volume(session, "prob", det.prob)
    return session


def _matches(session: Session, truth: Truth, cleft: int) -> list[int]:
    """True clefts a session cleft overlaps with IoU >= 0.1, best first."""
    box = session.records[cleft].box
    window = tuple(slice(box[i], box[i + 3]) for i in range(3))
    mine = session.labels[window] == cleft
    true = truth.clefts[window][mine]
    found = []
    for t, overlap in zip(*np.unique(true[true > 0], return_counts=True), strict=True):
        union = int(mine.sum()) + int((truth.clefts == t).sum()) - int(overlap)
        if overlap / union >= 0.1:
            found.append((overlap / union, int(t)))
    return [t for _, t in sorted(found, reverse=True)]


def review(
    session: Session, truth: Truth, quota: int, order: str, rng: np.random.Generator
) -> dict[str, Any]:
    """One round of the simulated proofreader (see the module docstring); what it did."""
    review_ids = set(truth.ids_in(0, truth.split))
    confirmed = {int(t) for c, r in session.records.items() if r.status == "accepted"
                 for t in _matches(session, truth, c)}  # fmt: skip
    queue = session.review_queue("uncertainty")
    queue = [
        c for c in queue if session.records[c].box and session.records[c].box[4] <= truth.split
    ]
    if order == "random":
        queue = [queue[i] for i in rng.permutation(len(queue))]
    done = {"reviewed": 0, "accepted": 0, "rejected": 0, "partner_fixes": 0, "reseeded": 0,
            "errors_first": 0}  # fmt: skip
    new = 0
    for cleft in queue:
        if new >= quota or done["reviewed"] >= 2 * quota:
            break
        match = [t for t in _matches(session, truth, cleft) if t in review_ids]
        error = False
        if match and match[0] not in confirmed:
            pre, post = true_partners(truth, match[0])
            record = session.records[cleft]
            if (sorted(record.pre), sorted(record.post)) != (sorted(pre), sorted(post)):
                session.apply({"action": "set_partners", "cleft": cleft, "pre": pre, "post": post})
                done["partner_fixes"] += 1
                error = True
            session.apply({"action": "accept", "cleft": cleft})
            confirmed.add(match[0])
            done["accepted"] += 1
            new += 1
        else:
            session.apply({"action": "reject", "cleft": cleft})
            done["rejected"] += 1
            error = True
        if done["reviewed"] < FIRST_REVIEWS:
            done["errors_first"] += int(error)
        done["reviewed"] += 1
    missed = [t for t in sorted(review_ids) if t not in confirmed]
    for t in [missed[i] for i in rng.permutation(len(missed))]:
        if new >= quota:
            break
        voxels = np.argwhere((truth.clefts == t) & (session.labels == 0))
        if not len(voxels):
            continue
        effect = session.apply({"action": "reseed", "voxels": voxels.tolist()})
        cleft = next(c for c, r in effect.after.items() if r is not None)
        pre, post = true_partners(truth, t)
        session.apply({"action": "set_partners", "cleft": cleft, "pre": pre, "post": post})
        session.apply({"action": "accept", "cleft": cleft})
        confirmed.add(t)
        done["reseeded"] += 1
        new += 1
    done["confirmed_total"] = len(confirmed & review_ids)
    return done


def validation_figures(session: Session, truth: Truth, run: Any) -> dict[str, Any]:
    """The session's current models on the never-reviewed region y >= split."""
    part = truth.part_from(truth.split)
    models = session.meta.get("models") or {}
    return score_box(
        resolve_model(models.get("detector") or "cleft-detector", "cleft-detector"),
        resolve_model(models.get("avan") or "avan", "avan"),
        part.image, part.segmentation, part.clefts, part.partners, truth.voxel,
        unknown=part.crossing, run=run,
    )  # fmt: skip


def run_arm(
    truth: Truth, work: Path, order: str, args: argparse.Namespace, detector: str, run: Any
) -> list[dict[str, Any]]:
    """A session from ``detector`` and the bundled AVAN, then ``--rounds`` rounds."""
    folder = work / f"{truth.name.replace(' ', '-')}-{order}"
    shutil.rmtree(folder, ignore_errors=True)
    session = start_session(truth, folder / "session", detector, "avan", run)
    rng = np.random.default_rng(args.seed)
    quota = args.quota or math.ceil(len(truth.ids_in(0, truth.split)) / 3)
    rows = []
    before = validation_figures(session, truth, run)
    rows.append({"round": 0, "validation": before})
    print(f"  [{order}] round 0 (start): {_fmt(before)}", flush=True)
    for number in range(1, args.rounds + 1):
        started = time.perf_counter()
        did = review(session, truth, quota, order, rng)
        plan_ = None
        for progress in iter_round(session, folder / f"round{number}", minutes=args.minutes,
                                   run=run, seed=args.seed, val_every=args.val_every):  # fmt: skip
            plan_ = progress.plan or plan_
        assert plan_ is not None
        record = apply_round(session, plan_)
        figures = validation_figures(session, truth, run)
        row = {
            "round": number,
            "review": did,
            "validation": figures,
            "session_box": record["metrics"],
            "steps": record["steps"],
            "train_minutes": record["minutes"],
            "counts": record["counts"],
            "validation_box": record["validation_box"],
            "wall_minutes": round((time.perf_counter() - started) / 60, 2),
        }
        rows.append(row)
        print(f"  [{order}] round {number}: reviewed {did['reviewed']} (rejected "
              f"{did['rejected']}, partner fixes {did['partner_fixes']}), re-seeded "
              f"{did['reseeded']}, confirmed {did['confirmed_total']}; steps {record['steps']}; "
              f"validation {_fmt(figures)}; {row['wall_minutes']} min", flush=True)  # fmt: skip
    return rows


def _fmt(m: dict[str, Any]) -> str:
    def f(v: Any) -> str:
        return "n/a" if v is None else f"{v:.3f}"

    return (f"cleft F1 {f(m['cleft_f1'])} ({m['cleft_tp']}/{m['cleft_fp']}/{m['cleft_fn']}), "
            f"pre accuracy {f(m['pre_accuracy'])}, edge F1 {f(m['edge_f1'])}")  # fmt: skip


def ranking(args: argparse.Namespace, detector: str, work: Path, run: Any) -> dict[str, Any]:
    """Errors found in the first 10 reviews, uncertainty against random order, per seed."""
    out: dict[str, Any] = {"seeds": [], "uncertainty": [], "random": []}
    for k in range(args.ranking_seeds):
        seed = args.volume_seed + k
        truth = synthetic_truth(seed, args.ranking_shape)
        truth.split = truth.clefts.shape[1]  # the whole volume is reviewed here
        for order in ("uncertainty", "random"):
            folder = work / f"ranking-{seed}-{order}"
            shutil.rmtree(folder, ignore_errors=True)
            session = start_session(truth, folder, detector, "avan", run)
            did = review(session, truth, FIRST_REVIEWS, order, np.random.default_rng(seed))
            out[order].append(did["errors_first"])
            shutil.rmtree(folder, ignore_errors=True)
        out["seeds"].append(seed)
        print(f"  seed {seed}: errors in the first {FIRST_REVIEWS} reviews: uncertainty "
              f"{out['uncertainty'][-1]}, random {out['random'][-1]}", flush=True)  # fmt: skip
    u, r = float(np.mean(out["uncertainty"])), float(np.mean(out["random"]))
    out["mean_uncertainty"], out["mean_random"] = u, r
    out["ratio"] = u / r if r else math.inf
    print(f"  mean: uncertainty {u:.2f}, random {r:.2f}, ratio {out['ratio']:.2f}")
    return out


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = result["arms"]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    keys = ("cleft_f1", "pre_accuracy", "edge_f1")
    titles = ("cleft F1", "presynaptic accuracy", "polyadic edge F1")
    for ax, key, title in zip(axes, keys, titles, strict=True):
        for order, rows in arms.items():
            xs = [r["round"] for r in rows]
            ys = [np.nan if r["validation"][key] is None else r["validation"][key] for r in rows]
            ax.plot(xs, ys, marker="o", label=f"{order} order")
        ax.set(xlabel="round", title=title, ylim=(0, 1.02), xticks=xs)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
    fig.suptitle(
        f"Bootstrapped rounds on {result['data']}: figures on the never-reviewed validation "
        f"region ({result['minutes']:g} min of training per round)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=["synthetic", "vnc"], default="synthetic")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--minutes", type=float, default=None,
                        help="training minutes per round (default: 10 vnc, 2 synth)")  # fmt: skip
    parser.add_argument("--quota", type=int, default=0,
                        help="true clefts confirmed per round (default: a third of the "
                        "review region's; synthetic 6)")  # fmt: skip
    parser.add_argument("--order", choices=["uncertainty", "random", "both"], default=None,
                        help="review order(s) (default: both synth, uncertainty vnc)")  # fmt: skip
    parser.add_argument("--val-every", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--volume-seed", type=int, default=9101, help="synthetic volume seed")
    parser.add_argument("--shape", type=lambda t: tuple(int(v) for v in t.split(",")),
                        default=(32, 384, 384), help="synthetic shape Z,Y,X")  # fmt: skip
    parser.add_argument("--ranking-shape", type=lambda t: tuple(int(v) for v in t.split(",")),
                        default=(32, 512, 512), help="shape of the ranking part")  # fmt: skip
    parser.add_argument("--weak-steps", type=int, default=400)
    parser.add_argument("--ranking-seeds", type=int, default=3)
    parser.add_argument("--work", type=Path, default=REPO / "bootstrap_out")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--plot", type=Path, help="draw the figures per round here (PNG)")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    synthetic = args.data == "synthetic"
    args.minutes = args.minutes or (2.0 if synthetic else 10.0)
    if synthetic and not args.quota:
        args.quota = 6
    orders = {"both": ["uncertainty", "random"], None: None}.get(args.order, [args.order])
    orders = orders or (["uncertainty", "random"] if synthetic else ["uncertainty"])
    run = plan(args.device)
    args.work.mkdir(parents=True, exist_ok=True)
    print(f"machine: {cpu_name()}; device {run.describe()}")
    result: dict[str, Any] = {"data": args.data, "minutes": args.minutes, "cpu": cpu_name(),
                              "device": run.describe(), "arms": {}}  # fmt: skip
    if synthetic:
        detector = str(weak_detector(1000, args.weak_steps, args.work, run))
        print(f"weak starting detector: {args.weak_steps} steps from scratch ({detector})")
        result["ranking"] = ranking(args, detector, args.work, run)
        truth = synthetic_truth(args.volume_seed, args.shape)
    else:
        detector = "cleft-detector"
        truth = vnc_truth()
    print(f"{truth.name}: review y < {truth.split} ({len(truth.ids_in(0, truth.split))} true "
          f"clefts), validate y >= {truth.split} "
          f"({len(truth.ids_in(truth.split, truth.clefts.shape[1]))})")  # fmt: skip
    for order in orders:
        result["arms"][order] = run_arm(truth, args.work, order, args, detector, run)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if args.plot:
        plot(result, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
