"""What a session exports: the corrected cleft labels and the edge table with status.

A session whose labels are kept on disk (:attr:`Session.in_memory` false) is exported
without holding a whole volume: :class:`CorrectedLabels` reads its corrected labels region
by region, and :func:`session_edges` takes the clefts' statistics region by region and
reads only boxes around each cleft.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from napari_avan.core.session.decisions import CleftRecord
from napari_avan.core.session.store import RegionReader
from napari_avan.types import EdgeStatus

if TYPE_CHECKING:
    import pandas as pd

    from napari_avan.core.geometry import LabelStatistics
    from napari_avan.core.session.session import Session


def edge_status(record: CleftRecord) -> str:
    """The edge table's ``status`` of a cleft's edges (docs/architecture.md, the edge table):
    rejected and accepted as decided; a pending cleft is ``added`` when the proofreader
    made it, else ``predicted``."""
    if record.status in ("accepted", "rejected"):
        return EdgeStatus(record.status).value
    return (EdgeStatus.ADDED if record.origin == "added" else EdgeStatus.PREDICTED).value


def _rejected(session: Session, dtype: Any) -> np.ndarray:
    return np.asarray(
        [c for c, r in session.records.items() if r.status == "rejected"], dtype=dtype
    )


def corrected_labels(session: Session) -> np.ndarray:
    """The session's cleft labels without its rejected clefts (deleted ones are gone), as
    one numpy array (the whole volume: for labels kept on disk see
    :class:`CorrectedLabels`)."""
    labels = np.array(session.labels)
    rejected = [c for c, r in session.records.items() if r.status == "rejected"]
    if rejected:
        labels[np.isin(labels, np.asarray(rejected, dtype=labels.dtype))] = 0
    return labels


class CorrectedLabels:
    """:func:`corrected_labels` as an array-like read by boxes (``corrected[box]`` is the
    numpy region of the session's labels, rejected clefts zeroed): the volume is never held
    whole. It reflects the session's decisions as they are when it is made."""

    def __init__(self, session: Session) -> None:
        self._labels = session.labels
        self.shape = tuple(int(n) for n in self._labels.shape)
        self.dtype = np.dtype(self._labels.dtype)
        self.ndim = len(self.shape)
        self.rejected = _rejected(session, self.dtype)

    def __getitem__(self, key: Any) -> np.ndarray:
        region = np.asarray(self._labels[key])
        if self.rejected.size:
            region = np.where(np.isin(region, self.rejected), self.dtype.type(0), region)
        return region


def session_edges(session: Session, segmentation: Any) -> pd.DataFrame:
    """The edge table of every cleft with partners, ``status`` and ``round`` per cleft.

    Rejected clefts keep their rows (status ``rejected``), so the table says what was
    decided; their voxels are taken from the session's labels. For labels kept on disk
    the volumes are read by boxes (``segmentation`` may be lazy, dask or zarr): the table
    is the one the labels in memory give.
    """
    from napari_avan.core.tables import edge_table, empty_edge_table

    partners = session.partner_table()
    if partners.empty:
        return empty_edge_table()
    models = session.meta.get("models", {})
    if session.in_memory:
        table = edge_table(
            np.asarray(session.labels),
            np.asarray(segmentation),
            partners[["cleft_id", "pre_id", "post_id"]],
            voxel_size_nm=session.voxel_size_nm,
            model=str(models.get("avan", "")),
        )
    else:
        table = _edges_by_boxes(
            session, RegionReader(segmentation), partners[["cleft_id", "pre_id", "post_id"]],
            model=str(models.get("avan", "")),
        )  # fmt: skip
    records = [session.records[int(c)] for c in table["cleft_segid"]]
    table["status"] = [edge_status(r) for r in records]
    table["round"] = np.asarray([r.round for r in records], dtype=np.int64)
    return table


def _edges_by_boxes(
    session: Session, segmentation: RegionReader, partners: pd.DataFrame, *, model: str
) -> pd.DataFrame:
    """:func:`~napari_avan.core.tables.edge_table` of labels kept on disk, never reading a
    whole volume.

    The clefts' statistics come region by region, their centroids summed exactly as the
    whole-volume statistics sum them. ``edge_table`` searches the whole segmentation for a
    partner with no voxel in its cleft's candidate region: such a partner is found here by
    a region by region search instead (its voxel nearest the cleft centroid, the lowest
    linear index among equals; size 0), ``edge_table`` being given a partner of the region
    in its place and its row corrected after.
    """
    from napari_avan.core.geometry import (
        DEFAULT_DILATION_RADIUS_NM,
        DEFAULT_DILATION_SECTIONS,
        check_same_shape,
        dilated_label_region,
        inplane_structure,
    )
    from napari_avan.core.session.store import chunked_statistics
    from napari_avan.core.tables import POSTSYN_PREFIX, PRESYN_PREFIX, edge_table
    from napari_avan.core.tables import xyz_column_names as xyz
    from napari_avan.types import AvanInputError

    labels = session.labels
    check_same_shape(clefts=labels, segmentation=segmentation)
    voxel = np.asarray(session.voxel_size_nm, dtype=np.float64)
    wanted = np.unique(partners["cleft_id"].to_numpy(np.int64))
    stats = chunked_statistics(labels)
    keep = np.isin(stats.ids.astype(np.int64), wanted)
    stats = _exact_centroids(labels, type(stats)(*(field[keep] for field in stats)))
    where = {int(c): i for i, c in enumerate(stats.ids.astype(np.int64))}

    # the segments in each cleft's candidate region, as edge_table takes them
    structure = inplane_structure(DEFAULT_DILATION_RADIUS_NM, voxel, DEFAULT_DILATION_SECTIONS)
    present: dict[int, np.ndarray] = {}
    for cleft, i in where.items():
        slices, region = dilated_label_region(
            labels, stats.ids[i], stats.bbox_begin[i], stats.bbox_end[i], structure
        )
        present[cleft] = np.unique(segmentation[slices][region].astype(np.int64))
    table = partners.reset_index(drop=True).copy()
    clefts = table["cleft_id"].to_numpy(np.int64)
    outside: dict[tuple[int, str], list[int]] = {}
    for side, column in (("pre", "pre_id"), ("post", "post_id")):
        ids = table[column].to_numpy(np.int64).copy()
        for row, (cleft, seg_id) in enumerate(zip(clefts, ids.tolist(), strict=True)):
            found = present.get(int(cleft))
            if found is None or np.isin(seg_id, found):
                continue  # an unknown cleft: edge_table says so
            outside.setdefault((seg_id, side), []).append(row)
            ids[row] = found[0]
        table[column] = ids
    edges = edge_table(
        labels, cast(Any, segmentation), table, voxel_size_nm=session.voxel_size_nm, model=model,
        statistics=stats,
    )  # fmt: skip
    if not outside:
        return edges

    centres = {
        key: [stats.centroid[where[int(clefts[row])]] * voxel for row in rows]
        for key, rows in outside.items()
    }
    nearest = _nearest_anywhere(segmentation, centres, voxel, labels.chunks)
    missing = sorted({seg_id for (seg_id, _), points in nearest.items() if points is None})
    if missing:
        shown = ", ".join(str(i) for i in missing[:10])
        more = f", ... ({len(missing) - 10} more)" if len(missing) > 10 else ""
        raise AvanInputError(
            f"partner table names {len(missing)} segment id(s) with no voxel in "
            f"the segmentation: {shown}{more}"
        )
    for (seg_id, side), rows in outside.items():
        prefix = PRESYN_PREFIX if side == "pre" else POSTSYN_PREFIX
        columns = {name: edges[name].to_numpy().copy() for name in (
            f"{prefix}segid", f"{prefix}sz", *xyz(prefix))}  # fmt: skip
        points = nearest[(seg_id, side)]
        assert points is not None
        for row, point in zip(rows, points, strict=True):
            columns[f"{prefix}segid"][row] = seg_id
            columns[f"{prefix}sz"][row] = 0
            for axis, name in zip((2, 1, 0), xyz(prefix), strict=True):  # x, y, z
                columns[name][row] = point[axis]
        for name, values in columns.items():
            edges[name] = values
    return edges


def _exact_centroids(labels: Any, stats: LabelStatistics) -> LabelStatistics:
    """``stats`` with each centroid the sum of its voxels' coordinates over their count,
    summed as integers in the cleft's box: what the whole-volume statistics give, bit for
    bit (statistics added region by region may differ in the last bits)."""
    centroid = stats.centroid.copy()
    for i, cleft in enumerate(stats.ids):
        begin, end = stats.bbox_begin[i], stats.bbox_end[i]
        box = tuple(slice(int(b), int(e)) for b, e in zip(begin, end, strict=True))
        local = np.nonzero(np.asarray(labels[box]) == cleft)
        sums = [
            int(c.astype(np.int64).sum()) + int(b) * c.size
            for c, b in zip(local, begin, strict=True)
        ]
        centroid[i] = np.asarray(sums, dtype=np.int64) / np.int64(stats.size[i])
    return stats._replace(centroid=centroid)


def _nearest_anywhere(
    segmentation: RegionReader,
    centres: dict[tuple[int, str], list[np.ndarray]],
    voxel: np.ndarray,
    fallback_chunks: Sequence[int],
) -> dict[tuple[int, str], list[np.ndarray] | None]:
    """For each (segment, side) and each centre (nm): the segment's voxel nearest the
    centre anywhere in the volume, the lowest linear index among equals; None for a
    segment with no voxel. The segmentation is searched region by region."""
    from napari_avan.core.session.store import scan_boxes

    shape = segmentation.shape
    best: dict[tuple[int, str], list[tuple[float, int, np.ndarray | None]]] = {
        key: [(np.inf, -1, None)] * len(points) for key, points in centres.items()
    }
    seg_ids = sorted({seg_id for seg_id, _ in centres})
    for box in scan_boxes(shape, segmentation.chunks or fallback_chunks):
        block = segmentation[box]
        corner = np.array([s.start for s in box], dtype=np.int64)
        for seg_id in seg_ids:
            local = np.argwhere(block == seg_id)
            if not local.size:
                continue
            anywhere = local.astype(np.int64) + corner
            linear = np.ravel_multi_index(tuple(anywhere.T), shape)
            for key, points in centres.items():
                if key[0] != seg_id:
                    continue
                for k, centre in enumerate(points):
                    d2 = (((anywhere * voxel) - centre) ** 2).sum(axis=1)
                    j = int(np.argmin(d2))
                    candidate = (float(d2[j]), int(linear[j]), anywhere[j])
                    if candidate[:2] < best[key][k][:2]:
                        best[key][k] = candidate
    return {
        key: None
        if any(p is None for _, _, p in rows)
        else [p for _, _, p in rows if p is not None]
        for key, rows in best.items()
    }
