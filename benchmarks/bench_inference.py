"""Inference speed of the default architectures on this machine (issue 3 targets).

Prints: median ms per single-cleft AVAN assignment (patch extraction and scoring included),
clefts/s for batched assignment, detection voxels/s of the input volume (overlap
included), and the networks' achieved GFLOP/s divided by the GFLOP/s of a large matrix
multiply of the same dtype measured in the same run. Weights are random: speed does not
depend on them. Run ``python benchmarks/bench_inference.py [--device cpu] [--clefts 20]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from torch import nn

from napari_avan.core.synth import synthesize
from napari_avan.models.assign import DEFAULT_AVAN_PATCH, assign_cleft, iter_assign
from napari_avan.models.checkpoint import LoadedModel
from napari_avan.models.detect import DEFAULT_OVERLAP, DEFAULT_PATCH, detect
from napari_avan.models.device import RunPlan, plan
from napari_avan.models.networks import (
    ResidualSymmetricUNet,
    avan_config,
    cleft_detector_config,
)

VOXEL = (40.0, 4.0, 4.0)
#: The detector's working voxel size (clefts are tens of nm thick and hundreds long).
DETECTOR_VOXEL = (40.0, 8.0, 8.0)


def conv_flops(network: nn.Module, shape: tuple[int, ...]) -> float:
    """Multiply-add FLOPs (x2) of the 3D convolutions for one input of ``shape``."""
    total = 0.0

    def hook(module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
        nonlocal total
        assert isinstance(module, nn.Conv3d)
        kernel = int(np.prod(module.kernel_size)) * module.in_channels // module.groups
        total += 2.0 * output.numel() * kernel

    handles = [m.register_forward_hook(hook) for m in network.modules() if isinstance(m, nn.Conv3d)]
    with torch.inference_mode():
        network(torch.zeros(shape))
    for h in handles:
        h.remove()
    return total


def matmul_gflops(run: RunPlan, n: int = 2048, repeats: int = 10) -> float:
    dtype = run.autocast_dtype or torch.float32
    a = torch.rand(n, n, device=run.device).to(dtype)
    b = torch.rand(n, n, device=run.device).to(dtype)
    torch.matmul(a, b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.matmul(a, b)
        if run.device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def network_gflops(run: RunPlan, network: nn.Module, shape: tuple[int, ...]) -> float:
    flops = conv_flops(network, shape)
    net = run.prepare(network)
    x = run.tensor(torch.rand(shape))
    with run.autocast():
        net(x)
        times = []
        for _ in range(5):
            start = time.perf_counter()
            net(x)
            if run.device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
    return flops / min(times) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--clefts", type=int, default=20)
    args = parser.parse_args()
    run = plan(args.device)
    print(f"device: {run.describe()}")
    torch.manual_seed(0)
    avan = LoadedModel(
        ResidualSymmetricUNet(avan_config()),
        {"voxel_size_nm": list(VOXEL), "patch": list(DEFAULT_AVAN_PATCH)},
    )
    detector = LoadedModel(
        ResidualSymmetricUNet(cleft_detector_config()),
        {
            "voxel_size_nm": list(DETECTOR_VOXEL),
            "patch": list(DEFAULT_PATCH),
            "overlap": list(DEFAULT_OVERLAP),
        },
    )

    samples = [synthesize(seed=100 + s, shape=(32, 256, 256)) for s in range(3)]
    clefts_seen = 0
    times = []
    for sample in samples:
        for cleft_id in range(1, int(sample.clefts.max()) + 1):
            start = time.perf_counter()
            assign_cleft(
                avan, sample.image, sample.clefts, sample.segmentation, VOXEL, cleft_id, run=run
            )
            times.append(time.perf_counter() - start)
            clefts_seen += 1
            if clefts_seen >= args.clefts + 1:
                break
    times = times[1:]  # the first call warms up
    print(
        f"single-cleft assignment: median {1000 * statistics.median(times):.0f} ms over "
        f"{len(times)} clefts (patch {DEFAULT_AVAN_PATCH} at {VOXEL} nm)"
    )

    start = time.perf_counter()
    n = 0
    for sample in samples:
        for step in iter_assign(
            avan, sample.image, sample.clefts, sample.segmentation, VOXEL, run=run, batch_size=4
        ):
            n += len(step.finished)
    elapsed = time.perf_counter() - start
    print(f"batched assignment: {n / elapsed:.2f} clefts/s ({n} clefts, batch 4)")

    # a 64x512x512 block (the sample tiled 2x2x2): big enough that border padding does not
    # dominate, as in whole-volume runs; the content does not change the speed
    image = np.tile(samples[0].image, (2, 2, 2))
    for working in (DETECTOR_VOXEL, VOXEL):
        detector.metadata["voxel_size_nm"] = list(working)
        detect(detector, image[:16, :128, :128], VOXEL, run=run)  # warm-up
        start = time.perf_counter()
        detect(detector, image, VOXEL, run=run, min_size=50)
        elapsed = time.perf_counter() - start
        print(
            f"detection, model at {working} nm: {image.size / elapsed / 1e6:.2f} Mvoxel/s of "
            f"input at {VOXEL} nm ({image.shape}, patch {DEFAULT_PATCH}, "
            f"overlap {DEFAULT_OVERLAP}; resampling, blending and labelling included)"
        )

    # the matmul figure swings between runs on a shared machine: take the best of two
    # measurements, one before and one after the networks, so the ratio is not flattered
    peak = matmul_gflops(run)
    achieved = {}
    for name, model, channels, patch in (
        ("detector", detector, 1, DEFAULT_PATCH),
        ("AVAN", avan, 2, DEFAULT_AVAN_PATCH),
    ):
        # a batch of two: what a lone patch runs as on CPU (RunPlan.forward), and what
        # assignment batches hold
        achieved[name] = network_gflops(run, model.network, (2, channels, *patch))
    peak = max(peak, matmul_gflops(run))
    for name, value in achieved.items():
        print(
            f"{name} (batch of 2): {value:.1f} GFLOP/s = {100 * value / peak:.0f}% of a "
            f"2048^2 matmul ({peak:.1f} GFLOP/s, same dtype)"
        )


if __name__ == "__main__":
    main()
