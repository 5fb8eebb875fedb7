"""``napari-avan evaluate``: metrics of clefts, assignment or the combined system."""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

from napari_avan.cli._common import (
    _FRACTION,
    _NON_NEGATIVE,
    Subparsers,
    _read_labels,
    _same_shape,
    _voxel_size,
    _voxel_size_of,
)
from napari_avan.types import AvanInputError, VoxelSize

#: Defaults of ``--cremi-cutoff`` and ``--cremi-distance`` (the challenge's, in nm); the same
#: numbers as in napari_avan.core.cremi, which is not imported before a command runs.
_CREMI_CUTOFF_NM = 200.0
_CREMI_DISTANCE_NM = 400.0


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser("evaluate", help="metrics of clefts, assignment or the combined system")
    p.add_argument("--json", action="store_true", help="print JSON on stdout")
    ev = p.add_subparsers(dest="what", metavar="WHAT", required=True)
    q = ev.add_parser("clefts", help="object precision/recall/F1 and voxel F1 of cleft labels")
    q.add_argument("--pred", required=True, help="predicted cleft labels (volume spec)")
    q.add_argument("--truth", required=True, help="true cleft labels (volume spec)")
    q.add_argument(
        "--iou", type=_FRACTION, default=0.1, help="IoU needed for a match, 0-1 (default 0.1)"
    )
    q.add_argument("--any-overlap", action="store_true", help="match on any overlap instead")
    _add_cremi_options(q, "the CREMI cleft distances (ADF, ADGT, CREMI score)")
    q.add_argument(
        "--cremi-cutoff",
        type=_NON_NEGATIVE,
        default=_CREMI_CUTOFF_NM,
        metavar="NM",
        help="CREMI: voxels farther than this are false positives/negatives (default 200)",
    )
    q = ev.add_parser("assignment", help="partner accuracy given the true clefts")
    q.add_argument("--pred", required=True, help="predicted edges or partners (CSV)")
    q.add_argument("--truth", required=True, help="true partners CSV (cleft_id,pre_id,post_id)")
    q.add_argument("--polyadic", action="store_true", help="score as polyadic edges")
    q = ev.add_parser("edges", help="combined system: detected clefts plus assignment")
    q.add_argument("--pred-clefts", required=True, help="predicted cleft labels (volume spec)")
    q.add_argument("--pred", required=True, help="predicted edge table (CSV)")
    q.add_argument("--truth-clefts", required=True, help="true cleft labels (volume spec)")
    q.add_argument("--truth", required=True, help="true partners CSV (cleft_id,pre_id,post_id)")
    _add_cremi_options(q, "the CREMI synaptic partner F-score (pairs located by their clefts)")
    q.add_argument(
        "--cremi-distance",
        type=_NON_NEGATIVE,
        default=_CREMI_DISTANCE_NM,
        metavar="NM",
        help="CREMI: largest distance between matched pairs' cleft centroids (default 400)",
    )
    for q in ev.choices.values():
        # SUPPRESS: a --json given before the subcommand is not reset by this default.
        q.add_argument(
            "--json", action="store_true", default=argparse.SUPPRESS, help="print JSON on stdout"
        )
    p.set_defaults(func=cmd_evaluate)


def _add_cremi_options(q: argparse.ArgumentParser, what: str) -> None:
    q.add_argument("--cremi", action="store_true", help=f"also report {what}")
    q.add_argument(
        "--voxel-size",
        type=_voxel_size,
        metavar="Z,Y,X",
        help="voxel size in nm for --cremi (default: the volumes' own)",
    )


def _cremi_voxel_size(
    args: argparse.Namespace, pred: Any, truth: Any, pred_spec: str, truth_spec: str
) -> VoxelSize:
    """``--voxel-size``, else the one the cleft volumes record (they must agree)."""
    if args.voxel_size is not None:
        return args.voxel_size
    known = [v.voxel_size_nm for v in (truth, pred) if v.voxel_size_nm is not None]
    if len(known) == 2 and not all(
        math.isclose(a, b, rel_tol=1e-6) for a, b in zip(known[0], known[1], strict=True)
    ):
        raise AvanInputError(
            f"the true clefts {truth_spec!r} have voxel size {known[0]} nm but the predicted "
            f"clefts {pred_spec!r} have {known[1]} nm: pass --voxel-size Z,Y,X (nm) for --cremi"
        )
    return _voxel_size_of(truth_spec, truth, pred)


def _sorted_keys(value: Any) -> Any:
    """``value`` with the keys of every dict in it sorted (what ``sort_keys`` prints)."""
    if isinstance(value, dict):
        return {k: _sorted_keys(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted_keys(v) for v in value]
    return value


def _print_metrics(
    name: str, metrics: dict[str, Any], as_json: bool, cremi: Any | None = None
) -> None:
    """Our metrics, then (when given) the CREMI metrics under ``"cremi"``.

    JSON keys are sorted within each object, with ``"cremi"`` after our metrics.
    """
    if as_json:
        out = _sorted_keys(metrics)
        if cremi is not None:
            out["cremi"] = _sorted_keys(cremi.to_dict())
        print(json.dumps(out, indent=2))
        return
    _print_table(f"{name} metrics", metrics)
    if cremi is not None:
        _print_table(f"CREMI {name} metrics", asdict(cremi))


def _print_table(title: str, metrics: dict[str, Any]) -> None:
    print(title)
    for key, value in metrics.items():
        if isinstance(value, float):
            print(f"  {key:<24} {value:.4f}")
        elif isinstance(value, (int, str)):
            print(f"  {key:<24} {value}")


def cmd_evaluate(args: argparse.Namespace) -> int:
    from napari_avan.core import metrics as m
    from napari_avan.io import read_partners, read_table

    result: dict[str, Any]
    cremi: Any = None
    if args.what == "clefts":
        pred = _read_labels(args.pred, "predicted clefts")
        truth = _read_labels(args.truth, "true clefts")
        _same_shape(predicted_clefts=pred, true_clefts=truth)
        # with --cremi, an unknown voxel size fails before any work
        voxel_size = (
            _cremi_voxel_size(args, pred, truth, args.pred, args.truth) if args.cremi else None
        )
        result = m.cleft_metrics(
            pred.data, truth.data, iou_threshold=args.iou, any_overlap=args.any_overlap
        ).to_dict()
        if voxel_size is not None:
            from napari_avan.core.cremi import cleft_distances

            cremi = cleft_distances(pred.data, truth.data, voxel_size, cutoff_nm=args.cremi_cutoff)
    elif args.what == "assignment":
        pred_table = read_table(Path(args.pred))
        truth_table = read_partners(Path(args.truth))
        polyadic = True if args.polyadic else None
        result = m.assignment_metrics(pred_table, truth_table, polyadic=polyadic).to_dict()
    else:
        pred_clefts = _read_labels(args.pred_clefts, "predicted clefts")
        true_clefts = _read_labels(args.truth_clefts, "true clefts")
        _same_shape(predicted_clefts=pred_clefts, true_clefts=true_clefts)
        voxel_size = (
            _cremi_voxel_size(args, pred_clefts, true_clefts, args.pred_clefts, args.truth_clefts)
            if args.cremi
            else None
        )
        pred_edges = read_table(Path(args.pred))
        truth_table = read_partners(Path(args.truth))
        result = m.edge_metrics(
            pred_clefts.data, pred_edges, true_clefts.data, truth_table
        ).to_dict()
        if voxel_size is not None:
            from napari_avan.core.cremi import partner_fscore

            cremi = partner_fscore(
                pred_clefts.data,
                pred_edges,
                true_clefts.data,
                truth_table,
                voxel_size,
                max_distance_nm=args.cremi_distance,
            )
    _print_metrics(args.what, result, args.json, cremi)
    return 0
