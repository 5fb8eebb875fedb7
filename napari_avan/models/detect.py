"""Cleft detection with a trained detector: resample, predict, label, tabulate.

The image is resampled to the model's working voxel size (``voxel_size_nm`` in its
metadata), predicted in overlapping patches, resampled back, and turned into cleft labels
and the cleft table. :func:`iter_detect` yields progress per batch; stopping it cancels.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from napari_avan.core.clefts import clefts_from_probability
from napari_avan.models.checkpoint import LoadedModel
from napari_avan.models.device import RunPlan
from napari_avan.models.inference import (
    adapt_batchnorm,
    iter_predict,
    resample_linear,
    to_float,
    working_shape,
)
from napari_avan.models.networks import ResidualSymmetricUNet
from napari_avan.types import AvanInputError, VoxelSize, check_voxel_size

#: Defaults when the model metadata does not say (z, y, x voxels at its working size).
DEFAULT_PATCH = (16, 128, 128)
DEFAULT_OVERLAP = (4, 32, 32)


@dataclass
class Detection:
    """Cleft probability (float32), cleft labels (uint32) and the cleft table."""

    prob: np.ndarray
    clefts: np.ndarray
    table: Any


@dataclass
class DetectProgress:
    """``done`` of ``total`` patches; ``result`` is set on the last yield."""

    done: int
    total: int
    result: Detection | None = None


def fit_patch(shape: tuple[int, ...], wanted: tuple[int, ...], divisor: tuple[int, ...]) -> tuple:
    """The model's patch, shrunk to the (padded) volume where it is smaller."""
    patch = []
    for size, w, d in zip(shape, wanted, divisor, strict=True):
        fit = min(w, -(-size // d) * d)  # round the volume size up to the divisor
        patch.append(max(d, fit))
    return tuple(patch)


def output_activation(metadata: dict[str, Any]) -> str:
    """The activation of a detector's output: tanh for a signed proximity detector, else
    sigmoid."""
    return "tanh" if metadata.get("target") == "proximity" else "sigmoid"


def cleft_map(metadata: dict[str, Any], output: np.ndarray) -> np.ndarray:
    """The cleft probability in a detector's activated output (channels, z, y, x): its first
    channel; a signed proximity detector (Parag et al.) marks the presynaptic side positive
    and the postsynaptic side negative, so its cleft is where either side is strong (the
    magnitude)."""
    return np.abs(output[0]) if metadata.get("target") == "proximity" else output[0]


def min_size_voxels(model: LoadedModel, voxel_size_nm: VoxelSize) -> int:
    """A detector's smallest cleft in voxels of this size: its ``postprocess`` minimum
    volume (nm^3), else 50 voxels."""
    volume = (model.metadata.get("postprocess") or {}).get("min_volume_nm3")
    if volume is None:
        return 50
    return max(1, round(float(volume) / float(np.prod(check_voxel_size(voxel_size_nm)))))


def detector_windows(
    meta: dict[str, Any], shape: tuple[int, ...], divisor: tuple[int, ...]
) -> tuple[Any, Any]:
    """Patch and overlap of a detector on a volume of ``shape`` (its working size): the
    model's patch shrunk to the volume, the overlap capped at half a patch so windows
    always advance."""
    patch = fit_patch(shape, tuple(meta.get("patch", DEFAULT_PATCH)), divisor)
    overlap = tuple(
        min(int(o), p // 2)
        for o, p in zip(meta.get("overlap", DEFAULT_OVERLAP), patch, strict=True)
    )
    return patch, overlap


def iter_detect(
    model: LoadedModel,
    image: np.ndarray,
    voxel_size_nm: VoxelSize,
    *,
    run: RunPlan | None = None,
    threshold: float | None = None,
    min_size: int | None = None,
    join_radius_nm: float = 0.0,
    flip_tta: bool = False,
    batch_size: int = 1,
    adapt_norm: bool = False,
) -> Iterator[DetectProgress]:
    """Detect clefts in a (z, y, x) uint8 or float image.

    Args:
        model: a cleft detector from :func:`napari_avan.models.checkpoint.load_model`.
        image: the EM volume.
        voxel_size_nm: the image's voxel size (z, y, x).
        run: device plan (default: best available).
        threshold, min_size, join_radius_nm: post-processing
            (threshold and min_size default to the model's ``postprocess`` metadata,
            where the minimum is a volume in nm^3, else 0.5 and 50 voxels)
            (:func:`napari_avan.core.clefts.clefts_from_probability`).
        flip_tta: average the in-plane flips.
        batch_size: patches per forward pass.
        adapt_norm: re-estimate the network's BatchNorm statistics on this image first
            (:func:`napari_avan.models.inference.adapt_batchnorm`; no labels used).
    """
    from napari_avan.core.tables import cleft_table

    if image.ndim != 3:
        raise AvanInputError(f"the image must be (z, y, x), got shape {image.shape}")
    voxel = check_voxel_size(voxel_size_nm)
    meta = model.metadata
    working = check_voxel_size(meta.get("voxel_size_nm", voxel), what="model voxel size")
    network = model.network
    if not isinstance(network, ResidualSymmetricUNet) or network.config.in_channels != 1:
        raise AvanInputError("this model is not a cleft detector (it must take the image alone)")
    config = network.config
    work_shape = working_shape(image.shape, voxel, working)
    work = resample_linear(to_float(np.asarray(image)), work_shape)
    patch, overlap = detector_windows(meta, work_shape, config.divisor)
    post = meta.get("postprocess") or {}
    if threshold is None:
        threshold = float(post.get("threshold", 0.5))
    if min_size is None:
        min_size = min_size_voxels(model, voxel)
    if adapt_norm:
        network = adapt_batchnorm(network, work, patch=patch, run=run)
    result: np.ndarray | None = None
    for step in iter_predict(
        network,
        work,
        patch=patch,
        overlap=overlap,
        out_channels=config.out_channels,
        run=run,
        batch_size=batch_size,
        flip_tta=flip_tta,
        activation=output_activation(meta),
    ):
        if step.result is None:
            yield DetectProgress(step.done, step.total)
        else:
            result = step.result
            total = step.total
    assert result is not None
    prob = resample_linear(cleft_map(meta, result), tuple(image.shape))
    clefts = clefts_from_probability(
        prob,
        threshold=threshold,
        min_size=min_size,
        join_radius_nm=join_radius_nm,
        voxel_size_nm=voxel,
    )
    yield DetectProgress(total, total, Detection(prob, clefts, cleft_table(clefts, prob)))


def detect(
    model: LoadedModel, image: np.ndarray, voxel_size_nm: VoxelSize, **kwargs: Any
) -> Detection:
    """Run :func:`iter_detect` to the end and return the detection."""
    result = None
    for step in iter_detect(model, image, voxel_size_nm, **kwargs):
        result = step.result
    assert result is not None
    return result
