"""Dock widget: bootstrapped rounds on the viewer's proofreading session.

A round (:mod:`napari_avan.models.bootstrap`) fine-tunes the session's cleft detector and
AVAN on its reviewed clefts, then detects and assigns again what no proofreader touched.
The dock works on the session the Proofread and Partners docks show (the viewer's
:class:`~napari_avan._napari._session_hub.SessionHub`) and follows it when another one is
shown:

- *Mark validation box* adds (or empties) the ``validation box`` Shapes layer, in
  rectangle mode: the rectangle drawn there is the box's y and x extent, through every
  section (the layer is 2D, so the rectangle shows on every section; a z coordinate,
  in a 3D layer of that name, is ignored). Without a rectangle the box of the last round
  is kept, else the round chooses one. The box's reviewed clefts score the round and are
  never trained on.
- *Start* runs the round in a worker thread with a time budget (the detector gets 60 %
  of it, AVAN the rest), drawing the training curve as it goes; at its end the round is
  applied to the session as decisions (journaled, undoable) and added to the table of
  rounds. *Cancel* stops it at its next step: the session is unchanged and the round's
  model folder is removed.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import Container, FloatSpinBox, Label, ProgressBar, PushButton
from qtpy.QtWidgets import QAbstractItemView, QHeaderView, QLabel, QTableWidget, QTableWidgetItem

from napari_avan._napari._plot import LinePlot
from napari_avan._napari._session_hub import hub_for
from napari_avan._napari._workers import Job, JobKind, docked, guarded, notify, runner_for
from napari_avan.core.session import Session
from napari_avan.types import AvanInputError

if TYPE_CHECKING:
    import napari.viewer

    from napari_avan.models.bootstrap import RoundPlan, RoundProgress

Box = tuple[int, int, int, int, int, int]

#: The Shapes layer whose rectangle is the validation box.
BOX_LAYER = "validation box"
BOX_COLOR = "#ffd400"
NO_SESSION = "no session: start one in the Proofread dock"
CANCELLED = "round cancelled: the session is unchanged"
HELP = (
    "A round fine-tunes the session's cleft detector and AVAN on the reviewed clefts "
    "(accepted, added, re-seeded, partners corrected; rejected ones as negatives), then "
    "detects and assigns again the pending clefts nobody touched. The validation box's "
    "reviewed clefts are never trained on: they score the round."
)
#: The table of rounds: column titles.
COLUMNS = (
    "round",
    "reviewed",
    "validation clefts",
    "rejected",
    "added",
    "predicted",
    "cleft F1",
    "pre accuracy",
    "edge F1",
    "minutes",
)
#: The figures plotted across rounds: record key -> (name, colour).
ROUND_FIGURES = {
    "cleft_f1": ("cleft F1", "#81c784"),
    "pre_accuracy": ("pre accuracy", "#ba68c8"),
    "edge_f1": ("edge F1", "#f06292"),
}
#: The training curve's lines: name -> (colour, on the 0-1 axis).
CURVE_LINES = {
    "detector loss": ("#4fc3f7", False),
    "AVAN loss": ("#ffb74d", False),
    "cleft F1": ("#81c784", True),
    "edge F1": ("#f06292", True),
    "accuracy": ("#ba68c8", True),
}
_PHASE_NAMES = {"detector": "detector", "avan": "AVAN"}


def _figure(value: Any, digits: int = 2) -> str:
    return "n/a" if value is None else f"{float(value):.{digits}f}"


def validation_figure(phase: str, validation: dict[str, Any] | None) -> tuple[str, float] | None:
    """The figure the training curve draws for a validation: the detector's cleft F1,
    AVAN's edge F1 (its accuracy when edge F1 is not measured); None for nothing."""
    if not validation:
        return None
    if phase == "detector":
        value = validation.get("cleft_f1")
        return None if value is None else ("cleft F1", float(value))
    for key, name in (("edge_f1", "edge F1"), ("accuracy", "accuracy")):
        if validation.get(key) is not None:
            return name, float(validation[key])
    return None


def round_summary(record: dict[str, Any]) -> str:
    """One line on a round: its figures before and after, what it trained on, what it
    predicted, where its models are."""
    base, after, counts = record.get("base_metrics") or {}, record["metrics"], record["counts"]
    figures = ", ".join(
        f"{name} {_figure(base.get(key))} -> {_figure(after.get(key))}"
        for key, (name, _) in ROUND_FIGURES.items()
    )
    return (
        f"round {record['round']}: {figures} on {counts.get('validation_clefts', 0)} "
        f"validation clefts; trained on {counts.get('training_clefts', 0)} reviewed clefts; "
        f"{counts.get('predicted', 0)} clefts predicted in place of "
        f"{counts.get('removed', 0)} pending; models in {record.get('out', '?')}"
    )


def round_row(record: dict[str, Any]) -> list[str]:
    """A round's cells in the table, in :data:`COLUMNS` order."""
    counts, metrics = record["counts"], record["metrics"]
    minutes = (record.get("minutes") or {}).get("round")
    return [
        str(record["round"]),
        str(counts.get("training_clefts", "")),
        str(counts.get("validation_clefts", "")),
        str(counts.get("rejected", "")),
        str(counts.get("added", "")),
        str(counts.get("predicted", "")),
        _figure(metrics.get("cleft_f1")),
        _figure(metrics.get("pre_accuracy")),
        _figure(metrics.get("edge_f1")),
        _figure(minutes, 1),
    ]


def next_round_folder(session: Session) -> Path:
    """Where the next round's models go: ``round{N}-models`` in the session folder, with
    ``-2``, ``-3``... when that exists (a round cancelled or failed elsewhere)."""
    base = session.path / f"round{session.round + 1}-models"
    out, n = base, 1
    while out.exists():
        n += 1
        out = base.with_name(f"{base.name}-{n}")
    return out


class TrainingCurve(LinePlot):
    """A round's training as it goes: every step's loss (AVAN's steps after the
    detector's) and the validation figure each time the training loop validates."""

    def __init__(self) -> None:
        super().__init__(x_label="training step", left_label="loss")
        self.empty_text = "a round's training curve shows here"
        for name, (color, unit) in CURVE_LINES.items():
            self.add_line(name, color, unit=unit, dots=unit)
        #: the loss of each training step, both models, in order
        self.losses: list[float] = []
        #: each validation: (step on the plot's x axis, figure name, value)
        self.validation: list[tuple[int, str, float]] = []
        self._phase: str | None = None
        self._offset = 0
        self._last = 0

    def reset(self) -> None:
        """Empty, for a new round."""
        self.clear()
        self.losses.clear()
        self.validation.clear()
        self._phase, self._offset, self._last = None, 0, 0

    def record(self, progress: RoundProgress) -> None:
        """Draw one progress of a round (steps without a loss are not training steps)."""
        if progress.step is None or progress.loss is None:
            return
        name = _PHASE_NAMES.get(progress.phase, progress.phase)
        if progress.phase != self._phase:
            if self._phase is not None:  # the next model: its steps after the last one's
                self._offset = self._last
                self.mark(self._offset, name)
            self._phase = progress.phase
        x = self._offset + int(progress.step)
        self._last = x
        self.losses.append(float(progress.loss))
        self.append(f"{name} loss", x, float(progress.loss))
        figure = validation_figure(progress.phase, progress.validation)
        if figure is not None:
            self.validation.append((x, *figure))
            self.append(figure[0], x, figure[1])


class BootstrapWidget(Container):
    """Bootstrap: the validation box, the time budget, Start / Cancel, the training curve,
    the rounds so far (table and plot).

    Tests set ``steps`` (a step budget per model, with the minutes: the first to end
    stops), ``val_every`` and ``seed`` before pressing Start; they are not in the dock.
    """

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=False)
        self._viewer = viewer
        self.hub = hub_for(viewer)
        self.session_label = Label(value=NO_SESSION)
        self.help = Label(value=HELP)
        self.help.native.setWordWrap(True)
        self.box_button = PushButton(text="Mark validation box")
        self.box_label = Label(value="")
        self.box_label.native.setWordWrap(True)
        self.minutes = FloatSpinBox(
            label="training minutes", value=10.0, min=0.5, max=24 * 60.0, step=0.5,
            tooltip="the round's training time, detector (60 %) and AVAN (40 %) together",
        )  # fmt: skip
        self.start_button = PushButton(text="Start round")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.progress_bar = ProgressBar(value=0, min=0, max=100)
        self.progress_label = Label(value="")
        self.status = Label(value="")
        self.status.native.setWordWrap(True)

        def row(*widgets: Any, labels: bool = False) -> Container:
            return Container(layout="horizontal", widgets=list(widgets), labels=labels)

        self.extend(
            [
                self.session_label,
                self.help,
                self.box_button,
                self.box_label,
                row(self.minutes, labels=True),
                row(self.start_button, self.cancel_button),
                self.progress_bar,
                self.progress_label,
                self.status,
            ]
        )
        #: the training curve of the round running (or the last one)
        self.curve = TrainingCurve()
        #: the rounds recorded in the session, one row each (:data:`COLUMNS`)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        rows, columns = self.table.verticalHeader(), self.table.horizontalHeader()
        assert rows is not None and columns is not None
        rows.setVisible(False)
        columns.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.setMinimumHeight(90)
        #: the validation figures across rounds (round 0: the models before round 1)
        self.rounds_plot = LinePlot(x_label="round")
        self.rounds_plot.empty_text = "figures across rounds show here after a round"
        for name, color in ROUND_FIGURES.values():
            self.rounds_plot.add_line(name, color, unit=True, dots=True)
        layout = self.native.layout()
        for widget in (
            QLabel("training (this round)"),
            self.curve,
            QLabel("rounds"),
            self.table,
            self.rounds_plot,
        ):
            layout.addWidget(widget)

        #: a step budget per model for the next round (None: the minutes alone)
        self.steps: int | None = None
        #: validate every this many training steps
        self.val_every = 50
        #: the training seed of the next round
        self.seed = 0
        #: the folder of the round running, or of the last one started
        self.out: Path | None = None
        self._job: Job | None = None
        self._failed = False
        self._applied = False
        self._shown: Session | None = None  # the session the dock shows
        self._watched: weakref.ref[Any] | None = None  # the box layer heard from

        self.box_button.changed.connect(lambda *_: self._guard(self.mark_validation_box))
        self.start_button.changed.connect(lambda *_: self._guard(self.start))
        self.cancel_button.changed.connect(lambda *_: self.cancel())
        self._initialised = False  # until the end of __init__ (not docked before that)
        self.hub.connect(self._on_hub)
        self._on_hub()
        self._initialised = True

    # --- the session --------------------------------------------------------------------

    @property
    def session(self) -> Session | None:
        return self.hub.session

    @property
    def running(self) -> bool:
        """Whether a round started here is running."""
        return self._job is not None

    def _need_session(self) -> Session:
        session = self.session
        if session is None:
            raise AvanInputError(NO_SESSION)
        return session

    def _on_hub(self) -> None:
        """Another session is shown (or none): its box, its rounds, its last summary."""
        if self._initialised and not docked(self.native):
            self.hub.disconnect(self._on_hub)  # the dock was removed: stop following
            self._unwatch()
            return
        session, previous = self.session, self._shown
        new = session is not previous
        self._shown = session
        if new and not self.running:
            self.status.value = ""  # the last round's summary, if any, follows
        if session is None:
            self.session_label.value = NO_SESSION
        elif new:
            # a rectangle drawn over another session's volume is not this one's box; one
            # drawn before the dock came (closed and opened again) is kept
            self._draw_stored_box(session, replace=previous is not None)
        self.refresh_rounds()
        self._watch()
        self._refresh_box_label()

    def refresh_rounds(self) -> None:
        """The table and the plot of the session's rounds; its last round in the status."""
        session = self.session
        rounds: list[dict[str, Any]] = list((session.meta.get("rounds") or []) if session else [])
        self.table.setRowCount(len(rounds))
        for r, record in enumerate(rounds):
            tip = self._round_tip(record)
            for c, text in enumerate(round_row(record)):
                item = QTableWidgetItem(text)
                item.setToolTip(tip)
                self.table.setItem(r, c, item)
        self.rounds_plot.clear()
        if rounds:
            first = rounds[0]
            points = [(int(first["round"]) - 1, first.get("base_metrics") or {})]
            points += [(int(rec["round"]), rec.get("metrics") or {}) for rec in rounds]
            for key, (name, _) in ROUND_FIGURES.items():
                for x, figures in points:
                    if figures.get(key) is not None:
                        self.rounds_plot.append(name, x, float(figures[key]))
            if self.session is not None and not self.running:
                self.status.value = round_summary(rounds[-1])
        if session is not None:
            plural = "s" if len(rounds) != 1 else ""
            self.session_label.value = (
                f"session: {session.path} ({len(rounds)} round{plural} so far)"
            )

    @staticmethod
    def _round_tip(record: dict[str, Any]) -> str:
        base = record.get("base_metrics") or {}
        before = ", ".join(
            f"{name} {_figure(base.get(key))}" for key, (name, _) in ROUND_FIGURES.items()
        )
        return (
            f"validation box {record.get('validation_box')} "
            f"({record.get('validation_box_chosen', '?')}); before the round: {before}; "
            f"steps {record.get('steps')}; models in {record.get('out')}"
        )

    # --- the validation box -------------------------------------------------------------

    def _box_layer(self) -> Any:
        """The ``validation box`` Shapes layer, or None."""
        from napari.layers import Shapes

        for layer in self._viewer.layers:
            if layer.name == BOX_LAYER and isinstance(layer, Shapes):
                return layer
        return None

    def _reference(self, session: Session) -> tuple[np.ndarray, np.ndarray]:
        """The (y, x) scale and translate of the session's voxels in the world: its clefts
        layer's (else another hub layer's, else its voxel size and no translate)."""
        for layer in (self.hub.clefts, self.hub.segmentation, self.hub.image):
            if layer is not None:
                scale = np.asarray(layer.scale, float)[-2:]
                return scale, np.asarray(layer.translate, float)[-2:]
        return np.asarray(session.voxel_size_nm[1:], float), np.zeros(2)

    def _make_box_layer(self, session: Session) -> Any:
        """A new, empty ``validation box`` layer over the session's voxels (2D: its
        rectangle shows on every section); the active layer stays the one it was."""
        scale, translate = self._reference(session)
        active = self._viewer.layers.selection.active
        layer = self._viewer.add_shapes(
            ndim=2, name=BOX_LAYER, scale=tuple(scale), translate=tuple(translate),
            edge_color=BOX_COLOR, face_color="transparent", edge_width=2, opacity=1.0,
        )  # fmt: skip
        if active is not None:
            self._viewer.layers.selection.active = active
        self._watch()
        return layer

    def mark_validation_box(self) -> Any:
        """Get the ``validation box`` layer ready for a new rectangle: made if missing,
        emptied otherwise, active and in rectangle mode. Returns the layer."""
        session = self._need_session()
        layer = self._box_layer()
        if layer is None:
            layer = self._make_box_layer(session)
        elif len(layer.data):
            layer.selected_data = set(range(len(layer.data)))
            layer.remove_selected()
        self._viewer.layers.selection.active = layer
        layer.mode = "add_rectangle"
        self.status.value = (
            f"draw a rectangle over the image in the '{BOX_LAYER}' layer: the validation "
            "box is its y and x extent, through every section"
        )
        self._refresh_box_label()
        return layer

    def _draw_stored_box(self, session: Session, *, replace: bool) -> None:
        """Draw the session's stored box (its last round's) as the layer's rectangle: in a
        new layer, or in an empty one; ``replace``: in place of what the layer holds (the
        rectangle of another session)."""
        stored = session.meta.get("validation_box")
        layer = self._box_layer()
        if layer is not None and len(layer.data) and not replace:
            return
        if layer is not None and len(layer.data):
            layer.selected_data = set(range(len(layer.data)))
            layer.remove_selected()
        if not stored:
            return
        if layer is None:
            layer = self._make_box_layer(session)
        scale, translate = self._reference(session)
        _, y0, x0, _, y1, x1 = (int(v) for v in stored)
        # corners on the pixel borders: voxels y0..y1-1 and x0..x1-1 inside
        voxel_corners = np.array([[y0 - 0.5, x0 - 0.5], [y1 - 0.5, x1 - 0.5]])
        world = voxel_corners * scale + translate
        if layer.ndim > 2:  # a 3D layer the user made: on the section shown
            z = float(self._viewer.dims.point[-3])
            world = np.column_stack([np.full(2, z), world])
        corners = np.stack([np.asarray(layer.world_to_data(w), float) for w in world])
        layer.add_rectangles(corners, edge_color=BOX_COLOR, face_color="transparent")

    def drawn_box(self) -> Box | None:
        """The box of the last rectangle in the ``validation box`` layer, in the session's
        voxels (z0, y0, x0, z1, y1, x1; ends exclusive): its y and x extent (the border
        voxels in when it lies on pixel borders), every section; None without one.

        Raises:
            AvanInputError: no session, or the rectangle misses the volume.
        """
        session = self._need_session()
        layer = self._box_layer()
        if layer is None or len(layer.data) == 0:
            return None
        vertices = np.asarray(layer.data[-1], float)
        world = np.stack([np.asarray(layer.data_to_world(v), float) for v in vertices])[:, -2:]
        scale, translate = self._reference(session)
        voxels = (world - translate) / scale
        lo = np.floor(voxels.min(axis=0) + 0.5).astype(int)
        hi = np.floor(voxels.max(axis=0) + 0.5).astype(int)
        depth, height, width = (int(n) for n in session.labels.shape)
        y0, x0 = max(0, int(lo[0])), max(0, int(lo[1]))
        y1, x1 = min(height, int(hi[0])), min(width, int(hi[1]))
        if y1 <= y0 or x1 <= x0:
            raise AvanInputError(
                f"the rectangle in the '{BOX_LAYER}' layer lies outside the volume (or is "
                "flat): draw it over the image, or delete it for the last round's or an "
                "automatic box"
            )
        return (0, y0, x0, depth, y1, x1)

    def validation_box(self) -> Box | None:
        """The box the next round validates on: the drawn rectangle's, else the last
        round's, else None (the round chooses one)."""
        session = self._need_session()
        drawn = self.drawn_box()
        if drawn is not None:
            return drawn
        stored = session.meta.get("validation_box")
        if stored:
            z0, y0, x0, z1, y1, x1 = (int(v) for v in stored)
            return (z0, y0, x0, z1, y1, x1)
        return None

    def _refresh_box_label(self, *_: Any) -> None:
        session = self.session
        if session is None:
            self.box_label.value = ""
            return
        try:
            box = self.validation_box()
            drawn = self.drawn_box() is not None
        except AvanInputError as exc:
            self.box_label.value = f"validation box: {exc}"
            return
        stored = session.meta.get("validation_box")
        if box is None:
            self.box_label.value = (
                "validation box: automatic (the band along y holding the last quarter of the "
                "reviewed clefts, chosen when the round starts); press Mark validation box "
                "to draw one"
            )
            return
        z0, y0, x0, z1, y1, x1 = box
        where = f"validation box: y {y0}-{y1}, x {x0}-{x1}, sections {z0}-{z1}"
        if stored and list(box) == [int(v) for v in stored]:
            how = "kept from the last round"
        else:
            how = f"drawn in the '{BOX_LAYER}' layer" if drawn else "given"
        self.box_label.value = f"{where} ({how})"

    def _watch(self) -> None:
        """Hear the box layer's edits (a rectangle drawn, moved, deleted): the label shows
        the box each time."""
        layer = self._box_layer()
        watched = self._watched() if self._watched is not None else None
        if layer is watched:
            return
        self._unwatch()
        if layer is not None:
            layer.events.data.connect(self._refresh_box_label)
            self._watched = weakref.ref(layer)

    def _unwatch(self) -> None:
        layer = self._watched() if self._watched is not None else None
        if layer is not None:
            layer.events.data.disconnect(self._refresh_box_label)
        self._watched = None

    def reset_choices(self, *args: Any) -> None:
        """napari calls this when layers come and go: the box layer may be new or gone."""
        super().reset_choices(*args)
        if getattr(self, "_initialised", False):
            self._watch()
            self._refresh_box_label()

    # --- a round ------------------------------------------------------------------------

    def _guard(self, action: Any) -> Any:
        """Run an action; a refusal becomes the status line, never a traceback."""
        return guarded(self.status, action)

    def start(self) -> Job | None:
        """Start a round on the session shown, in a worker (the viewer's one job at a
        time); None when another job runs (the reason is in the status line).

        Raises:
            AvanInputError: no session, a round running, a rectangle off the volume.
        """
        from napari_avan.models.bootstrap import iter_round

        session = self._need_session()
        if self.running:
            raise AvanInputError("a round is running: wait for it to finish or press Cancel")
        box = self.validation_box()
        stored = session.meta.get("validation_box")
        # the last round's box is passed as None, so the round records it as kept
        kept = stored and box is not None and list(box) == [int(v) for v in stored]
        validation = None if kept else box
        out = next_round_folder(session)
        image = None if self.hub.image is None else self.hub.image.data
        segmentation = None if self.hub.segmentation is None else self.hub.segmentation.data
        minutes = float(self.minutes.value)
        steps = None if self.steps is None else int(self.steps)
        val_every, seed = int(self.val_every), int(self.seed)
        started: list[Iterator[RoundProgress]] = []

        def work() -> Iterator[RoundProgress]:
            # the arrays are read here, off the GUI thread (a lazy layer loads now)
            rounds = iter_round(
                session, out, validation=validation,
                image=None if image is None else np.asarray(image),
                segmentation=None if segmentation is None else np.asarray(segmentation),
                minutes=minutes, steps=steps, val_every=val_every, seed=seed,
            )  # fmt: skip
            started.append(rounds)
            yield from rounds

        self._failed = self._applied = False
        self.curve.reset()
        self.progress_bar.value = 0
        number = session.round + 1
        self.progress_label.value = f"round {number}: starting..."
        job = runner_for(self._viewer).start(
            f"Bootstrap round {number}",
            work,
            kind=JobKind.TRAIN,  # not a click: a click waits its turn, as for any job
            on_yield=lambda progress: self._on_progress(session, progress),
            on_done=lambda completed: self._on_done(started, completed),
            on_error=self._on_error,
            progress=lambda progress: (round(100 * progress.fraction), 100),
        )
        if job is None:
            self.progress_label.value = ""
            return None
        self._job, self.out = job, out
        self.start_button.enabled, self.cancel_button.enabled = False, True
        budget = f"{minutes:g} min" + (f" or {steps} steps per model" if steps else "")
        self.status.value = f"round {number} running ({budget}); models into {out}"
        return job

    def cancel(self) -> bool:
        """Stop the round at its next step; False when none runs."""
        if self._job is None:
            self.status.value = "no round is running"
            return False
        self._job.cancel()
        self.status.value = "cancelling: the round stops at its next step..."
        return True

    def _on_progress(self, session: Session, progress: RoundProgress) -> None:
        self.progress_bar.value = max(0, min(100, round(100 * progress.fraction)))
        self.progress_label.value = progress.message
        self.curve.record(progress)
        if progress.plan is not None:
            self._apply(session, progress.plan)

    def _apply(self, session: Session, plan: RoundPlan) -> None:
        """The finished round into the session (GUI thread: its listeners update layers)."""
        from napari_avan.models.bootstrap import apply_round

        try:
            record = apply_round(session, plan)
        except (AvanInputError, OSError) as exc:
            self._failed = True
            self.status.value = (
                f"round {plan.record.get('round')} finished but could not be applied to the "
                f"session: {exc} (its models are in {plan.out}): fix the cause and run it "
                "again"
            )
            notify(self.status.value, "error")
            return
        self._applied = True
        if session is self.session:
            self._draw_stored_box(session, replace=False)
            self._refresh_box_label()
        self.refresh_rounds()
        self.status.value = round_summary(record)

    def _on_error(self, reason: str) -> None:
        self._failed = True
        self.status.value = reason

    def _on_done(self, started: Sequence[Iterator[RoundProgress]], completed: bool) -> None:
        self._job = None
        self.start_button.enabled, self.cancel_button.enabled = True, False
        if not completed:
            # The worker stopped at a yield and will not resume: closing the round there
            # removes its model folder at once (not whenever the generator is collected).
            for rounds in started:
                close = getattr(rounds, "close", None)
                if close is not None:
                    close()
        if self._applied or self._failed or completed:
            return
        self.progress_bar.value = 0
        self.progress_label.value = ""
        self.status.value = CANCELLED

    def close(self) -> None:
        """Stop following the hub and the box layer (a running round goes on)."""
        self.hub.disconnect(self._on_hub)
        self._unwatch()
        super().close()
