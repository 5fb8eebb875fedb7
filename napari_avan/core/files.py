"""Atomic writes and read errors: every output is built at a temporary sibling path, then
renamed into place.

A half-written file or zarr store is never left at the destination: on any error the
temporary is removed and, for OS errors (disk full, permission denied), an
:class:`~napari_avan.types.AvanInputError` names the destination and the reason.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import io
import json
import os
import re
import shutil
import signal
import socket
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from napari_avan.types import AvanInputError, one_line


@contextlib.contextmanager
def interrupts_held() -> Iterator[None]:
    """Hold Ctrl-C (SIGINT) and SIGTERM until the block ends, then deliver them.

    Zarr reads and writes run in zarr's own event-loop thread while the main thread
    waits. An interrupt raised during that wait leaves the loop thread writing into a
    temporary that is being removed, and asyncio prints tracebacks at exit. Callers
    keep each block short (one slab of chunks), so Ctrl-C still stops within about a
    second. Outside the main thread (napari workers) this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []

    def hold(signum: int, frame: Any) -> None:
        caught.append(signum)

    previous: dict[int, Any] = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        handler = signal.getsignal(signum)
        if handler is not None and handler is not signal.SIG_IGN:
            previous[signum] = signal.signal(signum, hold)
    try:
        yield
    finally:
        for held, handler in previous.items():
            signal.signal(held, handler)
        for number in dict.fromkeys(caught):
            signal.raise_signal(number)


def refuse_overwrite(path: Path, what: str = "") -> AvanInputError:
    """The error for an existing destination that the caller did not ask to replace."""
    target = f"{what} in {path}" if what else str(path)
    return AvanInputError(
        f"{target} already exists: choose another output or pass --overwrite (overwrite=True)"
    )


def write_failed(path: Path, err: OSError) -> AvanInputError:
    """The error for an OS failure while writing ``path`` (nothing was left behind)."""
    hint = "; free some space" if err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG) else ""
    return AvanInputError(f"could not write {path}: {one_line(err)} (nothing was written{hint})")


def read_failed(source: object, err: BaseException) -> AvanInputError:
    """The error for any failure while reading ``source`` (codec, HDF5, truncated file)."""
    return AvanInputError(
        f"cannot read {source}: {one_line(err)} ({type(err).__name__}); the file may be "
        "truncated or corrupt: copy or export it again"
    )


def _owner_tag() -> str:
    """This process as it appears in temporary names: host and pid."""
    host = "".join(c for c in socket.gethostname() if c.isalnum() or c == "-")[:24] or "host"
    return f"{host}-{os.getpid()}"


def temp_sibling(path: Path, tag: str = "tmp") -> Path:
    """A unique hidden path in the same directory as ``path`` (same file system).

    The name records the host and pid that own it, so that a later write to ``path``
    can remove what a killed process left (see :func:`remove_stale_temporaries`).
    """
    return path.with_name(f".{path.name}.{tag}-{_owner_tag()}-{uuid.uuid4().hex[:12]}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, but owned by someone else
        return True
    return True


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Remove the temporaries of ``path`` left by dead processes of this host (SIGKILL).

    Temporaries of temporaries (a store built aside whose members were built aside
    too) go as well. An original that a killed swap had moved aside (and not yet
    replaced) is renamed back to ``path`` instead.

    Returns:
        The paths removed.
    """
    host = _owner_tag().rsplit("-", 1)[0]
    owner = rf"\.(tmp|old)-{re.escape(host)}-(\d+)-[0-9a-f]{{12}}"
    pattern = re.compile(rf"\.+{re.escape(path.name)}((?:{owner})+)")
    removed = []
    try:
        siblings = list(path.parent.glob(f"*{glob.escape(path.name)}.*"))
    except OSError:
        return []
    for sibling in siblings:
        match = pattern.fullmatch(sibling.name)
        if match is None:
            continue
        tags = re.findall(owner, match.group(1))
        if any(_alive(int(pid)) for _, pid in tags):
            continue
        if [tag for tag, _ in tags] == ["old"] and not (path.exists() or path.is_symlink()):
            # Killed between the two renames of a swap: the original is put back.
            os.rename(sibling, path)
            continue
        remove_path(sibling)
        removed.append(sibling)
    return removed


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


def fsync_tree(path: Path) -> None:
    """Flush every file below a directory (a zarr store), then the directories."""
    for folder, _, names in os.walk(path):
        for name in names:
            fsync_file(Path(folder) / name)
        fsync_dir(Path(folder))


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
        sync: fsync the result (a file, or every file of a directory) before the rename.

    Raises:
        AvanInputError: ``path`` exists and ``overwrite`` is False, or an OS error
            (disk full, permissions) happened; the temporary is removed either way.
    """
    path = Path(path)
    remove_stale_temporaries(path)  # first: it may put back an original a kill moved aside
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
        if sync:
            if tmp.is_dir():
                fsync_tree(tmp)
            else:
                fsync_file(tmp)
        swap_into_place(tmp, path)
    except OSError as err:
        remove_path(tmp)
        raise write_failed(path, err) from err
    except AvanInputError as err:
        remove_path(tmp)
        # Writers inside the block name the temporary; the user knows the destination.
        raise AvanInputError(str(err).replace(str(tmp), str(path))) from err.__cause__
    except BaseException:
        remove_path(tmp)
        raise


def write_buffered(path: Path, fill: Callable[[io.BytesIO], object]) -> None:
    """Build a file's bytes in memory with ``fill``, then write them to ``path``.

    Libraries that write files themselves report a full disk in their own ways (torch
    raises RuntimeError, tifffile a short-write ValueError, HDF5 can crash); Python's
    own write raises OSError (ENOSPC), which :func:`atomic_path` turns into a message.
    """
    buffer = io.BytesIO()
    fill(buffer)
    with open(path, "wb") as handle:
        handle.write(buffer.getbuffer())


def timestamp() -> str:
    """Now, in UTC, to the second, as ISO 8601: the time stamp of every record we write."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


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
