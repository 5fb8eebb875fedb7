"""Scripting a proofreading session: create it, apply decisions, undo, reopen.

A session folder records every decision in a journal on disk before ``apply`` returns,
so a script (or napari, or ``napari-avan session apply``) can stop at any moment and
reopen where it was. Runs on a small synthetic volume:

    python examples/script_session.py [--out session_demo]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import numpy as np

from napari_avan.core.session import Session, records_from_partners
from napari_avan.core.synth import synthesize


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="session folder to keep (default: a temporary one)")
    args = parser.parse_args()
    folder = Path(args.out) if args.out else Path(tempfile.mkdtemp()) / "session"
    if folder.exists():
        shutil.rmtree(folder)

    sample = synthesize(seed=3, shape=(16, 128, 128), polyadic=True)
    session = Session.create(
        folder,
        sample.clefts,
        sample.voxel_size_nm,
        records=records_from_partners(sample.partners),  # known partners
    )
    session.connect(lambda event: print(f"  event: {event.action} on clefts {event.clefts}"))
    first, second = session.review_queue(order="position")[:2]
    print(f"{len(session.records)} clefts to review, first {first} then {second}")

    session.apply({"action": "accept", "cleft": first})
    session.apply({"action": "reject", "cleft": second})
    session.apply({"action": "note", "cleft": first, "text": "clear T-bar"})
    session.undo()  # the note goes; accept and reject stay
    z, y, x = (int(v) for v in np.argwhere(session.labels == 0)[0])
    session.apply({"action": "reseed", "voxels": [[z, y, x], [z, y, x + 1]]})  # a missed one

    reopened = Session.open(folder)  # what a crash, or tomorrow, would find
    print("status after reopening:", reopened.status())
    assert reopened.status() == session.status()
    assert np.array_equal(reopened.labels, session.labels)
    print(f"journal: {folder / 'journal.jsonl'} ({len(reopened.entries)} lines)")


if __name__ == "__main__":
    main()
