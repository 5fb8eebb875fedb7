"""Compare the cleft detector's training targets: mask, signed proximity, CleftNet.

The seed papers compare what a cleft detector learns: a binary mask (Turner et al. 2019),
the signed proximity of the proximity pruner's detector (Parag et al. 2018), and CleftNet's
label augmentation (mask plus cleft-boundary channels) with and without its feature
augmentor (Liu & Ji 2021). This script trains one detector per arm **from random weights on
the same synthetic volumes with the same step budget and seed**, then scores each

1. on the synthetic hold-out: ``--volumes`` dyadic (seeds 9000+) and polyadic (seeds 9500+)
   v1 volumes never seen in training or validation; cleft precision, recall and F1 (a match
   needs IoU >= 0.1) pooled per kind;
2. on the real VNC crop (``../shared/data/vnc_stack1_left``) zero-shot, and after
   fine-tuning with the VNC recipe (``examples/vnc_recipe.py``: train on y < 700, validate
   on y >= 700, ``--vnc-steps`` steps), on the clefts lying wholly in y >= 700.

Each model's threshold and minimum size are its own, chosen by ``napari-avan train`` on its
validation volumes (synthetic seeds 2000+ and 2500+; for the VNC fine-tuning, y >= 700,
which therefore makes those figures somewhat optimistic alike for every arm). Models go to
``--work`` (default ``target_table_out/``, git-ignored: the VNC-tuned weights must never be
committed); a rerun reuses the models already there. Prints the CPU and the precision beside
the figures, and writes ``--md`` and ``--json``.

Run ``python benchmarks/target_table.py [--steps 800] [--vnc-steps 300] [--volumes 10]``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "examples"))

import vnc_recipe  # noqa: E402
from _machine import cpu_name  # noqa: E402

#: Arm name -> the extra ``train clefts`` options.
ARMS = {
    "mask": [],
    "proximity": ["--target", "proximity"],
    "cleftnet": ["--target", "cleftnet"],
    "cleftnet + augmentor": ["--target", "cleftnet", "--feature-augmentor", "8"],
}
HOLDOUT_SEED = {False: 9000, True: 9500}


def folder_name(arm: str) -> str:
    return arm.replace(" + ", "_").replace(" ", "_")


def train_synthetic(arm: str, folder: Path, args: argparse.Namespace) -> float:
    """Train the arm's detector from random weights on synthetic volumes (skipped when its
    model is already there); returns the wall time of this run in seconds."""
    if (folder / "model.json").is_file() and not (folder / "train_state.pt").exists():
        print(f"  {arm}: reusing {folder}", flush=True)
        return 0.0
    command = [
        sys.executable, "-m", "napari_avan.cli", "train", "clefts", "--out", str(folder),
        "--synthetic", "6", "--synthetic-polyadic", "2", "--synthetic-shape", args.train_shape,
        "--val-synthetic", "2", "--val-synthetic-polyadic", "1",
        "--steps", str(args.steps), "--val-every", str(max(1, args.steps // 4)),
        "--seed", str(args.seed), "--quiet", *ARMS[arm],
    ]  # fmt: skip
    if folder.exists():
        command.append("--resume")
    print(f"  {arm}: {' '.join(command[2:])}", flush=True)
    started = time.perf_counter()
    subprocess.run(command, check=True)
    return time.perf_counter() - started


def holdout(model: Any, polyadic: bool, args: argparse.Namespace, run: Any) -> dict[str, Any]:
    """Cleft precision, recall and F1 pooled over the hold-out volumes of one kind."""
    from napari_avan.core.metrics import precision_recall_f1
    from napari_avan.core.synth import synthesize
    from napari_avan.models.scoring import score_detector

    shape = tuple(int(s) for s in args.shape.split(","))
    tp = fp = fn = 0
    for seed in range(HOLDOUT_SEED[polyadic], HOLDOUT_SEED[polyadic] + args.volumes):
        s = synthesize(seed=seed, shape=shape, polyadic=polyadic)
        got = score_detector(model, s.image, s.clefts, s.voxel_size_nm, run=run)
        tp, fp, fn = tp + got["cleft_tp"], fp + got["cleft_fp"], fn + got["cleft_fn"]
    precision, recall, f1 = precision_recall_f1(tp, fp, fn)
    return {"precision": precision, "recall": recall, "f1": f1, "tp": tp, "fp": fp, "fn": fn}


def fine_tune_vnc(arm: str, init: Path, folder: Path, args: argparse.Namespace) -> float:
    """The VNC recipe's detector training from the arm's synthetic model, into
    ``folder/cleft-detector`` (the recipe reuses a finished one); returns its wall time."""
    recipe_args = SimpleNamespace(
        out=folder, minutes=600.0, steps=args.vnc_steps, val_every=max(1, args.vnc_steps // 3),
        seed=args.seed, device="auto", retrain=False, from_scratch=False,
    )  # fmt: skip
    npz, partners = vnc_recipe.data_files(args.data)
    target = ARMS[arm][:2]  # the same target; the augmentor comes with the --init model
    trained = vnc_recipe.train("clefts", recipe_args, npz, partners, init, tuple(target))  # type: ignore[arg-type]
    return trained.wall_s


def counts(m: dict[str, Any]) -> str:
    return f"{m['f1']:.3f} ({m['tp']}/{m['fp']}/{m['fn']})"


def vnc_counts(m: dict[str, Any]) -> str:
    return f"{m['cleft_f1']:.3f} ({m['cleft_tp']}/{m['cleft_fp']}/{m['cleft_fn']})"


def markdown(rows: dict[str, dict[str, Any]], args: argparse.Namespace, device: str) -> str:
    lines = [
        "| target | synthetic dyadic F1 (tp/fp/fn) | synthetic polyadic F1 | VNC zero-shot F1 "
        "| VNC fine-tuned F1 | threshold, min size (synthetic model) |",
        "|---|---|---|---|---|---|",
    ]
    for arm, r in rows.items():
        post = r["postprocess"]
        lines.append(
            f"| {arm} | {counts(r['dyadic'])} | {counts(r['polyadic'])} "
            f"| {vnc_counts(r['vnc_zero_shot'])} | {vnc_counts(r['vnc_fine_tuned'])} "
            f"| {post.get('threshold', 0.5):g}, {post.get('min_volume_nm3', 0):g} nm^3 |"
        )
    lines += [
        "",
        f"Each arm: `napari-avan train clefts` from random weights, {args.steps} steps, seed "
        f"{args.seed}, on synthetic v1 volumes of {args.train_shape} voxels (6 dyadic + 2 "
        "polyadic, seeds 1000+ and 1500+), "
        "validated on seeds 2000-2001 and 2500 (checkpoint, threshold and minimum size chosen "
        f"there). Hold-out: {args.volumes} dyadic (seeds 9000+) and {args.volumes} polyadic "
        f"(9500+) volumes of {args.shape} voxels; IoU >= 0.1 matches, pooled per kind. VNC: "
        "the 10 clefts lying wholly in y >= 700 of the VNC crop; fine-tuned with the VNC "
        f"recipe's detector training ({args.vnc_steps} steps on y < 700, validated on y >= "
        "700, which also chose the checkpoint and post-processing).",
        f"Machine: {cpu_name()}, {device}.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=800, help="synthetic training steps")
    parser.add_argument("--vnc-steps", type=int, default=300, help="VNC fine-tuning steps")
    parser.add_argument("--volumes", type=int, default=10, help="hold-out volumes per kind")
    parser.add_argument("--shape", default="32,256,256", help="hold-out volume shape Z,Y,X")
    parser.add_argument("--train-shape", default="32,256,256", help="training volume shape")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--arms", default=",".join(ARMS), help="comma-separated arms")
    parser.add_argument("--data", type=Path, default=vnc_recipe.DEFAULT_DATA)
    parser.add_argument("--work", type=Path, default=ROOT / "target_table_out")
    parser.add_argument("--md", type=Path, default=ROOT / "docs" / "target_table.md")
    parser.add_argument("--json", type=Path, default=ROOT / "docs" / "target_table.json")
    args = parser.parse_args(argv)
    arms = [a.strip() for a in args.arms.split(",")]
    unknown = [a for a in arms if a not in ARMS]
    if unknown:
        parser.error(f"unknown arms {unknown}; choose from {list(ARMS)}")

    from napari_avan.models.checkpoint import resolve_model
    from napari_avan.models.device import plan

    run = plan()
    print(f"machine: {cpu_name()}, {run.describe()}", flush=True)
    npz, partners = vnc_recipe.data_files(args.data)
    val = vnc_recipe.validation_part(npz, partners)
    rows: dict[str, dict[str, Any]] = {}
    for arm in arms:
        base = args.work / folder_name(arm)
        synthetic = base / "synthetic"
        wall = train_synthetic(arm, synthetic, args)
        model = resolve_model(str(synthetic), "cleft-detector")
        log = np.loadtxt(synthetic / "log.csv", delimiter=",", skiprows=1, ndmin=2)
        row: dict[str, Any] = {
            "steps": int(model.metadata.get("steps", 0)),
            "seconds_per_step": float(log[-1, 1]) / max(1, int(log[-1, 0])),
            "train_wall_s": wall,
            "postprocess": model.metadata.get("postprocess") or {},
        }
        for kind, polyadic in (("dyadic", False), ("polyadic", True)):
            row[kind] = holdout(model, polyadic, args, run)
            print(f"  {arm}: hold-out {kind} {counts(row[kind])}", flush=True)
        row["vnc_zero_shot"] = vnc_recipe.score_detector(synthetic, val, run)
        row["vnc_wall_s"] = fine_tune_vnc(arm, synthetic, base / "vnc", args)
        row["vnc_fine_tuned"] = vnc_recipe.score_detector(base / "vnc" / "cleft-detector", val, run)
        print(
            f"  {arm}: VNC zero-shot {vnc_counts(row['vnc_zero_shot'])}, fine-tuned "
            f"{vnc_counts(row['vnc_fine_tuned'])}",
            flush=True,
        )
        rows[arm] = row
    text = markdown(rows, args, run.describe())
    print("\n" + text)
    args.md.write_text(text)
    record = {"machine": cpu_name(), "device": run.describe(), "args": vars(args), "arms": rows}
    args.json.write_text(json.dumps(record, indent=2, default=str) + "\n")
    print(f"wrote {args.md} and {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
