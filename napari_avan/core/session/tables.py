"""What a session exports: the corrected cleft labels and the edge table with status."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from napari_avan.core.session.decisions import CleftRecord
from napari_avan.types import EdgeStatus

if TYPE_CHECKING:
    import pandas as pd

    from napari_avan.core.session.session import Session


def edge_status(record: CleftRecord) -> str:
    """The edge table's ``status`` of a cleft's edges (docs/architecture.md, the edge table):
    rejected and accepted as decided; a pending cleft is ``added`` when the proofreader
    made it, else ``predicted``."""
    if record.status in ("accepted", "rejected"):
        return EdgeStatus(record.status).value
    return (EdgeStatus.ADDED if record.origin == "added" else EdgeStatus.PREDICTED).value


def corrected_labels(session: Session) -> np.ndarray:
    """The session's cleft labels without its rejected clefts (deleted ones are gone)."""
    labels = np.array(session.labels)
    rejected = [c for c, r in session.records.items() if r.status == "rejected"]
    if rejected:
        labels[np.isin(labels, np.asarray(rejected, dtype=labels.dtype))] = 0
    return labels


def session_edges(session: Session, segmentation: np.ndarray) -> pd.DataFrame:
    """The edge table of every cleft with partners, ``status`` and ``round`` per cleft.

    Rejected clefts keep their rows (status ``rejected``), so the table says what was
    decided; their voxels are taken from the session's labels.
    """
    from napari_avan.core.tables import edge_table, empty_edge_table

    partners = session.partner_table()
    if partners.empty:
        return empty_edge_table()
    models = session.meta.get("models", {})
    table = edge_table(
        np.asarray(session.labels),
        np.asarray(segmentation),
        partners[["cleft_id", "pre_id", "post_id"]],
        voxel_size_nm=session.voxel_size_nm,
        model=str(models.get("avan", "")),
    )
    records = [session.records[int(c)] for c in table["cleft_segid"]]
    table["status"] = [edge_status(r) for r in records]
    table["round"] = np.asarray([r.round for r in records], dtype=np.int64)
    return table
