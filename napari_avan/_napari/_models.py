"""Models for the widgets: loaded once, prepared for the device, reused by every click."""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

from napari_avan.models.device import available_cores


def gui_threads() -> int:
    """Torch CPU threads while a viewer is open: all cores but one for the GUI when there
    are more than two (on two cores the GUI thread runs between torch's operations, which
    release the GIL)."""
    cores = available_cores()
    return cores - 1 if cores > 2 else cores


def bundled_names(task: str) -> list[str]:
    """Bundled model names for a task, the default first."""
    from napari_avan.models.checkpoint import DEFAULT_MODELS, bundled_models

    names = [n for n, entry in bundled_models().items() if entry.get("task") == task]
    default = DEFAULT_MODELS[task]
    return sorted(names, key=lambda n: (n != default, n))


def model_key(spec: str) -> tuple[Any, ...]:
    """What identifies the model ``spec`` names, as :func:`resolve_model` reads it.

    A bundled name (or ``""``, the task's default) is itself: those files ship with the
    package and do not change while it runs. A model folder (or its weights file) is its
    resolved path plus the size, modification time and inode of its weights and
    ``model.json``: a model retrained or retuned into the same folder has another key, so
    it is read again instead of the one loaded before.
    """
    from napari_avan.models.checkpoint import META_FILE, WEIGHTS_FILE

    if not spec or not Path(spec).exists():
        return ("name", spec)
    path = Path(spec).resolve()
    weights, meta = (
        (path / WEIGHTS_FILE, path / META_FILE)
        if path.is_dir()
        else (path, path.with_name(META_FILE))
    )
    return ("folder", str(path), _file_signature(weights), _file_signature(meta))


def _file_signature(path: Path) -> tuple[int, int, int] | None:
    """(size, mtime in ns, inode) of a file; None when it cannot be read."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return (stat.st_size, stat.st_mtime_ns, stat.st_ino)


class ModelCache:
    """Models loaded once per (model, task), and prepared once per device.

    A model is keyed by :func:`model_key`: a bundled name stays loaded for the session,
    a model folder is loaded again once its files change (retrained in place), and the
    copies of its previous version are dropped.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loaded: dict[tuple[Any, str], Any] = {}
        self._cache: dict[tuple[Any, str, str], tuple[Any, Any]] = {}

    def _forget_older(self, key: tuple[Any, ...]) -> None:
        """Drop what was loaded from the same folder as ``key`` before its files changed;
        call with the lock held."""
        if key[0] != "folder":
            return
        for cache in (self._loaded, self._cache):
            for old in [k for k in cache if k[0][:2] == key[:2] and k[0] != key]:
                del cache[old]

    def _load(self, spec: str, task: str, key: tuple[Any, ...]) -> Any:
        """The model as read from disk (hash checked once); call with the lock held."""
        from napari_avan.models.checkpoint import resolve_model

        if (key, task) not in self._loaded:
            model = resolve_model(spec or None, task)
            self._forget_older(key)
            self._loaded[(key, task)] = model
        return self._loaded[(key, task)]

    def get(self, spec: str, task: str, device: str) -> tuple[Any, Any]:
        """(model with its network prepared for the device, run plan); thread-safe.

        Raises:
            AvanInputError: unknown model, corrupt file, or a model for another task.
        """
        from napari_avan.models.device import plan

        with self._lock:
            key = model_key(spec)
            if (key, task, device) in self._cache:
                return self._cache[(key, task, device)]
            model = self._load(spec, task, key)
            run = plan(device, threads=gui_threads())
            prepared = replace(model, network=run.prepare(model.network))
            self._cache[(key, task, device)] = (prepared, run)
            return prepared, run

    def metadata(self, spec: str, task: str) -> dict[str, Any]:
        """A model's metadata (for defaults shown in a widget); the model read for it is
        the one :meth:`get` prepares later, unless its folder changes in between."""
        with self._lock:
            return dict(self._load(spec, task, model_key(spec)).metadata)


#: One cache per process: models are read-only once prepared.
MODELS = ModelCache()
