"""Dock widget: detect synaptic clefts in an EM layer (the viewport, a drawn box or all).

The detector runs in a worker thread on a copy of the chosen region; the results land in
two layers aligned with the image: ``cleft probability`` (float image) and
``predicted clefts`` (labels), which later runs update region by region.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import (
    ComboBox,
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
from napari_avan._napari._layers import CLEFTS_KIND, PROB_KIND
from napari_avan._napari._model_widget import ModelWidget
from napari_avan._napari._models import MODELS
from napari_avan._napari._session_hub import hub_for
from napari_avan._napari._workers import JobKind
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


class DetectWidget(ModelWidget):
    """Detect clefts: image, model, device, scope, threshold, minimum size; Run / Cancel."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(viewer, "cleft-detector", "napari-avan train clefts")
        self.image = create_widget(annotation="napari.layers.Image", label="image")
        self.scope = ComboBox(label="scope", choices=list(SCOPES), value="viewport")
        self.box_layer = create_widget(
            annotation="napari.layers.Shapes", label="box layer", options={"nullable": True}
        )
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
                self.threshold,
                self.min_size,
                self.run_button,
                self.cancel_button,
                self.status,
            ]
        )
        self.run_button.changed.connect(self.run)
        self.last_result: Any = None
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
        box = self.region()
        data = layer.data
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

    def _on_done(self, completed: bool) -> None:
        self.run_button.enabled = True
        self.cancel_button.enabled = False
        if not completed and not self._failed:
            self.status.value = "cancelled: nothing was written"

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
        """This image's probability and clefts layers, made on first use."""
        shape = tuple(int(n) for n in image_layer.data.shape)
        found: dict[str, Any] = {}
        for layer in self._viewer.layers:
            meta = layer.metadata or {}
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
