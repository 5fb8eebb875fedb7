"""Reader contribution: EM volumes and labels through :mod:`napari_avan.io`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from napari_avan._napari._layers import LayerData, image_layer, labels_layer
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
    from napari_avan.io import read_table, read_volume

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
            layers.append(labels_layer(data, volume.voxel_size_nm, name))
        else:
            layers.append(image_layer(data, volume.voxel_size_nm, name))
    if not layers:
        raise AvanInputError(f"no 3D volume in {root}: " + "; ".join(skipped))
    partners = root / "partners.csv"
    if partners.is_file():
        for _, kwargs, layer_type in layers:
            if layer_type == "labels" and kwargs["name"] == "clefts":
                kwargs.setdefault("metadata", {})["partners"] = read_table(partners)
    # images first, so labels draw on top
    return sorted(layers, key=lambda layer: layer[2] == "labels")
