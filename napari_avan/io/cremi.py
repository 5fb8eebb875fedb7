"""CREMI HDF5 files: volumes, synaptic partner annotations, and conversions to our tables.

Layout (all volumes carry a ``resolution`` attribute, z, y, x in nm)::

    volumes/raw                           image
    volumes/labels/neuron_ids             segment ids
    volumes/labels/clefts                 cleft ids; "no cleft" = the dtype's maximum
    annotations/ids                       (N,) uint64
    annotations/locations                 (N, 3) float, z, y, x in nm
    annotations/types                     (N,) "presynaptic_site" | "postsynaptic_site"
    annotations/presynaptic_site/partners (M, 2) annotation ids (pre, post)

``annotations`` may carry an ``offset`` attribute (nm, z, y, x) added to every location.
Clefts use 0 for background in memory (docs/architecture.md, label ids): the CREMI
background value is mapped to 0 on reading and back on writing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_avan.core.files import atomic_path
from napari_avan.io._arrays import as_array, as_numpy, is_dask
from napari_avan.io.hdf5 import (
    CREMI_CLEFTS,
    CREMI_NEURON_IDS,
    CREMI_RAW,
    built_in_memory,
    cremi_background,
    dataset_names,
    write_dataset,
)
from napari_avan.io.spec import VolumeSpec
from napari_avan.io.volumes import check_volume_shape, read_volume
from napari_avan.types import (
    PARTNER_COLUMNS,
    AvanInputError,
    Volume,
    check_same_shape,
    check_voxel_size,
)

if TYPE_CHECKING:
    import pandas as pd

PRE_SITE = "presynaptic_site"
POST_SITE = "postsynaptic_site"

_ANN = "annotations"
_PARTNERS = "annotations/presynaptic_site/partners"


@dataclass
class CremiAnnotations:
    """CREMI synaptic partner annotations.

    Attributes:
        ids: (N,) uint64 annotation ids.
        locations: (N, 3) float64 site positions, z, y, x in nm (plus ``offset``).
        types: (N,) str, ``presynaptic_site`` or ``postsynaptic_site``.
        partners: (M, 2) uint64 annotation ids, one (pre, post) row per partner pair.
        offset: (z, y, x) nm added to every location to get array coordinates.
    """

    ids: np.ndarray
    locations: np.ndarray
    types: np.ndarray
    partners: np.ndarray
    offset: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def __post_init__(self) -> None:
        self.ids = np.asarray(self.ids, dtype=np.uint64).reshape(-1)
        self.locations = np.asarray(self.locations, dtype=np.float64).reshape(-1, 3)
        self.types = np.asarray([str(t) for t in np.asarray(self.types).reshape(-1)], dtype=str)
        self.partners = np.asarray(self.partners, dtype=np.uint64).reshape(-1, 2)
        offset = np.asarray(self.offset, dtype=np.float64).reshape(-1)
        if offset.size != 3:
            raise AvanInputError(f"CREMI annotation offset {self.offset!r} must be z, y, x in nm")
        self.offset = (float(offset[0]), float(offset[1]), float(offset[2]))
        n = len(self.ids)
        if len(self.locations) != n or len(self.types) != n:
            raise AvanInputError(
                f"CREMI annotations disagree: {n} ids, {len(self.locations)} locations, "
                f"{len(self.types)} types; each annotation needs all three"
            )
        if len(np.unique(self.ids)) != n:
            raise AvanInputError("CREMI annotation ids are not unique")
        unknown = np.setdiff1d(self.partners.reshape(-1), self.ids)
        if unknown.size:
            raise AvanInputError(
                f"CREMI partners refer to annotation ids that do not exist: {unknown[:5].tolist()}"
            )

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class CremiData:
    """The contents of a CREMI file; labels and annotations are None when absent."""

    image: Volume
    neuron_ids: Volume | None = None
    clefts: Volume | None = None
    annotations: CremiAnnotations | None = None
    attrs: dict[str, Any] = field(default_factory=dict)


def _read_annotations(f: Any) -> CremiAnnotations | None:
    if _ANN not in f or "ids" not in f[_ANN]:
        return None
    group = f[_ANN]
    ids = group["ids"][()]
    locations = group["locations"][()] if "locations" in group else np.zeros((0, 3))
    types = group["types"].asstr()[()] if "types" in group else np.array([], dtype=str)
    partners = f[_PARTNERS][()] if _PARTNERS in f else np.zeros((0, 2), dtype=np.uint64)
    offset = group.attrs.get("offset", (0.0, 0.0, 0.0))
    return CremiAnnotations(
        ids=ids, locations=locations, types=types, partners=partners, offset=tuple(offset)
    )


def read_cremi(path: str | Path, *, lazy: bool = True) -> CremiData:
    """Read a CREMI file: image, neuron ids, clefts and partner annotations.

    Args:
        path: the ``.hdf``/``.h5``/``.cremi`` file.
        lazy: volumes as dask arrays where the datasets are chunked.

    Raises:
        AvanInputError: the file is missing, not HDF5, or has no ``volumes/raw``.
    """
    import h5py

    path = Path(path)
    if not path.exists():
        raise AvanInputError(f"{path} does not exist: check the path")
    try:
        with h5py.File(path, "r") as f:
            present = {k for k in (CREMI_RAW, CREMI_NEURON_IDS, CREMI_CLEFTS) if k in f}
            if CREMI_RAW not in present:
                names = ", ".join(dataset_names(f, min_ndim=2)) or "(none)"
                raise AvanInputError(
                    f"{path} is not a CREMI file: no {CREMI_RAW}; volumes in it: {names}"
                )
            annotations = _read_annotations(f)
    except OSError as err:
        raise AvanInputError(f"cannot open {path} as HDF5: {err}") from err

    def volume(key: str, role: str) -> Volume | None:
        if key not in present:
            return None
        return read_volume(VolumeSpec(path, key, "hdf5"), lazy=lazy, role=role)

    image = volume(CREMI_RAW, "image")
    assert image is not None
    return CremiData(
        image=image,
        neuron_ids=volume(CREMI_NEURON_IDS, "neuron_ids"),
        clefts=volume(CREMI_CLEFTS, "clefts"),
        annotations=annotations,
    )


def _clefts_for_cremi(clefts: Any) -> Any:
    """Cleft labels with 0 (background) replaced by CREMI's "no cleft" value."""
    if np.dtype(clefts.dtype).kind != "u":
        raise AvanInputError(
            f"clefts have dtype {clefts.dtype}: CREMI cleft labels must be unsigned integers"
        )
    background = cremi_background(clefts.dtype)
    value = clefts.dtype.type(background)
    if is_dask(clefts):
        import dask.array as da

        return da.where(clefts == 0, value, clefts)
    array = np.asarray(clefts)
    if np.any(array == value):
        raise AvanInputError(
            f"clefts use id {background}, which CREMI reserves for background: relabel them"
        )
    return np.where(array == 0, value, array)


def write_cremi(
    path: str | Path,
    image: Any,
    voxel_size_nm: Sequence[float],
    *,
    neuron_ids: Any = None,
    clefts: Any = None,
    annotations: CremiAnnotations | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a CREMI file atomically (volumes with ``resolution``, optional annotations).

    Args:
        path: output ``.hdf``/``.h5`` file.
        image: (z, y, x) EM (array or :class:`Volume`).
        voxel_size_nm: (z, y, x) nm.
        neuron_ids: segment ids, same shape.
        clefts: cleft ids (0 = background), same shape; written with CREMI's
            background value (the dtype's maximum).
        annotations: partner annotations (see :func:`cremi_annotations_from_edges`).
        overwrite: replace an existing file.

    Returns:
        The path written.
    """
    import h5py

    path = Path(path).expanduser()
    size = check_voxel_size(voxel_size_nm)
    volumes = {"image": as_array(image)}
    if neuron_ids is not None:
        volumes["neuron_ids"] = as_array(neuron_ids)
    if clefts is not None:
        volumes["clefts"] = as_array(clefts)
    for name, data in volumes.items():
        check_volume_shape(data.shape, f"to write to {path}", name)
    check_same_shape(**volumes)
    with atomic_path(path, overwrite=overwrite) as tmp, built_in_memory(tmp) as f:
        write_dataset(f, CREMI_RAW, volumes["image"], size)
        if "neuron_ids" in volumes:
            write_dataset(f, CREMI_NEURON_IDS, volumes["neuron_ids"], size)
        if "clefts" in volumes:
            write_dataset(f, CREMI_CLEFTS, _clefts_for_cremi(volumes["clefts"]), size)
        if annotations is not None:
            group = f.create_group(_ANN)
            group.attrs["offset"] = np.asarray(annotations.offset, dtype=np.float64)
            group.create_dataset("ids", data=annotations.ids)
            group.create_dataset("locations", data=annotations.locations)
            group.create_dataset(
                "types",
                data=[str(t) for t in annotations.types],
                dtype=h5py.string_dtype("utf-8"),
            )
            f.create_dataset(_PARTNERS, data=annotations.partners)
    return path


def cremi_annotations_from_edges(
    edges: pd.DataFrame, voxel_size_nm: Sequence[float]
) -> CremiAnnotations:
    """CREMI annotations from an edge table (docs/architecture.md, the edge table).

    ``presyn_{x,y,z}`` and ``postsyn_{x,y,z}`` are voxel coordinates of the volume;
    locations become z, y, x in nm (``index * voxel size``). Sites at the same place of
    the same cleft share one annotation (a polyadic pre site has several partners).
    Rows with ``status == "rejected"`` are left out.

    Raises:
        AvanInputError: a coordinate column is missing.
    """
    size = np.asarray(check_voxel_size(voxel_size_nm), dtype=np.float64)
    needed = [f"{side}_{a}" for side in ("presyn", "postsyn") for a in ("z", "y", "x")]
    missing = [c for c in needed if c not in edges.columns]
    if missing:
        raise AvanInputError(
            f"edge table lacks columns {', '.join(missing)}: it needs presyn_x/y/z and "
            "postsyn_x/y/z (voxel units)"
        )
    table = edges
    if "status" in table.columns:
        table = table[table["status"].astype(str) != "rejected"]
    cleft = (
        table["cleft_segid"].to_numpy()
        if "cleft_segid" in table.columns
        else np.zeros(len(table), dtype=np.int64)
    )
    pre_vox = table[["presyn_z", "presyn_y", "presyn_x"]].to_numpy(dtype=np.float64)
    post_vox = table[["postsyn_z", "postsyn_y", "postsyn_x"]].to_numpy(dtype=np.float64)

    sites: dict[tuple[str, Any, float, float, float], int] = {}
    locations: list[np.ndarray] = []
    types: list[str] = []

    def site(kind: str, cleft_id: Any, vox: np.ndarray) -> int:
        site_key = (kind, cleft_id, float(vox[0]), float(vox[1]), float(vox[2]))
        if site_key not in sites:
            sites[site_key] = len(locations) + 1
            locations.append(vox * size)
            types.append(kind)
        return sites[site_key]

    pairs: dict[tuple[int, int], None] = {}  # ordered set
    for c, pre, post in zip(cleft.tolist(), pre_vox, post_vox, strict=True):
        pairs[(site(PRE_SITE, c, pre), site(POST_SITE, c, post))] = None
    return CremiAnnotations(
        ids=np.arange(1, len(locations) + 1, dtype=np.uint64),
        locations=np.asarray(locations, dtype=np.float64).reshape(-1, 3),
        types=np.asarray(types, dtype=str),
        partners=np.asarray(list(pairs), dtype=np.uint64).reshape(-1, 2),
    )


def _voxel_index(
    point_nm: np.ndarray, size: np.ndarray, shape: tuple[int, ...], what: str
) -> tuple[int, int, int]:
    index = np.rint(point_nm / size).astype(np.int64)
    if np.any(index < 0) or np.any(index >= np.asarray(shape)):
        raise AvanInputError(
            f"{what} at {tuple(point_nm.tolist())} nm (voxel {tuple(index.tolist())}) lies "
            f"outside the volume of shape {shape}: check the voxel size and offset"
        )
    return int(index[0]), int(index[1]), int(index[2])


def nearest_label(
    labels: Any, point_nm: np.ndarray, voxel_size_nm: Sequence[float] | np.ndarray, radius_nm: float
) -> int:
    """The nonzero label nearest to ``point_nm`` (z, y, x nm) within ``radius_nm``, or 0.

    Voxel ``i`` is centred at ``i * voxel_size``; ties go to the smaller label.
    """
    size = np.asarray(voxel_size_nm, dtype=np.float64)
    center = np.asarray(point_nm, dtype=np.float64) / size
    reach = np.ceil(radius_nm / size)
    shape = np.asarray(labels.shape)
    lo = np.clip(np.floor(center - reach).astype(np.int64), 0, shape)
    hi = np.clip(np.ceil(center + reach).astype(np.int64) + 1, 0, shape)
    window = as_numpy(labels[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]])
    coords = np.nonzero(window)
    if not coords[0].size:
        return 0
    points = (np.stack(coords, axis=1) + lo) * size
    dist2 = np.sum((points - np.asarray(point_nm)) ** 2, axis=1)
    near = dist2 <= radius_nm**2
    if not np.any(near):
        return 0
    values = window[coords][near]
    best = np.lexsort((values, dist2[near]))[0]
    return int(values[best])


def partners_from_cremi(
    annotations: CremiAnnotations,
    neuron_ids: np.ndarray,
    clefts: np.ndarray | None,
    voxel_size_nm: Sequence[float],
    *,
    radius_nm: float = 200.0,
) -> pd.DataFrame:
    """The partner table (``cleft_id, pre_id, post_id``) of CREMI annotations.

    ``pre_id``/``post_id`` are the segment ids at the pre and post sites; ``cleft_id``
    is the cleft label nearest to the midpoint of the two sites within ``radius_nm``
    (0 when there is none or ``clefts`` is None). Identical rows are kept once.

    Args:
        annotations: CREMI annotations (locations in nm, plus their offset).
        neuron_ids: (z, y, x) segment ids whose voxel 0 sits at 0 nm.
        clefts: (z, y, x) cleft ids (0 = background), or None.
        voxel_size_nm: (z, y, x) nm of both arrays.
        radius_nm: how far from the midpoint to look for a cleft.

    Returns:
        A DataFrame with uint64 columns ``cleft_id, pre_id, post_id``.
    """
    import pandas as pd

    size = np.asarray(check_voxel_size(voxel_size_nm), dtype=np.float64)
    shape = tuple(int(s) for s in neuron_ids.shape)
    check_volume_shape(shape, "", "neuron_ids")
    if clefts is not None:
        check_same_shape(neuron_ids=neuron_ids, clefts=clefts)
    row_of = {int(i): n for n, i in enumerate(annotations.ids.tolist())}
    physical = annotations.locations + np.asarray(annotations.offset)
    rows: dict[tuple[int, int, int], None] = {}  # ordered set
    for pre, post in annotations.partners.tolist():
        a = physical[row_of[int(pre)]]
        b = physical[row_of[int(post)]]
        pre_index = _voxel_index(a, size, shape, f"presynaptic site {pre}")
        post_index = _voxel_index(b, size, shape, f"postsynaptic site {post}")
        pre_id = int(as_numpy(neuron_ids[pre_index]))
        post_id = int(as_numpy(neuron_ids[post_index]))
        cleft_id = 0 if clefts is None else nearest_label(clefts, (a + b) / 2, size, radius_nm)
        rows[(cleft_id, pre_id, post_id)] = None
    table = np.asarray(list(rows), dtype=np.uint64).reshape(-1, 3)
    return pd.DataFrame({c: table[:, i] for i, c in enumerate(PARTNER_COLUMNS)})
