"""Dock widget: click a cleft to see its partners; assign every cleft in the viewport.

A click on a cleft (in any layer, 2D or 3D) runs AVAN on that cleft in a worker thread.
The presynaptic partners appear in the ``presynaptic`` labels layer (magenta), the
postsynaptic ones in ``postsynaptic`` (green); the candidates' scores fill the widget's
score table and the edges the synapse table (also the ``synapses`` points layer, which
File > Save Layers writes as an edge table). "Assign viewport" does the same for every
cleft visible, in batches, with progress and Cancel.

The widget is a view over a proofreading session (:class:`~napari_avan.core.session.Session`):
each assignment enters the session as an ``assign`` decision (journaled on disk before it
shows), and the layers and tables are drawn from the session's records when it says they
changed. The first assignment starts a session under
:func:`~napari_avan.core.session.session.sessions_home` (the image and segmentation are
named by their files, or copied in when they live only in napari); "Save session as..."
copies it to a folder of your choice and goes on there; "Open session..." shows one again.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from magicgui.widgets import (
    CheckBox,
    Container,
    FloatSpinBox,
    Label,
    PushButton,
    Table,
    create_widget,
)

from napari_avan._napari._geometry import (
    camera_of,
    check_aligned,
    layer_voxel_size,
    released_without_drag,
    viewer_viewport_box,
)
from napari_avan._napari._layers import (
    EDGES_KIND,
    POST_KIND,
    PRE_KIND,
    edge_points,
    synapse_points_layer,
)
from napari_avan._napari._model_widget import ModelWidget
from napari_avan._napari._models import MODELS
from napari_avan._napari._session_hub import hub_for
from napari_avan._napari._workers import JobKind, docked, notify, thread_safe
from napari_avan.core.geometry import clefts_in_box
from napari_avan.core.session import Session, SessionEvent, assign_decision
from napari_avan.core.session.tables import edge_status
from napari_avan.models.partners import (
    CleftOutput,
    PartnersStep,
    iter_partners,
    patch_extent,
    record_output,
)
from napari_avan.types import AvanInputError

if TYPE_CHECKING:
    from pathlib import Path

    import napari.viewer

#: Fixed colours of the partner layers.
PRE_COLOR = "magenta"
POST_COLOR = "lime"
#: Columns of the synapse table shown in the widget.
TABLE_COLUMNS = ("cleft", "pre", "post", "pre score", "post score", "status")
#: Shortest time between two redraws of the results during a bulk run.
REFRESH_INTERVAL_MS = 1000
#: Pause between the parts of a staged redraw.
STAGE_PAUSE_MS = 10
#: Columns of the candidate score table.
SCORE_COLUMNS = ("segment", "pre", "post", "role")
#: Where a session's partner masks are drawn around each cleft, in voxels on each side,
#: until a model says its patch (the bundled AVAN's patch at its working voxel size).
DEFAULT_MARGIN = (8, 96, 96)


def _table_value(rows: list[list[Any]], columns: tuple[str, ...]) -> dict[str, Any]:
    """A magicgui Table value in its 'split' form (rows, row labels, column names)."""
    return {"data": rows, "index": list(range(len(rows))), "columns": list(columns)}


#: The item data role where magicgui's Table keeps a cell's value.
_TABLE_VALUE_ROLE = 255
#: Decimals shown for scores and weights (ids and sizes are shown as integers).
SCORE_DECIMALS = 3


def cell_text(value: Any) -> str:
    """What a table cell shows: integers as they are, other numbers with SCORE_DECIMALS
    fixed decimals (never exponent notation), anything else as text."""
    if isinstance(value, (bool, np.bool_)):
        return str(value)
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.{SCORE_DECIMALS}f}"
    return str(value)


def _fit_table(table: Table) -> None:
    """Show cell texts as written (magicgui's delegate turns numbers below 0.1 into
    ``1.500e-02``) and fit the columns into the dock: no row numbers, no empty label
    beside the table, each column as wide as its contents (a scroll bar if they ever
    need more than the dock's width)."""
    from qtpy.QtWidgets import QHeaderView, QStyledItemDelegate

    native = table.native
    native.setItemDelegate(QStyledItemDelegate(native))
    native.verticalHeader().setVisible(False)
    header = native.horizontalHeader()
    header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    header.setStretchLastSection(False)
    labeled = table._labeled_widget()  # the row magicgui made to hold a label
    if labeled is not None:
        labeled._label_widget.visible = False


def _fill_table(table: Table, rows: list[list[Any]]) -> None:
    """Replace a Table's rows through Qt directly, cell by cell as magicgui stores them
    (its value setter rebuilds the whole widget: 30-50 ms for a few dozen rows); the
    text is :func:`cell_text` (numbers right-aligned), the value stays a number."""
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QHeaderView, QTableWidgetItem

    right = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
    left = Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter
    native = table.native
    header = native.horizontalHeader()
    fit = header.sectionResizeMode(0) if header.count() else None
    # fitting the columns to their contents after every cell costs O(rows^2): fit once
    header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
    blocked = native.blockSignals(True)
    try:
        native.setRowCount(len(rows))
        for i, row in enumerate(rows):
            for j, value in enumerate(row):
                item = native.item(i, j)
                if item is None:
                    item = QTableWidgetItem()
                    native.setItem(i, j, item)
                item.setText(cell_text(value))
                item.setData(_TABLE_VALUE_ROLE, value)
                number = isinstance(value, (int, float, np.number)) and not isinstance(value, bool)
                item.setTextAlignment(right if number else left)
    finally:
        native.blockSignals(blocked)
        if fit is not None:
            header.setSectionResizeMode(fit)


def fixed_colormap(color: str) -> Any:
    """A labels colormap painting every segment id in one colour (0 transparent)."""
    from napari.utils.colormaps import DirectLabelColormap

    return DirectLabelColormap(color_dict={None: color, 0: "transparent"})


class PartnersWidget(ModelWidget):
    """Partners: layers, model, device, polyadic thresholds; click a cleft; Assign viewport."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(viewer, "avan", "napari-avan train avan")
        self.image = create_widget(annotation="napari.layers.Image", label="image")
        self.clefts = create_widget(annotation="napari.layers.Labels", label="clefts")
        self.segmentation = create_widget(
            annotation="napari.layers.Labels", label="segmentation", options={"nullable": True}
        )
        self.polyadic = CheckBox(
            text="polyadic (every candidate above the thresholds)",
            value=True,
            tooltip="presynaptic: every candidate above the pre threshold, or the best one when "
            "none is; postsynaptic: every other candidate above the post threshold",
        )
        self.pre_threshold = FloatSpinBox(label="pre threshold", min=0.01, max=0.99, step=0.05)
        self.post_threshold = FloatSpinBox(label="post threshold", min=0.01, max=0.99, step=0.05)
        self.click_enabled = CheckBox(text="click a cleft to find its partners", value=True)
        self.assign_button = PushButton(text="Assign viewport")
        self.status.value = "click a cleft"
        self.scores = Table(value=_table_value([], SCORE_COLUMNS))
        self.synapses = Table(value=_table_value([], TABLE_COLUMNS))
        self.save_button = PushButton(text="Save session as...")
        self.open_button = PushButton(text="Open session...")
        self.session_label = Label(value="session: starts with the first assignment")
        session_row = Container(
            layout="horizontal", widgets=[self.save_button, self.open_button], labels=False
        )
        self.extend(
            [
                self.image,
                self.clefts,
                self.segmentation,
                self.model,
                self.model_dir,
                self.device,
                self.polyadic,
                self.pre_threshold,
                self.post_threshold,
                self.click_enabled,
                self.assign_button,
                self.cancel_button,
                self.status,
                self.scores,
                self.synapses,
                session_row,
                self.session_label,
            ]
        )
        self.scores.read_only = True
        self.synapses.read_only = True
        self.scores.min_height = 150
        self.synapses.min_height = 200
        _fit_table(self.scores)
        _fit_table(self.synapses)
        #: layer choices made by hand (or by opening a session): widget -> layer
        self._picked_by_hand: dict[Any, Any] = {}
        self._resetting = False
        for widget in (self.clefts, self.segmentation):
            widget.changed.connect(lambda *_, w=widget: self._picked(w))
        self.assign_button.changed.connect(self.assign_viewport)
        self.save_button.changed.connect(self._save_dialog)
        self.open_button.changed.connect(self._open_dialog)
        self.synapses.native.itemSelectionChanged.connect(self._on_row_selected)
        #: the viewer's session and the layers it belongs to (shared with Proofread)
        self.hub = hub_for(viewer)
        #: the session whose events this dock hears
        self._listening: Session | None = None
        self._initialised = False  # until the end of __init__ (not docked before that)
        #: what each assigned cleft of the session shows, by cleft id
        self.results: dict[int, CleftOutput] = {}
        #: the edge table of everything shown (see docs/architecture.md), with status
        self.edges = pd.DataFrame()
        #: outputs a run computed, used when their decision comes back as an event
        self._prepared: dict[int, CleftOutput] = {}
        self._applying = False
        self._margin: tuple[int, int, int] = DEFAULT_MARGIN
        #: seconds from click to partners shown, one per click (for benchmarks)
        self.click_latencies: list[float] = []
        self.selected_cleft: int | None = None
        self._pending_click: tuple[int, tuple[int, int, int], float] | None = None
        self._refresh_timer: Any = None
        viewer.mouse_drag_callbacks.append(self._on_mouse)
        self._load_defaults()
        self.hub.connect(self._on_hub)
        if self.hub.session is not None:  # a session another dock shows already
            self._on_hub()
        self._initialised = True

    # --- settings -----------------------------------------------------------------------

    def use_postprocess(self, post: dict[str, Any]) -> None:
        """The polyadic pre and post thresholds."""
        self.pre_threshold.value = float(post.get("pre_threshold", 0.5))
        self.post_threshold.value = float(post.get("post_threshold", 0.5))

    def reset_choices(self, *args: Any) -> None:
        """Refresh layer choices; preselect the layers a sample or a detection run names
        (``predicted clefts`` over ``clefts``) unless the user picked a layer by hand."""
        self._resetting = True
        try:
            super().reset_choices(*args)
            by_name = {layer.name: layer for layer in self._viewer.layers}
            for widget, names in (
                (self.segmentation, ("segmentation",)),
                (self.clefts, ("predicted clefts", "clefts")),
            ):
                picked = self._picked_by_hand.get(widget)
                if picked is not None and picked in self._viewer.layers:
                    if picked in widget.choices:
                        widget.value = picked
                    continue
                self._picked_by_hand.pop(widget, None)  # that layer is gone: by name again
                for name in names:
                    if name in by_name and by_name[name] in widget.choices:
                        widget.value = by_name[name]
                        break
        finally:
            self._resetting = False

    def _picked(self, widget: Any) -> None:
        if not getattr(self, "_resetting", True):
            self._picked_by_hand[widget] = widget.value

    def _checked_layers(self) -> tuple[Any, Any, Any]:
        image, clefts, seg = self.image.value, self.clefts.value, self.segmentation.value
        if image is None:
            raise AvanInputError("choose an image layer (the EM)")
        if clefts is None:
            raise AvanInputError("choose a clefts labels layer (run Detect clefts first)")
        if seg is None:
            raise AvanInputError("choose a segmentation labels layer: partners are segments of it")
        if seg is clefts:
            raise AvanInputError("the clefts and segmentation layers must differ")
        check_aligned(image, clefts, seg)
        return image, clefts, seg

    def _assign_kwargs(self) -> dict[str, Any]:
        return {
            "polyadic": bool(self.polyadic.value),
            "pre_threshold": float(self.pre_threshold.value),
            "post_threshold": float(self.post_threshold.value),
        }

    # --- clicking -----------------------------------------------------------------------

    def _on_mouse(self, viewer: Any, event: Any) -> Any:
        """A click (press and release without a drag) on a cleft starts its assignment."""
        if not self._docked():
            # the viewer outlives a removed dock widget: stop listening for it
            if self._on_mouse in viewer.mouse_drag_callbacks:
                viewer.mouse_drag_callbacks.remove(self._on_mouse)
            return
        if not self.click_enabled.value or getattr(event, "button", 1) != 1:
            return
        if set(getattr(event, "modifiers", ()) or ()):
            return
        active = viewer.layers.selection.active
        if active is not None and getattr(active, "mode", "pan_zoom") not in (
            "pan_zoom",
            "transform",
            "select",
        ):
            return  # painting, drawing, picking: not ours
        press = np.asarray(event.position, float)
        if (yield from released_without_drag(event)):
            self.click(press, getattr(event, "view_direction", None), list(event.dims_displayed))

    def _docked(self) -> bool:
        """Whether the dock still sits in the viewer's window (not removed, not deleted)."""
        return docked(self.native)

    def cleft_at(
        self, position: Any, view_direction: Any = None, dims_displayed: Any = None
    ) -> tuple[int, tuple[int, int, int]] | None:
        """(cleft id, voxel) under a world position (along the view ray in 3D), or None."""
        layer = self.clefts.value
        if layer is None:
            return None
        value = layer.get_value(
            position, view_direction=view_direction, dims_displayed=dims_displayed, world=True
        )
        if isinstance(value, tuple):  # multiscale: (level, value)
            value = value[-1]
        if value is None or int(value) == 0:
            return None
        cleft_id = int(value)
        if dims_displayed is not None and len(dims_displayed) == 3 and view_direction is not None:
            start, end = layer.get_ray_intersections(
                position, view_direction, dims_displayed, world=True
            )
            if start is None:
                return None
            ray = np.linspace(np.asarray(start), np.asarray(end), 256)
            idx = np.clip(np.round(ray).astype(int), 0, np.array(layer.data.shape) - 1)
            hits = [tuple(i) for i in idx if layer.data[tuple(i)] == cleft_id]
            if not hits:
                return None
            voxel = hits[0]
        else:
            data = np.asarray(layer.world_to_data(position))
            voxel = tuple(
                int(v) for v in np.clip(np.round(data), 0, np.array(layer.data.shape) - 1)
            )
        return cleft_id, (int(voxel[0]), int(voxel[1]), int(voxel[2]))

    def click(self, position: Any, view_direction: Any = None, dims_displayed: Any = None) -> bool:
        """Assign the cleft under ``position`` (world); False when there is none."""
        clicked = time.perf_counter()
        try:
            self._checked_layers()
            found = self.cleft_at(position, view_direction, dims_displayed)
        except AvanInputError as exc:
            self._fail(f"Partners: {exc}")
            return False
        if found is None:
            return False
        cleft_id, voxel = found
        job = self.runner.job
        if job is not None and job.kind is JobKind.CLICK:
            self._pending_click = (cleft_id, voxel, clicked)  # the latest click wins
            return True
        self.assign_clefts({cleft_id: voxel}, clicked=clicked)
        return True

    # --- running ------------------------------------------------------------------------

    def assign_clefts(
        self, cleft_points: dict[int, tuple[int, int, int]], *, clicked: float | None = None
    ) -> Any:
        """Assign these clefts (id -> a voxel of it) in a worker; results fill the layers."""
        try:
            image, clefts, seg = self._checked_layers()
            voxel = layer_voxel_size(image)
        except AvanInputError as exc:
            self._fail(f"Partners: {exc}")
            return None
        try:
            session = self.ensure_session()
        except AvanInputError as exc:
            self._fail(f"Partners: {exc}")
            return None
        arrays = tuple(thread_safe(a) for a in (image.data, clefts.data, seg.data))
        spec, device = self.model_spec, str(self.device.value)
        kwargs = self._assign_kwargs()
        single = len(cleft_points) == 1 and clicked is not None
        title = f"Partners of cleft {next(iter(cleft_points))}" if single else "Assign viewport"
        self._failed = False

        def work() -> Any:
            model, run = MODELS.get(spec, "avan", device)
            self._margin = patch_extent(model, voxel)
            yield from iter_partners(
                model, run, arrays, voxel, cleft_points, model_name=spec, **kwargs
            )

        def on_yield(step: PartnersStep) -> None:
            self._apply(session, step.outputs, select=single, model=spec)
            if single and step.outputs and clicked is not None:
                self.click_latencies.append(time.perf_counter() - clicked)
            if not single:
                self.status.value = (
                    f"assigned {len(self.results)} clefts ({step.done}/{step.total} patches)"
                )

        job = self.runner.start(
            title,
            work,
            kind=JobKind.CLICK if single else JobKind.ASSIGN,
            on_yield=on_yield,
            on_done=lambda completed: self._on_done(completed, redraw=not single),
            on_error=lambda reason: self._fail(reason, tell=False),
            progress=None if single else (lambda step: (step.done, step.total)),
        )
        if job is not None:
            self.assign_button.enabled = False
            self.cancel_button.enabled = True
            if single:
                self.status.value = f"{title}..."
        return job

    def assign_viewport(self, *_: Any) -> Any:
        """Assign every cleft with a voxel in the visible region (current section in 2D)."""
        try:
            _, clefts, _ = self._checked_layers()
            box = viewer_viewport_box(self._viewer, clefts, depth=1)
        except AvanInputError as exc:
            self._fail(f"Assign viewport: {exc}")
            return None
        points = clefts_in_box(clefts.data, box)
        if not points:
            self.status.value = "no cleft in the viewport: run Detect clefts or move the view"
            notify(self.status.value, "info")
            return None
        self.status.value = f"assigning {len(points)} clefts..."
        return self.assign_clefts(points)

    def _on_done(self, completed: bool, *, redraw: bool = True) -> None:
        if redraw and self.results:  # a bulk run's last results (a click drew its own)
            self.refresh_views(staged=True)
        self.assign_button.enabled = True
        self.cancel_button.enabled = False
        if not completed and not self._failed:
            self.status.value = f"cancelled: {len(self.results)} clefts assigned so far are kept"
        pending, self._pending_click = self._pending_click, None
        if pending is not None:
            cleft_id, voxel, clicked = pending
            self.assign_clefts({cleft_id: voxel}, clicked=clicked)

    # --- showing results ----------------------------------------------------------------

    def _partner_layers(self) -> tuple[Any, Any, Any]:
        """The presynaptic, postsynaptic and synapses layers, made on first use."""
        seg = self.segmentation.value
        shape = tuple(int(n) for n in seg.data.shape)
        found: dict[str, Any] = {}
        for layer in self._viewer.layers:
            kind = (layer.metadata or {}).get("napari_avan_kind")
            if kind in (PRE_KIND, POST_KIND) and tuple(layer.data.shape) == shape:
                found[kind] = layer
            elif kind == EDGES_KIND:
                found[kind] = layer
        voxel = layer_voxel_size(seg)
        common = {"scale": tuple(seg.scale), "translate": tuple(seg.translate)}
        dtype = seg.data.dtype if np.dtype(seg.data.dtype).kind in "ui" else np.uint32
        for kind, color in ((PRE_KIND, PRE_COLOR), (POST_KIND, POST_COLOR)):
            if kind not in found:
                layer = self._viewer.add_labels(
                    np.zeros(shape, dtype),
                    name=kind,
                    opacity=0.55,
                    metadata={"napari_avan_kind": kind, "voxel_size_nm": tuple(voxel)},
                    **common,
                )
                layer.colormap = fixed_colormap(color)
                found[kind] = layer
        if EDGES_KIND not in found:
            data, kwargs, _ = synapse_points_layer(self.edges_table(), voxel)
            kwargs["translate"] = tuple(seg.translate)
            found[EDGES_KIND] = self._viewer.add_points(data, **kwargs)
        return found[PRE_KIND], found[POST_KIND], found[EDGES_KIND]

    def edges_table(self) -> pd.DataFrame:
        from napari_avan.core.tables import empty_edge_table

        return self.edges if len(self.edges.columns) else empty_edge_table()

    def _apply(
        self, session: Session, outputs: list[CleftOutput], select: bool, model: str = ""
    ) -> None:
        """Record a run's assignments in its session (each journaled before it shows);
        the session's events redraw them (GUI thread)."""
        if not outputs:
            return
        self._applying = True
        try:
            for out in outputs:
                self._prepared[out.cleft_id] = out
                session.apply(assign_decision(out.assignment, model=model))
        except AvanInputError as exc:
            self._fail(f"Partners: {exc}")
            return
        finally:
            self._applying = False
            self._prepared.clear()
        if session is not self.session:
            return  # a run of a session no longer shown: recorded there, not drawn here
        if select:
            self.refresh_views()
            self.show_cleft(outputs[-1].cleft_id, move_camera=False)
        else:
            self._schedule_refresh()

    # --- the session --------------------------------------------------------------------

    @property
    def session(self) -> Session | None:
        """The proofreading session shown (None until the first assignment or opening)."""
        return self.hub.session

    def ensure_session(self) -> Session:
        """The session of the chosen layers, started (and shown) if there is none yet.

        A new session lives under ``sessions_home()``; it names the image and
        segmentation by the files they were read from, or keeps a copy of them when they
        live only in napari, so that it can be reopened and exported on its own.
        """
        image, clefts, seg = self._checked_layers()
        if self.hub.bound_to(clefts, seg):
            assert self.hub.session is not None
            return self.hub.session
        voxel = layer_voxel_size(image)
        return self.hub.start(image, clefts, seg, voxel, models={"avan": self.model_spec})

    def _on_hub(self) -> None:
        """Another session is shown: draw it, and hear its events."""
        if self._listening is not None:
            self._listening.disconnect(self._on_session_event)
            self._listening = None
        if self._initialised and not self._docked():
            self.hub.disconnect(self._on_hub)  # the dock was removed: stop following
            return
        self.clear_results()
        session = self._listening = self.hub.session
        if session is None:
            return
        session.connect(self._on_session_event)
        self.session_label.value = f"session: {session.path}"
        self._resetting = True
        try:
            super().reset_choices()  # the hub's layers may be new to the choices
            for widget, layer in (
                (self.image, self.hub.image),
                (self.clefts, self.hub.clefts),
                (self.segmentation, self.hub.segmentation),
            ):
                if layer is not None and layer is not widget.value:
                    if layer in widget.choices:
                        widget.value = layer
                        self._picked_by_hand[widget] = layer
        finally:
            self._resetting = False
        self._render(sorted(session.records))
        if self.results:
            self.refresh_views()

    def _on_session_event(self, event: SessionEvent) -> None:
        self._render(event.clefts)
        if not self._applying:  # a change made elsewhere (a script, another dock)
            self._schedule_refresh()

    def _render(self, cleft_ids: Any) -> None:
        """Draw these clefts as the session now records them: partner masks, edge rows
        (with the session's status) and results; clefts without partners show none."""
        session = self.session
        if session is None:
            return
        ids = {int(c) for c in cleft_ids}
        if not ids:
            return
        pre_layer = post_layer = None
        shown: list[CleftOutput] = []
        voxel = session.voxel_size_nm
        for cleft in sorted(ids):
            record = session.records.get(cleft)
            old = self.results.pop(cleft, None)
            drawn = record is not None and bool(record.candidates or record.pre or record.post)
            if old is None and not drawn:
                continue
            if pre_layer is None:
                pre_layer, post_layer, _ = self._partner_layers()
            assert post_layer is not None
            if old is not None:  # clear its old partners first
                for layer, old_ids in (
                    (pre_layer, old.assignment.pre_ids),
                    (post_layer, old.assignment.post_ids),
                ):
                    view = layer.data[old.region]
                    view[np.isin(view, old_ids)] = 0
            if record is None or not drawn:
                continue
            out = self._prepared.get(cleft)
            if out is None or (out.assignment.pre_ids, out.assignment.post_ids) != (
                list(record.pre),
                list(record.post),
            ):
                out = record_output(
                    cleft, record, session.labels, self.segmentation.value.data, voxel,
                    self._margin, model_name=str(session.meta.get("models", {}).get("avan", "")),
                )  # fmt: skip
            for layer, mask in ((pre_layer, out.pre_mask), (post_layer, out.post_mask)):
                view = layer.data[out.region]
                view[mask > 0] = mask[mask > 0]
            edges = out.edges.copy()
            edges["status"] = edge_status(record)
            edges["round"] = np.int64(record.round)
            out = CleftOutput(cleft, out.assignment, edges, out.region, out.pre_mask,
                              out.post_mask)  # fmt: skip
            self.results[cleft] = out
            shown.append(out)
        frames = [o.edges for o in shown if len(o.edges)]
        kept = (
            self.edges[~self.edges["cleft_segid"].isin(ids)]
            if len(self.edges.columns)
            else self.edges
        )
        self.edges = pd.concat([kept, *frames], ignore_index=True) if frames else kept

    def save_session(self, path: str | Path) -> Path:
        """Copy the session to ``path`` (a new folder) and go on there; the copy left
        behind stays as it was. Starts a session from the chosen layers if none is shown.

        Raises:
            AvanInputError: ``path`` exists, or the copy failed (nothing is left there).
        """
        if self.session is None:
            self.ensure_session()
        session = self.hub.save_as(path)
        self.status.value = f"session saved to {session.path}"
        return session.path

    def open_session(self, path: str | Path) -> Session:
        """Show the session in folder ``path``: its clefts as a new labels layer (a
        read-only view of the session's labels), its image and segmentation from the
        files it names unless layers of the same shape are chosen already.

        Raises:
            AvanInputError: not a session folder, or its volumes cannot be read.
        """
        session = self.hub.open(path, self.image.value, self.segmentation.value)
        counts = session.status()
        self.status.value = (
            f"session {session.path.name}: {counts['clefts']} clefts, {counts['pending']} "
            f"pending, {counts['decisions']} decisions"
        )
        return session

    def _save_dialog(self, *_: Any) -> None:
        from qtpy.QtWidgets import QFileDialog

        path, _ = QFileDialog.getSaveFileName(self.native, "Save the session as a folder")
        if path:
            try:
                self.save_session(path)
            except AvanInputError as exc:
                self._fail(f"Save session: {exc}")

    def _open_dialog(self, *_: Any) -> None:
        from qtpy.QtWidgets import QFileDialog

        path = QFileDialog.getExistingDirectory(self.native, "Open a session folder")
        if path:
            try:
                self.open_session(path)
            except AvanInputError as exc:
                self._fail(f"Open session: {exc}")

    def clear_results(self) -> None:
        """Forget every assignment: tables emptied, partner layers cleared."""
        self.results.clear()
        self.edges = pd.DataFrame()
        self.selected_cleft = None
        for layer in self._viewer.layers:
            if (layer.metadata or {}).get("napari_avan_kind") in (PRE_KIND, POST_KIND):
                layer.data[...] = 0
                layer.refresh()
        _fill_table(self.synapses, [])
        _fill_table(self.scores, [])

    def _schedule_refresh(self) -> None:
        """Redraw layers and tables at most once per REFRESH_INTERVAL_MS during a bulk run:
        each redraw re-slices the layers and rebuilds the table on the GUI thread (and in a
        3D view renders every volume again)."""
        from qtpy.QtCore import QTimer

        if self._refresh_timer is None:
            self._refresh_timer = QTimer()
            self._refresh_timer.setSingleShot(True)
            self._refresh_timer.timeout.connect(lambda: self.refresh_views(staged=True))
        if not self._refresh_timer.isActive():
            self._refresh_timer.start(REFRESH_INTERVAL_MS)

    def refresh_views(self, *, staged: bool = False) -> None:
        """Redraw the partner layers, the synapses layer and the synapse table.

        Args:
            staged: one part per turn of the event loop (each followed by its own canvas
                repaint), so no single block holds the GUI for long during a bulk run;
                otherwise all at once, before returning.
        """
        if self._refresh_timer is not None:
            self._refresh_timer.stop()
        if not self._docked():
            return
        pre_layer, post_layer, points = self._partner_layers()
        steps = [
            pre_layer.refresh,
            post_layer.refresh,
            self._refresh_table,
            lambda: self._refresh_points(points),
        ]
        if not staged:
            for step in steps:
                step()
            return
        from qtpy.QtCore import QTimer

        def run(index: int) -> None:
            if not self._docked():
                return  # the widget (or its viewer) closed while the redraw was pending
            steps[index]()
            if index + 1 < len(steps):
                # a short pause lets the canvas repaint and other events run in between
                QTimer.singleShot(STAGE_PAUSE_MS, lambda: run(index + 1))

        run(0)

    def _refresh_points(self, points: Any) -> None:
        table = self.edges_table()
        points.data = edge_points(table)
        points.features = table.reset_index(drop=True)

    def _refresh_table(self) -> None:
        rows = [
            [
                int(r.cleft_segid),
                int(r.presyn_segid),
                int(r.postsyn_segid),
                float(r.presyn_wt),
                float(r.postsyn_wt),
                str(r.status),
            ]
            for r in self.edges_table().itertuples()
        ]
        _fill_table(self.synapses, rows)

    def show_cleft(self, cleft_id: int, *, move_camera: bool = True) -> None:
        """Show one cleft's candidate scores; optionally centre the camera on it."""
        out = self.results.get(cleft_id)
        if out is None:
            return
        self.selected_cleft = cleft_id
        a = out.assignment
        rows = []
        for seg_id, pre, post in zip(
            a.candidates.tolist(), a.pre_scores.tolist(), a.post_scores.tolist(), strict=True
        ):
            role = "pre" if seg_id in a.pre_ids else "post" if seg_id in a.post_ids else ""
            rows.append([int(seg_id), float(pre), float(post), role])
        rows.sort(key=lambda r: -max(r[1], r[2]))
        _fill_table(self.scores, rows)
        pre = ", ".join(map(str, a.pre_ids)) or "none"
        post = ", ".join(map(str, a.post_ids)) or "none"
        record = self.session.records.get(cleft_id) if self.session is not None else None
        status = f" ({record.status})" if record is not None else ""
        self.status.value = f"cleft {cleft_id}: pre {pre} -> post {post}{status}"
        clefts = self.clefts.value
        if clefts is not None:
            clefts.selected_label = cleft_id
        points = next(
            (
                layer
                for layer in self._viewer.layers
                if (layer.metadata or {}).get("napari_avan_kind") == EDGES_KIND
            ),
            None,
        )
        if points is not None and len(self.edges):
            rows_of = np.flatnonzero(points.features["cleft_segid"].to_numpy() == cleft_id)
            points.selected_data = set(rows_of.tolist())
        if move_camera and clefts is not None:
            region = out.region
            centre = np.array([(s.start + s.stop - 1) / 2 for s in region], float)
            match = self.edges[self.edges["cleft_segid"] == cleft_id] if len(self.edges) else None
            if match is not None and len(match):
                centre = edge_points(match)[0]
            world = np.asarray(clefts.data_to_world(centre), float)
            self._viewer.dims.set_point(0, float(world[0]))
            camera_of(self._viewer).center = tuple(world)

    def _on_row_selected(self) -> None:
        indexes = self.synapses.native.selectedIndexes()
        if not indexes:
            return
        row = indexes[0].row()
        cleft_id = int(self.synapses.data[row, 0])
        self.show_cleft(cleft_id, move_camera=True)

    def close(self) -> None:  # type: ignore[override]
        """Close the widget and stop listening to clicks on the canvas and the session."""
        if self._on_mouse in self._viewer.mouse_drag_callbacks:
            self._viewer.mouse_drag_callbacks.remove(self._on_mouse)
        if self._listening is not None:
            self._listening.disconnect(self._on_session_event)
        self.hub.disconnect(self._on_hub)
        super().close()
