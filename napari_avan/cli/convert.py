"""``napari-avan convert``: volumes (and partners) written in another format."""

from __future__ import annotations

import argparse
from pathlib import Path

from napari_avan.cli._common import (
    Subparsers,
    _read_labels,
    _refuse_existing,
    _same_shape,
    _voxel_size,
    _voxel_size_of,
)
from napari_avan.types import AvanInputError


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser("convert", help="write volumes (and partners) in another format")
    p.add_argument("--image", required=True, help="EM volume (volume spec)")
    p.add_argument("--segmentation", help="neuron segmentation (volume spec)")
    p.add_argument("--clefts", help="cleft labels (volume spec)")
    p.add_argument("--partners", help="partners CSV (CREMI output only)")
    p.add_argument("--voxel-size", type=_voxel_size, default=None, help="Z,Y,X nm")
    p.add_argument("--to", required=True, choices=["zarr", "zarr2", "ome-zarr", "cremi", "tiff"])
    p.add_argument("--out", required=True)
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.set_defaults(func=cmd_convert)


def cmd_convert(args: argparse.Namespace) -> int:
    from napari_avan.core.files import atomic_path
    from napari_avan.io import read_partners, read_volume, write_cremi, write_volume

    image = read_volume(args.image, args.voxel_size, lazy=False, role="image")
    seg = _read_labels(args.segmentation, "segmentation") if args.segmentation else None
    clefts = _read_labels(args.clefts, "clefts") if args.clefts else None
    _same_shape(image=image, segmentation=seg, clefts=clefts)
    voxel_size = _voxel_size_of(args.image, image, seg, clefts)
    partners = read_partners(Path(args.partners)) if args.partners else None
    out = Path(args.out)
    if args.to == "cremi":
        annotations = None
        if partners is not None:
            if seg is None or clefts is None:
                raise AvanInputError(
                    "CREMI partner annotations need --segmentation and --clefts too"
                )
            from napari_avan.core.tables import edge_table
            from napari_avan.io import cremi_annotations_from_edges

            edges = edge_table(clefts.data, seg.data, partners, voxel_size_nm=voxel_size)
            annotations = cremi_annotations_from_edges(edges, voxel_size)
        write_cremi(
            out,
            image.data,
            voxel_size,
            neuron_ids=None if seg is None else seg.data,
            clefts=None if clefts is None else clefts.data,
            annotations=annotations,
            overwrite=args.overwrite,
        )
        print(f"wrote {out}")
        return 0
    if partners is not None:
        raise AvanInputError(
            f"--partners is only stored in CREMI files; with --to {args.to} copy the CSV instead"
        )
    if args.to == "tiff":
        if seg is not None or clefts is not None:
            raise AvanInputError("a TIFF holds one volume: convert each with its own --image")
        write_volume(out, image.data, voxel_size, format="tiff", overwrite=args.overwrite)
        print(f"wrote {out}")
        return 0
    _refuse_existing(out, args.overwrite)
    # OME-Zarr: the image is the multiscale at the root, labels under labels/ (NGFF);
    # plain zarr: one member per volume.
    ome = args.to == "ome-zarr"
    members = {
        None if ome else "image": image,
        "labels/segmentation" if ome else "segmentation": seg,
        "labels/clefts" if ome else "clefts": clefts,
    }
    # The whole store is built aside and renamed into place once complete.
    with atomic_path(out, overwrite=args.overwrite) as tmp:
        for key, vol in members.items():
            if vol is not None:
                write_volume(tmp, vol.data, voxel_size, format=args.to, key=key)
    print(f"wrote {out}")
    return 0
