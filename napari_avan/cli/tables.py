"""``napari-avan tables``: the cleft table (and edge table) of label volumes."""

from __future__ import annotations

import argparse
from pathlib import Path

from napari_avan.cli._common import (
    Subparsers,
    _count,
    _make_folder,
    _read_labels,
    _refuse_existing,
    _same_shape,
    _voxel_size,
)
from napari_avan.types import AvanInputError


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser("tables", help="cleft table (and edge table) from label volumes")
    p.add_argument("--clefts", required=True, help="cleft labels (volume spec)")
    p.add_argument("--prob", help="cleft probability map, for the score column")
    p.add_argument("--segmentation", help="neuron segmentation, for the edge table")
    p.add_argument("--partners", help="partners CSV (cleft_id,pre_id,post_id), for the edge table")
    p.add_argument("--voxel-size", type=_voxel_size, default=None, help="Z,Y,X nm")
    p.add_argument("--out", required=True, help="output folder for clefts.csv and edges.csv")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.set_defaults(func=cmd_tables)


def cmd_tables(args: argparse.Namespace) -> int:
    from napari_avan.core.files import remove_path
    from napari_avan.core.tables import cleft_table, edge_table
    from napari_avan.io import read_partners, read_volume, write_tables

    clefts = _read_labels(args.clefts, "clefts", args.voxel_size)
    prob = read_volume(args.prob, lazy=False, role="cleft probability") if args.prob else None
    seg = _read_labels(args.segmentation, "segmentation") if args.segmentation else None
    _same_shape(clefts=clefts, cleft_probability=prob, segmentation=seg)
    if (seg is None) != (args.partners is None):
        raise AvanInputError("the edge table needs both --segmentation and --partners")
    partners = read_partners(Path(args.partners)) if args.partners else None
    voxel_size = clefts.voxel_size_nm or (seg.voxel_size_nm if seg is not None else None)

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise AvanInputError(f"--out {out} is a file: give a folder for clefts.csv and edges.csv")
    targets = [out / "clefts.csv"] + ([out / "edges.csv"] if seg is not None else [])
    for target in targets:
        _refuse_existing(target, args.overwrite)
    # Compute everything before writing anything, so bad input leaves no partial output.
    cleft_df = cleft_table(clefts.data, None if prob is None else prob.data)
    edge_df = None
    if seg is not None:
        if voxel_size is None:
            raise AvanInputError(
                "the voxel size is unknown: pass --voxel-size Z,Y,X (nm), e.g. 40,4,4"
            )
        assert partners is not None  # checked with the segmentation above
        edge_df = edge_table(clefts.data, seg.data, partners, voxel_size_nm=voxel_size)
    created = _make_folder(out)
    try:
        tables = {targets[0]: cleft_df} | ({targets[1]: edge_df} if edge_df is not None else {})
        write_tables(tables, overwrite=args.overwrite)
    except BaseException:
        if created is not None:
            remove_path(created)
        raise
    print(f"wrote {targets[0]} ({_count(len(cleft_df), 'cleft')})")
    if edge_df is not None:
        print(f"wrote {targets[1]} ({_count(len(edge_df), 'edge')})")
    return 0
