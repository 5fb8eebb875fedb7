"""``napari-avan session``: create a proofreading session, apply decisions, print its status."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from napari_avan.cli._common import (
    Subparsers,
    _count,
    _read_labels,
    _same_shape,
    _voxel_size,
    _voxel_size_of,
    drive,
)
from napari_avan.types import AvanInputError


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser(
        "session",
        help="proofreading sessions: create, apply decisions, status",
        description="A session folder holds the clefts under review, each cleft's status and "
        "partners, and a journal of every decision (written to disk before it returns), so "
        "that nothing is lost and every decision can be undone.",
    )
    ss = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    q = ss.add_parser(
        "create",
        help="start a session on a volume",
        description="Start a session. Without --clefts it detects clefts and assigns their "
        "partners; with --clefts but no --edges it assigns partners with AVAN; with --edges "
        "it takes the partners from the table. Every cleft starts pending.",
    )
    q.add_argument("session", help="the session folder to create")
    q.add_argument("--image", required=True, help="EM volume (volume spec)")
    q.add_argument("--segmentation", required=True, help="neuron segmentation (volume spec)")
    q.add_argument("--clefts", help="cleft labels (volume spec); default: detect them")
    q.add_argument("--prob", help="cleft probability map (volume spec), for scores and re-seeds")
    q.add_argument("--edges", help="edge or partner table (CSV) of the clefts; default: AVAN")
    q.add_argument("--voxel-size", type=_voxel_size, default=None, help="Z,Y,X nm")
    q.add_argument("--detector", help="cleft detector (default: the bundled one)")
    q.add_argument("--avan", help="AVAN model (default: the bundled one)")
    q.add_argument("--device", default="auto", help="auto, cuda, mps or cpu")
    q.add_argument("--quiet", action="store_true", help="no progress bar")
    q.set_defaults(func=cmd_session_create)

    q = ss.add_parser(
        "apply",
        help="apply decisions from a JSON-lines file",
        description='Apply one decision per line, e.g. {"action": "accept", "cleft": 12}; '
        "actions: accept, reject, set_partners, reseed, delete, merge, note, undo, redo. "
        "Every line is checked before any is applied; a decision that cannot apply stops "
        "the run, and the ones before it stay applied (each is in the journal).",
    )
    q.add_argument("session", help="the session folder")
    q.add_argument("decisions", help="JSON lines, one decision each")
    q.add_argument("--device", default="auto", help="for re-seeds: auto, cuda, mps or cpu")
    q.set_defaults(func=cmd_session_apply)

    q = ss.add_parser("status", help="counts of clefts by status, decisions and round")
    q.add_argument("session", help="the session folder")
    q.add_argument("--json", action="store_true", help="print JSON on stdout")
    q.set_defaults(func=cmd_session_status)


def _records_by_avan(args: argparse.Namespace, image: Any, clefts: Any, seg: Any, vs: Any) -> Any:
    from napari_avan.core.session import record_from_assignment
    from napari_avan.models.assign import iter_assign
    from napari_avan.models.checkpoint import resolve_model
    from napari_avan.models.device import plan

    model = resolve_model(args.avan, "avan")
    run = plan(args.device)
    steps = iter_assign(model, image, clefts, seg, vs, run=run, polyadic=True)
    records = {}
    desc = f"assign on {run.describe()}"
    for step in drive(steps, desc=desc, unit="patch", quiet=args.quiet):
        for found in step.finished:
            records[int(found.cleft_id)] = record_from_assignment(found)
    return records, {"avan": str(args.avan or "avan")}


def _detect(args: argparse.Namespace, image: Any, vs: Any) -> Any:
    from napari_avan.models.checkpoint import resolve_model
    from napari_avan.models.detect import iter_detect
    from napari_avan.models.device import plan

    model = resolve_model(args.detector, "cleft-detector")
    run = plan(args.device)
    detection = None
    steps = iter_detect(model, image, vs, run=run)
    for step in drive(steps, desc=f"detect on {run.describe()}", unit="patch", quiet=args.quiet):
        detection = step.result
    assert detection is not None
    return detection


def cmd_session_create(args: argparse.Namespace) -> int:
    from napari_avan.core.session import Session, records_from_partners
    from napari_avan.io import read_table, read_volume

    out = Path(args.session)
    if out.exists():
        raise AvanInputError(f"{out} exists: choose a new session folder")
    image = read_volume(args.image, args.voxel_size, lazy=False, role="image")
    seg = _read_labels(args.segmentation, "segmentation", args.voxel_size)
    clefts = _read_labels(args.clefts, "clefts", args.voxel_size) if args.clefts else None
    prob = read_volume(args.prob, lazy=False, role="cleft probability") if args.prob else None
    _same_shape(image=image, segmentation=seg, clefts=clefts, cleft_probability=prob)
    vs = _voxel_size_of(args.image, image, seg, clefts)
    if args.edges and clefts is None:
        raise AvanInputError("--edges describes given clefts: pass --clefts too")
    edges = read_table(Path(args.edges)) if args.edges else None
    models: dict[str, str] = {}
    volumes = {
        "image": _absolute(args.image),
        "segmentation": _absolute(args.segmentation),
        "prob": _absolute(args.prob) if args.prob else None,
    }
    if clefts is None:
        detection = _detect(args, image.data, vs)
        labels, probability = detection.clefts, detection.prob
        models["detector"] = str(args.detector or "cleft-detector")
    else:
        labels, probability = clefts.data, None if prob is None else prob.data
    if edges is not None:
        records = records_from_partners(edges)
    else:
        records, used = _records_by_avan(args, image.data, labels, seg.data, vs)
        models.update(used)
    session = Session.create(
        out, labels, vs, records=records, probability=probability, volumes=volumes,
        models=models,
    )  # fmt: skip
    if clefts is None:
        from napari_avan.io import write_volume

        # the detector's map, kept for re-seeding (the session folder is ours)
        write_volume(out / "cleft_prob.zarr", probability, vs)
        session.meta["volumes"]["prob"] = "cleft_prob.zarr"  # inside the session folder
        session.save_meta()
    status = session.status()
    print(f"wrote {out} ({_count(status['clefts'], 'cleft')}, all pending)")
    return 0


def _absolute(spec: str) -> str:
    """A volume spec that still names the same file from another working folder."""
    from dataclasses import replace

    from napari_avan.io import parse_spec

    parsed = parse_spec(spec)
    return str(replace(parsed, path=parsed.path.resolve()))


def _read_decisions(path: Path) -> list[dict[str, Any]]:
    from napari_avan.core.session import check_decision

    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise AvanInputError(f"cannot read decisions {path}: {err}") from err
    decisions = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            decisions.append(check_decision(json.loads(line)))
        except ValueError as err:  # JSON errors and AvanInputError alike
            raise AvanInputError(f"{path} line {number}: {err} (nothing was applied)") from err
    return decisions


def cmd_session_apply(args: argparse.Namespace) -> int:
    from napari_avan.core.session import Session

    decisions = _read_decisions(Path(args.decisions))
    session = Session.open(args.session)
    if any(d["action"] == "reseed" for d in decisions):
        _attach_volumes(session, args.device)
    for done, decision in enumerate(decisions):
        try:
            session.apply(decision)
        except AvanInputError as err:
            raise AvanInputError(
                f"decision {done + 1} ({decision['action']}): {err}; the {done} before it "
                "were applied and are in the journal"
            ) from err
    status = session.status()
    print(
        f"applied {_count(len(decisions), 'decision')} to {args.session}: "
        + ", ".join(f"{k} {v}" for k, v in status.items())
    )
    return 0


def _attach_volumes(session: Any, device: str) -> None:
    """What re-seeding needs: the probability map, the segmentation, AVAN on the image."""
    from napari_avan.io.export import session_volume
    from napari_avan.models.checkpoint import resolve_model
    from napari_avan.models.device import plan
    from napari_avan.models.partners import avan_assigner

    session.probability = session_volume(session, "prob", "cleft probability")
    session.segmentation = session_volume(session, "segmentation", "segmentation")
    image = session_volume(session, "image", "image")
    if image is not None and session.segmentation is not None:
        model = resolve_model(session.meta.get("models", {}).get("avan"), "avan")
        session.assigner = avan_assigner(
            model, image, session.segmentation, session.voxel_size_nm, run=plan(device)
        )


def cmd_session_status(args: argparse.Namespace) -> int:
    from napari_avan.core.session import Session

    status = Session.open(args.session).status()
    if args.json:
        print(json.dumps(status, indent=2))
    else:
        for key, value in status.items():
            print(f"  {key:<10} {value}")
    return 0
