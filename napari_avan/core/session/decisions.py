"""Proofreading decisions: parsing, and what each changed (its effect), in JSON form.

A decision is one JSON object (``{"action": "accept", "cleft": 12}``); the same objects go
in the journal, in ``napari-avan session apply`` and in :meth:`Session.apply`. Its effect
records everything it changed, so that undo and redo walk the journal without recomputing:
label edits as sparse deltas (flat voxel indices, old and new values, never a copy of the
volume) and each touched cleft's record before and after.
"""

from __future__ import annotations

import base64
import math
import zlib
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from napari_avan.types import AvanInputError

#: Actions a decision may name, with the fields each needs.
ACTIONS: dict[str, tuple[str, ...]] = {
    "accept": ("cleft",),
    "reject": ("cleft",),
    "set_partners": ("cleft", "pre", "post"),
    "assign": ("cleft", "pre", "post", "candidates", "pre_scores", "post_scores"),
    "reseed": (),
    "delete": ("cleft",),
    "merge": ("clefts",),
    "note": ("cleft", "text"),
    "undo": (),
    "redo": (),
}

#: Statuses of a cleft under review, and where a cleft came from.
STATUSES = ("pending", "accepted", "rejected")
ORIGINS = ("predicted", "added")


def _cleft_id(value: Any, what: str = "cleft") -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) <= 0:
        raise AvanInputError(f"decision field {what!r} must be a positive cleft id, got {value!r}")
    return int(value)


def _segment_ids(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, (list, tuple)):
        raise AvanInputError(f"decision field {what!r} must be a list of segment ids")
    ids = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or int(v) <= 0:
            raise AvanInputError(f"decision field {what!r} holds {v!r}: segment ids are > 0")
        ids.append(int(v))
    if len(set(ids)) != len(ids):
        raise AvanInputError(f"decision field {what!r} repeats a segment id: {ids}")
    return tuple(ids)


def _point(value: Any, what: str) -> tuple[int, int, int]:
    ok = isinstance(value, (list, tuple)) and len(value) == 3
    if ok:
        try:
            numbers = [float(v) for v in value]
        except (TypeError, ValueError):
            ok = False
        else:
            ok = all(math.isfinite(v) and v == int(v) for v in numbers)
    if not ok:
        raise AvanInputError(f"decision field {what!r} must be [z, y, x] voxel indices")
    return (int(value[0]), int(value[1]), int(value[2]))


def _scored_candidates(decision: dict[str, Any]) -> dict[str, Any]:
    """An ``assign`` decision's candidates and their pre and post scores (finite, one
    each per candidate), and the model named, if any."""
    candidates = list(_segment_ids(decision["candidates"], "candidates"))
    out: dict[str, Any] = {"candidates": candidates}
    for side in ("pre_scores", "post_scores"):
        value = decision[side]
        try:
            scores = [float(v) for v in value]
        except (TypeError, ValueError):
            scores = []
            ok = False
        else:
            ok = not any(isinstance(v, bool) for v in value)
        if not ok or len(scores) != len(candidates) or not all(map(math.isfinite, scores)):
            raise AvanInputError(
                f"decision 'assign' field {side!r} must hold one finite score per candidate"
            )
        out[side] = scores
    if "model" in decision:
        out["model"] = str(decision["model"])
    return out


def check_decision(decision: Any) -> dict[str, Any]:
    """``decision`` validated and normalised (ids as ints, lists as lists).

    Raises:
        AvanInputError: unknown action, a missing or malformed field.
    """
    if not isinstance(decision, dict):
        raise AvanInputError(f"a decision is a JSON object with an 'action', got {decision!r}")
    action = decision.get("action")
    if action not in ACTIONS:
        raise AvanInputError(f"unknown decision action {action!r}: use one of {', '.join(ACTIONS)}")
    missing = [f for f in ACTIONS[action] if f not in decision]
    if missing:
        raise AvanInputError(f"decision {action!r} needs {', '.join(missing)}: got {decision}")
    out: dict[str, Any] = {"action": action}
    if "cleft" in ACTIONS[action]:
        out["cleft"] = _cleft_id(decision["cleft"])
    if action in ("set_partners", "assign"):
        out["pre"] = list(_segment_ids(decision["pre"], "pre"))
        out["post"] = list(_segment_ids(decision["post"], "post"))
    if action == "assign":
        out.update(_scored_candidates(decision))
    elif action == "merge":
        clefts = decision["clefts"]
        if not isinstance(clefts, (list, tuple)) or len(clefts) < 2:
            raise AvanInputError("decision 'merge' needs 'clefts': two or more cleft ids")
        ids = [_cleft_id(c, "clefts") for c in clefts]
        if len(set(ids)) != len(ids):
            raise AvanInputError(f"decision 'merge' repeats a cleft id: {ids}")
        out["clefts"] = ids
    elif action == "note":
        if not isinstance(decision["text"], str):
            raise AvanInputError("decision 'note' needs 'text': a string")
        out["text"] = decision["text"]
    elif action == "reseed":
        if ("seed" in decision) == ("voxels" in decision):
            raise AvanInputError("decision 'reseed' needs either 'seed' [z, y, x] or 'voxels'")
        if "seed" in decision:
            out["seed"] = list(_point(decision["seed"], "seed"))
        else:
            voxels = decision["voxels"]
            if not isinstance(voxels, (list, tuple)) or not voxels:
                raise AvanInputError("decision 'reseed' field 'voxels' is an empty list")
            out["voxels"] = [list(_point(v, "voxels")) for v in voxels]
        if "score" in decision:  # the cleft's mean probability (the review order uses it)
            score = decision["score"]
            if (
                isinstance(score, bool)
                or not isinstance(score, (int, float))
                or not (math.isfinite(score))
            ):
                raise AvanInputError("decision 'reseed' field 'score' must be a finite number")
            out["score"] = float(score)
        origin = decision.get("origin", "added")
        if origin not in ORIGINS:
            raise AvanInputError(f"decision 'reseed' field 'origin' is one of {ORIGINS}")
        if origin != "added":  # a detector's cleft (the Detect dock): kept as it said
            out["origin"] = origin
    return out


@dataclass(frozen=True)
class CleftRecord:
    """What the session knows of one cleft beyond its voxels."""

    status: str = "pending"
    origin: str = "predicted"
    pre: tuple[int, ...] = ()
    post: tuple[int, ...] = ()
    #: the segments AVAN scored, and their pre and post scores (in this order)
    candidates: tuple[int, ...] = ()
    pre_scores: tuple[float, ...] = ()
    post_scores: tuple[float, ...] = ()
    note: str = ""
    round: int = 0
    #: the cleft's mean probability, when a probability map was given
    score: float | None = None
    #: a box (z0, y0, x0, z1, y1, x1, ends exclusive) holding all the cleft's voxels, so
    #: that edits search there and not the whole volume; empty when unknown
    box: tuple[int, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "origin": self.origin,
            "pre": list(self.pre),
            "post": list(self.post),
            "candidates": list(self.candidates),
            "pre_scores": list(self.pre_scores),
            "post_scores": list(self.post_scores),
            "note": self.note,
            "round": self.round,
            "score": self.score,
            "box": list(self.box),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CleftRecord:
        return cls(
            status=str(data["status"]),
            origin=str(data["origin"]),
            pre=tuple(int(v) for v in data["pre"]),
            post=tuple(int(v) for v in data["post"]),
            candidates=tuple(int(v) for v in data.get("candidates", ())),
            pre_scores=tuple(float(v) for v in data.get("pre_scores", ())),
            post_scores=tuple(float(v) for v in data.get("post_scores", ())),
            note=str(data.get("note", "")),
            round=int(data.get("round", 0)),
            score=None if data.get("score") is None else float(data["score"]),
            box=tuple(int(v) for v in data.get("box", ())),
        )

    def with_partners(self, pre: tuple[int, ...], post: tuple[int, ...]) -> CleftRecord:
        """Partners set by hand: the network's scores no longer describe them."""
        return replace(self, pre=pre, post=post, candidates=(), pre_scores=(), post_scores=())

    def assigned(self, decision: dict[str, Any]) -> CleftRecord:
        """This record after a network's ``assign`` decision: its partners and scores. A
        decided cleft whose partners change is pending again (the decision was about
        other partners); one whose partners stay keeps its status."""
        pre, post = tuple(decision["pre"]), tuple(decision["post"])
        status = self.status if (pre, post) == (self.pre, self.post) else "pending"
        return replace(
            self, status=status, pre=pre, post=post,
            candidates=tuple(decision["candidates"]),
            pre_scores=tuple(decision["pre_scores"]),
            post_scores=tuple(decision["post_scores"]),
        )  # fmt: skip


def record_from_assignment(assignment: Any, **fields: Any) -> CleftRecord:
    """A cleft's record from AVAN's assignment of it (a ``core.partners.CleftAssignment``):
    its partners, and the pre and post scores of every candidate (for the review order)."""
    return CleftRecord(
        pre=tuple(int(v) for v in assignment.pre_ids),
        post=tuple(int(v) for v in assignment.post_ids),
        candidates=tuple(int(v) for v in assignment.candidates),
        pre_scores=tuple(float(v) for v in assignment.pre_scores),
        post_scores=tuple(float(v) for v in assignment.post_scores),
        **fields,
    )


def assign_decision(assignment: Any, model: str = "") -> dict[str, Any]:
    """The ``assign`` decision recording AVAN's assignment of one cleft (a
    ``core.partners.CleftAssignment``): partners, candidates and their scores."""
    decision: dict[str, Any] = {
        "action": "assign",
        "cleft": int(assignment.cleft_id),
        "pre": [int(v) for v in assignment.pre_ids],
        "post": [int(v) for v in assignment.post_ids],
        "candidates": [int(v) for v in assignment.candidates],
        "pre_scores": [float(v) for v in assignment.pre_scores],
        "post_scores": [float(v) for v in assignment.post_scores],
    }
    if model:
        decision["model"] = model
    return decision


def records_from_partners(partners: Any) -> dict[int, CleftRecord]:
    """Records from a partner or edge table (``cleft_id, pre_id, post_id`` or Synaptor
    names), one per cleft, partners in table order."""
    from napari_avan.core.tables import as_partner_table

    table = as_partner_table(partners)
    repeated = table.duplicated(["cleft_id", "pre_id", "post_id"]).to_numpy()
    if repeated.any():
        row = int(np.flatnonzero(repeated)[0])
        raise AvanInputError(
            f"the partner table repeats row {row + 1} (cleft {int(table['cleft_id'].iloc[row])}"
            f"): each pre->post pair must appear once; remove the repeats"
        )
    records: dict[int, CleftRecord] = {}
    for _, rows in table.groupby("cleft_id", sort=True):
        pre = tuple(dict.fromkeys(int(v) for v in rows["pre_id"]))
        post = tuple(dict.fromkeys(int(v) for v in rows["post_id"]))
        records[int(rows["cleft_id"].iloc[0])] = CleftRecord(pre=pre, post=post)
    return records


def _pack(array: np.ndarray) -> dict[str, Any]:
    data = np.ascontiguousarray(array)
    return {
        "dtype": data.dtype.str,
        "data": base64.b64encode(zlib.compress(data.tobytes(), 1)).decode("ascii"),
    }


def _unpack(packed: dict[str, Any]) -> np.ndarray:
    raw = zlib.decompress(base64.b64decode(packed["data"]))
    return np.frombuffer(raw, dtype=np.dtype(packed["dtype"])).copy()


@dataclass(frozen=True)
class LabelDelta:
    """A sparse change of the cleft labels: flat voxel indices, their old and new ids."""

    index: np.ndarray
    old: np.ndarray
    new: np.ndarray

    def to_json(self) -> dict[str, Any]:
        return {"index": _pack(self.index), "old": _pack(self.old), "new": _pack(self.new)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LabelDelta:
        return cls(_unpack(data["index"]), _unpack(data["old"]), _unpack(data["new"]))

    @property
    def nbytes(self) -> int:
        return int(self.index.nbytes + self.old.nbytes + self.new.nbytes)


@dataclass(frozen=True)
class Effect:
    """Everything one decision changed: label edits and cleft records before and after.

    A record of None means the cleft did not exist (before) or no longer exists (after).
    """

    labels: LabelDelta | None = None
    before: dict[int, CleftRecord | None] = field(default_factory=dict)
    after: dict[int, CleftRecord | None] = field(default_factory=dict)

    @property
    def clefts(self) -> list[int]:
        return sorted(set(self.before) | set(self.after))

    def inverse(self) -> Effect:
        labels = self.labels
        if labels is not None:
            labels = LabelDelta(labels.index, labels.new, labels.old)
        return Effect(labels=labels, before=self.after, after=self.before)

    def to_json(self) -> dict[str, Any]:
        def records(side: dict[int, CleftRecord | None]) -> dict[str, Any]:
            return {str(k): (None if v is None else v.to_json()) for k, v in side.items()}

        out: dict[str, Any] = {"before": records(self.before), "after": records(self.after)}
        if self.labels is not None:
            out["labels"] = self.labels.to_json()
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Effect:
        def records(side: dict[str, Any]) -> dict[int, CleftRecord | None]:
            return {
                int(k): (None if v is None else CleftRecord.from_json(v)) for k, v in side.items()
            }

        labels = LabelDelta.from_json(data["labels"]) if "labels" in data else None
        return cls(labels=labels, before=records(data["before"]), after=records(data["after"]))
