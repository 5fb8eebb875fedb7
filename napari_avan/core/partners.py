"""Partner decisions from AVAN's scores, and the plan of AVAN's patches around clefts.

Everything here is numpy: AVAN itself runs in :mod:`napari_avan.models.assign`, which
plans its patches, adds up the network's output per segment and decides with the
functions below. Re-thresholding a cleft's candidates or correcting its partners needs
only a :class:`CleftAssignment` and :func:`decide_partners`, not torch.

A candidate is a segment overlapping the cleft dilated in-plane; its score on each side is
the mean output over its voxels in the patches (sums and counts per segment, added over
the patches that cover the cleft). Dyadic: the argmax pre, and the argmax post among the
others. Polyadic: every candidate above each side's threshold (pre falls back to the
argmax).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from napari_avan.core.geometry import Box, LabelStatistics, dilated_label_region

if TYPE_CHECKING:
    import pandas as pd

#: Per segment id: [sum of the pre output, sum of the post output, voxel count].
SegmentSums = dict[int, np.ndarray]


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


def decide_partners(
    cleft_id: int,
    candidates: np.ndarray,
    pre: np.ndarray,
    post: np.ndarray,
    polyadic: bool,
    pre_threshold: float,
    post_threshold: float,
) -> CleftAssignment:
    """The partners of a cleft from its candidates' mean pre and post scores.

    Args:
        cleft_id: the cleft.
        candidates: (N,) candidate segment ids.
        pre, post: (N,) their mean presynaptic and postsynaptic scores.
        polyadic: every candidate above the thresholds instead of the argmax pair.
        pre_threshold, post_threshold: the polyadic thresholds (a presynaptic partner is
            never also postsynaptic; with none above ``pre_threshold`` the argmax is pre).

    Returns:
        The assignment; no partners when there are fewer than two candidates.
    """
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


def edge_weights(assignments: Sequence[CleftAssignment]) -> pd.DataFrame:
    """Per-edge weights for :func:`napari_avan.core.tables.edge_table`: one row per edge,
    ``cleft_id, pre_id, post_id, presyn_wt, postsyn_wt``."""
    import pandas as pd

    rows = []
    for a in assignments:
        for pre, post in a.edges:
            rows.append((a.cleft_id, pre, post, a.score_of(pre)[0], a.score_of(post)[1]))
    return pd.DataFrame(rows, columns=["cleft_id", "pre_id", "post_id", "presyn_wt", "postsyn_wt"])


# --------------------------------------------------------------------------- score sums


def add_segment_sums(
    sums: SegmentSums,
    segment_ids: Sequence[int],
    pre_sums: np.ndarray,
    post_sums: np.ndarray,
    counts: np.ndarray,
) -> None:
    """Add one patch's per-segment output sums and voxel counts to a cleft's ``sums``
    (``segment_ids[k]`` has ``pre_sums[k]``, ``post_sums[k]`` and ``counts[k]``)."""
    for k, seg_id in enumerate(segment_ids):
        sums.setdefault(seg_id, np.zeros(3))[:] += (pre_sums[k], post_sums[k], counts[k])


def mean_scores(sums: SegmentSums, candidates: np.ndarray) -> np.ndarray:
    """(N, 2) mean pre and post output of each candidate; 0 for a candidate no patch saw."""
    return np.array(
        [
            sums[c][:2] / sums[c][2] if c in sums and sums[c][2] > 0 else (0.0, 0.0)
            for c in candidates.tolist()
        ]
    ).reshape(-1, 2)


def candidate_segments(
    clefts: np.ndarray,
    segmentation: np.ndarray,
    cleft_id: int,
    bbox_begin: Sequence[int],
    bbox_end: Sequence[int],
    structure: np.ndarray,
) -> np.ndarray:
    """The nonzero segment ids overlapping cleft ``cleft_id`` dilated by ``structure``
    (its box from ``bbox_begin`` to ``bbox_end``), increasing."""
    slices, region = dilated_label_region(clefts, cleft_id, bbox_begin, bbox_end, structure)
    candidates = np.unique(np.asarray(segmentation[slices])[region])
    return candidates[candidates != 0]


# ------------------------------------------------------------------------ patch planning


@dataclass
class PatchTask:
    """One AVAN patch: the crop of the volume it reads, the padding that brings a crop
    smaller than a patch up to size, and whether it is the cleft's last patch."""

    cleft_id: int
    crop: Box
    pad: list[tuple[int, int]]
    last: bool


def patch_window(center: int, extent: int, size: int) -> tuple[slice, tuple[int, int]]:
    """A window of ``extent`` around ``center``, shifted inside the volume, padded if small."""
    if size >= extent:
        start = int(np.clip(center - extent // 2, 0, size - extent))
        return slice(start, start + extent), (0, 0)
    short = extent - size
    return slice(0, size), (short // 2, short - short // 2)


def patch_centres(begin: int, end: int, extent: int, anchor: int) -> list[int]:
    """Patch centres along one axis covering [begin, end) with patches of ``extent``."""
    if end - begin <= extent:
        return [anchor]
    step = max(1, int(extent * 0.75))
    first = begin + extent // 2
    centres = list(range(first, end - extent // 2, step))
    centres.append(end - (extent - extent // 2))
    return centres


def cleft_anchor(
    clefts: np.ndarray, cleft_id: int, stats: LabelStatistics, row: int, voxel: Sequence[float]
) -> np.ndarray:
    """The voxel a single patch centres on: the cleft's centroid rounded (halves up, not
    to even, so a crop at any offset anchors the same voxel), or the cleft's voxel nearest
    to it (in nm) when the centroid lies outside a curved cleft."""
    centroid = stats.centroid[row]
    anchor = np.floor(centroid + 0.5).astype(int)
    if clefts[tuple(anchor)] != cleft_id:
        begin, end = stats.bbox_begin[row], stats.bbox_end[row]
        sl = tuple(slice(int(b), int(e)) for b, e in zip(begin, end, strict=True))
        inside = np.argwhere(clefts[sl] == cleft_id) + begin
        anchor = inside[np.argmin(((inside - centroid) * voxel) ** 2 @ [1, 1, 1])]
    return anchor


def plan_patches(
    clefts: np.ndarray,
    stats: LabelStatistics,
    cleft_ids: Sequence[int],
    extent: Sequence[int],
    voxel: Sequence[float],
) -> list[PatchTask]:
    """The patches that cover each cleft, in order, each cleft's last one marked.

    Args:
        clefts: (z, y, x) cleft labels.
        stats: their :func:`napari_avan.core.geometry.label_statistics`.
        cleft_ids: the clefts to cover (each must be in ``stats``).
        extent: a patch's (z, y, x) size in the volume's voxels.
        voxel: the volume's voxel size in nm.

    A cleft within one patch gets one patch centred on its anchor
    (:func:`cleft_anchor`); a larger one a grid of patches overlapping by a quarter.
    """
    index = {int(c): i for i, c in enumerate(stats.ids)}
    tasks: list[PatchTask] = []
    for cleft_id in cleft_ids:
        i = index[cleft_id]
        begin, end = stats.bbox_begin[i], stats.bbox_end[i]
        anchor = cleft_anchor(clefts, cleft_id, stats, i, voxel)
        axes = [
            patch_centres(int(b), int(e), int(x), int(a))
            for b, e, x, a in zip(begin, end, extent, anchor, strict=True)
        ]
        centres = list(itertools.product(*axes))
        for k, centre in enumerate(centres):
            windows = [
                patch_window(c, int(x), n)
                for c, x, n in zip(centre, extent, clefts.shape, strict=True)
            ]
            crop = (windows[0][0], windows[1][0], windows[2][0])
            tasks.append(PatchTask(cleft_id, crop, [w[1] for w in windows], k == len(centres) - 1))
    return tasks
