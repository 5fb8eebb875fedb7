"""CREMI files: volumes, annotations, and the edge table <-> partner table round trip."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from napari_avan.io import (
    CremiAnnotations,
    cremi_annotations_from_edges,
    partners_from_cremi,
    read_cremi,
    read_volume,
    write_cremi,
)
from napari_avan.types import PARTNER_COLUMNS, AvanInputError

VOXEL = (40.0, 4.0, 4.0)
SHAPE = (4, 30, 30)


def _scene() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Segment 10 on the left, 20 top right, 30 bottom right; two clefts between them.

    Cleft 1 lies between 10 and 20, cleft 2 between 10 and 30 (and near 20).
    """
    image = np.random.default_rng(1).integers(0, 255, SHAPE).astype(np.uint8)
    seg = np.zeros(SHAPE, np.uint64)
    seg[:, :, :14] = 10
    seg[:, :20, 16:] = 20
    seg[:, 20:, 16:] = 30
    clefts = np.zeros(SHAPE, np.uint32)
    clefts[1:3, 5:11, 14:16] = 1
    clefts[1:4, 22:27, 14:16] = 2
    return image, seg, clefts


def _edges() -> pd.DataFrame:
    """Edge table rows (partner points in voxels, z, y, x), one of them rejected."""
    columns = ["cleft_segid", "presyn_segid", "postsyn_segid", "status"]
    points = ["presyn_z", "presyn_y", "presyn_x", "postsyn_z", "postsyn_y", "postsyn_x"]
    rows = [
        [1, 10, 20, "accepted", 1, 7, 13, 1, 7, 16],
        [2, 10, 30, "predicted", 2, 24, 13, 2, 24, 16],
        [2, 10, 20, "added", 2, 24, 13, 2, 19, 16],  # polyadic: same pre site
        [1, 20, 10, "rejected", 1, 7, 16, 1, 7, 13],
    ]
    return pd.DataFrame(rows, columns=columns + points)


def _expected_partners() -> pd.DataFrame:
    kept = _edges()[lambda t: t["status"] != "rejected"]
    return pd.DataFrame(
        {
            "cleft_id": kept["cleft_segid"].to_numpy(np.uint64),
            "pre_id": kept["presyn_segid"].to_numpy(np.uint64),
            "post_id": kept["postsyn_segid"].to_numpy(np.uint64),
        }
    )


def test_annotations_from_edges() -> None:
    ann = cremi_annotations_from_edges(_edges(), VOXEL)
    # two pre sites (cleft 2's is shared by its two partners) and three post sites
    assert list(ann.types) == ["presynaptic_site", "postsynaptic_site"] * 2 + ["postsynaptic_site"]
    assert ann.ids.dtype == np.uint64
    assert len(ann) == 5
    assert ann.partners.tolist() == [[1, 2], [3, 4], [3, 5]]
    np.testing.assert_array_equal(ann.locations[0], np.array([1, 7, 13]) * VOXEL)
    assert ann.offset == (0.0, 0.0, 0.0)


def test_cremi_round_trip_reproduces_partners(tmp_path: Path) -> None:
    image, seg, clefts = _scene()
    ann = cremi_annotations_from_edges(_edges(), VOXEL)
    path = write_cremi(
        tmp_path / "sample.hdf", image, VOXEL, neuron_ids=seg, clefts=clefts, annotations=ann
    )
    data = read_cremi(path, lazy=False)
    for volume, expected in ((data.image, image), (data.neuron_ids, seg), (data.clefts, clefts)):
        assert volume is not None
        assert volume.dtype == expected.dtype
        assert volume.voxel_size_nm == VOXEL
        np.testing.assert_array_equal(volume.data, expected)
    assert data.annotations is not None
    np.testing.assert_array_equal(data.annotations.ids, ann.ids)
    np.testing.assert_array_equal(data.annotations.locations, ann.locations)
    np.testing.assert_array_equal(data.annotations.types, ann.types)
    np.testing.assert_array_equal(data.annotations.partners, ann.partners)

    assert data.neuron_ids is not None and data.clefts is not None
    partners = partners_from_cremi(data.annotations, data.neuron_ids.data, data.clefts.data, VOXEL)
    assert list(partners.columns) == list(PARTNER_COLUMNS)
    assert all(partners[c].dtype == np.uint64 for c in PARTNER_COLUMNS)
    pd.testing.assert_frame_equal(partners, _expected_partners())


def test_cremi_layout_on_disk(tmp_path: Path) -> None:
    image, _, clefts = _scene()
    ann = cremi_annotations_from_edges(_edges(), VOXEL)
    path = write_cremi(tmp_path / "s.hdf", image, VOXEL, clefts=clefts, annotations=ann)
    with h5py.File(path, "r") as f:
        assert sorted(f["volumes"]) == ["labels", "raw"]
        np.testing.assert_array_equal(f["volumes/raw"].attrs["resolution"], VOXEL)
        stored = f["volumes/labels/clefts"][()]
        # CREMI's "no cleft" is the dtype maximum
        assert stored[0, 0, 0] == np.iinfo(np.uint32).max
        assert set(np.unique(stored)) == {1, 2, np.iinfo(np.uint32).max}
        assert f["annotations/ids"].dtype == np.uint64
        assert f["annotations/locations"].shape == (5, 3)
        assert f["annotations/types"].asstr()[0] == "presynaptic_site"
        assert f["annotations/presynaptic_site/partners"].shape == (3, 2)
    # read as a plain volume spec, the background is 0 too
    volume = read_volume(f"{path}:volumes/labels/clefts", lazy=False, role="clefts")
    np.testing.assert_array_equal(volume.data, clefts)
    lazy = read_volume(f"{path}:volumes/labels/clefts", role="clefts")
    assert lazy.dtype == np.uint32
    np.testing.assert_array_equal(lazy.data.compute(), clefts)


def test_foreign_cremi_file_with_offset(tmp_path: Path) -> None:
    """A file as the CREMI challenge ships it: byte-string types, offset, uint64 clefts."""
    image, seg, clefts = _scene()
    background = np.iinfo(np.uint64).max
    offset = (40.0, 400.0, 0.0)
    path = tmp_path / "sample_A.hdf"
    with h5py.File(path, "w") as f:
        f["volumes/raw"] = image
        f["volumes/labels/neuron_ids"] = seg
        f["volumes/labels/clefts"] = np.where(clefts == 0, background, clefts.astype(np.uint64))
        for name in ("raw", "labels/neuron_ids", "labels/clefts"):
            f[f"volumes/{name}"].attrs["resolution"] = VOXEL
        f["annotations/ids"] = np.array([7, 9], np.uint64)
        # locations are relative to the offset
        f["annotations/locations"] = np.array([[1, 7, 13], [1, 7, 16]]) * VOXEL - offset
        f["annotations/types"] = np.array([b"presynaptic_site", b"postsynaptic_site"])
        f["annotations/presynaptic_site/partners"] = np.array([[7, 9]], np.uint64)
        f["annotations"].attrs["offset"] = offset
    data = read_cremi(path, lazy=False)
    assert data.clefts is not None and data.neuron_ids is not None
    assert data.clefts.dtype == np.uint64
    assert int(data.clefts.data.max()) == 2
    assert data.annotations is not None
    assert data.annotations.offset == offset
    assert list(data.annotations.types) == ["presynaptic_site", "postsynaptic_site"]
    partners = partners_from_cremi(data.annotations, data.neuron_ids.data, data.clefts.data, VOXEL)
    assert partners.to_numpy().tolist() == [[1, 10, 20]]


def test_no_cleft_nearby_gives_zero() -> None:
    _, seg, clefts = _scene()
    ann = CremiAnnotations(
        ids=np.array([1, 2]),
        locations=np.array([[0, 29, 0], [0, 29, 29]]) * VOXEL,
        types=np.array(["presynaptic_site", "postsynaptic_site"]),
        partners=np.array([[1, 2]]),
    )
    partners = partners_from_cremi(ann, seg, clefts, VOXEL, radius_nm=20)
    assert partners.to_numpy().tolist() == [[0, 10, 30]]
    assert partners_from_cremi(ann, seg, None, VOXEL).to_numpy().tolist() == [[0, 10, 30]]


def test_annotation_errors() -> None:
    _, seg, clefts = _scene()
    with pytest.raises(AvanInputError, match="annotation ids that do not exist"):
        CremiAnnotations(
            ids=np.array([1]),
            locations=np.zeros((1, 3)),
            types=np.array(["presynaptic_site"]),
            partners=np.array([[1, 2]]),
        )
    with pytest.raises(AvanInputError, match="1 ids, 2 locations"):
        CremiAnnotations(
            ids=np.array([1]),
            locations=np.zeros((2, 3)),
            types=np.array(["a"]),
            partners=np.zeros((0, 2)),
        )
    outside = CremiAnnotations(
        ids=np.array([1, 2]),
        locations=np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 1000.0]]),
        types=np.array(["presynaptic_site", "postsynaptic_site"]),
        partners=np.array([[1, 2]]),
    )
    with pytest.raises(AvanInputError, match=r"postsynaptic site 2 .* outside the volume"):
        partners_from_cremi(outside, seg, clefts, VOXEL)
    with pytest.raises(AvanInputError, match="lacks columns presyn_z"):
        cremi_annotations_from_edges(_edges().drop(columns=["presyn_z"]), VOXEL)


def test_read_cremi_errors(tmp_path: Path) -> None:
    with pytest.raises(AvanInputError, match="does not exist"):
        read_cremi(tmp_path / "missing.hdf")
    path = tmp_path / "plain.h5"
    with h5py.File(path, "w") as f:
        f["data"] = np.zeros((2, 20, 20), np.uint8)
    with pytest.raises(
        AvanInputError, match="not a CREMI file: no volumes/raw; volumes in it: data"
    ):
        read_cremi(path)


def test_write_cremi_refuses_mismatched_shapes_and_overwrite(tmp_path: Path) -> None:
    image, seg, clefts = _scene()
    with pytest.raises(AvanInputError, match="neuron_ids has shape"):
        write_cremi(tmp_path / "a.hdf", image, VOXEL, neuron_ids=seg[:, :10])
    assert not (tmp_path / "a.hdf").exists()
    path = write_cremi(tmp_path / "a.hdf", image, VOXEL)
    with pytest.raises(AvanInputError, match="already exists"):
        write_cremi(path, image, VOXEL, clefts=clefts)
    assert read_cremi(path).clefts is None
