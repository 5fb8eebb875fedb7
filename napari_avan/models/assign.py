"""Partner assignment with AVAN.

For each cleft, a patch around it (the image and the mask of that cleft, resampled to the
model's working voxel size) goes through the network, which paints presynaptic and
postsynaptic probabilities. A candidate is a segment overlapping the cleft dilated
in-plane; its score on each side is the mean output over its voxels in the patch
(``bincount``, not a mask per segment). Clefts larger than a patch are covered by several
patches whose per-segment sums and counts add up. Dyadic: the argmax pre, and the argmax
post among the others. Polyadic: every candidate above each side's threshold (pre falls
back to the argmax). Patches of many clefts run in batches; :func:`iter_assign` yields
progress and finished clefts after each batch.

The numpy parts (the patch plan, the per-segment sums, the decision and
:class:`CleftAssignment`) live in :mod:`napari_avan.core.partners`, so re-thresholding
needs no torch; :class:`CleftAssignment`, :func:`decide_partners` and
:func:`edge_weights` are re-exported here.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from napari_avan.core.geometry import (
    DEFAULT_DILATION_RADIUS_NM,
    DEFAULT_DILATION_SECTIONS,
    LabelStatistics,
    inplane_structure,
    label_statistics,
)
from napari_avan.core.partners import (
    CleftAssignment,
    PatchTask,
    SegmentSums,
    add_segment_sums,
    candidate_segments,
    decide_partners,
    edge_weights,
    mean_scores,
    plan_patches,
)
from napari_avan.models.checkpoint import LoadedModel
from napari_avan.models.device import RunPlan
from napari_avan.models.device import plan as make_plan
from napari_avan.models.inference import pad_mirror, resample, to_float
from napari_avan.models.networks import UNetConfig
from napari_avan.types import AvanInputError, VoxelSize, check_same_shape, check_voxel_size

__all__ = [
    "DEFAULT_AVAN_PATCH",
    "AssignProgress",
    "CleftAssignment",
    "assign_cleft",
    "decide_partners",
    "edge_weights",
    "iter_assign",
]

DEFAULT_AVAN_PATCH = (8, 96, 96)


@dataclass
class AssignProgress:
    """``done`` of ``total`` patches, and the clefts finished by this batch."""

    done: int
    total: int
    finished: list[CleftAssignment] = field(default_factory=list)


def iter_assign(
    model: LoadedModel,
    image: np.ndarray,
    clefts: np.ndarray,
    segmentation: np.ndarray,
    voxel_size_nm: VoxelSize,
    *,
    cleft_ids: Sequence[int] | None = None,
    run: RunPlan | None = None,
    polyadic: bool = False,
    pre_threshold: float | None = None,
    post_threshold: float | None = None,
    radius_nm: float = DEFAULT_DILATION_RADIUS_NM,
    n_sections: int = DEFAULT_DILATION_SECTIONS,
    batch_size: int = 4,
    flip_tta: bool = False,
    statistics: LabelStatistics | None = None,
) -> Iterator[AssignProgress]:
    """Assign partners to clefts with an AVAN model.

    Args:
        model: AVAN (2 inputs: image, cleft mask; 2 outputs: pre, post).
        image, clefts, segmentation: (z, y, x) volumes of one shape: numpy arrays, or
            anything sliced like them (with ``statistics``, only the regions around the
            clefts are read).
        voxel_size_nm: their voxel size.
        cleft_ids: clefts to assign (default: all).
        run: device plan.
        polyadic: all candidates above the thresholds instead of the argmax pair.
        pre_threshold, post_threshold: polyadic thresholds on the mean outputs (default:
            the model's ``postprocess`` metadata, chosen on validation data, else 0.5).
        radius_nm, n_sections: candidate region: the cleft dilated in-plane.
        batch_size: patches per forward pass.
        flip_tta: average the outputs over the four in-plane flips (4x the compute).
        statistics: the clefts' :func:`~napari_avan.core.geometry.label_statistics`
            when known (a blockwise run measures them block by block).
    """
    network = model.network
    config = getattr(network, "config", None)
    if not isinstance(config, UNetConfig) or (config.in_channels, config.out_channels) != (2, 2):
        raise AvanInputError("this model is not an AVAN model (image + cleft in, pre + post out)")
    check_same_shape(image=image, clefts=clefts, segmentation=segmentation)
    if image.ndim != 3:
        raise AvanInputError(f"volumes must be (z, y, x), got shape {image.shape}")
    voxel = check_voxel_size(voxel_size_nm)
    meta = model.metadata
    post = meta.get("postprocess") or {}
    if pre_threshold is None:
        pre_threshold = float(post.get("pre_threshold", 0.5))
    if post_threshold is None:
        post_threshold = float(post.get("post_threshold", 0.5))
    working = check_voxel_size(meta.get("voxel_size_nm", voxel), what="model voxel size")
    patch = tuple(int(p) for p in meta.get("patch", DEFAULT_AVAN_PATCH))
    for p, d, axis in zip(patch, config.divisor, "zyx", strict=True):
        if p % d:
            raise AvanInputError(f"the model's patch {patch} is not a multiple of {d} along {axis}")
    extent = tuple(max(1, round(p * w / v)) for p, w, v in zip(patch, working, voxel, strict=True))

    stats = label_statistics(clefts) if statistics is None else statistics
    index = {int(c): i for i, c in enumerate(stats.ids)}
    wanted = [int(c) for c in (stats.ids if cleft_ids is None else cleft_ids)]
    missing = [c for c in wanted if c not in index]
    if missing:
        raise AvanInputError(f"cleft id(s) {missing[:10]} have no voxel in the cleft labels")
    structure = inplane_structure(radius_nm, voxel, n_sections)
    tasks = plan_patches(clefts, stats, wanted, extent, voxel)

    run = run or make_plan()
    net = run.prepare(network)
    # per cleft: segment id -> [sum of pre output, sum of post output, voxel count]
    scores: dict[int, SegmentSums] = {}
    total = len(tasks)
    for first in range(0, total, batch_size):
        chunk = tasks[first : first + batch_size]
        batch = np.stack([_inputs(image, clefts, t, patch) for t in chunk])
        x = run.tensor(torch.from_numpy(batch))
        flips: list[tuple[int, ...]] = [()] + ([(-1,), (-2,), (-2, -1)] if flip_tta else [])
        total_out = None
        with run.autocast():
            for dims in flips:
                y = torch.sigmoid(run.forward(net, torch.flip(x, dims) if dims else x).float())
                y = torch.flip(y, dims) if dims else y
                total_out = y if total_out is None else total_out + y
        assert total_out is not None
        out = (total_out / len(flips)).cpu().numpy()
        finished = []
        for task, values in zip(chunk, out, strict=True):
            # ids are relabelled within the patch, so large uint64 ids cost nothing
            ids, local = np.unique(np.asarray(segmentation[task.crop]), return_inverse=True)
            local = local.ravel()
            sizes = [s.stop - s.start for s in task.crop]
            shape = tuple(n + a + b for n, (a, b) in zip(sizes, task.pad, strict=True))
            inner = tuple(slice(a, a + n) for n, (a, _) in zip(sizes, task.pad, strict=True))
            sums = [
                np.bincount(
                    local,
                    weights=resample(values[side], shape, order=1)[inner].ravel(),
                    minlength=ids.size,
                )
                for side in (0, 1)
            ]
            counts = np.bincount(local, minlength=ids.size)
            add_segment_sums(
                scores.setdefault(task.cleft_id, {}), ids.tolist(), sums[0], sums[1], counts
            )
            if task.last:
                i = index[task.cleft_id]
                candidates = candidate_segments(
                    clefts,
                    segmentation,
                    task.cleft_id,
                    stats.bbox_begin[i],
                    stats.bbox_end[i],
                    structure,
                )
                mean = mean_scores(scores.pop(task.cleft_id), candidates)
                finished.append(
                    decide_partners(
                        task.cleft_id,
                        candidates,
                        mean[:, 0],
                        mean[:, 1],
                        polyadic,
                        pre_threshold,
                        post_threshold,
                    )
                )
        yield AssignProgress(min(first + batch_size, total), total, finished)


def _inputs(image: np.ndarray, clefts: np.ndarray, task: PatchTask, patch: tuple[int, ...]) -> Any:
    """(2, *patch) float32: the image and this cleft's mask, padded and resampled."""
    img = to_float(np.asarray(image[task.crop]))
    mask = (np.asarray(clefts[task.crop]) == task.cleft_id).astype(np.float32)
    if any(a or b for a, b in task.pad):
        img = pad_mirror(img, task.pad)
        mask = np.pad(mask, task.pad)
    return np.stack([resample(img, patch, order=1), resample(mask, patch, order=0)])


def assign_cleft(
    model: LoadedModel,
    image: np.ndarray,
    clefts: np.ndarray,
    segmentation: np.ndarray,
    voxel_size_nm: VoxelSize,
    cleft_id: int,
    **kwargs: Any,
) -> CleftAssignment:
    """Partners of one cleft (the click path)."""
    for step in iter_assign(
        model, image, clefts, segmentation, voxel_size_nm, cleft_ids=[cleft_id], **kwargs
    ):
        if step.finished:
            return step.finished[0]
    raise AssertionError("assignment finished without a result")  # pragma: no cover
