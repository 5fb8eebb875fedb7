"""Turn project data (samples, volumes) into napari layer-data tuples."""

from __future__ import annotations

from typing import Any

from napari_avan.types import Sample, VoxelSize

LayerData = tuple[Any, dict[str, Any], str]


def image_layer(data: Any, voxel_size_nm: VoxelSize | None, name: str) -> LayerData:
    """An EM image (or probability map) layer scaled to nm."""
    kwargs: dict[str, Any] = {"name": name, "colormap": "gray"}
    if voxel_size_nm is not None:
        kwargs["scale"] = tuple(voxel_size_nm)
        kwargs["metadata"] = {"voxel_size_nm": tuple(voxel_size_nm)}
    if getattr(data, "dtype", None) is not None and data.dtype.kind == "f":
        kwargs["colormap"] = "magma"
        kwargs["contrast_limits"] = (0.0, 1.0)
        kwargs["blending"] = "additive"
    return (data, kwargs, "image")


def labels_layer(data: Any, voxel_size_nm: VoxelSize | None, name: str, **extra: Any) -> LayerData:
    """A labels layer scaled to nm."""
    kwargs: dict[str, Any] = {"name": name, **extra}
    if voxel_size_nm is not None:
        kwargs["scale"] = tuple(voxel_size_nm)
        kwargs.setdefault("metadata", {})["voxel_size_nm"] = tuple(voxel_size_nm)
    return (data, kwargs, "labels")


def sample_layers(sample: Sample, prefix: str = "") -> list[LayerData]:
    """Image, segmentation and clefts of a sample; partners ride in the clefts' metadata."""
    vs = sample.voxel_size_nm
    return [
        image_layer(sample.image, vs, f"{prefix}EM"),
        labels_layer(sample.segmentation, vs, f"{prefix}segmentation", opacity=0.25),
        labels_layer(
            sample.clefts,
            vs,
            f"{prefix}clefts",
            opacity=0.8,
            metadata={"partners": sample.partners, "sample_attrs": dict(sample.attrs)},
        ),
    ]


#: ``metadata["napari_avan_kind"]`` of the layers the plugin makes, so its widgets find
#: (and update) them again: a points layer whose features are an edge table, the Detect
#: widget's outputs, the Partners widget's partner masks.
EDGES_KIND = "edges"
PROB_KIND = "cleft_probability"
CLEFTS_KIND = "predicted_clefts"
PRE_KIND = "presynaptic"
POST_KIND = "postsynaptic"
#: ``metadata`` keys: the volume spec a layer was read from (``PATH`` or ``PATH:KEY``),
#: and the proofreading session folder a clefts layer shows.
SOURCE_SPEC_KEY = "napari_avan_source"
SESSION_KEY = "napari_avan_session"


def edge_points(edges: Any) -> Any:
    """(N, 3) float (z, y, x) cleft centroids of an edge table's rows, in voxels."""
    import numpy as np

    from napari_avan.core.tables import CENTROID_PREFIX, from_xyz_columns

    if not len(edges):
        return np.zeros((0, 3), float)
    return from_xyz_columns(edges, CENTROID_PREFIX).astype(float)


def synapse_points_layer(
    edges: Any, voxel_size_nm: VoxelSize | None, name: str = "synapses"
) -> LayerData:
    """A points layer with one point per edge at its cleft's centroid; features = the edge table.

    ``edges`` is an edge table (docs/architecture.md, centroids in voxels); the writer saves the
    features back as the edge table (CSV or Parquet).
    """
    table = edges.reset_index(drop=True)
    points = edge_points(table)
    kwargs: dict[str, Any] = {
        "name": name,
        "features": table,
        "size": 6,
        "face_color": "yellow",
        "border_color": "black",
        "metadata": {"napari_avan_kind": EDGES_KIND},
    }
    if voxel_size_nm is not None:
        kwargs["scale"] = tuple(voxel_size_nm)
        kwargs["metadata"]["voxel_size_nm"] = tuple(voxel_size_nm)
    return (points, kwargs, "points")
