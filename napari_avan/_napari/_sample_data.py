"""Sample data: synthetic EM volumes with exact ground truth, optionally with predictions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from napari_avan._napari._layers import (
    CLEFTS_KIND,
    PROB_KIND,
    LayerData,
    image_layer,
    labels_layer,
    sample_layers,
)

if TYPE_CHECKING:
    from napari_avan.types import Sample

#: Seeds of the built-in samples (fixed, so every user sees the same volume).
DYADIC_SEED = 0
POLYADIC_SEED = 1


def _sample(polyadic: bool, seed: int) -> Sample:
    from napari_avan.core.synth import synthesize

    return synthesize(seed=seed, polyadic=polyadic)


def _synthetic(polyadic: bool, seed: int) -> list[LayerData]:
    return sample_layers(_sample(polyadic, seed))


def run_detector(sample: Sample) -> Any:
    """The bundled cleft detector's :class:`~napari_avan.models.detect.Detection` of a sample."""
    from napari_avan.models.checkpoint import resolve_model
    from napari_avan.models.detect import detect
    from napari_avan.models.device import plan

    model = resolve_model(None, "cleft-detector")
    return detect(model, sample.image, sample.voxel_size_nm, run=plan())


def predicted_layers(polyadic: bool, seed: int) -> list[LayerData]:
    """A synthetic sample's layers plus the bundled detector's predictions (cached)."""
    from napari_avan._napari._sample_cache import cached_detection

    sample = _sample(polyadic, seed)
    kind = "polyadic" if polyadic else "dyadic"
    detection = cached_detection(kind, seed, sample.image, lambda: run_detector(sample))
    vs = sample.voxel_size_nm
    em, *labels = sample_layers(sample)
    prob = image_layer(detection.prob, vs, "cleft probability")
    # marked as the Detect widget marks its outputs, so a later run there updates them
    prob[1]["metadata"].update(napari_avan_kind=PROB_KIND, source_layer=em[1]["name"])
    clefts = labels_layer(
        detection.clefts,
        vs,
        "predicted clefts",
        opacity=0.6,
        metadata={
            "cleft_table": detection.table,
            "napari_avan_kind": CLEFTS_KIND,
            "source_layer": em[1]["name"],
        },
    )
    # images first, so every labels layer draws on top of the probability
    return [em, prob, *labels, clefts]


def sample_dyadic() -> list[LayerData]:
    """Synthetic 32x256x256 EM (40x4x4 nm) with dyadic synapses and their ground truth."""
    return _synthetic(False, DYADIC_SEED)


def sample_polyadic() -> list[LayerData]:
    """Synthetic 32x256x256 EM (40x4x4 nm) with polyadic synapses (2-4 posts per cleft)."""
    return _synthetic(True, POLYADIC_SEED)


def sample_dyadic_predicted() -> list[LayerData]:
    """The dyadic sample plus the bundled detector's cleft probability and clefts (cached)."""
    return predicted_layers(False, DYADIC_SEED)


def sample_polyadic_predicted() -> list[LayerData]:
    """The polyadic sample plus the bundled detector's cleft probability and clefts (cached)."""
    return predicted_layers(True, POLYADIC_SEED)
