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
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from napari_avan.core.geometry import (
    DEFAULT_DILATION_RADIUS_NM,
    DEFAULT_DILATION_SECTIONS,
    dilated_label_region,
    inplane_structure,
    label_statistics,
)
from napari_avan.models.checkpoint import LoadedModel
from napari_avan.models.device import RunPlan
from napari_avan.models.device import plan as make_plan
from napari_avan.models.inference import pad_mirror, resample, to_float
from napari_avan.models.networks import UNetConfig
from napari_avan.types import AvanInputError, VoxelSize, check_same_shape, check_voxel_size

DEFAULT_AVAN_PATCH = (8, 96, 96)


@dataclass
class CleftAssignment:
    """Partners of one cleft with the scores of every candidate segment."""

    cleft_id: int
    candidates: np.ndarray
    pre_scores: np.ndarray
    post_scores: np.ndarray
    pre_ids: list[int] = field(default_factory=list)
    post_ids: list[int] = field(default_factory=list)

    @property
    def edges(self) -> list[tuple[int, int]]:
        """(pre, post) pairs, one per edge."""
        return [(a, b) for a in self.pre_ids for b in self.post_ids if a != b]

    def score_of(self, segment: int) -> tuple[float, float]:
        """(pre, post) score of a candidate segment."""
        where = np.flatnonzero(self.candidates == segment)
        if where.size == 0:
            return (float("nan"), float("nan"))
        return (float(self.pre_scores[where[0]]), float(self.post_scores[where[0]]))


@dataclass
class AssignProgress:
    """``done`` of ``total`` patches, and the clefts finished by this batch."""

    done: int
    total: int
    finished: list[CleftAssignment] = field(default_factory=list)


@dataclass
class _Task:
    cleft_id: int
    crop: tuple[slice, slice, slice]
    pad: list[tuple[int, int]]
    last: bool


def _window(center: int, extent: int, size: int) -> tuple[slice, tuple[int, int]]:
    """A window of ``extent`` around ``center``, shifted inside the volume, padded if small."""
    if size >= extent:
        start = int(np.clip(center - extent // 2, 0, size - extent))
        return slice(start, start + extent), (0, 0)
    short = extent - size
    return slice(0, size), (short // 2, short - short // 2)


def _centres(begin: int, end: int, extent: int, anchor: int) -> list[int]:
    """Patch centres along one axis covering [begin, end) with patches of ``extent``."""
    if end - begin <= extent:
        return [anchor]
    step = max(1, int(extent * 0.75))
    first = begin + extent // 2
    centres = list(range(first, end - extent // 2, step))
    centres.append(end - (extent - extent // 2))
    return centres


def decide_partners(
    cleft_id: int,
    candidates: np.ndarray,
    pre: np.ndarray,
    post: np.ndarray,
    polyadic: bool,
    pre_threshold: float,
    post_threshold: float,
) -> CleftAssignment:
    result = CleftAssignment(cleft_id, candidates, pre, post)
    if candidates.size < 2:
        return result  # one segment cannot be both sides
    best_pre = int(np.argmax(pre))
    if polyadic:
        pres = [int(c) for c, s in zip(candidates, pre, strict=True) if s > pre_threshold]
        result.pre_ids = pres or [int(candidates[best_pre])]
        result.post_ids = [
            int(c)
            for c, s in zip(candidates, post, strict=True)
            if s > post_threshold and int(c) not in result.pre_ids
        ]
    else:
        others = np.flatnonzero(np.arange(candidates.size) != best_pre)
        best_post = int(others[np.argmax(post[others])])
        result.pre_ids = [int(candidates[best_pre])]
        result.post_ids = [int(candidates[best_post])]
    return result


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
) -> Iterator[AssignProgress]:
    """Assign partners to clefts with an AVAN model.

    Args:
        model: AVAN (2 inputs: image, cleft mask; 2 outputs: pre, post).
        image, clefts, segmentation: (z, y, x) volumes of one shape.
        voxel_size_nm: their voxel size.
        cleft_ids: clefts to assign (default: all).
        run: device plan.
        polyadic: all candidates above the thresholds instead of the argmax pair.
        pre_threshold, post_threshold: polyadic thresholds on the mean outputs (default:
            the model's ``postprocess`` metadata, chosen on validation data, else 0.5).
        radius_nm, n_sections: candidate region: the cleft dilated in-plane.
        batch_size: patches per forward pass.
        flip_tta: average the outputs over the four in-plane flips (4x the compute).
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

    stats = label_statistics(clefts)
    index = {int(c): i for i, c in enumerate(stats.ids)}
    wanted = [int(c) for c in (stats.ids if cleft_ids is None else cleft_ids)]
    missing = [c for c in wanted if c not in index]
    if missing:
        raise AvanInputError(f"cleft id(s) {missing[:10]} have no voxel in the cleft labels")
    structure = inplane_structure(radius_nm, voxel, n_sections)

    tasks: list[_Task] = []
    for cleft_id in wanted:
        i = index[cleft_id]
        begin, end = stats.bbox_begin[i], stats.bbox_end[i]
        # halves round up (not to even), so a crop at any offset anchors the same voxel
        anchor = np.floor(stats.centroid[i] + 0.5).astype(int)
        if clefts[tuple(anchor)] != cleft_id:  # centroid outside a curved cleft: snap into it
            sl = tuple(slice(int(b), int(e)) for b, e in zip(begin, end, strict=True))
            inside = np.argwhere(clefts[sl] == cleft_id) + begin
            anchor = inside[np.argmin(((inside - stats.centroid[i]) * voxel) ** 2 @ [1, 1, 1])]
        axes = [
            _centres(int(b), int(e), x, int(a))
            for b, e, x, a in zip(begin, end, extent, anchor, strict=True)
        ]
        centres = list(itertools.product(*axes))
        for k, centre in enumerate(centres):
            windows = [
                _window(c, x, n) for c, x, n in zip(centre, extent, clefts.shape, strict=True)
            ]
            crop = (windows[0][0], windows[1][0], windows[2][0])
            tasks.append(_Task(cleft_id, crop, [w[1] for w in windows], k == len(centres) - 1))

    run = run or make_plan()
    net = run.prepare(network)
    # per cleft: segment id -> [sum of pre output, sum of post output, voxel count]
    scores: dict[int, dict[int, np.ndarray]] = {}
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
            ids, local = np.unique(segmentation[task.crop], return_inverse=True)
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
            acc = scores.setdefault(task.cleft_id, {})
            for k, seg_id in enumerate(ids.tolist()):
                acc.setdefault(seg_id, np.zeros(3))[:] += (sums[0][k], sums[1][k], counts[k])
            if task.last:
                i = index[task.cleft_id]
                slices, region = dilated_label_region(
                    clefts, task.cleft_id, stats.bbox_begin[i], stats.bbox_end[i], structure
                )
                candidates = np.unique(segmentation[slices][region])
                candidates = candidates[candidates != 0]
                acc = scores.pop(task.cleft_id)
                mean = np.array(
                    [
                        acc[c][:2] / acc[c][2] if c in acc and acc[c][2] > 0 else (0.0, 0.0)
                        for c in candidates.tolist()
                    ]
                ).reshape(-1, 2)
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


def _inputs(image: np.ndarray, clefts: np.ndarray, task: _Task, patch: tuple[int, ...]) -> Any:
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


def edge_weights(assignments: Sequence[CleftAssignment]) -> Any:
    """Per-edge weights for :func:`napari_avan.core.tables.edge_table`."""
    import pandas as pd

    rows = []
    for a in assignments:
        for pre, post in a.edges:
            rows.append((a.cleft_id, pre, post, a.score_of(pre)[0], a.score_of(post)[1]))
    return pd.DataFrame(rows, columns=["cleft_id", "pre_id", "post_id", "presyn_wt", "postsyn_wt"])
