"""What the subcommands share: the parser, option types, input checks and the progress bar.

Nothing heavy is imported here at module level (``napari-avan --help`` stays quick).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeAlias, TypeVar

from napari_avan.types import AvanInputError, VoxelSize, check_same_shape, parse_voxel_size

PROG = "napari-avan"

#: A subparsers action: what each command's ``add_parser`` adds its parser to.
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"

T = TypeVar("T")


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line (exit code 2)."""

    def error(self, message: str) -> Any:
        self.exit(2, f"{PROG}: error: {message} (see '{self.prog} --help')\n")


# ----------------------------------------------------------------------------- option types


def _shape(text: str) -> tuple[int, int, int]:
    try:
        parts = tuple(int(p) for p in text.replace("x", ",").split(","))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"shape {text!r} is not Z,Y,X integers") from err
    if len(parts) != 3 or min(parts) <= 0:
        raise argparse.ArgumentTypeError(f"shape {text!r} must be three positive integers Z,Y,X")
    return (parts[0], parts[1], parts[2])


def _number(
    convert: Callable[[str], float], low: float | None, high: float | None, *, open_low: bool
) -> Callable[[str], Any]:
    """An argparse type: a finite number of kind ``convert`` within [low, high]."""
    if low is None:
        lower = ""
    else:
        lower = f"> {low:g}" if open_low else f">= {low:g}"
    upper = "" if high is None else f"<= {high:g}"
    wanted = " and ".join(p for p in (lower, upper) if p) or "finite"
    noun = "an integer" if convert is int else "a number"

    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {noun}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r} must be a finite number ({wanted})")
        too_low = low is not None and (value <= low if open_low else value < low)
        if too_low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{text!r} must be {wanted}")
        return value

    parse.__name__ = f"{noun} {wanted}"
    return parse


#: Option types: probabilities and thresholds, positive and non-negative numbers.
_PROBABILITY = _number(float, 0.0, 1.0, open_low=False)
_POSITIVE = _number(float, 0.0, None, open_low=True)
_NON_NEGATIVE = _number(float, 0.0, None, open_low=False)
_COUNT = _number(int, 1, None, open_low=False)
_NON_NEGATIVE_INT = _number(int, 0, None, open_low=False)
_FRACTION = _number(float, 0.0, 1.0, open_low=True)


def _voxel_size(text: str) -> VoxelSize:
    try:
        return parse_voxel_size(text)
    except AvanInputError as err:
        raise argparse.ArgumentTypeError(str(err)) from err


def _block_shape(text: str) -> tuple[int, int, int]:
    parts = text.replace(" ", "").split(",")
    try:
        values = tuple(int(v) for v in parts)
    except ValueError:
        values = ()
    if len(values) != 3 or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"{text!r} is not three positive integers Z,Y,X")
    return values[0], values[1], values[2]


def add_bulk_options(p: argparse.ArgumentParser, default_block: str = "32,512,512") -> None:
    """``--workers``, ``--scheduler``, ``--block`` and ``--resume``: any of them runs the
    command block by block (napari_avan.bulk) over a volume of any size."""
    g = p.add_argument_group(
        "bulk (any of these runs block by block, for volumes larger than memory)"
    )
    g.add_argument(
        "--workers",
        type=int,
        default=None,
        help="a local dask cluster of N single-thread workers on 127.0.0.1 "
        "(0: every block in this process; default 0)",
    )
    g.add_argument(
        "--scheduler", default=None, help="address of an existing dask scheduler (tcp://host:8786)"
    )
    g.add_argument(
        "--block",
        type=_block_shape,
        default=None,
        help=f"block shape Z,Y,X in voxels (default {default_block}; detect: the output chunks)",
    )
    g.add_argument(
        "--resume",
        action="store_true",
        help="continue an unfinished bulk run into the same output, skipping finished blocks",
    )


def drive_bulk(steps: Iterable[Any], desc: str, quiet: bool) -> Any:
    """Run a bulk job's steps under a progress bar showing the phase; its result."""

    def show_phase(bar: Any, step: Any) -> None:
        bar.set_postfix_str(step.phase, refresh=False)

    result = None
    for step in drive(steps, desc=desc, unit="task", quiet=quiet, show=show_phase):
        result = step.result
    assert result is not None
    return result


def bulk_run_options(args: argparse.Namespace) -> dict[str, Any]:
    """Where and how a bulk job runs, from the bulk options and ``--overwrite``."""
    return {
        "workers": args.workers,
        "scheduler": args.scheduler,
        "resume": args.resume,
        "overwrite": args.overwrite,
    }


def wants_bulk(args: argparse.Namespace) -> bool:
    return any(
        (args.workers is not None, args.scheduler is not None, args.block is not None, args.resume)
    )


# ----------------------------------------------------------------------------- inputs


def add_run_options(p: argparse.ArgumentParser) -> None:
    """``--device``, ``--quiet`` and ``--overwrite``, shared by the commands that run models."""
    p.add_argument("--device", default="auto", help="auto, cuda, mps or cpu")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")


def _read_labels(spec: str, role: str, voxel_size: VoxelSize | None = None) -> Any:
    """A label volume read whole, its dtype checked (:func:`napari_avan.io.read_labels`)."""
    from napari_avan.io import read_labels

    return read_labels(spec, role, voxel_size)


def _voxel_size_of(spec: str, *volumes: Any) -> VoxelSize:
    """The first voxel size any of ``volumes`` knows, else a one-line error naming ``spec``."""
    from napari_avan.io import voxel_size_of

    return voxel_size_of(spec, *volumes)


def _same_shape(**volumes: Any) -> None:
    check_same_shape(**{name: vol for name, vol in volumes.items() if vol is not None})


# ----------------------------------------------------------------------------- outputs


def _count(n: int, noun: str) -> str:
    """``3 clefts``, ``1 cleft``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _make_folder(path: Path) -> Path | None:
    """Create output folder ``path`` and missing parents; the topmost one created, or None."""
    if path.is_dir():
        return None
    top = path
    while not top.parent.exists() and top.parent != top:
        top = top.parent
    try:
        path.mkdir(parents=True)
    except OSError as err:
        raise AvanInputError(f"cannot create the folder {path}: {err.strerror or err}") from err
    return top


def _refuse_existing(path: Path, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise AvanInputError(f"{path} exists: pass --overwrite to replace it")


# ----------------------------------------------------------------------------- progress


def _done_of_total(step: Any) -> tuple[int, int | None]:
    return step.done, step.total


def drive(
    steps: Iterable[T],
    *,
    desc: str,
    unit: str,
    quiet: bool,
    total: int | None = None,
    count: Callable[[T], tuple[int, int | None]] = _done_of_total,
    show: Callable[[Any, T], None] | None = None,
) -> Iterator[T]:
    """Run the progress generator ``steps`` under a tqdm bar (on stderr); yield each step.

    Args:
        steps: the long work (``iter_detect``, ``iter_assign``, ``iter_train``, ...).
        desc, unit: the bar's label and unit; ``quiet`` hides the bar.
        total: the bar's length before the first step reports one.
        count: ``(done, total)`` of a step (default: its ``done`` and ``total``); a total
            of None keeps the bar's length.
        show: called with the bar and each step after the bar moved (postfix, messages).

    The bar is closed when the work ends, before the caller's loop does.
    """
    from tqdm import tqdm

    with tqdm(desc=desc, total=total, unit=unit, disable=quiet) as bar:
        for step in steps:
            done, length = count(step)
            if length is not None:
                bar.total = length
            bar.update(done - bar.n)
            if show is not None:
                show(bar, step)
            yield step
