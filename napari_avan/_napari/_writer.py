"""Writer contributions: layers to zarr, OME-Zarr, HDF5 or TIFF with their voxel size;
synapse points to the edge table (CSV, TSV or Parquet)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from napari_avan.types import AvanInputError, VoxelSize, check_voxel_size


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


def write_edges(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """Save a synapse points layer's features as the edge table (CSV, TSV or Parquet).

    The layer's ``features`` are the edge table (docs/architecture.md; see
    :func:`~napari_avan._napari._layers.synapse_points_layer`), centroids in voxels.

    Raises:
        AvanInputError: the layer's features are not an edge table, or ``path`` exists.
    """
    import pandas as pd

    from napari_avan._napari._reader import missing_edge_columns
    from napari_avan.io import write_table

    features = meta.get("features")
    table = features if isinstance(features, pd.DataFrame) else pd.DataFrame(features or {})
    missing = missing_edge_columns(table.columns)
    if missing:
        name = meta.get("name") or "this points layer"
        raise AvanInputError(
            f"{name!r} is not an edge table: its features lack {', '.join(missing)}. "
            "Only synapse points (an edge table opened or found by napari-avan) can be saved "
            "as an edge table; save other points with napari's own writer"
        )
    # never replace what is there: napari's own dialog asks first, scripts must choose a name
    out = write_table(table.reset_index(drop=True), Path(path), overwrite=False)
    return [str(out)]
