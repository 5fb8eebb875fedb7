"""Sliding-window prediction over a (z, y, x) volume, the first step of cleft detection.

Patches overlap and are blended with a separable bump weight, so a network whose output
does not depend on position gives a seamless map. The volume is reflect-padded by half the
overlap (and more where it is smaller than a patch), so borders see the same context as the
interior. Optional test-time augmentation averages the in-plane flips. Work is a generator
that yields :class:`Progress` after every batch; stopping the iteration cancels it.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from napari_avan.models.device import RunPlan
from napari_avan.models.device import plan as make_plan
from napari_avan.types import AvanInputError

Shape3 = tuple[int, int, int]


@dataclass
class Progress:
    """Where a prediction is: ``done`` of ``total`` patches; ``result`` on the last yield."""

    done: int
    total: int
    result: np.ndarray | None = None


def window_starts(size: int, patch: int, step: int) -> list[int]:
    """Start offsets of windows of ``patch`` covering ``size`` (>= patch) with ``step``."""
    if size <= patch:
        return [0]
    starts = list(range(0, size - patch, step))
    starts.append(size - patch)
    return starts


def bump(patch: Shape3, overlap: Shape3) -> np.ndarray:
    """Separable blending weight: 1 in the middle, falling smoothly to near 0 at the edges.

    Along an axis without overlap the weight is flat.
    """
    weights = []
    for n, o in zip(patch, overlap, strict=True):
        w = np.ones(n, np.float64)
        if o > 0:
            ramp = min(o, n // 2)
            t = (np.arange(ramp) + 0.5) / ramp  # 0..1, never exactly 0
            w[:ramp] = np.sin(0.5 * np.pi * t) ** 2
            w[n - ramp :] = w[:ramp][::-1]
        weights.append(np.maximum(w, 1e-3))
    return (
        weights[0][:, None, None] * weights[1][None, :, None] * weights[2][None, None, :]
    ).astype(np.float32)


def to_float(image: np.ndarray) -> np.ndarray:
    """uint8 EM to [0, 1] float32; float input is passed through as float32."""
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    if image.dtype.kind == "f":
        return image.astype(np.float32, copy=False)
    raise AvanInputError(f"image dtype {image.dtype} is not uint8 or float: convert it first")


def resample(volume: np.ndarray, shape: tuple[int, ...], order: int) -> np.ndarray:
    """Resize a (z, y, x) volume to ``shape`` (linear for order 1, nearest for 0)."""
    if tuple(volume.shape) == tuple(shape):
        return volume
    from scipy import ndimage

    factors = [t / s for t, s in zip(shape, volume.shape, strict=True)]
    out = ndimage.zoom(volume, factors, order=order, mode="nearest", grid_mode=True)
    # zoom can miss the target by one voxel through rounding: crop or edge-pad to fit
    out = out[tuple(slice(0, t) for t in shape)]
    pad = [(0, t - s) for t, s in zip(shape, out.shape, strict=True)]
    return np.pad(out, pad, mode="edge") if any(p for _, p in pad) else out


def working_shape(
    shape: Sequence[int], voxel_size_nm: Sequence[float], working_nm: Sequence[float]
) -> tuple[int, ...]:
    """The shape a volume of ``shape`` at ``voxel_size_nm`` takes at ``working_nm``."""
    return tuple(
        max(1, round(n * v / w)) for n, v, w in zip(shape, voxel_size_nm, working_nm, strict=True)
    )


def crop_window(
    array: np.ndarray, start: Sequence[int], patch: Sequence[int], *, mirror: bool
) -> np.ndarray:
    """``array[start : start + patch]``; where the window leaves the array it is padded by
    mirroring (``mirror``, for images) or with zeros (for labels and masks)."""
    slices, pads = [], []
    for s, p, n in zip(start, patch, array.shape, strict=True):
        a, b = max(0, s), min(n, s + p)
        slices.append(slice(a, b))
        pads.append((a - s, s + p - b))
    out = array[tuple(slices)]
    if not any(x or y for x, y in pads):
        return out
    return pad_mirror(out, pads) if mirror else np.pad(out, pads)


def pad_mirror(array: np.ndarray, pads: list[tuple[int, int]]) -> np.ndarray:
    """Reflect-pad ``array``; where an axis is too short to reflect, repeat its edge."""
    if not any(a or b for a, b in pads):
        return array
    small = any(n <= max(p) for n, p in zip(array.shape, pads, strict=True))
    return np.pad(array, pads, mode="edge" if small else "reflect")


def _pad_widths(shape: Shape3, patch: Shape3, overlap: Shape3) -> list[tuple[int, int]]:
    widths = []
    for size, p, o in zip(shape, patch, overlap, strict=True):
        before = o // 2
        after = o - before
        short = p - (size + before + after)
        if short > 0:
            before += short // 2
            after += short - short // 2
        widths.append((before, after))
    return widths


def _check(patch: Shape3, overlap: Shape3, divisor: Shape3) -> None:
    for p, o, d, axis in zip(patch, overlap, divisor, "zyx", strict=True):
        if p < 1 or p % d:
            raise AvanInputError(f"patch size {p} along {axis} must be a positive multiple of {d}")
        if not 0 <= o < p:
            raise AvanInputError(f"overlap {o} along {axis} must be >= 0 and below the patch {p}")


def iter_predict(
    network: nn.Module,
    inputs: np.ndarray,
    *,
    patch: Shape3,
    overlap: Shape3,
    out_channels: int,
    run: RunPlan | None = None,
    batch_size: int = 1,
    flip_tta: bool = False,
    activation: str | None = "sigmoid",
) -> Iterator[Progress]:
    """Predict ``network`` over ``inputs`` in overlapping patches.

    Args:
        network: maps (batch, C, z, y, x) to (batch, out_channels, z, y, x).
        inputs: (C, z, y, x) float32 (see :func:`to_float`), or (z, y, x) for C = 1.
        patch: (z, y, x) patch shape; multiples of the network's divisor.
        overlap: (z, y, x) voxels shared by neighbouring patches.
        out_channels: channels the network outputs.
        run: device plan; default :func:`napari_avan.models.device.plan`.
        batch_size: patches per forward pass.
        flip_tta: average the four in-plane flips.
        activation: ``"sigmoid"``, ``"tanh"`` or None (raw outputs).

    Yields:
        Progress after each batch; the last one carries the (out_channels, z, y, x) result.
    """
    if inputs.ndim == 3:
        inputs = inputs[None]
    if inputs.ndim != 4:
        raise AvanInputError(f"inputs must be (C, z, y, x) or (z, y, x), got {inputs.shape}")
    if activation not in ("sigmoid", "tanh", None):
        raise AvanInputError(f"activation {activation!r} is not 'sigmoid', 'tanh' or None")
    config = getattr(network, "config", None)
    divisor: Shape3 = getattr(config, "divisor", (1, 1, 1))
    _check(patch, overlap, divisor)
    run = run or make_plan()
    network = run.prepare(network)
    shape: Shape3 = (int(inputs.shape[1]), int(inputs.shape[2]), int(inputs.shape[3]))
    pads = _pad_widths(shape, patch, overlap)
    reflect = all(s > max(p) for s, p in zip(shape, pads, strict=True))
    # reflect needs more voxels than the pad; tiny volumes mirror with the edge repeated
    padded = np.pad(inputs, [(0, 0), *pads], mode="reflect" if reflect else "symmetric")
    steps = [p - o for p, o in zip(patch, overlap, strict=True)]
    starts = list(
        itertools.product(
            *(
                window_starts(n, p, s)
                for n, p, s in zip(padded.shape[1:], patch, steps, strict=True)
            )
        )
    )
    weight = bump(patch, overlap)
    acc = np.zeros((out_channels, *padded.shape[1:]), np.float32)
    norm = np.zeros(padded.shape[1:], np.float32)
    flips: list[tuple[int, ...]] = [()] + ([(-1,), (-2,), (-2, -1)] if flip_tta else [])
    total = len(starts)
    for first in range(0, total, batch_size):
        chunk = starts[first : first + batch_size]
        batch = np.stack(
            [padded[:, z : z + patch[0], y : y + patch[1], x : x + patch[2]] for z, y, x in chunk]
        )
        tensor = run.tensor(torch.from_numpy(np.ascontiguousarray(batch)))
        out = torch.zeros((len(chunk), out_channels, *patch), dtype=torch.float32)
        with run.autocast():
            for dims in flips:
                x_in = torch.flip(tensor, dims) if dims else tensor
                y_out = run.forward(network, x_in).float()
                if activation == "sigmoid":
                    y_out = torch.sigmoid(y_out)
                elif activation == "tanh":
                    y_out = torch.tanh(y_out)
                out += (torch.flip(y_out, dims) if dims else y_out).cpu()
        result = out.numpy() / len(flips)
        for (z, y, x), values in zip(chunk, result, strict=True):
            region = (slice(z, z + patch[0]), slice(y, y + patch[1]), slice(x, x + patch[2]))
            acc[(slice(None), *region)] += values * weight
            norm[region] += weight
        done = min(first + batch_size, total)
        if done < total:
            yield Progress(done, total)
    crop = tuple(slice(b, b + n) for (b, _), n in zip(pads, shape, strict=True))
    final = acc[(slice(None), *crop)] / norm[crop]
    yield Progress(total, total, final.astype(np.float32))


def predict(network: nn.Module, inputs: np.ndarray, **kwargs: Any) -> np.ndarray:
    """Run :func:`iter_predict` to the end and return its result."""
    result = None
    for step in iter_predict(network, inputs, **kwargs):
        result = step.result
    assert result is not None
    return result


def adapt_batchnorm(
    network: nn.Module,
    inputs: np.ndarray,
    *,
    patch: Shape3,
    max_patches: int = 64,
    run: RunPlan | None = None,
) -> nn.Module:
    """A copy of ``network`` whose BatchNorm statistics are re-estimated on ``inputs``.

    The adaptation of a network to a new volume without labels (AdaBN: Li et al. 2016,
    "Revisiting batch normalization for practical domain adaptation"): every BatchNorm's
    running mean and variance are replaced by their averages over up to ``max_patches``
    patches of ``inputs`` (the tiling's windows, evenly spaced), in fp32, with no weight
    changed. ``inputs`` is (C, z, y, x) or (z, y, x) float32 at the network's working voxel
    size. ``network`` itself is left untouched; without BatchNorm it is returned as is.
    """
    norms = [m for m in network.modules() if isinstance(m, nn.BatchNorm3d)]
    if not norms:
        return network
    if max_patches < 1:
        raise AvanInputError(f"max_patches must be at least 1, got {max_patches}")
    if inputs.ndim == 3:
        inputs = inputs[None]
    config = getattr(network, "config", None)
    divisor: Shape3 = getattr(config, "divisor", (1, 1, 1))
    _check(patch, (0, 0, 0), divisor)
    shape: Shape3 = (int(inputs.shape[1]), int(inputs.shape[2]), int(inputs.shape[3]))
    pads = [(0, max(0, p - n)) for n, p in zip(shape, patch, strict=True)]
    padded = (
        np.pad(inputs, [(0, 0), *pads], mode="symmetric") if any(b for _, b in pads) else inputs
    )
    starts = list(
        itertools.product(
            *(window_starts(n, p, p) for n, p in zip(padded.shape[1:], patch, strict=True))
        )
    )
    if len(starts) > max_patches:
        picks = np.linspace(0, len(starts) - 1, max_patches).round().astype(int)
        starts = [starts[i] for i in np.unique(picks)]
    run = run or make_plan()
    adapted = copy.deepcopy(network).to(run.device)
    adapted.eval()
    for module in adapted.modules():
        if isinstance(module, nn.BatchNorm3d):
            module.reset_running_stats()
            module.momentum = None  # a plain average over the patches
            module.train()
    with torch.no_grad():
        for z, y, x in starts:
            window = padded[:, z : z + patch[0], y : y + patch[1], x : x + patch[2]]
            adapted(torch.from_numpy(np.ascontiguousarray(window[None])).to(run.device))
    return adapted.eval().cpu()
