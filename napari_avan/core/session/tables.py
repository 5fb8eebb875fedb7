"""What a session exports: the corrected cleft labels and the edge table with status.

A session whose labels are kept on disk (:attr:`Session.in_memory` false) is exported
without holding a whole volume: :class:`CorrectedLabels` reads its corrected labels region
by region, and :func:`session_edges` takes the clefts' statistics region by region and
reads only boxes around each cleft.
"""

from __future__ import annotations

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
    whole volume: the clefts' statistics come region by region (their centroids summed
    exactly as the whole-volume statistics sum them), and ``edge_table`` then reads around
    each cleft (and, for a partner with no voxel near its cleft, the segmentation region by
    region)."""
    from napari_avan.core.geometry import check_same_shape
    from napari_avan.core.session.store import chunked_statistics
    from napari_avan.core.tables import edge_table

    labels = session.labels
    check_same_shape(clefts=labels, segmentation=segmentation)
    wanted = np.unique(partners["cleft_id"].to_numpy(np.int64))
    stats = chunked_statistics(labels)
    keep = np.isin(stats.ids.astype(np.int64), wanted)
    stats = _exact_centroids(labels, type(stats)(*(field[keep] for field in stats)))
    return edge_table(
        labels, cast(Any, segmentation), partners.reset_index(drop=True),
        voxel_size_nm=session.voxel_size_nm, model=model, statistics=stats,
    )  # fmt: skip


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
