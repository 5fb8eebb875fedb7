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


def session_format(path: Path) -> str:
    """The export format a session saved to ``path`` takes, from its extension."""
    name = path.name.lower()
    if name.endswith(".ome.zarr"):
        return "ome-zarr"
    for suffixes, fmt in (
        ((".zarr",), "zarr"),
        ((".h5", ".hdf5", ".hdf", ".cremi"), "cremi"),
        ((".tif", ".tiff"), "tiff"),
        ((".csv",), "csv"),
    ):
        if name.endswith(suffixes):
            return fmt
    raise AvanInputError(
        f"cannot tell the export format of {path.name}: end the name with .zarr, .ome.zarr, "
        ".h5 (CREMI), .tif or .csv"
    )


def write_layer(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """Save a labels, image or probability layer (dtype kept) with its voxel size.

    A clefts layer that shows a proofreading session (the Partners dock's) is saved as the
    session's export (``napari-avan export``): the corrected clefts, the segmentation and
    image where the format holds them, and the edge table with status.
    """
    from napari_avan._napari._layers import SESSION_KEY
    from napari_avan.io import write_volume

    folder = (meta.get("metadata") or {}).get(SESSION_KEY)
    if folder:
        from napari_avan.core.session import Session
        from napari_avan.io.export import export_session_files

        out = Path(path)
        session = Session.open(folder)
        return [str(export_session_files(session, session_format(out), out, overwrite=False))]

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
