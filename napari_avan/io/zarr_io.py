"""Zarr v2/v3 arrays and groups, and OME-Zarr (NGFF 0.4 and 0.5) images."""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np

from napari_avan.core.files import (
    atomic_path,
    interrupts_held,
    json_safe,
    refuse_overwrite,
    remove_path,
    write_failed,
)
from napari_avan.io._arrays import (
    GuardedArray,
    default_chunks,
    fill_value_for,
    read_in_slabs,
    store_into,
)
from napari_avan.io._meta import (
    Found,
    exact_nm,
    missing_key,
    several_arrays,
    unit_to_nm,
    voxel_size_from_attrs,
)
from napari_avan.io.spec import VolumeSpec
from napari_avan.types import AXES, AvanInputError, VoxelSize

#: A zarr format version.
ZarrVersion = Literal[2, 3]

#: NGFF version written for each zarr format.
OME_VERSION = {2: "0.4", 3: "0.5"}


# --------------------------------------------------------------------------- metadata


def node_info(path: Path) -> tuple[ZarrVersion, str] | None:
    """``(zarr_format, "array" | "group")`` of the zarr node stored at ``path``, or None."""
    meta_v3 = path / "zarr.json"
    if meta_v3.is_file():
        try:
            node_type = json.loads(meta_v3.read_text()).get("node_type", "")
        except (OSError, ValueError):
            node_type = ""
        return 3, str(node_type)
    if (path / ".zarray").is_file():
        return 2, "array"
    if (path / ".zgroup").is_file():
        return 2, "group"
    return None


def multiscale_of(attrs: Any) -> tuple[dict[str, Any], str | None] | None:
    """The first OME-Zarr multiscale entry in group attributes and its NGFF version.

    NGFF 0.5 keeps it under ``attrs["ome"]["multiscales"]`` (zarr v3); 0.4 and earlier
    under ``attrs["multiscales"]`` (zarr v2 ``.zattrs``).
    """
    ome = attrs.get("ome")
    if isinstance(ome, dict):
        ms = ome.get("multiscales")
        if isinstance(ms, list) and ms and isinstance(ms[0], dict):
            return ms[0], str(ome.get("version", "")) or None
    ms = attrs.get("multiscales")
    if isinstance(ms, list) and ms and isinstance(ms[0], dict):
        version = ms[0].get("version")
        return ms[0], str(version) if version is not None else None
    return None


def _transform_of(transforms: Any, kind: str) -> list[float] | None:
    """The vector of the first ``scale`` or ``translation`` transform in a list."""
    if not isinstance(transforms, list):
        return None
    for t in transforms:
        if isinstance(t, dict) and t.get("type") == kind and isinstance(t.get(kind), list):
            return [float(v) for v in t[kind]]
    return None


def _scale_of(transforms: Any) -> list[float] | None:
    return _transform_of(transforms, "scale")


def ome_level_info(
    multiscale: dict[str, Any], level_path: str
) -> tuple[tuple[float, ...] | None, dict[str, Any], tuple[str, ...] | None]:
    """Voxel size (z, y, x nm), extra attrs and axis names of one multiscale level.

    The scale is the level's ``scale`` transform times the multiscale-wide one; the
    last three axes are z, y, x. Units are converted to nm; when an axis has no
    recognised unit the voxel size is None and the raw scale is kept in the attrs.
    """
    axes_meta = multiscale.get("axes")
    names: tuple[str, ...] | None = None
    units: list[Any] = []
    if isinstance(axes_meta, list):
        names = tuple(str(a.get("name", "?")) if isinstance(a, dict) else str(a) for a in axes_meta)
        units = [a.get("unit") if isinstance(a, dict) else None for a in axes_meta]
    dataset = next(
        (
            d
            for d in multiscale.get("datasets", [])
            if isinstance(d, dict) and str(d.get("path")) == level_path
        ),
        None,
    )
    attrs: dict[str, Any] = {"ome_level": level_path}
    if dataset is None:
        return None, attrs, names
    scale = _scale_of(dataset.get("coordinateTransformations"))
    if scale is None:
        return None, attrs, names
    outer = _scale_of(multiscale.get("coordinateTransformations"))
    if outer is not None and len(outer) == len(scale):
        scale = [a * b for a, b in zip(scale, outer, strict=True)]
    if len(scale) < 3:
        return None, attrs, names
    zyx = scale[-3:]
    factors = [unit_to_nm(u) for u in (units[-3:] if len(units) >= 3 else [None] * 3)]
    if any(f is None for f in factors):
        attrs["ome_scale"] = zyx
        attrs["ome_units"] = units[-3:] if len(units) >= 3 else None
        return None, attrs, names
    nm = [float(f) for f in factors if f is not None]
    translation = _transform_of(dataset.get("coordinateTransformations"), "translation")
    if translation is not None and len(translation) >= 3:
        attrs["offset_nm"] = list(exact_nm(translation[-3:], nm))
    return exact_nm(zyx, nm), attrs, names


def ome_attrs(
    voxel_size_nm: VoxelSize | None, zarr_format: ZarrVersion, name: str, *, label: bool = False
) -> dict[str, Any]:
    """Group attributes of a single-level OME-Zarr image (level ``0``, axes z, y, x).

    ``label`` marks it as an NGFF label image (``image-label``), for ``labels/NAME``.
    """
    axes: list[dict[str, Any]] = [{"name": a, "type": "space"} for a in AXES]
    if voxel_size_nm is not None:
        for axis in axes:
            axis["unit"] = "nanometer"
        scale = [float(v) for v in voxel_size_nm]
    else:
        scale = [1.0, 1.0, 1.0]
    multiscale: dict[str, Any] = {
        "name": name,
        "axes": axes,
        "datasets": [
            {"path": "0", "coordinateTransformations": [{"type": "scale", "scale": scale}]}
        ],
    }
    version = OME_VERSION[zarr_format]
    extra: dict[str, Any] = {"image-label": {"version": version}} if label else {}
    if zarr_format == 2:
        return {"multiscales": [{"version": version, **multiscale}], **extra}
    return {"ome": {"version": version, "multiscales": [multiscale], **extra}}


def _is_label_key(key: str | None) -> bool:
    return key is not None and key.count("/") == 1 and key.startswith("labels/")


def _register_ome_label(root: Path, key: str, zarr_format: ZarrVersion) -> None:
    """List ``labels/NAME`` in the ``labels`` group's NGFF metadata, as viewers expect."""
    import zarr

    with interrupts_held():
        group = zarr.open_group(str(root / "labels"), mode="a", zarr_format=zarr_format)
        current: dict[str, Any] = dict(group.attrs.asdict())
        holder: dict[str, Any] = dict(current.get("ome") or {}) if zarr_format == 3 else current
        names = [n for n in holder.get("labels", []) if n != key.split("/")[1]]
        names.append(key.split("/")[1])
        if zarr_format == 3:
            group.attrs.update({"ome": {**holder, "version": OME_VERSION[3], "labels": names}})
        else:
            group.attrs.update({"labels": names})


# --------------------------------------------------------------------------- reading


def _open(path: Path) -> Any:
    import zarr

    try:
        return zarr.open(str(path), mode="r")
    except Exception as err:  # zarr raises many kinds for a broken store
        raise AvanInputError(f"cannot open zarr store {path}: {err}") from err


def _members(group: Any) -> list[tuple[str, Any]]:
    # Files beside the arrays (partners.csv, clefts.csv) make zarr warn; they are expected.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # Hidden names are temporaries of interrupted writes: never volumes.
        return sorted((m for m in group.members() if not m[0].startswith(".")), key=lambda m: m[0])


def volume_names(group: Any, prefix: str = "") -> list[str]:
    """Arrays and multiscale images in a zarr group, as keys (recursive)."""
    import zarr

    names: list[str] = []
    for name, node in _members(group):
        key = f"{prefix}{name}"
        if isinstance(node, zarr.Array):
            names.append(key)
        elif multiscale_of(node.attrs.asdict()) is not None:
            names.append(key)
        else:
            names.extend(volume_names(node, key + "/"))
    return names


def _store_root(path: Path, key: str | None) -> tuple[Path, str | None]:
    """Climb from a path inside a store to the outermost group, moving parts into the key."""
    parts: list[str] = []
    root = path.resolve()
    while root.parent != root:
        info = node_info(root.parent)
        if info is None or info[1] != "group":
            break
        parts.insert(0, root.name)
        root = root.parent
    if not parts:
        return path, key
    joined = "/".join([*parts, key] if key else parts)
    return root, joined


def _get(root: Any, key: str, where: str) -> Any:
    import zarr

    if isinstance(root, zarr.Array):
        raise AvanInputError(f"{where} is a zarr array, not a group: drop ':{key}' from the spec")
    try:
        return root[key]
    except (KeyError, FileNotFoundError):
        raise missing_key(key, where, volume_names(root)) from None


def _level_by_index(root: Any, key: str) -> str:
    """Let ``IMAGE:N`` name the N-th level of a multiscale image whose levels are not "N"."""
    import zarr

    parent_path, _, last = key.rpartition("/")
    if not last.isdigit() or not isinstance(root, zarr.Group) or key in root:
        return key
    try:
        parent = root[parent_path] if parent_path else root
    except KeyError:
        return key
    found = multiscale_of(parent.attrs.asdict()) if isinstance(parent, zarr.Group) else None
    datasets = found[0].get("datasets") if found else None
    if not isinstance(datasets, list) or int(last) >= len(datasets):
        return key
    level = str(datasets[int(last)].get("path"))
    return f"{parent_path}/{level}" if parent_path else level


def _token(root: Path, key: str) -> str:
    """A dask name for one zarr array: its path, key and the metadata's modification time."""
    stamps = []
    for meta in ("zarr.json", ".zarray"):
        target = root / key / meta if key else root / meta
        if target.is_file():
            stat = target.stat()
            stamps.append(f"{stat.st_mtime_ns}|{stat.st_size}")
    text = f"{root.resolve()}|{key}|{'|'.join(stamps)}"
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()


def read_zarr(spec: VolumeSpec, lazy: bool) -> Found:
    """Find the array a zarr spec names, with its voxel size (OME scale or attrs)."""
    import zarr

    root_path, key = _store_root(spec.path, spec.key)
    where = str(root_path)
    root = _open(root_path)
    if key:
        key = _level_by_index(root, key)
    node = _get(root, key, where) if key else root
    array_path = key or ""

    level_of: tuple[dict[str, Any], str, str | None] | None = None
    if isinstance(node, zarr.Group):
        found = multiscale_of(node.attrs.asdict())
        if found is not None:
            multiscale, version = found
            datasets = multiscale.get("datasets") or []
            if not datasets:
                raise AvanInputError(f"OME-Zarr image {where} lists no levels in 'multiscales'")
            level = str(datasets[0].get("path"))
            node = _get(node, level, f"{where}:{array_path}" if array_path else where)
            array_path = f"{array_path}/{level}" if array_path else level
            level_of = (multiscale, level, version)
        else:
            names = volume_names(node)
            label = f"{where}:{array_path}" if array_path else where
            if not names:
                raise AvanInputError(f"zarr group {label} holds no arrays: check the path and key")
            if len(names) > 1:
                raise several_arrays(label, names)
            return read_zarr(
                VolumeSpec(root_path, f"{array_path}/{names[0]}".strip("/"), "zarr"), lazy
            )
    elif array_path:
        parent_path, _, level = array_path.rpartition("/")
        parent = root[parent_path] if parent_path else root
        found = multiscale_of(parent.attrs.asdict())
        if found is not None:
            level_of = (found[0], level, found[1])

    if not isinstance(node, zarr.Array):
        raise AvanInputError(f"{where}:{array_path} is not an array: check the key")

    array_attrs = dict(node.attrs.asdict())
    attrs: dict[str, Any] = {**array_attrs, "zarr_format": node.metadata.zarr_format}
    if array_path:
        attrs["key"] = array_path
    voxel_size = voxel_size_from_attrs(array_attrs)
    axes: tuple[str, ...] | None = None
    if level_of is not None:
        multiscale, level, version = level_of
        ome_size, ome_extra, axes = ome_level_info(multiscale, level)
        attrs.update(ome_extra)
        attrs["ome_version"] = version
        if ome_size is not None:
            voxel_size = ome_size
    else:
        dimension_names = getattr(node.metadata, "dimension_names", None)
        if dimension_names and all(n is not None for n in dimension_names):
            axes = tuple(str(n) for n in dimension_names)

    data: Any
    if lazy:
        import dask.array as da

        data = da.from_array(
            GuardedArray(node, f"{where}:{array_path}" if array_path else where),
            chunks=node.chunks,
            name=f"zarr-{_token(root_path, array_path)}",
            meta=np.empty((0,) * node.ndim, dtype=node.dtype),
        )
    else:
        data = read_in_slabs(node)
    data, axes = _squeeze_leading(data, axes, is_ome=level_of is not None, attrs=attrs)
    return Found(data=data, voxel_size_nm=voxel_size, attrs=attrs, axes=axes)


def _squeeze_leading(
    data: Any, axes: tuple[str, ...] | None, *, is_ome: bool, attrs: dict[str, Any]
) -> tuple[Any, tuple[str, ...] | None]:
    """Drop size-1 leading (t, c) axes of an OME-Zarr level: (1, 1, z, y, x) -> (z, y, x)."""
    extra = data.ndim - 3
    if not is_ome or extra <= 0 or any(int(s) != 1 for s in data.shape[:extra]):
        return data, axes
    attrs["squeezed_axes"] = list(axes[:extra]) if axes else extra
    return data[(0,) * extra], (axes[extra:] if axes else None)


def list_zarr_keys(path: Path) -> list[str]:
    """Keys of the arrays and multiscale images in a zarr store (empty for an array)."""
    import zarr

    root = _open(path)
    if isinstance(root, zarr.Array) or multiscale_of(root.attrs.asdict()) is not None:
        return []
    return volume_names(root)


# --------------------------------------------------------------------------- writing


def create_group(path: Path, zarr_format: ZarrVersion, attrs: dict[str, Any] | None = None) -> Any:
    import zarr

    with interrupts_held():  # zarr writes from its own thread: never interrupt it midway
        return zarr.open_group(
            str(path), mode="w", zarr_format=zarr_format, attributes=json_safe(attrs or {})
        )


def write_array(
    dest: Path,
    data: Any,
    zarr_format: ZarrVersion,
    chunks: tuple[int, ...],
    attrs: dict[str, Any],
) -> None:
    import zarr

    extra: dict[str, Any] = {}
    if zarr_format == 3:
        extra["dimension_names"] = AXES
    with interrupts_held():
        array = zarr.create_array(
            store=str(dest),
            shape=tuple(int(s) for s in data.shape),
            dtype=data.dtype,
            chunks=chunks,
            zarr_format=zarr_format,
            fill_value=fill_value_for(data.dtype),
            attributes=json_safe(attrs),
            **extra,
        )
    store_into(array, data)


def _write_node(
    dest: Path,
    data: Any,
    voxel_size_nm: VoxelSize | None,
    *,
    zarr_format: ZarrVersion,
    ome: bool,
    chunks: tuple[int, ...] | None,
    attrs: dict[str, Any] | None,
    name: str,
    label: bool = False,
) -> None:
    chunks = chunks or default_chunks(data.shape)
    user = dict(attrs or {})
    if ome:
        group_attrs = {**user, **ome_attrs(voxel_size_nm, zarr_format, name, label=label)}
        create_group(dest, zarr_format, group_attrs)
        write_array(dest / "0", data, zarr_format, chunks, {})
    else:
        if voxel_size_nm is not None:
            user["voxel_size_nm"] = list(voxel_size_nm)
        write_array(dest, data, zarr_format, chunks, user)


def _check_key(key: str) -> str:
    key = key.strip("/")
    parts = key.split("/")
    if not key or any(p in ("", ".", "..") or p.startswith(".") for p in parts):
        raise AvanInputError(f"bad zarr key {key!r}: use names like 'clefts' or 'labels/clefts'")
    return key


def _ensure_groups(root: Path, key: str, zarr_format: ZarrVersion, created: list[Path]) -> None:
    """Create missing intermediate groups for ``key``, recording each folder in ``created``."""
    current = root
    for part in key.split("/")[:-1]:
        current = current / part
        info = node_info(current)
        if info is None:
            if current.exists():
                raise AvanInputError(
                    f"{current} exists but is not a zarr group: choose another key"
                )
            created.append(current)
            create_group(current, zarr_format)
        elif info[1] != "group":
            raise AvanInputError(f"{current} is a zarr array, not a group: choose another key")


def _is_consolidated(root: Path, zarr_format: ZarrVersion) -> bool:
    if zarr_format == 2:
        return (root / ".zmetadata").is_file()
    try:
        meta = json.loads((root / "zarr.json").read_text())
    except (OSError, ValueError):
        return False
    return meta.get("consolidated_metadata") is not None


def write_zarr(
    path: Path,
    data: Any,
    voxel_size_nm: VoxelSize | None,
    *,
    zarr_format: ZarrVersion | None,
    ome: bool,
    key: str | None,
    overwrite: bool,
    chunks: tuple[int, ...] | None,
    attrs: dict[str, Any] | None,
) -> Path:
    """Write a zarr array (or OME-Zarr image) at ``path`` or as member ``key`` of a group.

    ``zarr_format`` None means v3 for a new store and the group's own format when
    adding to an existing one.
    """
    name = key or path.name

    def write(dest: Path, fmt: ZarrVersion) -> None:
        _write_node(
            dest,
            data,
            voxel_size_nm,
            zarr_format=fmt,
            ome=ome,
            chunks=chunks,
            attrs=attrs,
            name=name,
            label=ome and _is_label_key(key),
        )

    if key is None:
        with atomic_path(path, overwrite=overwrite) as tmp:
            write(tmp, zarr_format or 3)
        return path

    key = _check_key(key)
    info = node_info(path)
    if not path.exists():
        with atomic_path(path, overwrite=False) as tmp:
            fmt: ZarrVersion = zarr_format or 3
            create_group(tmp, fmt)
            _ensure_groups(tmp, key, fmt, [])
            write(tmp / key, fmt)
            if ome and _is_label_key(key):
                _register_ome_label(tmp, key, fmt)
        return path
    if info is None:
        raise AvanInputError(f"{path} exists and is not a zarr group: choose another output")
    group_format, node_type = info
    if node_type != "group":
        raise AvanInputError(
            f"{path} is a zarr array, not a group: cannot add {key!r}; write to another path"
        )
    if zarr_format is not None and zarr_format != group_format:
        raise AvanInputError(
            f"{path} is a zarr v{group_format} group: cannot add a zarr v{zarr_format} array; "
            f"use format 'zarr' or another output"
        )
    target = path / key
    if (target.exists() or target.is_symlink()) and not overwrite:
        raise refuse_overwrite(path, f"key {key!r}")
    created: list[Path] = []
    try:
        _ensure_groups(path, key, group_format, created)
        with atomic_path(target, overwrite=overwrite) as tmp:
            write(tmp, group_format)
        if ome and _is_label_key(key):
            _register_ome_label(path, key, group_format)
    except BaseException as err:
        for folder in reversed(created):
            remove_path(folder)
        if isinstance(err, OSError):
            raise write_failed(path, err) from err
        raise
    if _is_consolidated(path, group_format):
        import zarr

        try:
            with interrupts_held():
                zarr.consolidate_metadata(str(path), zarr_format=group_format)
        except OSError as err:
            raise AvanInputError(
                f"wrote {key!r} into {path} but could not update its consolidated metadata: "
                f"{err.strerror or err}; free space and run zarr.consolidate_metadata on it"
            ) from err
    return path
