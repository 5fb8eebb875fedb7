"""Atomic writes: build a result at a temporary sibling path, then rename it into place.

A half-written file or zarr store is never left at the destination: on any error the
temporary is removed and, for OS errors (disk full, permission denied), an
:class:`~napari_avan.types.AvanInputError` names the destination and the reason.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from napari_avan.types import AvanInputError


def refuse_overwrite(path: Path, what: str = "") -> AvanInputError:
    """The error for an existing destination that the caller did not ask to replace."""
    target = f"{what} in {path}" if what else str(path)
    return AvanInputError(
        f"{target} already exists: choose another output or pass --overwrite (overwrite=True)"
    )


def write_failed(path: Path, err: OSError) -> AvanInputError:
    """The error for an OS failure while writing ``path`` (nothing was left behind)."""
    reason = err.strerror or str(err) or type(err).__name__
    return AvanInputError(f"could not write {path}: {reason} (nothing was written)")


def temp_sibling(path: Path, tag: str = "tmp") -> Path:
    """A unique hidden path in the same directory as ``path`` (same file system)."""
    return path.with_name(f".{path.name}.{tag}-{uuid.uuid4().hex[:12]}")


def remove_path(path: Path) -> None:
    """Remove a file or directory tree if it exists; never raise."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        elif path.exists() or path.is_symlink():
            path.unlink()
    except OSError:
        pass


def fsync_file(path: Path) -> None:
    """Flush a regular file's content to disk."""
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def fsync_dir(path: Path) -> None:
    """Flush a directory entry (the rename) to disk where the platform allows it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def swap_into_place(tmp: Path, path: Path) -> None:
    """Move ``tmp`` to ``path``, replacing what is there (file or directory).

    Files are replaced atomically by :func:`os.replace`. A directory at ``path`` is
    first renamed aside, then ``tmp`` renamed in, then the old tree deleted; if the
    second rename fails the old tree is put back.
    """
    if not (path.exists() or path.is_symlink()) or (tmp.is_file() and path.is_file()):
        os.replace(tmp, path)
    else:
        old = temp_sibling(path, "old")
        os.rename(path, old)
        try:
            os.rename(tmp, path)
        except OSError:
            os.rename(old, path)
            raise
        remove_path(old)
    fsync_dir(path.parent)


@contextlib.contextmanager
def atomic_path(path: Path, *, overwrite: bool, sync: bool = True) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to write; move it to ``path`` on success.

    Args:
        path: the destination (a file or a directory such as a zarr store).
        overwrite: replace an existing ``path``; otherwise refuse before writing.
        sync: fsync a file result before the rename.

    Raises:
        AvanInputError: ``path`` exists and ``overwrite`` is False, or an OS error
            (disk full, permissions) happened; the temporary is removed either way.
    """
    path = Path(path)
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise refuse_overwrite(path)
    if not path.parent.is_dir():
        raise AvanInputError(
            f"cannot write {path}: the folder {path.parent} does not exist; create it first"
        )
    tmp = temp_sibling(path)
    try:
        yield tmp
        if not (tmp.exists() or tmp.is_symlink()):
            raise AvanInputError(f"nothing was written to {path}")
        if sync and tmp.is_file():
            fsync_file(tmp)
        swap_into_place(tmp, path)
    except OSError as err:
        remove_path(tmp)
        raise write_failed(path, err) from err
    except BaseException:
        remove_path(tmp)
        raise


def json_safe(value: Any) -> Any:
    """``value`` converted to plain JSON types (numpy scalars and arrays, tuples, paths)."""
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, np.generic):
        return json_safe(value.item())
    if isinstance(value, float):
        # JSON has no NaN/inf; keep them readable rather than writing invalid JSON.
        return value if np.isfinite(value) else str(value)
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if hasattr(value, "value") and isinstance(value.value, (str, int)):  # enums
        return value.value
    return str(value)


def dumps_json(value: Any) -> str:
    """JSON text of :func:`json_safe` ``value``."""
    return json.dumps(json_safe(value), indent=2, sort_keys=True)
