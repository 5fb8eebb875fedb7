"""Reader contributions: EM volumes and labels through :mod:`napari_avan.io`; edge tables
(CSV, TSV, Parquet) as synapse points."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from napari_avan._napari._layers import (
    SOURCE_SPEC_KEY,
    LayerData,
    image_layer,
    labels_layer,
    synapse_points_layer,
)
from napari_avan.types import AvanInputError

#: Key names that hold labels even when stored as uint8 (masks).
LABEL_HINTS = (
    "label",
    "seg",
    "cleft",
    "mask",
    "neuron_ids",
    "ids",
    "synapse",
    "membranes",
    "mitochondria",
)

#: Columns a table needs to open as synapse points (the edge table of docs/architecture.md;
#: the other edge columns are kept when present).
EDGE_TABLE_REQUIRED = (
    "cleft_segid",
    "presyn_segid",
    "postsyn_segid",
    "centroid_x",
    "centroid_y",
    "centroid_z",
)
#: Suffixes of the tables the edge reader and writer handle.
EDGE_TABLE_SUFFIXES = (".csv", ".tsv", ".parquet")


def get_reader(path: str | list[str]) -> Callable[[Any], list[LayerData]] | None:
    """Return a reader for paths :mod:`napari_avan.io` understands, else None."""
    from napari_avan.io import detect_format

    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    try:
        detect_format(Path(path))
    except AvanInputError:
        return None
    return read_layers


def _is_labels(name: str, dtype: Any) -> bool:
    if dtype.kind == "f":
        return False
    if dtype.kind in "ui" and dtype.itemsize > 1:
        return True
    lowered = name.lower()
    return dtype.kind == "b" or any(hint in lowered for hint in LABEL_HINTS)


def _keys(path: Path) -> list[str]:
    from napari_avan.io import list_keys

    keys = list_keys(path)
    if keys:
        return keys
    keys = [""]  # a single array, or an OME-Zarr image with its labels beside it
    if path.is_dir() and (path / "labels").is_dir():
        keys += [f"labels/{name}" for name in list_keys(path / "labels")]
    return keys


def read_layers(path: str | list[str]) -> list[LayerData]:
    """Every 3D volume in ``path`` as an image or labels layer, scaled to nm."""
    from dataclasses import replace

    from napari_avan.io import parse_spec, read_table, read_volume

    if isinstance(path, list):
        path = path[0]
    root = Path(path)
    layers: list[LayerData] = []
    skipped: list[str] = []
    for key in _keys(root):
        spec = f"{root}:{key}" if key else str(root)
        try:
            volume = read_volume(spec, lazy=True)
        except AvanInputError as err:
            skipped.append(f"{key or root.name}: {err}")
            continue
        name = key.rsplit("/", 1)[-1] if key else root.name.split(".")[0]
        data = volume.data
        if _is_labels(name, data.dtype):
            layer = labels_layer(data, volume.voxel_size_nm, name)
        else:
            layer = image_layer(data, volume.voxel_size_nm, name)
        # where the volume lives, so a session can name it instead of copying it
        layer[1].setdefault("metadata", {})[SOURCE_SPEC_KEY] = str(
            replace(parse_spec(spec), path=root.resolve())
        )
        layers.append(layer)
    if not layers:
        raise AvanInputError(f"no 3D volume in {root}: " + "; ".join(skipped))
    partners = root / "partners.csv"
    if partners.is_file():
        for _, kwargs, layer_type in layers:
            if layer_type == "labels" and kwargs["name"] == "clefts":
                kwargs.setdefault("metadata", {})["partners"] = read_table(partners)
    # images first, so labels draw on top
    return sorted(layers, key=lambda layer: layer[2] == "labels")


def missing_edge_columns(columns: Any) -> list[str]:
    """The :data:`EDGE_TABLE_REQUIRED` columns not among ``columns``, in order."""
    present = {str(c) for c in columns}
    return [c for c in EDGE_TABLE_REQUIRED if c not in present]


def _table_header(path: Path) -> list[str] | None:
    """Column names of a CSV/TSV/Parquet file without reading its rows; None if unreadable."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            return [str(name) for name in pq.read_schema(path).names]
        import pandas as pd

        header = pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",", nrows=0)
        return [str(c) for c in header.columns]
    except (ImportError, OSError, ValueError, UnicodeDecodeError):
        return None  # pandas' parser and empty-data errors are ValueErrors too


def get_edges_reader(path: str | list[str]) -> Callable[[Any], list[LayerData]] | None:
    """Return a reader for an edge table (CSV, TSV or Parquet), else None.

    Other tables (a partner table, napari's own points CSV) get None, so napari tries
    other readers.
    """
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    table = Path(path)
    if table.suffix.lower() not in EDGE_TABLE_SUFFIXES or not table.is_file():
        return None
    header = _table_header(table)
    if header is None or missing_edge_columns(header):
        return None
    return read_edges


def read_edges(path: str | list[str]) -> list[LayerData]:
    """An edge table as a synapse points layer (one point per edge at its cleft's centroid).

    The table holds no voxel size, so the points are in voxels (scale 1).
    """
    from napari_avan.io import read_table

    if isinstance(path, list):
        path = path[0]
    table = read_table(path)
    missing = missing_edge_columns(table.columns)
    if missing:
        raise AvanInputError(f"{path} is not an edge table: it lacks {', '.join(missing)}")
    return [synapse_points_layer(table, None, name=Path(path).name.split(".")[0])]
