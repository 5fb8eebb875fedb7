"""Training data: volume groups read, generated and split (models/training_data.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from napari_avan.models.training_data import (
    HOLDOUT_SEED,
    SYNTH_TRAIN_SEED,
    SYNTH_VAL_SEED,
    VolumeGroup,
    read_groups,
    split_groups,
    synthetic_groups,
)
from napari_avan.types import AvanInputError


def _group(name: str, shape: tuple[int, int, int]) -> VolumeGroup:
    image = np.arange(np.prod(shape), dtype=np.uint16).reshape(shape)
    partners = pd.DataFrame({"cleft_id": [1], "pre_id": [2], "post_id": [3]})
    return VolumeGroup(name, image, image + 1, image + 2, partners, (40.0, 4.0, 4.0))


def test_split_along_y_cuts_every_array_and_names_the_parts() -> None:
    a, b = _group("a.zarr", (2, 10, 6)), _group("b.zarr", (3, 5, 4))
    train, val = split_groups([a, b], 1, 4)
    assert [g.name for g in train] == ["a.zarr [y<4]", "b.zarr [y<4]"]
    assert [g.name for g in val] == ["a.zarr [y>=4]", "b.zarr [y>=4]"]
    assert [g.shape for g in train] == [(2, 4, 6), (3, 4, 4)]
    assert [g.shape for g in val] == [(2, 6, 6), (3, 1, 4)]
    for part, box in ((train[0], np.s_[:, :4, :]), (val[0], np.s_[:, 4:, :])):
        assert np.array_equal(part.image, a.image[box])
        assert np.array_equal(part.segmentation, a.segmentation[box])
        assert np.array_equal(part.clefts, a.clefts[box])
        assert part.partners is a.partners and part.voxel_size_nm == a.voxel_size_nm


def test_split_along_z_and_x() -> None:
    (low,), (high,) = split_groups([_group("a", (5, 3, 7))], 0, 2)
    assert (low.name, low.shape) == ("a [z<2]", (2, 3, 7))
    assert (high.name, high.shape) == ("a [z>=2]", (3, 3, 7))
    (low,), (high,) = split_groups([_group("a", (5, 3, 7))], 2, 6)
    assert (low.shape, high.shape) == ((5, 3, 6), (5, 3, 1))


def test_split_outside_a_volume_names_it() -> None:
    with pytest.raises(AvanInputError) as err:
        split_groups([_group("a", (2, 10, 6)), _group("b", (2, 4, 6))], 1, 4)
    assert str(err.value) == "--val-split index 4 is outside b (size 4 along y)"


def test_synthetic_groups_are_named_by_their_seeds() -> None:
    dyadic = synthetic_groups(2, False, SYNTH_TRAIN_SEED[False], (8, 64, 64))
    polyadic = synthetic_groups(1, True, SYNTH_VAL_SEED[True], (8, 64, 64))
    assert [g.name for g in dyadic] == ["synthetic-dyadic-seed1000", "synthetic-dyadic-seed1001"]
    assert [g.name for g in polyadic] == ["synthetic-polyadic-seed2500"]
    for g in dyadic + polyadic:
        assert g.shape == g.segmentation.shape == g.clefts.shape == (8, 64, 64)
        assert g.voxel_size_nm == (40.0, 4.0, 4.0)
        assert set(g.partners["cleft_id"]) <= set(np.unique(g.clefts).tolist())
    assert not np.array_equal(dyadic[0].image, dyadic[1].image)
    assert synthetic_groups(0, False, 1000, (8, 64, 64)) == []


def test_the_recipe_seeds_do_not_overlap() -> None:
    assert SYNTH_TRAIN_SEED == {False: 1000, True: 1500}
    assert SYNTH_VAL_SEED == {False: 2000, True: 2500}
    assert HOLDOUT_SEED > max(SYNTH_VAL_SEED.values())


@pytest.mark.parametrize(
    ("prefix", "flags"),
    [
        ("--", "--image, --segmentation, --clefts, --partners"),
        ("--val-", "--val-image, --val-segmentation, --val-clefts, --val-partners"),
    ],
)
def test_mismatched_flag_counts_are_one_line(prefix: str, flags: str) -> None:
    with pytest.raises(AvanInputError) as err:
        read_groups(["x.zarr"], [], ["c.zarr"], [], flag_prefix=prefix)
    assert str(err.value) == f"give {flags} the same number of times (one group per volume)"


def test_read_groups_reads_each_group(tmp_path: Path) -> None:
    from napari_avan.core.synth import synthesize
    from napari_avan.io import write_sample

    out = write_sample(tmp_path / "s.zarr", synthesize(seed=3, shape=(8, 64, 64)))
    spec, partners = f"{out}:image", out / "partners.csv"
    (group,) = read_groups([spec], [f"{out}:segmentation"], [f"{out}:clefts"], [partners])
    assert group.name == spec and group.shape == (8, 64, 64)
    assert group.voxel_size_nm == (40.0, 4.0, 4.0)
    assert group.segmentation.dtype.kind == "u" and len(group.partners) > 0
    floats = tmp_path / "floats.npy"
    np.save(floats, np.zeros((8, 64, 64), np.float32))
    with pytest.raises(AvanInputError, match="labels must be integer"):
        read_groups([spec], [str(floats)], [f"{out}:clefts"], [partners], (40.0, 4.0, 4.0))
