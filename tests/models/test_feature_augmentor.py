"""The feature augmentor (our reading of CleftNet's, Liu & Ji 2021) at the detector U-Net's
bottleneck: shapes, zero-output start, learning, model files, settings and the command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from napari_avan.cli import main
from napari_avan.models.checkpoint import (
    META_FILE,
    LoadedModel,
    architecture_of,
    load_model,
    resolve_model,
    save_model,
)
from napari_avan.models.networks import (
    FeatureAugmentor,
    ResidualSymmetricUNet,
    UNetConfig,
    cleft_detector_config,
    fold_batchnorm,
)
from napari_avan.models.train import TrainSettings, task_for
from napari_avan.types import AvanInputError

TINY = (4, 8)


def _unet(augmentor: int = 0, **kwargs) -> ResidualSymmetricUNet:
    torch.manual_seed(0)
    return ResidualSymmetricUNet(UNetConfig(widths=TINY, groups=2, augmentor=augmentor, **kwargs))


def _awake(net: ResidualSymmetricUNet, seed: int = 1) -> ResidualSymmetricUNet:
    """``net`` with its augmentor's output projection moved off zero (as training does)."""
    assert net.augmentor is not None
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        proj = net.augmentor.proj
        proj.weight.copy_(torch.randn(proj.weight.shape, generator=generator))
        proj.bias.copy_(torch.randn(proj.bias.shape, generator=generator))
    return net


def _input(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------ the block


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("spatial", [(1, 1, 1), (3, 5, 7), (2, 16, 8), (6, 4, 4)])
def test_the_augmentor_keeps_the_input_shape(batch: int, spatial: tuple[int, int, int]) -> None:
    torch.manual_seed(0)
    block = FeatureAugmentor(8, 5)
    with torch.no_grad():
        torch.nn.init.normal_(block.proj.weight)
        x = _input(batch, 8, *spatial)
        out = block(x)
    assert out.shape == x.shape
    assert not torch.equal(out, x), "an awake augmentor changes its input"


@pytest.mark.parametrize("spatial", [(3, 16, 16), (1, 8, 24), (5, 32, 8)])
def test_a_unet_with_the_augmentor_keeps_the_patch_shape_and_each_example_apart(
    spatial: tuple[int, int, int],
) -> None:
    net = _awake(_unet(augmentor=4, out_channels=2)).eval()
    x = _input(2, 1, *spatial)
    with torch.no_grad():
        both = net(x)
        first, second = net(x[:1]), net(x[1:])
    assert both.shape == (2, 2, *spatial)
    # the summaries are gathered per example: a batch is its examples side by side
    torch.testing.assert_close(both, torch.cat([first, second]), atol=1e-5, rtol=1e-4)


def test_the_augmentor_fuses_information_from_the_whole_input() -> None:
    """An awake augmentor makes each output voxel depend on far positions of the input
    (the whole input: further than the U-Net's receptive field without it)."""
    x = _input(1, 1, 1, 64, 64, seed=3)
    moved = x.clone()
    moved[0, 0, 0, 60:, 60:] = 5.0  # a corner far from voxel (8, 8)
    changes = {}
    for queries in (0, 4):
        net = _unet(augmentor=queries)
        if queries:
            _awake(net)
        net.eval()
        with torch.no_grad():
            changes[queries] = float((net(x) - net(moved))[0, 0, 0, 8, 8].abs())
    assert changes[0] == 0.0 and changes[4] > 0.0


def test_the_augmentor_runs_under_bf16_autocast_and_channels_last() -> None:
    net = _awake(_unet(augmentor=3)).eval()
    x = _input(2, 1, 3, 16, 16)
    with torch.no_grad():
        expected = net(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            half = net(x)
        net = net.to(memory_format=torch.channels_last_3d)  # type: ignore[call-overload]
        last = net(x.contiguous(memory_format=torch.channels_last_3d))
    assert half.dtype == torch.bfloat16
    assert torch.isfinite(half).all()
    torch.testing.assert_close(half.float(), expected, atol=0.05, rtol=0.05)
    torch.testing.assert_close(last, expected, atol=1e-5, rtol=1e-4)


def test_bad_augmentor_blocks_are_refused() -> None:
    with pytest.raises(AvanInputError, match="feature augmentor"):
        FeatureAugmentor(8, 0)


# ---------------------------------------------------------------------- in the U-Net


def test_a_fresh_augmentor_leaves_the_unet_unchanged_and_its_queries_learn() -> None:
    plain, augmented = _unet(), _unet(augmentor=4)
    assert augmented.augmentor is not None and plain.augmentor is None
    # the other layers of a seeded network draw the same weights with or without it
    plain_state = plain.state_dict()
    assert all(torch.equal(v, augmented.state_dict()[k]) for k, v in plain_state.items())
    assert set(augmented.state_dict()) - set(plain_state) == {
        f"augmentor.{name}"
        for name in ("queries", *(f"{c}.{p}" for c in ("key", "value", "read", "proj")
                                  for p in ("weight", "bias")))
    }  # fmt: skip
    x = _input(2, 1, 2, 16, 16)
    with torch.no_grad():
        assert torch.equal(augmented.eval()(x), plain.eval()(x))
    # training: at first only the output projection can learn (the rest feeds a zero map)
    augmented.train()
    optimiser = torch.optim.Adam(augmented.parameters(), lr=1e-2)
    augmented(x).square().mean().backward()
    queries = augmented.augmentor.queries
    assert queries.grad is not None and not queries.grad.any()
    assert augmented.augmentor.proj.weight.grad.abs().sum() > 0
    optimiser.step()
    optimiser.zero_grad()
    assert augmented.augmentor.proj.weight.abs().sum() > 0
    # once the projection is off zero, the gradient reaches the learned queries
    augmented(x).square().mean().backward()
    assert queries.grad is not None and queries.grad.abs().sum() > 0
    assert augmented.augmentor.key.weight.grad.abs().sum() > 0


def test_folding_batchnorm_keeps_an_augmented_unets_outputs() -> None:
    net = _awake(_unet(augmentor=3))
    net.train()
    with torch.no_grad():
        for seed in range(3):  # non-trivial running statistics
            net(_input(2, 1, 2, 16, 16, seed=seed) * 3 + 1)
    folded = fold_batchnorm(net)
    assert not any(isinstance(m, torch.nn.BatchNorm3d) for m in folded.modules())
    assert isinstance(folded.augmentor, FeatureAugmentor)
    net.eval()
    x = _input(1, 1, 3, 16, 16, seed=9)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), net(x), atol=1e-5, rtol=1e-4)


def test_a_trained_augmented_detector_is_saved_and_reloaded(tmp_path: Path) -> None:
    torch.manual_seed(0)
    config = UNetConfig.from_dict(
        {**cleft_detector_config("cleftnet", augmentor=4).to_dict(), "widths": list(TINY)}
    )
    net = ResidualSymmetricUNet(config)
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-2)
    for step in range(3):  # a few steps: the augmentor's projection and queries move
        optimiser.zero_grad()
        net(_input(2, 1, 2, 16, 16, seed=step)).sigmoid().mean().backward()
        optimiser.step()
    assert net.augmentor is not None and net.augmentor.proj.weight.abs().sum() > 0
    net.eval()
    folder = save_model(tmp_path / "augmented", net, {"voxel_size_nm": [40, 8, 8]})
    recorded = json.loads((folder / META_FILE).read_text())["architecture"]
    assert recorded == architecture_of(net) and recorded["config"]["augmentor"] == 4
    loaded = load_model(folder).network
    assert isinstance(loaded, ResidualSymmetricUNet)
    assert loaded.config == net.config and isinstance(loaded.augmentor, FeatureAugmentor)
    x = _input(1, 1, 3, 24, 16, seed=7)
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval()(x), net(x))


# ------------------------------------------------------------------------- the settings


def test_metadata_without_the_augmentor_means_none() -> None:
    old = UNetConfig(widths=TINY).to_dict()
    del old["augmentor"]
    config = UNetConfig.from_dict(old)
    assert config.augmentor == 0
    assert ResidualSymmetricUNet(config).augmentor is None
    assert UNetConfig.from_dict(UNetConfig(widths=TINY, augmentor=6).to_dict()).augmentor == 6
    assert cleft_detector_config("proximity", augmentor=2).augmentor == 2


@pytest.mark.parametrize("bad", [-1, 2.5, "4", True, None])
def test_bad_augmentor_values_are_refused_by_name(bad) -> None:
    with pytest.raises(AvanInputError, match="augmentor"):
        UNetConfig(augmentor=bad)
    with pytest.raises(AvanInputError, match="augmentor"):
        UNetConfig.from_dict({**UNetConfig().to_dict(), "augmentor": bad})
    with pytest.raises(AvanInputError, match="feature_augmentor"):
        TrainSettings("clefts", steps=1, feature_augmentor=bad)


def test_the_augmentor_is_for_the_detector_only() -> None:
    with pytest.raises(AvanInputError, match="feature augmentor is for the cleft detector"):
        TrainSettings("avan", steps=1, feature_augmentor=2)
    assert TrainSettings("avan", steps=1).feature_augmentor == 0


def _settings(target: str, queries: int) -> TrainSettings:
    return TrainSettings("clefts", steps=1, widths=TINY, target=target, feature_augmentor=queries)


@pytest.mark.parametrize("target", ["mask", "proximity", "cleftnet"])
def test_every_detector_target_builds_and_fine_tunes_into_an_augmented_network(
    target: str,
) -> None:
    fresh = task_for(_settings(target, 4)).network(None)
    assert isinstance(fresh, ResidualSymmetricUNet)
    assert fresh.config.augmentor == 4 and fresh.config.widths == TINY
    # --init from a mask (or proximity) detector without an augmentor: the weights load and
    # the new augmentor starts at zero output, so the network computes what it did
    init = _unet().eval()
    tuned = task_for(_settings(target, 4)).network(LoadedModel(init, {"postprocess": {}}))
    assert isinstance(tuned, ResidualSymmetricUNet) and tuned is not init
    assert tuned.config.augmentor == 4 and isinstance(tuned.augmentor, FeatureAugmentor)
    x = _input(1, 1, 2, 16, 16)
    with torch.no_grad():
        before, after = init(x), tuned.eval()(x)
    for channel in range(after.shape[1]):  # cleftnet: the boundary starts as the mask
        torch.testing.assert_close(after[:, channel : channel + 1], before)


def test_an_init_models_own_augmentor_is_kept_or_checked() -> None:
    init = _awake(_unet(augmentor=4))
    model = LoadedModel(init, {"postprocess": {}})
    assert task_for(_settings("mask", 0)).network(model) is init  # none asked: kept
    assert task_for(_settings("mask", 4)).network(model) is init  # the same: kept
    with pytest.raises(AvanInputError, match="feature augmentor of 4 queries, not the 2"):
        task_for(_settings("mask", 2)).network(model)


# -------------------------------------------------------------------------- the command


def test_the_command_line_trains_an_augmented_detector(tmp_path: Path) -> None:
    out = tmp_path / "augmented"
    code = main([
        "train", "clefts", "--feature-augmentor", "4", "--out", str(out),
        "--synthetic", "1", "--val-synthetic", "1", "--synthetic-shape", "8,64,64",
        "--widths", "4,8", "--patch", "4,32,32", "--steps", "2", "--val-every", "2",
        "--no-bf16", "--quiet",
    ])  # fmt: skip
    assert code == 0
    metadata = json.loads((out / META_FILE).read_text())
    assert metadata["architecture"]["config"]["augmentor"] == 4
    assert metadata["training"]["settings"]["feature_augmentor"] == 4
    model = resolve_model(out, "cleft-detector")
    assert isinstance(model.network, ResidualSymmetricUNet)
    assert isinstance(model.network.augmentor, FeatureAugmentor)
    assert model.network.augmentor.queries.shape == (4, 8)  # (queries, bottleneck width)


def test_the_command_line_refuses_bad_augmentor_counts(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["train", "clefts", "--feature-augmentor", "-1", "--out", str(tmp_path / "m"),
              "--synthetic", "1", "--val-synthetic", "1", "--steps", "1"])  # fmt: skip
    assert stop.value.code == 2
    assert "--feature-augmentor" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()
