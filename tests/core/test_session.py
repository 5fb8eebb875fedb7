"""The proofreading session: decisions on hand-built volumes, undo/redo, reopening, crashes."""

from __future__ import annotations

import hashlib
import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from napari_avan.core.session import CleftRecord, Session
from napari_avan.types import AvanInputError

VOXEL = (40.0, 4.0, 4.0)


def _volume() -> np.ndarray:
    """Three clefts: 1 (2x3x4 voxels), 2 (one section 5x5), 3 (a line of 6)."""
    labels = np.zeros((6, 32, 32), np.uint32)
    labels[1:3, 2:5, 2:6] = 1
    labels[3, 10:15, 10:15] = 2
    labels[5, 20, 4:10] = 3
    return labels


def _session(tmp_path: Path, **kwargs: Any) -> Session:
    records = {1: CleftRecord(pre=(7,), post=(8, 9), pre_scores=(0.9, 0.2),
                              post_scores=(0.8, 0.7))}  # fmt: skip
    return Session.create(tmp_path / "s", _volume(), VOXEL, records=records, **kwargs)


def _state(session: Session) -> tuple[bytes, dict[int, dict[str, Any]]]:
    return (
        np.asarray(session.labels).tobytes(),
        {k: v.to_json() for k, v in sorted(session.records.items())},
    )


def test_create_starts_every_cleft_pending(tmp_path: Path) -> None:
    s = _session(tmp_path)
    assert sorted(s.records) == [1, 2, 3]
    assert s.records[1].pre == (7,) and s.records[2].pre == ()
    assert s.status() == {"clefts": 3, "pending": 3, "accepted": 0, "rejected": 0, "added": 0,
                          "decisions": 0, "round": 0}  # fmt: skip
    np.testing.assert_array_equal(s.labels, _volume())
    with pytest.raises(ValueError):
        s.labels[0, 0, 0] = 5  # read-only: change labels through decisions
    with pytest.raises(AvanInputError, match="already exists"):
        _session(tmp_path)


def test_status_decisions_and_their_records(tmp_path: Path) -> None:
    s = _session(tmp_path)
    s.apply({"action": "accept", "cleft": 1})
    s.apply({"action": "reject", "cleft": 2})
    s.apply({"action": "note", "cleft": 3, "text": "look again"})
    s.apply({"action": "set_partners", "cleft": 3, "pre": [4], "post": [5, 6]})
    assert s.records[1].status == "accepted" and s.records[2].status == "rejected"
    assert s.records[3].note == "look again"
    assert (s.records[3].pre, s.records[3].post) == ((4,), (5, 6))
    assert s.status()["pending"] == 1 and s.status()["decisions"] == 4
    table = s.partner_table()
    assert table[table.cleft_id == 3][["pre_id", "post_id"]].values.tolist() == [[4, 5], [4, 6]]
    np.testing.assert_array_equal(s.labels, _volume())  # none of these touch voxels


def test_delete_merge_and_reseed_edit_labels_sparsely(tmp_path: Path) -> None:
    s = _session(tmp_path)
    effect = s.apply({"action": "delete", "cleft": 3})
    assert effect.labels is not None and effect.labels.index.size == 6  # only its voxels
    assert 3 not in s.records and not (s.labels == 3).any()
    s.apply({"action": "merge", "clefts": [1, 2]})
    assert 2 not in s.records and (s.labels == 1).sum() == 24 + 25
    assert s.records[1].status == "pending"
    voxels = [[0, 30, 30], [0, 30, 31], [1, 2, 2]]  # the last is cleft 1's: not taken
    s.apply({"action": "reseed", "voxels": voxels})
    new = max(s.records)
    assert new == 4 and s.records[new].origin == "added"
    assert int((s.labels == new).sum()) == 2 and s.labels[1, 2, 2] == 1
    assert s.status()["added"] == 1


def test_reseed_grows_from_the_probability_map_or_falls_back_to_a_contact(
    tmp_path: Path,
) -> None:
    s = _session(tmp_path)
    prob = np.zeros(_volume().shape, np.float32)
    prob[2, 20:26, 20:28] = 0.5  # a faint blob the detector missed (48 voxels)
    prob[2, 22, 29] = 0.9  # not connected to it
    s.probability = prob
    s.apply({"action": "reseed", "seed": [2, 22, 22]})
    grown = s.labels == 4
    assert int(grown.sum()) == 48 and grown[2, 20:26, 20:28].all()
    seg = np.ones(_volume().shape, np.uint32)
    seg[:, :, 16:] = 2  # two segments touching between x=15 and x=16
    s.segmentation = seg
    s.apply({"action": "reseed", "seed": [4, 8, 12]})  # the map is 0 there
    disc = np.argwhere(s.labels == 5)
    assert set(disc[:, 0]) == {4}
    assert np.abs(disc[:, 2].mean() - 15.5) <= 1  # centred on the contact, in x
    assert abs(disc[:, 1].mean() - 8) <= 1


def test_bad_decisions_are_refused_and_not_journaled(tmp_path: Path) -> None:
    s = _session(tmp_path)
    bad = [
        {"action": "accept", "cleft": 99},
        {"action": "explode"},
        {"action": "accept"},
        {"action": "set_partners", "cleft": 1, "pre": [0], "post": []},
        {"action": "merge", "clefts": [1]},
        {"action": "reseed", "seed": [1, 2]},
        {"action": "reseed", "voxels": [[99, 0, 0]]},
        {"action": "reseed", "voxels": [[1, 2, 2]]},  # all inside cleft 1
        {"action": "undo"},
        {"action": "redo"},
        {
            "action": "assign",
            "cleft": 1,
            "pre": [7],
            "post": [8],
            "candidates": [7, 8],
            "pre_scores": [0.9],
            "post_scores": [0.1, 0.8],
        },  # one score short
        {
            "action": "assign",
            "cleft": 1,
            "pre": [7],
            "post": [8],
            "candidates": [7, 8],
            "pre_scores": [0.9, float("nan")],
            "post_scores": [0.1, 0.8],
        },
        {
            "action": "assign",
            "cleft": 1,
            "pre": [7],
            "post": [8],
            "candidates": [7, 8],
            "pre_scores": [True, 0.1],
            "post_scores": [0.1, 0.8],
        },
        {"action": "assign", "cleft": 1, "pre": [7], "post": [8]},  # no candidates
        {"action": "reseed", "voxels": [[0, 0, 0]], "origin": "martian"},
    ]
    for decision in bad:
        with pytest.raises(AvanInputError):
            s.apply(decision)
    assert (s.path / "journal.jsonl").read_bytes() == b""
    assert s.status()["decisions"] == 0


def test_assign_records_a_networks_partners_and_scores(tmp_path: Path) -> None:
    from napari_avan.core.partners import CleftAssignment
    from napari_avan.core.session import assign_decision

    s = _session(tmp_path)
    found = CleftAssignment(2, np.array([4, 5, 6]), np.array([0.9, 0.1, 0.2]),
                            np.array([0.1, 0.7, 0.65]), [4], [5, 6])  # fmt: skip
    decision = assign_decision(found, model="avan")
    assert decision["model"] == "avan"
    s.apply(decision)
    r = s.records[2]
    assert (r.pre, r.post, r.candidates) == ((4,), (5, 6), (4, 5, 6))
    assert r.pre_scores == (0.9, 0.1, 0.2) and r.status == "pending"
    # the review order reads the margins: cleft 2's post side (0.7 vs 0.65) is the least sure
    assert s.review_queue()[0] == 2
    # a decision on these partners survives the same assignment again...
    s.apply({"action": "accept", "cleft": 2})
    s.apply(decision)
    assert s.records[2].status == "accepted"
    # ...but not other partners: the cleft is pending again
    s.apply({**decision, "post": [5]})
    assert s.records[2].status == "pending" and s.records[2].post == (5,)
    s.undo()
    assert s.records[2].status == "accepted" and s.records[2].post == (5, 6)
    assert Session.open(s.path).records == s.records
    # partners set by hand drop the network's scores with its candidates
    s.apply({"action": "set_partners", "cleft": 2, "pre": [9], "post": [4]})
    assert s.records[2].candidates == () and s.records[2].pre_scores == ()


def test_a_detectors_cleft_from_voxels_is_predicted_and_not_assigned(tmp_path: Path) -> None:
    s = _session(tmp_path)
    calls = []
    s.assigner = lambda session, cleft: calls.append(cleft) or CleftRecord(pre=(5,), post=(6,))
    predicted = s.apply({"action": "reseed", "voxels": [[0, 0, 0], [0, 0, 1]],
                         "origin": "predicted"})  # fmt: skip
    (cleft,) = [c for c, r in predicted.after.items() if r is not None]
    assert s.records[cleft].origin == "predicted" and s.records[cleft].pre == () and not calls
    added = s.apply({"action": "reseed", "voxels": [[0, 5, 5]]})
    (other,) = [c for c, r in added.after.items() if r is not None]
    assert s.records[other].origin == "added" and s.records[other].pre == (5,)
    assert calls == [other] and s.status()["added"] == 1
    assert Session.open(s.path).records == s.records


def test_replacing_clefts_by_a_detectors_is_one_decision_each_and_undoable(
    tmp_path: Path,
) -> None:
    s = _session(tmp_path)
    before = _state(s)
    found = [np.array([[0, 0, 0], [0, 0, 1]]), np.array([[4, 30, 30]])]
    ids = s.replace_predicted([2, 3, 99], found, [0.75, 0.5])  # 99: not a cleft, skipped
    assert sorted(s.records) == sorted([1, *ids]) and len(ids) == 2
    assert [s.records[c].score for c in ids] == [0.75, 0.5]
    assert all(s.records[c].origin == "predicted" for c in ids)
    assert s.labels[0, 0, 1] == ids[0] and s.labels[4, 30, 30] == ids[1]
    assert not (s.labels == 2).any() and not (s.labels == 3).any()
    assert [e["decision"]["action"] for e in s.entries] == ["delete"] * 2 + ["reseed"] * 2
    for _ in range(4):
        s.undo()
    assert _state(s) == before
    with pytest.raises(AvanInputError, match="2 clefts found but 1 scores"):
        s.replace_predicted([], found, [0.5])
    assert len(s.entries) == 8  # 4 decisions, 4 undos; the refused call wrote nothing


def _random_decision(s: Session, rng: random.Random) -> dict[str, Any]:
    clefts = sorted(s.records)
    kind = rng.choice(
        ["accept", "reject", "note", "set_partners", "assign", "delete", "merge", "reseed",
         "undo", "redo", "undo"]
    )  # fmt: skip
    if kind in ("undo", "redo") or not clefts:
        return {
            "action": kind if clefts else "reseed",
            **({} if clefts else {"voxels": [[rng.randrange(6), rng.randrange(32), 31]]}),
        }
    cleft = rng.choice(clefts)
    if kind == "note":
        return {"action": "note", "cleft": cleft, "text": f"n{rng.randrange(99)}"}
    if kind == "set_partners":
        ids = rng.sample(range(1, 30), 3)
        return {"action": "set_partners", "cleft": cleft, "pre": ids[:1], "post": ids[1:]}
    if kind == "assign":
        ids = rng.sample(range(1, 30), 4)
        return {"action": "assign", "cleft": cleft, "pre": ids[:1], "post": ids[1:3],
                "candidates": ids, "pre_scores": [rng.random() for _ in ids],
                "post_scores": [rng.random() for _ in ids]}  # fmt: skip
    if kind == "merge" and len(clefts) >= 2:
        return {"action": "merge", "clefts": rng.sample(clefts, 2)}
    if kind == "reseed":
        z, y = rng.randrange(6), rng.randrange(32)
        return {"action": "reseed", "voxels": [[z, y, x] for x in range(rng.randrange(20, 28), 32)]}
    if kind == "merge":
        kind = "accept"
    return {"action": kind, "cleft": cleft}


def _run_script(s: Session, n: int, seed: int) -> tuple[list[dict[str, Any]], list[Any]]:
    """Apply ``n`` random valid decisions; the decisions and the state after each."""
    rng = random.Random(seed)
    decisions, states = [], [_state(s)]
    while len(decisions) < n:
        decision = _random_decision(s, rng)
        try:
            s.apply(decision)
        except AvanInputError:
            continue  # nothing to undo, a reseed on taken voxels...
        decisions.append(decision)
        states.append(_state(s))
    return decisions, states


@pytest.mark.parametrize("in_memory", [True, False], ids=["memory", "disk"])
def test_undo_redo_walk_back_and_forth_exactly(tmp_path: Path, in_memory: bool) -> None:
    s = _session(tmp_path, in_memory=in_memory)
    steps = []
    rng = random.Random(5)
    states = [_state(s)]
    while len(steps) < 200:  # decisions only: undo/redo come after
        decision = _random_decision(s, rng)
        if decision["action"] in ("undo", "redo"):
            continue
        try:
            s.apply(decision)
        except AvanInputError:
            continue
        steps.append(decision)
        states.append(_state(s))
    for k in range(len(steps), 0, -1):
        s.undo()
        assert _state(s) == states[k - 1], f"undo to step {k - 1}"
    with pytest.raises(AvanInputError, match="nothing to undo"):
        s.undo()
    for k in range(1, len(steps) + 1):
        s.redo()
        assert _state(s) == states[k], f"redo to step {k}"
    assert _state(Session.open(s.path)) == states[-1]
    s.undo()
    s.apply({"action": "note", "cleft": min(s.records), "text": "new branch"})
    with pytest.raises(AvanInputError, match="nothing to redo"):
        s.redo()  # a new decision ends the redo history


@pytest.mark.parametrize("in_memory", [True, False], ids=["memory", "disk"])
def test_reopening_after_every_step_gives_the_same_state(tmp_path: Path, in_memory: bool) -> None:
    decisions, states = _run_script(_session(tmp_path / "reference"), 60, seed=11)
    s = _session(tmp_path, in_memory=in_memory)
    for k, decision in enumerate(decisions):
        reopened = Session.open(s.path) if k else s
        if k:
            assert _state(reopened) == states[k]
        s = reopened
        s.apply(decision)
    assert _state(Session.open(s.path)) == states[-1]


@pytest.mark.parametrize("in_memory", [True, False], ids=["memory", "disk"])
def test_stale_label_store_is_rebuilt_from_the_journal(tmp_path: Path, in_memory: bool) -> None:
    s = _session(tmp_path, in_memory=in_memory)
    _, states = _run_script(s, 30, seed=3)
    (s.path / "labels.json").write_text(json.dumps({"journal_entries": 7}))  # a crash mid-write
    assert _state(Session.open(s.path)) == states[-1]
    assert json.loads((s.path / "labels.json").read_text())["journal_entries"] == 30


def test_a_torn_last_journal_line_is_dropped(tmp_path: Path) -> None:
    s = _session(tmp_path)
    _, states = _run_script(s, 10, seed=4)
    with open(s.path / "journal.jsonl", "ab") as handle:
        handle.write(b'{"seq": 10, "decision": {"act')  # killed while writing
    reopened = Session.open(s.path)
    assert _state(reopened) == states[-1] and len(reopened.entries) == 10
    assert (s.path / "journal.jsonl").read_bytes().endswith(b"\n")


WORKER = """
import json, sys
from napari_avan.core.session import Session
s = Session.open(sys.argv[1])
decisions = json.loads(open(sys.argv[2]).read())
print("ready", flush=True)
for d in decisions[len(s.entries):]:
    s.apply(d)
    print(len(s.entries), flush=True)
"""


def _fingerprint(state: tuple[bytes, dict[int, dict[str, Any]]]) -> str:
    labels, records = state
    text = json.dumps({str(k): v for k, v in records.items()}, sort_keys=True)
    return hashlib.sha256(labels + text.encode()).hexdigest()


@pytest.mark.slow
@pytest.mark.parametrize("in_memory", [True, False], ids=["memory", "disk"])
def test_sigkill_loses_no_returned_decision_and_half_applies_none(
    tmp_path: Path, in_memory: bool
) -> None:
    reference = _session(tmp_path / "ref")
    decisions, states = _run_script(reference, 200, seed=21)
    expected = [_fingerprint(state) for state in states]
    script = tmp_path / "decisions.json"
    script.write_text(json.dumps(decisions))
    path = _session(tmp_path / "run-0", in_memory=in_memory).path
    rng = random.Random(7)
    reached = []
    while len(reached) < 20:
        proc = subprocess.Popen(
            [sys.executable, "-c", WORKER, str(path), str(script)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.0, 0.5))  # while it applies decisions
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate()
        returned = [int(line) for line in out.split()]
        reopened = Session.open(path)
        done = len(reopened.entries)
        if returned:
            assert done >= returned[-1], "a decision whose call had returned was lost"
        assert _fingerprint(_state(reopened)) == expected[done], f"half-applied at {done}"
        reached.append(done)
        if done == len(decisions):  # the script ran to its end: start it again
            path = _session(tmp_path / f"run-{len(reached)}", in_memory=in_memory).path
    print(f"\n[session kill] 20 SIGKILLs, journal entries at each: {reached}")
    final = Session.open(path)
    for d in decisions[len(final.entries) :]:
        final.apply(d)
    assert _fingerprint(_state(final)) == expected[-1]
