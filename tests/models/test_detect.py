"""Detection end to end: a saved model, resampling to its voxel size, labels and table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from napari_avan.cli import main
from napari_avan.core.clefts import clefts_from_probability
from napari_avan.core.synth import synthesize
from napari_avan.io import read_volume, write_sample
from napari_avan.models.checkpoint import load_model, save_model
from napari_avan.models.detect import detect
from napari_avan.models.device import plan
from napari_avan.models.inference import adapt_batchnorm, predict, to_float
from napari_avan.models.networks import ResidualSymmetricUNet, UNetConfig
from napari_avan.types import AvanInputError

FP32 = plan("cpu", allow_bf16=False)


def tiny_detector(tmp_path: Path, *, bias: float | None = None, target: str = "mask") -> Path:
    torch.manual_seed(0)
    net = ResidualSymmetricUNet(UNetConfig(widths=(4, 8), groups=2))
    if bias is not None:  # a model that sees clefts everywhere, whatever the image
        with torch.no_grad():
            net.output.weight.zero_()
            net.output.bias.fill_(bias)
    meta = {
        "voxel_size_nm": [40.0, 8.0, 8.0],
        "patch": [4, 32, 32],
        "overlap": [1, 8, 8],
        "target": target,
    }
    return save_model(tmp_path / f"detector-{target}", net, meta)


def test_everywhere_model_gives_one_cleft_of_the_image_shape(tmp_path: Path) -> None:
    model = load_model(tiny_detector(tmp_path, bias=3.0))
    image = np.random.default_rng(0).integers(0, 255, (5, 50, 46), dtype=np.uint8)
    result = detect(model, image, (40.0, 4.0, 4.0), run=FP32, min_size=1)
    assert result.prob.shape == image.shape and result.prob.dtype == np.float32
    np.testing.assert_allclose(result.prob, 1 / (1 + np.exp(-3.0)), rtol=1e-4)
    assert result.clefts.max() == 1 and (result.clefts == 1).all()
    assert list(result.table["cleft_segid"]) == [1]
    assert int(result.table["size"].iloc[0]) == image.size


@pytest.mark.parametrize("bias", [-3.0, 3.0])
def test_a_proximity_detectors_clefts_are_both_strong_sides(tmp_path: Path, bias: float) -> None:
    # signed proximity: presynaptic side positive, postsynaptic negative; either is a cleft
    model = load_model(tiny_detector(tmp_path, bias=bias, target="proximity"))
    image = np.random.default_rng(0).integers(0, 255, (5, 50, 46), dtype=np.uint8)
    result = detect(model, image, (40.0, 4.0, 4.0), run=FP32, threshold=0.5, min_size=1)
    np.testing.assert_allclose(result.prob, np.tanh(3.0), rtol=1e-4)
    assert (result.clefts == 1).all()


def test_labels_follow_the_probability(tmp_path: Path) -> None:
    model = load_model(tiny_detector(tmp_path))
    image = synthesize(seed=0, shape=(6, 96, 96)).image
    result = detect(model, image, (40.0, 4.0, 4.0), run=FP32, threshold=0.5, min_size=3)
    expected = clefts_from_probability(result.prob, threshold=0.5, min_size=3)
    np.testing.assert_array_equal(result.clefts, expected)
    assert len(result.table) == int(result.clefts.max())
    with pytest.raises(AvanInputError, match=r"\(z, y, x\)"):
        detect(model, image[0], (40.0, 4.0, 4.0), run=FP32)


def test_cli_detect_writes_prob_labels_and_table(tmp_path: Path) -> None:
    sample = synthesize(seed=1, shape=(6, 64, 64))
    data = write_sample(tmp_path / "s.zarr", sample)
    model = tiny_detector(tmp_path, bias=3.0)
    out = tmp_path / "det.zarr"
    args = [
        "detect",
        f"{data}:image",
        "--out",
        str(out),
        "--model",
        str(model),
        "--quiet",
        "--min-size",
        "1",
        "--device",
        "cpu",
    ]
    assert main(args) == 0
    prob = read_volume(f"{out}:cleft_prob", lazy=False)
    clefts = read_volume(f"{out}:clefts", lazy=False)
    assert prob.shape == clefts.shape == sample.image.shape
    assert prob.voxel_size_nm == sample.voxel_size_nm
    assert clefts.dtype == np.uint32
    table = pd.read_csv(out / "clefts.csv")
    assert len(table) == int(clefts.data.max()) == 1
    assert main(args) == 2  # the output exists: refused without --overwrite


def test_an_avan_model_is_not_a_detector(tmp_path: Path) -> None:
    net = ResidualSymmetricUNet(UNetConfig(in_channels=2, out_channels=2, widths=(4, 8), groups=2))
    model = load_model(save_model(tmp_path / "avan", net, {"voxel_size_nm": [40, 4, 4]}))
    with pytest.raises(AvanInputError, match="not a cleft detector"):
        detect(model, np.zeros((2, 32, 32), np.uint8), (40.0, 4.0, 4.0), run=FP32)


def test_post_processing_defaults_come_from_the_model(tmp_path: Path) -> None:
    model = load_model(tiny_detector(tmp_path))
    image = synthesize(seed=0, shape=(6, 96, 96)).image
    voxel = (40.0, 4.0, 4.0)
    plain = detect(model, image, voxel, run=FP32)
    np.testing.assert_array_equal(
        plain.clefts, clefts_from_probability(plain.prob, threshold=0.5, min_size=50)
    )
    threshold = float(np.quantile(plain.prob, 0.7))
    model.metadata["postprocess"] = {"threshold": threshold, "min_volume_nm3": 20 * 640.0}
    tuned = detect(model, image, voxel, run=FP32)
    expected = clefts_from_probability(plain.prob, threshold=threshold, min_size=20)
    np.testing.assert_array_equal(tuned.clefts, expected)
    assert tuned.clefts.max() > 0, "the test needs clefts to compare"
    # arguments given by the caller win over the model's defaults
    given = detect(model, image, voxel, run=FP32, threshold=0.5, min_size=50)
    np.testing.assert_array_equal(given.clefts, plain.clefts)


def test_adapt_norm_detects_with_statistics_of_this_image(tmp_path: Path) -> None:
    model = load_model(tiny_detector(tmp_path))  # BatchNorm, at 40 x 8 x 8 nm
    image = synthesize(seed=2, shape=(8, 64, 64)).image
    before = {k: v.clone() for k, v in model.network.state_dict().items()}
    plain = detect(model, image, (40.0, 8.0, 8.0), run=FP32, min_size=1)
    adapted = detect(model, image, (40.0, 8.0, 8.0), run=FP32, min_size=1, adapt_norm=True)
    # the same as predicting with a copy adapted on the image (at the working voxel size)
    net = adapt_batchnorm(model.network, to_float(image), patch=(4, 32, 32), run=FP32)
    expected = predict(net, to_float(image), patch=(4, 32, 32), overlap=(1, 8, 8),
                       out_channels=1, run=FP32)[0]  # fmt: skip
    np.testing.assert_allclose(adapted.prob, expected, atol=1e-5)
    assert np.abs(adapted.prob - plain.prob).max() > 1e-3
    for key, value in model.network.state_dict().items():  # the loaded model is unchanged
        torch.testing.assert_close(value, before[key])
