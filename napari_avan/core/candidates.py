"""Training targets and candidate partner pairs for the pruner baselines.

- :func:`signed_proximity`: the signed proximity target of Parag et al. (2018), eq. 1.
- :func:`mask_pruner_candidates`: ordered pairs of segments around each cleft (mask pruner).
- :func:`proximity_pieces`, :func:`proximity_pruner_candidates`, :func:`candidate_masks`:
  thresholded signed-proximity pieces paired across neighbouring segments (proximity pruner).
- :func:`best_pair_per_cleft`: the best-scoring candidate pair per true cleft (evaluation).

Everything is (z, y, x); voxel sizes are in nm as (z, y, x); id columns of the candidate
tables are uint64.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy import ndimage

from napari_avan.core.geometry import (
    DEFAULT_DILATION_RADIUS_NM,
    DEFAULT_DILATION_SECTIONS,
    BoxSlices,
    bbox_slices,
    check_label_volume,
    dilated_label_region,
    inplane_structure,
    label_statistics,
)
from napari_avan.core.tables import (
    BBOX_BEGIN_PREFIX,
    BBOX_END_PREFIX,
    CENTROID_PREFIX,
    check_partner_table,
    from_xyz_columns,
    to_xyz_columns,
)
from napari_avan.types import AvanInputError, check_same_shape, check_voxel_size

#: Width of the signed proximity's Gaussian in nm (Parag et al. 2018 use about 50 nm).
DEFAULT_PROXIMITY_SIGMA_NM = 50.0
#: Steepness of the signed proximity's sign factor, per in-plane voxel.
DEFAULT_PROXIMITY_STEEPNESS = 5.0
#: Signed proximity threshold of the proximity pruner's pieces.
DEFAULT_PROXIMITY_THRESHOLD = 0.3
#: Pieces with fewer voxels than this are dropped by the proximity pruner.
DEFAULT_PIECE_MIN_SIZE = 10

#: Columns of :func:`mask_pruner_candidates`.
MASK_CANDIDATE_COLUMNS = ("cleft_id", "pre_id", "post_id")
#: Columns of :func:`best_pair_per_cleft`.
BEST_PAIR_COLUMNS = ("cleft_id", "pre_id", "post_id", "score", "candidate")


def _check_positive(value: float, what: str, hint: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError) as err:
        raise AvanInputError(f"{what} {value!r} is not a number: {hint}") from err
    if not math.isfinite(number) or number <= 0:
        raise AvanInputError(f"{what} must be positive and finite, got {value!r}: {hint}")
    return number


def _check_real_volume(array: np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(array)
    if arr.ndim != 3:
        raise AvanInputError(f"{what} must be a 3D (z, y, x) array, got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise AvanInputError(f"{what} must hold real numbers, got dtype {arr.dtype}")
    return arr


def _id_array(values: np.ndarray | Sequence[int]) -> np.ndarray:
    return np.asarray(values).astype(np.uint64)


# --- signed proximity -------------------------------------------------------------------------


def signed_proximity(
    clefts: np.ndarray,
    segmentation: np.ndarray,
    partners: pd.DataFrame,
    voxel_size_nm: Sequence[float] | np.ndarray,
    *,
    sigma_nm: float = DEFAULT_PROXIMITY_SIGMA_NM,
    a: float = DEFAULT_PROXIMITY_STEEPNESS,
    max_distance_nm: float | None = None,
) -> np.ndarray:
    """The signed proximity target (Parag et al. 2018, eq. 1) of the clefts of ``partners``.

    For a voxel at distance ``d`` (nm) from the nearest voxel of cleft ``c``::

        value = sign * exp(-d**2 / (2 * sigma_nm**2)) * (2 / (1 + exp(-a * d')) - 1)
        d'    = 1 + d / v

    where ``v`` is the in-plane voxel size (the smaller of y and x) and ``sign`` is +1 inside
    a presynaptic segment of ``c``, -1 inside a postsynaptic segment of ``c`` and 0 in every
    other segment and in the background. ``d`` is the anisotropic Euclidean distance between
    voxel centres, in nm. ``d'`` is the distance in in-plane voxels, shifted by one voxel so
    that the sign factor ``2 / (1 + exp(-a d')) - 1 = tanh(a d' / 2)`` is not 0 on the cleft
    itself: it is ``tanh(a / 2)`` there (0.987 for ``a = 5``) and within 0.1% of 1 one voxel
    further. ``a`` is therefore per in-plane voxel, and the magnitude is shaped by the
    Gaussian (it peaks about one in-plane voxel from the cleft, then decays). Cleft voxels,
    which lie in the partner segments, take the sign of their segment.

    Values farther than ``max_distance_nm`` from the cleft are 0 (the distance transform is
    computed in a crop around each cleft's box grown by that distance, which is exact within
    it). Where several clefts give a voxel a value, the one of largest magnitude is kept
    (the first cleft in increasing id order on ties). A segment listed as both pre and post
    of one cleft gets sign 0 for that cleft. Clefts of the volume without a partner row
    contribute nothing.

    Args:
        clefts: (z, y, x) cleft labels, 0 = background.
        segmentation: (z, y, x) segment labels, same shape.
        partners: partner table ``cleft_id, pre_id, post_id``, one row per pre -> post pair.
        voxel_size_nm: (z, y, x) voxel size in nm.
        sigma_nm: width of the Gaussian, nm.
        a: steepness of the sign factor, per in-plane voxel of ``d'``.
        max_distance_nm: cut-off distance in nm; default ``3 * sigma_nm``.

    Returns:
        A float32 (z, y, x) array in [-1, 1].

    Raises:
        AvanInputError: on mismatched shapes, non-integer labels, a bad voxel size or
            parameter, or a partner cleft id with no voxel in ``clefts``.
    """
    clefts = check_label_volume(clefts, "clefts")
    segmentation = check_label_volume(segmentation, "segmentation")
    check_same_shape(clefts=clefts, segmentation=segmentation)
    voxel_size = np.asarray(check_voxel_size(voxel_size_nm), dtype=np.float64)
    sigma = _check_positive(sigma_nm, "sigma_nm", "give the Gaussian width in nm, e.g. 50")
    steepness = _check_positive(a, "a", "give the sign-factor steepness, e.g. 5")
    cutoff = (
        3.0 * sigma
        if max_distance_nm is None
        else _check_positive(max_distance_nm, "max_distance_nm", "give a distance in nm")
    )
    table = check_partner_table(partners)
    inplane_nm = float(min(voxel_size[1], voxel_size[2]))

    out = np.zeros(clefts.shape, dtype=np.float32)
    if len(table) == 0:
        return out
    stats = label_statistics(clefts)
    where = {int(cid): i for i, cid in enumerate(stats.ids)}
    absent = sorted({int(c) for c in table["cleft_id"]} - set(where))
    if absent:
        shown = ", ".join(map(str, absent[:10])) + (" ..." if len(absent) > 10 else "")
        raise AvanInputError(
            f"partner table names {len(absent)} cleft id(s) with no voxel in the cleft volume "
            f"({shown}): drop those rows or give the matching cleft volume"
        )
    pad = [math.ceil(cutoff / v) for v in voxel_size]
    cleft_column = table["cleft_id"].to_numpy()
    for cleft_id in np.unique(cleft_column):
        rows = table[cleft_column == cleft_id]
        i = where[int(cleft_id)]
        slices = bbox_slices(stats.bbox_begin[i], stats.bbox_end[i], pad, clefts.shape)
        seg = segmentation[slices]
        # same signedness as the labels so that isin never compares through float64
        id_type = np.uint64 if seg.dtype.kind == "u" else np.int64
        pre = np.isin(seg, rows["pre_id"].to_numpy().astype(id_type))
        post = np.isin(seg, rows["post_id"].to_numpy().astype(id_type))
        sign = pre.astype(np.int8) - post.astype(np.int8)
        if not sign.any():
            continue
        d = ndimage.distance_transform_edt(clefts[slices] != stats.ids[i], sampling=voxel_size)
        d_prime = 1.0 + d / inplane_nm
        value = np.exp(-(d**2) / (2.0 * sigma**2)) * (
            2.0 / (1.0 + np.exp(-steepness * d_prime)) - 1.0
        )
        value = (sign * np.where(d <= cutoff, value, 0.0)).astype(np.float32)
        crop = out[slices]
        np.copyto(crop, value, where=np.abs(value) > np.abs(crop))
    return out


# --- mask pruner ------------------------------------------------------------------------------


def mask_pruner_candidates(
    clefts: np.ndarray,
    segmentation: np.ndarray,
    voxel_size_nm: Sequence[float] | np.ndarray,
    *,
    radius_nm: float = DEFAULT_DILATION_RADIUS_NM,
    n_sections: int = DEFAULT_DILATION_SECTIONS,
) -> pd.DataFrame:
    """Candidate (pre, post) pairs of the mask pruner: ordered pairs around each cleft.

    The candidate segments of a cleft are the nonzero segments overlapping the cleft dilated
    in-plane by ``radius_nm`` on ``n_sections`` sections (as for AVAN assignment);
    every ordered pair ``(a, b)`` of them with ``a != b`` is a candidate, so both directions
    of each pair are listed.

    Args:
        clefts: (z, y, x) cleft labels, 0 = background.
        segmentation: (z, y, x) segment labels, same shape.
        voxel_size_nm: (z, y, x) voxel size in nm.
        radius_nm: in-plane radius of the candidate region in nm.
        n_sections: sections spanned by the candidate region (odd).

    Returns:
        Columns :data:`MASK_CANDIDATE_COLUMNS` (uint64), rows sorted by cleft id, then
        ``pre_id``, then ``post_id``. A cleft with fewer than two candidate segments has no
        row.
    """
    clefts = check_label_volume(clefts, "clefts")
    segmentation = check_label_volume(segmentation, "segmentation")
    check_same_shape(clefts=clefts, segmentation=segmentation)
    structure = inplane_structure(radius_nm, check_voxel_size(voxel_size_nm), n_sections)
    stats = label_statistics(clefts)
    parts: list[np.ndarray] = []
    for i, cleft_id in enumerate(stats.ids):
        slices, region = dilated_label_region(
            clefts, cleft_id, stats.bbox_begin[i], stats.bbox_end[i], structure
        )
        segs = np.unique(segmentation[slices][region])
        segs = _id_array(segs[segs != 0])
        if segs.size < 2:
            continue
        pre, post = np.meshgrid(segs, segs, indexing="ij")
        keep = pre != post
        rows = np.empty((int(keep.sum()), 3), dtype=np.uint64)
        rows[:, 0] = np.uint64(cleft_id)
        rows[:, 1] = pre[keep]
        rows[:, 2] = post[keep]
        parts.append(rows)
    rows = np.concatenate(parts) if parts else np.zeros((0, 3), dtype=np.uint64)
    return pd.DataFrame(
        {name: rows[:, k] for k, name in enumerate(MASK_CANDIDATE_COLUMNS)},
        columns=list(MASK_CANDIDATE_COLUMNS),
    )


# --- proximity pruner -------------------------------------------------------------------------


class ProximityPieces(NamedTuple):
    """Thresholded signed-proximity components split by segment (proximity pruner).

    A piece is the set of voxels of one 6-connected component of one side (``proximity >=
    threshold``: presynaptic, ``<= -threshold``: postsynaptic) that lie in one nonzero
    segment. Piece ids run 1..N per side in order of each piece's first voxel in (z, y, x)
    raster order, so they do not depend on the labelling algorithm.

    Attributes:
        pre_labels: (z, y, x) uint32 ids of the presynaptic (positive) pieces, 0 = none.
        post_labels: (z, y, x) uint32 ids of the postsynaptic (negative) pieces, 0 = none.
        pre_segment: (N_pre + 1,) uint64 segment of each presynaptic piece, by piece id
            (entry 0 is 0).
        post_segment: (N_post + 1,) uint64 segment of each postsynaptic piece, by piece id.
        threshold: the threshold used.
        min_size: pieces with fewer voxels were dropped.
    """

    pre_labels: np.ndarray
    post_labels: np.ndarray
    pre_segment: np.ndarray
    post_segment: np.ndarray
    threshold: float
    min_size: int


def _side_pieces(
    mask: np.ndarray, segmentation: np.ndarray, min_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Piece labels (uint32) and segment per piece id for one side; see ProximityPieces."""
    import cc3d

    components = cc3d.connected_components(mask, connectivity=6, out_dtype=np.uint64)
    flat_seg = segmentation.ravel()
    linear = np.flatnonzero((components.ravel() != 0) & (flat_seg != 0))  # increasing linear index
    labels = np.zeros(mask.shape, dtype=np.uint32)
    if linear.size == 0:
        return labels, np.zeros(1, dtype=np.uint64)
    comp = components.ravel()[linear]
    seg = flat_seg[linear].astype(np.uint64)
    order = np.lexsort((seg, comp))  # stable: each group keeps raster order
    comp, seg, linear = comp[order], seg[order], linear[order]
    change = (comp[1:] != comp[:-1]) | (seg[1:] != seg[:-1])
    starts = np.concatenate(([0], np.flatnonzero(change) + 1))
    sizes = np.diff(np.append(starts, linear.size))
    kept = sizes >= min_size
    first_voxel = linear[starts]
    # number the kept groups by their first voxel in raster order
    rank = np.argsort(first_voxel[kept], kind="stable")
    piece_of_group = np.zeros(starts.size, dtype=np.int64)
    kept_groups = np.flatnonzero(kept)
    piece_of_group[kept_groups[rank]] = np.arange(1, kept_groups.size + 1)
    if kept_groups.size >= np.iinfo(np.uint32).max:
        raise AvanInputError("too many proximity pieces: raise the threshold or min_size")
    group_of_voxel = np.repeat(np.arange(starts.size), sizes)
    labels.ravel()[linear] = piece_of_group[group_of_voxel].astype(np.uint32)
    segment = np.zeros(kept_groups.size + 1, dtype=np.uint64)
    segment[piece_of_group[kept_groups]] = seg[starts[kept_groups]]
    return labels, segment


def _check_threshold_and_size(threshold: float, min_size: int) -> tuple[float, int]:
    try:
        t = float(threshold)
    except (TypeError, ValueError) as err:
        raise AvanInputError(f"threshold {threshold!r} is not a number") from err
    if not 0.0 < t <= 1.0:
        raise AvanInputError(
            f"threshold {threshold!r} must lie in (0, 1]: signed proximity is in [-1, 1] and "
            "each side is cut at +threshold / -threshold (e.g. 0.3)"
        )
    if int(min_size) != min_size or min_size < 0:
        raise AvanInputError(f"min_size {min_size!r} must be a whole number of voxels >= 0")
    return t, int(min_size)


def proximity_pieces(
    proximity: np.ndarray,
    segmentation: np.ndarray,
    *,
    threshold: float = DEFAULT_PROXIMITY_THRESHOLD,
    min_size: int = DEFAULT_PIECE_MIN_SIZE,
) -> ProximityPieces:
    """Split the thresholded signed proximity into per-segment pieces (see ProximityPieces).

    Args:
        proximity: (z, y, x) signed proximity (e.g. a network output), in [-1, 1].
        segmentation: (z, y, x) segment labels, same shape.
        threshold: presynaptic voxels have ``proximity >= threshold``, postsynaptic ones
            ``proximity <= -threshold``.
        min_size: pieces with fewer voxels are dropped.
    """
    proximity = _check_real_volume(proximity, "signed proximity")
    segmentation = check_label_volume(segmentation, "segmentation")
    check_same_shape(proximity=proximity, segmentation=segmentation)
    t, size = _check_threshold_and_size(threshold, min_size)
    pre_labels, pre_segment = _side_pieces(proximity >= t, segmentation, size)
    post_labels, post_segment = _side_pieces(proximity <= -t, segmentation, size)
    return ProximityPieces(pre_labels, post_labels, pre_segment, post_segment, t, size)


def proximity_pruner_candidates(
    proximity: np.ndarray,
    segmentation: np.ndarray,
    voxel_size_nm: Sequence[float] | np.ndarray,
    *,
    threshold: float = DEFAULT_PROXIMITY_THRESHOLD,
    min_size: int = DEFAULT_PIECE_MIN_SIZE,
    radius_nm: float = DEFAULT_DILATION_RADIUS_NM,
    n_sections: int = DEFAULT_DILATION_SECTIONS,
    pieces: ProximityPieces | None = None,
) -> pd.DataFrame:
    """Candidate (pre, post) pairs of the proximity pruner.

    The signed proximity is cut into pieces (:func:`proximity_pieces`). Every presynaptic
    piece is paired with every postsynaptic piece that lies in a different segment and
    overlaps the presynaptic piece dilated in-plane by ``radius_nm`` on ``n_sections``
    sections (the dilation of :func:`mask_pruner_candidates`). Each pair is a candidate:
    pre = the segment of the presynaptic piece, post = the segment of the postsynaptic one.
    Two pieces in the same segments give two candidates with the same (pre, post).

    Args:
        proximity: (z, y, x) signed proximity, in [-1, 1].
        segmentation: (z, y, x) segment labels, same shape.
        voxel_size_nm: (z, y, x) voxel size in nm.
        threshold: pieces are cut at ``+threshold`` and ``-threshold``.
        min_size: pieces with fewer voxels are dropped.
        radius_nm: in-plane pairing distance in nm.
        n_sections: sections spanned by the pairing dilation (odd).
        pieces: pieces already computed by :func:`proximity_pieces` from these volumes; then
            ``threshold`` and ``min_size`` are those of ``pieces``.

    Returns:
        One row per candidate, sorted by ``pre_piece`` then ``post_piece``, with columns
        ``candidate_id`` (1..N, int64), ``pre_id``, ``post_id`` (uint64), ``pre_piece``,
        ``post_piece`` (piece ids in ``pieces.pre_labels`` / ``post_labels``, int64),
        ``pre_size``, ``post_size`` (voxels, int64), ``centroid_x/y/z`` (mean voxel of both
        pieces, float64) and ``bbox_bx/by/bz`` (inclusive), ``bbox_ex/ey/ez`` (exclusive)
        of both pieces (int64), all in voxel units. :func:`candidate_masks` gives the two
        masks of a candidate, the inputs a pruner network needs besides the image and the
        proximity.
    """
    structure = inplane_structure(radius_nm, check_voxel_size(voxel_size_nm), n_sections)
    if pieces is None:
        pieces = proximity_pieces(proximity, segmentation, threshold=threshold, min_size=min_size)
    else:
        check_same_shape(
            proximity=np.asarray(proximity),
            segmentation=np.asarray(segmentation),
            pieces=pieces.pre_labels,
        )
    pre_stats = label_statistics(pieces.pre_labels)
    post_stats = label_statistics(pieces.post_labels)
    pre_rows: list[np.ndarray] = []
    post_rows: list[np.ndarray] = []
    for i, piece in enumerate(pre_stats.ids):
        slices, region = dilated_label_region(
            pieces.pre_labels, piece, pre_stats.bbox_begin[i], pre_stats.bbox_end[i], structure
        )
        near = np.unique(pieces.post_labels[slices][region])
        near = near[near != 0]
        near = near[pieces.post_segment[near] != pieces.pre_segment[piece]]
        pre_rows.append(np.full(near.size, i, dtype=np.int64))
        post_rows.append(np.searchsorted(post_stats.ids, near).astype(np.int64))
    i_pre = np.concatenate(pre_rows) if pre_rows else np.zeros(0, np.int64)
    i_post = np.concatenate(post_rows) if post_rows else np.zeros(0, np.int64)
    pre_piece = pre_stats.ids[i_pre].astype(np.int64)
    post_piece = post_stats.ids[i_post].astype(np.int64)
    pre_size = pre_stats.size[i_pre]
    post_size = post_stats.size[i_post]
    total = np.maximum(pre_size + post_size, 1)[:, None]
    centroid = (
        pre_stats.centroid[i_pre] * pre_size[:, None]
        + post_stats.centroid[i_post] * post_size[:, None]
    ) / total
    begin = np.minimum(pre_stats.bbox_begin[i_pre], post_stats.bbox_begin[i_post])
    end = np.maximum(pre_stats.bbox_end[i_pre], post_stats.bbox_end[i_post])
    data: dict[str, np.ndarray] = {
        "candidate_id": np.arange(1, i_pre.size + 1, dtype=np.int64),
        "pre_id": pieces.pre_segment[pre_piece].astype(np.uint64),
        "post_id": pieces.post_segment[post_piece].astype(np.uint64),
        "pre_piece": pre_piece,
        "post_piece": post_piece,
        "pre_size": pre_size.astype(np.int64),
        "post_size": post_size.astype(np.int64),
        **to_xyz_columns(CENTROID_PREFIX, centroid.reshape(-1, 3)),
        **to_xyz_columns(BBOX_BEGIN_PREFIX, begin.reshape(-1, 3)),
        **to_xyz_columns(BBOX_END_PREFIX, end.reshape(-1, 3)),
    }
    return pd.DataFrame(data)


class CandidateMasks(NamedTuple):
    """The two piece masks of one proximity-pruner candidate, in a box of the volume.

    Attributes:
        slices: the (z, y, x) box the masks cover.
        pre: boolean mask of the presynaptic piece within the box.
        post: boolean mask of the postsynaptic piece within the box.
    """

    slices: BoxSlices
    pre: np.ndarray
    post: np.ndarray


def candidate_masks(
    pieces: ProximityPieces,
    pre_piece: int,
    post_piece: int,
    slices: BoxSlices | None = None,
) -> CandidateMasks:
    """Masks of a proximity-pruner candidate's pieces, the pruner's two candidate channels.

    Args:
        pieces: from :func:`proximity_pieces` (the same threshold and min_size as the
            candidate table, or the ``pieces`` passed to it).
        pre_piece: the candidate's ``pre_piece``.
        post_piece: the candidate's ``post_piece``.
        slices: the box to return, e.g. the pruner's input patch; default the whole volume.
            Parts of the pieces outside the box are left out.
    """
    n_pre, n_post = pieces.pre_segment.size - 1, pieces.post_segment.size - 1
    if not (1 <= int(pre_piece) <= n_pre and 1 <= int(post_piece) <= n_post):
        raise AvanInputError(
            f"no such piece pair ({pre_piece}, {post_piece}): there are {n_pre} presynaptic "
            f"and {n_post} postsynaptic pieces; take pre_piece and post_piece from the "
            "candidate table built with these pieces"
        )
    if slices is None:
        slices = (slice(None), slice(None), slice(None))
    return CandidateMasks(
        slices,
        pieces.pre_labels[slices] == pre_piece,
        pieces.post_labels[slices] == post_piece,
    )


# --- evaluation -------------------------------------------------------------------------------


def cleft_of_candidates(candidates: pd.DataFrame, clefts: np.ndarray) -> np.ndarray:
    """For each candidate (a table with box columns), the cleft with the most voxels in its
    box: the lowest id on ties, 0 when the box holds no cleft voxel."""
    true_clefts = clefts
    try:
        begin = from_xyz_columns(candidates, BBOX_BEGIN_PREFIX).astype(np.int64)
        end = from_xyz_columns(candidates, BBOX_END_PREFIX).astype(np.int64)
    except AvanInputError as err:
        raise AvanInputError(
            "candidates need a cleft_id column (mask pruner) or bbox_b*/bbox_e* columns "
            f"(proximity pruner) to be matched to true clefts: {err}"
        ) from err
    matched = np.zeros(len(candidates), dtype=np.uint64)
    for k in range(len(candidates)):
        box = bbox_slices(begin[k], end[k], 0, true_clefts.shape)
        ids, counts = np.unique(true_clefts[box], return_counts=True)
        counts = counts[ids != 0]
        ids = ids[ids != 0]
        if ids.size:
            matched[k] = ids[np.argmax(counts)]  # ties: the lowest id
    return matched


def best_pair_per_cleft(
    candidates: pd.DataFrame,
    scores: np.ndarray | Sequence[float],
    true_clefts: np.ndarray | None = None,
) -> pd.DataFrame:
    """The best-scoring candidate (pre, post) pair of every true cleft, for evaluation.

    Matching rule: a candidate table with a ``cleft_id`` column (from
    :func:`mask_pruner_candidates` run on the true clefts) belongs to that cleft. A table
    without one (from :func:`proximity_pruner_candidates`) is matched through its bounding
    box: each candidate belongs to the true cleft with the most voxels inside its box
    (the lowest id on ties); candidates whose box holds no true cleft voxel are left out.
    The box of both pieces spans the gap between them where the cleft lies.

    Args:
        candidates: a candidate table of this module.
        scores: one finite score per candidate row, higher = more likely a synapse.
        true_clefts: (z, y, x) true cleft labels; required without a ``cleft_id`` column.
            When given, every true cleft gets a row: one without candidates gets
            ``pre_id = post_id = 0``, score NaN and candidate -1 (a miss).

    Returns:
        Columns :data:`BEST_PAIR_COLUMNS`, one row per cleft by increasing ``cleft_id``:
        ids uint64, ``score`` float64 and ``candidate`` the row position (int64) of the
        chosen candidate in ``candidates``. Among equal scores the first row wins.
    """
    if not isinstance(candidates, pd.DataFrame):
        raise AvanInputError(f"candidates must be a DataFrame, got {type(candidates).__name__}")
    missing = [c for c in ("pre_id", "post_id") if c not in candidates.columns]
    if missing:
        raise AvanInputError(
            f"candidate table lacks column(s) {', '.join(missing)}: give the table of "
            "mask_pruner_candidates or proximity_pruner_candidates"
        )
    score = np.asarray(scores, dtype=np.float64).ravel()
    if score.size != len(candidates):
        raise AvanInputError(
            f"got {score.size} scores for {len(candidates)} candidates: give one per row"
        )
    if not np.all(np.isfinite(score)):
        raise AvanInputError("scores hold NaN or infinite values: give finite scores")
    if true_clefts is not None:
        true_clefts = check_label_volume(true_clefts, "true clefts")
    if "cleft_id" in candidates.columns:
        cleft = _id_array(candidates["cleft_id"].to_numpy())
    elif true_clefts is None:
        raise AvanInputError(
            "candidates have no cleft_id column: give true_clefts to match them to clefts "
            "by their bounding boxes"
        )
    else:
        cleft = cleft_of_candidates(candidates, true_clefts)

    rows = np.flatnonzero(cleft != 0)
    # order by cleft, then score descending, then row: the first row of each cleft wins
    order = rows[np.lexsort((rows, -score[rows], cleft[rows]))]
    first = np.ones(order.size, dtype=bool)
    first[1:] = cleft[order][1:] != cleft[order][:-1]
    best = order[first]
    result = pd.DataFrame(
        {
            "cleft_id": cleft[best],
            "pre_id": _id_array(candidates["pre_id"].to_numpy()[best]),
            "post_id": _id_array(candidates["post_id"].to_numpy()[best]),
            "score": score[best],
            "candidate": best.astype(np.int64),
        },
        columns=list(BEST_PAIR_COLUMNS),
    )
    if true_clefts is None:
        return result
    all_ids = np.unique(true_clefts)
    all_ids = _id_array(all_ids[all_ids != 0])
    lacking = np.setdiff1d(all_ids, result["cleft_id"].to_numpy())
    if lacking.size == 0:
        return result
    misses = pd.DataFrame(
        {
            "cleft_id": lacking,
            "pre_id": np.zeros(lacking.size, np.uint64),
            "post_id": np.zeros(lacking.size, np.uint64),
            "score": np.full(lacking.size, np.nan),
            "candidate": np.full(lacking.size, -1, np.int64),
        }
    )
    merged = pd.concat([result, misses], ignore_index=True)
    return merged.sort_values("cleft_id", kind="stable", ignore_index=True)
