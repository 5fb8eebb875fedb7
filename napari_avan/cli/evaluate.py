"""``napari-avan evaluate``: metrics of clefts, assignment or the combined system."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from napari_avan.cli._common import _FRACTION, Subparsers, _read_labels, _same_shape


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
    q = ev.add_parser("assignment", help="partner accuracy given the true clefts")
    q.add_argument("--pred", required=True, help="predicted edges or partners (CSV)")
    q.add_argument("--truth", required=True, help="true partners CSV (cleft_id,pre_id,post_id)")
    q.add_argument("--polyadic", action="store_true", help="score as polyadic edges")
    q = ev.add_parser("edges", help="combined system: detected clefts plus assignment")
    q.add_argument("--pred-clefts", required=True, help="predicted cleft labels (volume spec)")
    q.add_argument("--pred", required=True, help="predicted edge table (CSV)")
    q.add_argument("--truth-clefts", required=True, help="true cleft labels (volume spec)")
    q.add_argument("--truth", required=True, help="true partners CSV (cleft_id,pre_id,post_id)")
    for q in ev.choices.values():
        # SUPPRESS: a --json given before the subcommand is not reset by this default.
        q.add_argument(
            "--json", action="store_true", default=argparse.SUPPRESS, help="print JSON on stdout"
        )
    p.set_defaults(func=cmd_evaluate)


def _print_metrics(name: str, metrics: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(metrics, indent=2, sort_keys=True))
        return
    print(f"{name} metrics")
    for key, value in metrics.items():
        if isinstance(value, float):
            print(f"  {key:<24} {value:.4f}")
        elif isinstance(value, (int, str)):
            print(f"  {key:<24} {value}")


def cmd_evaluate(args: argparse.Namespace) -> int:
    from napari_avan.core import metrics as m
    from napari_avan.io import read_partners, read_table

    result: dict[str, Any]
    if args.what == "clefts":
        pred = _read_labels(args.pred, "predicted clefts")
        truth = _read_labels(args.truth, "true clefts")
        _same_shape(predicted_clefts=pred, true_clefts=truth)
        result = m.cleft_metrics(
            pred.data, truth.data, iou_threshold=args.iou, any_overlap=args.any_overlap
        ).to_dict()
    elif args.what == "assignment":
        pred_table = read_table(Path(args.pred))
        truth_table = read_partners(Path(args.truth))
        polyadic = True if args.polyadic else None
        result = m.assignment_metrics(pred_table, truth_table, polyadic=polyadic).to_dict()
    else:
        pred_clefts = _read_labels(args.pred_clefts, "predicted clefts")
        true_clefts = _read_labels(args.truth_clefts, "true clefts")
        _same_shape(predicted_clefts=pred_clefts, true_clefts=true_clefts)
        pred_edges = read_table(Path(args.pred))
        truth_table = read_partners(Path(args.truth))
        result = m.edge_metrics(
            pred_clefts.data, pred_edges, true_clefts.data, truth_table
        ).to_dict()
    _print_metrics(args.what, result, args.json)
    return 0
