"""Volume specs: ``PATH`` or ``PATH:KEY`` (docs/architecture.md, volume specs)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from napari_avan.types import AvanInputError

#: Volume file formats that can be read, by spec ``format``.
READ_FORMATS = ("zarr", "hdf5", "npz", "npy", "tiff")

_SUFFIX_FORMATS = {
    ".zarr": "zarr",
    ".h5": "hdf5",
    ".hdf": "hdf5",
    ".hdf5": "hdf5",
    ".cremi": "hdf5",
    ".npz": "npz",
    ".npy": "npy",
    ".tif": "tiff",
    ".tiff": "tiff",
}

#: Files whose presence in a directory marks it as a zarr array or group.
ZARR_MARKERS = ("zarr.json", ".zarray", ".zgroup")

SUPPORTED_TEXT = (
    "zarr (.zarr folder, v2 or v3, OME-Zarr), HDF5 (.h5 .hdf .hdf5 .cremi), "
    "numpy (.npz .npy), TIFF (.tif .tiff)"
)


@dataclass(frozen=True)
class VolumeSpec:
    """A parsed volume spec.

    Attributes:
        path: the file or zarr folder.
        key: the part after ``:`` (HDF5 dataset path, zarr group member or OME-Zarr
            level, npz key), or None.
        format: one of ``zarr``, ``hdf5``, ``npz``, ``npy``, ``tiff``.
    """

    path: Path
    key: str | None
    format: str

    def __str__(self) -> str:
        return f"{self.path}:{self.key}" if self.key else str(self.path)


def is_zarr_dir(path: Path) -> bool:
    """Whether ``path`` is a folder holding zarr metadata (an array or a group)."""
    return path.is_dir() and any((path / m).is_file() for m in ZARR_MARKERS)


def detect_format(path: Path) -> str:
    """The read format of an existing ``path``, from its suffix or zarr metadata.

    Raises:
        AvanInputError: the format is not one of :data:`READ_FORMATS`.
    """
    fmt = _SUFFIX_FORMATS.get(path.suffix.lower())
    if fmt is None and is_zarr_dir(path):
        fmt = "zarr"
    if fmt is None:
        kind = "folder" if path.is_dir() else "file"
        raise AvanInputError(
            f"cannot read {kind} {path}: unknown volume format; supported: {SUPPORTED_TEXT}"
        )
    if fmt == "zarr" and not path.is_dir():
        raise AvanInputError(f"{path} is not a folder: a zarr store is a folder; check the path")
    return fmt


def _split(spec: str) -> tuple[str, str | None]:
    """Split at the rightmost ``:`` whose left side exists (else at the last ``:``)."""
    if Path(spec).exists():
        return spec, None
    colons = [i for i, ch in enumerate(spec) if ch == ":"]
    for i in reversed(colons):
        left = spec[:i]
        if left and Path(left).exists():
            return left, spec[i + 1 :]
    if not colons:
        return spec, None
    i = colons[-1]
    left = spec[:i]
    # "C:\data\x.h5" or "C:/x.h5": a drive letter, not a key separator.
    if len(left) == 1 and left.isalpha() and spec[i + 1 : i + 2] in ("\\", "/"):
        return spec, None
    return left, spec[i + 1 :]


def parse_spec(spec: str | Path) -> VolumeSpec:
    """Parse ``PATH`` or ``PATH:KEY`` into a :class:`VolumeSpec`.

    The key may contain ``/`` (``raw.h5:volumes/raw``, ``out.zarr:clefts``,
    ``image.ome.zarr:0``). The split is made at the ``:`` whose left side exists as a
    path, so paths containing ``:`` still work. An empty key (``x.zarr:``) means none.

    Raises:
        AvanInputError: the path does not exist or its format is unknown.
    """
    text = str(spec)
    if not text.strip():
        raise AvanInputError("empty volume spec: give PATH or PATH:KEY")
    path_text, key = _split(text)
    path = Path(path_text).expanduser()
    if not path.exists():
        where = f" (from spec {text!r})" if key is not None else ""
        raise AvanInputError(f"{path} does not exist{where}: check the path")
    fmt = detect_format(path)
    if key is not None:
        key = key.strip("/") or None
    return VolumeSpec(path=path, key=key, format=fmt)
