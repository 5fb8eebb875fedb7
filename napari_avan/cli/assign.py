"""``napari-avan assign``: the edge table of a volume's clefts, by AVAN or a pruner baseline."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from napari_avan.cli._common import (
    _PROBABILITY,
    Subparsers,
    _count,
    _read_labels,
    _refuse_existing,
    _same_shape,
    _voxel_size,
    _voxel_size_of,
    add_bulk_options,
    add_run_options,
    bulk_run_options,
    drive,
    drive_bulk,
    wants_bulk,
)


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser("assign", help="assign partners to clefts (AVAN or a pruner baseline)")
    p.add_argument("image", help="EM volume (volume spec)")
    p.add_argument("--clefts", required=True, help="cleft labels (volume spec)")
    p.add_argument("--segmentation", required=True, help="neuron segmentation (volume spec)")
    p.add_argument("--out", required=True, help="edge table (CSV)")
    p.add_argument(
        "--method", choices=["avan", "mask-pruner", "proximity-pruner"], default="avan",
        help="AVAN (default) or one of the candidate-pruner baselines",
    )  # fmt: skip
    p.add_argument("--model", help="model folder or bundled name (default: the method's bundled)")
    p.add_argument("--voxel-size", type=_voxel_size, default=None, help="Z,Y,X nm")
    p.add_argument(
        "--polyadic",
        action="store_true",
        help="all partners above the thresholds (the presynaptic side falls back to the best "
        "candidate when none passes)",
    )
    p.add_argument(
        "--pre-threshold",
        type=_PROBABILITY,
        default=None,
        help="AVAN, polyadic (default: the model's, chosen on validation data)",
    )
    p.add_argument(
        "--post-threshold",
        type=_PROBABILITY,
        default=None,
        help="AVAN, polyadic (default: the model's, chosen on validation data)",
    )
    p.add_argument("--threshold", type=_PROBABILITY, default=None,
                   help="pruners, polyadic: keep pairs with a probability >= this (default: "
                   "the model's)")  # fmt: skip
    p.add_argument("--tta", action="store_true", help="AVAN: average the in-plane flips")
    add_run_options(p)
    add_bulk_options(p, default_block="32,256,256")
    p.set_defaults(func=cmd_assign)


def cmd_assign(args: argparse.Namespace) -> int:
    from napari_avan.core.tables import edge_table
    from napari_avan.io import read_volume, write_table
    from napari_avan.models.assign import edge_weights, iter_assign
    from napari_avan.models.checkpoint import resolve_model
    from napari_avan.models.device import plan, tune_allocator

    tune_allocator()  # this process runs a network over a whole volume
    if wants_bulk(args):
        return _bulk_assign(args)
    image = read_volume(args.image, args.voxel_size, lazy=False, role="image")
    clefts = _read_labels(args.clefts, "clefts")
    seg = _read_labels(args.segmentation, "segmentation")
    _same_shape(image=image, clefts=clefts, segmentation=seg)
    voxel_size = _voxel_size_of(args.image, image, clefts, seg)
    out = Path(args.out)
    _refuse_existing(out, args.overwrite)
    model = resolve_model(args.model, args.method)
    run = plan(args.device)
    name = str(model.metadata.get("name", Path(args.model or args.method).name))
    if args.method == "proximity-pruner":
        from napari_avan.models.pruners import load_proximity

        load_proximity(model)  # a damaged detector is reported before work starts
    if args.method != "avan":
        return _assign_pruner(args, model, image.data, clefts.data, seg.data, voxel_size, run, out)
    steps = iter_assign(
        model,
        image.data,
        clefts.data,
        seg.data,
        voxel_size,
        run=run,
        polyadic=args.polyadic,
        pre_threshold=args.pre_threshold,
        post_threshold=args.post_threshold,
        flip_tta=args.tta,
    )
    assignments = []
    for step in drive(steps, desc=f"assign on {run.describe()}", unit="patch", quiet=args.quiet):
        assignments.extend(step.finished)
    weights = edge_weights(assignments)
    edges = edge_table(
        clefts.data,
        seg.data,
        weights[["cleft_id", "pre_id", "post_id"]],
        voxel_size_nm=voxel_size,
        weights=weights,
        model=name,
    )
    write_table(edges, out, overwrite=args.overwrite)
    unassigned = sum(1 for a in assignments if not a.edges)
    print(
        f"wrote {out} ({_count(len(edges), 'edge')}; "
        f"{_count(unassigned, 'cleft')} without partners)"
    )
    return 0


def _assign_pruner(
    args: argparse.Namespace,
    model: Any,
    image: Any,
    clefts: Any,
    seg: Any,
    voxel_size: Any,
    run: Any,
    out: Path,
) -> int:
    """``assign --method mask-pruner|proximity-pruner``: the baselines' edges."""
    import numpy as np

    from napari_avan.core.tables import edge_table
    from napari_avan.io import write_table
    from napari_avan.models.pruners import iter_assign_pruner

    steps = iter_assign_pruner(
        model, np.asarray(image), np.asarray(clefts), np.asarray(seg), voxel_size, run=run,
        polyadic=args.polyadic, threshold=args.threshold,
    )  # fmt: skip
    edges = None
    desc = f"{args.method} on {run.describe()}"
    for step in drive(steps, desc=desc, unit="pair", quiet=args.quiet):
        edges = step.edges
    assert edges is not None
    weights = edges.rename(columns={"score": "presyn_wt"}).assign(postsyn_wt=edges["score"])
    table = edge_table(
        np.asarray(clefts),
        np.asarray(seg),
        edges[["cleft_id", "pre_id", "post_id"]],
        voxel_size_nm=voxel_size,
        weights=weights,
        model=str(model.metadata.get("name", args.method)),
    )
    write_table(table, out, overwrite=args.overwrite)
    n_clefts = len(set(np.unique(np.asarray(clefts)).tolist()) - {0})
    missing = n_clefts - edges["cleft_id"].nunique()
    print(
        f"wrote {out} ({_count(len(table), 'edge')}; "
        f"{_count(missing, 'cleft')} without a candidate pair)"
    )
    return 0


def _bulk_assign(args: argparse.Namespace) -> int:
    """``assign`` with AVAN, each cleft once from a region read around it (napari_avan.bulk)."""
    from napari_avan.bulk.assign import iter_bulk_assign, plan_assign_job
    from napari_avan.types import AvanInputError

    if args.method != "avan":
        raise AvanInputError(
            f"--method {args.method} is not available block by block yet: use AVAN, or run "
            "without --workers/--scheduler/--block/--resume on volumes that fit in memory"
        )
    job = plan_assign_job(
        args.image,
        args.clefts,
        args.segmentation,
        Path(args.out),
        model=args.model,
        voxel_size_nm=args.voxel_size,
        polyadic=args.polyadic,
        pre_threshold=args.pre_threshold,
        post_threshold=args.post_threshold,
        block=args.block,
        device=args.device,
        flip_tta=args.tta,
    )
    steps = iter_bulk_assign(job, **bulk_run_options(args))
    result = drive_bulk(steps, "assign, block by block", args.quiet)
    print(
        f"wrote {result.out} ({_count(result.n_edges, 'edge')}; "
        f"{_count(result.unassigned, 'cleft')} without partners; {result.run.describe()})"
    )
    return 0
