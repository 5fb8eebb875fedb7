"""Shared dataclasses, errors and constants (no heavy imports)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

#: Axis order used everywhere inside the package.
AXES = ("z", "y", "x")


class AvanInputError(ValueError):
    """Bad input from the user: the message names the problem and what to do.

    The command line turns it into a one-line message on stderr and exit code 2;
    the napari widgets turn it into a notification.
    """


def one_line(err: BaseException) -> str:
    """The reason an exception gives, on one line (OS errors by their strerror)."""
    if isinstance(err, OSError) and err.strerror:
        text = err.strerror
    else:
        text = str(err) or type(err).__name__
    return " ".join(text.split())


class EdgeStatus(str, Enum):
    """Proofreading status of an edge (docs/architecture.md, the edge table)."""

    PREDICTED = "predicted"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    RESEEDED = "reseeded"
    ADDED = "added"


VoxelSize = tuple[float, float, float]


def check_voxel_size(voxel_size: Any, what: str = "voxel size") -> VoxelSize:
    """Return ``voxel_size`` as a (z, y, x) tuple of positive floats in nm.

    Raises:
        AvanInputError: if it does not have three finite, positive entries.
    """
    try:
        values = tuple(float(v) for v in voxel_size)
    except (TypeError, ValueError) as err:
        raise AvanInputError(
            f"{what} {voxel_size!r} is not three numbers: give it as Z,Y,X in nm, e.g. 40,4,4"
        ) from err
    if len(values) != 3:
        raise AvanInputError(
            f"{what} {voxel_size!r} has {len(values)} entries: give three, Z,Y,X in nm, e.g. 40,4,4"
        )
    for v in values:
        if not math.isfinite(v) or v <= 0:
            raise AvanInputError(
                f"{what} must be positive and finite in nm (z, y, x), got {values!r}: "
                "give it as Z,Y,X, e.g. 40,4,4"
            )
    return (values[0], values[1], values[2])


def check_same_shape(**arrays: Any) -> tuple[int, ...]:
    """Check that all named arrays (or volumes) have one shape and return it.

    Args:
        **arrays: anything with a ``.shape``, by the name the user knows it by
            (``image=...``, ``segmentation=...``).

    Raises:
        AvanInputError: naming the first two whose shapes differ.
    """
    first: tuple[str, tuple[int, ...]] | None = None
    for name, array in arrays.items():
        shape = tuple(int(s) for s in array.shape)
        if first is None:
            first = (name, shape)
        elif shape != first[1]:
            raise AvanInputError(
                f"{name} has shape {shape} but {first[0]} has shape {first[1]}: "
                "give volumes of the same (z, y, x) shape (crop or pad one)"
            )
    return () if first is None else first[1]


def parse_voxel_size(text: str) -> VoxelSize:
    """Parse ``"Z,Y,X"`` (nm) from the command line."""
    parts = [p for p in text.replace("x", ",").split(",") if p.strip()]
    return check_voxel_size(parts, what="voxel size")


@dataclass
class Volume:
    """A 3D array with its voxel size.

    Attributes:
        data: (z, y, x) array; a numpy array or a lazy (dask) array.
        voxel_size_nm: (z, y, x) in nm, or None when the source did not say.
        source: where it came from (a volume spec), for messages.
        attrs: extra metadata read from the source (offset, units, ...).
    """

    data: Any
    voxel_size_nm: VoxelSize | None = None
    source: str = ""
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.data.shape)

    @property
    def dtype(self) -> Any:
        return self.data.dtype


#: Columns of the partner input table (ground truth); docs/architecture.md, the partner table.
PARTNER_COLUMNS = ("cleft_id", "pre_id", "post_id")


@dataclass
class Sample:
    """An EM volume with its labels and partner table (synthetic or ground truth).

    Attributes:
        image: (z, y, x) uint8 EM.
        segmentation: (z, y, x) uint32 neuron ids, 0 background.
        clefts: (z, y, x) uint32 cleft ids, 0 background.
        partners: pandas DataFrame with columns ``cleft_id, pre_id, post_id``,
            one row per pre->post pair.
        voxel_size_nm: (z, y, x) in nm.
        attrs: provenance (generator, seed, options).
    """

    image: Any
    segmentation: Any
    clefts: Any
    partners: Any
    voxel_size_nm: VoxelSize
    attrs: dict[str, Any] = field(default_factory=dict)
