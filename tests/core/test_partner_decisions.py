"""Partner decisions, score sums and the patch plan, without torch.

Re-thresholding or correcting a cleft's partners needs only its scores: importing
``napari_avan.core.partners`` and deciding must not load torch.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from scipy import ndimage

from napari_avan.core.geometry import inplane_structure, label_statistics
from napari_avan.core.partners import (
    CleftAssignment,
    SegmentSums,
    add_segment_sums,
    candidate_segments,
    decide_partners,
    edge_weights,
    mean_scores,
    patch_centres,
    patch_window,
    plan_patches,
)


def test_deciding_partners_loads_no_torch() -> None:
    code = (
        "import json, sys\n"
        "import numpy as np\n"
        "from napari_avan.core.partners import decide_partners, edge_weights\n"
        "a = decide_partners(7, np.array([3, 5, 9]), np.array([0.9, 0.2, 0.7]),\n"
        "                    np.array([0.1, 0.8, 0.6]), True, 0.5, 0.5)\n"
        "edge_weights([a])\n"
        "print(json.dumps({'edges': a.edges, 'modules': sorted(sys.modules)}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout)
    assert [tuple(e) for e in result["edges"]] == [(3, 5), (9, 5)]  # the check itself ran
    heavy = sorted(m for m in result["modules"] if m.split(".")[0] in {"torch", "napari"})
    assert heavy == []


# ------------------------------------------------------------------------ decide_partners


def test_fewer_than_two_candidates_have_no_partners() -> None:
    for ids in ([], [4]):
        scores = np.full(len(ids), 0.9)
        for polyadic in (False, True):
            a = decide_partners(1, np.array(ids), scores, scores, polyadic, 0.5, 0.5)
            assert (a.pre_ids, a.post_ids, a.edges) == ([], [], [])
            assert a.cleft_id == 1


def test_dyadic_takes_the_argmax_pre_and_the_best_other_post() -> None:
    candidates = np.array([10, 20, 30])
    pre = np.array([0.2, 0.9, 0.4])
    post = np.array([0.5, 0.95, 0.6])  # the pre segment is the best post too: skipped
    a = decide_partners(3, candidates, pre, post, False, 0.99, 0.99)
    assert (a.pre_ids, a.post_ids) == ([20], [30])
    assert a.edges == [(20, 30)]
    assert a.score_of(20) == (0.9, 0.95)
    assert all(np.isnan(a.score_of(99)))


def test_polyadic_thresholds_are_strict_and_pre_falls_back_to_the_argmax() -> None:
    candidates = np.array([1, 2, 3, 4])
    pre = np.array([0.7, 0.5, 0.1, 0.6])
    post = np.array([0.9, 0.8, 0.5, 0.51])
    a = decide_partners(9, candidates, pre, post, True, 0.5, 0.5)
    assert a.pre_ids == [1, 4]  # 0.5 is not above 0.5
    assert a.post_ids == [2]  # 1 is pre, 3 is not above 0.5, 4 is pre
    assert a.edges == [(1, 2), (4, 2)]
    none_above = decide_partners(9, candidates, pre, post, True, 0.95, 0.5)
    assert none_above.pre_ids == [1]
    assert none_above.post_ids == [2, 4]


def test_re_thresholding_uses_only_the_stored_scores() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        n = int(rng.integers(2, 8))
        candidates = rng.choice(np.arange(1, 100), size=n, replace=False)
        pre, post = rng.random(n), rng.random(n)
        first = decide_partners(5, candidates, pre, post, True, 0.5, 0.5)
        t_pre, t_post = (float(t) for t in rng.random(2))
        again = decide_partners(
            first.cleft_id,
            first.candidates,
            first.pre_scores,
            first.post_scores,
            True,
            t_pre,
            t_post,
        )
        pres = [int(c) for c, s in zip(candidates, pre, strict=True) if s > t_pre]
        pres = pres or [int(candidates[np.argmax(pre)])]
        posts = [
            int(c) for c, s in zip(candidates, post, strict=True) if s > t_post and c not in pres
        ]
        assert (again.pre_ids, again.post_ids) == (pres, posts)
        assert not set(again.pre_ids) & set(again.post_ids)


def test_edge_weights_has_one_row_per_edge() -> None:
    a = CleftAssignment(
        2, np.array([5, 6, 7]), np.array([0.9, 0.1, 0.8]), np.array([0.2, 0.7, 0.3]), [5, 7], [6]
    )
    b = CleftAssignment(3, np.array([1]), np.array([0.5]), np.array([0.5]))
    weights = edge_weights([a, b])
    assert list(weights.columns) == ["cleft_id", "pre_id", "post_id", "presyn_wt", "postsyn_wt"]
    assert weights.values.tolist() == [[2, 5, 6, 0.9, 0.7], [2, 7, 6, 0.8, 0.7]]
    empty = edge_weights([b])
    assert len(empty) == 0 and list(empty.columns) == list(weights.columns)


# ---------------------------------------------------------------------------- score sums


def test_segment_sums_add_up_over_patches_and_give_means() -> None:
    sums: SegmentSums = {}
    add_segment_sums(
        sums, [0, 4, 9], np.array([1.0, 2.0, 3.0]), np.array([0.5, 1.0, 0.0]), [2, 4, 3]
    )
    add_segment_sums(sums, [4, 9], np.array([2.0, 0.0]), np.array([3.0, 1.5]), np.array([4, 3]))
    assert sums[4].tolist() == [4.0, 4.0, 8.0]
    means = mean_scores(sums, np.array([4, 9, 12]))
    assert means.shape == (3, 2)
    assert means.tolist() == [[0.5, 0.5], [0.5, 0.25], [0.0, 0.0]]  # 12 was never seen
    assert mean_scores(sums, np.array([], dtype=np.uint32)).shape == (0, 2)


@pytest.mark.parametrize("seed", range(6))
def test_candidate_segments_match_a_whole_volume_dilation(seed: int) -> None:
    rng = np.random.default_rng(seed)
    shape = (6, 40, 50)
    segmentation = rng.integers(0, 6, size=shape).astype(np.uint64) * (2**40)
    clefts = np.zeros(shape, np.uint32)
    z, y, x = (int(rng.integers(0, n - 3)) for n in shape)
    clefts[z : z + 2, y : y + 3, x : x + 3] = 4
    clefts[0, 0, 0] = 2  # another cleft
    voxel = (40.0, 4.0, 4.0)
    structure = inplane_structure(20.0, voxel, 3)
    stats = label_statistics(clefts)
    i = int(np.flatnonzero(stats.ids == 4)[0])
    got = candidate_segments(
        clefts, segmentation, 4, stats.bbox_begin[i], stats.bbox_end[i], structure
    )
    region = ndimage.binary_dilation(clefts == 4, structure=structure)
    expected = np.unique(segmentation[region])
    np.testing.assert_array_equal(got, expected[expected != 0])


# -------------------------------------------------------------------------- patch plan


@pytest.mark.parametrize(
    ("center", "extent", "size", "expected"),
    [
        (50, 10, 100, (slice(45, 55), (0, 0))),
        (2, 10, 100, (slice(0, 10), (0, 0))),  # shifted inside at the start
        (98, 10, 100, (slice(90, 100), (0, 0))),  # and at the end
        (3, 10, 7, (slice(0, 7), (1, 2))),  # smaller than a patch: padded
        (0, 8, 8, (slice(0, 8), (0, 0))),
    ],
)
def test_patch_window(center: int, extent: int, size: int, expected: tuple) -> None:
    assert patch_window(center, extent, size) == expected


def test_patch_centres_cover_the_range() -> None:
    assert patch_centres(10, 15, 8, 12) == [12]  # fits in one patch: the anchor
    for begin, end, extent in [(0, 100, 16), (5, 40, 8), (3, 20, 16), (0, 9, 4), (7, 8, 1)]:
        centres = patch_centres(begin, end, extent, (begin + end) // 2)
        covered = set()
        for c in centres:
            covered |= set(range(c - extent // 2, c - extent // 2 + extent))
        assert set(range(begin, end)) <= covered


@pytest.mark.parametrize("seed", range(8))
def test_plan_patches_covers_every_cleft(seed: int) -> None:
    rng = np.random.default_rng(seed)
    shape = (12, 70, 90)
    clefts = np.zeros(shape, np.uint32)
    for cid in (1, 2, 3):
        z, y, x = (int(rng.integers(0, n - 1)) for n in shape)
        dz, dy, dx = (int(rng.integers(1, m)) for m in (6, 60, 60))
        clefts[z : z + dz, y : y + dy, x : x + dx] = cid
    stats = label_statistics(clefts)
    ids = [int(c) for c in stats.ids]
    extent = (4, 24, 32)
    voxel = (40.0, 4.0, 4.0)
    tasks = plan_patches(clefts, stats, ids[::-1], extent, voxel)
    assert [t.cleft_id for t in tasks if t.last] == ids[::-1]  # in order, last once each
    for cid in ids:
        mine = [t for t in tasks if t.cleft_id == cid]
        assert mine[-1].last and not any(t.last for t in mine[:-1])
        where = [k for k, t in enumerate(tasks) if t.cleft_id == cid]
        assert where == list(range(where[0], where[-1] + 1))  # a cleft's patches in a row
        covered = np.zeros(shape, bool)
        for t in mine:
            for s, (a, b), x, n in zip(t.crop, t.pad, extent, shape, strict=True):
                assert 0 <= s.start < s.stop <= n
                assert s.stop - s.start + a + b == x  # every patch is one extent
            covered[t.crop] = True
        assert covered[clefts == cid].all()
        if len(mine) == 1:  # one patch: it holds the anchor, a voxel of the cleft
            i = ids.index(cid)
            anchor = np.floor(stats.centroid[i] + 0.5).astype(int)
            if clefts[tuple(anchor)] == cid:
                assert all(s.start <= a < s.stop for s, a in zip(mine[0].crop, anchor, strict=True))
