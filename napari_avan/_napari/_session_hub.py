"""The proofreading session a viewer's docks share.

One :class:`SessionHub` per viewer (like its job runner) holds the session shown and the
layers it belongs to. The Partners and Proofread docks are views: they draw from the
session's records, change it only through decisions, and hear from the hub when another
session is shown (started from the layers, opened from a folder, saved elsewhere).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from napari_avan._napari._layers import (
    PROB_KIND,
    SESSION_KEY,
    SOURCE_SPEC_KEY,
    image_layer,
    labels_layer,
)
from napari_avan.core.session import Session
from napari_avan.types import AvanInputError

_HUBS: weakref.WeakKeyDictionary[Any, SessionHub] = weakref.WeakKeyDictionary()


def hub_for(viewer: Any) -> SessionHub:
    """The viewer's session hub (made on first use)."""
    hub = _HUBS.get(viewer)
    if hub is None:
        hub = _HUBS[viewer] = SessionHub(viewer)
    return hub


class SessionHub:
    """The session shown in one viewer, with its image, clefts and segmentation layers.

    Listeners registered with :meth:`connect` are called with no arguments after another
    session is shown (or none); they subscribe to the session's own events themselves.
    """

    def __init__(self, viewer: Any) -> None:
        self._viewer = weakref.ref(viewer)
        self.session: Session | None = None
        self.image: Any = None
        self.clefts: Any = None
        self.segmentation: Any = None
        self._table: Any = None
        self._listeners: list[Callable[[], None]] = []

    # --- listeners ----------------------------------------------------------------------

    def connect(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    def disconnect(self, listener: Callable[[], None]) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def _changed(self) -> None:
        for listener in list(self._listeners):
            listener()

    # --- which session ------------------------------------------------------------------

    def bound_to(self, clefts: Any, seg: Any) -> bool:
        """Whether the session shown belongs to these layers (and to the clefts they hold
        now: a Detect run gives the clefts layer a new cleft table, and a new session)."""
        return (
            self.session is not None
            and self.clefts is clefts
            and self.segmentation is seg
            and self._table is (clefts.metadata or {}).get("cleft_table")
        )

    def table_changed(self) -> None:
        """The clefts layer's cleft table was replaced by a run that recorded its changes
        in the session (the Detect dock's): still the same session."""
        if self.clefts is not None:
            self._table = (self.clefts.metadata or {}).get("cleft_table")

    def show(self, session: Session, image: Any, clefts: Any, seg: Any) -> None:
        """Make ``session`` the one shown, over these layers. The clefts layer holds the
        session's labels (it was made from them, or they from it) and follows each label
        edit of the session in place; it is not editable by hand (painting would go
        behind the journal: edits go through decisions)."""
        if self.session is not None:
            self.session.disconnect(self._on_session_event)
        self.session = session
        self.image, self.clefts, self.segmentation = image, clefts, seg
        clefts.editable = False
        if not session.in_memory and clefts.data is not session.labels.array:
            clefts.data = session.labels.array  # its store (a copy saved elsewhere: the copy's)
        self._table = (clefts.metadata or {}).get("cleft_table")
        clefts.metadata[SESSION_KEY] = str(session.path)
        session.connect(self._on_session_event)
        self._changed()

    def _on_session_event(self, event: Any) -> None:
        """A decision that edited labels: the same edit in the clefts layer, redrawn.

        The layer keeps its own array (napari draws a writable array of its own faster
        than a read-only view of the session's), changed at the edited voxels only. A
        session whose labels live on disk is shown from its store (read lazily, the
        decisions written there), so the layer is only redrawn.
        """
        delta, layer = event.effect.labels, self.clefts
        if delta is None or layer is None or self.session is None:
            return
        if not self.session.in_memory:
            store = self.session.labels.array
            if layer.data is not store:
                layer.data = store
            layer.refresh()
            return
        data = layer.data
        fits = (
            isinstance(data, np.ndarray)
            and data.flags.writeable
            and data.flags.c_contiguous
            and data.shape == self.session.labels.shape
            and (delta.new.size == 0 or int(delta.new.max()) <= np.iinfo(data.dtype).max)
        )
        if fits:
            data.ravel()[delta.index] = delta.new
            layer.refresh()
        else:  # a lazy array, or ids the layer's dtype cannot hold: a copy of the session's
            layer.data = np.array(self.session.labels)
            layer.editable = False

    def start(
        self, image: Any, clefts: Any, seg: Any, voxel: Any, models: dict[str, str]
    ) -> Session:
        """A new session from the layers, under ``sessions_home()``, shown at once.

        It names the image and segmentation by the files they were read from, or keeps a
        copy of them when they live only in napari (and a copy of an aligned cleft
        probability layer, for re-seeding), so it can be reopened and exported alone.
        """
        from napari_avan.core.session.session import new_session_folder
        from napari_avan.core.session.store import fits_in_memory
        from napari_avan.io.export import keep_session_volume

        data = clefts.data
        volumes = (("image", image), ("segmentation", seg), ("prob", self._prob(clefts)))
        on_disk = not fits_in_memory(data.shape, data.dtype)
        if on_disk:  # the session names its volumes by file: nothing is copied whole
            for key, layer in volumes[:2]:
                if layer is not None and not (layer.metadata or {}).get(SOURCE_SPEC_KEY):
                    raise AvanInputError(
                        f"the clefts are larger than memory, so the session reads the {key} "
                        f"from its file, but layer '{layer.name}' was not read from one: "
                        "save it as zarr and open that file in napari"
                    )
        session = Session.create(
            new_session_folder(clefts.name),
            data if isinstance(data, np.ndarray) or on_disk else np.asarray(data),
            voxel,
            models=models,
        )
        for key, layer in volumes:
            if layer is None:
                continue
            spec = (layer.metadata or {}).get(SOURCE_SPEC_KEY)
            if spec is None and on_disk:
                continue  # an unsaved probability map: re-seeds fall back to contacts
            keep_session_volume(session, key, None if spec else layer.data, spec=spec)
        self.show(session, image, clefts, seg)  # on disk: the layer shows the session's store
        return session

    def _prob(self, clefts: Any) -> Any:
        """A cleft probability layer aligned with ``clefts`` (the Detect dock's), or None."""
        viewer = self._viewer()
        if viewer is None:
            return None
        shape = tuple(clefts.data.shape)
        for layer in viewer.layers:
            kind = (layer.metadata or {}).get("napari_avan_kind")
            if kind == PROB_KIND and tuple(layer.data.shape) == shape:
                return layer
        return None

    def save_as(self, path: str | Path) -> Session:
        """Copy the session shown to ``path`` (a new folder) and go on there; the folder
        it came from stays as it was.

        Raises:
            AvanInputError: no session, ``path`` exists, or the copy failed (nothing is
                left there).
        """
        import shutil

        from napari_avan.core.files import atomic_path

        if self.session is None:
            raise AvanInputError("no session yet: assign a cleft or open a session first")
        target = Path(path)
        if target.exists() or target.is_symlink():
            raise AvanInputError(f"{target} exists: choose a new folder for the session")
        try:
            with atomic_path(target, overwrite=False) as tmp:
                shutil.copytree(self.session.path, tmp)
        except OSError as err:
            raise AvanInputError(
                f"could not save the session to {target}: {err.strerror or err} "
                f"(it is still at {self.session.path})"
            ) from err
        self.show(Session.open(target), self.image, self.clefts, self.segmentation)
        assert self.session is not None
        return self.session

    def open(self, path: str | Path, image: Any = None, seg: Any = None) -> Session:
        """Show the session in folder ``path``: its clefts as a new labels layer (a
        read-only view of the session's labels), its image and segmentation read from
        the files it names unless ``image`` / ``seg`` layers of its shape are given.

        Raises:
            AvanInputError: not a session folder, or its volumes cannot be read.
        """
        from napari_avan.io.export import session_volume

        viewer = self._viewer()
        if viewer is None:
            raise AvanInputError("the viewer is closed")
        session = Session.open(Path(path))
        shape = tuple(session.labels.shape)
        voxel = session.voxel_size_nm
        name = Path(path).name
        chosen = {"image": image, "segmentation": seg}
        for key in ("image", "segmentation"):
            layer = chosen[key]
            if layer is not None and tuple(layer.data.shape) == shape:
                continue
            data = session_volume(session, key, key)
            if data is None:
                raise AvanInputError(
                    f"the session names no {key}: choose a {key} layer of shape {shape} first"
                )
            if key == "image":
                parts = image_layer(data, voxel, f"image ({name})")
            else:
                parts = labels_layer(data, voxel, f"segmentation ({name})", opacity=0.25)
            from napari.layers import Layer

            chosen[key] = viewer.add_layer(Layer.create(*parts))
        clefts = viewer.add_labels(
            # its own array, following the session's edits; or the session's store on disk
            np.array(session.labels) if session.in_memory else session.labels.array,
            name=f"clefts ({name})",
            scale=tuple(voxel),
            opacity=0.8,
            metadata={"voxel_size_nm": tuple(voxel)},
        )
        self.show(session, chosen["image"], clefts, chosen["segmentation"])
        return session
