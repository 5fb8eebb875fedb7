"""``napari-avan train``: a cleft detector, AVAN or a pruner baseline from volume groups.

The data is assembled by :mod:`napari_avan.models.training_data` (volume groups, synthetic
volumes with the recipes' seeds, ``--val-split``); training is
:func:`napari_avan.models.train.iter_train`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from napari_avan import __version__
from napari_avan.cli._common import (
    _COUNT,
    _NON_NEGATIVE_INT,
    _POSITIVE,
    Subparsers,
    _shape,
    _voxel_size,
    drive,
)
from napari_avan.models.training_data import (
    SYNTH_TRAIN_SEED,
    SYNTH_VAL_SEED,
    SYNTHETIC_VARIANTS,
    VolumeGroup,
    read_groups,
    split_groups,
    synthetic_groups,
)
from napari_avan.types import AvanInputError


def _split(text: str) -> tuple[int, int]:
    """``y=700`` -> (axis 1, index 700)."""
    axis, _, index = text.partition("=")
    if axis not in ("z", "y", "x") or not index.isdigit() or int(index) < 1:
        raise argparse.ArgumentTypeError(f"split {text!r} must look like y=700 (axis z, y or x)")
    return ("zyx".index(axis), int(index))


def _widths(text: str) -> tuple[int, ...]:
    try:
        widths = tuple(int(w) for w in text.split(","))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"widths {text!r} are not integers like 16,32,64") from err
    if not widths or min(widths) < 1:
        raise argparse.ArgumentTypeError(f"widths {text!r} must be positive integers")
    return widths


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser(
        "train",
        help="train a cleft detector, AVAN or a pruner baseline",
        description=(
            "Train a model on one or more volumes (each an --image/--segmentation/--clefts/"
            "--partners group) and/or synthetic volumes, validating on --val-* groups, a "
            "--val-split of the training volumes, or synthetic validation volumes. The best "
            "model is kept in --out with its training log and recipe."
        ),
    )
    p.add_argument(
        "kind", choices=["clefts", "avan", "mask-pruner", "proximity-pruner"], help="what to train"
    )
    p.add_argument("--target", choices=["mask", "proximity", "cleftnet"], default="mask",
                   help="clefts: cleft mask (default), signed proximity (for the proximity "
                   "pruner) or cleftnet (the mask plus CleftNet's cleft-boundary "
                   "channel)")  # fmt: skip
    p.add_argument("--proximity-model", help="proximity-pruner: its signed proximity detector")
    p.add_argument("--out", required=True, help="model folder to create")
    for prefix, what in (("", "training"), ("val-", "validation")):
        p.add_argument(f"--{prefix}image", action="append", help=f"{what} EM volume spec")
        p.add_argument(f"--{prefix}segmentation", action="append", help=f"{what} segmentation")
        p.add_argument(f"--{prefix}clefts", action="append", help=f"{what} cleft labels")
        p.add_argument(f"--{prefix}partners", action="append", help=f"{what} partners CSV")
    p.add_argument("--val-split", type=_split, help="validate on the part of each training "
                   "volume from this index on, e.g. y=700 (train on y < 700)")  # fmt: skip
    n = _NON_NEGATIVE_INT
    p.add_argument("--synthetic", type=n, default=0, help="N synthetic dyadic volumes")
    p.add_argument("--synthetic-polyadic", type=n, default=0, help="N synthetic polyadic")
    p.add_argument("--val-synthetic", type=n, default=0, help="N synthetic dyadic (validation)")
    p.add_argument("--val-synthetic-polyadic", type=n, default=0, help="N polyadic (validation)")
    p.add_argument("--synthetic-shape", type=_shape, default=(32, 256, 256), metavar="Z,Y,X")
    p.add_argument("--synthetic-variant", choices=list(SYNTHETIC_VARIANTS), default="v1",
                   help="synthetic volumes: v1 the fixed generator (default), v2 options "
                   "drawn per seed (voxel size, membranes, vesicles, annotation style, "
                   "contrast...), v1+v2 each count of both, v2-blob / v2-sheet v2 with "
                   "that annotation style only (blob masks around the release site as "
                   "the VNC annotators drew them, or thin CREMI-style sheets)")  # fmt: skip
    p.add_argument("--steps", type=_COUNT, help="step budget")
    p.add_argument("--minutes", type=_POSITIVE, help="time budget (the first budget to end stops)")
    p.add_argument("--init", help="model folder or bundled name to fine-tune from")
    p.add_argument("--resume", action="store_true", help="continue the interrupted run in --out")
    p.add_argument("--voxel-size", type=_voxel_size, metavar="Z,Y,X", help="of the inputs (nm)")
    p.add_argument("--working-voxel-size", type=_voxel_size, metavar="Z,Y,X",
                   help="the model's working voxel size (default: the --init model's, else "
                   "the data's; detector: in-plane coarsened to about 8 nm)")  # fmt: skip
    p.add_argument("--patch", type=_shape, metavar="Z,Y,X", help="training patch")
    p.add_argument("--widths", type=_widths, help="U-Net widths, e.g. 16,32,64,128")
    p.add_argument("--feature-augmentor", type=_NON_NEGATIVE_INT, default=0, metavar="N",
                   help="clefts (any --target): a CleftNet-style feature augmentor of N "
                   "learned queries at the U-Net's bottleneck (default 0: none; with --init "
                   "from a model without one, it starts with zero output)")  # fmt: skip
    p.add_argument("--batch-size", type=_COUNT, default=1, help="patches per step (default 1)")
    p.add_argument("--lr", type=_POSITIVE, default=1e-3, help="learning rate (default 0.001)")
    p.add_argument("--val-every", type=_COUNT, default=100, help="validate every N steps")
    p.add_argument("--seed", type=_NON_NEGATIVE_INT, default=0)
    p.add_argument("--polyadic", action="store_true", help="AVAN: rank models by polyadic F1")
    p.add_argument("--no-bf16", action="store_true", help="train and validate in fp32 only")
    p.add_argument("--device", default="auto", help="auto, cuda, mps or cpu")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train, argv=None)


def _groups(args: argparse.Namespace, prefix: str) -> list[VolumeGroup]:
    """The ``--{prefix}image/segmentation/clefts/partners`` groups given on the command line."""
    attr = prefix.replace("-", "_")

    def given(name: str) -> list[str]:
        return getattr(args, f"{attr}{name}") or []

    return read_groups(
        given("image"),
        given("segmentation"),
        given("clefts"),
        given("partners"),
        args.voxel_size,
        flag_prefix=f"--{prefix}",
    )


def training_data(args: argparse.Namespace) -> tuple[list[VolumeGroup], list[VolumeGroup]]:
    """(training, validation) groups: volumes given, their ``--val-split``, synthetic ones."""
    train = _groups(args, "")
    val = _groups(args, "val-")
    if args.val_split is not None:
        train, held_out = split_groups(train, *args.val_split)
        val += held_out
    shape = args.synthetic_shape
    for polyadic, n in ((False, args.synthetic), (True, args.synthetic_polyadic)):
        train += synthetic_groups(
            n, polyadic, SYNTH_TRAIN_SEED[polyadic], shape, args.synthetic_variant
        )
    for polyadic, n in ((False, args.val_synthetic), (True, args.val_synthetic_polyadic)):
        val += synthetic_groups(
            n, polyadic, SYNTH_VAL_SEED[polyadic], shape, args.synthetic_variant
        )
    if not train:
        raise AvanInputError(
            "no training data: give --image/--segmentation/--clefts/--partners or --synthetic N"
        )
    if not val:
        raise AvanInputError(
            "no validation data: give --val-image/... groups, --val-split y=INDEX or "
            "--val-synthetic N"
        )
    return train, val


def cmd_train(args: argparse.Namespace) -> int:
    from napari_avan.models.checkpoint import resolve_model
    from napari_avan.models.device import plan
    from napari_avan.models.train import (
        TrainingVolume,
        TrainSettings,
        detector_voxel_size,
        iter_train,
        prepare_volume,
        resume_state,
    )

    out = Path(args.out)
    if args.steps is None and args.minutes is None:
        raise AvanInputError("give a training budget: --steps N, --minutes M or both")
    resume_state(out, args.resume)  # a damaged state is reported before any data is read
    train, val = training_data(args)
    data_voxel = train[0].voxel_size_nm
    if args.working_voxel_size:
        working = args.working_voxel_size
    elif args.init:  # fine-tuning keeps the starting model's working size
        task = "cleft-detector" if args.kind == "clefts" else args.kind
        working = tuple(resolve_model(args.init, task).metadata["voxel_size_nm"])
    else:
        working = detector_voxel_size(data_voxel) if args.kind == "clefts" else data_voxel
    settings = TrainSettings(
        args.kind,
        steps=args.steps,
        minutes=args.minutes,
        lr=args.lr,
        batch_size=args.batch_size,
        seed=args.seed,
        val_every=args.val_every,
        patch=args.patch,
        widths=args.widths,
        voxel_size_nm=working,
        polyadic=args.polyadic,
        target=args.target,
        feature_augmentor=args.feature_augmentor,
    )

    def prepared(groups: list[VolumeGroup]) -> list[TrainingVolume]:
        return [
            prepare_volume(
                g.image, g.segmentation, g.clefts, g.partners, g.voxel_size_nm, working, g.name
            )
            for g in groups
        ]

    train_volumes, val_volumes = prepared(train), prepared(val)
    run = plan(args.device, allow_bf16=not args.no_bf16)
    recipe = {
        "command": "napari-avan " + " ".join(sys.argv[1:] if args.argv is None else args.argv),
        "version": __version__,
        "device": run.describe(),
    }
    steps = iter_train(
        settings,
        train_volumes,
        val_volumes,
        out,
        init=args.init,
        resume=args.resume,
        run=run,
        recipe=recipe,
        proximity_model=args.proximity_model,
    )

    def show(bar: Any, progress: Any) -> None:
        shown = {"loss": f"{progress.loss:.3f}"}
        if progress.best:
            shown.update({k: f"{v:.3f}" for k, v in progress.best.items()})
        bar.set_postfix(shown, refresh=False)
        if progress.validation and not args.quiet:
            values = ", ".join(f"{k} {v:.4f}" for k, v in progress.validation.items())
            bar.write(f"step {progress.step}: {values}")

    last = None
    for progress in drive(
        steps,
        desc=f"train {args.kind} on {run.describe()}",
        unit="step",
        quiet=args.quiet,
        total=args.steps,
        count=lambda progress: (progress.step, None),  # the bar's length is the step budget
        show=show,
    ):
        last = progress
    assert last is not None
    best = ", ".join(f"{k} {v:.4f}" for k, v in (last.best or {}).items())
    print(f"wrote {out} after {last.step} steps in {last.elapsed_s / 60:.1f} min (best: {best})")
    return 0
