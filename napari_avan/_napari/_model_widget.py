"""What the dock widgets that run a model share: model and device choices, status, Cancel."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from magicgui.widgets import ComboBox, Container, FileEdit, Label, PushButton

from napari_avan._napari._models import MODELS, bundled_names
from napari_avan._napari._workers import JobRunner, notify, runner_for
from napari_avan.types import AvanInputError

#: Devices a widget offers (``auto``: cuda, then mps, then cpu).
DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


class ModelWidget(Container):
    """A dock widget that runs one kind of model (``task``) in the viewer's job runner.

    Subclasses add their own controls and call :meth:`model_metadata` to fill defaults
    from the chosen model; the widgets here are ``model``, ``model_dir``, ``device``,
    ``cancel_button`` and ``status``.
    """

    def __init__(self, viewer: Any, task: str, train_command: str) -> None:
        super().__init__(labels=True)
        self._viewer = viewer
        self._task = task
        self._failed = False
        self.model = ComboBox(label="model", choices=bundled_names(task))
        self.model_dir = FileEdit(
            label="or model folder",
            mode="d",
            value="",
            tooltip=f"a folder written by '{train_command}' (overrides the model)",
        )
        self.device = ComboBox(label="device", choices=list(DEVICE_CHOICES))
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.status = Label(value="")
        self.model.changed.connect(self._load_defaults)
        self.model_dir.changed.connect(self._load_defaults)
        self.cancel_button.changed.connect(self.cancel)

    @property
    def model_spec(self) -> str:
        """The model folder when one is chosen, else the bundled model's name."""
        folder = str(self.model_dir.value or "")
        if folder and folder not in (".", str(Path.cwd())):
            return folder
        return str(self.model.value or "")

    @property
    def runner(self) -> JobRunner:
        return runner_for(self._viewer)

    def model_metadata(self) -> dict[str, Any] | None:
        """The chosen model's metadata, or None (with the reason in the status line)."""
        try:
            return MODELS.metadata(self.model_spec, self._task)
        except AvanInputError as exc:
            self.status.value = str(exc)
            return None

    def _load_defaults(self, *_: Any) -> None:
        """Fill the subclass's settings from the model's validated post-processing."""
        meta = self.model_metadata()
        if meta is not None:
            self.use_postprocess(meta.get("postprocess") or {})

    def use_postprocess(self, post: dict[str, Any]) -> None:
        """Take defaults from a model's ``postprocess`` metadata (subclasses override)."""

    def cancel(self, *_: Any) -> None:
        """Stop the running job at its next step."""
        if self.runner.cancel():
            self.status.value = "cancelling..."

    def _fail(self, reason: str, *, tell: bool = True) -> None:
        """Show why a run failed (the job runner has notified already when tell is False)."""
        self._failed = True
        self.status.value = reason
        if tell:
            notify(reason, "error")
