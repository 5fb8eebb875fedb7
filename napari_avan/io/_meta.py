"""Small shared pieces of the readers: what a reader found, units, key lists."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from napari_avan.types import AvanInputError, VoxelSize

#: Length units (OME-Zarr / UDUNITS names and common TIFF spellings) in nm.
UNIT_NM = {
    "angstrom": 0.1,
    "picometer": 1e-3,
    "nanometer": 1.0,
    "nm": 1.0,
    "micrometer": 1e3,
    "micron": 1e3,
    "microns": 1e3,
    "um": 1e3,
    "µm": 1e3,
    "μm": 1e3,
    "\\u00b5m": 1e3,
    "millimeter": 1e6,
    "mm": 1e6,
    "centimeter": 1e7,
    "cm": 1e7,
    "meter": 1e9,
    "m": 1e9,
}

#: Array attributes that hold a (z, y, x) voxel size in nm, by convention of the writer.
VOXEL_SIZE_ATTRS = ("voxel_size_nm", "resolution", "voxel_size")


@dataclass
class Found:
    """What a format reader found: the array, its voxel size and extra metadata."""

    data: Any
    voxel_size_nm: tuple[float, ...] | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    #: axis names when the file says (OME-Zarr, TIFF), for error messages.
    axes: tuple[str, ...] | None = None


def unit_to_nm(unit: Any) -> float | None:
    """Nanometres per ``unit``, or None for an unknown or missing unit."""
    if not isinstance(unit, str):
        return None
    return UNIT_NM.get(unit.strip().lower())


def voxel_size_from_attrs(attrs: Mapping[str, Any]) -> tuple[float, ...] | None:
    """A (z, y, x) nm voxel size from array attributes written by common tools.

    ``voxel_size_nm`` (napari-avan), ``resolution`` (CREMI, funlib), ``voxel_size``
    (funlib) are in nm; ``element_size_um`` (ilastik, Fiji HDF5) is in micrometres.
    Values are returned unvalidated; :func:`read_volume` validates them.
    """
    for name in VOXEL_SIZE_ATTRS:
        if name in attrs:
            values = _floats(attrs[name])
            if values is not None:
                return values
    if "element_size_um" in attrs:
        values = _floats(attrs["element_size_um"])
        if values is not None:
            return tuple(v * 1e3 for v in values)
    return None


def _floats(value: Any) -> tuple[float, ...] | None:
    try:
        return tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None


def exact_nm(values: Iterable[float], factors: Iterable[float]) -> tuple[float, ...]:
    """Multiply by unit factors, avoiding float noise for factor 1 (nm stays exact)."""
    out = []
    for v, f in zip(values, factors, strict=True):
        x = float(v) if f == 1.0 else float(v) * f
        # 0.0046 um * 1000 = 4.6000000000000005: round to 12 significant digits.
        if f != 1.0 and x != 0 and math.isfinite(x):
            x = float(f"{x:.12g}")
        out.append(x)
    return tuple(out)


def list_text(names: Iterable[str], limit: int = 20) -> str:
    """``a, b, c`` (at most ``limit`` names, then a count)."""
    names = list(names)
    if not names:
        return "(none)"
    shown = ", ".join(names[:limit])
    if len(names) > limit:
        shown += f", ... ({len(names) - limit} more)"
    return shown


def missing_key(key: str, where: str, available: Iterable[str]) -> AvanInputError:
    """The error for a key that is not in a file, listing the keys that are."""
    return AvanInputError(f"key {key!r} not in {where}; available: {list_text(available)}")


def several_arrays(where: str, available: Iterable[str]) -> AvanInputError:
    """The error for a file or group holding several arrays and no key given."""
    names = list(available)
    example = names[0] if names else "KEY"
    return AvanInputError(
        f"{where} holds several arrays ({list_text(names)}): "
        f"choose one as PATH:KEY, e.g. {where}:{example}"
    )


def as_voxel_size(values: tuple[float, ...] | None) -> VoxelSize | None:
    """``values`` as a 3-tuple, or None."""
    if values is None:
        return None
    return (float(values[0]), float(values[1]), float(values[2]))
