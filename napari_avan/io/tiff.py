"""TIFF stacks: a multi-page TIFF is a z stack; ImageJ calibration gives the voxel size."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from napari_avan.core.files import atomic_path, write_buffered
from napari_avan.io._arrays import as_numpy
from napari_avan.io._meta import Found, exact_nm, unit_to_nm
from napari_avan.io.spec import VolumeSpec
from napari_avan.types import AvanInputError, VoxelSize

#: Data types ImageJ hyperstacks can hold; others are written as shaped TIFF.
IMAGEJ_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32))

_MAX_RATIONAL = 2**32 - 1


def _pixels_per_unit(size: float) -> tuple[int, int]:
    """A TIFF RATIONAL (numerator, denominator) for ``1 / size``.

    The shortest decimal of ``size`` is used (4.6 -> 5/23) so that reading it back
    as ``float(Fraction(den, num))`` gives ``size`` exactly where it fits in 32 bits.
    """
    inverse = 1 / Fraction(repr(float(size)))
    if inverse.numerator > _MAX_RATIONAL or inverse.denominator > _MAX_RATIONAL:
        inverse = inverse.limit_denominator(_MAX_RATIONAL)
        while inverse.numerator > _MAX_RATIONAL:
            inverse = inverse.limit_denominator(max(1, inverse.denominator // 2))
    return inverse.numerator, inverse.denominator


def _size_from_rational(value: Any) -> float | None:
    try:
        num, den = int(value[0]), int(value[1])
    except (TypeError, ValueError, IndexError):
        return None
    if num <= 0 or den <= 0:
        return None
    return float(Fraction(den, num))


def _parse_triplet(text: Any) -> tuple[float, ...] | None:
    try:
        values = tuple(float(v) for v in str(text).split(","))
    except ValueError:
        return None
    return values if len(values) == 3 else None


def _imagej_voxel_size(tif: Any, attrs: dict[str, Any]) -> tuple[float, ...] | None:
    meta = tif.imagej_metadata or {}
    exact = _parse_triplet(meta.get("voxel_size_nm")) if "voxel_size_nm" in meta else None
    if exact is not None:
        return exact
    factor = unit_to_nm(meta.get("unit"))
    page = tif.pages[0]
    x_tag = page.tags.get("XResolution")
    y_tag = page.tags.get("YResolution")
    x = _size_from_rational(x_tag.value) if x_tag is not None else None
    y = _size_from_rational(y_tag.value) if y_tag is not None else x
    spacing = meta.get("spacing")
    if meta.get("unit") is not None:
        attrs["unit"] = meta.get("unit")
    if factor is None or x is None or y is None or spacing is None:
        # Without a unit or a z spacing the calibration is partial: do not guess.
        return None
    return exact_nm((float(spacing), y, x), (factor, factor, factor))


@contextlib.contextmanager
def _damage_reports() -> Iterator[list[str]]:
    """Collect what tifffile logs about a damaged file (it reads what it can, and warns).

    A truncated stack otherwise comes back silently as fewer sections.
    """
    found: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            text = record.getMessage()
            if any(word in text.lower() for word in ("invalid", "corrupt", "truncat")):
                found.append(" ".join(text.split()))

    logger = logging.getLogger("tifffile")
    handler = Collect(logging.WARNING)
    logger.addHandler(handler)
    propagate, logger.propagate = logger.propagate, False
    try:
        yield found
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def read_tiff(spec: VolumeSpec, lazy: bool) -> Found:
    """Read a TIFF stack into numpy (TIFF is not chunked, so ``lazy`` changes nothing)."""
    import tifffile

    del lazy
    if spec.key is not None:
        raise AvanInputError(f"{spec.path} is a TIFF file and has no keys: drop ':{spec.key}'")
    attrs: dict[str, Any] = {}
    try:
        with _damage_reports() as damage, tifffile.TiffFile(spec.path) as tif:
            series = tif.series[0]
            axes = tuple(series.axes.lower())
            same_pages = len(tif.series) > 1 and all(
                s.shape == series.shape and s.dtype == series.dtype for s in tif.series
            )
            if series.ndim == 2 and same_pages:
                # Pages written one by one come back as one series per page: stack them in z.
                data = np.stack([s.asarray() for s in tif.series])
                axes = ("z", *axes)
            else:
                data = series.asarray()
            expected = (tif.imagej_metadata or {}).get("images") if tif.is_imagej else None
            if isinstance(expected, int) and expected > len(tif.pages):
                damage.append(
                    f"ImageJ metadata lists {expected} images, the file holds {len(tif.pages)}"
                )
            if damage:
                raise AvanInputError(
                    f"cannot read {spec.path} as TIFF: {damage[0]}; the file may be truncated or "
                    "corrupt: copy or export it again"
                )
            voxel_size = None
            if tif.is_shaped and tif.shaped_metadata:
                shaped = tif.shaped_metadata[0]
                if "voxel_size_nm" in shaped:
                    voxel_size = tuple(float(v) for v in shaped["voxel_size_nm"])
            if voxel_size is None and tif.is_imagej:
                voxel_size = _imagej_voxel_size(tif, attrs)
                if data.ndim == 2 and "voxel_size_nm" in (tif.imagej_metadata or {}):
                    # Our own single-section stack: ImageJ drops the z axis of size 1.
                    data, axes = data[np.newaxis], ("z", *axes)
    except AvanInputError:
        raise
    except (OSError, ValueError, tifffile.TiffFileError) as err:
        raise AvanInputError(f"cannot read {spec.path} as TIFF: {err}") from err
    if "s" in axes and data.shape[-1] in (3, 4):
        axes = (*axes[:-1], "c")  # samples per pixel: colour channels
    return Found(data=data, voxel_size_nm=voxel_size, attrs=attrs, axes=axes)


def write_tiff(path: Path, data: Any, voxel_size_nm: VoxelSize | None, *, overwrite: bool) -> Path:
    """Write a (z, y, x) stack as TIFF.

    uint8, uint16 and float32 are written as ImageJ hyperstacks with unit ``nm``,
    ``spacing`` (z) and X/YResolution, plus a ``voxel_size_nm`` entry that keeps the
    exact floats; other dtypes (uint32, uint64 labels) as shaped TIFF whose JSON
    description holds ``voxel_size_nm``.
    """
    import tifffile

    array = as_numpy(data)
    with atomic_path(path, overwrite=overwrite) as tmp:
        if array.dtype in IMAGEJ_DTYPES:
            metadata: dict[str, Any] = {"axes": "ZYX"}
            resolution = None
            if voxel_size_nm is not None:
                z, y, x = voxel_size_nm
                metadata.update(
                    spacing=float(z),
                    unit="nm",
                    voxel_size_nm=",".join(repr(float(v)) for v in voxel_size_nm),
                )
                resolution = (_pixels_per_unit(x), _pixels_per_unit(y))
            options: dict[str, Any] = {
                "imagej": True,
                "resolution": resolution,
                "metadata": metadata,
            }
        else:
            shaped: dict[str, Any] = {"axes": "ZYX"}
            if voxel_size_nm is not None:
                shaped["voxel_size_nm"] = [float(v) for v in voxel_size_nm]
            options = {"metadata": shaped}
        write_buffered(
            tmp, lambda out: tifffile.imwrite(out, array, photometric="minisblack", **options)
        )
    return path
