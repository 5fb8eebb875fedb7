"""``main``: parse, run one subcommand, turn failures into one line and an exit code."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

from napari_avan import __version__
from napari_avan.cli import (
    assign,
    bootstrap,
    convert,
    demo,
    detect,
    evaluate,
    export,
    model,
    session,
    synth,
    tables,
    train,
)
from napari_avan.cli._common import PROG, _Parser
from napari_avan.types import AvanInputError, one_line

#: The subcommands in the order ``--help`` lists them; each module has ``add_parser(sub)``.
COMMANDS = (
    demo, synth, detect, assign, train, evaluate, model, tables, convert, session, export,
    bootstrap,
)  # fmt: skip

#: Commands that run torch. Its import is not safe to interrupt: a KeyboardInterrupt
#: inside its native module set-up aborts the process (C++ terminate).
TORCH_COMMANDS = frozenset({"detect", "assign", "train", "model", "session", "bootstrap"})


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Find synaptic clefts in 3D EM and assign their partners (AVAN).",
        epilog="Volumes are given as PATH or PATH:KEY (zarr member, HDF5 dataset, npz key, "
        "OME-Zarr level); arrays are (z, y, x), voxel sizes Z,Y,X in nm.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def _fail(message: str) -> int:
    """Print ``message`` as one line on stderr; the exit code of bad input."""
    print(f"{PROG}: error: {' '.join(message.split())}", file=sys.stderr)
    return 2


def _terminate(signum: int, frame: Any) -> None:
    # SIGTERM unwinds like Ctrl-C, so that temporaries are removed on the way out.
    raise KeyboardInterrupt


def _run(args: argparse.Namespace) -> int:
    try:
        if args.command in TORCH_COMMANDS:
            from napari_avan.core.files import interrupts_held

            with interrupts_held():  # Ctrl-C during the import is delivered right after it
                importlib.import_module("torch")
        code = int(args.func(args))
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
        return code
    except AvanInputError as err:
        return _fail(str(err))
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader of our output went away (``| head``): stop writing to it.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return _fail("the output pipe was closed before everything was written")
    except MemoryError:
        return _fail("out of memory: give a smaller volume or crop it, or use a larger machine")
    except OSError as err:
        where = f" {err.filename}" if err.filename else ""
        return _fail(f"operating system error{where}: {one_line(err)}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if hasattr(args, "argv") and argv is not None:
        args.argv = list(argv)  # the command recorded beside trained weights
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        code = _run(args)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    if argv is None and previous is not None:
        # The work is done and reported. A signal during interpreter shutdown would only
        # kill the process (exit -2) or print a traceback after the fact.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if code == 130:
            # Interrupted, temporaries removed: skip the shutdown of whatever the interrupt
            # cut short (an import, zarr's event loop), which can end in SIGINT itself.
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(OSError, ValueError):
                    stream.flush()
            os._exit(code)
    return code
