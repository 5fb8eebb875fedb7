"""Samples on disk: a zarr v3 group with ``image``, ``segmentation``, ``clefts`` and
``partners.csv`` beside them, as ``napari-avan synth`` writes them (docs/architecture.md, the
partner table)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from napari_avan.core.files import atomic_path, json_safe
from napari_avan.io._arrays import as_array, as_numpy, default_chunks
from napari_avan.io.spec import VolumeSpec
from napari_avan.io.tables import check_partners, read_partners
from napari_avan.io.volumes import check_volume_shape, read_volume
from napari_avan.io.zarr_io import create_group, write_array
from napari_avan.types import AvanInputError, Sample, check_same_shape, check_voxel_size

#: Arrays of a sample group, with the role each is read as.
SAMPLE_ARRAYS = {"image": "image", "segmentation": "segmentation", "clefts": "clefts"}
PARTNERS_FILE = "partners.csv"


def write_sample(path: str | Path, sample: Sample, *, overwrite: bool = False) -> Path:
    """Write ``sample`` as a zarr v3 group, atomically.

    The group holds arrays ``image``, ``segmentation`` and ``clefts`` (each with a
    ``voxel_size_nm`` attribute) and ``partners.csv``; the group attributes are
    ``sample.attrs`` (made JSON-safe) plus ``voxel_size_nm``.

    Raises:
        AvanInputError: shapes differ or are not 3D, the partner table is invalid, the
            path exists and ``overwrite`` is False, or an OS error while writing.
    """
    path = Path(path).expanduser()
    size = check_voxel_size(sample.voxel_size_nm)
    arrays = {name: as_array(getattr(sample, name)) for name in SAMPLE_ARRAYS}
    for name, data in arrays.items():
        check_volume_shape(data.shape, f"of sample {path}", name)
    check_same_shape(**arrays)
    partners = check_partners(sample.partners, f"partners of sample {path}")
    group_attrs: dict[str, Any] = {**json_safe(sample.attrs), "voxel_size_nm": list(size)}
    with atomic_path(path, overwrite=overwrite) as tmp:
        create_group(tmp, 3, group_attrs)
        for name, data in arrays.items():
            attrs = {"voxel_size_nm": list(size)}
            write_array(tmp / name, data, 3, default_chunks(data.shape), attrs)
        partners.to_csv(tmp / PARTNERS_FILE, index=False)
    return path


def read_sample(path: str | Path) -> Sample:
    """Read a sample group written by :func:`write_sample` (arrays as numpy).

    Raises:
        AvanInputError: the path is missing, lacks an array or ``partners.csv``.
    """
    import zarr

    path = Path(path).expanduser()
    if not path.is_dir():
        raise AvanInputError(f"sample {path} does not exist or is not a zarr folder")
    missing = [n for n in SAMPLE_ARRAYS if not (path / n).is_dir()]
    if not (path / PARTNERS_FILE).is_file():
        missing.append(PARTNERS_FILE)
    if missing:
        raise AvanInputError(
            f"sample {path} lacks {', '.join(missing)}: a sample holds image, segmentation, "
            f"clefts and {PARTNERS_FILE} (see napari-avan synth)"
        )
    volumes = {
        name: read_volume(VolumeSpec(path, name, "zarr"), lazy=False, role=role)
        for name, role in SAMPLE_ARRAYS.items()
    }
    check_same_shape(**volumes)
    group_attrs = dict(zarr.open_group(str(path), mode="r").attrs.asdict())
    size_attr = group_attrs.pop("voxel_size_nm", None)
    size = size_attr if size_attr is not None else volumes["image"].voxel_size_nm
    if size is None:
        raise AvanInputError(f"sample {path} has no voxel_size_nm attribute")
    return Sample(
        image=as_numpy(volumes["image"].data),
        segmentation=as_numpy(volumes["segmentation"].data),
        clefts=as_numpy(volumes["clefts"].data),
        partners=read_partners(path / PARTNERS_FILE),
        voxel_size_nm=check_voxel_size(size, what=f"voxel size of sample {path}"),
        attrs=group_attrs,
    )
