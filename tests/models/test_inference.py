"""Sliding-window prediction: seamless blending, exact placement, borders, progress."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from napari_avan.models.device import plan
from napari_avan.models.inference import (
    adapt_batchnorm,
    bump,
    iter_predict,
    predict,
    to_float,
    window_starts,
)
from napari_avan.models.networks import ResidualSymmetricUNet, UNetConfig
from napari_avan.types import AvanInputError

FP32 = plan("cpu", allow_bf16=False)


def pointwise(weight: float, bias: float) -> nn.Module:
    conv = nn.Conv3d(1, 1, 1)
    with torch.no_grad():
        conv.weight.fill_(weight)
        conv.bias.fill_(bias)
    return conv


@pytest.mark.parametrize("shape", [(5, 37, 45), (1, 16, 16), (3, 10, 70)])
def test_constant_model_gives_a_constant_map(shape) -> None:
    """Blending weights are normalised everywhere: no seams, no border fall-off."""
    volume = np.random.default_rng(0).random(shape, dtype=np.float32)
    out = predict(
        pointwise(0.0, 0.3),
        volume,
        patch=(2, 16, 16),
        overlap=(1, 6, 6),
        out_channels=1,
        run=FP32,
        activation=None,
    )
    assert out.shape == (1, *shape)
    np.testing.assert_allclose(out, 0.3, atol=1e-6)


@pytest.mark.parametrize("flip_tta", [False, True])
def test_identity_model_puts_every_voxel_back_in_place(flip_tta: bool) -> None:
    volume = np.random.default_rng(1).random((4, 40, 52), dtype=np.float32)
    out = predict(
        pointwise(1.0, 0.0),
        volume,
        patch=(2, 16, 16),
        overlap=(1, 4, 8),
        out_channels=1,
        run=FP32,
        activation=None,
        batch_size=3,
        flip_tta=flip_tta,
    )
    np.testing.assert_allclose(out[0], volume, atol=1e-5)


def test_sigmoid_and_unet_shapes() -> None:
    torch.manual_seed(0)
    net = ResidualSymmetricUNet(UNetConfig(in_channels=2, out_channels=2, widths=(4, 8), groups=2))
    inputs = np.random.default_rng(2).random((2, 3, 30, 30), dtype=np.float32)
    out = predict(net, inputs, patch=(2, 16, 16), overlap=(0, 4, 4), out_channels=2, run=FP32)
    assert out.shape == (2, 3, 30, 30)
    assert out.min() >= 0.0 and out.max() <= 1.0
    again = predict(net, inputs, patch=(2, 16, 16), overlap=(0, 4, 4), out_channels=2, run=FP32)
    np.testing.assert_array_equal(out, again)  # deterministic
    with pytest.raises(AvanInputError, match="multiple of 2"):
        predict(net, inputs, patch=(2, 15, 16), overlap=(0, 4, 4), out_channels=2, run=FP32)
    with pytest.raises(AvanInputError, match="overlap"):
        predict(net, inputs, patch=(2, 16, 16), overlap=(0, 16, 4), out_channels=2, run=FP32)


def test_progress_per_batch_and_cancel() -> None:
    volume = np.zeros((2, 64, 64), np.float32)
    steps = list(
        iter_predict(
            pointwise(1.0, 0.0),
            volume,
            patch=(2, 16, 16),
            overlap=(0, 0, 0),
            out_channels=1,
            run=FP32,
            batch_size=4,
            activation=None,
        )
    )
    assert [p.done for p in steps] == [4, 8, 12, 16]
    assert all(p.total == 16 for p in steps)
    assert steps[-1].result is not None and all(p.result is None for p in steps[:-1])
    job = iter_predict(
        pointwise(1.0, 0.0),
        volume,
        patch=(2, 16, 16),
        overlap=(0, 0, 0),
        out_channels=1,
        run=FP32,
        activation=None,
    )
    first = next(job)
    job.close()  # cancelling: the generator stops cleanly
    assert first.done == 1


def test_helpers() -> None:
    assert window_starts(10, 16, 8) == [0]
    assert window_starts(40, 16, 12) == [0, 12, 24]
    w = bump((4, 16, 16), (0, 8, 8))
    assert w.shape == (4, 16, 16) and w.min() > 0 and w.max() <= 1.0
    np.testing.assert_allclose(w, w[:, ::-1, ::-1])
    assert to_float(np.array([0, 255], np.uint8)).tolist() == [0.0, 1.0]
    with pytest.raises(AvanInputError, match="dtype"):
        to_float(np.zeros(3, np.int16))


def _batch_net() -> ResidualSymmetricUNet:
    torch.manual_seed(0)
    return ResidualSymmetricUNet(UNetConfig(in_channels=1, out_channels=1, widths=(4, 8)))


def test_adapt_batchnorm_averages_each_norms_input_over_the_patches() -> None:
    net = _batch_net()
    norms = [m for m in net.modules() if isinstance(m, nn.BatchNorm3d)]
    before = [(n.running_mean.clone(), n.running_var.clone()) for n in norms]
    seen: list[torch.Tensor] = []
    # the hook travels with the copy adapt_batchnorm makes: it records the first norm's input
    norms[0].register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach().clone()))
    volume = 3.0 + 2.0 * np.random.default_rng(4).random((4, 32, 32), dtype=np.float32)
    adapted = adapt_batchnorm(net, volume, patch=(2, 16, 16), run=FP32)
    assert len(seen) == 8  # the 2 x 2 x 2 windows of the tiling, each once
    first = next(m for m in adapted.modules() if isinstance(m, nn.BatchNorm3d))
    expected_mean = torch.stack([x.mean(dim=(0, 2, 3, 4)) for x in seen]).mean(0)
    expected_var = torch.stack([x.var(dim=(0, 2, 3, 4)) for x in seen]).mean(0)
    torch.testing.assert_close(first.running_mean, expected_mean, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(first.running_var, expected_var, rtol=1e-3, atol=1e-5)
    assert not first.training and not adapted.training
    # the caller's network keeps its statistics
    for n, (mean, var) in zip(norms, before, strict=True):
        torch.testing.assert_close(n.running_mean, mean)
        torch.testing.assert_close(n.running_var, var)


def test_adapt_batchnorm_undoes_a_global_intensity_change() -> None:
    """Statistics re-estimated on a dimmer, shifted copy of a volume bring the output on it
    nearer the output on the original than the unadapted network's (not equal: the
    residual skips carry the input convolution's output before its norm)."""
    net = _batch_net()
    volume = np.random.default_rng(5).random((4, 32, 32), dtype=np.float32)
    base = adapt_batchnorm(net, volume, patch=(4, 32, 32), run=FP32)
    bright = adapt_batchnorm(net, 0.5 * volume + 0.3, patch=(4, 32, 32), run=FP32)
    kwargs = {"patch": (4, 32, 32), "overlap": (0, 0, 0), "out_channels": 1, "run": FP32}
    same = predict(base, volume, **kwargs)
    shifted = predict(bright, 0.5 * volume + 0.3, **kwargs)
    plain = predict(net, 0.5 * volume + 0.3, **kwargs)
    assert np.abs(shifted - same).mean() < 0.75 * np.abs(plain - same).mean()


def test_adapt_batchnorm_limits_and_passthrough() -> None:
    net = _batch_net()
    volume = np.random.default_rng(6).random((8, 64, 64), dtype=np.float32)
    calls: list[int] = []
    next(m for m in net.modules() if isinstance(m, nn.BatchNorm3d)).register_forward_pre_hook(
        lambda _m, _args: calls.append(1)
    )
    adapt_batchnorm(net, volume, patch=(2, 16, 16), max_patches=5, run=FP32)
    assert len(calls) == 5  # of 64 windows, 5 evenly spaced
    # a volume smaller than a patch is mirrored up to it
    small = adapt_batchnorm(net, volume[:1, :10, :10], patch=(2, 16, 16), run=FP32)
    assert all(torch.isfinite(p).all() for p in small.buffers())
    group = ResidualSymmetricUNet(UNetConfig(in_channels=1, widths=(4, 8), norm="group", groups=2))
    assert adapt_batchnorm(group, volume, patch=(2, 16, 16), run=FP32) is group
    with pytest.raises(AvanInputError, match="max_patches"):
        adapt_batchnorm(net, volume, patch=(2, 16, 16), max_patches=0, run=FP32)


@pytest.mark.parametrize(
    ("shape", "target"), [((5, 17, 23), (9, 8, 40)), ((6, 30, 30), (6, 21, 44))]
)
def test_resample_linear_is_zoom_and_blocks_are_exact(shape, target) -> None:
    from scipy import ndimage

    from napari_avan.models.inference import linear_source_span, resample_linear

    volume = np.random.default_rng(0).random(shape).astype(np.float32)
    whole = resample_linear(volume, target)
    factors = [t / s for t, s in zip(target, shape, strict=True)]
    zoomed = ndimage.zoom(
        volume.astype(np.float64), factors, order=1, mode="nearest", grid_mode=True
    )
    np.testing.assert_allclose(whole, zoomed[: target[0], : target[1], : target[2]], atol=1e-6)
    # any block, from only the input voxels it reads, is the same block of the whole, bit for bit
    for region in (
        ((1, 4), (2, 7), (0, 40)),
        ((0, 1), (0, 8), (13, 14)),
        ((2, 6), (3, 21), (5, 44)),
    ):
        region = tuple((a, min(b, t)) for (a, b), t in zip(region, target, strict=True))
        span = [
            linear_source_span(s, t, a, b)
            for s, t, (a, b) in zip(shape, target, region, strict=True)
        ]
        part = volume[tuple(slice(a, b) for a, b in span)]
        block = resample_linear(part, target, region=region, source_offset=[a for a, _ in span],
                                source_shape=shape)  # fmt: skip
        np.testing.assert_array_equal(block, whole[tuple(slice(a, b) for a, b in region)])


def test_blending_is_exact_in_any_order() -> None:
    """The fixed-point sums of weighted patches do not depend on the order they are added."""
    from napari_avan.models.inference import bump, fixed_point

    rng = np.random.default_rng(2)
    weight = bump((2, 8, 8), (1, 4, 4))
    patches = [rng.random((1, 2, 8, 8)).astype(np.float32) for _ in range(6)]
    forward = sum(fixed_point(p, weight) for p in patches)
    backward = sum(fixed_point(p, weight) for p in patches[::-1])
    np.testing.assert_array_equal(forward, backward)
    mean = forward / 2**40 / (6 * weight)
    np.testing.assert_allclose(mean, np.mean(np.asarray(patches, np.float64), axis=0), rtol=1e-9)
