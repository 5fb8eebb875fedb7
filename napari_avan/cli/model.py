"""``napari-avan model``: manage model folders (``rehash``)."""

from __future__ import annotations

import argparse

from napari_avan.cli._common import Subparsers


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser("model", help="manage model folders")
    mo = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    q = mo.add_parser(
        "rehash",
        help="record the sha256 of a trusted model folder's weights",
        description="Models load only when model.json records the sha256 of their weights. "
        "For a folder you trust whose model.json lacks it (written by hand or by an old "
        "version), this checks that each weights file holds plain tensors and records its "
        "hash. Never rehash a folder from an unknown source.",
    )
    q.add_argument("folder", help="the model folder (weights.pt, model.json)")
    q.set_defaults(func=cmd_model_rehash)


def cmd_model_rehash(args: argparse.Namespace) -> int:
    from napari_avan.models.checkpoint import rehash_model

    for key, digest in rehash_model(args.folder).items():
        print(f"{args.folder}: {key} {digest}")
    return 0
