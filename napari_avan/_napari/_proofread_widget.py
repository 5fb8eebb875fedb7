"""Dock widget: review a proofreading session from the keyboard.

The Proofread dock walks the pending clefts of the viewer's session (the one the Partners
dock records into, or one started or opened here) most uncertain first, or by position.
The current cleft is centred and outlined, its presynaptic partners drawn whole in magenta
and its postsynaptic partners in green (a colormap over the segmentation: no copy of the
volume); the layers that would cover them are hidden once when the review starts. Every
change is a decision in the session, journaled before it shows:

- keys while the dock is shown: ``a`` accept, ``r`` reject, ``u`` unsure (noted, and kept
  for a second pass at the end), ``n`` / ``p`` next / previous, ``s`` swap pre and post,
  ``Ctrl+Z`` / ``Ctrl+Shift+Z`` undo / redo;
- Ctrl+click a segment: it becomes the presynaptic partner; Shift+click: it is added to or
  removed from the postsynaptic partners;
- *missed synapse*: the next click grows a cleft there from the probability map (or a
  small disc on the nearest contact between two segments) and AVAN assigns its partners;
  *commit painted cleft* turns the voxels painted in the ``new cleft`` layer into one;
- delete, merge with another cleft, a note; export in the formats of ``napari-avan export``.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    Label,
    LineEdit,
    PushButton,
    SpinBox,
    create_widget,
)

from napari_avan._napari._geometry import (
    camera_of,
    check_aligned,
    layer_voxel_size,
    released_without_drag,
)
from napari_avan._napari._layers import POST_KIND, PRE_KIND
from napari_avan._napari._session_hub import hub_for
from napari_avan._napari._workers import docked, guarded, thread_safe
from napari_avan.core.session import Session, SessionEvent
from napari_avan.core.session.store import nonzero_voxels
from napari_avan.io.export import EXPORT_FORMATS
from napari_avan.types import AvanInputError

if TYPE_CHECKING:
    import napari.viewer

#: The note an ``unsure`` key press leaves on a cleft.
UNSURE = "unsure"
#: Names and colours of the layers that show the current cleft's partners.
REVIEW, OUTLINE, NEW_CLEFT = "partners (review)", "cleft (review)", "new cleft"
PRE_COLOR, POST_COLOR, OUTLINE_COLOR = "magenta", "lime", "yellow"
#: Keys (napari's names) and what they do; shown on the buttons and in the help line.
KEYS = {
    "accept": "a",
    "reject": "r",
    "unsure": "u",
    "next": "n",
    "previous": "p",
    "swap": "s",
    "undo": "Control-z",
    "redo": "Control-Shift-z",
}
HELP = (
    "keys: a accept, r reject, u unsure, n / p next / previous, s swap pre and post, "
    "Ctrl+Z / Ctrl+Shift+Z undo / redo; Ctrl+click a segment: make it presynaptic, "
    "Shift+click: add or remove it as postsynaptic"
)
#: How much of the view the current cleft's box fills (the rest is context).
FIT = 0.25


def partner_colormap(pre: Any, post: Any) -> Any:
    """A labels colormap painting only the ``pre`` ids magenta and the ``post`` ids green
    (a segment on both sides shows as presynaptic); every other id is transparent."""
    from napari.utils.colormaps import DirectLabelColormap

    mapping: dict[Any, Any] = {None: "transparent", 0: "transparent"}
    mapping.update({int(i): POST_COLOR for i in post})
    mapping.update({int(i): PRE_COLOR for i in pre})
    return DirectLabelColormap(color_dict=mapping)


class ProofreadWidget(Container):
    """Proofread: the session, the review queue, decisions by key and click, export."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=True)
        self._viewer = viewer
        self.hub = hub_for(viewer)
        self.image = create_widget(annotation="napari.layers.Image", label="image")
        self.clefts = create_widget(annotation="napari.layers.Labels", label="clefts")
        self.segmentation = create_widget(
            annotation="napari.layers.Labels", label="segmentation", options={"nullable": True}
        )
        self.new_button = PushButton(text="New session")
        self.assign_new = CheckBox(
            text="assign every cleft's partners with AVAN when a session starts", value=True
        )
        self.open_button = PushButton(text="Open session...")
        self.save_button = PushButton(text="Save session as...")
        self.session_label = Label(value="session: none (start one, or assign in Partners)")
        self.order = ComboBox(label="order", choices=["uncertainty", "position"])
        self.progress = Label(value="")
        self.current = Label(value="")
        buttons = {
            name: PushButton(text=f"{name.capitalize()} [{_key_text(key)}]")
            for name, key in KEYS.items()
        }
        self.buttons = buttons
        self.help = Label(value=HELP)
        self.help.native.setWordWrap(True)
        self.reseed_mode = CheckBox(text="missed synapse: the next click grows a cleft there")
        self.commit_button = PushButton(text="Commit painted cleft")
        self.delete_button = PushButton(text="Delete cleft")
        self.merge_with = SpinBox(label="merge with cleft", min=0, max=2**31 - 1)
        self.merge_button = PushButton(text="Merge")
        self.note = LineEdit(label="note")
        self.note_button = PushButton(text="Add note")
        self.export_format = ComboBox(label="export as", choices=list(EXPORT_FORMATS))
        self.export_button = PushButton(text="Export...")
        self.status = Label(value="")

        def row(*widgets: Any) -> Container:
            return Container(layout="horizontal", widgets=list(widgets), labels=False)

        self.extend(
            [
                self.image,
                self.clefts,
                self.segmentation,
                row(self.new_button, self.open_button, self.save_button),
                self.assign_new,
                self.session_label,
                self.order,
                self.progress,
                self.current,
                row(buttons["accept"], buttons["reject"], buttons["unsure"]),
                row(buttons["previous"], buttons["next"], buttons["swap"]),
                row(buttons["undo"], buttons["redo"]),
                self.help,
                self.reseed_mode,
                row(self.commit_button, self.delete_button),
                row(self.merge_with, self.merge_button),
                row(self.note, self.note_button),
                row(self.export_format, self.export_button),
                self.status,
            ]
        )
        actions = {
            "accept": lambda: self.decide("accept"),
            "reject": lambda: self.decide("reject"),
            "unsure": self.unsure,
            "next": lambda: self.step(1),
            "previous": lambda: self.step(-1),
            "swap": self.swap,
            "undo": self.undo,
            "redo": self.redo,
        }
        for name, button in buttons.items():
            button.changed.connect(lambda *_, f=actions[name]: self._guard(f))
        self._actions = actions
        self.new_button.changed.connect(lambda *_: self._guard(self.new_session))
        self.open_button.changed.connect(self._open_dialog)
        self.save_button.changed.connect(self._save_dialog)
        self.order.changed.connect(lambda *_: self.rebuild_queue())
        self.commit_button.changed.connect(lambda *_: self._guard(self.commit_painted))
        self.delete_button.changed.connect(lambda *_: self._guard(self.delete))
        self.merge_button.changed.connect(lambda *_: self._guard(self.merge))
        self.note_button.changed.connect(lambda *_: self._guard(self.add_note))
        self.export_button.changed.connect(self._export_dialog)
        #: the clefts to walk, in review order (unsure ones appended for a second pass)
        self.queue: list[int] = []
        #: the place in ``queue`` of the cleft shown, or None
        self.position: int | None = None
        self._session: Session | None = None
        self._keys: Any = None
        self._drawn: tuple[Any, Any] | None = None  # the review layer and what it shows
        #: the layers hidden once when the review starts
        self._hidden: weakref.WeakSet[Any] = weakref.WeakSet()
        self._outlined: tuple[Any, ...] | None = None  # the outline's voxels now
        self._initialised = False  # until the end of __init__ (not docked before that)
        from napari_avan._napari._gallery import SynapseGallery

        #: thumbnails of the queue's clefts, paged; a click shows that cleft
        self.gallery = SynapseGallery(self._thumbnail, status=self._status_of)
        self.gallery.tile_clicked.connect(self._on_tile)
        self.native.layout().addWidget(self.gallery)
        self.hub.connect(self._on_hub)
        viewer.mouse_drag_callbacks.append(self._on_mouse)
        self._preselect()
        self._on_hub()
        self._bind_keys()
        self._initialised = True

    # --- layers and the session ---------------------------------------------------------

    def _preselect(self) -> None:
        by_name = {layer.name: layer for layer in self._viewer.layers}
        for widget, names in (
            (self.segmentation, ("segmentation",)),
            (self.clefts, ("predicted clefts", "clefts")),
            (self.image, ("EM",)),
        ):
            for name in names:
                if name in by_name and by_name[name] in widget.choices:
                    widget.value = by_name[name]
                    break

    def reset_choices(self, *args: Any) -> None:
        super().reset_choices(*args)
        if getattr(self, "hub", None) is not None and self.hub.session is None:
            self._preselect()

    @property
    def session(self) -> Session | None:
        return self.hub.session

    def new_session(self) -> Session:
        """Start a session from the chosen layers (every cleft pending)."""
        image, clefts, seg = self.image.value, self.clefts.value, self.segmentation.value
        if image is None or clefts is None or seg is None:
            raise AvanInputError("choose the image, clefts and segmentation layers first")
        if seg is clefts:
            raise AvanInputError("the clefts and segmentation layers must differ")
        check_aligned(image, clefts, seg)
        session = self.hub.start(
            image, clefts, seg, layer_voxel_size(image), models={"avan": "avan"}
        )
        if self.assign_new.value:
            self.assign_all()
        return session

    def runner_busy(self) -> bool:
        """Whether a job runs in this viewer (one at a time, shared by the docks)."""
        from napari_avan._napari._workers import runner_for

        return bool(runner_for(self._viewer).busy)

    def assign_all(self) -> Any:
        """Assign every cleft of the session with its AVAN in a worker (progress, Cancel
        in napari's activity dock); each result is an ``assign`` decision, and the queue is
        ordered again by uncertainty when the run ends."""
        from napari_avan._napari._models import MODELS
        from napari_avan.core.geometry import clefts_in_box
        from napari_avan.core.session import assign_decision
        from napari_avan.models.partners import PartnersStep, iter_partners

        session, image, seg = self.session, self.hub.image, self.hub.segmentation
        if session is None or image is None or seg is None:
            raise AvanInputError("no session: start one (New session) or open one")
        if not session.in_memory:
            return self._assign_all_bulk(session)
        labels = session.labels
        whole = tuple(slice(0, n) for n in labels.shape)
        points = clefts_in_box(labels, whole)  # type: ignore[arg-type]
        spec = str(session.meta.get("models", {}).get("avan") or "avan")
        post = MODELS.metadata(spec, "avan").get("postprocess") or {}
        kwargs: dict[str, Any] = {
            "polyadic": True,
            "pre_threshold": float(post.get("pre_threshold", 0.5)),
            "post_threshold": float(post.get("post_threshold", 0.5)),
        }
        arrays = tuple(thread_safe(a) for a in (image.data, labels, seg.data))
        voxel = session.voxel_size_nm

        def work() -> Any:
            model, run = MODELS.get(spec, "avan", "auto")
            yield from iter_partners(model, run, arrays, voxel, points, model_name=spec,
                                     **kwargs)  # fmt: skip

        def on_yield(step: PartnersStep) -> None:
            for out in step.outputs:
                if out.cleft_id in session.records:  # not deleted meanwhile
                    session.apply(assign_decision(out.assignment, model=spec))
            self.status.value = f"assigning: {step.done} of {step.total} patches"

        def on_done(completed: bool) -> None:
            if session is self.session:
                self.rebuild_queue()
            self.status.value = (
                f"assigned {len(points)} clefts: the queue is ordered by their uncertainty"
                if completed
                else "assignment stopped: the clefts assigned so far are kept"
            )

        self.status.value = f"assigning {len(points)} clefts..."
        return self._start_assign(work, on_yield, on_done)

    def _start_assign(self, work: Any, on_yield: Any, on_done: Any) -> Any:
        """Run an assignment of every cleft in the viewer's job runner (progress, Cancel)."""
        from napari_avan._napari._workers import JobKind, runner_for

        return runner_for(self._viewer).start(
            "Assign every cleft",
            work,
            kind=JobKind.ASSIGN,
            on_yield=on_yield,
            on_done=on_done,
            on_error=lambda reason: setattr(self.status, "value", reason),
            progress=lambda step: (step.done, step.total),
        )

    def _assign_all_bulk(self, session: Session) -> Any:
        """:meth:`assign_all` for a session kept on disk: the bulk assignment
        (:mod:`napari_avan.bulk.assign`) reads the volumes block by block from their files,
        in ``SESSION/assign-all/`` (Cancel keeps its finished blocks, and the next run
        resumes them); its ``assign`` decisions are applied when it ends."""
        import json
        import shutil

        from napari_avan.bulk.assign import iter_bulk_assign, plan_assign_job

        specs = {}
        for key in ("image", "segmentation"):
            spec = session.meta.get("volumes", {}).get(key)
            if not spec:
                raise AvanInputError(f"the session names no {key} file: it is needed to assign")
            specs[key] = spec if Path(spec).expanduser().is_absolute() else f"{session.path}/{spec}"
        model = session.meta.get("models", {}).get("avan") or None
        folder = session.path / "assign-all"
        folder.mkdir(exist_ok=True)
        decisions = folder / "decisions.jsonl"
        job = plan_assign_job(
            specs["image"], str(session.path / "clefts.zarr"), specs["segmentation"],
            folder / "edges.csv", model=None if model == "avan" else model,
            voxel_size_nm=session.voxel_size_nm, polyadic=True, decisions=decisions,
        )  # fmt: skip

        def work() -> Any:
            yield from iter_bulk_assign(job, workers=0, resume=True)

        def on_yield(step: Any) -> None:
            self.status.value = f"assigning ({step.phase}): {step.done} of {step.total} tasks"
            if step.result is None:
                return
            applied = 0
            for line in decisions.read_text().splitlines():
                decision = json.loads(line)
                if int(decision["cleft"]) in session.records:  # not deleted meanwhile
                    session.apply(decision)
                    applied += 1
            shutil.rmtree(folder)  # every decision is in the journal now
            self.status.value = (
                f"assigned {applied} clefts: the queue is ordered by their uncertainty"
            )

        def on_done(completed: bool) -> None:
            if session is self.session:
                self.rebuild_queue()
            if not completed:
                self.status.value = (
                    "assignment stopped: its finished blocks are kept; assign again to resume"
                )

        self.status.value = "assigning every cleft, block by block..."
        return self._start_assign(work, on_yield, on_done)

    def open_session(self, path: str | Path) -> Session:
        """Show the session saved in folder ``path`` (see :meth:`SessionHub.open`)."""
        return self.hub.open(path, self.image.value, self.segmentation.value)

    def _on_hub(self) -> None:
        """Another session is shown: listen to it, rebuild the queue, show its first cleft."""
        if self._session is not None:
            self._session.disconnect(self._on_session_event)
            self._session = None
        if self._initialised and not self._docked():
            self.hub.disconnect(self._on_hub)  # the dock was removed: stop following
            self.gallery.stop()
            return
        self._session = session = self.hub.session
        if session is None:
            return
        session.connect(self._on_session_event)
        self.session_label.value = f"session: {session.path}"
        self.reset_choices()
        for widget, layer in (
            (self.image, self.hub.image),
            (self.clefts, self.hub.clefts),
            (self.segmentation, self.hub.segmentation),
        ):
            if layer is not None and layer in widget.choices:
                widget.value = layer
        self.rebuild_queue()

    def rebuild_queue(self) -> None:
        """The review queue in the chosen order; shows its first cleft."""
        session = self.session
        if session is None:
            return
        queue = session.review_queue(str(self.order.value))
        unsure = [c for c in queue if session.records[c].note == UNSURE]
        self.queue = [c for c in queue if c not in unsure] + unsure
        self.position = None
        self.gallery.invalidate()
        self.gallery.set_items(self.queue)
        self.show_item(0 if self.queue else None)

    def _on_session_event(self, event: SessionEvent) -> None:
        session = self.session
        if session is None:
            return
        grew = False
        for cleft in event.clefts:  # new clefts (re-seeds, undone deletes) join the queue
            if cleft in session.records and cleft not in self.queue:
                self.queue.append(cleft)
                grew = True
        if grew:
            self.gallery.set_items(self.queue)
        if event.action in ("set_partners", "assign", "merge", "undo", "redo", "reseed"):
            self.gallery.invalidate(list(event.clefts))  # their tints or outlines changed
        self.gallery.refresh_status()
        self._refresh_text()
        if self.current_cleft in event.clefts:
            self._draw_partners()

    # --- showing ------------------------------------------------------------------------

    @property
    def current_cleft(self) -> int | None:
        if self.position is None or not 0 <= self.position < len(self.queue):
            return None
        return self.queue[self.position]

    def show_item(self, position: int | None) -> None:
        """Show queue item ``position``: centre and outline it, draw its partners."""
        self.position = position
        cleft = self.current_cleft
        self._refresh_text()
        self._hide_covering_layers()
        # A new section re-slices every visible layer; each layer changed here would be
        # sliced once more: the outline is edited in place (sliced with the rest), the
        # partners' layer hidden while its colormap changes (a hidden layer is not
        # sliced) and shown after (sliced once).
        where = self._where(cleft)
        moving = where is not None and float(self._viewer.dims.point[0]) != where[0][0]
        review = self._review_layer() if moving else None
        hide = review is not None and review.visible
        if hide:
            review.visible = False
        self._draw_partners()
        self._draw_outline(cleft, refresh=not moving)
        if where is not None:
            self._centre_on(*where)
        if hide:
            review.visible = True
        if cleft is not None:
            self.gallery.select(cleft)

    def _where(self, cleft: int | None) -> tuple[np.ndarray, np.ndarray] | None:
        """A cleft's centre in world coordinates and its in-plane extent in nm (where the
        view goes and how far it zooms), or None when its box is unknown."""
        session, clefts = self.session, self.hub.clefts
        record = session.records.get(cleft) if session is not None and cleft else None
        if record is None or not record.box or clefts is None:
            return None
        lo, hi = np.asarray(record.box[:3], float), np.asarray(record.box[3:], float)
        centre = np.asarray(clefts.data_to_world((lo + hi - 1) / 2), float)
        return centre, (hi - lo)[1:] * np.asarray(clefts.scale[1:], float)

    def _refresh_text(self) -> None:
        session = self.session
        if session is None:
            self.progress.value = self.current.value = ""
            return
        counts = session.status()
        reviewed = counts["accepted"] + counts["rejected"]
        self.progress.value = f"{reviewed} of {counts['clefts']} reviewed"
        cleft = self.current_cleft
        record = session.records.get(cleft) if cleft is not None else None
        if record is None:
            self.current.value = "nothing to review" if not self.queue else "cleft deleted"
            return
        pre = ", ".join(map(str, record.pre)) or "none"
        post = ", ".join(map(str, record.post)) or "none"
        note = f", note: {record.note}" if record.note else ""
        self.current.value = f"cleft {cleft} ({record.status}): pre {pre} -> post {post}{note}"

    def _review_layer(self) -> Any:
        """The layer that colours the current partners over the segmentation (its array,
        shared: no copy of the volume), made on first use."""
        seg = self.hub.segmentation
        if seg is None:
            return None
        for layer in self._viewer.layers:
            if layer.name == REVIEW and layer.data is seg.data:
                return layer
        layer = self._viewer.add_labels(
            seg.data,
            name=REVIEW,
            scale=tuple(seg.scale),
            translate=tuple(seg.translate),
            opacity=0.5,
            colormap=partner_colormap((), ()),
            metadata={"voxel_size_nm": tuple(layer_voxel_size(seg))},
        )
        layer.editable = False
        return layer

    def _hide_covering_layers(self) -> None:
        """The clefts layer (every cleft filled), the segmentation (every segment
        coloured) and the Partners dock's masks of every assigned cleft would cover the
        current cleft and its partners, and cost a re-slice each on every section
        change: each is hidden once when the review starts (the review's own layers
        outline the cleft and colour its partners whole); the layer list shows it again."""
        covering = (self.hub.clefts, self.hub.segmentation)
        for layer in self._viewer.layers:
            kind = (layer.metadata or {}).get("napari_avan_kind")
            mine = any(layer is x for x in covering) or kind in (PRE_KIND, POST_KIND)
            if mine and layer not in self._hidden:
                self._hidden.add(layer)
                layer.visible = False

    def _outline_layer(self) -> Any:
        """The layer that outlines the current cleft (uint8, the volume's shape, 1 on the
        outline), made on first use."""
        seg = self.hub.segmentation
        if seg is None:
            return None
        shape = tuple(seg.data.shape)
        for layer in self._viewer.layers:
            if layer.name == OUTLINE and tuple(layer.data.shape) == shape:
                return layer
        from napari.utils.colormaps import DirectLabelColormap

        layer = self._viewer.add_labels(
            self._scratch(shape),
            name=OUTLINE,
            scale=tuple(seg.scale),
            translate=tuple(seg.translate),
            opacity=1.0,
            colormap=DirectLabelColormap(
                color_dict={None: "transparent", 0: "transparent", 1: OUTLINE_COLOR}
            ),
        )
        layer.editable = False
        self._outlined = None
        return layer

    def _draw_outline(self, cleft: int | None, *, refresh: bool = True) -> None:
        """Outline ``cleft`` on each of its sections (its voxels on the border of its
        in-plane footprint), in place: the old outline's voxels are cleared; redrawn
        unless ``refresh`` is False (a re-slice follows)."""
        from scipy import ndimage

        layer, session = self._outline_layer(), self.session
        if layer is None or session is None:
            return
        if self._outlined is not None:
            layer.data[self._outlined] = 0
            self._outlined = None
        record = session.records.get(cleft) if cleft is not None else None
        if record is not None and record.box:
            lo, hi = record.box[:3], record.box[3:]
            crop = session.labels[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] == cleft
            inner = ndimage.binary_erosion(crop, structure=np.ones((1, 3, 3), bool))
            where = np.nonzero(crop & ~inner)
            self._outlined = tuple(w + o for w, o in zip(where, lo, strict=True))
            layer.data[self._outlined] = 1
        if refresh:
            layer.refresh()

    def _draw_partners(self) -> None:
        layer = self._review_layer()
        session = self.session
        if layer is None or session is None:
            return
        cleft = self.current_cleft
        record = session.records.get(cleft) if cleft is not None else None
        shown = (record.pre, record.post) if record is not None else ((), ())
        if self._drawn != (layer, shown):  # a colormap change re-slices the layer
            layer.colormap = partner_colormap(*shown)
            self._drawn = (layer, shown)

    def _centre_on(self, centre: np.ndarray, extent: np.ndarray) -> None:
        """Centre the view on a world point (its section first) and zoom so that an
        in-plane ``extent`` (nm) fills FIT of the canvas."""
        if self._viewer.dims.point[0] != float(centre[0]):  # a new section re-slices all
            self._viewer.dims.set_point(0, float(centre[0]))
        camera = camera_of(self._viewer)
        camera.center = tuple(float(c) for c in centre)
        canvas = np.asarray(self._viewer.canvas.size, float)  # (height, width) pixels
        if np.all(extent > 0) and np.all(canvas > 0):
            zoom = float(np.min(canvas * FIT / extent))
            if not 0.8 < zoom / max(float(camera.zoom), 1e-9) < 1.25:  # each change redraws
                camera.zoom = zoom

    # --- the gallery --------------------------------------------------------------------

    def _thumbnail(self, cleft: int) -> np.ndarray:
        """A cleft's tile (runs in the gallery's worker thread)."""
        from napari_avan.core.thumbnails import cleft_thumbnail

        session, image, seg = self.session, self.hub.image, self.hub.segmentation
        if session is None or image is None or cleft not in session.records:
            raise AvanInputError(f"cleft {cleft} is not in the session")
        record = session.records[cleft]
        return cleft_thumbnail(  # in the gallery's worker thread
            thread_safe(image.data), session.labels,
            None if seg is None else thread_safe(seg.data), cleft,
            record.box, record.pre, record.post,
        )  # fmt: skip

    def _status_of(self, cleft: int) -> str:
        session = self.session
        record = session.records.get(cleft) if session is not None else None
        if record is None:
            return "deleted"
        return f"{record.status}, {record.note}" if record.note else record.status

    def _on_tile(self, cleft: int) -> None:
        if cleft in self.queue:
            self.show_item(self.queue.index(cleft))

    # --- decisions ----------------------------------------------------------------------

    def _guard(self, action: Any) -> Any:
        """Run a decision; a refusal becomes the status line, never a traceback."""
        return guarded(self.status, action)

    def _need(self) -> tuple[Session, int]:
        session, cleft = self.session, self.current_cleft
        if session is None:
            raise AvanInputError("no session: start one (New session) or open one")
        if cleft is None or cleft not in session.records:
            raise AvanInputError("no cleft to decide on: the queue is empty")
        return session, cleft

    def decide(self, action: str) -> None:
        """Accept or reject the current cleft, then show the next pending one."""
        session, cleft = self._need()
        session.apply({"action": action, "cleft": cleft})
        self.status.value = f"cleft {cleft} {action}ed"
        self._advance()

    def unsure(self) -> None:
        """Note the current cleft as unsure and keep it for a second pass."""
        session, cleft = self._need()
        session.apply({"action": "note", "cleft": cleft, "text": UNSURE})
        assert self.position is not None
        if cleft not in self.queue[self.position + 1 :]:
            self.queue.append(cleft)
        self._advance()

    def _advance(self) -> None:
        """Show the next cleft still pending after the current one (or stay at the end)."""
        session = self.session
        assert session is not None and self.position is not None
        for i in range(self.position + 1, len(self.queue)):
            record = session.records.get(self.queue[i])
            if record is not None and record.status == "pending":
                self.show_item(i)
                return
        self.status.value = "every cleft in the queue is reviewed"
        self._refresh_text()

    def step(self, delta: int) -> None:
        """Show the next (1) or previous (-1) cleft in the queue, whatever its status."""
        if not self.queue:
            return
        position = 0 if self.position is None else self.position + delta
        self.show_item(min(max(position, 0), len(self.queue) - 1))

    def swap(self) -> None:
        """Swap the current cleft's pre and post partners."""
        session, cleft = self._need()
        record = session.records[cleft]
        session.apply({"action": "set_partners", "cleft": cleft, "pre": list(record.post),
                       "post": list(record.pre)})  # fmt: skip

    def set_partner(self, segment: int, side: str) -> None:
        """``side`` 'pre': ``segment`` becomes the presynaptic partner; 'post': it is
        added to the postsynaptic partners, or removed when it is one already."""
        session, cleft = self._need()
        record = session.records[cleft]
        if segment <= 0:
            raise AvanInputError("click a segment (not background) to fix a partner")
        if side == "pre":
            pre, post = [segment], [s for s in record.post if s != segment]
        else:
            pre = [s for s in record.pre if s != segment]
            post = [s for s in record.post if s != segment]
            if segment not in record.post:
                post.append(segment)
        session.apply({"action": "set_partners", "cleft": cleft, "pre": pre, "post": post})
        self.status.value = f"cleft {cleft}: pre {pre} -> post {post}"

    def undo(self) -> None:
        """Undo the last decision and show the cleft it touched."""
        if self.session is None:
            raise AvanInputError("no session to undo in")
        self._go_to(self.session.undo().clefts)

    def redo(self) -> None:
        if self.session is None:
            raise AvanInputError("no session to redo in")
        self._go_to(self.session.redo().clefts)

    def _go_to(self, clefts: list[int]) -> None:
        """Show the first of ``clefts`` that still exists (an undone re-seed is gone)."""
        session = self.session
        for cleft in clefts:
            if cleft in self.queue and session is not None and cleft in session.records:
                self.show_item(self.queue.index(cleft))
                return
        self._refresh_text()

    def delete(self) -> None:
        session, cleft = self._need()
        session.apply({"action": "delete", "cleft": cleft})
        self._advance()

    def merge(self) -> None:
        session, cleft = self._need()
        other = int(self.merge_with.value)
        session.apply({"action": "merge", "clefts": [cleft, other]})
        self.status.value = f"cleft {other} merged into {cleft}"
        self._refresh_text()

    def add_note(self) -> None:
        session, cleft = self._need()
        session.apply({"action": "note", "cleft": cleft, "text": str(self.note.value)})

    # --- re-seeding ---------------------------------------------------------------------

    def _prepare_reseed(self) -> Session:
        """The session with what re-seeding needs: probability map, segmentation, AVAN."""
        from napari_avan._napari._models import MODELS
        from napari_avan.io.export import session_volume
        from napari_avan.models.partners import avan_assigner

        session = self.session
        if session is None:
            raise AvanInputError("no session: start one (New session) or open one")
        if session.segmentation is None:
            if self.hub.segmentation is None or self.hub.image is None:
                raise AvanInputError("the session has no segmentation or image layer")
            seg, image = self.hub.segmentation.data, self.hub.image.data
            # a session kept on disk reads its volumes around each seed, never whole
            session.segmentation = np.asarray(seg) if session.in_memory else seg
            session.probability = session_volume(session, "prob", "cleft probability")
        if session.assigner is None:
            spec = str(session.meta.get("models", {}).get("avan") or "avan")
            model, run = MODELS.get(spec, "avan", "auto")
            image = self.hub.image.data
            session.assigner = avan_assigner(
                model, np.asarray(image) if session.in_memory else image, session.segmentation,
                session.voxel_size_nm, run=run,
            )  # fmt: skip
        return session

    def reseed_at(self, voxel: Any) -> int:
        """Grow a cleft around ``voxel`` (z, y, x) and assign it; its id, shown."""
        session = self._prepare_reseed()
        seed = [int(v) for v in voxel]
        effect = session.apply({"action": "reseed", "seed": seed})
        (cleft,) = [c for c, r in effect.after.items() if r is not None]
        self._after_edit(cleft)
        return cleft

    def commit_painted(self) -> int:
        """The voxels painted in the ``new cleft`` layer become a new cleft (the layer is
        made, empty, on first use: paint in it, then commit)."""
        layer = self._new_cleft_layer()
        voxels = nonzero_voxels(layer.data)
        if voxels.size == 0:
            raise AvanInputError(
                f"paint the missed cleft in the '{NEW_CLEFT}' layer first, then commit"
            )
        session = self._prepare_reseed()
        effect = session.apply({"action": "reseed", "voxels": voxels.tolist()})
        layer.data[...] = 0  # emptied in place, ready for the next one
        layer.refresh()
        (cleft,) = [c for c, r in effect.after.items() if r is not None]
        self._after_edit(cleft)
        return cleft

    def _scratch(self, shape: tuple[int, ...]) -> Any:
        """An empty uint8 volume for a layer the dock draws or paints in: numpy, or for a
        session kept on disk a zarr array in memory that stores only the chunks written."""
        session = self.session
        if session is None or session.in_memory:
            return np.zeros(shape, np.uint8)
        import zarr
        from zarr.storage import MemoryStore

        chunks = tuple(min(c, n) for c, n in zip((8, 256, 256), shape, strict=True))
        return zarr.create_array(
            store=MemoryStore(), shape=shape, chunks=chunks, dtype=np.uint8, fill_value=0
        )

    def _new_cleft_layer(self) -> Any:
        for layer in self._viewer.layers:
            if layer.name == NEW_CLEFT:
                return layer
        seg = self.hub.segmentation
        if seg is None:
            raise AvanInputError("no session: start one (New session) or open one")
        layer = self._viewer.add_labels(
            self._scratch(tuple(seg.data.shape)), name=NEW_CLEFT, scale=tuple(seg.scale),
            translate=tuple(seg.translate),
        )  # fmt: skip
        layer.mode = "paint"
        return layer

    def _after_edit(self, cleft: int) -> None:
        if self.hub.clefts is not None:
            self.hub.clefts.refresh()
        if cleft in self.queue:
            self.show_item(self.queue.index(cleft))

    # --- the mouse ----------------------------------------------------------------------

    def _on_mouse(self, viewer: Any, event: Any) -> Any:
        """Ctrl/Shift+click: fix a partner; a click in missed-synapse mode: re-seed."""
        if not self._docked():
            if self._on_mouse in viewer.mouse_drag_callbacks:
                viewer.mouse_drag_callbacks.remove(self._on_mouse)
            return
        held = getattr(event, "modifiers", ()) or ()
        modifiers = {str(getattr(m, "name", m)).lower() for m in held}
        side = "pre" if "control" in modifiers else "post" if "shift" in modifiers else None
        if side is None and not self.reseed_mode.value:
            return
        if getattr(event, "button", 1) != 1:
            return
        press = np.asarray(event.position, float)
        if not (yield from released_without_drag(event)):
            return
        if side is not None:
            self._guard(lambda: self.set_partner(self._segment_at(press), side))
        else:
            self.reseed_mode.value = False
            self._guard(lambda: self.reseed_at(self._voxel_at(press)))

    def _voxel_at(self, position: Any) -> tuple[int, int, int]:
        layer = self.hub.segmentation
        if layer is None:
            raise AvanInputError("no session: start one (New session) or open one")
        data = np.asarray(layer.world_to_data(position))
        shape = np.asarray(layer.data.shape)
        voxel = np.clip(np.round(data), 0, shape - 1).astype(int)
        return (int(voxel[0]), int(voxel[1]), int(voxel[2]))

    def _segment_at(self, position: Any) -> int:
        layer = self.hub.segmentation
        if layer is None:
            raise AvanInputError("no session: start one (New session) or open one")
        return int(layer.data[self._voxel_at(position)])

    def _docked(self) -> bool:
        """Whether the dock still sits in the viewer's window (not removed, not deleted)."""
        return docked(self.native)

    # --- keys ---------------------------------------------------------------------------

    def _bind_keys(self) -> None:
        """Bind the review keys while the dock is shown (released when it is hidden or
        closed: napari's own keys are back then)."""
        from qtpy.QtCore import QEvent, QObject

        from napari_avan._napari._keys import ReviewKeys

        bindings: dict[str, Callable[[], None]] = {
            KEYS[name]: (lambda f=f: self._guard(f)) for name, f in self._actions.items()
        }
        self._keys = keys = ReviewKeys(self._viewer, bindings)

        class Visibility(QObject):
            def eventFilter(self, watched: Any, event: Any) -> bool:
                kind = event.type()
                if kind == QEvent.Type.Show:
                    keys.bind()
                elif kind in (QEvent.Type.Hide, QEvent.Type.Close):
                    keys.release()
                return False

        self._visibility = Visibility(self.native)
        self.native.installEventFilter(self._visibility)
        if self.native.isVisible():
            keys.bind()

    # --- export -------------------------------------------------------------------------

    def export(self, path: str | Path, format: str | None = None) -> Path:
        """Write the session's export (``napari-avan export``) to ``path``."""
        from napari_avan.io.export import export_session_files

        session = self.session
        if session is None:
            raise AvanInputError("no session to export: start one or open one")
        fmt = str(format or self.export_format.value)
        out = export_session_files(session, fmt, path)
        counts = session.status()
        kept = counts["clefts"] - counts["rejected"]
        self.status.value = (
            f"wrote {out} ({fmt}): {kept} clefts kept, {counts['accepted']} accepted, "
            f"{counts['rejected']} rejected, {counts['added']} added"
        )
        return out

    def _export_dialog(self, *_: Any) -> None:
        from qtpy.QtWidgets import QFileDialog

        path, _filter = QFileDialog.getSaveFileName(self.native, "Export the session")
        if path:
            self._guard(lambda: self.export(path))

    def _save_dialog(self, *_: Any) -> None:
        from qtpy.QtWidgets import QFileDialog

        path, _filter = QFileDialog.getSaveFileName(self.native, "Save the session as a folder")
        if path:
            self._guard(lambda: self.hub.save_as(path))

    def _open_dialog(self, *_: Any) -> None:
        from qtpy.QtWidgets import QFileDialog

        path = QFileDialog.getExistingDirectory(self.native, "Open a session folder")
        if path:
            self._guard(lambda: self.open_session(path))

    def close(self) -> None:  # type: ignore[override]
        """Release the keys, stop listening to the canvas, the hub and the session."""
        if self._keys is not None:
            self._keys.release()
        self.gallery.close()
        if self._on_mouse in self._viewer.mouse_drag_callbacks:
            self._viewer.mouse_drag_callbacks.remove(self._on_mouse)
        self.hub.disconnect(self._on_hub)
        if self._session is not None:
            self._session.disconnect(self._on_session_event)
        super().close()


def _key_text(key: str) -> str:
    """A key as a button shows it: ``Control-Shift-z`` -> ``Ctrl+Shift+Z``."""
    return "+".join(
        "Ctrl" if p == "Control" else p.upper() if len(p) == 1 else p for p in key.split("-")
    )
