"""``napari-avan session``: create a proofreading session, apply decisions, print its status."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from napari_avan.cli._common import (
    Subparsers,
    _count,
    _read_labels,
    _same_shape,
    _voxel_size,
    _voxel_size_of,
    add_bulk_options,
    drive,
    drive_bulk,
    wants_bulk,
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
        "it takes the partners from the table. Every cleft starts pending. With any bulk "
        "option it runs block by block and never reads a volume whole (an unfinished run "
        "waits in SESSION.bulk/ beside the session: --resume continues it), and the session "
        "keeps its labels on disk when they are larger than memory.",
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
    add_bulk_options(q, default_block="32,512,512 to detect, 32,256,256 to assign")
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

    if wants_bulk(args):
        return _bulk_create(args)
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


# ----------------------------------------------------------------------------- block by block

#: Beside the session ``SESSION``, the unfinished bulk run that makes it: ``SESSION.bulk``.
STAGING_SUFFIX = ".bulk"


def _staging(out: Path) -> Path:
    return out.with_name(out.name + STAGING_SUFFIX)


def _bulk_create(args: argparse.Namespace) -> int:
    """``session create`` block by block (napari_avan.bulk): no volume is read whole.

    The run is staged in ``SESSION.bulk/``: the detection (``detect.zarr``, unless
    ``--clefts``), the assignment (``edges.csv`` and its ``decisions.jsonl``, unless
    ``--edges``) and the settings (``create.json``, checked by ``--resume``). The session is
    then made from them, the detection store moved into it as ``cleft_prob.zarr``, and the
    staging folder removed.
    """
    from napari_avan.core.session import Session
    from napari_avan.io import read_table, read_volume

    out = Path(args.session)
    staging = _staging(out)
    if out.exists():
        if args.resume and staging.is_dir() and (out / "session.json").is_file():
            _finish_bulk(out, staging)  # the session was made: only the tidying was left
            _report(out, Session.open(out))
            return 0
        raise AvanInputError(f"{out} exists: choose a new session folder")
    if staging.exists() and not args.resume:
        raise AvanInputError(
            f"{staging} holds an unfinished 'session create' of {out}: pass --resume to "
            f"continue it, or remove {staging} to start again"
        )
    # metadata only: shapes and voxel sizes are checked before anything runs
    image = read_volume(args.image, args.voxel_size, lazy=True, role="image")
    seg = read_volume(args.segmentation, args.voxel_size, lazy=True, role="segmentation")
    clefts_in = read_volume(args.clefts, args.voxel_size, role="clefts") if args.clefts else None
    prob_in = read_volume(args.prob, role="cleft probability") if args.prob else None
    _same_shape(image=image, segmentation=seg, clefts=clefts_in, cleft_probability=prob_in)
    vs = _voxel_size_of(args.image, image, seg, clefts_in)
    for role, volume in (("segmentation", seg), ("clefts", clefts_in)):
        if volume is not None and volume.data.dtype.kind not in "ui":
            raise AvanInputError(
                f"{role} {volume.source} has dtype {volume.data.dtype}: labels must be integers "
                "(0 background, ids 1..N)"
            )
    if args.edges and not args.clefts:
        raise AvanInputError("--edges describes given clefts: pass --clefts too")
    edges = read_table(Path(args.edges)) if args.edges else None
    specs = {k: _absolute(getattr(args, k)) if getattr(args, k) else None
             for k in ("image", "segmentation", "clefts", "prob")}  # fmt: skip
    settings = {
        **specs,
        "edges": str(Path(args.edges).resolve()) if args.edges else None,
        "voxel_size_nm": list(vs),
        "detector": args.detector,
        "avan": args.avan,
        "block": None if args.block is None else list(args.block),
    }
    _stage(staging, settings)
    try:
        session = _staged_run(args, specs, edges, vs, out, staging)
    except KeyboardInterrupt:
        print(f"the same command with --resume continues from {staging}", file=sys.stderr)
        raise
    _report(out, session)
    return 0


def _staged_run(
    args: argparse.Namespace,
    specs: dict[str, str | None],
    edges: Any,
    vs: Any,
    out: Path,
    staging: Path,
) -> Any:
    """Detect and assign into the staging folder (or continue doing so), make the session
    from what they wrote, tidy up; the session."""
    from napari_avan.core.session import Session, records_from_partners

    # the staging folder is new or --resume was given: the jobs continue what they find
    run = {"workers": args.workers, "scheduler": args.scheduler, "resume": True}
    models: dict[str, str] = {}
    if specs["clefts"] is not None:
        clefts, prob = specs["clefts"], specs["prob"]
    else:
        clefts, prob = _bulk_detect(args, specs["image"], vs, staging, run)
        models["detector"] = str(args.detector or "cleft-detector")
    if edges is not None:
        records = records_from_partners(edges)
    else:
        records = _bulk_records(args, specs, clefts, vs, staging, run)
        models["avan"] = str(args.avan or "avan")
    volumes = {
        "image": specs["image"],
        "segmentation": specs["segmentation"],
        # the detector's map, moved into the session folder (_finish_bulk)
        "prob": specs["prob"] if specs["clefts"] is not None else "cleft_prob.zarr:cleft_prob",
    }
    from napari_avan.bulk.volumes import LazyVolume

    # read region by region (whole only when the session holds its labels in memory)
    labels: Any = LazyVolume(clefts, vs, "clefts")
    probability: Any = None if prob is None else LazyVolume(prob, vs, "cleft probability")
    session = Session.create(
        out, labels, vs, records=records, probability=probability, volumes=volumes,
        models=models,
    )  # fmt: skip
    _finish_bulk(out, staging)
    return session


def _stage(staging: Path, settings: dict[str, Any]) -> None:
    """Create the staging folder with its settings, or check them before resuming."""
    path = staging / "create.json"
    if path.is_file():
        try:
            before = json.loads(path.read_text())
        except (OSError, ValueError):
            before = {}
        from napari_avan.bulk.cluster import changed_settings

        changed = changed_settings(before, settings)
        if changed:
            raise AvanInputError(
                f"{staging} was started with other settings ({', '.join(changed)} differ): "
                f"rerun with the same ones, or remove {staging} to start again"
            )
        return
    try:
        staging.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise AvanInputError(f"cannot create {staging}: {err.strerror or err}") from err
    tmp = staging / ".create.json.tmp"
    tmp.write_text(json.dumps(settings, indent=1))
    os.replace(tmp, path)


def _drive_staged(steps: Any, desc: str, quiet: bool, staging: Path) -> Any:
    """A bulk job's result (:func:`drive_bulk`); its advice to use ``--overwrite`` (which
    ``session create`` has not) names the staging folder instead."""
    try:
        return drive_bulk(steps, desc, quiet)
    except AvanInputError as err:
        if "--overwrite" not in str(err):
            raise
        raise AvanInputError(
            f"{err} ('session create' has no --overwrite: remove {staging} to start again)"
        ) from err


def _bulk_detect(
    args: argparse.Namespace, image: str | None, vs: Any, staging: Path, run: dict[str, Any]
) -> tuple[str, str]:
    """Detect into ``staging/detect.zarr`` (or finish doing so); its clefts and map specs."""
    from napari_avan.bulk import iter_bulk_detect, plan_job
    from napari_avan.bulk.detect import LEDGER

    assert image is not None
    store = staging / "detect.zarr"
    started = (store / LEDGER / "params.json").is_file()
    finished = (store / "clefts.csv").is_file() and not (store / LEDGER).exists()
    if store.exists() and not (started or finished):
        shutil.rmtree(store)  # stopped while it was being created: it holds nothing yet
    job = plan_job(
        image, store, model=args.detector, voxel_size_nm=vs, block=args.block,
        device=args.device,
    )  # fmt: skip
    _drive_staged(iter_bulk_detect(job, **run), "detect, block by block", args.quiet, staging)
    return f"{store}:clefts", f"{store}:cleft_prob"


def _bulk_records(
    args: argparse.Namespace,
    specs: dict[str, str | None],
    clefts: str,
    vs: Any,
    staging: Path,
    run: dict[str, Any],
) -> dict[int, Any]:
    """AVAN's assignment of every cleft (polyadic, as in memory), block by block, into
    ``staging/edges.csv`` and its ``decisions.jsonl``; each cleft's record from its
    decision."""
    from napari_avan.bulk import iter_bulk_assign, plan_assign_job
    from napari_avan.core.session import CleftRecord, check_decision

    image, seg = specs["image"], specs["segmentation"]
    assert image is not None and seg is not None
    out, decisions = staging / "edges.csv", staging / "decisions.jsonl"
    ledger = Path(f"{out}.bulk")
    if ledger.exists() and not (ledger / "params.json").is_file():
        shutil.rmtree(ledger)  # stopped while it was being created: it holds nothing yet
    job = plan_assign_job(
        image, clefts, seg, out, model=args.avan, voxel_size_nm=vs, polyadic=True,
        block=args.block, device=args.device, decisions=decisions,
    )  # fmt: skip
    _drive_staged(iter_bulk_assign(job, **run), "assign, block by block", args.quiet, staging)
    records = {}
    for line in decisions.read_text().splitlines():
        if line.strip():
            decision = check_decision(json.loads(line))
            records[int(decision["cleft"])] = CleftRecord().assigned(decision)
    return records


def _finish_bulk(out: Path, staging: Path) -> None:
    """Move the detection store into the made session as ``cleft_prob.zarr`` (its labels
    dropped: the session holds them) and remove the staging folder."""
    store, kept = staging / "detect.zarr", out / "cleft_prob.zarr"
    if store.exists() and not kept.exists():
        shutil.move(str(store), str(kept))  # a rename: the staging folder is beside
    if (kept / "clefts").is_dir():
        shutil.rmtree(kept / "clefts")
    shutil.rmtree(staging)


def _report(out: Path, session: Any) -> None:
    where = "in memory" if session.in_memory else f"on disk ({out / 'clefts.zarr'})"
    n = session.status()["clefts"]
    print(f"wrote {out} ({_count(n, 'cleft')}, all pending; labels {where})")


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
