"""Device choice and CPU run plans (the CUDA branch is exercised only where a GPU exists)."""

from __future__ import annotations

import pytest
import torch

from napari_avan.models import device as dev
from napari_avan.models.networks import ResidualSymmetricUNet, UNetConfig
from napari_avan.types import AvanInputError


def test_auto_picks_an_available_device() -> None:
    chosen = dev.pick_device("auto")
    if torch.cuda.is_available():
        assert chosen.type == "cuda"
    else:
        assert chosen.type in ("mps", "cpu")
    assert dev.pick_device("cpu").type == "cpu"


def test_unavailable_or_unknown_device_is_named() -> None:
    with pytest.raises(AvanInputError, match="not one of"):
        dev.pick_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(AvanInputError, match="no CUDA GPU"):
            dev.pick_device("cuda")


def test_cpu_plan_caps_threads_and_uses_channels_last() -> None:
    before = torch.get_num_threads()
    try:
        plan = dev.plan("cpu", threads=1)
        assert plan.threads == 1 and torch.get_num_threads() == 1
        assert plan.channels_last
        many = dev.plan("cpu", threads=10_000)
        assert many.threads == dev.available_cores()
        assert "cpu" in plan.describe()
    finally:
        torch.set_num_threads(before)


def test_bf16_is_used_only_when_it_matches_fp32() -> None:
    plan = dev.plan("cpu")
    uses_bf16 = plan.autocast_dtype is torch.bfloat16
    assert uses_bf16 == (dev.cpu_has_native_bf16() and dev.cpu_bf16_matches_fp32())
    assert dev.plan("cpu", allow_bf16=False).autocast_dtype is None


def test_plan_runs_a_network_close_to_fp32() -> None:
    torch.manual_seed(0)
    net = ResidualSymmetricUNet(
        UNetConfig(in_channels=2, out_channels=2, widths=(8, 16), groups=4)
    ).eval()
    x = torch.rand(1, 2, 3, 32, 32)
    with torch.no_grad():
        reference = torch.sigmoid(net(x))
    plan = dev.plan("cpu")
    prepared = plan.prepare(net)
    with plan.autocast():
        out = torch.sigmoid(prepared(plan.tensor(x)).float())
    assert out.shape == reference.shape
    tolerance = 0.05 if plan.autocast_dtype is not None else 1e-5
    assert (out.cpu() - reference).abs().max() <= tolerance
