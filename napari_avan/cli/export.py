"""``napari-avan export``: a session's corrected labels and edge table in another format."""

from __future__ import annotations

import argparse

from napari_avan.cli._common import Subparsers


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser(
        "export",
        help="write a session's corrected clefts and edges (zarr, ome-zarr, cremi, csv, tiff)",
        description="Write the corrected cleft labels (rejected and deleted clefts removed, "
        "added ones in), the segmentation and image where the format holds them, and the "
        "edge table with each edge's status. The session's image and segmentation are read "
        "from the volume specs it was created with.",
    )
    p.add_argument("session", help="the session folder")
    p.add_argument("--format", required=True, choices=["zarr", "ome-zarr", "cremi", "csv", "tiff"])
    p.add_argument("--out", required=True, help="the file or folder to write")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from napari_avan.core.session import Session
    from napari_avan.io.export import export_session_files

    session = Session.open(args.session)
    out = export_session_files(session, args.format, args.out, overwrite=args.overwrite)
    status = session.status()
    print(f"wrote {out} ({status['clefts'] - status['rejected']} clefts kept)")
    return 0
