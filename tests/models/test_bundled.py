"""Bundled models (issue 4): registry, sizes, recipes, and the CLI defaults that use them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from napari_avan.cli import main
from napari_avan.core.metrics import cleft_metrics
from napari_avan.core.synth import synthesize
from napari_avan.io import read_volume, write_sample
from napari_avan.models.checkpoint import (
    BUNDLED_DIR,
    DEFAULT_MODELS,
    bundled_models,
    resolve_model,
    sha256_of,
)
from napari_avan.types import AvanInputError


@pytest.mark.parametrize("task", sorted(DEFAULT_MODELS))
def test_each_task_has_a_small_verified_bundled_model_with_its_recipe(task: str) -> None:
    registry = bundled_models()
    name = DEFAULT_MODELS[task]
    assert registry[name]["task"] == task
    folder = BUNDLED_DIR / name
    weights = folder / "weights.pt"
    assert weights.stat().st_size <= 10 * 1024 * 1024
    assert sha256_of(weights) == registry[name]["sha256"]
    recipe = json.loads((folder / "recipe.json").read_text())
    assert recipe["command"].startswith("napari-avan train ")
    assert "--synthetic" in recipe["command"], "bundled weights come from synthetic data only"
    log = pd.read_csv(folder / "log.csv")
    assert len(log) >= 1 and log["step"].is_monotonic_increasing
    model = resolve_model(None, task)
    assert model.metadata["task"] == task
    assert model.metadata["metrics"] == registry[name]["metrics"]


def test_unknown_model_names_list_the_bundled_ones() -> None:
    with pytest.raises(AvanInputError, match="bundled: avan, cleft-detector"):
        resolve_model("no-such-model", "avan")
    with pytest.raises(AvanInputError, match="avan model, but a cleft-detector"):
        resolve_model("avan", "cleft-detector")


def test_detect_and_assign_default_to_the_bundled_models(tmp_path: Path) -> None:
    sample = synthesize(seed=9001, shape=(16, 128, 128))  # a hold-out seed
    data = write_sample(tmp_path / "s.zarr", sample)
    out = tmp_path / "det.zarr"
    assert main(["detect", f"{data}:image", "--out", str(out), "--quiet"]) == 0
    clefts = read_volume(f"{out}:clefts", lazy=False).data
    # the bundled detector finds real clefts, not noise: most true clefts are matched
    metrics = cleft_metrics(clefts, sample.clefts, any_overlap=True)
    assert metrics.recall >= 0.5 and metrics.precision >= 0.5
    edges = tmp_path / "edges.csv"
    args = ["assign", f"{data}:image", "--clefts", f"{data}:clefts"]
    args += ["--segmentation", f"{data}:segmentation", "--out", str(edges), "--quiet"]
    assert main(args) == 0
    table = pd.read_csv(edges)
    truth = sample.partners
    found = set(
        zip(table["cleft_segid"], table["presyn_segid"], table["postsyn_segid"], strict=True)
    )
    true_edges = set(zip(truth["cleft_id"], truth["pre_id"], truth["post_id"], strict=True))
    assert len(found & true_edges) >= 0.8 * len(true_edges)
    assert np.all(table["presyn_segid"] != table["postsyn_segid"])
