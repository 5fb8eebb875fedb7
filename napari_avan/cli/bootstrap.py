"""``napari-avan bootstrap``: one bootstrapped round on a proofreading session.

The detector and AVAN are fine-tuned from the session's current models on its reviewed
clefts, what is not reviewed is predicted again, and the round is recorded in the session
(:mod:`napari_avan.models.bootstrap`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from napari_avan.cli._common import _COUNT, _NON_NEGATIVE_INT, _POSITIVE, Subparsers, drive
from napari_avan.types import AvanInputError


def _box(text: str) -> Any:
    from napari_avan.models.bootstrap import parse_box

    try:
        return parse_box(text)
    except AvanInputError as err:
        raise argparse.ArgumentTypeError(str(err)) from err


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser(
        "bootstrap",
        help="a bootstrapped round: fine-tune the session's models on its reviewed clefts",
        description="Fine-tune the cleft detector and AVAN from the session's current models "
        "on its reviewed clefts (accepted, added, re-seeded and corrected ones as positives, "
        "rejected ones as negatives; unreviewed parts are never trained on), detect and "
        "assign again what is not reviewed, and record the round in the session: counts, "
        "base models, figures on the validation box. The new models become the session's.",
    )
    p.add_argument("session", help="the session folder")
    p.add_argument("--out", required=True, help="folder to create for this round's models")
    p.add_argument("--minutes", type=_POSITIVE, default=10.0, help="training time of the "
                   "round, detector and AVAN together (default 10)")  # fmt: skip
    p.add_argument("--steps", type=_COUNT, help="step budget per model (the first budget to "
                   "end stops)")  # fmt: skip
    p.add_argument("--validation", type=_box, metavar="Z0,Y0,X0,Z1,Y1,X1",
                   help="validation box in voxels (ends exclusive): its reviewed clefts choose "
                   "the checkpoints and score the round, never trained on (default: the last "
                   "round's, else the band along y holding the last quarter of the reviewed "
                   "clefts)")  # fmt: skip
    p.add_argument("--val-every", type=_COUNT, default=50, help="validate every N steps")
    p.add_argument("--seed", type=_NON_NEGATIVE_INT, default=0)
    p.add_argument("--device", default="auto", help="auto, cuda, mps or cpu")
    p.add_argument("--json", action="store_true", help="print the round's record as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_bootstrap)


def cmd_bootstrap(args: argparse.Namespace) -> int:
    from napari_avan.core.session import Session
    from napari_avan.models.bootstrap import apply_round, iter_round
    from napari_avan.models.device import plan

    out = Path(args.out)
    if out.exists():
        raise AvanInputError(f"{out} exists: choose a new folder for this round's models")
    session = Session.open(args.session)
    run = plan(args.device)
    steps = iter_round(
        session, out, minutes=args.minutes, steps=args.steps, validation=args.validation,
        run=run, seed=args.seed, val_every=args.val_every,
    )  # fmt: skip

    def show(bar: Any, progress: Any) -> None:
        bar.set_postfix_str(progress.message[:60], refresh=False)
        if progress.validation and not args.quiet:
            values = ", ".join(f"{k} {v:.3f}" for k, v in progress.validation.items())
            bar.write(f"{progress.phase} step {progress.step}: {values}")

    finished = None
    for progress in drive(
        steps,
        desc=f"round {session.round + 1} on {run.describe()}",
        unit="%",
        quiet=args.quiet,
        total=100,
        count=lambda p: (round(100 * p.fraction), None),
        show=show,
    ):
        finished = progress.plan or finished
    assert finished is not None
    record = apply_round(session, finished)
    if args.json:
        print(json.dumps(record, indent=2))
        return 0
    m, base, c = record["metrics"], record["base_metrics"], record["counts"]

    def fig(values: dict[str, Any], key: str) -> str:
        return "n/a" if values.get(key) is None else f"{values[key]:.3f}"

    print(
        f"round {record['round']} of {args.session}: trained on {c['training_clefts']} "
        f"reviewed clefts ({c['accepted']} accepted, {c['added']} added, {c['corrected']} "
        f"corrected) and {c['rejected']} rejected; validation box {record['validation_box']} "
        f"({record['validation_box_chosen']}, {c['validation_clefts']} clefts)"
    )
    for key, label in (("cleft_f1", "cleft F1"), ("pre_accuracy", "pre accuracy"),
                       ("edge_f1", "edge F1")):  # fmt: skip
        print(f"  {label:<13} {fig(base, key)} -> {fig(m, key)}")
    steps_text = ", ".join(f"{k} {v} steps" for k, v in record["steps"].items())
    print(
        f"  {steps_text}; {record['minutes']['round']:.1f} min; {c['predicted']} clefts "
        f"predicted in place of {c['removed']} pending; models in {record['out']}"
    )
    return 0
