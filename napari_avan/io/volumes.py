"""Read and write (z, y, x) volumes in any supported format, by volume spec."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from napari_avan.core.files import json_safe, read_failed
from napari_avan.io._arrays import as_array, as_numpy
from napari_avan.io._meta import Found
from napari_avan.io.spec import VolumeSpec, detect_format, parse_spec
from napari_avan.types import AvanInputError, Volume, VoxelSize, check_voxel_size

#: Formats :func:`write_volume` can write.
WRITE_FORMATS = (
    "zarr",
    "zarr2",
    "ome-zarr",
    "ome-zarr2",
    "hdf5",
    "cremi",
    "tiff",
    "npy",
    "npz",
)

#: Roles whose arrays hold label ids and so must be integers.
LABEL_ROLES = frozenset({"segmentation", "clefts", "labels", "neuron_ids", "cleft_labels"})


def _reader(fmt: str) -> Callable[[VolumeSpec, bool], Found]:
    if fmt == "zarr":
        from napari_avan.io.zarr_io import read_zarr

        return read_zarr
    if fmt == "hdf5":
        from napari_avan.io.hdf5 import read_hdf5

        return read_hdf5
    if fmt == "npz":
        from napari_avan.io.npfiles import read_npz

        return read_npz
    if fmt == "npy":
        from napari_avan.io.npfiles import read_npy

        return read_npy
    if fmt == "tiff":
        from napari_avan.io.tiff import read_tiff

        return read_tiff
    raise AvanInputError(f"unknown volume format {fmt!r}")


def _is_rgb(shape: tuple[int, ...]) -> bool:
    if not shape or shape[-1] not in (3, 4):
        return False
    if len(shape) == 4:
        return True
    # (y, x, 3): a colour section; a real (z, y, x) stack is not 3 or 4 voxels wide.
    return len(shape) == 3 and min(shape[:2]) >= 16


def check_volume_shape(
    shape: Sequence[int],
    source: str = "",
    role: str = "image",
    axes: Sequence[str] | None = None,
) -> None:
    """Check that ``shape`` is a non-empty 3D (z, y, x) stack.

    Raises:
        AvanInputError: for a 2D image, an RGB/RGBA image, other dimensionality, or a
            zero-sized axis; the message says what to give instead.
    """
    shape = tuple(int(s) for s in shape)
    what = f"{role} {source}".strip()
    colour = axes is not None and len(axes) == len(shape) and axes[-1] in ("c", "s")
    if len(shape) in (3, 4) and (colour or _is_rgb(shape)):
        kind = "RGBA" if shape[-1] == 4 else "RGB"
        raise AvanInputError(
            f"{what} looks like an {kind} image (shape {shape}, {shape[-1]} colour channels "
            "last): convert it to grayscale and give a 3D (z, y, x) stack"
        )
    if len(shape) == 2:
        raise AvanInputError(
            f"{what} is 2D (Y, X) with shape {shape}: give a 3D (z, y, x) stack "
            "(for one section, add a z axis of size 1)"
        )
    if len(shape) != 3:
        named = f" ({', '.join(axes)})" if axes is not None and len(axes) == len(shape) else ""
        raise AvanInputError(
            f"{what} has {len(shape)} dimensions{named}, shape {shape}: "
            "give a 3D (z, y, x) stack (one channel, one time point)"
        )
    if 0 in shape:
        raise AvanInputError(f"{what} is empty (shape {shape}): give a non-empty volume")


def _check_role_dtype(dtype: Any, source: str, role: str) -> None:
    if role in LABEL_ROLES and np.dtype(dtype).kind not in "uib":
        raise AvanInputError(
            f"{role} {source} has dtype {np.dtype(dtype)}: labels must be integer ids "
            "(uint32 or uint64, 0 = background); convert them"
        )


def read_volume(
    spec: str | Path | VolumeSpec,
    voxel_size_nm: Sequence[float] | None = None,
    *,
    lazy: bool = True,
    role: str = "image",
) -> Volume:
    """Read a (z, y, x) volume from a spec ``PATH`` or ``PATH:KEY``.

    Zarr (v2, v3, OME-Zarr level 0) and chunked HDF5 come back as dask arrays when
    ``lazy``; npz, npy, TIFF and contiguous HDF5 as numpy. ``lazy=False`` always
    returns numpy.

    Args:
        spec: the volume spec (see :func:`parse_spec`).
        voxel_size_nm: (z, y, x) nm; overrides the file's metadata.
        lazy: return a dask array for chunked sources.
        role: what the volume is (``image``, ``segmentation``, ``clefts``, ...), for
            messages; label roles must have an integer dtype.

    Returns:
        The volume; ``voxel_size_nm`` is the argument, else the file's, else None.

    Raises:
        AvanInputError: bad spec, missing key, not a 3D grayscale stack, float labels,
            an invalid voxel size, or a file that cannot be read (corrupt chunks,
            damaged HDF5, truncated files); lazy arrays raise it when computed.
    """
    explicit = None if voxel_size_nm is None else check_voxel_size(voxel_size_nm)
    parsed = spec if isinstance(spec, VolumeSpec) else parse_spec(spec)
    source = str(parsed)
    try:
        found = _reader(parsed.format)(parsed, lazy)
    except AvanInputError:
        raise
    except Exception as err:  # codecs, HDF5 and file formats raise many kinds
        raise read_failed(source, err) from err
    check_volume_shape(found.data.shape, source, role, found.axes)
    _check_role_dtype(found.data.dtype, source, role)
    voxel_size: VoxelSize | None = explicit
    if voxel_size is None and found.voxel_size_nm is not None:
        try:
            voxel_size = check_voxel_size(found.voxel_size_nm, what=f"voxel size in {source}")
        except AvanInputError as err:
            raise AvanInputError(f"{err}; or pass the voxel size (--voxel-size Z,Y,X)") from None
    try:
        data = found.data if lazy else as_numpy(found.data)
    except AvanInputError:
        raise
    except Exception as err:
        raise read_failed(source, err) from err
    attrs = {"format": parsed.format, **found.attrs}
    return Volume(data=data, voxel_size_nm=voxel_size, source=source, attrs=attrs)


def read_labels(spec: str, role: str, voxel_size: VoxelSize | None = None) -> Volume:
    """Read label volume ``spec`` whole; a one-line error unless it holds integers."""
    vol = read_volume(spec, voxel_size, lazy=False, role=role)
    if vol.data.dtype.kind not in "ui":
        raise AvanInputError(
            f"{role} {spec!r} has dtype {vol.data.dtype}: labels must be integers "
            "(0 background, ids 1..N)"
        )
    return vol


def voxel_size_of(spec: str, *volumes: Volume | None) -> VoxelSize:
    """The first voxel size any of ``volumes`` knows, or a one-line error naming ``spec``."""
    for vol in volumes:
        if vol is not None and vol.voxel_size_nm is not None:
            return vol.voxel_size_nm
    raise AvanInputError(
        f"the voxel size of {spec!r} is unknown: pass --voxel-size Z,Y,X (nm), e.g. 40,4,4"
    )


def list_keys(path: str | Path) -> list[str]:
    """Keys of the volumes in a file or zarr store (empty when it is a single array)."""
    path = Path(path)
    if not path.exists():
        raise AvanInputError(f"{path} does not exist: check the path")
    fmt = detect_format(path)
    if fmt == "zarr":
        from napari_avan.io.zarr_io import list_zarr_keys

        return list_zarr_keys(path)
    if fmt == "hdf5":
        from napari_avan.io.hdf5 import list_hdf5_keys

        return list_hdf5_keys(path)
    if fmt == "npz":
        from napari_avan.io.npfiles import list_npz_keys

        return list_npz_keys(path)
    return []


def infer_write_format(path: Path) -> str:
    """The write format implied by ``path``'s suffix (``.ome.zarr`` means OME-Zarr)."""
    name = path.name.lower()
    if name.endswith(".ome.zarr"):
        return "ome-zarr"
    by_suffix = {
        ".zarr": "zarr",
        ".h5": "hdf5",
        ".hdf": "hdf5",
        ".hdf5": "hdf5",
        ".cremi": "cremi",
        ".tif": "tiff",
        ".tiff": "tiff",
        ".npy": "npy",
        ".npz": "npz",
    }
    fmt = by_suffix.get(path.suffix.lower())
    if fmt is None:
        raise AvanInputError(
            f"cannot tell the format of {path} from its suffix: use .zarr, .ome.zarr, .h5, "
            f".tif, .npy or .npz, or pass format= one of {', '.join(WRITE_FORMATS)}"
        )
    return fmt


def _check_chunks(chunks: Sequence[int] | None, ndim: int) -> tuple[int, ...] | None:
    if chunks is None:
        return None
    try:
        values = tuple(int(c) for c in chunks)
    except (TypeError, ValueError) as err:
        raise AvanInputError(f"chunks {chunks!r} must be {ndim} integers") from err
    if len(values) != ndim or any(c <= 0 for c in values):
        raise AvanInputError(f"chunks {chunks!r} must be {ndim} positive integers (z, y, x)")
    return values


def write_volume(
    path: str | Path,
    data: Any,
    voxel_size_nm: Sequence[float] | None,
    *,
    format: str | None = None,
    key: str | None = None,
    overwrite: bool = False,
    chunks: Sequence[int] | None = None,
    attrs: Mapping[str, Any] | None = None,
) -> Path:
    """Write a (z, y, x) array atomically; dtype and voxel size round-trip exactly.

    Formats: ``zarr`` (v3; when adding a key to an existing group, that group's
    version), ``zarr2``, ``ome-zarr`` (NGFF 0.5 on zarr v3, one level
    ``0``, axes z, y, x in nanometer), ``ome-zarr2`` (NGFF 0.4 on zarr v2), ``hdf5``
    and ``cremi`` (dataset with a ``resolution`` attribute; default keys ``data`` and
    ``volumes/raw``), ``tiff`` (ImageJ calibration), ``npy`` (voxel size in a
    ``.npy.json`` sidecar), ``npz`` (``voxel_size_nm`` array beside the data).

    The result is built at a temporary sibling path and renamed into place. With
    ``key``, zarr/HDF5/npz data go into a group or file at that key, which may already
    exist as long as the key does not.

    Args:
        path: output file or zarr folder.
        data: a numpy or dask array, a :class:`Volume` (its data), or anything
            ``numpy.asarray`` accepts; 3D.
        voxel_size_nm: (z, y, x) nm, or None to record none.
        format: one of :data:`WRITE_FORMATS`; by default from the suffix.
        key: member to write (zarr group member, HDF5 dataset path, npz key).
        overwrite: replace an existing path or key.
        chunks: (z, y, x) chunk shape for zarr and HDF5.
        attrs: extra JSON-able metadata (zarr/HDF5 attributes).

    Returns:
        The path written.

    Raises:
        AvanInputError: bad arguments, an existing output without ``overwrite``, or an
            OS error while writing (nothing is left behind).
    """
    path = Path(path).expanduser()
    fmt = format.lower() if format else infer_write_format(path)
    if fmt not in WRITE_FORMATS:
        raise AvanInputError(
            f"unknown output format {format!r}: use one of {', '.join(WRITE_FORMATS)}"
        )
    array = as_array(data)
    check_volume_shape(array.shape, f"to write to {path}", "data")
    size = None if voxel_size_nm is None else check_voxel_size(voxel_size_nm)
    chunk_shape = _check_chunks(chunks, array.ndim)
    extra = json_safe(dict(attrs)) if attrs else None
    if key is not None and fmt in ("tiff", "npy"):
        raise AvanInputError(f"{fmt} files hold one array: drop the key {key!r}")
    if fmt in ("zarr", "zarr2", "ome-zarr", "ome-zarr2"):
        from napari_avan.io.zarr_io import write_zarr

        zarr_format: Literal[2] | None = 2 if fmt.endswith("2") else None
        return write_zarr(
            path,
            array,
            size,
            zarr_format=zarr_format,
            ome=fmt.startswith("ome"),
            key=key,
            overwrite=overwrite,
            chunks=chunk_shape,
            attrs=extra,
        )
    if fmt in ("hdf5", "cremi"):
        from napari_avan.io.hdf5 import CREMI_RAW, write_hdf5

        return write_hdf5(
            path,
            array,
            size,
            key=key,
            default_key=CREMI_RAW if fmt == "cremi" else "data",
            overwrite=overwrite,
            chunks=chunk_shape,
            attrs=extra,
        )
    if fmt == "tiff":
        from napari_avan.io.tiff import write_tiff

        return write_tiff(path, array, size, overwrite=overwrite)
    from napari_avan.io.npfiles import write_npy, write_npz

    if fmt == "npy":
        return write_npy(path, array, size, overwrite=overwrite)
    return write_npz(path, array, size, key=key, overwrite=overwrite)


#: Formats :func:`write_volume_by_regions` writes chunk by chunk (TIFF, npy and npz hold one
#: whole array in one file).
REGION_WRITE_FORMATS = ("zarr", "zarr2", "ome-zarr", "ome-zarr2", "hdf5", "cremi")


def write_volume_by_regions(
    path: str | Path,
    source: Any,
    voxel_size_nm: Sequence[float] | None,
    *,
    format: str | None = None,
    key: str | None = None,
    overwrite: bool = False,
    chunks: Sequence[int] | None = None,
    attrs: Mapping[str, Any] | None = None,
) -> Path:
    """:func:`write_volume` from an array-like read one output chunk at a time, so that the
    volume is never held whole: numpy, zarr, h5py, dask, or anything with ``shape``,
    ``dtype`` and box reads (``source[z0:z1, y0:y1, x0:x1]``, e.g. a session's
    :class:`~napari_avan.core.session.store.ChunkedLabels`).

    The output is what :func:`write_volume` writes for ``numpy.asarray(source)``: the same
    chunks (by default :data:`~napari_avan.io._arrays.DEFAULT_CHUNKS` clipped), attributes
    and metadata. OME-Zarr is written as one level (``0``), as :func:`write_volume` writes
    it. Chunks are read and written one after the other (memory: a few chunks).

    Raises:
        AvanInputError: a format that holds one whole array (TIFF, npy, npz), and what
            :func:`write_volume` raises.
    """
    import uuid

    import dask
    import dask.array as da

    from napari_avan.io._arrays import default_chunks

    path = Path(path).expanduser()
    fmt = format.lower() if format else infer_write_format(path)
    if fmt not in REGION_WRITE_FORMATS:
        raise AvanInputError(
            f"{fmt} files hold one whole array and cannot be written region by region: use one "
            f"of {', '.join(REGION_WRITE_FORMATS)}"
        )
    from napari_avan.core.session.store import RegionReader

    reader = RegionReader(as_array(source))
    check_volume_shape(reader.shape, f"to write to {path}", "data")
    chunk_shape = _check_chunks(chunks, reader.ndim) or default_chunks(reader.shape)
    lazy = da.from_array(
        reader,
        chunks=chunk_shape,
        name=f"regions-{uuid.uuid4().hex}",  # never tokenize (hash) the source's contents
        meta=np.empty((0,) * reader.ndim, dtype=reader.dtype),
        asarray=False,
        fancy=False,
    )
    with dask.config.set(scheduler="synchronous"):  # one chunk in flight at a time
        return write_volume(
            path,
            lazy,
            voxel_size_nm,
            format=fmt,
            key=key,
            overwrite=overwrite,
            chunks=chunks,
            attrs=attrs,
        )
