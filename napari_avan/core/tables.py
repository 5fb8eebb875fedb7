"""Cleft and edge tables and the one (z, y, x) <-> x/y/z column conversion.

The tables are described in docs/architecture.md (the cleft table, the edge table).

Inside the package points are (z, y, x) arrays; tables written for other tools name their axes
(``centroid_x``, ``bbox_bz``, ...). :func:`to_xyz_columns` and :func:`from_xyz_columns` are the
only places that convert between the two.

Column types: ids, sizes, bounding boxes and partner points are int64 (ids must stay below
2**63); centroids, weights and scores are float64; ``status``, ``model`` and ``updated`` are
strings and ``round`` is int64. All coordinates are in voxel units of the volume.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

import numpy as np
import pandas as pd

from napari_avan.core.files import timestamp
from napari_avan.core.geometry import (
    DEFAULT_DILATION_RADIUS_NM,
    DEFAULT_DILATION_SECTIONS,
    BoxSlices,
    LabelStatistics,
    check_label_volume,
    check_same_shape,
    dilated_label_region,
    inplane_structure,
    label_statistics,
    shift_points,
)
from napari_avan.types import PARTNER_COLUMNS, AvanInputError, EdgeStatus, check_voxel_size

#: Axis suffixes of named columns, in the (z, y, x) order of the arrays they come from.
ZYX_SUFFIXES = ("z", "y", "x")

#: Column-name prefixes of the point and box columns (name = prefix + axis suffix).
CENTROID_PREFIX = "centroid_"
BBOX_BEGIN_PREFIX = "bbox_b"
BBOX_END_PREFIX = "bbox_e"
PRESYN_PREFIX = "presyn_"
POSTSYN_PREFIX = "postsyn_"


def xyz_column_names(prefix: str) -> tuple[str, str, str]:
    """Column names ``prefix + "x"``, ``+ "y"``, ``+ "z"`` in table (x, y, z) order."""
    return (f"{prefix}x", f"{prefix}y", f"{prefix}z")


#: Cleft table columns (docs/architecture.md, the cleft table).
CLEFT_COLUMNS: tuple[str, ...] = (
    "cleft_segid",
    "size",
    *xyz_column_names(CENTROID_PREFIX),
    *xyz_column_names(BBOX_BEGIN_PREFIX),
    *xyz_column_names(BBOX_END_PREFIX),
    "score",
)

#: Edge table columns, Synaptor-compatible plus proofreading columns (docs/architecture.md,
#: the edge table).
EDGE_COLUMNS: tuple[str, ...] = (
    "cleft_segid",
    "presyn_segid",
    "postsyn_segid",
    "presyn_wt",
    "postsyn_wt",
    "presyn_sz",
    "postsyn_sz",
    *xyz_column_names(PRESYN_PREFIX),
    *xyz_column_names(POSTSYN_PREFIX),
    *xyz_column_names(CENTROID_PREFIX),
    "size",
    *xyz_column_names(BBOX_BEGIN_PREFIX),
    *xyz_column_names(BBOX_END_PREFIX),
    "status",
    "round",
    "model",
    "updated",
)

#: Edge-table id columns and the partner-table columns they correspond to.
EDGE_TO_PARTNER_COLUMNS = {
    "cleft_segid": "cleft_id",
    "presyn_segid": "pre_id",
    "postsyn_segid": "post_id",
}

#: Per-segment weights accepted by :func:`edge_table` (mean network outputs of one segment
#: as presynaptic and as postsynaptic partner of one cleft).
SEGMENT_WEIGHT_COLUMNS = ("cleft_id", "segment_id", "pre_wt", "post_wt")
#: Per-edge weights accepted by :func:`edge_table`.
EDGE_WEIGHT_COLUMNS = ("cleft_id", "pre_id", "post_id", "presyn_wt", "postsyn_wt")

_INT64_MAX = np.iinfo(np.int64).max
# text columns use pandas' string dtype ("str": StringDtype in pandas 3, object before)
_STRING_COLUMNS = {"status": "str", "model": "str", "updated": "str"}


def to_xyz_columns(prefix: str, zyx: np.ndarray) -> dict[str, np.ndarray]:
    """Split (N, 3) (z, y, x) points into named columns ``{prefix}x, {prefix}y, {prefix}z``.

    Args:
        prefix: column prefix, e.g. ``"centroid_"`` or ``"bbox_b"``.
        zyx: (N, 3) array of (z, y, x) points (or one point of shape (3,)).

    Returns:
        An ordered dict x, y, z of (N,) arrays, ready for a DataFrame.
    """
    pts = np.asarray(zyx)
    if pts.ndim == 1:
        pts = pts[None]
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise AvanInputError(f"points for {prefix!r} must be (N, 3) (z, y, x), got {pts.shape}")
    by_axis = {axis: pts[:, i] for i, axis in enumerate(ZYX_SUFFIXES)}
    return {f"{prefix}{axis}": by_axis[axis] for axis in ("x", "y", "z")}


def from_xyz_columns(table: pd.DataFrame, prefix: str) -> np.ndarray:
    """Gather columns ``{prefix}z, {prefix}y, {prefix}x`` into an (N, 3) (z, y, x) array.

    Raises:
        AvanInputError: naming the missing columns.
    """
    names = [f"{prefix}{axis}" for axis in ZYX_SUFFIXES]
    missing = [n for n in names if n not in table.columns]
    if missing:
        raise AvanInputError(f"table has no column(s) {', '.join(missing)}")
    return np.stack([table[n].to_numpy() for n in names], axis=1).reshape(len(table), 3)


# --- partner tables ---------------------------------------------------------------------------


def _id_column(values: pd.Series, name: str, allow_zero: bool = False) -> np.ndarray:
    """Validate one id column and return it as int64."""
    try:
        arr = np.asarray(values.to_numpy())
        if arr.dtype.kind == "f":
            if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
                raise ValueError
        elif arr.dtype.kind not in "iu":
            arr = pd.to_numeric(values, errors="raise").to_numpy()
            if arr.dtype.kind not in "iu":
                raise ValueError
    except (ValueError, TypeError) as err:
        raise AvanInputError(f"column {name!r} must hold whole-number ids") from err
    if arr.size and (arr.min() < 0 or (not allow_zero and arr.min() == 0)):
        raise AvanInputError(
            f"column {name!r} holds id {int(arr.min())}: ids must be positive (0 is background)"
        )
    if arr.size and arr.dtype.kind in "uf" and arr.max() > _INT64_MAX:
        raise AvanInputError(f"column {name!r} holds ids above 2**63 - 1; tables store int64")
    return arr.astype(np.int64)


def check_partner_table(partners: pd.DataFrame) -> pd.DataFrame:
    """Validate a partner table and return a clean copy.

    Args:
        partners: columns ``cleft_id, pre_id, post_id`` (others are dropped), one row per
            pre -> post pair.

    Returns:
        A new DataFrame with exactly those three int64 columns and a fresh index.

    Raises:
        AvanInputError: when a column is missing or holds ids that are not positive integers.
    """
    if not isinstance(partners, pd.DataFrame):
        raise AvanInputError(f"partner table must be a DataFrame, got {type(partners).__name__}")
    missing = [c for c in PARTNER_COLUMNS if c not in partners.columns]
    if missing:
        raise AvanInputError(
            f"partner table lacks column(s) {', '.join(missing)}: "
            f"expected {','.join(PARTNER_COLUMNS)} (found {', '.join(map(str, partners.columns))})"
        )
    return pd.DataFrame({c: _id_column(partners[c], c) for c in PARTNER_COLUMNS})


def partners_from_edges(
    edges: pd.DataFrame,
    exclude_status: Iterable[str | EdgeStatus] = (EdgeStatus.REJECTED,),
) -> pd.DataFrame:
    """Partner table (``cleft_id, pre_id, post_id``) from an edge table.

    Args:
        edges: an edge table (at least ``cleft_segid, presyn_segid, postsyn_segid``).
        exclude_status: rows whose ``status`` is one of these are dropped (by default the
            rejected edges, which are not synapses); ignored when there is no status column.

    Returns:
        The partner table, rows in edge-table order.
    """
    missing = [c for c in EDGE_TO_PARTNER_COLUMNS if c not in edges.columns]
    if missing:
        raise AvanInputError(f"edge table lacks column(s) {', '.join(missing)}")
    rows = edges
    excluded = {EdgeStatus(s).value for s in exclude_status}
    if excluded and "status" in edges.columns:
        rows = edges[~edges["status"].astype(str).isin(excluded)]
    return check_partner_table(rows.rename(columns=EDGE_TO_PARTNER_COLUMNS))


def as_partner_table(table: pd.DataFrame) -> pd.DataFrame:
    """A partner table from either a partner table or an edge table (see partners_from_edges)."""
    if isinstance(table, pd.DataFrame) and all(c in table.columns for c in PARTNER_COLUMNS):
        return check_partner_table(table)
    if isinstance(table, pd.DataFrame) and all(c in table.columns for c in EDGE_TO_PARTNER_COLUMNS):
        return partners_from_edges(table)
    return check_partner_table(table)


# --- cleft table ------------------------------------------------------------------------------


def cleft_frame(stats: LabelStatistics) -> pd.DataFrame:
    """The cleft table (:data:`CLEFT_COLUMNS`) of per-cleft statistics."""
    if stats.ids.size and int(stats.ids.max()) > _INT64_MAX:
        raise AvanInputError("cleft ids above 2**63 - 1 do not fit the int64 table columns")
    data: dict[str, np.ndarray] = {
        "cleft_segid": stats.ids.astype(np.int64),
        "size": stats.size,
        **to_xyz_columns(CENTROID_PREFIX, stats.centroid),
        **to_xyz_columns(BBOX_BEGIN_PREFIX, stats.bbox_begin),
        **to_xyz_columns(BBOX_END_PREFIX, stats.bbox_end),
        "score": stats.value_mean,
    }
    return pd.DataFrame(data, columns=list(CLEFT_COLUMNS))


def cleft_table(clefts: np.ndarray, prob: np.ndarray | None = None) -> pd.DataFrame:
    """One row per cleft: size, centroid, bounding box and mean probability.

    Args:
        clefts: (z, y, x) cleft labels, 0 = background.
        prob: optional (z, y, x) cleft probability; ``score`` is its mean over each cleft,
            NaN without it.

    Returns:
        Columns :data:`CLEFT_COLUMNS`, rows by increasing ``cleft_segid``. ``size`` is in
        voxels, ``centroid_*`` is the mean voxel coordinate, ``bbox_b*`` is inclusive and
        ``bbox_e*`` exclusive, all in voxel units. No clefts -> an empty table with the
        columns.
    """
    clefts = check_label_volume(clefts, "clefts")
    return cleft_frame(label_statistics(clefts, prob))


# --- edge table -------------------------------------------------------------------------------


def merged_cleft_table(
    before: pd.DataFrame | None,
    labels: np.ndarray,
    prob: np.ndarray | None,
    box: BoxSlices,
    replaced_ids: np.ndarray,
    new_rows: pd.DataFrame,
) -> pd.DataFrame:
    """The cleft table of a clefts layer after a run rewrote ``box`` of it.

    Args:
        before: the layer's table before the run; None when it had none (every cleft
            is then measured again).
        labels: the layer's labels after the run.
        prob: the probability layer after the run (each cleft's ``score``), or None.
        box: the region the run replaced.
        replaced_ids: the cleft ids that region held before the run.
        new_rows: the run's own clefts, in volume coordinates and layer ids.

    Returns:
        One row per cleft in ``labels``, by increasing id: the rows of ``before`` for the
        clefts the run left alone, ``new_rows``, and rows measured again for the clefts
        the box cut (their voxels outside it stay in the layer); clefts wholly inside the
        box are gone.
    """
    if before is None:
        return cleft_table(np.asarray(labels), None if prob is None else np.asarray(prob))
    ids = before["cleft_segid"].to_numpy()
    hit = np.isin(ids, replaced_ids)
    inside = np.ones(len(before), bool)
    for axis, s in zip("zyx", box, strict=True):
        inside &= (before[f"bbox_b{axis}"].to_numpy() >= s.start) & (
            before[f"bbox_e{axis}"].to_numpy() <= s.stop
        )
    cut = before[hit & ~inside]
    unknown = np.setdiff1d(replaced_ids, ids)  # in the layer but not in its table
    frames = [before[~hit], new_rows]
    redo = np.union1d(cut["cleft_segid"].to_numpy(), unknown)
    if redo.size:
        if unknown.size:
            crop = tuple(slice(0, int(n)) for n in labels.shape)
        else:
            crop = tuple(
                slice(int(cut[f"bbox_b{a}"].min()), int(cut[f"bbox_e{a}"].max())) for a in "zyx"
            )
        part = np.asarray(labels[crop])
        part = np.where(np.isin(part, redo), part, 0).astype(part.dtype)
        values = None if prob is None else np.asarray(prob[crop])
        frames.append(shift_points(cleft_table(part, values), [s.start for s in crop]))
    frames = [f for f in frames if len(f)]
    if not frames:
        return new_rows.iloc[0:0].reset_index(drop=True)
    merged = pd.concat(frames, ignore_index=True)
    return merged.sort_values("cleft_segid", kind="stable").reset_index(drop=True)


def _weights_lookup(
    weights: pd.DataFrame | None, partners: pd.DataFrame
) -> tuple[np.ndarray, np.ndarray]:
    """presyn_wt, postsyn_wt for every partner row (NaN where ``weights`` says nothing)."""
    n = len(partners)
    if weights is None:
        return np.full(n, np.nan), np.full(n, np.nan)
    if all(c in weights.columns for c in SEGMENT_WEIGHT_COLUMNS):
        seg = pd.DataFrame(
            {
                "cleft_id": _id_column(weights["cleft_id"], "cleft_id"),
                "segment_id": _id_column(weights["segment_id"], "segment_id"),
                "pre_wt": weights["pre_wt"].to_numpy(np.float64),
                "post_wt": weights["post_wt"].to_numpy(np.float64),
            }
        ).drop_duplicates(["cleft_id", "segment_id"], keep="last")
        index = pd.MultiIndex.from_frame(seg[["cleft_id", "segment_id"]])
        pre_key = pd.MultiIndex.from_arrays([partners["cleft_id"], partners["pre_id"]])
        post_key = pd.MultiIndex.from_arrays([partners["cleft_id"], partners["post_id"]])
        pre_wt = pd.Series(seg["pre_wt"].to_numpy(), index=index).reindex(pre_key).to_numpy()
        post_wt = pd.Series(seg["post_wt"].to_numpy(), index=index).reindex(post_key).to_numpy()
        return pre_wt.astype(np.float64), post_wt.astype(np.float64)
    if all(c in weights.columns for c in EDGE_WEIGHT_COLUMNS):
        ids = check_partner_table(weights)
        edge = pd.DataFrame(
            {
                **{c: ids[c].to_numpy() for c in PARTNER_COLUMNS},
                "presyn_wt": weights["presyn_wt"].to_numpy(np.float64),
                "postsyn_wt": weights["postsyn_wt"].to_numpy(np.float64),
            }
        ).drop_duplicates(list(PARTNER_COLUMNS), keep="last")
        merged = partners.merge(edge, on=list(PARTNER_COLUMNS), how="left", sort=False)
        return (
            merged["presyn_wt"].to_numpy(np.float64),
            merged["postsyn_wt"].to_numpy(np.float64),
        )
    raise AvanInputError(
        "weights table needs columns "
        f"{','.join(SEGMENT_WEIGHT_COLUMNS)} (per segment) or "
        f"{','.join(EDGE_WEIGHT_COLUMNS)} (per edge); found {', '.join(map(str, weights.columns))}"
    )


def _nearest_voxels(
    zyx: np.ndarray, segs: np.ndarray, centre_nm: np.ndarray, voxel_size: np.ndarray
) -> dict[int, tuple[np.ndarray, int]]:
    """For each segment id in ``segs``: its voxel nearest to ``centre_nm`` and its count.

    ``zyx`` (N, 3) must be in increasing linear-index order so that, among equally near
    voxels, the first one (the lowest linear index) wins.
    """
    if segs.size == 0:
        return {}
    d2 = (((zyx * voxel_size) - centre_nm) ** 2).sum(axis=1)
    # sorted by segment, then distance, then position (the lexsort is stable on position)
    order = np.lexsort((d2, segs))
    sorted_segs = segs[order]
    first = np.concatenate(([0], np.flatnonzero(sorted_segs[1:] != sorted_segs[:-1]) + 1))
    counts = np.diff(np.append(first, sorted_segs.size))
    return {
        int(sorted_segs[f]): (zyx[order[f]], int(c)) for f, c in zip(first, counts, strict=True)
    }


def _nearest_anywhere(
    segmentation: Any,
    centres: dict[tuple[int, str], list[np.ndarray]],
    voxel_size: np.ndarray,
) -> dict[tuple[int, str], list[np.ndarray] | None]:
    """For each (segment, side) and each of its centres (nm): the segment's voxel nearest
    the centre anywhere in the volume, the lowest linear (z, y, x) index among equals; None
    for a segment with no voxel. Read region by region (never whole, for a lazy volume)."""
    from napari_avan.core.session.store import chunk_shape, scan_boxes

    if not centres:
        return {}
    shape = tuple(int(n) for n in segmentation.shape)
    big = (np.inf, np.iinfo(np.int64).max)
    best: dict[tuple[int, str], list[tuple[float, int, np.ndarray | None]]] = {
        key: [(*big, None)] * len(points) for key, points in centres.items()
    }
    seg_ids = np.unique([seg_id for seg_id, _ in centres]).astype(np.int64)
    for box in scan_boxes(shape, chunk_shape(segmentation)):
        block = np.asarray(segmentation[box])
        hit = np.isin(block, seg_ids)
        if not hit.any():
            continue
        corner = np.array([s.start for s in box], dtype=np.int64)
        local = np.argwhere(hit)  # C order: increasing linear index within the box
        labels = block[hit].astype(np.int64)
        anywhere = local.astype(np.int64) + corner
        linear = np.ravel_multi_index(tuple(anywhere.T), shape)
        for key, points in centres.items():
            mine = labels == key[0]
            if not mine.any():
                continue
            candidates, lin = anywhere[mine], linear[mine]
            for k, centre in enumerate(points):
                d2 = (((candidates * voxel_size) - centre) ** 2).sum(axis=1)
                j = int(np.argmin(d2))  # the first among equals: the lowest index here
                if (float(d2[j]), int(lin[j])) < best[key][k][:2]:
                    best[key][k] = (float(d2[j]), int(lin[j]), candidates[j])
    return {
        key: None if rows[0][2] is None else [p for _, _, p in rows if p is not None]
        for key, rows in best.items()
    }


def edge_table(
    clefts: np.ndarray,
    segmentation: np.ndarray,
    partners: pd.DataFrame,
    *,
    voxel_size_nm: Iterable[float],
    weights: pd.DataFrame | None = None,
    status: str | EdgeStatus = EdgeStatus.PREDICTED,
    round: int = 0,
    model: str = "",
    updated: str | None = None,
    radius_nm: float = DEFAULT_DILATION_RADIUS_NM,
    n_sections: int = DEFAULT_DILATION_SECTIONS,
    statistics: LabelStatistics | None = None,
) -> pd.DataFrame:
    """The edge table (docs/architecture.md): one row per row of ``partners``, in that order.

    For each cleft the candidate region is the cleft dilated in-plane by ``radius_nm`` on
    ``n_sections`` sections (the region AVAN assignment takes its candidates from).
    ``presyn_sz`` / ``postsyn_sz`` count the partner's voxels in that region. The partner
    point (``presyn_*`` / ``postsyn_*``) is the partner's voxel in the region closest (in nm)
    to the cleft centroid, ties broken by the lowest linear (z, y, x) index; a partner with no
    voxel in the region gets size 0 and its voxel closest to the centroid anywhere in the
    volume.

    Args:
        clefts: (z, y, x) cleft labels.
        segmentation: (z, y, x) segment labels, same shape.
        partners: partner table ``cleft_id, pre_id, post_id`` (or an edge table).
        voxel_size_nm: (z, y, x) voxel size in nm, for distances and the dilation.
        weights: network outputs, either per segment (``cleft_id, segment_id, pre_wt,
            post_wt``: presyn_wt = pre_wt of the pre segment, postsyn_wt = post_wt of the
            post segment) or per edge (``cleft_id, pre_id, post_id, presyn_wt,
            postsyn_wt``). Without weights (e.g. ground truth) both columns are NaN, as they
            are for edges the table does not cover.
        status: proofreading status of every row.
        round: proofreading round of every row.
        model: name of the model that produced the edges ('' for ground truth).
        updated: ISO timestamp written in ``updated``; default now (UTC, seconds).
        radius_nm: in-plane radius of the candidate region.
        n_sections: sections spanned by the candidate region (odd).
        statistics: the clefts' :func:`label_statistics` when known; the volumes are then
            only sliced around the clefts (they may be lazy arrays), but for a partner
            with no voxel near its cleft, which is searched for in the whole segmentation.

    Returns:
        A DataFrame with columns :data:`EDGE_COLUMNS`; cleft columns (``centroid_*``,
        ``size``, ``bbox_*``) are those of :func:`cleft_table`.

    Raises:
        AvanInputError: when shapes differ, a cleft id of ``partners`` has no voxel in
            ``clefts``, or a partner id has no voxel in ``segmentation``.
    """
    if statistics is None:
        clefts = check_label_volume(clefts, "clefts")
        segmentation = check_label_volume(segmentation, "segmentation")
    check_same_shape(clefts=clefts, segmentation=segmentation)
    voxel_size = np.asarray(check_voxel_size(voxel_size_nm), dtype=np.float64)
    try:
        status_value = EdgeStatus(status).value
    except ValueError as err:
        choices = "|".join(s.value for s in EdgeStatus)
        raise AvanInputError(f"edge status {status!r} is not one of {choices}") from err
    stamp = updated if updated is not None else timestamp()
    table = as_partner_table(partners)
    structure = inplane_structure(radius_nm, voxel_size, n_sections)

    stats = label_statistics(clefts) if statistics is None else statistics
    cleft_rows = cleft_frame(stats).set_index("cleft_segid", drop=False)
    wanted = np.unique(table["cleft_id"].to_numpy())
    absent = np.setdiff1d(wanted, cleft_rows.index.to_numpy())
    if absent.size:
        raise AvanInputError(
            f"partner table names {absent.size} cleft id(s) with no voxel in the cleft volume: "
            f"{_id_list(absent)}"
        )

    n = len(table)
    points = {"pre": np.zeros((n, 3), np.int64), "post": np.zeros((n, 3), np.int64)}
    sizes = {"pre": np.zeros(n, np.int64), "post": np.zeros(n, np.int64)}
    outside: dict[tuple[int, str], list[int]] = {}  # (segment, side) -> rows, filled later
    where = {int(cid): i for i, cid in enumerate(stats.ids.astype(np.int64))}
    for cleft_id, rows in table.groupby("cleft_id", sort=True).indices.items():
        i = where[int(cast(int, cleft_id))]
        slices, region = dilated_label_region(
            clefts, stats.ids[i], stats.bbox_begin[i], stats.bbox_end[i], structure
        )
        offset = np.array([s.start for s in slices], dtype=np.int64)
        local = np.nonzero(region)  # C order: increasing linear index
        segs = segmentation[slices][local].astype(np.int64)
        zyx = np.stack(local, axis=1).astype(np.int64) + offset
        centre_nm = stats.centroid[i] * voxel_size
        nearest = _nearest_voxels(zyx, segs, centre_nm, voxel_size)
        for side, column in (("pre", "pre_id"), ("post", "post_id")):
            ids = table[column].to_numpy(np.int64)
            for row in rows:
                seg_id = int(ids[row])
                if seg_id in nearest:
                    points[side][row], sizes[side][row] = nearest[seg_id]
                else:
                    outside.setdefault((seg_id, side), []).append(row)

    cleft_ids = table["cleft_id"].to_numpy(np.int64)
    centres = {
        key: [stats.centroid[where[int(cleft_ids[row])]] * voxel_size for row in rows_out]
        for key, rows_out in outside.items()
    }
    # rare slow path: the whole segmentation, region by region
    found = _nearest_anywhere(segmentation, centres, voxel_size)
    missing_segments = [seg_id for (seg_id, _), best in found.items() if best is None]
    for key, rows_out in outside.items():
        best = found[key]
        if best is not None:
            for row, point in zip(rows_out, best, strict=True):
                points[key[1]][row] = point
    if missing_segments:
        raise AvanInputError(
            f"partner table names {len(set(missing_segments))} segment id(s) with no voxel in "
            f"the segmentation: {_id_list(np.unique(missing_segments))}"
        )

    presyn_wt, postsyn_wt = _weights_lookup(weights, table)
    cleft_of_row = cleft_rows.loc[table["cleft_id"].to_numpy()]
    data: dict[str, object] = {
        "cleft_segid": table["cleft_id"].to_numpy(),
        "presyn_segid": table["pre_id"].to_numpy(),
        "postsyn_segid": table["post_id"].to_numpy(),
        "presyn_wt": presyn_wt,
        "postsyn_wt": postsyn_wt,
        "presyn_sz": sizes["pre"],
        "postsyn_sz": sizes["post"],
        **to_xyz_columns(PRESYN_PREFIX, points["pre"]),
        **to_xyz_columns(POSTSYN_PREFIX, points["post"]),
    }
    for column in CLEFT_COLUMNS:
        if column not in ("cleft_segid", "score"):
            data[column] = cleft_of_row[column].to_numpy()
    data["status"] = np.full(n, status_value, dtype=object)
    data["round"] = np.full(n, int(round), dtype=np.int64)
    data["model"] = np.full(n, str(model), dtype=object)
    data["updated"] = np.full(n, str(stamp), dtype=object)
    return pd.DataFrame(data, columns=list(EDGE_COLUMNS)).astype(_STRING_COLUMNS)


def _id_list(ids: np.ndarray, limit: int = 10) -> str:
    shown = ", ".join(str(int(i)) for i in ids[:limit])
    return shown + (f", ... ({len(ids) - limit} more)" if len(ids) > limit else "")


def empty_edge_table() -> pd.DataFrame:
    """An edge table with no rows and the column types of :func:`edge_table`."""
    floats = {"presyn_wt", "postsyn_wt", *xyz_column_names(CENTROID_PREFIX)}
    columns = {
        c: pd.Series(dtype=_STRING_COLUMNS.get(c, "float64" if c in floats else "int64"))
        for c in EDGE_COLUMNS
    }
    return pd.DataFrame(columns)
