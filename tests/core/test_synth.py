"""Synthetic EM: exact ground truth, determinism, realism, and direction only in the image."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage as ndi

from napari_avan.core._synth_stats import REAL_TARGETS, membrane_mask, realism_stats
from napari_avan.core.synth import SynthConfig, synthesize
from napari_avan.types import PARTNER_COLUMNS, AvanInputError, Sample

SMALL = (12, 128, 128)
SIX = ndi.generate_binary_structure(3, 1)


def check_ground_truth(sample: Sample, polyadic: bool) -> None:
    """Every invariant the generator promises about its labels and partner table."""
    seg, clefts, partners = sample.segmentation, sample.clefts, sample.partners
    assert sample.image.dtype == np.uint8
    assert seg.dtype == np.uint32 and clefts.dtype == np.uint32
    assert seg.shape == clefts.shape == sample.image.shape
    assert list(partners.columns) == list(PARTNER_COLUMNS)
    assert all(partners[c].dtype == np.uint64 for c in PARTNER_COLUMNS)
    ids = np.unique(clefts[clefts > 0])
    np.testing.assert_array_equal(ids, np.arange(1, ids.size + 1))  # contiguous 1..N
    assert set(partners["cleft_id"].tolist()) == set(ids.tolist())  # no cleft without partners
    assert not partners.duplicated().any()
    assert (partners["pre_id"] != partners["post_id"]).all()
    present = set(np.unique(seg).tolist())
    objects = ndi.find_objects(clefts)
    for cleft_id, rows in partners.groupby("cleft_id"):
        assert rows["pre_id"].nunique() == 1
        posts = rows["post_id"].tolist()
        if polyadic:
            assert 2 <= len(posts) <= 4
        else:
            assert len(posts) == 1
        box = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in objects[int(cleft_id) - 1])
        near = ndi.binary_dilation(clefts[box] == cleft_id, structure=SIX)
        touching = set(np.unique(seg[box][near]).tolist())
        for seg_id in (int(rows["pre_id"].iloc[0]), *posts):
            assert seg_id != 0 and seg_id in present
            assert seg_id in touching, f"partner {seg_id} does not touch cleft {cleft_id}"
        # the cleft lies inside its partners only
        inside = set(np.unique(seg[box][clefts[box] == cleft_id]).tolist())
        assert inside <= {int(rows["pre_id"].iloc[0]), *posts}


@pytest.mark.parametrize("polyadic", [False, True])
def test_twenty_seeds_hold_the_invariants(polyadic: bool) -> None:
    for seed in range(20):
        sample = synthesize(seed=seed, shape=SMALL, polyadic=polyadic)
        check_ground_truth(sample, polyadic)
        assert int(sample.clefts.max()) == sample.attrs["counts"]["n_synapses"] == 2


def test_default_volume_is_quick_complete_and_realistic() -> None:
    start = time.perf_counter()
    sample = synthesize(seed=11, polyadic=True)
    elapsed = time.perf_counter() - start
    assert elapsed < 15.0  # the benchmark holds the 5 s target; this only catches a blow-up
    assert sample.image.shape == (32, 256, 256)
    assert sample.voxel_size_nm == (40.0, 4.0, 4.0)
    check_ground_truth(sample, polyadic=True)
    assert int(sample.clefts.max()) == sample.attrs["counts"]["n_synapses"] >= 2
    membrane = membrane_mask(sample.segmentation, sample.voxel_size_nm, 30.0)
    stats = realism_stats(sample.image, membrane, ~membrane & (sample.segmentation > 0))
    assert abs(stats["mean"] - REAL_TARGETS["mean"]) < 25
    assert abs(stats["sd"] - REAL_TARGETS["sd"]) < 15
    assert stats["p1"] < 45 and stats["p99"] > 190
    assert abs(stats["p50"] - REAL_TARGETS["p50"]) < 25
    assert abs(stats["membrane_mean"] - REAL_TARGETS["membrane_mean"]) < 25
    assert abs(stats["interior_mean"] - REAL_TARGETS["interior_mean"]) < 25
    assert 0.1 < stats["membrane_fraction"] < 0.35


def test_clefts_look_like_real_synapse_masks() -> None:
    sizes, spans = [], []
    for seed in range(3):
        sample = synthesize(seed=seed, shape=(16, 256, 256), voxel_size_nm=(50, 4.6, 4.6))
        check_ground_truth(sample, polyadic=False)
        for box in ndi.find_objects(sample.clefts):
            spans.append(box[0].stop - box[0].start)
        sizes += np.bincount(sample.clefts.ravel())[1:].tolist()
    # real VNC masks: median 2,300 voxels (255 to 6,400) over a median of 3 sections
    assert 300 < np.median(sizes) < 6000
    assert 2 <= np.median(spans) <= 5


def test_same_seed_same_volume_other_seed_differs() -> None:
    a = synthesize(seed=4, shape=SMALL)
    b = synthesize(SynthConfig(shape=SMALL), seed=4)
    c = synthesize(seed=5, shape=SMALL)
    for name in ("image", "segmentation", "clefts"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
        assert not np.array_equal(getattr(a, name), getattr(c, name))
    pd.testing.assert_frame_equal(a.partners, b.partners)
    assert a.attrs == b.attrs
    assert a.attrs["seed"] == 4 and a.attrs["config"]["shape"] == list(SMALL)
    assert a.attrs["generator"] and a.attrs["version"]
    json.dumps(a.attrs)  # JSON-safe provenance


def test_voxel_size_is_physical() -> None:
    """At 50 x 4.6 x 4.6 nm the same structures appear, at their own pixel size."""
    sample = synthesize(seed=2, shape=(10, 160, 160), voxel_size_nm=(50, 4.6, 4.6))
    assert sample.voxel_size_nm == (50.0, 4.6, 4.6)
    check_ground_truth(sample, polyadic=False)
    for vox in ((40.0, 4.0, 4.0), (50.0, 4.6, 4.6)):
        s = synthesize(seed=3, shape=(12, 200, 200), voxel_size_nm=vox)
        membrane = membrane_mask(s.segmentation, vox, 30.0)
        stats = realism_stats(s.image, membrane)
        assert stats["membrane_mean"] < stats["interior_mean"] - 40


def _blob_centres(image: np.ndarray, seg: np.ndarray, px_nm: float) -> np.ndarray:
    """Dark blobs about one vesicle across, away from membranes (difference of Gaussians)."""
    img = image.astype(np.float32)
    small = ndi.gaussian_filter(img, (0, 16.0 / px_nm, 16.0 / px_nm))
    large = ndi.gaussian_filter(img, (0, 40.0 / px_nm, 40.0 / px_nm))
    response = large - small
    peak = ndi.maximum_filter(response, size=(1, 7, 7)) == response
    away = ~membrane_mask(seg, (1.0, px_nm, px_nm), 50.0) & (seg > 0)
    return peak & (response > 18.0) & away


def _side_statistics(sample: Sample) -> tuple[list[float], list[float], list[float]]:
    """Per cleft: pre share of the mask; blob densities (per um^2) near it in pre and posts."""
    seg, clefts = sample.segmentation, sample.clefts
    px = sample.voxel_size_nm[1]
    blobs = _blob_centres(sample.image, seg, px)
    shares, pre_density, post_density = [], [], []
    for cleft_id, rows in sample.partners.groupby("cleft_id"):
        pre = int(rows["pre_id"].iloc[0])
        posts = rows["post_id"].astype(np.int64).to_numpy()
        cleft = clefts == cleft_id
        labels = seg[cleft]
        n_pre = np.count_nonzero(labels == pre)
        shares.append(n_pre / labels.size)
        near = np.zeros_like(cleft)
        for z in np.unique(np.nonzero(cleft)[0]):
            near[z] = ndi.distance_transform_edt(~cleft[z]) * px < 250.0
        area_um2 = px * px / 1e6
        in_pre = near & (seg == pre)
        in_post = near & np.isin(seg, posts)
        pre_density.append(np.count_nonzero(blobs & in_pre) / (in_pre.sum() * area_um2))
        post_density.append(np.count_nonzero(blobs & in_post) / (in_post.sum() * area_um2))
    return shares, pre_density, post_density


@pytest.mark.parametrize("polyadic", [False, True])
def test_direction_is_in_the_image_not_in_the_mask(polyadic: bool) -> None:
    shares: list[float] = []
    pre: list[float] = []
    post: list[float] = []
    for seed in range(6):
        s, a, b = _side_statistics(synthesize(seed=seed, shape=(16, 192, 192), polyadic=polyadic))
        shares += s
        pre += a
        post += b
    # the cleft band is symmetric about the membrane: the mask does not say which side is pre
    assert abs(float(np.mean(shares)) - 0.5) < 0.05
    # vesicles (and the T-bar) make dark blobs on the presynaptic side only
    assert float(np.mean(pre)) > 3.0 * float(np.mean(post))
    assert np.mean(np.array(pre) > np.array(post)) >= 0.8


def test_missing_and_defective_sections_leave_labels_alone() -> None:
    clean = synthesize(seed=1, shape=SMALL)
    damaged = synthesize(seed=1, shape=SMALL, missing_section_prob=0.4, defect_prob=0.4)
    missing = damaged.attrs["missing_sections"]
    assert missing and len(missing) < SMALL[0]
    assert damaged.attrs["defective_sections"]
    for z in range(SMALL[0]):
        assert (damaged.image[z].max() == 0) == (z in missing)
    np.testing.assert_array_equal(clean.segmentation, damaged.segmentation)
    np.testing.assert_array_equal(clean.clefts, damaged.clefts)
    pd.testing.assert_frame_equal(clean.partners, damaged.partners)


def test_options_combine_and_switch_parts_off() -> None:
    config = SynthConfig(shape=SMALL, polyadic=True, n_synapses=2)
    sample = synthesize(config, seed=0, n_synapses=1, extracellular_pockets=False, t_bar=False)
    assert sample.partners["cleft_id"].nunique() == 1
    assert sample.attrs["config"]["t_bar"] is False
    assert np.all(sample.segmentation > 0)  # no extracellular pockets: every voxel in a cell
    check_ground_truth(sample, polyadic=True)
    three = synthesize(seed=2, shape=SMALL, polyadic=True, posts_per_synapse=(3, 3))
    assert three.clefts.max() >= 1
    assert (three.partners.groupby("cleft_id").size() == 3).all()
    none = synthesize(seed=0, shape=SMALL, n_synapses=0)
    assert none.clefts.max() == 0 and len(none.partners) == 0
    assert list(none.partners.columns) == list(PARTNER_COLUMNS)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"shape": (2, 64, 64)}, "too small"),
        ({"shape": (4, 64)}, "three integers"),
        ({"shape": (4.5, 64, 64)}, "three integers"),
        ({"shape": (8, 16, 16)}, "in-plane"),
        ({"voxel_size_nm": (0, 4, 4)}, "positive"),
        ({"posts_per_synapse": (3, 2)}, "posts_per_synapse"),
        ({"posts_per_synapse": (2, 9)}, "at most 6"),
        ({"n_synapses": -1}, "n_synapses"),
        ({"missing_section_prob": 2.0}, "missing_section_prob"),
        ({"membrane_thickness_nm": -1}, "membrane_thickness_nm"),
        ({"noise_sd": float("nan")}, "noise_sd"),
        ({"polyadic": "yes"}, "polyadic"),
        ({"colour": 1}, "unknown synthetic option"),
    ],
)
def test_bad_options_are_named(overrides: dict, message: str) -> None:
    with pytest.raises(AvanInputError, match=message):
        synthesize(seed=0, **overrides)


def test_bad_seed_and_config_are_refused() -> None:
    with pytest.raises(AvanInputError, match="seed"):
        synthesize(seed=-1)
    with pytest.raises(AvanInputError, match="seed"):
        synthesize(seed=1.5)  # type: ignore[arg-type]
    with pytest.raises(AvanInputError, match="SynthConfig"):
        synthesize({"shape": SMALL})  # type: ignore[arg-type]
