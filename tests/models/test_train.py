"""Training (issue 4): augmentation, sampling, the loop, resume, budgets and bad input."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_avan.cli import main
from napari_avan.core.synth import synthesize
from napari_avan.models.augment import Augmentation, geometric, intensity
from napari_avan.models.checkpoint import LoadedModel, load_model, resolve_model
from napari_avan.models.detect import DEFAULT_OVERLAP, DEFAULT_PATCH, detect
from napari_avan.models.device import plan
from napari_avan.models.networks import PrunerNet, ResidualSymmetricUNet
from napari_avan.models.train import (
    LOG_FILE,
    RECIPE_FILE,
    STATE_FILE,
    AvanSampler,
    AvanTask,
    CleftDetectorTask,
    CleftNetDetectorTask,
    DetectorSampler,
    MaskPrunerTask,
    ProximityDetectorTask,
    ProximityPrunerTask,
    TrainSettings,
    detector_voxel_size,
    iter_train,
    prepare_volume,
    task_for,
)
from napari_avan.models.tune import (
    DETECTOR_MIN_VOLUMES_NM3,
    DETECTOR_THRESHOLDS,
    PARTNER_THRESHOLDS,
    detector_probability,
    tune_avan,
)
from napari_avan.types import AvanInputError

SHAPE = (8, 96, 96)
#: Tiny networks in bf16 hit slow paths of the CPU convolutions: tests run them in fp32.
FP32 = plan("cpu", allow_bf16=False)
TINY = (4, 8)


def _volume(seed: int, polyadic: bool = False, working=(40.0, 4.0, 4.0)):
    s = synthesize(seed=seed, shape=SHAPE, polyadic=polyadic)
    return prepare_volume(
        s.image, s.segmentation, s.clefts, s.partners, s.voxel_size_nm, working, f"seed{seed}"
    )


@pytest.fixture(scope="module")
def volumes():
    return [_volume(11), _volume(12, polyadic=True)], [_volume(21)]


def _settings(kind: str = "avan", **kw) -> TrainSettings:
    values = {
        "steps": 4,
        "val_every": 2,
        "patch": (4, 32, 32),
        "widths": TINY,
        "voxel_size_nm": (40.0, 4.0, 4.0),
    }
    values.update(kw)
    return TrainSettings(kind, **values)


# --------------------------------------------------------------------------- augmentation


def test_geometric_moves_every_array_alike_and_intensity_stays_in_range() -> None:
    rng = np.random.default_rng(0)
    base = np.random.default_rng(1).random((4, 16, 16)).astype(np.float32)
    changed = 0
    for _ in range(20):
        a, b = geometric([base, base.copy()], rng, Augmentation())
        np.testing.assert_array_equal(a, b)
        assert sorted(a.ravel().tolist()) == sorted(base.ravel().tolist())  # a permutation
        changed += not np.array_equal(a, base)
        out = intensity(a, rng, Augmentation(noise_p=1.0, blur_p=1.0, missing_p=1.0))
        assert out.dtype == np.float32 and out.min() >= 0 and out.max() <= 1
    assert changed > 10
    (same,) = geometric([base], rng, Augmentation.none())
    np.testing.assert_array_equal(same, base)
    np.testing.assert_allclose(intensity(base, rng, Augmentation.none()), base)


# --------------------------------------------------------------------------- sampling


def test_detector_sampler_balances_clefts_and_background(volumes) -> None:
    train, _ = volumes
    sampler = DetectorSampler(train, (4, 32, 32))
    rng = np.random.default_rng(0)
    for positive in (True, False) * 5:
        image, target = sampler.draw(rng, positive)
        assert image.shape == target.shape == (4, 32, 32)
        assert (target.sum() >= sampler.min_positive) == positive


def test_avan_sampler_targets_are_the_partner_segments(volumes) -> None:
    train, _ = volumes
    sampler = AvanSampler(train, (4, 32, 32))
    rng = np.random.default_rng(0)
    for _ in range(10):
        x, y = sampler.draw(rng)
        assert x.shape == (2, 4, 32, 32) and y.shape == (2, 4, 32, 32)
        assert x[1].sum() > 0, "the cleft's mask must be in its patch"
        assert y[0].sum() > 0 and y[1].sum() > 0
        assert not np.any((y[0] > 0) & (y[1] > 0)), "pre and post segments differ"


def test_samplers_refuse_volumes_without_clefts(volumes) -> None:
    train, _ = volumes
    empty = prepare_volume(
        train[0].image,
        train[0].segmentation,
        np.zeros_like(train[0].clefts),
        train[0].partners.iloc[:0],
        (40, 4, 4),
        (40, 4, 4),
    )
    with pytest.raises(AvanInputError, match="no cleft"):
        DetectorSampler([empty], (4, 32, 32))
    with pytest.raises(AvanInputError, match="no cleft with partners"):
        AvanSampler([empty], (4, 32, 32))


def test_detector_working_size_coarsens_in_plane_only() -> None:
    assert detector_voxel_size((40, 4, 4)) == (40, 8, 8)
    assert detector_voxel_size((50, 4.6, 4.6)) == pytest.approx((50, 9.2, 9.2))
    assert detector_voxel_size((40, 8, 8)) == (40, 8, 8)


def test_prepare_volume_resamples_and_checks(volumes) -> None:
    s = synthesize(seed=11, shape=SHAPE)
    vol = prepare_volume(
        s.image, s.segmentation, s.clefts, s.partners, (40, 4, 4), (40, 8, 8), "half"
    )
    assert vol.image.shape == (8, 48, 48) and vol.image.dtype == np.float32
    assert vol.clefts.dtype == s.clefts.dtype
    assert set(vol.partners["cleft_id"]) <= set(np.unique(vol.clefts).tolist())
    with pytest.raises(AvanInputError, match="shape"):
        prepare_volume(s.image[:4], s.segmentation, s.clefts, s.partners, (40, 4, 4), (40, 4, 4))
    with pytest.raises(AvanInputError, match="integer"):
        prepare_volume(
            s.image, s.segmentation.astype(float), s.clefts, s.partners, (40, 4, 4), (40, 4, 4)
        )


# --------------------------------------------------------------------------- tasks


@pytest.mark.parametrize(
    ("kind", "target", "task", "model_task", "model_target", "network"),
    [
        ("clefts", "mask", CleftDetectorTask, "cleft-detector", "mask", ResidualSymmetricUNet),
        ("clefts", "proximity", ProximityDetectorTask, "cleft-detector", "proximity",
         ResidualSymmetricUNet),
        ("clefts", "cleftnet", CleftNetDetectorTask, "cleft-detector", "cleftnet",
         ResidualSymmetricUNet),
        ("avan", "mask", AvanTask, "avan", "pre-post", ResidualSymmetricUNet),
        ("mask-pruner", "mask", MaskPrunerTask, "mask-pruner", "pair", PrunerNet),
        ("proximity-pruner", "mask", ProximityPrunerTask, "proximity-pruner", "pair", PrunerNet),
    ],
)  # fmt: skip
def test_task_for_picks_the_task_of_kind_and_target(
    kind, target, task, model_task, model_target, network
) -> None:
    chosen = task_for(_settings(kind, target=target, widths=(16, 16)), proximity_model="p")
    assert type(chosen) is task
    assert (chosen.model_task, chosen.target) == (model_task, model_target)
    net = chosen.network(None)
    assert isinstance(net, network)
    if isinstance(net, ResidualSymmetricUNet):
        channels = {"mask": (1, 1), "proximity": (1, 1), "cleftnet": (1, 2)}[target]
        channels = channels if kind == "clefts" else (2, 2)
        assert (net.config.in_channels, net.config.out_channels) == channels
    # only the detector infers with a larger window than it trains on
    window = chosen.inference_window()
    assert window == ({"patch": list(DEFAULT_PATCH), "overlap": list(DEFAULT_OVERLAP)}
                      if kind == "clefts" else {})  # fmt: skip


def test_each_task_scores_a_hand_made_batch_with_its_loss() -> None:
    zeros = torch.zeros(2, 1, 2, 2, 2)
    half = torch.full((2, 1, 2, 2, 2), 0.5)
    ones = torch.ones(2, 1, 2, 2, 2)
    ln2 = math.log(2)
    # BCE of logit 0 is ln 2 whatever the target; Dice of p = 0.5 on 8 true voxels:
    # 1 - (2 * 4 + 1) / (4 + 8 + 1)
    loss = task_for(_settings("clefts")).loss(zeros, ones)
    assert float(loss) == pytest.approx(ln2 + 1 - 9 / 13)
    loss = task_for(_settings("clefts", target="proximity")).loss(zeros, half)
    assert float(loss) == pytest.approx(0.25)  # (tanh 0 - 0.5)^2
    loss = task_for(_settings("clefts", target="proximity")).loss(torch.full_like(half, 50), ones)
    assert float(loss) == pytest.approx(0.0)
    assert float(task_for(_settings("avan")).loss(zeros, ones)) == pytest.approx(ln2)
    # pruners: one logit per pair, targets (batch, 1)
    pruner = task_for(_settings("mask-pruner"))
    logits, labels = torch.tensor([0.0, 100.0, -100.0]), torch.tensor([[1.0], [1.0], [0.0]])
    assert float(pruner.loss(logits, labels)) == pytest.approx(ln2 / 3)


def test_tasks_rank_validations_by_their_own_figures() -> None:
    detector = task_for(_settings("clefts"))
    assert detector.better({"cleft_f1": 0.5, "voxel_f1": 0.1}, None)
    assert detector.better({"cleft_f1": 0.5, "voxel_f1": 0.2}, {"cleft_f1": 0.5, "voxel_f1": 0.1})
    assert not detector.better({"cleft_f1": 0.4, "voxel_f1": 0.9},
                               {"cleft_f1": 0.5, "voxel_f1": 0.1})  # fmt: skip
    proximity = task_for(_settings("clefts", target="proximity"))
    assert proximity.rank_keys == ("sign_f1",)
    dyadic_first = {"accuracy": 0.9, "edge_f1": 0.1}
    edges_first = {"accuracy": 0.5, "edge_f1": 0.8}
    for kind in ("avan", "mask-pruner", "proximity-pruner"):
        assert task_for(_settings(kind)).better(dyadic_first, edges_first)
        assert task_for(_settings(kind, polyadic=True)).better(edges_first, dyadic_first)


def test_tasks_check_init_models_and_the_proximity_detector(volumes) -> None:
    unet = task_for(_settings("avan")).network(None)
    pruner = task_for(_settings("mask-pruner")).network(None)
    with pytest.raises(AvanInputError, match="not a clefts model"):
        task_for(_settings("clefts")).network(LoadedModel(unet))
    with pytest.raises(AvanInputError, match="not a pruner"):
        task_for(_settings("mask-pruner")).network(LoadedModel(unet))
    with pytest.raises(AvanInputError, match="2 input and 2 output channels"):
        task_for(_settings("avan")).network(LoadedModel(pruner))
    assert task_for(_settings("avan")).network(LoadedModel(unet)) is unet
    train, val = volumes
    with pytest.raises(AvanInputError, match="needs its signed proximity detector"):
        task_for(_settings("proximity-pruner")).prepare(train, val, FP32)


def test_the_proximity_detector_prepares_signed_targets(volumes) -> None:
    task = task_for(_settings("clefts", target="proximity"))
    task.prepare(*volumes, FP32)
    assert len(task.val_targets) == len(volumes[1])
    assert -1 <= task.val_targets[0].min() and task.val_targets[0].max() <= 1
    assert task.val_targets[0].min() < 0 < task.val_targets[0].max()  # both sides


# --------------------------------------------------------------------------- the loop


def test_the_cleftnet_target_learns_the_mask_and_its_boundary(tmp_path: Path, volumes) -> None:
    task = task_for(_settings("clefts", target="cleftnet"))
    # the loss: BCE + Dice on each channel, unknown voxels (weight 0) left out of both
    zeros, ones = torch.zeros(2, 2, 2, 2, 2), torch.ones(2, 1, 2, 2, 2)
    ln2 = math.log(2)
    assert float(task.loss(zeros, torch.cat([ones, ones], 1))) == pytest.approx(
        2 * (ln2 + 1 - 9 / 13)
    )
    weight = torch.zeros(2, 1, 2, 2, 2)
    weight[..., 0] = 1  # half of the voxels known
    known = float(task.loss(zeros, torch.cat([ones, ones, weight], 1)))
    # per example, Dice on the 4 known voxels: 1 - (2 * 2 + 1) / (2 + 4 + 1)
    assert known == pytest.approx(2 * (ln2 + 1 - 5 / 7))
    # examples: the boundary channel is the mask's in-plane edge
    train, val = volumes
    task.prepare(train, val, FP32)
    rng = np.random.default_rng(3)
    image, target = task.example(rng, 0)  # even index: a patch holding a cleft
    assert image.shape[0] == 1 and target.shape == (2, *image.shape[1:])
    mask, boundary = target[0] > 0.5, target[1] > 0.5
    assert boundary.any() and not (boundary & ~mask).any()
    # training writes a two-channel detector that detection reads the mask channel of
    out = tmp_path / "cleftnet"
    for _ in iter_train(_settings("clefts", target="cleftnet"), train, val, out, run=FP32):
        pass
    model = resolve_model(out, "cleft-detector")
    assert model.metadata["target"] == "cleftnet"
    assert model.network.config.out_channels == 2
    found = detect(model, val[0].image, (40.0, 4.0, 4.0), run=FP32)
    assert found.prob.shape == val[0].image.shape and 0 <= found.prob.min()


def test_a_cleftnet_detector_fine_tuned_from_a_mask_detector_starts_from_it() -> None:
    bundled = resolve_model("cleft-detector", "cleft-detector")
    task = task_for(_settings("clefts", target="cleftnet", widths=None))
    wide = task.network(bundled)
    assert wide.config.out_channels == 2 and bundled.network.config.out_channels == 1
    x = torch.from_numpy(np.random.default_rng(0).random((1, 1, 8, 64, 64), np.float32))
    with torch.no_grad():
        narrow_out, wide_out = bundled.network.eval()(x), wide.eval()(x)
    torch.testing.assert_close(wide_out[:, :1], narrow_out)  # the mask channel as before
    torch.testing.assert_close(wide_out[:, 1:], narrow_out)  # the boundary starts as a copy
    assert task.prior == bundled.metadata["postprocess"]


def test_a_proximity_detector_gets_cleft_post_processing_on_its_maps_magnitude(
    tmp_path: Path, volumes
) -> None:
    train, val = volumes
    out = tmp_path / "proximity"
    settings = _settings("clefts", target="proximity")
    for _ in iter_train(settings, train, val, out, recipe={"command": "test"}, run=FP32):
        pass
    model = resolve_model(out, "cleft-detector")
    post = model.metadata["postprocess"]
    assert model.metadata["target"] == "proximity"
    assert post["threshold"] in DETECTOR_THRESHOLDS
    assert post["min_volume_nm3"] in DETECTOR_MIN_VOLUMES_NM3
    # tuning read what detection reads: the magnitude, never negative
    prob = detector_probability(model, val[0].image, FP32)
    assert prob.min() >= 0.0 and prob.max() <= 1.0


@pytest.mark.parametrize("kind", ["avan", "clefts"])
def test_training_writes_a_loadable_model_with_log_and_recipe(
    tmp_path: Path, volumes, kind: str
) -> None:
    train, val = volumes
    out = tmp_path / "model"
    steps = list(iter_train(_settings(kind), train, val, out, recipe={"command": "test"}, run=FP32))
    assert [p.step for p in steps] == [1, 2, 3, 4]
    assert [p.validation is not None for p in steps] == [False, True, False, True]
    assert steps[-1].fraction == 1.0 and steps[-1].saved
    assert not (out / STATE_FILE).exists(), "the resumable state goes when the run ends"
    log = (out / LOG_FILE).read_text().splitlines()
    assert log[0].startswith("step,elapsed_s,lr,loss") and len(log) == 3
    assert json.loads((out / RECIPE_FILE).read_text()) == {"command": "test"}
    task = "avan" if kind == "avan" else "cleft-detector"
    model = resolve_model(out, task)
    assert model.metadata["task"] == task and model.metadata["steps"] == 4
    assert model.metadata["metrics"] == steps[-1].best
    # the post-processing was chosen on the validation volumes when the run ended
    post = model.metadata["postprocess"]
    if kind == "avan":
        assert post["pre_threshold"] in (*PARTNER_THRESHOLDS, 1.0)  # 1.0: the argmax
        assert post["post_threshold"] in PARTNER_THRESHOLDS
        assert 0.0 <= post["validation_edge_f1"] <= 1.0
    else:
        assert post["threshold"] in DETECTOR_THRESHOLDS
        assert post["min_volume_nm3"] in DETECTOR_MIN_VOLUMES_NM3
        assert 0.0 <= post["validation_cleft_f1"] <= 1.0
    other = "cleft-detector" if kind == "avan" else "avan"
    with pytest.raises(AvanInputError, match=f"a {other} model is needed"):
        resolve_model(out, other)


def test_an_interrupted_run_resumes_where_it_stopped(tmp_path: Path, volumes) -> None:
    train, val = volumes
    run = FP32
    whole = tmp_path / "whole"
    for _ in iter_train(_settings(), train, val, whole, run=run):
        pass
    part = tmp_path / "part"
    for progress in iter_train(_settings(), train, val, part, run=run):
        if progress.step == 2:
            break  # interrupted after the first checkpoint
    assert (part / STATE_FILE).is_file()
    with pytest.raises(AvanInputError, match="--resume"):
        next(iter_train(_settings(), train, val, part, run=run))
    resumed = list(iter_train(_settings(), train, val, part, run=run, resume=True))
    assert [p.step for p in resumed] == [3, 4]
    assert not (part / STATE_FILE).exists()
    a = load_model(whole).network.state_dict()
    b = load_model(part).network.state_dict()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=1e-4)
    assert (part / LOG_FILE).read_text().count("\n") == 3
    with pytest.raises(AvanInputError, match="no training state"):
        next(iter_train(_settings(), train, val, part, run=run, resume=True))


def test_fine_tuning_starts_from_the_init_weights(tmp_path: Path, volumes) -> None:
    train, val = volumes
    first = tmp_path / "first"
    for _ in iter_train(_settings(steps=2), train, val, first, run=FP32):
        pass
    tuned = tmp_path / "tuned"
    for _ in iter_train(_settings(steps=2, lr=1e-9), train, val, tuned, init=first, run=FP32):
        pass
    # with a vanishing learning rate the weights stay those of --init (BatchNorm's running
    # statistics move with every forward pass, so only parameters are compared)
    a = dict(load_model(first).network.named_parameters())
    b = dict(load_model(tuned).network.named_parameters())
    assert all(torch.allclose(a[k], b[k], atol=1e-4) for k in a)
    assert load_model(tuned).metadata["training"]["init"] == str(first)
    # a bundled model is named, not given as a folder
    named = tmp_path / "named"
    for _ in iter_train(_settings(steps=1, lr=1e-9), train, val, named, init="avan", run=FP32):
        pass
    c = dict(load_model(named).network.named_parameters())
    bundled = dict(resolve_model("avan", "avan").network.named_parameters())
    assert all(torch.allclose(c[k], bundled[k], atol=1e-4) for k in bundled)
    with pytest.raises(AvanInputError, match="a cleft-detector model is needed"):
        next(
            iter_train(
                _settings("clefts", steps=2), train, val, tmp_path / "x", init=first, run=FP32
            )
        )


def test_settings_refuse_bad_budgets() -> None:
    with pytest.raises(AvanInputError, match="budget"):
        TrainSettings("avan")
    with pytest.raises(AvanInputError, match="kind"):
        TrainSettings("segmentation", steps=3)
    with pytest.raises(AvanInputError, match="steps"):
        TrainSettings("avan", steps=0)


# --------------------------------------------------------------------------- the command


def _cli(tmp_path: Path, *extra: str) -> list[str]:
    return [
        "train",
        "avan",
        "--out",
        str(tmp_path / "cli-model"),
        "--synthetic",
        "1",
        "--val-synthetic",
        "1",
        "--synthetic-shape",
        "8,64,64",
        "--widths",
        "4,8",
        "--patch",
        "4,32,32",
        "--quiet",
        "--no-bf16",
        *extra,
    ]


def test_cli_trains_and_records_the_command(tmp_path: Path, capsys) -> None:
    args = _cli(tmp_path, "--steps", "2", "--val-every", "1")
    assert main(args) == 0
    recipe = json.loads((tmp_path / "cli-model" / RECIPE_FILE).read_text())
    assert recipe["command"] == "napari-avan " + " ".join(args)
    assert "after 2 steps" in capsys.readouterr().out
    # the folder now exists: a second run refuses to replace it
    assert main(args) == 2
    assert "exists" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ((), "budget"),
        (("--steps", "2", "--image", "x.zarr"), "same number of times"),
        (("--steps", "2", "--val-split", "q=3"), "y=700"),
    ],
)
def test_cli_bad_training_input_is_one_line(tmp_path: Path, capsys, extra, message) -> None:
    try:
        code = main(_cli(tmp_path, *extra))
    except SystemExit as stop:  # argparse usage errors exit from the parser
        code = stop.code
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "cli-model").exists()


def test_avan_thresholds_are_the_best_of_the_grid_and_become_assign_defaults(
    tmp_path: Path, volumes
) -> None:
    from napari_avan.models.assign import iter_assign

    train, val = volumes
    list(iter_train(_settings("avan"), train, val, tmp_path / "m", run=FP32))
    model = load_model(tmp_path / "m")
    vol = train[1]  # polyadic truth
    choice = tune_avan(model, [vol], FP32)
    single_pre = vol.partners.groupby("cleft_id")["pre_id"].nunique().max() == 1
    assert (
        choice["pre_threshold"] == 1.0
        if single_pre
        else choice["pre_threshold"] in PARTNER_THRESHOLDS
    )

    def edges(**kw) -> set:
        found = set()
        for step in iter_assign(model, vol.image, vol.clefts, vol.segmentation,
                                (40.0, 4.0, 4.0), run=FP32, polyadic=True, **kw):  # fmt: skip
            found |= {(a.cleft_id, p, q) for a in step.finished for p, q in a.edges}
        return found

    # pre above 1.0: none, so the argmax; post above 0.0: every other candidate
    model.metadata["postprocess"] = {"pre_threshold": 1.0, "post_threshold": 0.0}
    everything = edges()
    assert everything == edges(pre_threshold=1.0, post_threshold=0.0)
    model.metadata["postprocess"] = {"pre_threshold": 1.0, "post_threshold": 1.0}
    assert edges() == edges(pre_threshold=1.0, post_threshold=1.0)
    assert len(edges()) < len(everything), "the defaults must change the result"


def test_the_command_line_fine_tunes_a_cleftnet_detector_from_the_bundled_one(
    tmp_path: Path,
) -> None:
    out = tmp_path / "cleftnet"
    code = main([
        "train", "clefts", "--target", "cleftnet", "--init", "cleft-detector", "--out", str(out),
        "--synthetic", "1", "--val-synthetic", "1", "--synthetic-shape", "8,96,96",
        "--steps", "2", "--val-every", "2", "--no-bf16", "--quiet",
    ])  # fmt: skip
    assert code == 0
    model = resolve_model(out, "cleft-detector")
    assert model.metadata["target"] == "cleftnet"
    assert model.metadata["training"]["init"] == "cleft-detector"
    assert model.network.config.out_channels == 2
