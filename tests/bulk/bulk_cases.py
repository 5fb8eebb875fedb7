"""Shared by the bulk tests: a small real detector, a noise volume, the comparison."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from napari_avan.io import read_volume
from napari_avan.models.checkpoint import resolve_model, save_model
from napari_avan.models.detect import detect
from napari_avan.models.device import plan
from napari_avan.models.networks import ResidualSymmetricUNet, UNetConfig

WORKING_NM = (40.0, 8.0, 8.0)


def small_detector(folder: Path) -> Path:
    """A small real detector (random weights) with a small window, so that a small volume
    has many windows and window blocks; its threshold keeps many clefts."""
    torch.manual_seed(3)
    network = ResidualSymmetricUNet(UNetConfig(widths=(4, 8), groups=2))
    meta = {
        "task": "cleft-detector",
        "voxel_size_nm": list(WORKING_NM),
        "patch": [4, 32, 32],
        "overlap": [2, 8, 8],
        "postprocess": {"threshold": 0.5, "min_volume_nm3": 40 * 8 * 8 * 6},
    }
    save_model(folder, network, meta)
    # the threshold at the map's 80th percentile gives many clefts of many sizes
    image = noise_image((13, 90, 100))
    prob = detect(resolve_model(str(folder), "cleft-detector"), image, WORKING_NM, run=cpu()).prob
    meta["postprocess"]["threshold"] = float(np.quantile(prob, 0.8))
    save_model(folder, network, meta, overwrite=True)
    return folder


def cpu():
    return plan("cpu")


def noise_image(shape: tuple[int, int, int]) -> np.ndarray:
    """Smooth uint8 noise: structure at several scales, the same for every call."""
    from scipy import ndimage

    noise = np.random.default_rng(7).normal(size=shape)
    smooth = ndimage.gaussian_filter(noise, (0.7, 3, 3))
    return np.clip(128 + 60 * smooth / smooth.std(), 0, 255).astype(np.uint8)


def whole_volume(detector: Path, image: np.ndarray, voxel) -> tuple:
    """The whole-volume path's probability, clefts and table."""
    d = detect(resolve_model(str(detector), "cleft-detector"), image, voxel, run=cpu())
    return d.prob, d.clefts, d.table


def outputs(out: Path) -> tuple:
    prob = read_volume(f"{out}:cleft_prob", lazy=False).data
    clefts = read_volume(f"{out}:clefts", lazy=False, role="clefts").data
    return prob, clefts, pd.read_csv(out / "clefts.csv")


def assert_same_outputs(out: Path, whole: tuple) -> None:
    """The bulk output in ``out`` is the whole-volume one: probability and labels bit for
    bit, the table exactly but for the scores' last bits (float64 sums in another order)."""
    prob, clefts, table = outputs(out)
    assert prob.dtype == np.float32 and clefts.dtype == np.uint32
    np.testing.assert_array_equal(prob, whole[0])
    np.testing.assert_array_equal(clefts, whole[1])
    expected = whole[2]
    assert list(table.columns) == list(expected.columns)
    exact = [c for c in expected.columns if c != "score"]
    pd.testing.assert_frame_equal(table[exact], expected[exact], check_dtype=False)
    np.testing.assert_allclose(table["score"], expected["score"], rtol=1e-12)
