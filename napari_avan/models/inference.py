"""Sliding-window prediction over a (z, y, x) volume, the first step of cleft detection.

Patches overlap and are blended with a separable bump weight, so a network whose output
does not depend on position gives a seamless map. The volume is reflect-padded by half the
overlap (and more where it is smaller than a patch), so borders see the same context as the
interior. Optional test-time augmentation averages the in-plane flips. Work is a generator
that yields :class:`Progress` after every batch; stopping the iteration cancels it.

Blending is exact and independent of the order in which patches are added: each weighted
output is rounded to a fixed-point integer (:data:`BLEND_SCALE`) and summed in int64, and the
sum of the weights is the product of per-axis sums (the windows form a product grid). So a
blockwise run (:mod:`napari_avan.bulk`) that adds the same patches in another grouping gets
the same bits as the whole-volume run. :func:`resample_linear` is likewise defined voxel by
voxel from global coordinates, so a block of it equals the same block of the whole.
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
    """Separable blending weight (float64): 1 in the middle, falling smoothly to near 0 at
    the edges. Along an axis without overlap the weight is flat."""
    wz, wy, wx = (axis_bump(n, o) for n, o in zip(patch, overlap, strict=True))
    return wz[:, None, None] * wy[None, :, None] * wx[None, None, :]


def axis_bump(n: int, overlap: int) -> np.ndarray:
    """The blending weight along one axis of ``n`` voxels with ``overlap``: a squared-sine
    ramp over the overlap at each end (never exactly 0), flat without overlap."""
    w = np.ones(n, np.float64)
    if overlap > 0:
        ramp = min(overlap, n // 2)
        t = (np.arange(ramp) + 0.5) / ramp  # 0..1, never exactly 0
        w[:ramp] = np.sin(0.5 * np.pi * t) ** 2
        w[n - ramp :] = w[:ramp][::-1]
    return np.maximum(w, 1e-3)


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


def linear_taps(n_in: int, n_out: int, start: int, stop: int) -> tuple[Any, Any, Any]:
    """Linear interpolation from an axis of ``n_in`` voxels to one of ``n_out``, for the
    output voxels ``start:stop``: the two input voxels each reads and the weight of the
    second (float32). Voxel centres are aligned (``(i + 0.5) * n_in / n_out - 0.5``, the
    mapping of ``scipy.ndimage.zoom(..., grid_mode=True)``) and clamped at the edges."""
    centre = (np.arange(start, stop, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
    centre = np.clip(centre, 0.0, n_in - 1.0)
    low = np.floor(centre).astype(np.int64)
    high = np.minimum(low + 1, n_in - 1)
    return low, high, (centre - low).astype(np.float32)


def resample_linear(
    volume: np.ndarray,
    shape: Sequence[int],
    *,
    region: Sequence[tuple[int, int]] | None = None,
    source_offset: Sequence[int] = (0, 0, 0),
    source_shape: Sequence[int] | None = None,
) -> np.ndarray:
    """Linear resize of a float32 (z, y, x) volume to ``shape``, axis by axis (z, then y,
    then x), in float32.

    Every output voxel is computed from global coordinates alone, so a block gives exactly
    the voxels of the whole: ``region`` (``(start, stop)`` per axis of the output, default
    all of it) picks the block, ``volume`` may then be just the part of a source volume of
    ``source_shape`` that starts at ``source_offset`` and holds the voxels the block reads
    (see :func:`linear_source_span`).
    """
    volume = np.asarray(volume, dtype=np.float32)
    full = tuple(int(n) for n in (source_shape or volume.shape))
    target = tuple(int(n) for n in shape)
    spans = region or [(0, n) for n in target]
    if full == target and region is None and tuple(source_offset) == (0, 0, 0):
        return volume
    out = volume
    for axis in range(3):
        start, stop = spans[axis]
        if full[axis] == target[axis]:  # nothing to resample: a view of the part asked for
            part = slice(start - source_offset[axis], stop - source_offset[axis])
            out = out[(slice(None),) * axis + (part,)]
            continue
        low, high, weight = linear_taps(full[axis], target[axis], start, stop)
        a = np.take(out, low - source_offset[axis], axis=axis)
        b = np.take(out, high - source_offset[axis], axis=axis)
        w = weight.reshape([-1 if i == axis else 1 for i in range(3)])
        # a + (b - a) * w, in place: two volumes in memory instead of five
        b -= a
        b *= w
        b += a
        out = b
    return out


def linear_source_span(n_in: int, n_out: int, start: int, stop: int) -> tuple[int, int]:
    """The input voxels ``(first, stop)`` that output voxels ``start:stop`` of
    :func:`resample_linear` read along one axis."""
    if n_in == n_out:
        return start, stop
    low, high, _ = linear_taps(n_in, n_out, start, stop)
    return int(low.min()), int(high.max()) + 1


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


def pad_widths(shape: Shape3, patch: Shape3, overlap: Shape3) -> list[tuple[int, int]]:
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
    pads = pad_widths(shape, patch, overlap)
    reflect = all(s > max(p) for s, p in zip(shape, pads, strict=True))
    # reflect needs more voxels than the pad; tiny volumes mirror with the edge repeated
    padded = np.pad(inputs, [(0, 0), *pads], mode="reflect" if reflect else "symmetric")
    steps = [p - o for p, o in zip(patch, overlap, strict=True)]
    axis_starts = [
        window_starts(n, p, s) for n, p, s in zip(padded.shape[1:], patch, steps, strict=True)
    ]
    starts = list(itertools.product(*axis_starts))
    weight = bump(patch, overlap)
    acc = np.zeros((out_channels, *padded.shape[1:]), np.int64)
    total = len(starts)
    for first in range(0, total, batch_size):
        chunk = starts[first : first + batch_size]
        result = window_outputs(
            network, padded, chunk, patch, out_channels, run, flip_tta, activation
        )
        for (z, y, x), values in zip(chunk, result, strict=True):
            region = (slice(z, z + patch[0]), slice(y, y + patch[1]), slice(x, x + patch[2]))
            acc[(slice(None), *region)] += fixed_point(values, weight)
        done = min(first + batch_size, total)
        if done < total:
            yield Progress(done, total)
    norms = blend_norms(padded.shape[1:], axis_starts, patch, overlap)
    crop = [(b, b + n) for (b, _), n in zip(pads, shape, strict=True)]
    sliced = tuple(slice(a, b) for a, b in crop)
    yield Progress(total, total, blend_result(acc[(slice(None), *sliced)], norms, crop))


def window_outputs(
    network: nn.Module,
    padded: np.ndarray,
    starts: Sequence[Sequence[int]],
    patch: Shape3,
    out_channels: int,
    run: RunPlan,
    flip_tta: bool,
    activation: str | None,
) -> np.ndarray:
    """The activated outputs (batch, out_channels, *patch) of one forward pass over the
    windows of ``padded`` (C, z, y, x) that start at ``starts``; ``network`` is prepared
    by ``run``."""
    batch = np.stack(
        [padded[:, z : z + patch[0], y : y + patch[1], x : x + patch[2]] for z, y, x in starts]
    )
    tensor = run.tensor(torch.from_numpy(np.ascontiguousarray(batch)))
    flips: list[tuple[int, ...]] = [()] + ([(-1,), (-2,), (-2, -1)] if flip_tta else [])
    out = torch.zeros((len(starts), out_channels, *patch), dtype=torch.float32)
    with run.autocast():
        for dims in flips:
            x_in = torch.flip(tensor, dims) if dims else tensor
            y_out = run.forward(network, x_in).float()
            if activation == "sigmoid":
                y_out = torch.sigmoid(y_out)
            elif activation == "tanh":
                y_out = torch.tanh(y_out)
            out += (torch.flip(y_out, dims) if dims else y_out).cpu()
    return out.numpy() / len(flips)


#: Fixed-point scale of blended outputs: a weighted output ``v * w`` is added as
#: ``round(v * w * BLEND_SCALE)`` in int64, so sums are exact in any order.
BLEND_SCALE = float(2**40)


def fixed_point(values: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """``values * weight`` (one patch's outputs and its bump) as int64 fixed point."""
    return np.rint(values.astype(np.float64) * (weight * BLEND_SCALE)).astype(np.int64)


def blend_norms(
    shape: Sequence[int], axis_starts: Sequence[Sequence[int]], patch: Shape3, overlap: Shape3
) -> list[np.ndarray]:
    """Per axis, the sum of the bump weights of the windows over each voxel of a (padded)
    volume of ``shape`` whose windows start at every combination of ``axis_starts``; the
    outer product of the three is the 3D sum of weights."""
    norms = []
    for axis in range(3):
        profile = axis_bump(patch[axis], overlap[axis])
        total = np.zeros(int(shape[axis]), np.float64)
        for s in axis_starts[axis]:
            total[s : s + patch[axis]] += profile
        norms.append(total)
    return norms


def blend_result(
    acc: np.ndarray, norms: Sequence[np.ndarray], region: Sequence[tuple[int, int]]
) -> np.ndarray:
    """The blended float32 map of int64 sums ``acc`` (channels, z, y, x) covering
    ``region`` (``(start, stop)`` per axis of the padded volume whose per-axis weight sums
    are ``norms``)."""
    nz, ny, nx = (n[a:b] for n, (a, b) in zip(norms, region, strict=True))
    norm = nz[:, None, None] * ny[None, :, None] * nx[None, None, :]
    out = np.empty(acc.shape, np.float32)
    for c in range(acc.shape[0]):
        out[c] = (acc[c] / BLEND_SCALE) / norm
    return out


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
