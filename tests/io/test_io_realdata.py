"""The real VNC stack in ../shared/data: shapes, dtypes, voxel size, and a CREMI round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from napari_avan.io import (
    cremi_annotations_from_edges,
    partners_from_cremi,
    read_cremi,
    read_partners,
    read_volume,
    write_cremi,
)

pytestmark = pytest.mark.realdata

SHAPE = (20, 1024, 400)
VOXEL = (50.0, 4.6, 4.6)


def test_vnc_left_volumes_and_partners(vnc_left_dir: Path) -> None:
    npz = vnc_left_dir / "vnc_left.npz"
    image = read_volume(f"{npz}:image")
    assert image.shape == SHAPE
    assert image.dtype == np.uint8
    assert image.voxel_size_nm == VOXEL
    for key in ("segmentation", "clefts"):
        labels = read_volume(f"{npz}:{key}", role=key)
        assert labels.shape == SHAPE
        assert labels.dtype == np.uint32
        assert labels.voxel_size_nm == VOXEL
    partners = read_partners(vnc_left_dir / "partners.csv")
    assert len(partners) == 94
    assert partners["cleft_id"].dtype == np.uint64


def _edges_from_partners(
    partners: pd.DataFrame, seg: np.ndarray, clefts: np.ndarray
) -> pd.DataFrame:
    """An edge table whose partner points are the first voxel of each partner in the cleft."""
    boxes = ndimage.find_objects(clefts)
    rows = []
    for cleft, pre, post in partners[["cleft_id", "pre_id", "post_id"]].to_numpy().tolist():
        box = boxes[cleft - 1]
        assert box is not None
        corner = np.array([s.start for s in box])
        row = {"cleft_segid": cleft, "presyn_segid": pre, "postsyn_segid": post}
        for side, segment in (("presyn", pre), ("postsyn", post)):
            inside = np.argwhere((seg[box] == segment) & (clefts[box] == cleft))
            assert len(inside), f"segment {segment} does not touch cleft {cleft}"
            z, y, x = inside[0] + corner
            row.update({f"{side}_z": z, f"{side}_y": y, f"{side}_x": x})
        rows.append(row)
    return pd.DataFrame(rows)


def test_vnc_left_cremi_round_trip_keeps_partners(vnc_left_dir: Path, tmp_path: Path) -> None:
    npz = vnc_left_dir / "vnc_left.npz"
    image = read_volume(f"{npz}:image").data
    seg = read_volume(f"{npz}:segmentation", role="segmentation").data
    clefts = read_volume(f"{npz}:clefts", role="clefts").data
    partners = read_partners(vnc_left_dir / "partners.csv")
    edges = _edges_from_partners(partners, seg, clefts)
    path = write_cremi(
        tmp_path / "vnc_left.hdf",
        image,
        VOXEL,
        neuron_ids=seg,
        clefts=clefts,
        annotations=cremi_annotations_from_edges(edges, VOXEL),
    )
    data = read_cremi(path, lazy=False)
    assert data.annotations is not None and data.neuron_ids is not None
    assert data.clefts is not None
    np.testing.assert_array_equal(data.clefts.data, clefts)
    back = partners_from_cremi(data.annotations, data.neuron_ids.data, data.clefts.data, VOXEL)
    expected = partners[["cleft_id", "pre_id", "post_id"]].drop_duplicates().reset_index(drop=True)
    pd.testing.assert_frame_equal(back, expected)
