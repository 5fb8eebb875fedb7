"""Tests of core.tables and core.geometry: hand-checked examples plus slow references."""

from __future__ import annotations

import itertools
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from napari_avan.core import geometry, tables
from napari_avan.types import AvanInputError

# --- column conventions -----------------------------------------------------------------------


def test_columns_are_the_design_contract():
    design = (
        "cleft_segid presyn_segid postsyn_segid presyn_wt postsyn_wt presyn_sz postsyn_sz "
        "presyn_x presyn_y presyn_z postsyn_x postsyn_y postsyn_z centroid_x centroid_y "
        "centroid_z size bbox_bx bbox_by bbox_bz bbox_ex bbox_ey bbox_ez status round model "
        "updated"
    )
    assert tables.EDGE_COLUMNS == tuple(design.split())
    assert tables.CLEFT_COLUMNS == tuple(
        "cleft_segid size centroid_x centroid_y centroid_z bbox_bx bbox_by bbox_bz "
        "bbox_ex bbox_ey bbox_ez score".split()
    )


def test_xyz_columns_round_trip():
    zyx = np.array([[1, 2, 3], [4, 5, 6]])
    cols = tables.to_xyz_columns("centroid_", zyx)
    assert list(cols) == ["centroid_x", "centroid_y", "centroid_z"]
    assert cols["centroid_x"].tolist() == [3, 6]
    assert cols["centroid_z"].tolist() == [1, 4]
    assert list(tables.to_xyz_columns("bbox_b", zyx)) == ["bbox_bx", "bbox_by", "bbox_bz"]
    back = tables.from_xyz_columns(pd.DataFrame(cols), "centroid_")
    np.testing.assert_array_equal(back, zyx)
    assert tables.from_xyz_columns(pd.DataFrame(cols).iloc[:0], "centroid_").shape == (0, 3)


def test_from_xyz_columns_names_missing_columns():
    with pytest.raises(AvanInputError, match="presyn_z"):
        tables.from_xyz_columns(pd.DataFrame({"presyn_x": [1], "presyn_y": [2]}), "presyn_")


# --- geometry ---------------------------------------------------------------------------------


def test_inplane_structure_default_is_radius_5_diamond_at_8nm():
    st = geometry.inplane_structure(40.0, (40.0, 8.0, 8.0))
    assert st.shape == (3, 11, 11)
    # a radius-r diamond has 2 r^2 + 2 r + 1 pixels: r = 5 -> 61, on each of 3 sections
    assert st.sum() == 3 * 61
    assert (st[0] == st[1]).all() and (st[1] == st[2]).all()
    assert st[1, 5, 0] and st[1, 0, 5] and not st[1, 0, 4]


def test_inplane_structure_keeps_nm_radius_on_other_grids():
    # 40 nm at 4.6 nm: floor(8.7) = radius 8 -> 2*64 + 16 + 1 = 145 pixels per section
    st = geometry.inplane_structure(40.0, (50.0, 4.6, 4.6), n_sections=1)
    assert st.shape == (1, 17, 17) and st.sum() == 145
    # anisotropic in-plane: 40 nm is 10 px along y at 4 nm, 5 px along x at 8 nm
    st = geometry.inplane_structure(40.0, (40.0, 4.0, 8.0), n_sections=5)
    assert st.shape == (5, 21, 11)
    assert geometry.inplane_structure(0.0, (40, 8, 8)).sum() == 3


@pytest.mark.parametrize("bad", [{"n_sections": 2}, {"n_sections": 0}, {"radius_nm": -1.0}])
def test_inplane_structure_rejects_bad_arguments(bad):
    kwargs = {"radius_nm": 40.0, "voxel_size_nm": (40, 8, 8), **bad}
    with pytest.raises(AvanInputError):
        geometry.inplane_structure(**kwargs)


def test_bbox_slices_pads_and_clips():
    s = geometry.bbox_slices((0, 2, 5), (1, 4, 9), (1, 3, 2), (3, 10, 10))
    assert s == (slice(0, 2), slice(0, 7), slice(3, 10))
    assert geometry.bbox_slices((1, 1, 1), (2, 2, 2), 1, (5, 5, 5)) == (slice(0, 3),) * 3


@pytest.mark.parametrize("voxel_size", [(50, 4.6, 4.6), (40, 8, 8), (40, 4, 6), (30, 9, 3)])
@pytest.mark.parametrize("n_sections", [1, 3, 5])
def test_dilate_mask_matches_scipy(voxel_size, n_sections):
    rng = np.random.default_rng(n_sections)
    st = geometry.inplane_structure(40.0, voxel_size, n_sections)
    for shape in [(5, 30, 40), (1, 3, 2), (7, 50, 9)]:
        mask = rng.random(shape) < 0.02
        mask[0, 0, 0] = True  # a voxel on the border
        expected = ndimage.binary_dilation(mask, structure=st)
        np.testing.assert_array_equal(geometry.dilate_mask(mask, st), expected)


def test_dilate_mask_general_structure_falls_back():
    rng = np.random.default_rng(1)
    st = np.zeros((3, 3, 3), bool)
    st[1, 1, 1] = st[0, 0, 2] = st[2, 2, 0] = True  # not separable
    mask = rng.random((4, 9, 9)) < 0.05
    expected = ndimage.binary_dilation(mask, structure=st)
    np.testing.assert_array_equal(geometry.dilate_mask(mask, st), expected)
    # centred x runs, but not symmetric in y: the fast path must keep scipy's orientation
    st = np.zeros((3, 5, 5), bool)
    st[:, 0, 2] = True
    st[:, 1, 1:4] = True
    st[:, 2, :] = True
    expected = ndimage.binary_dilation(mask, structure=st)
    np.testing.assert_array_equal(geometry.dilate_mask(mask, st), expected)
    with pytest.raises(AvanInputError, match="odd"):
        geometry.dilate_mask(mask, np.ones((2, 3, 3), bool))


def _slow_label_statistics(labels, values):
    out = {}
    for lab in np.unique(labels[labels > 0]):
        pts = np.argwhere(labels == lab)
        out[int(lab)] = (
            len(pts),
            pts.mean(axis=0),
            pts.min(axis=0),
            pts.max(axis=0) + 1,
            float(values[labels == lab].mean()),
        )
    return out


@pytest.mark.parametrize("seed", range(5))
def test_label_statistics_matches_slow_reference(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 6, size=(4, 7, 9)).astype(np.uint64) * np.uint64(seed + 1)
    labels[labels == 4 * (seed + 1)] = 2**40  # a large id
    values = rng.random(labels.shape)
    stats = geometry.label_statistics(labels, values)
    ref = _slow_label_statistics(labels, values)
    assert stats.ids.tolist() == sorted(ref)
    for i, lab in enumerate(stats.ids.tolist()):
        size, centroid, begin, end, mean = ref[lab]
        assert stats.size[i] == size
        np.testing.assert_allclose(stats.centroid[i], centroid)
        np.testing.assert_array_equal(stats.bbox_begin[i], begin)
        np.testing.assert_array_equal(stats.bbox_end[i], end)
        assert stats.value_mean[i] == pytest.approx(mean)


def test_label_volume_checks():
    with pytest.raises(AvanInputError, match="3D"):
        geometry.check_label_volume(np.zeros((3, 3)))
    with pytest.raises(AvanInputError, match="integer"):
        geometry.check_label_volume(np.zeros((1, 2, 2), np.float32))
    with pytest.raises(AvanInputError, match="negative"):
        geometry.check_label_volume(-np.ones((1, 2, 2), np.int32))
    with pytest.raises(
        AvanInputError, match=r"segmentation has shape \(1, 2, 3\) but clefts has shape \(1, 2, 2\)"
    ):
        geometry.check_same_shape(clefts=np.zeros((1, 2, 2)), segmentation=np.zeros((1, 2, 3)))


# --- cleft table ------------------------------------------------------------------------------


def _two_clefts() -> np.ndarray:
    clefts = np.zeros((3, 4, 5), np.uint32)
    clefts[0, 0, 0] = clefts[0, 0, 1] = clefts[1, 0, 0] = 2
    clefts[2, 3, 4] = 7  # one voxel in the far corner: touches three borders
    return clefts


def test_cleft_table_hand_computed():
    clefts = _two_clefts()
    prob = np.full(clefts.shape, 0.5)
    prob[0, 0, 0] = 0.8
    table = tables.cleft_table(clefts, prob)
    assert tuple(table.columns) == tables.CLEFT_COLUMNS
    assert table["cleft_segid"].tolist() == [2, 7]
    assert table["size"].tolist() == [3, 1]
    # cleft 2 at (z,y,x) (0,0,0), (0,0,1), (1,0,0): mean z = 1/3, y = 0, x = 1/3
    np.testing.assert_allclose(
        tables.from_xyz_columns(table, "centroid_"), [[1 / 3, 0, 1 / 3], [2, 3, 4]]
    )
    np.testing.assert_array_equal(tables.from_xyz_columns(table, "bbox_b"), [[0, 0, 0], [2, 3, 4]])
    np.testing.assert_array_equal(tables.from_xyz_columns(table, "bbox_e"), [[2, 1, 2], [3, 4, 5]])
    # score of cleft 2: (0.8 + 0.5 + 0.5) / 3 = 0.6
    np.testing.assert_allclose(table["score"], [0.6, 0.5])
    assert table["cleft_segid"].dtype == np.int64


def test_cleft_table_without_prob_or_clefts():
    assert tables.cleft_table(_two_clefts())["score"].isna().all()
    empty = tables.cleft_table(np.zeros((2, 3, 3), np.uint8))
    assert len(empty) == 0 and tuple(empty.columns) == tables.CLEFT_COLUMNS
    with pytest.raises(AvanInputError, match="has shape"):
        tables.cleft_table(_two_clefts(), np.zeros((3, 4, 4)))


# --- partner tables ---------------------------------------------------------------------------


def test_check_partner_table_and_edge_form():
    partners = pd.DataFrame({"cleft_id": [1.0, 2.0], "pre_id": [3, 4], "post_id": [5, 6], "x": 0})
    clean = tables.check_partner_table(partners)
    assert list(clean.columns) == ["cleft_id", "pre_id", "post_id"]
    assert (clean.dtypes == np.int64).all()
    with pytest.raises(AvanInputError, match="post_id"):
        tables.check_partner_table(partners.drop(columns="post_id"))
    with pytest.raises(AvanInputError, match="positive"):
        tables.check_partner_table(partners.assign(pre_id=[0, 4]))
    with pytest.raises(AvanInputError, match="whole-number"):
        tables.check_partner_table(partners.assign(pre_id=[1.5, 4]))

    edges = pd.DataFrame(
        {
            "cleft_segid": [1, 1, 2],
            "presyn_segid": [3, 3, 4],
            "postsyn_segid": [5, 7, 6],
            "status": ["accepted", "rejected", "predicted"],
        }
    )
    got = tables.partners_from_edges(edges)
    assert got.values.tolist() == [[1, 3, 5], [2, 4, 6]]  # the rejected edge is dropped
    assert len(tables.partners_from_edges(edges, exclude_status=())) == 3
    assert tables.as_partner_table(edges).values.tolist() == got.values.tolist()


# --- edge table -------------------------------------------------------------------------------


def _small_scene():
    """One section: cleft 1 on two voxels between segment 10 (above) and 20 (below).

    y\\x  0  1  2  3  4  5  6
    0    10 10 10 10 10 10 30
    1    10 10 10 10 10 10 30
    2    10 10 [1][1]10 10 30     [1] = cleft voxel
    3    20 20 20 20 20 20 30
    4    20 20 20 20 20 20 30
    """
    clefts = np.zeros((1, 5, 7), np.uint32)
    clefts[0, 2, 2:4] = 1
    seg = np.full((1, 5, 7), 10, np.uint32)
    seg[0, 3:, :] = 20
    seg[0, :, 6] = 30
    return clefts, seg


def test_edge_table_hand_computed():
    clefts, seg = _small_scene()
    partners = pd.DataFrame({"cleft_id": [1, 1], "pre_id": [10, 10], "post_id": [20, 30]})
    # 8 nm in-plane, radius 8 nm on 1 section: the cross of radius 1. Candidate region:
    # y=1: x=2,3; y=2: x=1..4; y=3: x=2,3  -> segment 10 has 2 + 4 = 6, segment 20 has 2
    table = tables.edge_table(
        clefts, seg, partners, voxel_size_nm=(40, 8, 8), radius_nm=8.0, n_sections=1, updated="t"
    )
    assert tuple(table.columns) == tables.EDGE_COLUMNS
    assert table["presyn_sz"].tolist() == [6, 6]
    # segment 30 never touches the region: size 0
    assert table["postsyn_sz"].tolist() == [2, 0]
    # centroid (z, y, x) = (0, 2, 2.5). Pre candidates at squared distance (in px^2)
    # (2,2): 0.25, (2,3): 0.25 tie -> lowest linear index -> (0, 2, 2)
    assert tables.from_xyz_columns(table, "presyn_").tolist() == [[0, 2, 2], [0, 2, 2]]
    # post 20: (3,2) and (3,3) both 1 + 0.25 -> (0, 3, 2); post 30 (outside the region):
    # nearest voxel anywhere: x = 6, y = 2 (distance 3.5 px) -> (0, 2, 6)
    assert tables.from_xyz_columns(table, "postsyn_").tolist() == [[0, 3, 2], [0, 2, 6]]
    np.testing.assert_allclose(tables.from_xyz_columns(table, "centroid_"), [[0, 2, 2.5]] * 2)
    assert table["size"].tolist() == [2, 2]
    assert tables.from_xyz_columns(table, "bbox_b").tolist() == [[0, 2, 2]] * 2
    assert tables.from_xyz_columns(table, "bbox_e").tolist() == [[1, 3, 4]] * 2
    assert table["presyn_wt"].isna().all() and table["postsyn_wt"].isna().all()
    assert table["status"].tolist() == ["predicted"] * 2
    assert table["round"].tolist() == [0, 0]
    assert table["model"].tolist() == ["", ""]
    assert table["updated"].tolist() == ["t", "t"]


def test_edge_table_default_region_and_options():
    clefts, seg = _small_scene()
    partners = pd.DataFrame({"cleft_id": [1], "pre_id": [10], "post_id": [20]})
    table = tables.edge_table(
        clefts, seg, partners, voxel_size_nm=(40, 8, 8), status="accepted", round=2, model="m"
    )
    # default 40 nm at 8 nm = radius-5 diamond. The farthest voxels from the cleft voxels
    # (2,2), (2,3) are (0,6) and (4,6) at |dy| + |dx| = 2 + 3 = 5: the whole section is in
    # the region. Segment 20 = rows 3-4, x 0-5: 12 voxels; segment 10 = rows 0-2, x 0-5: 18
    assert table["postsyn_sz"].tolist() == [12]
    assert table["presyn_sz"].tolist() == [18]
    assert table["status"].tolist() == ["accepted"]
    assert table["round"].tolist() == [2] and table["model"].tolist() == ["m"]
    datetime.fromisoformat(table["updated"].iat[0])  # a valid ISO timestamp
    with pytest.raises(AvanInputError, match="status"):
        tables.edge_table(clefts, seg, partners, voxel_size_nm=(40, 8, 8), status="maybe")


def test_edge_table_weights_per_segment_and_per_edge():
    clefts, seg = _small_scene()
    partners = pd.DataFrame({"cleft_id": [1, 1], "pre_id": [10, 10], "post_id": [20, 30]})
    per_segment = pd.DataFrame(
        {"cleft_id": [1, 1], "segment_id": [10, 20], "pre_wt": [0.9, 0.1], "post_wt": [0.2, 0.7]}
    )
    table = tables.edge_table(clefts, seg, partners, voxel_size_nm=(40, 8, 8), weights=per_segment)
    assert table["presyn_wt"].tolist() == [0.9, 0.9]
    assert table["postsyn_wt"].iat[0] == 0.7 and np.isnan(table["postsyn_wt"].iat[1])
    per_edge = pd.DataFrame(
        {"cleft_id": [1], "pre_id": [10], "post_id": [30], "presyn_wt": [0.5], "postsyn_wt": [0.4]}
    )
    table = tables.edge_table(clefts, seg, partners, voxel_size_nm=(40, 8, 8), weights=per_edge)
    assert np.isnan(table["presyn_wt"].iat[0]) and table["postsyn_wt"].iat[1] == 0.4
    with pytest.raises(AvanInputError, match="weights table"):
        tables.edge_table(
            clefts, seg, partners, voxel_size_nm=(40, 8, 8), weights=pd.DataFrame({"a": [1]})
        )


def test_edge_table_errors_name_the_problem():
    clefts, seg = _small_scene()
    vs = (40, 8, 8)
    bad_cleft = pd.DataFrame({"cleft_id": [1, 5], "pre_id": [10, 10], "post_id": [20, 20]})
    with pytest.raises(AvanInputError, match=r"cleft id\(s\) with no voxel.*: 5"):
        tables.edge_table(clefts, seg, bad_cleft, voxel_size_nm=vs)
    bad_seg = pd.DataFrame({"cleft_id": [1], "pre_id": [10], "post_id": [99]})
    with pytest.raises(AvanInputError, match=r"segment id\(s\) with no voxel.*: 99"):
        tables.edge_table(clefts, seg, bad_seg, voxel_size_nm=vs)
    with pytest.raises(AvanInputError, match="has shape"):
        tables.edge_table(clefts, seg[:, :4], bad_seg, voxel_size_nm=vs)
    with pytest.raises(AvanInputError, match="voxel size"):
        tables.edge_table(clefts, seg, bad_seg, voxel_size_nm=(0, 8, 8))


def test_edge_table_without_partners_has_the_columns_and_types():
    clefts, seg = _small_scene()
    none = pd.DataFrame({"cleft_id": [], "pre_id": [], "post_id": []}, dtype=np.int64)
    table = tables.edge_table(clefts, seg, none, voxel_size_nm=(40, 8, 8))
    assert len(table) == 0 and tuple(table.columns) == tables.EDGE_COLUMNS
    full = tables.edge_table(
        clefts,
        seg,
        pd.DataFrame({"cleft_id": [1], "pre_id": [10], "post_id": [20]}),
        voxel_size_nm=(40, 8, 8),
    )
    assert table.dtypes.equals(full.dtypes)
    assert tables.empty_edge_table().dtypes.equals(full.dtypes)


def test_edge_table_accepts_edge_table_input():
    clefts, seg = _small_scene()
    partners = pd.DataFrame({"cleft_id": [1], "pre_id": [10], "post_id": [20]})
    first = tables.edge_table(clefts, seg, partners, voxel_size_nm=(40, 8, 8), updated="t")
    again = tables.edge_table(clefts, seg, first, voxel_size_nm=(40, 8, 8), updated="t")
    pd.testing.assert_frame_equal(first, again)


def _slow_edge_table(clefts, seg, partners, voxel_size, radius_nm, n_sections):
    """Per-partner loops over the whole volume (no crops, no sorting tricks)."""
    st = geometry.inplane_structure(radius_nm, voxel_size, n_sections)
    vs = np.asarray(voxel_size, float)
    rows = []
    for cleft, pre, post in partners.itertuples(index=False):
        mask = clefts == cleft
        region = ndimage.binary_dilation(mask, structure=st)
        centre = np.argwhere(mask).mean(axis=0) * vs
        row = []
        for seg_id in (pre, post):
            size = int((region & (seg == seg_id)).sum())
            pool = region if size else np.ones_like(region)
            best, best_d = None, np.inf
            for z, y, x in itertools.product(*map(range, seg.shape)):
                if pool[z, y, x] and seg[z, y, x] == seg_id:
                    d = float(((np.array([z, y, x]) * vs - centre) ** 2).sum())
                    if d < best_d:  # strict: the first (lowest linear index) wins ties
                        best, best_d = [z, y, x], d
            row.append((size, best))
        rows.append(row)
    return rows


@pytest.mark.parametrize("seed", range(4))
def test_edge_table_matches_slow_reference(seed):
    rng = np.random.default_rng(seed)
    shape = (4, 9, 11)
    seg = ndimage.zoom(rng.integers(1, 7, size=(2, 3, 3)), (2, 3, 11 / 3), order=0)
    seg = seg[: shape[0], : shape[1], : shape[2]].astype(np.uint32)
    seg[rng.random(shape) < 0.1] = rng.integers(1, 7)  # speckle so segments interleave
    clefts = np.zeros(shape, np.uint32)
    clefts[0, 0, 0:3] = 1  # touches the border
    z, y, x = rng.integers(1, 3), rng.integers(2, 6), rng.integers(2, 8)
    clefts[z, y : y + 2, x : x + 3] = 2
    present = np.unique(seg)
    partners = pd.DataFrame(
        {
            "cleft_id": [1, 1, 2, 2, 2],
            "pre_id": rng.choice(present, 5),
            "post_id": rng.choice(present, 5),
        }
    )
    voxel_size = [(40, 8, 8), (30, 5, 7)][seed % 2]
    table = tables.edge_table(
        clefts, seg, partners, voxel_size_nm=voxel_size, radius_nm=16.0, n_sections=3
    )
    ref = _slow_edge_table(clefts, seg, partners, voxel_size, 16.0, 3)
    for i, ((pre_sz, pre_pt), (post_sz, post_pt)) in enumerate(ref):
        assert table["presyn_sz"].iat[i] == pre_sz
        assert table["postsyn_sz"].iat[i] == post_sz
        assert tables.from_xyz_columns(table, "presyn_")[i].tolist() == pre_pt
        assert tables.from_xyz_columns(table, "postsyn_")[i].tolist() == post_pt


def test_merged_cleft_table_after_a_run_rewrote_a_box() -> None:
    from napari_avan.core.tables import cleft_table, merged_cleft_table

    labels = np.zeros((4, 20, 20), np.uint32)
    labels[1, 2:4, 2:4] = 1  # outside the box: kept as it was
    labels[1, 14:16, 10:12] = 2  # wholly inside the box: replaced
    labels[2, 8:16, 5:9] = 3  # cut by the box (y 8..12 stays outside)
    before = cleft_table(labels)
    box = (slice(0, 4), slice(12, 20), slice(0, 20))
    replaced = np.unique(labels[box])
    replaced = replaced[replaced > 0]
    after = labels.copy()
    after[box] = 0
    after[3, 15:17, 15:17] = 4  # the run's new cleft
    new_rows = cleft_table(np.where(after == 4, after, 0).astype(after.dtype))
    merged = merged_cleft_table(before, after, None, box, replaced, new_rows)
    expected = cleft_table(after)
    assert merged["cleft_segid"].tolist() == [1, 3, 4]
    pd.testing.assert_frame_equal(merged, expected, check_dtype=False)


class _Bounded:
    """A read-only volume that refuses reads of more than ``limit`` voxels at once."""

    def __init__(self, data: np.ndarray, limit: int) -> None:
        self.data, self.limit = data, limit
        self.shape, self.dtype, self.ndim = data.shape, data.dtype, data.ndim
        self.largest = 0

    def __getitem__(self, key: Any) -> np.ndarray:
        part = self.data[key]
        self.largest = max(self.largest, part.size)
        if part.size > self.limit:
            raise AssertionError(f"a read of {part.size} voxels")
        return part

    def __array__(self, *args: Any, **kwargs: Any) -> np.ndarray:
        raise AssertionError("the whole volume was read")


def test_a_partner_far_from_its_cleft_is_found_region_by_region() -> None:
    """A partner with no voxel near its cleft: its voxel nearest the cleft's centroid is
    searched region by region (scan boxes of at most 4 Mi voxels), with the same answer as a
    search of the whole volume, ties going to the lowest linear index."""
    from napari_avan.core.geometry import label_statistics
    from napari_avan.core.session.store import SCAN_VOXELS

    shape = (40, 512, 512)  # 10 Mi voxels: the search takes several regions
    clefts = np.zeros(shape, np.uint32)
    clefts[20, 250:256, 250:260] = 1
    seg = np.zeros(shape, np.uint32)
    seg[20, 240:270, 240:270] = 5  # touches the cleft
    seg[0:3, 0:4, 500:504] = 7  # far: one corner region
    seg[39, 508:512, 0:4] = 7  # far: the opposite corner, at the same distance or not
    seg[10, 250, 255] = 8  # far in z only, then equal distances on both sides
    seg[30, 250, 255] = 8
    partners = pd.DataFrame({"cleft_id": [1, 1], "pre_id": [5, 8], "post_id": [7, 7]})
    whole = tables.edge_table(clefts, seg, partners, voxel_size_nm=(40, 4, 4), updated="t")
    bounded = _Bounded(seg, SCAN_VOXELS)
    stats = label_statistics(clefts)
    lazy = tables.edge_table(clefts, bounded, partners, voxel_size_nm=(40, 4, 4),  # type: ignore[arg-type]
                             updated="t", statistics=stats)  # fmt: skip
    pd.testing.assert_frame_equal(lazy, whole)
    assert 0 < bounded.largest <= SCAN_VOXELS < seg.size
    assert lazy["presyn_sz"].iloc[0] > 0 and lazy["presyn_sz"].iloc[1] == 0
    assert lazy["postsyn_sz"].tolist() == [0, 0]  # found far away
    assert int(lazy["presyn_z"].iloc[1]) == 10  # the tie: the lower linear index
