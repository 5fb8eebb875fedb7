"""``napari-avan model``: manage model folders (``rehash``, ``compact``)."""

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
    q = mo.add_parser(
        "compact",
        help="copy a model folder with its weights stored as float16 (half the size)",
        description="Writes a copy of a model folder whose floating-point weights are stored "
        "as float16; they load back into float32 networks. Prints the sizes and the largest "
        "difference between the two models' outputs on a fixed input.",
    )
    q.add_argument("folder", help="the model folder to copy")
    q.add_argument("--out", required=True, help="the new folder (must not exist)")
    q.set_defaults(func=cmd_model_compact)


def cmd_model_rehash(args: argparse.Namespace) -> int:
    from napari_avan.models.checkpoint import rehash_model

    for key, digest in rehash_model(args.folder).items():
        print(f"{args.folder}: {key} {digest}")
    return 0


def cmd_model_compact(args: argparse.Namespace) -> int:
    from napari_avan.models.checkpoint import compact_model

    done = compact_model(args.folder, args.out)
    print(
        f"{args.out}: weights {done['before'] / 2**20:.2f} MiB -> {done['after'] / 2**20:.2f} "
        f"MiB; largest output difference {done['max_output_difference']:.2e}"
    )
    return 0
