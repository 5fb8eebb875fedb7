"""Synthetic EM: exact ground truth, determinism, realism, and direction only in the image."""

from __future__ import annotations

import time

import numpy as np
import pytest
from scipy import ndimage

from napari_avan.core.synth import SynthConfig, synthesize
from napari_avan.types import AvanInputError

SMALL = (12, 128, 128)


def check_ground_truth(sample, polyadic: bool) -> None:
    seg, clefts, partners = sample.segmentation, sample.clefts, sample.partners
    assert sample.image.dtype == np.uint8
    assert seg.dtype == np.uint32 and clefts.dtype == np.uint32
    assert seg.shape == clefts.shape == sample.image.shape
    ids = np.unique(clefts[clefts > 0])
    assert len(ids) >= 1
    np.testing.assert_array_equal(ids, np.arange(1, len(ids) + 1))  # contiguous 1..N
    assert set(partners["cleft_id"]) == set(ids.tolist())  # no cleft without partners
    assert (partners["pre_id"] != partners["post_id"]).all()
    present = set(np.unique(seg).tolist())
    # a voxel touches a segment when it lies in it or is 6-adjacent to it
    six = ndimage.generate_binary_structure(3, 1)
    for cleft_id, rows in partners.groupby("cleft_id"):
        assert rows["pre_id"].nunique() == 1
        n_posts = rows["post_id"].nunique()
        assert n_posts == len(rows)
        if polyadic:
            assert 2 <= n_posts <= 4
        else:
            assert n_posts == 1
        cleft = ndimage.binary_dilation(clefts == cleft_id, structure=six)
        touching = set(np.unique(seg[cleft]).tolist())
        for seg_id in (rows["pre_id"].iloc[0], *rows["post_id"]):
            assert int(seg_id) in present
            assert int(seg_id) in touching, f"partner {seg_id} does not touch cleft {cleft_id}"


@pytest.mark.parametrize("polyadic", [False, True])
def test_twenty_seeds_hold_the_invariants(polyadic: bool) -> None:
    for seed in range(20):
        check_ground_truth(synthesize(seed=seed, shape=SMALL, polyadic=polyadic), polyadic)


def test_default_size_is_quick_and_realistic() -> None:
    start = time.perf_counter()
    sample = synthesize(seed=11, polyadic=True)
    elapsed = time.perf_counter() - start
    assert sample.image.shape == (32, 256, 256)
    assert elapsed < 15.0  # the benchmark holds the 5 s target; this only catches a blow-up
    check_ground_truth(sample, polyadic=True)
    image = sample.image.astype(np.float64)
    assert 105 < image.mean() < 150
    assert 30 < image.std() < 70
    p1, p99 = np.percentile(image, [1, 99])
    assert p1 < 60 and p99 > 180


def test_same_seed_same_volume_other_seed_differs() -> None:
    a = synthesize(seed=4, shape=SMALL)
    b = synthesize(seed=4, shape=SMALL)
    c = synthesize(seed=5, shape=SMALL)
    for name in ("image", "segmentation", "clefts"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert a.partners.equals(b.partners)
    assert not np.array_equal(a.image, c.image)
    assert a.attrs["seed"] == 4 and a.attrs["config"]["shape"] == list(SMALL)


def test_other_voxel_size() -> None:
    sample = synthesize(seed=2, shape=(10, 160, 160), voxel_size_nm=(50, 4.6, 4.6))
    assert sample.voxel_size_nm == (50.0, 4.6, 4.6)
    check_ground_truth(sample, polyadic=False)


def _side_statistics(sample) -> tuple[list[float], list[float]]:
    """Per cleft: the pre share of the cleft mask, and (pre - post) share of dark voxels.

    Dark voxels (< 90) away from membranes (>= 25 nm from a segment border) within 200 nm
    of the cleft are what vesicles and T-bars look like.
    """
    seg, clefts, image = sample.segmentation, sample.clefts, sample.image
    vy = sample.voxel_size_nm[1]
    border = np.zeros(seg.shape, bool)
    border[:, 1:] |= seg[:, 1:] != seg[:, :-1]
    border[:, :-1] |= seg[:, :-1] != seg[:, 1:]
    border[:, :, 1:] |= seg[:, :, 1:] != seg[:, :, :-1]
    border[:, :, :-1] |= seg[:, :, :-1] != seg[:, :, 1:]
    shares, contrast = [], []
    for cleft_id, rows in sample.partners.groupby("cleft_id"):
        pre = int(rows["pre_id"].iloc[0])
        posts = [int(p) for p in rows["post_id"]]
        cleft = clefts == cleft_id
        pre_vox = np.count_nonzero(seg[cleft] == pre)
        post_vox = np.count_nonzero(np.isin(seg[cleft], posts))
        shares.append(pre_vox / (pre_vox + post_vox))
        near = np.zeros_like(cleft)
        for z in np.unique(np.nonzero(cleft)[0]):
            to_cleft = ndimage.distance_transform_edt(~cleft[z]) * vy
            to_border = ndimage.distance_transform_edt(~border[z]) * vy
            near[z] = (to_cleft < 200) & (to_border >= 25)
        dark = image < 90
        pre_dark = dark[near & (seg == pre)].mean()
        post_dark = dark[near & np.isin(seg, posts)].mean()
        contrast.append(pre_dark - post_dark)
    return shares, contrast


@pytest.mark.parametrize("polyadic", [False, True])
def test_direction_is_in_the_image_not_the_mask(polyadic: bool) -> None:
    shares: list[float] = []
    contrast: list[float] = []
    for seed in range(8):
        s, c = _side_statistics(synthesize(seed=seed, shape=(16, 192, 192), polyadic=polyadic))
        shares += s
        contrast += c
    if not polyadic:
        # the cleft sheet is symmetric about the membrane: as much of it on pre as on post
        assert abs(float(np.mean(shares)) - 0.5) < 0.06
    # vesicles and the T-bar put dark blobs inside the presynaptic side only
    # (a mitochondrion in a post can make single clefts ambiguous, as in real tissue)
    assert float(np.mean(contrast)) > 0.1
    assert np.mean(np.array(contrast) > 0) >= 0.75


def test_polyadic_mask_share_per_side_is_balanced() -> None:
    """Per pre-post contact, the mask is split evenly between the two cells."""
    sample = synthesize(seed=3, shape=(16, 192, 192), polyadic=True)
    seg, clefts = sample.segmentation, sample.clefts
    pre_total = post_total = 0
    for cleft_id, rows in sample.partners.groupby("cleft_id"):
        labels = seg[clefts == cleft_id]
        pre_total += np.count_nonzero(labels == int(rows["pre_id"].iloc[0]))
        post_total += np.count_nonzero(np.isin(labels, rows["post_id"].to_numpy()))
    n_posts = len(sample.partners) / sample.partners["cleft_id"].nunique()
    # the pre side is shared by all posts' sheets, so per contact the sides match
    ratio = pre_total / (post_total / n_posts) / n_posts
    assert 0.6 < ratio < 1.6


def test_missing_and_defective_sections() -> None:
    sample = synthesize(seed=1, shape=SMALL, missing_section_prob=0.5)
    blank = [z for z in range(SMALL[0]) if sample.image[z].max() == 0]
    assert blank, "some sections are missing"
    assert len(blank) < SMALL[0]
    check_ground_truth(sample, polyadic=False)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"shape": (4, 8, 8)}, "too small"),
        ({"shape": (4, 64)}, "too small"),
        ({"voxel_size_nm": (0, 4, 4)}, "positive"),
        ({"n_posts": (3, 2)}, "n_posts"),
        ({"missing_section_prob": 2.0}, "missing_section_prob"),
        ({"membrane_thickness_nm": -1}, "membrane_thickness_nm"),
        ({"colour": 1}, "unknown synth option"),
    ],
)
def test_bad_options_are_named(overrides: dict, message: str) -> None:
    with pytest.raises(AvanInputError, match=message):
        synthesize(seed=0, **overrides)


def test_config_object_and_overrides_combine() -> None:
    config = SynthConfig(shape=SMALL, polyadic=True, n_synapses=2)
    sample = synthesize(config, seed=0)
    assert sample.partners["cleft_id"].nunique() == 2
    check_ground_truth(sample, polyadic=True)
