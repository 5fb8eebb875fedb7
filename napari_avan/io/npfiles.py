"""numpy ``.npz`` (arrays by key, ``voxel_size_nm`` beside them) and ``.npy`` files.

An ``.npy`` file cannot hold metadata: its voxel size lives in a JSON sidecar
``NAME.npy.json`` (``{"voxel_size_nm": [z, y, x]}``).
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from napari_avan.core.files import atomic_path, dumps_json, refuse_overwrite, remove_path
from napari_avan.io._arrays import as_numpy
from napari_avan.io._meta import Found, missing_key, several_arrays
from napari_avan.io.spec import VolumeSpec
from napari_avan.types import AvanInputError, VoxelSize

#: npz key holding the (z, y, x) voxel size in nm.
VOXEL_SIZE_KEY = "voxel_size_nm"


def _header(fh: Any) -> tuple[tuple[int, ...], np.dtype[Any]]:
    fmt = np.lib.format
    version = fmt.read_magic(fh)
    if version == (1, 0):
        shape, _, dtype = fmt.read_array_header_1_0(fh)
    elif version == (2, 0):
        shape, _, dtype = fmt.read_array_header_2_0(fh)
    else:
        shape, _, dtype = fmt._read_array_header(fh, version)  # type: ignore[attr-defined]
    return tuple(shape), np.dtype(dtype)


def npz_headers(path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype[Any]]]:
    """Shape and dtype of every array in an npz file, read without loading the data."""
    headers: dict[str, tuple[tuple[int, ...], np.dtype[Any]]] = {}
    try:
        with zipfile.ZipFile(path) as zf:
            for name in zf.namelist():
                if not name.endswith(".npy"):
                    continue
                with zf.open(name) as fh:
                    headers[name[: -len(".npy")]] = _header(fh)
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise AvanInputError(f"cannot read {path} as npz: {err}") from err
    return headers


def _volume_keys(headers: dict[str, tuple[tuple[int, ...], np.dtype[Any]]]) -> list[str]:
    return [k for k, (shape, _) in headers.items() if len(shape) >= 2]


def list_npz_keys(path: Path) -> list[str]:
    """Keys of the 2D-or-more arrays in an npz file."""
    return _volume_keys(npz_headers(path))


def read_npz(spec: VolumeSpec, lazy: bool) -> Found:
    """Read one array of an npz file, with ``voxel_size_nm`` and small arrays as attrs."""
    del lazy  # npz members are not chunked
    headers = npz_headers(spec.path)
    volumes = _volume_keys(headers)
    where = str(spec.path)
    key = spec.key
    if key is None:
        if len(volumes) != 1:
            if not volumes:
                raise AvanInputError(f"{where} holds no 2D or 3D arrays: check the file")
            raise several_arrays(where, volumes)
        key = volumes[0]
    elif key not in headers:
        raise missing_key(key, where, volumes or list(headers))
    attrs: dict[str, Any] = {"key": key}
    voxel_size = None
    try:
        with np.load(spec.path, allow_pickle=False) as npz:
            data = npz[key]
            for name, (shape, _) in headers.items():
                if name != key and len(shape) <= 1 and int(np.prod(shape)) <= 16:
                    value = npz[name]
                    if name == VOXEL_SIZE_KEY:
                        voxel_size = tuple(float(v) for v in value.reshape(-1))
                    else:
                        attrs[name] = value.tolist()
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise AvanInputError(f"cannot read {key!r} from {spec.path}: {err}") from err
    return Found(data=data, voxel_size_nm=voxel_size, attrs=attrs)


def sidecar_path(path: Path) -> Path:
    """The JSON sidecar of an ``.npy`` file: ``NAME.npy.json``."""
    return path.with_name(path.name + ".json")


def read_npy(spec: VolumeSpec, lazy: bool) -> Found:
    """Read an ``.npy`` file; the voxel size comes from its JSON sidecar when present."""
    del lazy
    if spec.key is not None:
        raise AvanInputError(f"{spec.path} is an .npy file and has no keys: drop ':{spec.key}'")
    try:
        data = np.load(spec.path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise AvanInputError(f"cannot read {spec.path} as .npy: {err}") from err
    voxel_size = None
    attrs: dict[str, Any] = {}
    sidecar = sidecar_path(spec.path)
    if sidecar.is_file():
        try:
            meta = json.loads(sidecar.read_text())
        except (OSError, ValueError) as err:
            raise AvanInputError(f"cannot read {sidecar}: {err}; fix or delete it") from err
        if isinstance(meta, dict):
            if meta.get(VOXEL_SIZE_KEY) is not None:
                voxel_size = tuple(float(v) for v in meta[VOXEL_SIZE_KEY])
            attrs.update({k: v for k, v in meta.items() if k != VOXEL_SIZE_KEY})
    return Found(data=data, voxel_size_nm=voxel_size, attrs=attrs)


def write_npy(path: Path, data: Any, voxel_size_nm: VoxelSize | None, *, overwrite: bool) -> Path:
    """Write an ``.npy`` file and its ``.npy.json`` sidecar (the voxel size)."""
    array = as_numpy(data)
    sidecar = sidecar_path(path)
    with atomic_path(path, overwrite=overwrite) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, array, allow_pickle=False)
        if voxel_size_nm is not None:
            meta = {VOXEL_SIZE_KEY: list(voxel_size_nm), "axes": "zyx"}
            with atomic_path(sidecar, overwrite=True) as tmp_json:
                tmp_json.write_text(dumps_json(meta))
        else:
            remove_path(sidecar)  # a stale sidecar would give the new array a wrong size
    return path


def write_npz(
    path: Path,
    data: Any,
    voxel_size_nm: VoxelSize | None,
    *,
    key: str | None,
    overwrite: bool,
) -> Path:
    """Write array ``key`` (default ``data``) and ``voxel_size_nm`` to an npz file.

    With ``key`` and an existing file, the other arrays are kept (the file is rewritten
    atomically); the file holds one voxel size, so it must agree.
    """
    name = key or "data"
    if name == VOXEL_SIZE_KEY:
        raise AvanInputError(f"npz key {name!r} is reserved for the voxel size: use another key")
    arrays: dict[str, np.ndarray] = {}
    replace_file = overwrite
    if key is not None and path.exists():
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        if name in arrays and not overwrite:
            raise refuse_overwrite(path, f"key {name!r}")
        old = arrays.get(VOXEL_SIZE_KEY)
        if old is not None and voxel_size_nm is not None:
            if tuple(float(v) for v in old) != tuple(voxel_size_nm):
                raise AvanInputError(
                    f"{path} has voxel size {tuple(old.tolist())} nm, not {tuple(voxel_size_nm)}: "
                    "an npz holds one voxel size; write to another file"
                )
        replace_file = True
    arrays[name] = as_numpy(data)
    if voxel_size_nm is not None:
        arrays[VOXEL_SIZE_KEY] = np.asarray(voxel_size_nm, dtype=np.float64)
    with atomic_path(path, overwrite=replace_file) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, allow_pickle=False, **arrays)
    return path
