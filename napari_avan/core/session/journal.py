"""The session journal: one JSON line per decision, appended and fsynced before a call
returns, so that a decision whose call returned survives a crash.

A process killed while writing leaves at most one torn last line (no newline, or not
JSON); reading drops it, since its call never returned, and the next append cuts it off.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from napari_avan.types import AvanInputError


class Journal:
    """Append-only JSON lines with fsync."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def read(self) -> list[dict[str, Any]]:
        """Every complete entry, in order; a torn last line is cut off the file.

        Raises:
            AvanInputError: a line other than the last is not a JSON object (the file was
                edited or damaged: it cannot be replayed safely).
        """
        if not self.path.exists():
            return []
        data = self.path.read_bytes()
        *complete, torn = data.split(b"\n")  # torn is b"" when the file ends with a newline
        entries: list[dict[str, Any]] = []
        for number, line in enumerate(complete, 1):
            try:
                entry = json.loads(line)
            except ValueError:
                entry = None
            if not isinstance(entry, dict):
                raise AvanInputError(
                    f"{self.path} line {number} is not a journal entry: the journal was edited "
                    "or damaged; restore it from a backup"
                )
            entries.append(entry)
        if torn:  # its call never returned: drop it
            with open(self.path, "r+b") as handle:
                handle.truncate(len(data) - len(torn))
                os.fsync(handle.fileno())
        return entries

    def append(self, entry: dict[str, Any]) -> None:
        """Write one entry and flush it to disk before returning."""
        line = json.dumps(entry, separators=(",", ":"), sort_keys=True).encode() + b"\n"
        with open(self.path, "ab") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
