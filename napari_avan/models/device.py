"""Where and how networks run: device choice, CPU threads, memory format and bf16 autocast.

Order of preference is cuda, then mps, then cpu, unless the caller names one. On the CPU,
inputs and weights use the channels_last_3d memory format (about twice as fast for 3D
convolutions), and bf16 autocast is used when the CPU has native bf16 support (AVX512-BF16
or AMX) *and* a check on a small network matches fp32 within :data:`BF16_TOLERANCE`; the
check runs once per process. Nothing here runs at import time.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from napari_avan.models.networks import fold_batchnorm
from napari_avan.types import AvanInputError

#: Largest absolute difference of sigmoid outputs allowed between bf16 and fp32.
BF16_TOLERANCE = 0.02
DEVICES = ("auto", "cuda", "mps", "cpu")


def available_cores() -> int:
    """CPU cores this process may use (affinity-aware where the OS says)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


#: glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def tune_allocator() -> bool:
    """Keep large freed buffers in the heap for reuse (glibc; elsewhere a no-op).

    By default glibc maps every buffer over 128 KiB from the OS and unmaps it when freed,
    so each network layer's activations are paged in again on every patch; dask's nannies
    make it worse (they set ``MALLOC_TRIM_THRESHOLD_``, which freezes that threshold). With
    buffers up to 64 MiB kept, the bundled detector ran a patch in 0.35 s instead of 0.40 s
    (0.52 s under a nanny's setting) on one thread of a 2-core AMD EPYC. For processes that
    run networks (the command line, bulk workers); resident memory stays higher.

    Returns:
        Whether the allocator took the settings.
    """
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mmap_ok = libc.mallopt(_M_MMAP_THRESHOLD, 64 << 20)
        trim_ok = libc.mallopt(_M_TRIM_THRESHOLD, 128 << 20)
    except (OSError, AttributeError):  # not glibc (musl, ...)
        return False
    return bool(mmap_ok and trim_ok)


def pick_device(name: str | None = None) -> torch.device:
    """The device to run on: ``auto`` (or None) tries cuda, then mps, then cpu.

    Raises:
        AvanInputError: an explicit device that is not available here.
    """
    name = (name or "auto").lower()
    if name not in DEVICES and not name.startswith("cuda:"):
        raise AvanInputError(f"device {name!r} is not one of {DEVICES} (or cuda:N)")
    mps = getattr(torch.backends, "mps", None)
    mps_ok = bool(mps is not None and mps.is_available())
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if mps_ok else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise AvanInputError(f"device {name!r} asked for, but no CUDA GPU is available here")
    if name == "mps" and not mps_ok:
        raise AvanInputError("device 'mps' asked for, but Apple's MPS is not available here")
    return torch.device(name)


def cpu_has_native_bf16() -> bool:
    """Whether the CPU reports bf16 instructions (AVX512-BF16 or AMX-BF16)."""
    get = getattr(torch.cpu, "get_capabilities", None)
    if get is None:
        return False
    caps = get()
    return bool(caps.get("avx512_bf16") or caps.get("amx_bf16"))


def _bf16_probe() -> nn.Module:
    generator = torch.Generator().manual_seed(1234)
    net = nn.Sequential(
        nn.Conv3d(2, 16, (1, 5, 5), padding=(0, 2, 2)),
        nn.ELU(),
        nn.Conv3d(16, 16, 3, padding=1),
        nn.ELU(),
        nn.Conv3d(16, 2, 1),
    )
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.2)
    return net.eval()


@functools.lru_cache(maxsize=1)
def cpu_bf16_matches_fp32(tolerance: float = BF16_TOLERANCE) -> bool:
    """Run a small 3D network in fp32 and under bf16 autocast; True when they agree."""
    if not cpu_has_native_bf16():
        return False
    net = _bf16_probe()
    x = torch.rand(1, 2, 4, 32, 32, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        reference = torch.sigmoid(net(x))
        try:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                reduced = torch.sigmoid(net(x).float())
        except RuntimeError:
            return False
    return bool((reduced - reference).abs().max() <= tolerance)


#: PyTorch's CPU convolution sends a batch of one to its native kernel below this
#: batch x channels x depth x height (aten ``use_mkldnn``); see :meth:`RunPlan.forward`.
_NATIVE_CONV_LIMIT = 20480


@dataclass(frozen=True)
class RunPlan:
    """How a network runs: device, memory format, autocast dtype, CPU threads."""

    device: torch.device
    channels_last: bool
    autocast_dtype: torch.dtype | None
    threads: int

    def describe(self) -> str:
        precision = "bf16 autocast" if self.autocast_dtype is torch.bfloat16 else "fp32"
        layout = ", channels_last_3d" if self.channels_last else ""
        return f"{self.device.type} ({precision}{layout}, {self.threads} threads)"

    def prepare(self, network: nn.Module) -> nn.Module:
        """``network`` in eval mode on the device and memory format, BatchNorm folded.

        A network with BatchNorm is copied (its norms folded into the convolutions), so the
        caller's module keeps its weights, device and training mode; one without is switched
        to eval mode and moved in place.
        """
        network = fold_batchnorm(network).eval().to(self.device)
        if self.channels_last:
            # Module.to accepts memory_format at run time; the stubs do not say so
            network = network.to(memory_format=torch.channels_last_3d)  # type: ignore[call-overload]
        return network

    def tensor(self, array: torch.Tensor) -> torch.Tensor:
        """Move a (batch, channel, z, y, x) input to the device and memory format."""
        out = array.to(self.device, non_blocking=True)
        if self.channels_last:
            out = out.contiguous(memory_format=torch.channels_last_3d)
        return out

    def forward(self, network: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """``network(x)``, sidestepping PyTorch's slow CPU path for a lone small 3D patch.

        For a batch of one, PyTorch's fp32 CPU convolution picks its native kernel instead
        of oneDNN when batch x channels x depth x height is at most 20480, which AVAN's
        8x96x96 patches are; on a 2-core AMD EPYC one such patch took 1.3 s against 0.26 s
        for a batch of two through oneDNN. A lone patch is therefore run twice in one batch.
        """
        config = getattr(network, "config", None)
        widths = getattr(config, "widths", None)
        if (
            self.device.type == "cpu"
            and self.autocast_dtype is None
            and x.ndim == 5
            and x.shape[0] == 1
            and widths
            and int(widths[0]) * int(x.shape[2]) * int(x.shape[3]) <= _NATIVE_CONV_LIMIT
        ):
            return network(self.tensor(torch.cat([x, x])))[:1]
        return network(x)

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        """Inference context: no autograd, and autocast when the plan uses it."""
        with torch.inference_mode():
            if self.autocast_dtype is None:
                yield
            else:
                with torch.autocast(self.device.type, dtype=self.autocast_dtype):
                    yield


def plan(
    device: str | None = None, *, threads: int | None = None, allow_bf16: bool = True
) -> RunPlan:
    """Choose how to run networks here, and cap torch's CPU threads to the cores available.

    Args:
        device: ``auto`` (default), ``cuda``, ``cuda:N``, ``mps`` or ``cpu``.
        threads: CPU threads for torch; default all cores this process may use. Pass
            fewer to keep a GUI responsive.
        allow_bf16: allow bf16 autocast (GPU with bf16, or a CPU that passes the check).
    """
    chosen = pick_device(device)
    cores = available_cores()
    n_threads = max(1, min(int(threads or cores), cores))
    torch.set_num_threads(n_threads)
    if chosen.type == "cpu":
        bf16 = allow_bf16 and cpu_bf16_matches_fp32()
        return RunPlan(chosen, True, torch.bfloat16 if bf16 else None, n_threads)
    if chosen.type == "cuda":
        bf16 = allow_bf16 and torch.cuda.is_bf16_supported()
        return RunPlan(chosen, False, torch.bfloat16 if bf16 else None, n_threads)
    return RunPlan(chosen, False, None, n_threads)
