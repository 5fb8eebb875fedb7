"""Training augmentation for (z, y, x) patches (issue 4).

Geometric transforms (flips along each axis, in-plane 90-degree rotations, the in-plane
transpose) apply alike to the image and every label or target array of a sample, so they
stay aligned. Intensity transforms (scale and shift, in-plane blur, noise, a missing
section) touch the image only. Everything draws from the ``numpy.random.Generator`` it is
given, so a seed reproduces a run.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class Augmentation:
    """Which augmentations run, and how strong. Probabilities are per sample."""

    flips: bool = True
    rotations: bool = True  # in-plane 90-degree rotations and the transpose (square in-plane)
    scale: float = 0.15  # image multiplied by 1 +- scale
    shift: float = 0.1  # plus +- shift (the image is in [0, 1])
    blur_p: float = 0.2
    blur_sigma: float = 1.0  # in-plane voxels, drawn up to this
    noise_p: float = 0.3
    noise_sd: float = 0.04
    missing_p: float = 0.1  # one section replaced by its mean grey level

    @classmethod
    def none(cls) -> Augmentation:
        return cls(False, False, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)


def geometric(arrays: list[np.ndarray], rng: np.random.Generator, aug: Augmentation) -> list:
    """Apply one random flip / rotation to every array alike (their last 3 axes are z, y, x)."""
    out = arrays
    if aug.flips:
        for axis in (-3, -2, -1):
            if rng.random() < 0.5:
                out = [np.flip(a, axis) for a in out]
    square = out[0].shape[-1] == out[0].shape[-2]
    if aug.rotations and square:
        k = int(rng.integers(4))
        if k:
            out = [np.rot90(a, k, axes=(-2, -1)) for a in out]
        if rng.random() < 0.5:
            out = [np.swapaxes(a, -2, -1) for a in out]
    return [np.ascontiguousarray(a) for a in out]


def intensity(image: np.ndarray, rng: np.random.Generator, aug: Augmentation) -> np.ndarray:
    """Random contrast, brightness, blur, noise and a missing section on a [0, 1] image."""
    out = image.astype(np.float32, copy=True)
    if aug.scale or aug.shift:
        factor = 1.0 + rng.uniform(-aug.scale, aug.scale)
        offset = rng.uniform(-aug.shift, aug.shift)
        out = (out - 0.5) * factor + 0.5 + offset
    if aug.blur_p and rng.random() < aug.blur_p:
        sigma = rng.uniform(0.3, aug.blur_sigma)
        out = ndimage.gaussian_filter(out, (0.0,) * (out.ndim - 2) + (sigma, sigma))
    if aug.noise_p and rng.random() < aug.noise_p:
        out = out + rng.normal(0.0, aug.noise_sd, out.shape).astype(np.float32)
    if aug.missing_p and out.shape[-3] > 2 and rng.random() < aug.missing_p:
        z = int(rng.integers(out.shape[-3]))
        out[..., z, :, :] = out[..., z, :, :].mean()
    return np.clip(out, 0.0, 1.0).astype(np.float32)
