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


# ------------------------------------------------------------------------- RunPlan.forward


def _small_avan() -> ResidualSymmetricUNet:
    """An AVAN-shaped network (image + cleft in, pre + post out), small and with its
    BatchNorm running statistics set away from the identity."""
    from napari_avan.models.networks import avan_config

    torch.manual_seed(0)
    net = ResidualSymmetricUNet(
        UNetConfig(**{**avan_config().to_dict(), "widths": (4, 8), "groups": 2})
    )
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm3d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
    return net.eval()


def _batch_sizes_seen(net: torch.nn.Module) -> tuple[list[int], object]:
    """Batch sizes of the inputs ``net`` is called with (and the hook, to remove)."""
    seen: list[int] = []
    handle = net.register_forward_pre_hook(lambda _module, args: seen.append(int(args[0].shape[0])))
    return seen, handle


@pytest.fixture
def cpu_plan():
    before = torch.get_num_threads()
    try:
        yield dev.plan("cpu", allow_bf16=False)
    finally:
        torch.set_num_threads(before)


def test_forward_of_a_lone_patch_equals_the_network(cpu_plan: dev.RunPlan) -> None:
    assert cpu_plan.autocast_dtype is None and cpu_plan.device.type == "cpu"
    net = _small_avan()
    prepared = cpu_plan.prepare(net)
    x = torch.rand(1, 2, 8, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        reference = net(x)
        direct = prepared(cpu_plan.tensor(x))
    seen, handle = _batch_sizes_seen(prepared)
    try:
        with cpu_plan.autocast():
            out = cpu_plan.forward(prepared, x)
    finally:
        handle.remove()
    assert seen == [2]  # 4 x 8 x 32 is under the native-kernel limit: run as a pair
    assert out.shape == reference.shape == (1, 2, 8, 32, 32)
    assert torch.allclose(out, direct, atol=1e-6)
    assert torch.allclose(out, reference, atol=1e-5)
    assert not torch.allclose(reference, torch.zeros_like(reference))


def test_forward_of_a_lone_patch_accepts_an_unprepared_input(cpu_plan: dev.RunPlan) -> None:
    net = _small_avan()
    prepared = cpu_plan.prepare(net)
    # a non-contiguous input (a slice of a larger tensor) is still the same patch
    big = torch.rand(3, 2, 8, 32, 64, generator=torch.Generator().manual_seed(2))
    x = big[1:2, :, :, :, 16:48]
    assert not x.is_contiguous()
    with torch.no_grad():
        reference = net(x.contiguous())
    with cpu_plan.autocast():
        out = cpu_plan.forward(prepared, x)
    assert out.shape[0] == 1
    assert torch.allclose(out, reference, atol=1e-5)


def test_forward_of_a_batch_is_the_network(cpu_plan: dev.RunPlan) -> None:
    net = _small_avan()
    prepared = cpu_plan.prepare(net)
    x = cpu_plan.tensor(torch.rand(2, 2, 8, 32, 32, generator=torch.Generator().manual_seed(3)))
    with torch.no_grad():
        reference = prepared(x)
        unprepared = net(x)
    seen, handle = _batch_sizes_seen(prepared)
    try:
        with cpu_plan.autocast():
            out = cpu_plan.forward(prepared, x)
    finally:
        handle.remove()
    assert seen == [2]  # not doubled
    assert out.shape == reference.shape == (2, 2, 8, 32, 32)
    assert torch.equal(out, reference)
    assert torch.allclose(out, unprepared, atol=1e-5)
    # each sample of the batch is the network's answer for that sample alone
    with torch.no_grad():
        alone = net(x[1:].contiguous())
    assert torch.allclose(out[1:], alone, atol=1e-5)


def test_forward_of_a_large_lone_patch_is_not_doubled(cpu_plan: dev.RunPlan) -> None:
    net = _small_avan()
    prepared = cpu_plan.prepare(net)
    # 4 x 16 x 352 = 22528 channels x depth x height is above the limit of 20480
    x = torch.rand(1, 2, 16, 352, 16, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        reference = net(x)
    seen, handle = _batch_sizes_seen(prepared)
    try:
        with cpu_plan.autocast():
            out = cpu_plan.forward(prepared, cpu_plan.tensor(x))
    finally:
        handle.remove()
    assert seen == [1]
    assert out.shape == reference.shape
    assert torch.allclose(out, reference, atol=1e-5)


def test_forward_of_a_network_without_widths_is_the_network(cpu_plan: dev.RunPlan) -> None:
    torch.manual_seed(5)
    net = torch.nn.Sequential(torch.nn.Conv3d(2, 2, 3, padding=1)).eval()
    x = torch.rand(1, 2, 4, 16, 16)
    seen, handle = _batch_sizes_seen(net)
    try:
        with cpu_plan.autocast():
            out = cpu_plan.forward(net, x)
    finally:
        handle.remove()
    assert seen == [1]
    with torch.no_grad():
        assert torch.allclose(out, net(x), atol=1e-6)
