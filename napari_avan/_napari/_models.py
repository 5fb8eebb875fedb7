"""Models for the widgets: loaded once, prepared for the device, reused by every click."""

from __future__ import annotations

import threading
from dataclasses import replace
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


class ModelCache:
    """Models loaded once per (spec, task), and prepared once per device."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loaded: dict[tuple[str, str], Any] = {}
        self._cache: dict[tuple[str, str, str], tuple[Any, Any]] = {}

    def _load(self, spec: str, task: str) -> Any:
        """The model as read from disk (hash checked once); call with the lock held."""
        from napari_avan.models.checkpoint import resolve_model

        key = (spec, task)
        if key not in self._loaded:
            self._loaded[key] = resolve_model(spec or None, task)
        return self._loaded[key]

    def get(self, spec: str, task: str, device: str) -> tuple[Any, Any]:
        """(model with its network prepared for the device, run plan); thread-safe.

        Raises:
            AvanInputError: unknown model, corrupt file, or a model for another task.
        """
        from napari_avan.models.device import plan

        key = (spec, task, device)
        with self._lock:
            if key in self._cache:
                return self._cache[key]
            model = self._load(spec, task)
            run = plan(device, threads=gui_threads())
            prepared = replace(model, network=run.prepare(model.network))
            self._cache[key] = (prepared, run)
            return prepared, run

    def metadata(self, spec: str, task: str) -> dict[str, Any]:
        """A model's metadata (for defaults shown in a widget); the model read for it is
        the one :meth:`get` prepares later."""
        with self._lock:
            return dict(self._load(spec, task).metadata)


#: One cache per process: models are read-only once prepared.
MODELS = ModelCache()
