"""Tables and metrics on the real VNC crop (../shared/data/vnc_stack1_left)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from napari_avan.core import geometry, metrics, tables

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def vnc(vnc_left_dir: Path) -> dict:
    with np.load(vnc_left_dir / "vnc_left.npz") as npz:
        data = {k: npz[k] for k in ("segmentation", "clefts", "voxel_size_nm")}
    data["partners"] = pd.read_csv(vnc_left_dir / "partners.csv")
    return data


@pytest.fixture(scope="module")
def vnc_edges(vnc: dict) -> pd.DataFrame:
    return tables.edge_table(
        vnc["clefts"],
        vnc["segmentation"],
        vnc["partners"],
        voxel_size_nm=vnc["voxel_size_nm"],
        status="accepted",
        updated="2024-01-01T00:00:00+00:00",
    )


def test_cleft_table_on_real_clefts(vnc):
    clefts = vnc["clefts"]
    table = tables.cleft_table(clefts)
    assert len(table) == 30
    assert table["cleft_segid"].tolist() == list(range(1, 31))
    assert table["size"].sum() == (clefts > 0).sum()
    centroid = tables.from_xyz_columns(table, "centroid_")
    begin = tables.from_xyz_columns(table, "bbox_b")
    end = tables.from_xyz_columns(table, "bbox_e")
    assert (centroid >= begin).all() and (centroid <= end - 1).all()
    assert (end <= np.array(clefts.shape)).all()
    # spot-check cleft 1 against partners_details.csv: 3585 voxels, centroid (1.9, 285.1, 111.4)
    first = table.iloc[0]
    assert first["size"] == 3585
    np.testing.assert_allclose(centroid[0], [1.9, 285.1, 111.4], atol=0.05)


def test_edge_table_on_real_partners(vnc, vnc_edges):
    seg, clefts = vnc["segmentation"], vnc["clefts"]
    edges = vnc_edges
    assert len(edges) == 94 and tuple(edges.columns) == tables.EDGE_COLUMNS
    assert edges[["cleft_segid", "presyn_segid", "postsyn_segid"]].values.tolist() == (
        vnc["partners"].values.tolist()
    )
    structure = geometry.inplane_structure(40.0, vnc["voxel_size_nm"], 3)
    for side in ("presyn", "postsyn"):
        zyx = tables.from_xyz_columns(edges, f"{side}_")
        ids = edges[f"{side}_segid"].to_numpy()
        # every partner point lies inside its own segment
        assert (seg[tuple(zyx.T)] == ids).all()
        # the derived partners were counted within 3 px of the mask: all lie in the region
        assert (edges[f"{side}_sz"] > 0).all()
    # ... and every point lies in its cleft's dilated region (scipy dilation of a crop
    # padded by the structure's half size, found here without the library's helpers)
    pad = np.array(structure.shape) // 2
    for cleft_id, rows in edges.groupby("cleft_segid"):
        where = np.argwhere(clefts == cleft_id)
        lo = np.maximum(where.min(axis=0) - pad, 0)
        hi = where.max(axis=0) + pad + 1
        crop = clefts[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] == cleft_id
        region = ndimage.binary_dilation(crop, structure=structure)
        for side in ("presyn", "postsyn"):
            zyx = tables.from_xyz_columns(rows, f"{side}_") - lo
            assert (zyx >= 0).all() and (zyx < region.shape).all()
            assert region[tuple(zyx.T)].all()
    assert set(edges["status"]) == {"accepted"}


def test_metrics_of_truth_against_itself(vnc, vnc_edges):
    clefts, partners = vnc["clefts"], vnc["partners"]
    m = metrics.cleft_metrics(clefts, clefts)
    assert (m.precision, m.recall, m.f1, m.voxel_f1, m.tp) == (1.0, 1.0, 1.0, 1.0, 30)
    a = metrics.assignment_metrics(partners, partners)
    assert a.polyadic is True
    assert (a.accuracy, a.pre_accuracy, a.precision, a.recall, a.f1, a.cleft_f1) == (1.0,) * 6
    e = metrics.edge_metrics(clefts, vnc_edges, clefts, partners)
    assert (e.precision, e.recall, e.f1, e.tp, e.fp, e.fn) == (1.0, 1.0, 1.0, 94, 0, 0)
