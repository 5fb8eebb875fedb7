"""AVAN on boxes around clefts: what the Partners widget's workers compute, without layers.

A click reads a box around one cleft (its bounding box widened by one AVAN patch, so the
network sees exactly what it would see in the whole volume), assigns it, and returns the
partner masks of that box and the edge rows in volume coordinates. A bulk run does the
same for every cleft in the visible region, one box around all of them, and yields after
each batch of patches.

Importing this module does not load torch (the plugin imports it when its widget opens);
:func:`iter_partners` does, through :mod:`napari_avan.models.assign`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from napari_avan.core.geometry import (
    Box,
    box_offset,
    cleft_box,
    grow_box,
    inscribed_ellipsoid,
    shift_points,
    union_box,
)
from napari_avan.core.partners import CleftAssignment, edge_weights
from napari_avan.types import AvanInputError, VoxelSize

if TYPE_CHECKING:
    from napari_avan.models.checkpoint import LoadedModel
    from napari_avan.models.device import RunPlan


@dataclass
class CleftOutput:
    """One assigned cleft: the decision, its edge rows and its partners' masks."""

    cleft_id: int
    assignment: CleftAssignment
    edges: pd.DataFrame
    region: Box  # where the masks go, in volume voxels
    pre_mask: np.ndarray  # segment ids of the presynaptic partners in region, else 0
    post_mask: np.ndarray


@dataclass
class PartnersStep:
    """Progress of a run: ``done`` of ``total`` patches, and the clefts finished so far."""

    done: int
    total: int
    outputs: list[CleftOutput] = field(default_factory=list)


def patch_extent(model: LoadedModel, voxel: VoxelSize) -> tuple[int, int, int]:
    """AVAN's patch in the volume's voxels (its working patch rescaled)."""
    from napari_avan.models.assign import DEFAULT_AVAN_PATCH

    meta = model.metadata
    patch = meta.get("patch", DEFAULT_AVAN_PATCH)
    working = meta.get("voxel_size_nm", voxel)
    z, y, x = (
        max(1, round(int(p) * float(w) / float(v)))
        for p, w, v in zip(patch, working, voxel, strict=True)
    )
    return (z, y, x)


def partner_output(
    assignment: CleftAssignment,
    clefts: np.ndarray,
    segmentation: np.ndarray,
    crop: Box,
    region: Box,
    voxel: VoxelSize,
    model_name: str,
) -> CleftOutput:
    """Edges and partner masks of one assigned cleft; ``clefts``/``segmentation`` are the
    crop's arrays and ``region`` (in volume voxels, inside ``crop``) bounds the masks."""
    from napari_avan.core.tables import edge_table, empty_edge_table

    corner = box_offset(crop)
    local = tuple(
        slice(r.start - int(c), r.stop - int(c)) for r, c in zip(region, corner, strict=True)
    )
    seg = segmentation[local]
    near = inscribed_ellipsoid(seg.shape)
    pre_mask = np.where(near & np.isin(seg, assignment.pre_ids), seg, 0)
    post_mask = np.where(near & np.isin(seg, assignment.post_ids), seg, 0)
    weights = edge_weights([assignment])
    if len(weights):
        partners = weights[["cleft_id", "pre_id", "post_id"]]
        edges = edge_table(
            clefts[local],
            seg,
            partners,
            voxel_size_nm=voxel,
            weights=weights,
            model=model_name,
        )
        edges = shift_points(edges, box_offset(region))
    else:
        edges = empty_edge_table()
    return CleftOutput(int(assignment.cleft_id), assignment, edges, region, pre_mask, post_mask)


def cleft_statistics(clefts: Any, cleft_id: int, box: Sequence[int]) -> Any:
    """One cleft's :func:`~napari_avan.core.geometry.label_statistics`, read within its box
    (z0, y0, x0, z1, y1, x1), so assigning it reads only around it; None without a box."""
    from napari_avan.core.geometry import LabelStatistics, label_statistics

    if not box:
        return None
    window = tuple(slice(int(b), int(e)) for b, e in zip(box[:3], box[3:], strict=True))
    crop = np.asarray(clefts[window])
    stats = label_statistics(np.where(crop == cleft_id, crop, 0))
    corner = np.asarray(box[:3], np.int64)
    return LabelStatistics(
        ids=stats.ids, size=stats.size, centroid=stats.centroid + corner,
        bbox_begin=stats.bbox_begin + corner, bbox_end=stats.bbox_end + corner,
        value_mean=stats.value_mean,
    )  # fmt: skip


def record_output(
    cleft_id: int,
    record: Any,
    clefts: Any,
    segmentation: Any,
    voxel: VoxelSize,
    margin: Sequence[int],
    *,
    model_name: str = "",
) -> CleftOutput:
    """What a session's record of one cleft shows (a ``core.session.CleftRecord``): its
    partners' masks in the cleft's box widened by ``margin`` (AVAN's patch, as a run
    shows them) and its edge rows, the weights being the recorded scores (NaN for
    partners set by hand)."""
    shape = tuple(int(n) for n in clefts.shape)
    if record.box:
        box: Box = tuple(  # type: ignore[assignment]
            slice(int(b), int(e)) for b, e in zip(record.box[:3], record.box[3:], strict=True)
        )
    else:  # no box recorded: search the whole volume
        where = np.argwhere(np.asarray(clefts) == cleft_id)
        if where.size == 0:
            raise AvanInputError(f"cleft {cleft_id} has no voxel in the session's labels")
        lo, hi = where.min(axis=0), where.max(axis=0) + 1
        box = (slice(int(lo[0]), int(hi[0])), slice(int(lo[1]), int(hi[1])),
               slice(int(lo[2]), int(hi[2])))  # fmt: skip
    region = grow_box(box, margin, shape)
    assignment = CleftAssignment(
        int(cleft_id),
        np.asarray(record.candidates, dtype=np.int64),
        np.asarray(record.pre_scores, dtype=float),
        np.asarray(record.post_scores, dtype=float),
        list(record.pre),
        list(record.post),
    )
    cl, seg = np.asarray(clefts[region]), np.asarray(segmentation[region])
    return partner_output(assignment, cl, seg, region, region, voxel, model_name)


def iter_partners(
    model: LoadedModel,
    run: RunPlan,
    arrays: tuple[Any, Any, Any],
    voxel: VoxelSize,
    cleft_points: Mapping[int, Sequence[int]],
    *,
    model_name: str = "",
    batch_size: int = 2,
    **assign_kwargs: Any,
) -> Iterator[PartnersStep]:
    """Assign the clefts in ``cleft_points`` (id -> one of its voxels) and yield progress.

    Args:
        model, run: a prepared AVAN model and its run plan.
        arrays: image, clefts, segmentation (numpy, zarr or dask; only boxes are read).
        voxel: their voxel size.
        cleft_points: the clefts to assign, each with a voxel inside it (volume coords).
        model_name: written in the edge table's ``model`` column.
        batch_size: AVAN patches per forward pass (and per yield); two keep Cancel
            quick and run as fast per patch on CPU as larger batches.
        assign_kwargs: passed to :func:`napari_avan.models.assign.iter_assign`
            (``polyadic``, ``pre_threshold``, ``post_threshold``).
    """
    from napari_avan.models.assign import iter_assign

    image, clefts, segmentation = arrays
    shape = tuple(int(n) for n in clefts.shape)
    if not cleft_points:
        yield PartnersStep(0, 0)
        return
    extent = patch_extent(model, voxel)
    boxes = {cid: cleft_box(clefts, cid, point) for cid, point in cleft_points.items()}
    regions = {cid: grow_box(box, extent, shape) for cid, box in boxes.items()}
    crop = union_box(regions.values())
    img = np.asarray(image[crop])
    cl = np.asarray(clefts[crop])
    seg = np.asarray(segmentation[crop])
    if img.ndim != 3:
        raise AvanInputError(f"the image crop is not (z, y, x): {img.shape}")
    for step in iter_assign(
        model,
        img,
        cl,
        seg,
        voxel,
        cleft_ids=list(cleft_points),
        run=run,
        batch_size=batch_size,
        **assign_kwargs,
    ):
        outputs = [
            partner_output(a, cl, seg, crop, regions[a.cleft_id], voxel, model_name)
            for a in step.finished
        ]
        yield PartnersStep(step.done, step.total, outputs)


def avan_assigner(
    model: LoadedModel,
    image: np.ndarray,
    segmentation: np.ndarray,
    voxel_size_nm: VoxelSize,
    *,
    run: RunPlan | None = None,
    polyadic: bool = True,
) -> Callable[[Any, int], Any]:
    """A proofreading session's assigner: AVAN's partners of a (re-seeded) cleft.

    Returns:
        ``assign(session, cleft_id) -> CleftRecord`` for :attr:`Session.assigner`; it
        reads the session's current labels, so the new cleft is there.
    """
    from napari_avan.core.session import record_from_assignment
    from napari_avan.models.assign import assign_cleft

    def assign(session: Any, cleft_id: int) -> Any:
        found = assign_cleft(
            model, image, session.labels, segmentation, voxel_size_nm, cleft_id,
            run=run, polyadic=polyadic,
            statistics=cleft_statistics(session.labels, cleft_id, session.cleft_box(cleft_id)),
        )  # fmt: skip
        return record_from_assignment(found)

    return assign
