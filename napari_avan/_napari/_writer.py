"""Writer contributions: layers to zarr, OME-Zarr, HDF5 or TIFF with their voxel size."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from napari_avan.types import VoxelSize, check_voxel_size


def _voxel_size(meta: dict[str, Any]) -> VoxelSize | None:
    stored = (meta.get("metadata") or {}).get("voxel_size_nm")
    scale = stored if stored is not None else meta.get("scale")
    if scale is None or len(scale) != 3:
        return None
    if all(float(s) == 1.0 for s in scale) and stored is None:
        return None  # napari's default scale: the voxel size is unknown
    return check_voxel_size(scale, what="layer scale")


def write_layer(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """Save a labels, image or probability layer (dtype kept) with its voxel size."""
    from napari_avan.io import write_volume

    # Never replace what is there: napari's own dialog asks first, scripts must choose a name.
    out = write_volume(Path(path), np.asarray(data), _voxel_size(meta), overwrite=False)
    return [str(out)]
