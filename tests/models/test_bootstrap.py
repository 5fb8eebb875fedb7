"""Bootstrapped rounds (issue 14): training data from a session's decisions, a round that
fine-tunes and predicts again, cancel, the round history on disk, the command line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_avan.cli import main
from napari_avan.core.session import Session, records_from_partners
from napari_avan.core.synth import synthesize
from napari_avan.io.export import keep_session_volume
from napari_avan.models.bootstrap import (
    ROUND_FILE,
    apply_round,
    automatic_box,
    iter_round,
    parse_box,
    reviewed_clefts,
    round_data,
    run_round,
)
from napari_avan.models.checkpoint import load_model, resolve_model, save_model
from napari_avan.models.train import DEFAULT_TRAIN_PATCH, DetectorSampler, TrainSettings, task_for
from napari_avan.types import AvanInputError

SHAPE = (32, 320, 320)
WORKING = (40.0, 8.0, 8.0)


@pytest.fixture(scope="module")
def synth():
    return synthesize(seed=9001, shape=SHAPE)


@pytest.fixture(scope="module")
def weak_detector(tmp_path_factory):
    """The bundled detector with its threshold at 0.99: like a detector whose outputs are
    too low on new data, it finds (almost) nothing until a round tunes it again."""
    model = resolve_model("cleft-detector", "cleft-detector")
    meta = {k: v for k, v in model.metadata.items() if k != "sha256"}
    meta["postprocess"] = {**meta.get("postprocess", {}), "threshold": 0.99}
    folder = tmp_path_factory.mktemp("weak") / "weak-detector"
    save_model(folder, model.network, meta)
    return folder


def _session(path: Path, synth, detector: Path | str = "cleft-detector") -> Session:
    """A session of the true clefts as predictions, with 2/3 of them accepted."""
    session = Session.create(
        path, synth.clefts, synth.voxel_size_nm, records=records_from_partners(synth.partners),
        models={"detector": str(detector), "avan": "avan"},
    )  # fmt: skip
    keep_session_volume(session, "image", synth.image)
    keep_session_volume(session, "segmentation", synth.segmentation)
    ids = sorted(session.records)
    for cleft in ids[: len(ids) * 2 // 3]:
        session.apply({"action": "accept", "cleft": cleft})
    return session


def _files(path: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def finished_round(tmp_path_factory, synth, weak_detector):
    """One round on a session started from the weak detector (20 steps per model)."""
    root = tmp_path_factory.mktemp("round")
    session = _session(root / "session", synth, weak_detector)
    before = {"entries": len(session.entries), "status": session.status()}
    record = run_round(session, root / "round1", steps=20, minutes=None, val_every=10)
    return session, record, before, root


# --------------------------------------------------------------------------- data


def test_reviewed_clefts_are_sorted_by_what_the_proofreader_did(tmp_path, synth):
    session = Session.create(tmp_path / "s", synth.clefts, synth.voxel_size_nm,
                             records=records_from_partners(synth.partners))  # fmt: skip
    a, b, c, d, *_ = sorted(session.records)
    session.apply({"action": "accept", "cleft": a})
    session.apply({"action": "reject", "cleft": b})
    session.apply({"action": "set_partners", "cleft": c, "pre": [1], "post": [2]})
    session.apply({"action": "set_partners", "cleft": d, "pre": [1], "post": [2]})
    session.apply({"action": "undo"})  # d's correction undone: d is unreviewed again
    z, y, x = np.argwhere(synth.clefts == 0)[0]
    effect = session.apply({"action": "reseed", "voxels": [[int(z), int(y), int(x)]]})
    added = next(k for k, r in effect.after.items() if r is not None)
    reviewed = reviewed_clefts(session)
    assert reviewed.accepted == [a]
    assert reviewed.rejected == [b]
    assert reviewed.corrected == [c]
    assert reviewed.added == [added]
    assert reviewed.positives == sorted([a, c, added])
    assert reviewed.negatives == [b]


def test_round_data_trains_on_reviewed_clefts_outside_the_box_and_nothing_unknown(tmp_path, synth):
    session = _session(tmp_path / "s", synth)
    ids = sorted(session.records)
    session.apply({"action": "reject", "cleft": ids[-1]})
    reviewed = reviewed_clefts(session)
    box = automatic_box(session, reviewed)
    data = round_data(session, synth.image, synth.segmentation, box, WORKING, (40.0, 4.0, 4.0),
                      DEFAULT_TRAIN_PATCH["clefts"])  # fmt: skip
    (train,) = data.detector_train
    labels = session.labels
    window = tuple(slice(box[i], box[i + 3]) for i in range(3))
    in_box = set(np.unique(labels[window]).tolist()) - {0}
    trained = set(np.unique(train.clefts).tolist()) - {0}
    # positives outside the box only; never a pending cleft, never one in the box
    assert trained == {c for c in reviewed.positives if c not in in_box}
    pending = [c for c, r in session.records.items() if r.status == "pending"]
    assert pending and not trained & set(pending)
    # voxels of pending clefts and of the box are of unknown truth (the loss ignores them)
    assert train.unknown is not None and train.negatives is not None
    from napari_avan.models.inference import resample

    pending_mask = resample(np.isin(labels, pending).astype(np.uint8), train.image.shape, 0)
    assert train.unknown[pending_mask > 0].all()
    box_mask = np.zeros(labels.shape, np.uint8)
    box_mask[window] = 1
    assert train.unknown[resample(box_mask, train.image.shape, 0) > 0].all()
    assert train.negatives.any() == (ids[-1] not in in_box)
    # validation: the box's reviewed clefts with their partners
    (val,) = data.detector_val
    assert set(np.unique(data.truth.clefts).tolist()) - {0} == set(
        data.truth.partners["cleft_id"].tolist()
    )
    assert val.unknown is not None
    assert data.counts["training_clefts"] == len(trained)
    assert data.counts["validation_clefts"] >= 1


def test_parse_box_and_bad_boxes():
    assert parse_box("0,10,20,5,30,40") == (0, 10, 20, 5, 30, 40)
    for text in ("0,10,20,5,30", "0,10,20,0,30,40", "a,b,c,d,e,f"):
        with pytest.raises(AvanInputError, match="Z0,Y0,X0,Z1,Y1,X1"):
            parse_box(text)


def test_sampler_with_unknown_voxels_weights_the_loss_and_draws_known_negatives(synth):
    from napari_avan.models.train import prepare_volume

    unknown = np.zeros(SHAPE, bool)
    unknown[:, : SHAPE[1] // 2] = True  # the first half in y is of unknown truth
    vol = prepare_volume(synth.image, synth.segmentation, synth.clefts, synth.partners,
                         synth.voxel_size_nm, WORKING, "half", unknown=unknown)  # fmt: skip
    sampler = DetectorSampler([vol], (8, 32, 32), min_positive=5)
    rng = np.random.default_rng(0)
    for _ in range(10):
        _, target = sampler.draw(rng, positive=False)
        assert target.shape == (2, 8, 32, 32)
        assert target[1].any(), "a negative patch is centred on known voxels"
    settings = TrainSettings("clefts", steps=1, voxel_size_nm=WORKING)
    task = task_for(settings)
    target = torch.zeros(1, 2, 4, 8, 8)
    target[:, 1, :2] = 1.0  # known: the first two sections
    logits = torch.zeros(1, 1, 4, 8, 8)
    changed = logits.clone()
    changed[:, :, 2:] = 9.0  # wrong only where the truth is unknown
    assert task.loss(changed, target).item() == pytest.approx(task.loss(logits, target).item())
    changed[:, :, :2] = 9.0
    assert task.loss(changed, target).item() > task.loss(logits, target).item() + 1.0


# --------------------------------------------------------------------------- a round


@pytest.mark.slow
def test_a_round_raises_validation_recall_and_records_itself(finished_round):
    session, record, _, root = finished_round
    base, after = record["base_metrics"], record["metrics"]
    assert base["cleft_recall"] < 0.5  # the weak start finds little
    assert after["cleft_recall"] > base["cleft_recall"]
    assert record["round"] == 1 and session.round == 1
    assert record["steps"] == {"detector": 20, "avan": 20}
    assert record["counts"]["training_clefts"] >= 1
    # the round's models are model folders with provenance, and the session's current ones
    for key, task in (("detector", "cleft-detector"), ("avan", "avan")):
        folder = Path(record["models"][key])
        assert folder.parent == root / "round1"
        model = load_model(folder)
        assert model.metadata["task"] == task
        provenance = model.metadata["provenance"]
        assert provenance["round"] == 1
        assert provenance["session"] == str(session.path.resolve())
        assert provenance["counts"]["training_clefts"] == record["counts"]["training_clefts"]
        assert session.meta["models"][key] == str(folder)
    assert json.loads((root / "round1" / ROUND_FILE).read_text()) == record


@pytest.mark.slow
def test_a_round_keeps_reviewed_clefts_and_replaces_the_pending_ones(finished_round):
    session, record, before, _ = finished_round
    accepted = [c for c, r in session.records.items() if r.status == "accepted"]
    assert len(accepted) == before["status"]["accepted"]  # every decision kept
    new = [c for c, r in session.records.items() if r.round == 1]
    assert len(new) == record["counts"]["predicted"]
    assert all(session.records[c].status == "pending" for c in new)
    assert all(session.records[c].candidates for c in new), "the new AVAN assigned them"
    assert all(session.records[c].score is not None for c in new)
    # every change is a journaled decision (deletes, re-seeds, assigns)
    added = len(session.entries) - before["entries"]
    assert added == record["counts"]["removed"] + 2 * record["counts"]["predicted"]


@pytest.mark.slow
def test_the_round_history_survives_reopening(finished_round):
    session, record, _, _ = finished_round
    again = Session.open(session.path)
    assert again.meta["rounds"] == [record]
    assert again.round == 1
    assert again.meta["models"] == session.meta["models"]
    # an automatic box is chosen again by the next round (it grows with the review)
    assert record["validation_box_chosen"] == "automatic" and "validation_box" not in again.meta
    assert again.status() == session.status()
    np.testing.assert_array_equal(again.labels, session.labels)
    prob = again.meta["volumes"]["prob"]
    assert (session.path / prob).is_dir()


@pytest.mark.slow
def test_a_cancelled_round_leaves_the_session_as_it_was(tmp_path, synth):
    session = _session(tmp_path / "s", synth)
    files = _files(session.path)
    steps = iter_round(session, tmp_path / "round", steps=50, minutes=None, val_every=25)
    for progress in steps:
        if progress.phase == "detector":
            break
    assert (tmp_path / "round").is_dir()  # training had started writing
    steps.close()
    assert not (tmp_path / "round").exists()
    assert _files(session.path) == files
    again = Session.open(session.path)
    assert again.round == 0 and "rounds" not in again.meta


def test_a_round_refuses_an_existing_folder_and_too_few_reviews(tmp_path, synth):
    session = _session(tmp_path / "s", synth)
    (tmp_path / "taken").mkdir()
    with pytest.raises(AvanInputError, match="exists"):
        next(iter_round(session, tmp_path / "taken", steps=1))
    bare = Session.create(tmp_path / "bare", synth.clefts, synth.voxel_size_nm)
    keep_session_volume(bare, "image", synth.image)
    keep_session_volume(bare, "segmentation", synth.segmentation)
    with pytest.raises(AvanInputError, match="at least 2 reviewed clefts"):
        next(iter_round(bare, tmp_path / "r", steps=1))
    assert not (tmp_path / "r").exists()
    with pytest.raises(AvanInputError, match="reaches outside"):
        next(iter_round(session, tmp_path / "r", steps=1, validation=(0, 0, 0, 40, 10, 10)))


# --------------------------------------------------------------------------- command line


@pytest.mark.slow
def test_bootstrap_command_runs_a_round_and_prints_it(tmp_path, synth, capsys):
    session = _session(tmp_path / "s", synth)
    box = automatic_box(session, reviewed_clefts(session))
    code = main(["bootstrap", str(session.path), "--out", str(tmp_path / "r1"), "--steps", "2",
                 "--val-every", "2", "--json", "--quiet",
                 "--validation", ",".join(map(str, box))])  # fmt: skip
    assert code == 0
    record = json.loads(capsys.readouterr().out)
    assert record["validation_box"] == list(box) and record["validation_box_chosen"] == "given"
    assert record["round"] == 1 and record["steps"] == {"detector": 2, "avan": 2}
    assert Session.open(session.path).meta["rounds"] == [record]
    # a second round starts from the first one's models and keeps the box given
    code = main(["bootstrap", str(session.path), "--out", str(tmp_path / "r2"), "--steps", "1",
                 "--val-every", "1"])  # fmt: skip
    assert code == 0
    text = capsys.readouterr().out
    assert "round 2" in text and "cleft F1" in text
    reopened = Session.open(session.path)
    second = reopened.meta["rounds"][1]
    assert second["base_models"] == record["models"]
    assert second["validation_box"] == record["validation_box"]
    assert second["validation_box_chosen"] == "kept from the last round"
    # an existing --out is refused before anything runs
    code = main(["bootstrap", str(session.path), "--out", str(tmp_path / "r1"), "--steps", "1"])
    assert code == 2
    assert "exists" in capsys.readouterr().err
    shutil.rmtree(tmp_path / "r2")


def test_apply_round_is_undoable_decision_by_decision(tmp_path, synth):
    """The decisions a round applies are ordinary ones: undo walks them back."""
    from napari_avan.models.bootstrap import NewCleft, RoundPlan

    session = _session(tmp_path / "s", synth)
    labels = session.labels.copy()
    pending = [c for c, r in session.records.items() if r.status == "pending"]
    voxels = np.argwhere(session.labels == pending[0])

    class _Assignment:
        cleft_id, pre_ids, post_ids, candidates = 999, [5], [7], [5, 7]
        pre_scores, post_scores = [0.9, 0.1], [0.2, 0.8]

    record = {"round": 1, "models": {"avan": "avan", "detector": "cleft-detector"},
              "validation_box": [0, 0, 0, *SHAPE]}  # fmt: skip
    plan = RoundPlan(tmp_path / "r", record, np.zeros(SHAPE, np.float32), pending,
                     [NewCleft(voxels, 0.7, _Assignment())])  # fmt: skip
    apply_round(session, plan)
    assert session.round == 1
    assert not set(pending) & set(session.records)
    for _ in range(len(pending) + 2):
        session.undo()
    np.testing.assert_array_equal(session.labels, labels)
    assert set(pending) <= set(session.records)


def test_keep_last_keeps_the_last_weights_not_the_best_validated(tmp_path):
    """A round keeps each model's last weights: its few validation clefts would choose
    checkpoints by chance."""
    from napari_avan.models.device import plan
    from napari_avan.models.train import iter_train, prepare_volume

    s = synthesize(seed=11, shape=(8, 96, 96))
    working = (40.0, 4.0, 4.0)
    vol = prepare_volume(s.image, s.segmentation, s.clefts, s.partners, s.voxel_size_nm,
                         working, "seed11")  # fmt: skip
    fp32 = plan("cpu", allow_bf16=False)
    runs = {}
    for keep_last in (False, True):
        settings = TrainSettings("clefts", steps=6, val_every=1, voxel_size_nm=working,
                                 widths=(4, 8), keep_last=keep_last, min_positive=1)  # fmt: skip
        out = tmp_path / f"keep_last_{keep_last}"
        runs[keep_last] = list(iter_train(settings, [vol], [vol], out, run=fp32))
        model = load_model(out)
        if keep_last:
            assert model.metadata["metrics"] == runs[keep_last][-1].validation
    # the runs are alike up to the choice (same seed): the saved figures differ only
    # where the best validation was not the last
    best = runs[False][-1].best
    assert best == max(
        (p.validation for p in runs[False]), key=lambda v: (v["cleft_f1"], v["voxel_f1"])
    )
