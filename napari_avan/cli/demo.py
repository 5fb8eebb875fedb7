"""``napari-avan demo``: the plugin on the built-in synthetic sample."""

from __future__ import annotations

import argparse
from pathlib import Path

from napari_avan.cli._common import _NON_NEGATIVE_INT, Subparsers


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser(
        "demo",
        help="open the plugin on the built-in synthetic sample",
        description="Open napari with the Detect clefts and Partners docks on the built-in "
        "synthetic sample, with its predictions. Headless (no display, or --headless), it "
        "assigns the viewport, clicks the largest cleft and writes a screenshot, the sample "
        "and the tables to --out instead.",
    )
    p.add_argument("--headless", action="store_true", help="write a screenshot instead of a window")
    p.add_argument("--out", default="demo_out", help="folder for the outputs (default: demo_out)")
    p.add_argument(
        "--seed",
        type=_NON_NEGATIVE_INT,
        default=1,
        help="seed of the synthetic sample (default 1, the sample napari's File menu opens)",
    )
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    # The demo opens napari: the only subcommand that reaches into the plugin layer.
    from napari_avan._napari._demo import run_demo

    result = run_demo(Path(args.out), headless=args.headless, seed=args.seed)
    for line in result.summary_lines():
        print(line)
    return 0
