"""``napari-avan detect``: cleft probability, cleft labels and the cleft table of a volume."""

from __future__ import annotations

import argparse
from pathlib import Path

from napari_avan.cli._common import (
    _NON_NEGATIVE,
    _NON_NEGATIVE_INT,
    _PROBABILITY,
    Subparsers,
    _count,
    _refuse_existing,
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
    p = sub.add_parser("detect", help="detect clefts with a trained cleft detector")
    p.add_argument("image", help="EM volume (volume spec)")
    p.add_argument("--out", required=True, help="output zarr group (cleft_prob, clefts, CSV)")
    p.add_argument(
        "--model",
        help="model folder (see napari-avan train) or bundled name (default: cleft-detector)",
    )
    p.add_argument("--voxel-size", type=_voxel_size, default=None, help="Z,Y,X nm")
    p.add_argument(
        "--threshold",
        type=_PROBABILITY,
        help="cleft probability cut, 0-1 (default: the model's, else 0.5)",
    )
    p.add_argument(
        "--min-size",
        type=_NON_NEGATIVE_INT,
        help="smallest cleft in voxels (default: the model's, else 50)",
    )
    p.add_argument(
        "--join-radius-nm",
        type=_NON_NEGATIVE,
        default=0.0,
        help="join fragments closer in-plane (nm)",
    )
    p.add_argument("--tta", action="store_true", help="average the in-plane flips")
    add_run_options(p)
    add_bulk_options(p)
    p.set_defaults(func=cmd_detect)


def cmd_detect(args: argparse.Namespace) -> int:
    from napari_avan.core.files import atomic_path
    from napari_avan.io import read_volume, write_table, write_volume
    from napari_avan.models.checkpoint import resolve_model
    from napari_avan.models.detect import iter_detect
    from napari_avan.models.device import plan, tune_allocator

    tune_allocator()  # this process runs a network over a whole volume
    if wants_bulk(args):
        return _bulk_detect(args)
    image = read_volume(args.image, args.voxel_size, lazy=False, role="image")
    vs = _voxel_size_of(args.image, image)
    out = Path(args.out)
    _refuse_existing(out, args.overwrite)
    model = resolve_model(args.model, "cleft-detector")
    run = plan(args.device)
    steps = iter_detect(
        model,
        image.data,
        vs,
        run=run,
        threshold=args.threshold,
        min_size=args.min_size,
        join_radius_nm=args.join_radius_nm,
        flip_tta=args.tta,
    )
    detection = None
    for step in drive(steps, desc=f"detect on {run.describe()}", unit="patch", quiet=args.quiet):
        detection = step.result
    assert detection is not None
    # One store, renamed into place whole: an interruption never leaves part of it.
    with atomic_path(out, overwrite=args.overwrite) as tmp:
        write_volume(tmp, detection.prob, vs, format="zarr", key="cleft_prob")
        write_volume(tmp, detection.clefts, vs, format="zarr", key="clefts")
        write_table(detection.table, tmp / "clefts.csv")
    print(f"wrote {out} ({_count(len(detection.table), 'cleft')})")
    return 0


def _bulk_detect(args: argparse.Namespace) -> int:
    """``detect`` block by block (napari_avan.bulk): the volume is never read whole."""
    from napari_avan.bulk import iter_bulk_detect, plan_job

    job = plan_job(
        args.image,
        Path(args.out),
        model=args.model,
        voxel_size_nm=args.voxel_size,
        threshold=args.threshold,
        min_size=args.min_size,
        block=args.block,
        device=args.device,
        flip_tta=args.tta,
        join_radius_nm=args.join_radius_nm,
    )
    steps = iter_bulk_detect(job, **bulk_run_options(args))
    result = drive_bulk(steps, "detect, block by block", args.quiet)
    print(f"wrote {result.out} ({_count(result.n_clefts, 'cleft')}; {result.run.describe()})")
    return 0
