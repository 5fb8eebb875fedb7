"""Export a proofreading session: the corrected cleft labels, the segmentation and image
where the format holds them, and the edge table with its status.

Formats: ``zarr`` (arrays ``clefts``, ``segmentation``, ``image`` and ``edges.csv``),
``ome-zarr`` (the image as the multiscale at the root, NGFF ``labels/clefts`` and
``labels/segmentation``, ``edges.csv``), ``cremi`` (HDF5: ``volumes/raw``,
``volumes/labels/neuron_ids``, ``volumes/labels/clefts``, partner annotations of the edges
not rejected, ``resolution`` in nm), ``csv`` (the edge table) and ``tiff`` (the clefts).
Every output is built aside and renamed into place; an existing one is refused unless
``overwrite``.

A session whose labels are kept on disk (larger than memory, ``session.in_memory`` false)
is exported without holding a whole volume: its volumes are read lazily, the stores are
written chunk by chunk (:func:`~napari_avan.io.volumes.write_volume_by_regions`; OME-Zarr
has one level, as for any session) and the edge table reads boxes around the clefts. The
output is the one the same session in memory gives. ``cremi`` and ``tiff`` hold whole
arrays in one file: they are refused for such a session.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_avan.core.files import atomic_path
from napari_avan.types import AvanInputError

if TYPE_CHECKING:
    from napari_avan.core.session import Session

#: Formats :func:`export_session` writes.
EXPORT_FORMATS = ("zarr", "ome-zarr", "cremi", "csv", "tiff")
#: The session volumes each format needs.
_NEEDS = {"tiff": (), "csv": ("segmentation",)}
#: Formats that hold whole arrays in one file: not written for a session kept on disk.
_WHOLE_FILE_FORMATS = ("cremi", "tiff")


def session_volume(session: Session, key: str, role: str) -> Any:
    """The session's ``image``, ``segmentation`` or ``prob`` read from its recorded spec
    (None when it has none), checked against the session's shape. A spec with a relative
    path names a file inside the session folder.

    A numpy array for a session in memory; for one kept on disk (``session.in_memory``
    false) the volume read lazily (:func:`~napari_avan.io.volumes.read_volume` with
    ``lazy=True``: a dask array for zarr and chunked HDF5), never whole."""
    from napari_avan.io.volumes import read_volume

    spec = session.meta.get("volumes", {}).get(key)
    if not spec:
        return None
    where = str(spec) if Path(spec).expanduser().is_absolute() else str(session.path / spec)
    lazy = not session.in_memory
    data = read_volume(where, session.voxel_size_nm, lazy=lazy, role=role).data
    shape = tuple(session.labels.shape)
    if tuple(data.shape) != shape:
        raise AvanInputError(f"{spec} has shape {tuple(data.shape)}, the session {shape}")
    return data if lazy else np.asarray(data)


def keep_session_volume(
    session: Session, key: str, data: Any = None, *, spec: str | None = None
) -> None:
    """Record the session's ``image``, ``segmentation`` or ``prob``: its volume spec when
    it lives in a file (``spec``), else a copy written into the session folder
    (``KEY.zarr``, named relative to the folder so that a copied session still finds it).
    ``session.json`` is rewritten atomically."""
    from napari_avan.io.volumes import write_volume

    if spec is None:
        if data is None:
            raise AvanInputError(f"the session's {key} needs a spec or the volume itself")
        volume = np.asarray(data)
        if tuple(volume.shape) != tuple(session.labels.shape):
            raise AvanInputError(
                f"the {key} has shape {volume.shape}, the session {session.labels.shape}"
            )
        write_volume(session.path / f"{key}.zarr", volume, session.voxel_size_nm, overwrite=True)
        spec = f"{key}.zarr"
    session.meta.setdefault("volumes", {})[key] = spec
    session.save_meta()


def export_session_files(
    session: Session, format: str, out: str | Path, *, overwrite: bool = False
) -> Path:
    """:func:`export_session` with the segmentation and image read from the session's own
    volume specs (what ``napari-avan export`` and the napari writer do); lazily for a
    session kept on disk (:func:`session_volume`)."""
    if format not in EXPORT_FORMATS:
        raise AvanInputError(f"export format {format!r}: use one of {', '.join(EXPORT_FORMATS)}")
    _check_whole_file(session, format)
    wanted = _NEEDS.get(format, ("segmentation", "image"))
    segmentation = (
        session_volume(session, "segmentation", "segmentation")
        if "segmentation" in wanted
        else None
    )
    image = session_volume(session, "image", "image") if "image" in wanted else None
    return export_session(
        session, format, out, segmentation=segmentation, image=image, overwrite=overwrite
    )


def export_session(
    session: Session,
    format: str,
    out: str | Path,
    *,
    segmentation: Any = None,
    image: Any = None,
    overwrite: bool = False,
) -> Path:
    """Write ``session``'s corrected labels and edges in ``format`` (see the module).

    For a session kept on disk (``session.in_memory`` false) no volume is held whole: give
    the segmentation and image as array-likes read by boxes (dask, zarr; numpy works too),
    e.g. from :func:`session_volume`.

    Args:
        session: the session.
        format: one of :data:`EXPORT_FORMATS`.
        out: the file or folder to write.
        segmentation: the neuron segmentation (needed for edges, CREMI and the stores).
        image: the EM volume (written by zarr, OME-Zarr and CREMI when given).
        overwrite: replace an existing output.

    Raises:
        AvanInputError: unknown format, missing segmentation, shapes that differ, an
            existing output, ``cremi`` or ``tiff`` for a session kept on disk, or a failed
            write (nothing is left behind).
    """
    from napari_avan.core.session.tables import CorrectedLabels, corrected_labels, session_edges
    from napari_avan.io.cremi import cremi_annotations_from_edges, write_cremi
    from napari_avan.io.tables import write_table
    from napari_avan.io.volumes import write_volume, write_volume_by_regions

    if format not in EXPORT_FORMATS:
        raise AvanInputError(f"export format {format!r}: use one of {', '.join(EXPORT_FORMATS)}")
    _check_whole_file(session, format)
    out = Path(out)
    shape = tuple(session.labels.shape)
    for name, volume in (("segmentation", segmentation), ("image", image)):
        if volume is not None and tuple(volume.shape) != shape:
            raise AvanInputError(f"the {name} has shape {volume.shape}, the session {shape}")
    if segmentation is None and format != "tiff":
        raise AvanInputError(f"a {format} export holds the edge table: it needs the segmentation")
    if (out.exists() or out.is_symlink()) and not overwrite:
        raise AvanInputError(f"{out} exists: pass --overwrite to replace it")
    vs = session.voxel_size_nm
    in_memory = session.in_memory
    clefts: Any = corrected_labels(session) if in_memory else CorrectedLabels(session)
    if format == "tiff":
        return write_volume(out, clefts, vs, format="tiff", overwrite=overwrite)
    assert segmentation is not None
    edges = session_edges(session, segmentation)
    if format == "csv":
        return write_table(edges, out, overwrite=overwrite)
    if format == "cremi":
        kept = edges[edges["status"] != "rejected"]
        if image is None:
            raise AvanInputError("a CREMI export holds the image: the session needs its image")
        write_cremi(
            out, image, vs, neuron_ids=segmentation, clefts=clefts,
            annotations=cremi_annotations_from_edges(kept, vs) if len(kept) else None,
            overwrite=overwrite,
        )  # fmt: skip
        return out
    ome = format == "ome-zarr"
    members: dict[str | None, Any] = {
        (None if ome else "image"): image,
        ("labels/segmentation" if ome else "segmentation"): segmentation,
        ("labels/clefts" if ome else "clefts"): clefts,
    }
    if ome and image is None:
        raise AvanInputError("an OME-Zarr export holds the image: the session needs its image")
    with atomic_path(out, overwrite=overwrite) as tmp:
        write = write_volume if in_memory else write_volume_by_regions
        for key, volume in members.items():
            if volume is not None:
                write(tmp, volume, vs, format=format, key=key)
        write_table(edges, tmp / "edges.csv")
    return out


def _check_whole_file(session: Session, format: str) -> None:
    """Refuse a format holding whole arrays in one file for a session kept on disk."""
    if format in _WHOLE_FILE_FORMATS and not session.in_memory:
        raise AvanInputError(
            f"a {format} export holds whole volumes in one file, and the session "
            f"{session.path} is kept on disk (larger than memory): export it as zarr or "
            "ome-zarr (or its edge table as csv)"
        )
