"""Review keys bound on a viewer and on every one of its layers while a dock is shown.

napari resolves a key press through the active layer's keymaps (instance, then class)
before the viewer's, and layer classes bind many single letters (Labels ``p``, Points
``a``, ...), so keys bound on the viewer alone do nothing while such a layer is selected.
:class:`ReviewKeys` therefore binds each key on the viewer and on each layer *instance*
(which wins over the class), follows layers inserted later, and puts back exactly what
each instance keymap held before when released.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

#: Marks a key that had no binding in an instance keymap before ours.
_ABSENT = object()


def normalise_key(key: Any) -> Any:
    """A key in napari's canonical form (an app-model ``KeyBinding``).

    ``"Control-Shift-z"``, ``"Ctrl-Shift-Z"`` and ``"Shift-Ctrl-z"`` give equal results, the
    form napari's keymaps are indexed by.
    """
    from napari.utils.key_bindings import coerce_keybinding

    return coerce_keybinding(key)


def _press_handler(key: Any, callback: Callable[[], None]) -> Callable[[Any], None]:
    """A napari key handler (called with the viewer or the layer) that runs ``callback``.

    A plain function, not a generator: napari calls it once per press and nothing on
    release (auto-repeats of a held key are dropped by napari).
    """

    def handler(_parent: Any) -> None:
        callback()

    handler.__name__ = f"review_key_{key!s}"
    handler.__qualname__ = handler.__name__
    handler.__doc__ = f"Review key {key!s} (napari-avan)."
    return handler


class ReviewKeys:
    """Keys bound on a viewer and on each of its layers while a dock is shown.

    Args:
        viewer: The napari viewer.
        actions: Key in napari's form (``"a"``, ``"Control-z"``, ``"Control-Shift-z"``) to
            a callable with no arguments, run once per press.

    Raises:
        ValueError: two keys of ``actions`` are the same key once normalised.
    """

    def __init__(self, viewer: Any, actions: dict[str, Callable[[], None]]) -> None:
        self._viewer = viewer
        self._handlers: dict[Any, Callable[[Any], None]] = {}
        for key, callback in actions.items():
            kb = normalise_key(key)
            if kb in self._handlers:
                raise ValueError(f"key {key!r} given twice (as {kb!s})")
            self._handlers[kb] = _press_handler(kb, callback)
        #: id(provider) -> (provider, {key: what its instance keymap held before}).
        self._saved: dict[int, tuple[Any, dict[Any, Any]]] = {}
        self._bound = False

    @property
    def bound(self) -> bool:
        """Whether the keys are bound now."""
        return self._bound

    def bind(self) -> None:
        """Bind the keys on the viewer and every layer, and on layers inserted later.

        Does nothing when already bound.
        """
        if self._bound:
            return
        self._bound = True
        self._bind_on(self._viewer)
        for layer in self._viewer.layers:
            self._bind_on(layer)
        events = self._viewer.layers.events
        events.inserted.connect(self._on_inserted)
        events.removed.connect(self._on_removed)

    def release(self) -> None:
        """Put back what the viewer's and the layers' keymaps held before; stop following layers.

        A key rebound by someone else since :meth:`bind` keeps that newer binding. Does
        nothing when not bound.
        """
        if not self._bound:
            return
        self._bound = False
        events = self._viewer.layers.events
        events.inserted.disconnect(self._on_inserted)
        events.removed.disconnect(self._on_removed)
        for provider, saved in list(self._saved.values()):
            self._restore(provider, saved)
        self._saved.clear()

    # ------------------------------------------------------------------------- internals

    def _bind_on(self, provider: Any) -> None:
        """Bind every key on one viewer or layer instance, remembering what was there."""
        if id(provider) in self._saved:
            return
        keymap = provider.keymap
        saved = {kb: keymap.get(kb, _ABSENT) for kb in self._handlers}
        self._saved[id(provider)] = (provider, saved)
        for kb, handler in self._handlers.items():
            provider.bind_key(kb, handler, overwrite=True)

    def _restore(self, provider: Any, saved: dict[Any, Any]) -> None:
        keymap = provider.keymap
        for kb, before in saved.items():
            if keymap.get(kb) is not self._handlers[kb]:
                continue  # rebound by someone else since: leave theirs
            if before is _ABSENT:
                provider.bind_key(kb, None)
            else:
                provider.bind_key(kb, before, overwrite=True)

    def _on_inserted(self, event: Any) -> None:
        self._bind_on(event.value)

    def _on_removed(self, event: Any) -> None:
        entry = self._saved.pop(id(event.value), None)
        if entry is not None:
            self._restore(*entry)
