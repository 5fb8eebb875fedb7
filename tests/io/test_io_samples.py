"""Samples: the zarr v3 group that `napari-avan synth` writes, and reading it back."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from napari_avan.io import read_partners, read_sample, read_volume, write_sample
from napari_avan.types import AvanInputError, Sample

VOXEL = (40.0, 4.0, 4.0)


def _sample() -> Sample:
    rng = np.random.default_rng(3)
    shape = (3, 24, 20)
    seg = rng.integers(1, 5, shape).astype(np.uint32)
    clefts = np.zeros(shape, np.uint32)
    clefts[1, 5:8, 5:8] = 1
    clefts[2, 15:18, 5:8] = 2
    partners = pd.DataFrame({"cleft_id": [1, 2, 2], "pre_id": [1, 3, 3], "post_id": [2, 4, 1]})
    return Sample(
        image=rng.integers(0, 255, shape).astype(np.uint8),
        segmentation=seg,
        clefts=clefts,
        partners=partners,
        voxel_size_nm=VOXEL,
        attrs={"generator": "test", "seed": np.int64(3), "polyadic": True, "shape": (3, 24, 20)},
    )


def test_sample_round_trip(tmp_path: Path) -> None:
    sample = _sample()
    path = write_sample(tmp_path / "synth.zarr", sample)
    back = read_sample(path)
    for name in ("image", "segmentation", "clefts"):
        expected = getattr(sample, name)
        got = getattr(back, name)
        assert isinstance(got, np.ndarray)
        assert got.dtype == expected.dtype
        np.testing.assert_array_equal(got, expected)
    assert back.voxel_size_nm == VOXEL
    assert back.attrs == {"generator": "test", "seed": 3, "polyadic": True, "shape": [3, 24, 20]}
    assert back.partners.to_numpy().tolist() == sample.partners.to_numpy().tolist()


def test_sample_layout_is_usable_by_specs(tmp_path: Path) -> None:
    path = write_sample(tmp_path / "synth.zarr", _sample())
    meta = json.loads((path / "zarr.json").read_text())
    assert meta["zarr_format"] == 3
    assert meta["attributes"]["voxel_size_nm"] == list(VOXEL)
    clefts = read_volume(f"{path}:clefts", role="clefts")
    assert clefts.voxel_size_nm == VOXEL
    assert clefts.dtype == np.uint32
    assert len(read_partners(path / "partners.csv")) == 3


def test_sample_errors(tmp_path: Path) -> None:
    sample = _sample()
    bad = Sample(
        image=sample.image,
        segmentation=sample.segmentation[:, :10],
        clefts=sample.clefts,
        partners=sample.partners,
        voxel_size_nm=VOXEL,
    )
    with pytest.raises(AvanInputError, match="segmentation has shape"):
        write_sample(tmp_path / "bad.zarr", bad)
    no_columns = Sample(sample.image, sample.segmentation, sample.clefts, pd.DataFrame(), VOXEL)
    with pytest.raises(AvanInputError, match="lacks column"):
        write_sample(tmp_path / "bad.zarr", no_columns)
    assert list(tmp_path.iterdir()) == []
    path = write_sample(tmp_path / "s.zarr", sample)
    with pytest.raises(AvanInputError, match="already exists"):
        write_sample(path, sample)
    (path / "partners.csv").unlink()
    with pytest.raises(AvanInputError, match=r"lacks partners\.csv"):
        read_sample(path)
