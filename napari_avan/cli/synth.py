"""``napari-avan synth``: a synthetic EM volume with exact ground truth."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from napari_avan.cli._common import _NON_NEGATIVE_INT, Subparsers, _shape, _voxel_size
from napari_avan.types import AvanInputError


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser("synth", help="write a synthetic EM volume with exact ground truth")
    p.add_argument("--out", required=True, help="output zarr group, e.g. sample.zarr")
    p.add_argument(
        "--shape", type=_shape, default=(32, 256, 256), help="Z,Y,X (default 32,256,256)"
    )
    p.add_argument("--seed", type=_NON_NEGATIVE_INT, default=0)
    p.add_argument("--polyadic", action="store_true", help="one pre and 2-4 posts per cleft")
    p.add_argument("--voxel-size", type=_voxel_size, default=None, help="Z,Y,X nm (default 40,4,4)")
    p.add_argument("--variant", choices=["v1", "v2"], default="v1",
                   help="v1: the fixed generator (default); v2: options drawn per seed "
                   "(voxel size, membranes, vesicles, annotation style, contrast...; "
                   "--voxel-size does not apply)")  # fmt: skip
    p.add_argument("--style", choices=["sheet", "blob"], default=None,
                   help="v2: this annotation style instead of the seed's own draw "
                   "(sheet: thin CREMI-style cleft sheets; blob: masks around the "
                   "release site)")  # fmt: skip
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.set_defaults(func=cmd_synth)


def cmd_synth(args: argparse.Namespace) -> int:
    from napari_avan.core.synth import synthesize
    from napari_avan.io import write_sample

    if args.variant == "v2":
        from napari_avan.core.synth_v2 import synthesize_v2

        if args.voxel_size is not None:
            raise AvanInputError("--voxel-size does not apply to --variant v2 (drawn per seed)")
        sample = synthesize_v2(args.seed, args.shape, polyadic=args.polyadic, style=args.style)
    else:
        if args.style is not None:
            raise AvanInputError("--style applies to --variant v2 only (v1 draws thin sheets)")
        overrides: dict[str, Any] = {"shape": args.shape, "polyadic": args.polyadic}
        if args.voxel_size is not None:
            overrides["voxel_size_nm"] = args.voxel_size
        sample = synthesize(seed=args.seed, **overrides)
    out = write_sample(Path(args.out), sample, overwrite=args.overwrite)
    n_clefts = int(sample.partners["cleft_id"].nunique()) if len(sample.partners) else 0
    print(
        f"wrote {out} (shape {tuple(sample.image.shape)}, voxel size {sample.voxel_size_nm} nm, "
        f"{n_clefts} clefts, {len(sample.partners)} partner pairs)"
    )
    return 0
