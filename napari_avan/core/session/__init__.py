"""The proofreading session: decisions, their journal, undo and redo (Qt-free).

Widgets, the command line and scripts all work through :class:`Session`.
"""

from napari_avan.core.session.decisions import (
    ACTIONS,
    CleftRecord,
    Effect,
    LabelDelta,
    assign_decision,
    check_decision,
    record_from_assignment,
    records_from_partners,
)
from napari_avan.core.session.session import Session, SessionEvent

__all__ = [
    "ACTIONS",
    "CleftRecord",
    "Effect",
    "LabelDelta",
    "Session",
    "SessionEvent",
    "assign_decision",
    "check_decision",
    "record_from_assignment",
    "records_from_partners",
]
