"""Pruner baselines (issue 4): candidates and labels, decisions, training, inference, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from napari_avan.cli import main
from napari_avan.core.candidates import signed_proximity
from napari_avan.core.synth import synthesize
from napari_avan.io import read_volume
from napari_avan.models.checkpoint import load_model, resolve_model
from napari_avan.models.device import plan
from napari_avan.models.pruners import (
    PROXIMITY_WEIGHTS,
    PrunerCandidates,
    assign_pruner,
    decide,
    load_proximity,
    predict_proximity,
)
from napari_avan.models.train import PrunerSampler, TrainSettings, iter_train, prepare_volume
from napari_avan.types import AvanInputError

SHAPE = (8, 96, 96)
VOXEL = (40.0, 4.0, 4.0)
FP32 = plan("cpu", allow_bf16=False)


def _synth(seed: int, polyadic: bool = False):
    return synthesize(seed=seed, shape=SHAPE, polyadic=polyadic)


def _volume(seed: int, polyadic: bool = False, working=VOXEL):
    s = _synth(seed, polyadic)
    return prepare_volume(
        s.image, s.segmentation, s.clefts, s.partners, s.voxel_size_nm, working, f"seed{seed}"
    )


def _edges(partners: pd.DataFrame) -> set[tuple[int, int, int]]:
    return {(int(c), int(a), int(b)) for c, a, b in partners[["cleft_id", "pre_id", "post_id"]]
            .itertuples(index=False)}  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A mask pruner, a proximity detector and a proximity pruner, a few steps each."""
    root = tmp_path_factory.mktemp("pruners")
    train, val = [_volume(31), _volume(32, polyadic=True)], [_volume(33)]
    small = {"steps": 3, "val_every": 3, "widths": (16, 16)}
    for _ in iter_train(
        TrainSettings("mask-pruner", voxel_size_nm=VOXEL, **small), train, val, root / "mask",
        run=FP32,
    ):  # fmt: skip
        pass
    detector_voxel = (40.0, 8.0, 8.0)
    dtrain = [_volume(31, working=detector_voxel)]
    dval = [_volume(33, working=detector_voxel)]
    settings = TrainSettings(
        "clefts", steps=2, val_every=2, widths=(16, 16), patch=(4, 32, 32), target="proximity",
        voxel_size_nm=detector_voxel,
    )  # fmt: skip
    for _ in iter_train(settings, dtrain, dval, root / "prox", run=FP32):
        pass
    return root


# --------------------------------------------------------------------------- candidates


def test_mask_candidates_hold_every_true_pair_with_label_one() -> None:
    s = _synth(41, polyadic=True)
    cands = PrunerCandidates("mask-pruner", s.image, s.segmentation, s.clefts, VOXEL,
                             partners=s.partners)  # fmt: skip
    rows = cands.table[["cleft_id", "pre_id", "post_id"]].astype(np.int64)
    positive = {tuple(r) for r, y in zip(rows.itertuples(index=False), cands.labels,
                                         strict=True) if y == 1}  # fmt: skip
    assert positive == _edges(s.partners)
    assert 0 < cands.labels.sum() < len(cands)  # negatives too
    x = cands.inputs(int(np.argmax(cands.labels)))
    assert x.shape == (4, 8, 96, 96) and x.dtype == np.float32
    cleft, pre, post = x[1:]
    assert cleft.any() and pre.any() and post.any()  # the patch sits on the true pair
    assert set(np.unique(x[1:])) <= {0.0, 1.0}


def test_proximity_candidates_from_the_true_proximity_find_the_true_pairs() -> None:
    s = _synth(42)
    prox = signed_proximity(s.clefts, s.segmentation, s.partners, VOXEL)
    cands = PrunerCandidates("proximity-pruner", s.image, s.segmentation, s.clefts, VOXEL,
                             partners=s.partners, proximity=prox)  # fmt: skip
    found = {
        (int(c), int(a), int(b))
        for (c, a, b), y in zip(
            cands.table[["cleft_id", "pre_id", "post_id"]].itertuples(index=False, name=None),
            cands.labels, strict=True,
        )
        if y == 1
    }  # fmt: skip
    assert found == _edges(s.partners)
    x = cands.inputs(int(np.argmax(cands.labels)))
    assert x[1].max() > 0.3 and x[1].min() < -0.3  # the signed proximity channel
    with pytest.raises(AvanInputError, match="signed proximity map"):
        PrunerCandidates("proximity-pruner", s.image, s.segmentation, s.clefts, VOXEL)


def test_sampler_alternates_true_and_false_pairs() -> None:
    s = _synth(43)
    cands = PrunerCandidates("mask-pruner", s.image, s.segmentation, s.clefts, VOXEL,
                             partners=s.partners)  # fmt: skip
    sampler = PrunerSampler([cands])
    rng = np.random.default_rng(0)
    assert [float(sampler.draw(rng, positive=p)[1][0]) for p in (True, False, True)] == [1, 0, 1]
    cands.labels[:] = 0
    with pytest.raises(AvanInputError, match="no candidate pair"):
        PrunerSampler([cands])


# --------------------------------------------------------------------------- decisions


def test_decide_takes_the_best_pair_or_every_pair_above_the_threshold() -> None:
    table = pd.DataFrame(
        {"cleft_id": [1, 1, 1, 2, 2, 0, 3], "pre_id": [5, 5, 6, 7, 7, 9, 4],
         "post_id": [6, 8, 5, 8, 8, 9, 3]}
    )  # fmt: skip
    scores = np.array([0.9, 0.7, 0.2, 0.3, 0.1, 0.99, 0.4])
    dyadic = decide(table, scores)
    assert dyadic[["cleft_id", "pre_id", "post_id"]].values.tolist() == [
        [1, 5, 6], [2, 7, 8], [3, 4, 3]
    ]  # fmt: skip
    poly = decide(table, scores, polyadic=True, threshold=0.5)
    got = set(map(tuple, poly[["cleft_id", "pre_id", "post_id"]].values.tolist()))
    # cleft 2 and 3 reach no threshold: their best pair; a pair met twice counts once
    assert got == {(1, 5, 6), (1, 5, 8), (2, 7, 8), (3, 4, 3)}
    assert len(poly) == 4
    assert decide(table, scores, cleft_ids=[2])["cleft_id"].tolist() == [2]


# --------------------------------------------------------------------------- train and infer


def test_trained_pruners_load_and_assign_every_cleft(trained: Path) -> None:
    model = load_model(trained / "mask")
    meta = model.metadata
    assert meta["task"] == "mask-pruner" and meta["target"] == "pair"
    assert (trained / "mask" / "log.csv").is_file()
    s = _synth(44)
    edges = assign_pruner(model, s.image, s.clefts, s.segmentation, s.voxel_size_nm, run=FP32)
    ids = set(np.unique(s.clefts).tolist()) - {0}
    assert set(edges["cleft_id"]) == ids  # dyadic: one pair per cleft
    assert edges.groupby("cleft_id").size().max() == 1
    assert (edges["pre_id"] != edges["post_id"]).all()
    # data at a finer voxel size is resampled; ids stay those of the data
    fine = assign_pruner(
        model, s.image, s.clefts, s.segmentation, (40.0, 2.0, 2.0), run=FP32, polyadic=True
    )
    assert set(fine["cleft_id"]) <= ids and len(fine)


def test_proximity_detector_and_pruner_travel_together(trained: Path) -> None:
    detector = load_model(trained / "prox")
    assert detector.metadata["target"] == "proximity"
    log = pd.read_csv(trained / "prox" / "log.csv")
    assert {"sign_f1", "pre_f1", "post_f1"} <= set(log.columns)
    s = _synth(45)
    prox = predict_proximity(detector, s.image, s.voxel_size_nm, run=FP32)
    assert prox.shape == s.image.shape and -1 <= prox.min() and prox.max() <= 1
    with pytest.raises(AvanInputError, match="not a signed proximity detector"):
        predict_proximity(resolve_model(None, "cleft-detector"), s.image, s.voxel_size_nm)


def test_proximity_pruner_trains_on_a_proximity_map_and_keeps_its_detector(
    trained: Path, tmp_path: Path, monkeypatch
) -> None:
    train, val = [_volume(31)], [_volume(33)]
    settings = TrainSettings("proximity-pruner", steps=2, val_every=2, widths=(16, 16),
                             voxel_size_nm=VOXEL)  # fmt: skip
    with pytest.raises(AvanInputError, match="needs its signed proximity detector"):
        list(iter_train(settings, train, val, tmp_path / "a", run=FP32))
    with pytest.raises(AvanInputError, match="not a signed proximity detector"):
        list(iter_train(settings, train, val, tmp_path / "b", run=FP32,
                        proximity_model=trained / "mask"))  # fmt: skip
    # a detector trained for 2 steps finds no synapse: its maps are replaced by the true
    # signed proximity, so the pruner has true pairs to learn from
    truth = {id(v.image): signed_proximity(v.clefts, v.segmentation, v.partners, VOXEL)
             for v in train + val}  # fmt: skip
    monkeypatch.setattr(
        "napari_avan.models.train.validation.predict_proximity",
        lambda _m, image, *a, **k: truth[id(image)],
    )
    list(iter_train(settings, train, val, tmp_path / "c", run=FP32,
                    proximity_model=trained / "prox"))  # fmt: skip
    pruner = load_model(tmp_path / "c")
    assert pruner.metadata["task"] == "proximity-pruner"
    inner = load_proximity(pruner)
    assert inner.metadata["target"] == "proximity"
    s = _synth(47)
    edges = assign_pruner(pruner, s.image, s.clefts, s.segmentation, s.voxel_size_nm, run=FP32,
                          proximity=signed_proximity(s.clefts, s.segmentation, s.partners,
                                                     VOXEL))  # fmt: skip
    assert set(edges["cleft_id"]) == set(np.unique(s.clefts).tolist()) - {0}
    (tmp_path / "c" / PROXIMITY_WEIGHTS).write_bytes(b"damaged")
    with pytest.raises(AvanInputError, match="sha256"):
        load_proximity(pruner)


# --------------------------------------------------------------------------- CLI


def test_cli_trains_a_mask_pruner_and_assigns_with_it(tmp_path: Path, capsys) -> None:
    out = tmp_path / "mp"
    code = main([
        "train", "mask-pruner", "--out", str(out), "--synthetic", "1", "--val-synthetic", "1",
        "--synthetic-shape", "8,96,96", "--steps", "2", "--val-every", "2", "--widths", "16,16",
        "--no-bf16", "--quiet",
    ])  # fmt: skip
    assert code == 0
    assert json.loads((out / "recipe.json").read_text())["command"].startswith(
        "napari-avan train mask-pruner"
    )
    assert main(["synth", "--out", str(tmp_path / "s.zarr"), "--shape", "8,96,96",
                 "--seed", "46"]) == 0  # fmt: skip
    vol = str(tmp_path / "s.zarr")
    edges = tmp_path / "e.csv"
    code = main([
        "assign", f"{vol}:image", "--clefts", f"{vol}:clefts", "--segmentation",
        f"{vol}:segmentation", "--method", "mask-pruner", "--model", str(out), "--out",
        str(edges), "--quiet", "--device", "cpu",
    ])  # fmt: skip
    assert code == 0
    table = pd.read_csv(edges)
    clefts = read_volume(f"{vol}:clefts", lazy=False).data
    assert set(table["cleft_segid"]) == set(np.unique(clefts).tolist()) - {0}
    # the wrong kind of model for the method is refused in one line
    capsys.readouterr()
    code = main([
        "assign", f"{vol}:image", "--clefts", f"{vol}:clefts", "--segmentation",
        f"{vol}:segmentation", "--method", "proximity-pruner", "--model", str(out), "--out",
        str(tmp_path / "f.csv"), "--quiet",
    ])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "mask-pruner model" in err and len(err.strip().splitlines()) == 1
