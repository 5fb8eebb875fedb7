"""Fine-tune the bundled models on a real EM crop and score them on a held-out part.

Real-data recipe on the Drosophila larval VNC crop in ``../shared/data/vnc_stack1_left``
(ssTEM, voxel size 50 x 4.6 x 4.6 nm, polyadic synapses; see its README.md). It

1. trains the cleft detector and AVAN with ``napari-avan train`` on y < 700, validating on
   y >= 700 (``--val-split y=700``), starting from the bundled synthetic-only models
   (``--init``; ``--from-scratch`` starts from random weights instead);
2. scores the bundled models (the baseline) and the trained ones on y >= 700 only: cleft
   object F1 of the detector, and presynaptic accuracy and polyadic edge F1 of AVAN on the
   true validation clefts;
3. prints a markdown table and writes it to ``OUT/vnc_figures.md``.

The data's licence (CC BY-NC-SA 3.0) forbids shipping it, or weights trained on it, under
the package's licence: everything is written under ``--out`` (default ``vnc_recipe_out/`` at
the repository root, which git ignores). Never copy the trained models into
``napari_avan/models/weights``. Run it as
``python examples/vnc_recipe.py [--minutes 12] [--out vnc_recipe_out]``;
``--steps 20`` makes a quick check of the whole pipeline.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from napari_avan.types import AvanInputError

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "vnc_stack1_left"
DEFAULT_OUT = REPO_ROOT / "vnc_recipe_out"
NPZ, PARTNERS = "vnc_left.npz", "partners.csv"
VOXEL_SIZE = (50.0, 4.6, 4.6)  # z, y, x in nm (data README)
SPLIT_AXIS, SPLIT_INDEX = 1, 700  # train on y < 700, validate on y >= 700
TASKS = {"clefts": "cleft-detector", "avan": "avan"}  # train kind -> model task
HEURISTIC_NOTE = (
    "The partner table of this crop was derived heuristically (pre = the segment holding the "
    "largest share of the synapse mask), not proofread (see the data README), so the pre "
    "accuracy and edge F1 are a loose check, not an accuracy claim."
)


class RecipeError(Exception):
    """Bad input or a failed step: reported as one line, exit code 2."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--minutes", type=float, default=12.0, help="training time per model (default 12)"
    )
    parser.add_argument(
        "--steps", type=int, help="step budget per model (with --minutes: the first to end stops)"
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="output folder (default: vnc_recipe_out/)"
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=DEFAULT_DATA,
        help="vnc_stack1_left folder (default: %(default)s)",
    )
    parser.add_argument(
        "--from-scratch", action="store_true", help="train from random weights, not the bundled"
    )
    parser.add_argument(
        "--base-detector",
        default="cleft-detector",
        help="baseline cleft detector and --init of its fine-tuning: bundled name or folder",
    )
    parser.add_argument(
        "--base-avan",
        default="avan",
        help="baseline AVAN and --init of its fine-tuning: bundled name or folder",
    )
    parser.add_argument("--val-every", type=int, default=100, help="validate every N steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="auto, cuda, mps or cpu")
    parser.add_argument(
        "--retrain", action="store_true", help="delete finished models in --out and train again"
    )
    args = parser.parse_args(argv)
    if args.minutes <= 0 or (args.steps is not None and args.steps < 1):
        parser.error("--minutes must be > 0 and --steps >= 1")
    return args


# ----------------------------------------------------------------------------- checks


def data_files(folder: Path) -> tuple[Path, Path]:
    """The npz and partners CSV of the VNC crop, or a RecipeError saying where to get them."""
    npz, partners = folder / NPZ, folder / PARTNERS
    if not npz.is_file() or not partners.is_file():
        raise RecipeError(
            f"the VNC data is not at {folder} (expected {NPZ} and {PARTNERS}): check out "
            "shared/ beside the repository or pass --data FOLDER"
        )
    return npz, partners


def check_out(out: Path) -> None:
    """Refuse an output folder inside the package; warn when git would track it."""
    out = out.resolve()
    if out.is_relative_to(REPO_ROOT / "napari_avan"):
        raise RecipeError(
            f"--out {out} lies inside the package: weights trained on this data must never "
            "ship with napari-avan (CC BY-NC-SA data); choose a folder outside napari_avan/"
        )
    if out.is_relative_to(REPO_ROOT) and shutil.which("git"):
        probe = out / "weights.pt"
        ignored = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "check-ignore", "-q", str(probe)], check=False
        )
        if ignored.returncode == 1:
            print(
                f"warning: {out} is inside the repository and not git-ignored: do not commit "
                "the weights trained there",
                file=sys.stderr,
            )


def model_folder(spec: str, task: str) -> Path:
    """The folder of a bundled model name or model folder (its hash checked on load)."""
    from napari_avan.models.checkpoint import resolve_model

    model = resolve_model(spec, task)
    assert model.path is not None
    return Path(model.path).resolve()


# ----------------------------------------------------------------------------- training


@dataclass
class Trained:
    folder: Path
    steps: int
    minutes: float  # training time recorded by the trainer (validation included)
    wall_s: float  # this run's wall time (0 when an earlier run's model is reused)


def train(
    kind: str,
    args: argparse.Namespace,
    npz: Path,
    partners: Path,
    init: Path | None,
    extra: tuple[str, ...] = (),
) -> Trained:
    """Train one model with the project's CLI into ``OUT/<task>``, from ``init`` if given;
    ``extra``: more ``train`` options (e.g. ``--target cleftnet``)."""
    folder = args.out / TASKS[kind]
    command = [
        sys.executable, "-m", "napari_avan.cli", "train", kind,
        "--out", str(folder),
        "--image", f"{npz}:image",
        "--segmentation", f"{npz}:segmentation",
        "--clefts", f"{npz}:clefts",
        "--partners", str(partners),
        "--voxel-size", ",".join(f"{v:g}" for v in VOXEL_SIZE),
        "--val-split", f"{'zyx'[SPLIT_AXIS]}={SPLIT_INDEX}",
        "--minutes", f"{args.minutes:g}",
        "--val-every", str(args.val_every),
        "--seed", str(args.seed),
        "--device", args.device,
    ]  # fmt: skip
    if args.steps is not None:
        command += ["--steps", str(args.steps)]
    if kind == "avan":
        command.append("--polyadic")  # VNC synapses are polyadic: rank models by edge F1
    if init is not None:
        command += ["--init", str(init)]
    command += list(extra)
    if folder.exists():
        if (folder / "train_state.pt").is_file():
            print(f"resuming the interrupted run in {folder}")
            command.append("--resume")
        elif args.retrain:
            shutil.rmtree(folder)
        else:
            _check_reuse(folder, args, init)
            print(f"reusing the trained {folder} (pass --retrain to train it again)")
            return _trained(folder, 0.0)
    print("$ napari-avan " + " ".join(command[3:]), flush=True)
    started = time.perf_counter()
    result = subprocess.run(command, check=False)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise RecipeError(f"napari-avan train {kind} failed (exit code {result.returncode})")
    return _trained(folder, wall)


def _check_reuse(folder: Path, args: argparse.Namespace, init: Path | None) -> None:
    """Refuse to reuse a finished model trained with another budget, seed or init."""
    training = json.loads((folder / "model.json").read_text()).get("training", {})
    settings = training.get("settings", {})
    wanted = {
        "steps": args.steps,
        "minutes": args.minutes,
        "seed": args.seed,
        "init": None if init is None else str(init),
    }
    found = {
        **{k: settings.get(k) for k in ("steps", "minutes", "seed")},
        "init": training.get("init"),
    }
    differ = [f"{k} {found[k]} (asked: {wanted[k]})" for k in wanted if found[k] != wanted[k]]
    if differ:
        raise RecipeError(
            f"{folder} was trained with {', '.join(differ)}: pass --retrain to replace it, or "
            "choose another --out"
        )


def _trained(folder: Path, wall_s: float) -> Trained:
    import pandas as pd

    meta = json.loads((folder / "model.json").read_text())
    log = pd.read_csv(folder / "log.csv")
    minutes = float(log["elapsed_s"].iloc[-1]) / 60 if len(log) else 0.0
    return Trained(folder, int(meta.get("steps", 0)), minutes, wall_s)


# ----------------------------------------------------------------------------- evaluation


@dataclass
class Validation:
    """The y >= 700 part: volumes cropped there, and the clefts scored in it."""

    image: np.ndarray
    segmentation: np.ndarray
    clefts: np.ndarray  # only clefts lying wholly in y >= 700, others 0
    cut: np.ndarray  # mask of the clefts crossing y = 700 (ignored)
    partners: Any  # partner rows of the scored clefts
    ids: list[int]
    cut_ids: list[int]
    n_train_clefts: int


def validation_part(npz: Path, partners_csv: Path) -> Validation:
    from napari_avan.io import read_partners

    with np.load(npz) as data:
        image, seg, clefts = data["image"], data["segmentation"], data["clefts"]
    hi = tuple(slice(SPLIT_INDEX, None) if a == SPLIT_AXIS else slice(None) for a in range(3))
    lo = tuple(slice(0, SPLIT_INDEX) if a == SPLIT_AXIS else slice(None) for a in range(3))
    in_hi = set(np.unique(clefts[hi]).tolist()) - {0}
    in_lo = set(np.unique(clefts[lo]).tolist()) - {0}
    ids, cut_ids = sorted(in_hi - in_lo), sorted(in_hi & in_lo)
    val_clefts = clefts[hi]
    cut = np.isin(val_clefts, cut_ids)
    val_clefts = np.where(cut, 0, val_clefts).astype(clefts.dtype)
    partners = read_partners(partners_csv)
    partners = partners[partners["cleft_id"].isin(ids)].reset_index(drop=True)
    return Validation(
        image[hi], seg[hi], val_clefts, cut, partners, ids, cut_ids, len(in_lo - in_hi)
    )


def score_detector(folder_or_name: str | Path, val: Validation, run: Any) -> dict[str, Any]:
    """Cleft object F1 on y >= 700; predictions touching a cut cleft are dropped."""
    from napari_avan.models import scoring
    from napari_avan.models.checkpoint import resolve_model

    model = resolve_model(str(folder_or_name), "cleft-detector")
    started = time.perf_counter()
    figures = scoring.score_detector(model, val.image, val.clefts, VOXEL_SIZE, unknown=val.cut,
                                     run=run)  # fmt: skip
    return {**figures, "seconds": time.perf_counter() - started}


def score_avan(folder_or_name: str | Path, val: Validation, run: Any) -> dict[str, Any]:
    """Polyadic assignment on the true validation clefts: pre accuracy and edge F1."""
    from napari_avan.models import scoring
    from napari_avan.models.checkpoint import resolve_model

    model = resolve_model(str(folder_or_name), "avan")
    started = time.perf_counter()
    figures = scoring.score_avan(model, val.image, val.clefts, val.segmentation, val.partners,
                                 VOXEL_SIZE, run=run)  # fmt: skip
    return {**figures, "seconds": time.perf_counter() - started}


# ----------------------------------------------------------------------------- report


def figures_markdown(
    rows: list[tuple[str, dict[str, Any] | None, dict[str, Any] | None, str]],
    val: Validation,
    args: argparse.Namespace,
) -> str:
    lines = [
        "| model | cleft F1 (tp/fp/fn) | pre accuracy | polyadic edge F1 | training minutes |",
        "|---|---|---|---|---|",
    ]
    for name, det, avan, minutes in rows:
        cleft = (
            f"{det['cleft_f1']:.3f} ({det['cleft_tp']}/{det['cleft_fp']}/{det['cleft_fn']})"
            if det
            else "–"
        )
        pre = f"{avan['pre_accuracy']:.3f}" if avan else "–"
        edge = f"{avan['edge_f1']:.3f}" if avan else "–"
        lines.append(f"| {name} | {cleft} | {pre} | {edge} | {minutes} |")
    post = "; ".join(
        f"{name}: threshold {det['threshold']:g}, min size {det['min_size_voxels']} voxels, "
        f"{det['dropped_unknown']} dropped at the cut"
        for name, det, _, _ in rows
        if det
    )
    n_edges = len(val.partners)
    init = "random weights (--from-scratch)" if args.from_scratch else "the bundled models"
    lines += [
        "",
        f"Data: Drosophila larval VNC ssTEM crop ({args.data.name}), voxel size "
        f"{','.join(f'{v:g}' for v in VOXEL_SIZE)} nm (z,y,x). Trained on y < {SPLIT_INDEX} "
        f"from {init}, validated on y >= {SPLIT_INDEX} (`--val-split y={SPLIT_INDEX}`).",
        f"Scored clefts: the {len(val.ids)} clefts lying wholly in y >= {SPLIT_INDEX} "
        f"(ids {', '.join(map(str, val.ids))}; {n_edges} partner pairs). The "
        f"{len(val.cut_ids)} clefts crossing y = {SPLIT_INDEX} (ids "
        f"{', '.join(map(str, val.cut_ids)) or 'none'}) are ignored: their voxels are not "
        "truth, and predicted clefts touching them are dropped before matching. "
        f"Detection ran on the y >= {SPLIT_INDEX} crop alone with each model's own "
        f"post-processing ({post}); a match needs IoU >= 0.1. AVAN was given the true "
        "clefts and scored as polyadic edges with each model's own thresholds (its "
        "`postprocess`, chosen on its validation data; 0.5 where it has none). The same y >= "
        f"{SPLIT_INDEX} part chose the best checkpoint during training, so the trained "
        "models' figures are somewhat optimistic.",
        HEURISTIC_NOTE,
        "Dataset: Gerhard, Funke, Martel, Cardona, Fetter (2013), doi:10.6084/m9.figshare.856713, "
        "CC BY-NC-SA 3.0: do not redistribute weights trained on it with napari-avan.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        npz, partners = data_files(args.data)
        check_out(args.out)
        return run_recipe(args, npz, partners)
    except (RecipeError, AvanInputError) as err:
        print(f"vnc_recipe: error: {err}", file=sys.stderr)
        return 2


def run_recipe(args: argparse.Namespace, npz: Path, partners: Path) -> int:
    from napari_avan.models.device import plan

    base_detector = model_folder(args.base_detector, "cleft-detector")
    base_avan = model_folder(args.base_avan, "avan")
    args.out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    val = validation_part(npz, partners)
    timings["load"] = time.perf_counter() - started
    print(
        f"validation part y >= {SPLIT_INDEX}: {len(val.ids)} whole clefts scored, "
        f"{len(val.cut_ids)} crossing y = {SPLIT_INDEX} ignored (ids {val.cut_ids}), "
        f"{val.n_train_clefts} clefts wholly in the training part"
    )
    run = plan(args.device)

    print("\n== baseline: the bundled (synthetic-only) models", flush=True)
    base_det = score_detector(base_detector, val, run)
    base_av = score_avan(base_avan, val, run)
    timings["baseline detector eval"] = base_det["seconds"]
    timings["baseline AVAN eval"] = base_av["seconds"]

    print("\n== training", flush=True)
    scratch = args.from_scratch
    detector = train("clefts", args, npz, partners, None if scratch else base_detector)
    timings["detector training"] = detector.wall_s
    avan = train("avan", args, npz, partners, None if scratch else base_avan)
    timings["AVAN training"] = avan.wall_s

    print("\n== scoring the trained models", flush=True)
    new_det = score_detector(detector.folder, val, run)
    new_av = score_avan(avan.folder, val, run)
    timings["trained detector eval"] = new_det["seconds"]
    timings["trained AVAN eval"] = new_av["seconds"]

    def trained_minutes(t: Trained) -> str:
        return f"{t.minutes:.1f} ({t.steps} step{'s' if t.steps != 1 else ''})"

    tuned = "from scratch" if args.from_scratch else "fine-tuned"
    rows = [
        (f"bundled cleft-detector ({base_detector.name}, synthetic only)", base_det, None, "0"),
        (f"{tuned} cleft-detector (VNC y<{SPLIT_INDEX})", new_det, None, trained_minutes(detector)),
        (f"bundled AVAN ({base_avan.name}, synthetic only)", None, base_av, "0"),
        (f"{tuned} AVAN (VNC y<{SPLIT_INDEX})", None, new_av, trained_minutes(avan)),
    ]
    text = figures_markdown(rows, val, args)
    (args.out / "vnc_figures.md").write_text(text)
    record = {
        "baseline": {"detector": base_det, "avan": base_av},
        "trained": {"detector": new_det, "avan": new_av},
        "training": {
            "detector": {"steps": detector.steps, "minutes": detector.minutes},
            "avan": {"steps": avan.steps, "minutes": avan.minutes},
        },
        "timings_s": timings,
        "args": {k: str(v) for k, v in vars(args).items()},
    }
    (args.out / "vnc_figures.json").write_text(json.dumps(record, indent=2) + "\n")
    print("\n" + text)
    print("timings: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()))
    print(f"wrote {args.out / 'vnc_figures.md'} and the trained models in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
