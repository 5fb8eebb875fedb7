"""Dock widget: detect synaptic clefts in an EM layer (the viewport, a drawn box or all).

The detector runs in a worker thread on a copy of the chosen region; the results land in
two layers aligned with the image: ``cleft probability`` (float image) and
``predicted clefts`` (labels), which later runs update region by region.

The whole volume of a layer read from a file (its ``napari_avan_source`` spec) runs block
by block instead (:mod:`napari_avan.bulk`, as ``napari-avan detect --workers``): never read
whole, written to a zarr store (``output``), resumable; napari shows the store's arrays
lazily, in layers of their own that viewport and box runs leave alone.
"""

from __future__ import annotations

import contextvars
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import (
    ComboBox,
    FileEdit,
    FloatSpinBox,
    PushButton,
    SpinBox,
    create_widget,
)

from napari_avan._napari._geometry import (
    layer_voxel_size,
    shapes_box,
    viewer_viewport_box,
)
from napari_avan._napari._layers import CLEFTS_KIND, PROB_KIND, SOURCE_SPEC_KEY
from napari_avan._napari._model_widget import ModelWidget
from napari_avan._napari._models import MODELS
from napari_avan._napari._session_hub import hub_for
from napari_avan._napari._workers import JobKind, thread_safe
from napari_avan.core.geometry import Box, box_offset, grow_box, shift_points
from napari_avan.core.tables import merged_cleft_table
from napari_avan.types import AvanInputError

if TYPE_CHECKING:
    import napari.viewer

#: Where detection runs.
SCOPES = ("viewport", "whole volume", "drawn box")
#: Voxels of context added around a viewport or box so its edges see what lies beyond.
CONTEXT_VOXELS = (2, 32, 32)
#: The clefts layer's metadata key for the highest cleft id a run gave so far.
LAST_ID_KEY = "last_cleft_id"
#: Output blocks of a whole-volume run block by block (None: the bulk default).
BULK_BLOCK: tuple[int, int, int] | None = None

SCOPE_TOOLTIP = (
    "viewport / drawn box: in memory, into the 'predicted clefts' layer.\n"
    "whole volume: on a layer read from a file (File > Open with napari-avan), block by "
    "block into the zarr store 'output' (out of core, resumable; shown lazily); on a layer "
    "that lives only in napari, in memory like the others."
)
OUTPUT_TOOLTIP = (
    "the zarr store a whole-volume run writes (cleft_prob, clefts, clefts.csv).\n"
    "Detect again with the same settings resumes a cancelled run (finished blocks are "
    "kept) or shows a finished one; other settings are refused, never overwritten: "
    "choose another output to start again."
)
WORKERS_TOOLTIP = (
    "whole volume block by block: 0 runs the blocks in this process; N on a local dask "
    "cluster of N worker processes"
)


def default_output(spec: str) -> Path:
    """Where a whole-volume run of the volume ``spec`` writes unless told:
    ``predictions/<image stem>[-<key>]-clefts.zarr`` beside the sessions folder."""
    from napari_avan.core.session.session import sessions_home
    from napari_avan.io import parse_spec

    try:
        parsed = parse_spec(spec)
        path, key = Path(parsed.path), parsed.key
    except AvanInputError:
        path, key = Path(spec), None
    stem = path.name.split(".")[0] or "image"
    if key:
        stem = f"{stem}-{key.rstrip('/').rsplit('/', 1)[-1]}"
    return sessions_home().parent / "predictions" / f"{stem}-clefts.zarr"


def bulk_refusal(job: Any) -> str | None:
    """Why a whole-volume run may not go into ``job``'s store, for the dock (None when it
    may: no store yet, or an unfinished or finished run with the same settings, which it
    resumes or shows). :func:`napari_avan.bulk.iter_bulk_detect` checks the same, in the
    words of the command line."""
    from napari_avan.bulk.cluster import changed_settings
    from napari_avan.bulk.detect import recorded_settings

    root = Path(job.root)
    if not root.exists():
        return None
    recorded = recorded_settings(root)
    if recorded is None or not recorded[0]:
        return f"{root} exists and holds no whole-volume detection: choose another output"
    before, what = recorded
    changed = changed_settings(before, job.params)
    if not changed:
        return None
    return (
        f"{root} {what} with other settings ({', '.join(changed)} differ): Detect with "
        "the same settings to resume or show it, or choose another output to start again"
    )


class DetectWidget(ModelWidget):
    """Detect clefts: image, model, device, scope, threshold, minimum size; Run / Cancel."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(viewer, "cleft-detector", "napari-avan train clefts")
        self.image = create_widget(annotation="napari.layers.Image", label="image")
        self.scope = ComboBox(label="scope", choices=list(SCOPES), value="viewport")
        self.scope.tooltip = SCOPE_TOOLTIP
        self.box_layer = create_widget(
            annotation="napari.layers.Shapes", label="box layer", options={"nullable": True}
        )
        self.output = FileEdit(
            label="output", mode="w", value="", filter="*.zarr", tooltip=OUTPUT_TOOLTIP
        )
        self.workers = SpinBox(
            label="workers", min=0, max=max(1, os.cpu_count() or 1), value=0,
            tooltip=WORKERS_TOOLTIP,
        )  # fmt: skip
        self.threshold = FloatSpinBox(label="threshold", min=0.01, max=0.99, step=0.05)
        self.min_size = SpinBox(label="min size (voxels)", min=1, max=10_000_000)
        self.run_button = PushButton(text="Detect clefts")
        self.extend(
            [
                self.image,
                self.model,
                self.model_dir,
                self.device,
                self.scope,
                self.box_layer,
                self.output,
                self.workers,
                self.threshold,
                self.min_size,
                self.run_button,
                self.cancel_button,
                self.status,
            ]
        )
        self.run_button.changed.connect(self.run)
        self.last_result: Any = None
        #: the store of the running (or last) whole-volume run block by block
        self._bulk_out: Path | None = None
        self._bulk_steps: Any = None
        self._default_output: Path | None = None
        self.scope.changed.connect(self._on_scope)
        self.image.changed.connect(self._update_bulk_controls)
        self._update_bulk_controls()
        self._load_defaults()

    # --- settings -----------------------------------------------------------------------

    def use_postprocess(self, post: dict[str, Any]) -> None:
        """Threshold and minimum size (a volume in nm^3, in this image's voxels)."""
        self.threshold.value = float(post.get("threshold", 0.5))
        volume = post.get("min_volume_nm3")
        self._min_volume_nm3 = None if volume is None else float(volume)
        self.min_size.value = 50
        self._update_min_size()

    def _update_min_size(self) -> None:
        layer = self.image.value
        if layer is None or self._min_volume_nm3 is None:
            return
        try:
            voxel = layer_voxel_size(layer)
        except AvanInputError:
            return
        self.min_size.value = max(1, round(self._min_volume_nm3 / float(np.prod(voxel))))

    def reset_choices(self, *args: Any) -> None:
        super().reset_choices(*args)
        self._update_min_size()
        if hasattr(self, "_default_output"):
            self._update_bulk_controls()

    def bulk_source(self) -> str | None:
        """The volume spec a whole-volume run reads block by block (the image layer was
        read from that file), or None: this scope and layer run in memory."""
        layer = self.image.value
        if self.scope.value != "whole volume" or layer is None:
            return None
        if getattr(layer, "multiscale", False):
            return None
        spec = (layer.metadata or {}).get(SOURCE_SPEC_KEY)
        return str(spec) if spec else None

    def _chosen_output(self) -> Path | None:
        text = str(self.output.value or "")
        if not text or text in (".", str(Path.cwd())):
            return None
        return Path(text).expanduser()

    def _update_bulk_controls(self, *_: Any) -> None:
        """Output and workers are shown for a whole-volume run block by block only; the
        output follows the image unless the user chose one."""
        spec = self.bulk_source()
        self.output.visible = self.workers.visible = spec is not None
        if spec is None:
            return
        default = default_output(spec)
        if self._chosen_output() in (None, self._default_output):
            self.output.value = default
        self._default_output = default

    def _on_scope(self, *_: Any) -> None:
        self._update_bulk_controls()
        if self.scope.value != "whole volume" or self.runner.busy:
            return
        if self.bulk_source() is not None:
            self.status.value = (
                "whole volume: block by block into the output store (out of core; "
                "Detect again resumes a cancelled run)"
            )
        else:
            self.status.value = "whole volume: in memory (this layer was not read from a file)"

    # --- running ------------------------------------------------------------------------

    def region(self) -> Box:
        """The region of the image to run on, in its voxels (context margin included)."""
        layer = self.image.value
        shape = tuple(int(n) for n in layer.data.shape)
        depth = 16
        if self.scope.value == "whole volume":
            return (slice(0, shape[0]), slice(0, shape[1]), slice(0, shape[2]))
        if self.scope.value == "drawn box":
            box = shapes_box(self.box_layer.value, layer, depth=depth)
        else:
            box = viewer_viewport_box(self._viewer, layer, depth=depth)
        return grow_box(box, CONTEXT_VOXELS, shape)

    def run(self, *_: Any) -> None:
        """Start detection in a worker; problems go to a notification and the status line."""
        try:
            job = self._start()
        except AvanInputError as exc:
            self._fail(f"Detect clefts: {exc}")
            return
        if job is not None:
            self.run_button.enabled = False
            self.cancel_button.enabled = True

    def _start(self) -> Any:
        from napari_avan.models.detect import iter_detect

        layer = self.image.value
        voxel = layer_voxel_size(layer)  # also checks that it is a 3D volume
        if getattr(layer, "multiscale", False):
            raise AvanInputError(f"layer '{layer.name}' is multiscale: open level 0 alone")
        source = self.bulk_source()
        if source is not None:
            return self._start_bulk(layer, source, voxel)
        self._bulk_out = None
        box = self.region()
        data = thread_safe(layer.data)  # read in the worker
        self._failed = False
        spec, device = self.model_spec, str(self.device.value)
        threshold, min_size = float(self.threshold.value), int(self.min_size.value)
        self.status.value = f"detecting in {tuple(s.stop - s.start for s in box)} voxels..."

        def work() -> Any:
            model, run = MODELS.get(spec, "cleft-detector", device)
            region = np.asarray(data[box])
            yield from iter_detect(
                model, region, voxel, run=run, threshold=threshold, min_size=min_size
            )

        return self.runner.start(
            "Detect clefts",
            work,
            kind=JobKind.DETECT,
            on_yield=lambda step: self._on_step(step, layer, box, voxel),
            on_done=self._on_done,
            on_error=lambda reason: self._fail(reason, tell=False),
            progress=lambda step: (step.done, step.total),
        )

    def _start_bulk(self, layer: Any, source: str, voxel: Any) -> Any:
        """The whole volume of a layer read from ``source``, block by block into the
        output store (:func:`napari_avan.bulk.iter_bulk_detect`, resumed when it holds an
        unfinished run with the same settings)."""
        from napari_avan.bulk import iter_bulk_detect, plan_job

        out = (self._chosen_output() or default_output(source)).resolve()
        model = self.model_spec or None
        device, workers = str(self.device.value), int(self.workers.value)
        threshold, min_size = float(self.threshold.value), int(self.min_size.value)
        block = BULK_BLOCK
        self._failed = False
        self._bulk_out = out
        where = "this process" if workers == 0 else f"{workers} dask workers"
        self.status.value = f"whole volume, block by block on {where} into {out}..."

        def work() -> Any:
            job = plan_job(
                source,
                out,
                model=model,
                voxel_size_nm=voxel,
                threshold=threshold,
                min_size=min_size,
                block=block,
                device=device,
            )
            refusal = bulk_refusal(job)
            if refusal is not None:
                raise AvanInputError(refusal)
            running = self.runner.job  # this job: the runner set it before starting us
            out.parent.mkdir(parents=True, exist_ok=True)
            steps = iter_bulk_detect(job, workers=workers, resume=True)
            # Stopped here once cancelled (its local cluster too), off the GUI thread; a
            # cancel that lands between steps is never resumed, so _on_done closes it. It
            # runs in a context of its own: a dask client resets its context variables in
            # the context that set them.
            context = contextvars.copy_context()
            self._bulk_steps = (context, steps)
            while True:
                try:
                    step = context.run(next, steps)
                except StopIteration:
                    return
                if running is not None and running.cancelled:
                    context.run(steps.close)
                    return
                yield step

        return self.runner.start(
            "Detect clefts",
            work,
            kind=JobKind.DETECT,
            on_yield=lambda step: self._on_bulk_step(step, layer, voxel, out),
            on_done=self._on_done,
            on_error=lambda reason: self._fail(reason, tell=False),
            progress=lambda step: (step.done, step.total),
        )

    def _on_done(self, completed: bool) -> None:
        started, self._bulk_steps = self._bulk_steps, None
        if started is not None:  # the worker thread has ended: stop a cancelled run's cluster
            context, steps = started
            context.run(steps.close)
        self.run_button.enabled = True
        self.cancel_button.enabled = False
        if not completed and not self._failed:
            if self._bulk_out is not None:
                self.status.value = (
                    f"cancelled: finished blocks are kept in {self._bulk_out}; Detect again resumes"
                )
            else:
                self.status.value = "cancelled: nothing was written"

    def _on_bulk_step(self, step: Any, image_layer: Any, voxel: Any, out: Path) -> None:
        if step.result is None:
            self.status.value = (
                f"whole volume, block by block: {step.phase} ({step.done}/{step.total} "
                f"tasks) into {out.name}"
            )
            return
        result = step.result
        kept = self._show_store(Path(result.out), image_layer, voxel)
        self.last_result = result
        run = result.run
        how = (
            "made before with these settings"
            if run.tasks_run == 0 and run.tasks_skipped == 0
            else run.describe()
        )
        note = "; the session's clefts layer is left as it is" if kept else ""
        self.status.value = f"{result.n_clefts} clefts found in the whole volume ({how}){note}"

    def _show_store(self, out: Path, image_layer: Any, voxel: Any) -> bool:
        """The store's probability and clefts as layers, lazily (read-only zarr arrays):
        those already showing this store get the data again, else new ones. A clefts
        layer that a proofreading session shows is left alone (True then)."""
        import pandas as pd
        import zarr

        prob = zarr.open_array(store=str(out / "cleft_prob"), mode="r")
        clefts = zarr.open_array(store=str(out / "clefts"), mode="r")
        table = pd.read_csv(out / "clefts.csv")
        specs = {PROB_KIND: f"{out}:cleft_prob", CLEFTS_KIND: f"{out}:clefts"}
        hub = hub_for(self._viewer)
        found: dict[str, Any] = {}
        for layer in self._viewer.layers:
            meta = layer.metadata or {}
            kind = meta.get("napari_avan_kind")
            if kind in specs and meta.get(SOURCE_SPEC_KEY) == specs[kind]:
                found[kind] = layer
        names = {layer.name for layer in self._viewer.layers}

        def name(base: str) -> str:
            return base if base not in names else f"{base} (whole volume)"

        def metadata(kind: str) -> dict[str, Any]:
            return {
                "napari_avan_kind": kind,
                "source_layer": image_layer.name,
                "voxel_size_nm": tuple(voxel),
                SOURCE_SPEC_KEY: specs[kind],
            }

        common = {"scale": tuple(image_layer.scale), "translate": tuple(image_layer.translate)}
        if PROB_KIND in found:
            found[PROB_KIND].data = prob
            found[PROB_KIND].metadata.update(metadata(PROB_KIND))
        else:
            self._viewer.add_image(
                prob,
                name=name("cleft probability"),
                colormap="magma",
                contrast_limits=(0.0, 1.0),
                blending="additive",
                metadata=metadata(PROB_KIND),
                **common,
            )
        layer = found.get(CLEFTS_KIND)
        if layer is not None and hub.session is not None and hub.clefts is layer:
            return True
        if layer is not None:
            layer.data = clefts
            layer.metadata.update(metadata(CLEFTS_KIND))
        else:
            layer = self._viewer.add_labels(
                clefts, name=name("predicted clefts"), opacity=0.8, metadata=metadata(CLEFTS_KIND),
                **common,
            )  # fmt: skip
        layer.editable = False
        layer.metadata["cleft_table"] = table
        layer.metadata[LAST_ID_KEY] = int(table["cleft_segid"].max()) if len(table) else 0
        return False

    def _on_step(self, step: Any, image_layer: Any, box: Box, voxel: Any) -> None:
        if step.result is None:
            return
        det = step.result
        prob_layer, clefts_layer = self._output_layers(image_layer, voxel)
        hub = hub_for(self._viewer)
        if hub.session is not None and hub.clefts is clefts_layer:
            self._into_session(hub, det, box, prob_layer, clefts_layer)
            return
        prob_layer.data[box] = det.prob
        region = clefts_layer.data[box]
        replaced_ids = np.unique(region)
        replaced_ids = replaced_ids[replaced_ids != 0]
        previous = int(replaced_ids.size)
        before = clefts_layer.metadata.get("cleft_table")
        # new ids start above every id the layer ever held (the region's too, and those
        # of clefts replaced since), so an id never names two clefts
        offset = int(clefts_layer.data.max())
        offset = max(offset, int(clefts_layer.metadata.get(LAST_ID_KEY, 0)))
        if before is not None and len(before):
            offset = max(offset, int(before["cleft_segid"].max()))
        elif before is None and offset == 0:
            before = det.table.iloc[0:0]  # an empty layer: nothing to keep
        region[...] = 0
        labels = det.clefts.astype(clefts_layer.data.dtype)
        labels[labels > 0] += offset
        region[...] = labels
        prob_layer.refresh()
        clefts_layer.refresh()
        table = shift_points(det.table, box_offset(box))
        table["cleft_segid"] = table["cleft_segid"] + offset
        clefts_layer.metadata["cleft_table"] = merged_cleft_table(
            before, clefts_layer.data, prob_layer.data, box, replaced_ids, table
        )
        clefts_layer.metadata[LAST_ID_KEY] = offset + int(det.clefts.max(initial=0))
        self.last_result = det
        found = len(det.table)
        replaced = f", replacing {previous} in that region" if previous else ""
        self.status.value = f"{found} clefts found{replaced}"

    def _into_session(
        self, hub: Any, det: Any, box: Box, prob_layer: Any, clefts_layer: Any
    ) -> None:
        """A run into a clefts layer that a proofreading session shows: its changes are
        decisions of that session (journaled, undoable; the layer follows them): each
        cleft of the region is deleted, and each cleft found is a new one from its
        voxels, ``origin`` predicted (pending, no partners until assigned)."""
        session = hub.session
        prob_layer.data[box] = det.prob
        prob_layer.refresh()
        region = np.asarray(session.labels[box])
        replaced_ids = np.unique(region)
        replaced_ids = replaced_ids[replaced_ids != 0]
        before = clefts_layer.metadata.get("cleft_table")
        corner = np.asarray(box_offset(box))
        ks = np.unique(det.clefts[det.clefts > 0]).tolist()
        ids = session.replace_predicted(
            replaced_ids.tolist(), [np.argwhere(det.clefts == k) + corner for k in ks]
        )
        found = {int(k): c for k, c in zip(ks, ids, strict=True)}
        table = shift_points(det.table, box_offset(box))
        table["cleft_segid"] = table["cleft_segid"].map(found).astype(np.int64)
        clefts_layer.metadata["cleft_table"] = merged_cleft_table(
            before, clefts_layer.data, prob_layer.data, box, replaced_ids, table
        )
        clefts_layer.metadata[LAST_ID_KEY] = max([0, *session.records])
        hub.table_changed()
        self.last_result = det
        replaced = f", replacing {replaced_ids.size} in that region" if replaced_ids.size else ""
        self.status.value = (
            f"{len(found)} clefts found{replaced} (decisions in the session {session.path.name})"
        )

    def _output_layers(self, image_layer: Any, voxel: Any) -> tuple[Any, Any]:
        """This image's in-memory probability and clefts layers, made on first use."""
        shape = tuple(int(n) for n in image_layer.data.shape)
        found: dict[str, Any] = {}
        for layer in self._viewer.layers:
            meta = layer.metadata or {}
            if SOURCE_SPEC_KEY in meta:
                continue  # read from a file (a whole-volume run's store): never written here
            if meta.get("source_layer") == image_layer.name and tuple(layer.data.shape) == shape:
                kind = meta.get("napari_avan_kind")
                if kind in (PROB_KIND, CLEFTS_KIND):
                    found[kind] = layer
        common = {
            "scale": tuple(image_layer.scale),
            "translate": tuple(image_layer.translate),
        }
        if PROB_KIND not in found:
            found[PROB_KIND] = self._viewer.add_image(
                np.zeros(shape, np.float32),
                name="cleft probability",
                colormap="magma",
                contrast_limits=(0.0, 1.0),
                blending="additive",
                metadata={
                    "napari_avan_kind": PROB_KIND,
                    "source_layer": image_layer.name,
                    "voxel_size_nm": tuple(voxel),
                },
                **common,
            )
        if CLEFTS_KIND not in found:
            found[CLEFTS_KIND] = self._viewer.add_labels(
                np.zeros(shape, np.uint32),
                name="predicted clefts",
                opacity=0.8,
                metadata={
                    "napari_avan_kind": CLEFTS_KIND,
                    "source_layer": image_layer.name,
                    "voxel_size_nm": tuple(voxel),
                },
                **common,
            )
        return found[PROB_KIND], found[CLEFTS_KIND]
