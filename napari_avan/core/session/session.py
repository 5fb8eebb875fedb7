"""The proofreading session: an observable, Qt-free model of a proofreader's work.

On disk (a folder):

- ``session.json``: the volumes as specs (image, segmentation, probability), the voxel
  size, the models used and the current round;
- ``clefts_base.zarr``: the cleft labels the session started from (never changed);
- ``clefts.zarr``: the current cleft labels, written chunk by chunk as edits touch them,
  and ``labels.json``, how many journal entries they reflect. Labels that fit in memory
  (:func:`~napari_avan.core.session.store.in_memory_limit`) are held there too; larger ones
  are read from and written to this store directly (``labels_in_memory`` false in
  ``session.json``), so a session works over a volume larger than memory;
- ``records.json``: each cleft's record at the start (status, origin, partners, scores);
- ``journal.jsonl``: one line per decision with its effect, appended and fsynced before
  :meth:`Session.apply` returns.

The journal is the truth: opening replays it over the starting state, reading the
current labels instead of replaying their deltas when ``labels.json`` says they are up
to date (a crash while they were written makes opening rebuild them from the base).
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from napari_avan.core.files import atomic_path, timestamp
from napari_avan.core.session.decisions import (
    CleftRecord,
    Effect,
    LabelDelta,
    check_decision,
)
from napari_avan.core.session.grow import grow_cleft
from napari_avan.core.session.journal import Journal
from napari_avan.core.session.store import ChunkedLabels, chunked_statistics, fits_in_memory
from napari_avan.types import AvanInputError, check_voxel_size

FORMAT = "napari-avan-session"
FORMAT_VERSION = 1
#: Chunks of the session's label stores: small, so that an edit rewrites little.
LABEL_CHUNKS = (8, 128, 128)


#: The environment variable naming where sessions started in napari are kept.
SESSIONS_ENV = "NAPARI_AVAN_SESSIONS"


def sessions_home() -> Path:
    """Where sessions started from napari's layers live until saved elsewhere:
    ``$NAPARI_AVAN_SESSIONS``, else ``~/.local/share/napari-avan/sessions`` (user data,
    not a cache: they hold a proofreader's work)."""
    env = os.environ.get(SESSIONS_ENV)
    return Path(env) if env else Path.home() / ".local" / "share" / "napari-avan" / "sessions"


def new_session_folder(name: str) -> Path:
    """A folder name under :func:`sessions_home` not yet taken: the time, then ``name``."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.") or "session"
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    home = sessions_home()
    path, n = home / f"{stamp}-{stem}", 1
    while path.exists() or path.is_symlink():
        n += 1
        path = home / f"{stamp}-{stem}-{n}"
    return path


@dataclass(frozen=True)
class SessionEvent:
    """What listeners hear after every change: the action and the clefts it touched."""

    action: str
    clefts: tuple[int, ...]
    effect: Effect


def _margin(scores: Sequence[float]) -> float:
    """Best minus second-best score (1.0 with fewer than two candidates scored)."""
    ranked = sorted(scores, reverse=True)
    if len(ranked) < 2:
        return 1.0
    return float(ranked[0] - ranked[1])


class Session:
    """A proofreading session (see the module docstring for the files).

    Create one with :meth:`create`, reopen it with :meth:`open`. Every change goes
    through :meth:`apply` (decisions as JSON objects), :meth:`undo` and :meth:`redo`;
    listeners registered with :meth:`connect` hear a :class:`SessionEvent` after each.
    """

    def __init__(
        self,
        path: Path,
        meta: dict[str, Any],
        labels: np.ndarray | ChunkedLabels,
        records: dict[int, CleftRecord],
        entries: list[dict[str, Any]],
    ) -> None:
        self.path = path
        self.meta = meta
        self._labels = labels
        self.records = records
        self.journal = Journal(path / "journal.jsonl")
        self.entries = entries  # the journal, parsed
        self._effects: dict[int, Effect] = {}
        self._done: list[int] = []  # seqs of decisions in effect, in order
        self._undone: list[int] = []  # seqs undone, the next redo last
        self._listeners: list[Callable[[SessionEvent], None]] = []
        #: The cleft probability map (same shape), for re-seeding from a point.
        self.probability: np.ndarray | None = None
        #: The neuron segmentation (same shape), for re-seeding where the map is low.
        self.segmentation: np.ndarray | None = None
        #: Called with (session, cleft id) after a re-seed; returns partners to record.
        self.assigner: Callable[[Session, int], CleftRecord] | None = None
        self._store: Any = None
        self._seeding: tuple[int, tuple[int, ...]] | None = None  # a re-seed being assigned
        # every id of the starting labels has a record (create), and later ids come with
        # their effects, so the records alone bound the ids of labels kept on disk
        on_disk = isinstance(labels, ChunkedLabels)
        top = 0 if on_disk or not labels.size else int(labels.max())
        self._next_id = max([top, *records]) + 1

    # ------------------------------------------------------------------ files

    @classmethod
    def create(
        cls,
        path: str | Path,
        clefts: np.ndarray,
        voxel_size_nm: Sequence[float],
        *,
        records: Mapping[int, CleftRecord] | None = None,
        probability: np.ndarray | None = None,
        volumes: Mapping[str, str | None] | None = None,
        models: Mapping[str, Any] | None = None,
        in_memory: bool | None = None,
    ) -> Session:
        """Start a session folder from cleft labels; every cleft starts ``pending``.

        Args:
            path: the session folder to create (must not exist).
            clefts: (z, y, x) integer cleft labels, 0 = background: a numpy array, or any
                array-like read region by region (a zarr array, a lazy volume).
            voxel_size_nm: (z, y, x) nm.
            records: known partners and scores per cleft (from assignment); clefts
                without one get an empty record.
            probability: the cleft probability map; each record's ``score`` is the
                cleft's mean probability.
            volumes: volume specs to remember (``image``, ``segmentation``, ``prob``).
            models: the models used (name -> folder or bundled name).
            in_memory: hold the labels in memory (True), or read and write them in the
                session's store (False: a volume larger than memory); None chooses by size
                (:func:`~napari_avan.core.session.store.in_memory_limit`).
        """
        path = Path(path)
        if not hasattr(clefts, "shape") or not hasattr(clefts, "dtype"):
            clefts = np.asarray(clefts)
        shape = tuple(int(n) for n in clefts.shape)
        dtype = np.dtype(clefts.dtype)
        if len(shape) != 3 or dtype.kind not in "ui":
            raise AvanInputError(
                f"session clefts must be 3D integer labels, got {len(shape)}D {dtype}"
            )
        stored = np.dtype(np.uint64 if dtype.itemsize > 4 else np.uint32)
        if in_memory is None:
            in_memory = fits_in_memory(shape, dtype)
        size = check_voxel_size(voxel_size_nm)
        labels: Any = clefts
        if in_memory:
            labels = np.asarray(clefts)
            if dtype.kind == "i" and labels.size and labels.min() < 0:
                raise AvanInputError("session clefts hold negative ids: ids are 0 or positive")
            labels = labels.astype(stored, copy=False)
            from napari_avan.core.geometry import label_statistics

            prob = None if probability is None else np.asarray(probability)
            stats = label_statistics(labels, prob)
        else:
            if probability is not None and tuple(probability.shape) != shape:
                raise AvanInputError(
                    f"the cleft probability has shape {tuple(probability.shape)}, the clefts "
                    f"{shape}: give volumes of the same shape"
                )
            stats = chunked_statistics(clefts, probability)
            if dtype.kind == "i" and stats.ids.size and stats.ids.min() < 0:
                raise AvanInputError("session clefts hold negative ids: ids are 0 or positive")
        start = {}
        for row, cleft in enumerate(int(i) for i in stats.ids):
            record = (records or {}).get(cleft, CleftRecord())
            score = float(stats.value_mean[row]) if probability is not None else record.score
            box = (*stats.bbox_begin[row].tolist(), *stats.bbox_end[row].tolist())
            start[cleft] = replace(record, score=score, box=tuple(int(v) for v in box))
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "shape": list(shape),
            "dtype": stored.str,
            "labels_in_memory": bool(in_memory),
            "voxel_size_nm": list(size),
            "volumes": dict(volumes or {}),
            "models": dict(models or {}),
            "round": 0,
            "created": timestamp(),
        }
        if path.exists():
            raise AvanInputError(f"{path} already exists: choose a new session folder")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise AvanInputError(f"cannot create {path.parent}: {err.strerror or err}") from err
        with atomic_path(path, overwrite=False) as tmp:
            tmp.mkdir()
            (tmp / "session.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
            records_json = {str(i): r.to_json() for i, r in start.items()}
            (tmp / "records.json").write_text(json.dumps(records_json, sort_keys=True))
            for name in ("clefts_base.zarr", "clefts.zarr"):
                _write_labels(tmp / name, labels, stored)
            (tmp / "labels.json").write_text(json.dumps({"journal_entries": 0}))
            (tmp / "journal.jsonl").write_bytes(b"")
        return cls.open(path)

    @classmethod
    def open(cls, path: str | Path) -> Session:
        """Reopen a session folder: the state after its last journal entry."""
        path = Path(path)
        try:
            meta = json.loads((path / "session.json").read_text())
            start = json.loads((path / "records.json").read_text())
            marker = json.loads((path / "labels.json").read_text())
        except (OSError, ValueError) as err:
            raise AvanInputError(
                f"{path} is not a readable session folder ({err}): give the folder that "
                "'napari-avan session create' made"
            ) from err
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise AvanInputError(f"{path}/session.json does not describe a napari-avan session")
        records = {int(k): CleftRecord.from_json(v) for k, v in start.items()}
        journal = Journal(path / "journal.jsonl")
        entries = journal.read()
        # The store holds every label edit of the first `stored` entries, and at most part
        # of the next one's (a crash while writing it): replaying the rest's edits (each
        # sets voxels to their new ids) completes it. A store that cannot be read, or a
        # marker past the journal, is rebuilt from the base.
        stored = int(marker.get("journal_entries", -1))
        try:
            if not 0 <= stored <= len(entries):
                raise AvanInputError("the label marker does not match the journal")
            in_memory = bool(meta.get("labels_in_memory", True))
            labels = _read_labels(path / "clefts.zarr", in_memory)
            rebuilt = False
        except AvanInputError:
            labels, stored, rebuilt = (
                _rebuilt_labels(path, bool(meta.get("labels_in_memory", True))),
                0,
                True,
            )
        session = cls(path, meta, labels, records, [])
        unsaved = [session._replay(entry, labels=n >= stored) for n, entry in enumerate(entries)]
        session.entries = entries
        if rebuilt:
            session._save_labels(None)  # the current labels, complete, and their marker
        else:
            for delta in unsaved[stored:]:
                if delta is not None:
                    session._save_labels(delta)
        return session

    # ------------------------------------------------------------------ state

    @property
    def labels(self) -> Any:
        """The current cleft labels (read-only: change them through decisions): a numpy
        array, or a :class:`~napari_avan.core.session.store.ChunkedLabels` (read by
        regions, ``labels[box]``) when they are kept on disk (:attr:`in_memory`)."""
        if isinstance(self._labels, ChunkedLabels):
            return self._labels
        view = self._labels.view()
        view.flags.writeable = False
        return view

    @property
    def in_memory(self) -> bool:
        """Whether the labels are held in memory (else read and written on disk)."""
        return not isinstance(self._labels, ChunkedLabels)

    def save_meta(self) -> None:
        """Write ``session.json`` (the volumes, models and round) atomically."""
        with atomic_path(self.path / "session.json", overwrite=True) as tmp:
            tmp.write_text(json.dumps(self.meta, indent=2, sort_keys=True))

    @property
    def voxel_size_nm(self) -> tuple[float, float, float]:
        return check_voxel_size(self.meta["voxel_size_nm"])

    @property
    def round(self) -> int:
        return int(self.meta.get("round", 0))

    def status(self) -> dict[str, int]:
        """Counts: clefts now, in each status, added ones, journal lines, round."""
        statuses = [r.status for r in self.records.values()]
        return {
            "clefts": len(self.records),
            "pending": statuses.count("pending"),
            "accepted": statuses.count("accepted"),
            "rejected": statuses.count("rejected"),
            "added": sum(r.origin == "added" for r in self.records.values()),
            "decisions": len(self.entries),
            "round": self.round,
        }

    def review_queue(self, order: str = "uncertainty") -> list[int]:
        """Pending clefts, most uncertain first (or by position, z then y then x).

        Uncertainty: the smaller of AVAN's margins between the best and second-best
        candidate on each side, then the lower mean probability.
        """
        pending = [i for i, r in self.records.items() if r.status == "pending"]
        if order == "position":
            where = self._centroids(pending)
            return sorted(pending, key=lambda i: (where.get(i, (math.inf,) * 3), i))
        if order != "uncertainty":
            raise AvanInputError(f"review order {order!r}: use 'uncertainty' or 'position'")

        def key(i: int) -> tuple[float, float, int]:
            r = self.records[i]
            margin = min(_margin(r.pre_scores), _margin(r.post_scores))
            return (margin, r.score if r.score is not None else 1.0, i)

        return sorted(pending, key=key)

    def _centroids(self, clefts: Sequence[int]) -> dict[int, tuple[float, ...]]:
        """Each cleft's mean voxel position, read within its box (the whole volume for a
        cleft without one, when the labels are in memory)."""
        if not isinstance(self._labels, ChunkedLabels):
            from napari_avan.core.geometry import label_statistics

            stats = label_statistics(self._labels)
            return {int(i): tuple(c) for i, c in zip(stats.ids, stats.centroid, strict=True)}
        where = {}
        for cleft in clefts:
            box = self.records[cleft].box
            found = np.stack(np.unravel_index(self._labels.find(cleft, box), self._labels.shape), 1)
            if found.size:
                where[cleft] = tuple(found.mean(axis=0).tolist())
        return where

    def cleft_box(self, cleft: int) -> tuple[int, ...]:
        """A cleft's box (z0, y0, x0, z1, y1, x1; empty when unknown), the re-seeded cleft's
        too while :attr:`assigner` finds its partners."""
        if self._seeding is not None and self._seeding[0] == cleft:
            return self._seeding[1]
        return self._record(cleft).box

    def decided(self, actions: Sequence[str]) -> set[int]:
        """The clefts named by decisions in effect (not undone) of the given ``actions``
        (``set_partners``: the clefts whose partners a proofreader set)."""
        named = set()
        for seq in self._done:
            decision = self.entries[seq]["decision"]
            if decision["action"] in actions and "cleft" in decision:
                named.add(int(decision["cleft"]))
        return named & set(self.records)

    def partner_table(self) -> Any:
        """One row per pre->post pair of every cleft: cleft_id, pre_id, post_id, status."""
        import pandas as pd

        rows = [
            (cleft, pre, post, record.status, record.origin)
            for cleft, record in sorted(self.records.items())
            for pre in record.pre
            for post in record.post
        ]
        return pd.DataFrame(rows, columns=["cleft_id", "pre_id", "post_id", "status", "origin"])

    # ------------------------------------------------------------------ events

    def connect(self, listener: Callable[[SessionEvent], None]) -> None:
        """Call ``listener`` with a :class:`SessionEvent` after every change."""
        self._listeners.append(listener)

    def disconnect(self, listener: Callable[[SessionEvent], None]) -> None:
        self._listeners.remove(listener)

    def _emit(self, action: str, effect: Effect) -> None:
        event = SessionEvent(action, tuple(effect.clefts), effect)
        for listener in list(self._listeners):
            listener(event)

    # ------------------------------------------------------------------ decisions

    def apply(self, decision: Mapping[str, Any]) -> Effect:
        """Apply one decision; it is in the journal, on disk, when this returns.

        Returns:
            What it changed.

        Raises:
            AvanInputError: a malformed decision, an unknown cleft, nothing to undo.
        """
        checked = check_decision(dict(decision))
        action = checked["action"]
        if action in ("undo", "redo"):
            return self.undo() if action == "undo" else self.redo()
        effect = self._effect_of(checked)
        seq = len(self.entries)
        entry = {
            "seq": seq,
            "time": timestamp(),
            "decision": checked,
            "effect": effect.to_json(),
        }
        self.journal.append(entry)
        self.entries.append(entry)
        self._effects[seq] = effect
        self._done.append(seq)
        self._undone.clear()
        self._change(effect)
        if effect.labels is not None:
            self._save_labels(effect.labels)
        self._emit(action, effect)
        return effect

    def replace_predicted(
        self,
        removed: Sequence[int],
        found: Sequence[np.ndarray],
        scores: Sequence[float] | None = None,
    ) -> list[int]:
        """Replace clefts by a detector's: each of ``removed`` deleted, then each array of
        (n, 3) voxel indices in ``found`` a new pending cleft (``origin`` predicted, its
        mean probability from ``scores`` if given), as decisions one by one (journaled,
        undoable). Returns the new clefts' ids in the order of ``found``."""
        if scores is not None and len(scores) != len(found):
            raise AvanInputError(f"{len(found)} clefts found but {len(scores)} scores")
        for cleft in removed:
            if int(cleft) in self.records:
                self.apply({"action": "delete", "cleft": int(cleft)})
        ids = []
        for k, voxels in enumerate(found):
            decision: dict[str, Any] = {
                "action": "reseed", "voxels": np.asarray(voxels).tolist(), "origin": "predicted"
            }  # fmt: skip
            if scores is not None:
                decision["score"] = float(scores[k])
            effect = self.apply(decision)
            ids.append(next(c for c, r in effect.after.items() if r is not None))
        return ids

    def undo(self) -> Effect:
        """Undo the last decision still in effect (itself a journal entry)."""
        if not self._done:
            raise AvanInputError("nothing to undo")
        return self._walk("undo", self._done[-1])

    def redo(self) -> Effect:
        """Apply again the decision undone last."""
        if not self._undone:
            raise AvanInputError("nothing to redo")
        return self._walk("redo", self._undone[-1])

    def _walk(self, action: str, target: int) -> Effect:
        entry = {"seq": len(self.entries), "time": timestamp(), "decision": {"action": action},
                 "target": target}  # fmt: skip
        self.journal.append(entry)
        self.entries.append(entry)
        effect = self._step(action, target)
        self._change(effect)
        if effect.labels is not None:
            self._save_labels(effect.labels)
        self._emit(action, effect)
        return effect

    def _step(self, action: str, target: int) -> Effect:
        """Move ``target`` between the done and undone stacks; the effect to apply."""
        if action == "undo":
            self._undone.append(self._done.pop())
            return self._effects[target].inverse()
        self._done.append(self._undone.pop())
        return self._effects[target]

    def _replay(self, entry: dict[str, Any], *, labels: bool) -> LabelDelta | None:
        """Apply a journal entry (its label edit only when ``labels``); that edit."""
        action = entry["decision"]["action"]
        if action in ("undo", "redo"):
            target = int(entry["target"])
            expected = self._done[-1] if action == "undo" else self._undone[-1]
            if target != expected:
                raise AvanInputError(
                    f"{self.journal.path}: entry {entry['seq']} {action}s {target}, not "
                    f"{expected}: the journal is inconsistent; restore it from a backup"
                )
            effect = self._step(action, target)
        else:
            effect = Effect.from_json(entry["effect"])
            self._effects[int(entry["seq"])] = effect
            self._done.append(int(entry["seq"]))
            self._undone.clear()
        effect = effect if labels else replace(effect, labels=None)
        self._change(effect)
        return effect.labels

    def _change(self, effect: Effect) -> None:
        for cleft in effect.after:
            self._next_id = max(self._next_id, cleft + 1)
        if effect.labels is not None:
            self._set(effect.labels.index, effect.labels.new)
        for cleft, record in effect.after.items():
            if record is None:
                self.records.pop(cleft, None)
            else:
                self.records[cleft] = record

    def _get(self, index: np.ndarray) -> np.ndarray:
        """The labels at flat voxel indices."""
        if isinstance(self._labels, ChunkedLabels):
            return self._labels.gather(index)
        return self._labels.ravel()[index]

    def _set(self, index: np.ndarray, values: np.ndarray) -> None:
        """Set the labels at flat voxel indices (on disk too when they live there)."""
        if isinstance(self._labels, ChunkedLabels):
            self._labels.scatter(index, values)
        else:
            self._labels.ravel()[index] = values

    def _record(self, cleft: int) -> CleftRecord:
        if cleft not in self.records:
            raise AvanInputError(f"cleft {cleft} is not in this session: check the id")
        return self.records[cleft]

    def _effect_of(self, d: dict[str, Any]) -> Effect:
        action = d["action"]
        if action in ("accept", "reject", "note", "set_partners", "assign"):
            cleft = d["cleft"]
            old = self._record(cleft)
            if action == "assign":
                new = old.assigned(d)
            elif action == "note":
                new = replace(old, note=d["text"])
            elif action == "set_partners":
                new = old.with_partners(tuple(d["pre"]), tuple(d["post"]))
            else:
                new = replace(old, status="accepted" if action == "accept" else "rejected")
            return Effect(before={cleft: old}, after={cleft: new})
        if action == "delete":
            cleft = d["cleft"]
            old = self._record(cleft)
            return Effect(self._relabel([cleft], 0), before={cleft: old}, after={cleft: None})
        if action == "merge":
            keep, *others = d["clefts"]
            olds = {c: self._record(c) for c in d["clefts"]}
            pre = tuple(dict.fromkeys(s for c in d["clefts"] for s in olds[c].pre))
            post = tuple(dict.fromkeys(s for c in d["clefts"] for s in olds[c].post))
            merged = replace(
                olds[keep].with_partners(pre, post),
                status="pending",
                box=_union_box([olds[c].box for c in d["clefts"]]),
            )
            after: dict[int, CleftRecord | None] = {c: None for c in others}
            after[keep] = merged
            return Effect(self._relabel(others, keep), before=dict(olds), after=after)
        return self._reseed_effect(d)

    def _relabel(self, clefts: Sequence[int], value: int) -> LabelDelta:
        """The delta that gives every voxel of ``clefts`` the id ``value``."""
        parts = []
        for cleft in clefts:
            box = self.records[cleft].box
            if isinstance(self._labels, ChunkedLabels):  # its box (or all) region by region
                parts.append(self._labels.find(cleft, box))
                continue
            if not box:  # unknown: search the whole volume
                parts.append(np.flatnonzero(self._labels.ravel() == cleft))
                continue
            window = tuple(slice(b, e) for b, e in zip(box[:3], box[3:], strict=True))
            local = np.argwhere(self._labels[window] == cleft) + np.asarray(box[:3])
            parts.append(np.ravel_multi_index(tuple(local.T), self._labels.shape))
        index = np.sort(np.concatenate(parts)) if parts else np.zeros(0, np.int64)
        old = self._get(index)
        new = np.full(index.shape, value, dtype=self._labels.dtype)
        return LabelDelta(index.astype(np.int64), old, new)

    def _reseed_effect(self, d: dict[str, Any]) -> Effect:
        shape = self._labels.shape
        if "voxels" in d:
            points = np.asarray(d["voxels"], dtype=np.int64)
            outside = np.any((points < 0) | (points >= np.asarray(shape)), axis=1)
            if outside.any():
                raise AvanInputError(
                    f"reseed voxel {points[outside][0].tolist()} is outside the volume {shape}"
                )
            index = np.unique(np.ravel_multi_index(tuple(points.T), shape))
        else:
            index = grow_cleft(self.probability, self.segmentation, tuple(d["seed"]), shape=shape)
        index = index[self._get(index) == 0]  # a new cleft never takes another's voxels
        if index.size == 0:
            raise AvanInputError(
                "the re-seeded cleft has no voxels outside existing clefts: pick another place"
            )
        cleft = self._next_id  # ids are never reused, so a journal line names one cleft
        delta = LabelDelta(
            index.astype(np.int64),
            np.zeros(index.shape, self._labels.dtype),
            np.full(index.shape, cleft, dtype=self._labels.dtype),
        )
        coords = np.unravel_index(index, shape)
        box = (*(int(c.min()) for c in coords), *(int(c.max()) + 1 for c in coords))
        origin = d.get("origin", "added")
        record = CleftRecord(origin=origin, round=self.round, box=box, score=d.get("score"))
        if self.assigner is not None and origin == "added":
            # the assigner sees the new cleft; labels on disk are not written for it (it is
            # not in the journal yet): reads see it through an overlay
            if isinstance(self._labels, ChunkedLabels):
                self._labels.overlay(delta.index, delta.new)
            else:
                self._labels.ravel()[delta.index] = delta.new
            self._seeding = (cleft, box)
            try:
                found = self.assigner(self, cleft)
                record = replace(found, origin=origin, round=self.round, box=box)
            finally:
                self._seeding = None
                if isinstance(self._labels, ChunkedLabels):
                    self._labels.overlay(None, None)
                else:
                    self._labels.ravel()[delta.index] = delta.old
        return Effect(delta, before={cleft: None}, after={cleft: record})

    # ------------------------------------------------------------------ label store

    def _save_labels(self, delta: LabelDelta | None) -> None:
        """Write the chunks a label edit touched (None: all), then the marker saying
        that the store holds every edit of the journal so far."""
        import zarr

        if isinstance(self._labels, ChunkedLabels):
            store = None  # written as they changed (:meth:`_set`)
        elif self._store is None:
            store = self._store = zarr.open_array(str(self.path / "clefts.zarr"), mode="r+")
        else:
            store = self._store
        if store is None:
            pass
        elif delta is None:
            store[...] = self._labels
        elif delta.index.size:
            chunks = np.asarray(store.chunks)
            coords = np.stack(np.unravel_index(delta.index, self._labels.shape), axis=1)
            for corner in np.unique(coords // chunks, axis=0) * chunks:
                box = tuple(
                    slice(int(c), int(c) + int(n)) for c, n in zip(corner, chunks, strict=True)
                )
                store[box] = self._labels[box]
        marker = self.path / "labels.json"
        with atomic_path(marker, overwrite=True) as tmp:
            tmp.write_text(json.dumps({"journal_entries": len(self.entries)}))


def _union_box(boxes: Sequence[tuple[int, ...]]) -> tuple[int, ...]:
    """The box around several cleft boxes; empty when any is unknown."""
    if not boxes or any(not b for b in boxes):
        return ()
    return (
        *(min(b[i] for b in boxes) for i in range(3)),
        *(max(b[i] for b in boxes) for i in range(3, 6)),
    )


def _write_labels(path: Path, labels: Any, dtype: np.dtype) -> None:
    """A session label store from ``labels`` (numpy, or any array-like copied region by
    region)."""
    import zarr

    shape = tuple(int(n) for n in labels.shape)
    chunks = tuple(min(c, s) for c, s in zip(LABEL_CHUNKS, shape, strict=True))
    array = zarr.create_array(
        store=str(path), shape=shape, dtype=dtype, chunks=chunks, fill_value=0
    )
    if isinstance(labels, np.ndarray):
        array[...] = labels
    else:
        ChunkedLabels(array).copy_from(labels)


def _read_labels(path: Path, in_memory: bool = True) -> np.ndarray | ChunkedLabels:
    """A session's label store: read whole, or opened to be read and written in place."""
    import zarr

    try:
        if not in_memory:
            labels = ChunkedLabels.open(path, mode="r+")
            labels[:1, :1, :1]  # readable
            return labels
        return np.asarray(zarr.open_array(str(path), mode="r")[...])
    except Exception as err:  # zarr raises many kinds for a damaged store
        raise AvanInputError(f"cannot read the session labels {path}: {err}") from err


def _rebuilt_labels(path: Path, in_memory: bool) -> np.ndarray | ChunkedLabels:
    """The starting labels, for a replay of the whole journal: read whole, or copied over
    the current store (made again) when the labels live on disk."""
    import shutil

    base = _read_labels(path / "clefts_base.zarr", in_memory=True) if in_memory else None
    if base is not None:
        return base
    source = ChunkedLabels.open(path / "clefts_base.zarr", mode="r")
    current = path / "clefts.zarr"
    if current.exists():
        shutil.rmtree(current) if current.is_dir() else current.unlink()
    _write_labels(current, source, source.dtype)
    return ChunkedLabels.open(current, mode="r+")
