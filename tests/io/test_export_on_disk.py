"""Exporting a session whose labels are kept on disk (larger than memory): the same output as
the same session in memory, without holding a whole volume."""

from __future__ import annotations

import json
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import zarr

from napari_avan.cli import main
from napari_avan.core.session import CleftRecord, Session
from napari_avan.core.session import store as session_store
from napari_avan.core.session.tables import CorrectedLabels, corrected_labels, session_edges
from napari_avan.io import read_volume
from napari_avan.io.export import export_session_files, keep_session_volume, session_volume
from napari_avan.io.volumes import write_volume, write_volume_by_regions
from napari_avan.types import AvanInputError

VOXEL = (40.0, 8.0, 8.0)
SHAPE = (10, 64, 64)
#: The segments: a 4 x 4 grid of 16 x 16 columns, ids 1..16.
FAR = 16  # the segment in the far corner, near no cleft


def _segmentation() -> np.ndarray:
    _, y, x = np.indices(SHAPE)
    return (1 + (y // 16) * 4 + x // 16).astype(np.uint32)


def _clefts() -> tuple[np.ndarray, dict[int, CleftRecord]]:
    """Eight thin clefts across the faces between two segments, and their partners."""
    seg = _segmentation()
    labels = np.zeros(SHAPE, np.uint32)
    records = {}
    spots = [(1, 3, 15), (2, 20, 31), (4, 40, 47), (6, 52, 15),
             (3, 8, 31), (5, 27, 15), (7, 44, 31), (1, 36, 47)]  # fmt: skip
    for k, (z, y, x) in enumerate(spots, start=1):
        labels[z : z + 3, y : y + 5, x : x + 2] = k
        records[k] = CleftRecord(pre=(int(seg[z, y, x]),), post=(int(seg[z, y, x + 1]),))
    return labels, records


def _decide(s: Session) -> None:
    """Accept, reject, delete, merge and re-seed; partners nowhere near a cleft."""
    s.apply({"action": "accept", "cleft": 1})
    s.apply({"action": "reject", "cleft": 2})
    s.apply({"action": "reject", "cleft": 7})
    s.apply({"action": "delete", "cleft": 3})
    s.apply({"action": "merge", "clefts": [4, 8]})
    voxels = [[z, y, x] for z in (2, 3) for y in range(56, 60) for x in (31, 32)]
    s.apply({"action": "reseed", "voxels": voxels})
    added = max(s.records)
    s.apply({"action": "set_partners", "cleft": added, "pre": [15], "post": [FAR, 1]})
    s.apply({"action": "set_partners", "cleft": 5, "pre": [1], "post": [FAR]})


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Session, Session]:
    """The same session in memory and on disk, with image and segmentation in a zarr."""
    root = tmp_path_factory.mktemp("on_disk")
    labels, records = _clefts()
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, SHAPE, dtype=np.uint8)
    data = root / "data.zarr"
    # small chunks: the search of a far partner reads the segmentation in many regions
    write_volume(data, _segmentation(), VOXEL, key="segmentation", chunks=(2, 16, 16))
    write_volume(data, image, VOXEL, key="image")
    source = zarr.create_array(
        store=str(root / "labels.zarr"), shape=SHAPE, dtype=np.uint32, chunks=(4, 32, 32)
    )
    source[...] = labels
    sessions = []
    for name, clefts, in_memory in (("mem", labels, True), ("disk", source, False)):
        s = Session.create(root / name, clefts, VOXEL, records=records, in_memory=in_memory)
        assert s.in_memory is in_memory
        keep_session_volume(s, "segmentation", spec=f"{data}:segmentation")
        keep_session_volume(s, "image", spec=f"{data}:image")
        _decide(s)
        sessions.append(s)
    return sessions[0], sessions[1]


@pytest.fixture
def small_scans(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Scans of the volume in many small regions (statistics and searches)."""
    whole = session_store.scan_boxes

    def small(shape: Any, chunks: Any, voxels: int = 0) -> Any:
        return whole(shape, chunks, 2048)

    monkeypatch.setattr(session_store, "scan_boxes", small)
    yield


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _root_attrs(store: Path) -> Any:
    """The root group's attributes, but the OME-Zarr image name (the export's temporary
    folder name)."""
    attrs = json.loads((store / "zarr.json").read_text())
    for image in attrs.get("attributes", {}).get("ome", {}).get("multiscales", []):
        image.pop("name")
    return attrs


def _edges(path: Path) -> pd.DataFrame:
    """An edge table as its text, but the time it was written."""
    return pd.read_csv(path, dtype=str, keep_default_na=False).drop(columns="updated")


def test_the_pair_holds_every_kind_of_decision(pair: tuple[Session, Session]) -> None:
    mem, disk = pair
    assert mem.records == disk.records
    np.testing.assert_array_equal(np.asarray(disk.labels), mem.labels)
    assert {r.status for r in mem.records.values()} == {"accepted", "rejected", "pending"}
    np.testing.assert_array_equal(CorrectedLabels(disk)[:, :, :], corrected_labels(mem))
    np.testing.assert_array_equal(
        CorrectedLabels(disk)[3:7, 10:50, 20], corrected_labels(mem)[3:7, 10:50, 20]
    )


def test_on_disk_volumes_are_read_lazily(pair: tuple[Session, Session]) -> None:
    mem, disk = pair
    lazy = session_volume(disk, "segmentation", "segmentation")
    assert not isinstance(lazy, np.ndarray) and hasattr(lazy, "compute")
    whole = session_volume(mem, "segmentation", "segmentation")
    assert isinstance(whole, np.ndarray)
    np.testing.assert_array_equal(np.asarray(lazy), whole)


@pytest.mark.usefixtures("small_scans")
def test_edges_of_an_on_disk_session_are_those_in_memory(pair: tuple[Session, Session]) -> None:
    mem, disk = pair
    expected = session_edges(mem, _segmentation())
    got = session_edges(disk, session_volume(disk, "segmentation", "segmentation"))
    columns = [c for c in expected.columns if c != "updated"]
    pd.testing.assert_frame_equal(got[columns], expected[columns], check_exact=True)
    # partners found anywhere in the volume (none near their cleft) are in the table
    far = expected[expected["postsyn_segid"] == FAR]
    assert len(far) == 2 and (far["postsyn_sz"] == 0).all()


@pytest.mark.usefixtures("small_scans")
@pytest.mark.parametrize("fmt", ["zarr", "ome-zarr", "csv"])
def test_on_disk_export_is_the_in_memory_export(
    pair: tuple[Session, Session], tmp_path: Path, fmt: str
) -> None:
    mem, disk = pair
    suffix = {"zarr": "zarr", "ome-zarr": "ome.zarr", "csv": "csv"}[fmt]
    (tmp_path / "mem").mkdir()
    (tmp_path / "disk").mkdir()  # the same name: OME-Zarr records it
    a = export_session_files(mem, fmt, tmp_path / "mem" / f"e.{suffix}")
    b = export_session_files(disk, fmt, tmp_path / "disk" / f"e.{suffix}")
    if fmt == "csv":
        pd.testing.assert_frame_equal(_edges(b), _edges(a))
        return
    pd.testing.assert_frame_equal(_edges(b / "edges.csv"), _edges(a / "edges.csv"))
    files_a, files_b = _files(a), _files(b)
    assert sorted(files_b) == sorted(files_a)
    for name in ("edges.csv", "zarr.json"):
        files_a.pop(name), files_b.pop(name)
    assert files_b == files_a  # every array chunk and other metadata file, byte for byte
    assert _root_attrs(b) == _root_attrs(a)
    prefix = "labels/" if fmt == "ome-zarr" else ""
    clefts = read_volume(f"{b}:{prefix}clefts", lazy=False)
    np.testing.assert_array_equal(clefts.data, corrected_labels(mem))
    assert clefts.voxel_size_nm == VOXEL


def test_the_cli_exports_an_on_disk_session(pair: tuple[Session, Session], tmp_path: Path) -> None:
    _, disk = pair
    out = tmp_path / "e.ome.zarr"
    assert main(["export", str(disk.path), "--format", "ome-zarr", "--out", str(out)]) == 0
    seg = read_volume(f"{out}:labels/segmentation", lazy=False).data
    np.testing.assert_array_equal(seg, _segmentation())


@pytest.mark.parametrize("fmt", ["tiff", "cremi"])
def test_whole_file_formats_are_refused_on_disk(
    pair: tuple[Session, Session], tmp_path: Path, fmt: str
) -> None:
    _, disk = pair
    out = tmp_path / "e.out"
    with pytest.raises(AvanInputError, match=r"kept on disk.*export it as zarr or ome-zarr"):
        export_session_files(disk, fmt, out)
    assert not out.exists()


def test_a_partner_with_no_voxel_is_named_as_in_memory(tmp_path: Path) -> None:
    labels, records = _clefts()
    seg = _segmentation()
    errors = []
    for name, in_memory in (("mem", True), ("disk", False)):
        s = Session.create(tmp_path / name, labels, VOXEL, records=records, in_memory=in_memory)
        s.apply({"action": "set_partners", "cleft": 2, "pre": [99], "post": [FAR]})
        with pytest.raises(AvanInputError, match="no voxel in the segmentation") as err:
            session_edges(s, seg)
        errors.append(str(err.value))
    assert errors[0] == errors[1]


def test_region_writer_refuses_whole_file_formats(tmp_path: Path) -> None:
    with pytest.raises(AvanInputError, match="whole array"):
        write_volume_by_regions(tmp_path / "a.tif", np.zeros((2, 3, 4), np.uint8), VOXEL)


def _big_volume(root: Path, name: str, dtype: Any, fill: Callable[[tuple[slice, ...]], Any]) -> Any:
    shape = (16, 1024, 2048)
    array = zarr.create_array(
        store=str(root / f"{name}.zarr"), shape=shape, dtype=dtype, chunks=(16, 256, 256)
    )
    for y in range(0, shape[1], 256):
        box = (slice(None), slice(y, y + 256), slice(None))
        array[box] = fill(box)
    return array


def test_exporting_an_on_disk_session_holds_no_whole_volume(tmp_path: Path) -> None:
    """128 MiB of uint32 labels, with a segmentation and an image of the same shape."""

    def halves(box: tuple[slice, ...]) -> np.ndarray:  # segment 1 left, 2 right
        part = np.ones((16, 256, 2048), np.uint32)
        part[..., 1024:] = 2
        return part

    labels = _big_volume(tmp_path, "labels", np.uint32, lambda box: 0)
    _big_volume(tmp_path, "seg", np.uint32, halves)
    _big_volume(tmp_path, "image", np.uint8, lambda box: 128)
    records = {}
    for k, (z, y) in enumerate([(1, 100), (5, 400), (9, 700), (12, 1000)], start=1):
        labels[z : z + 2, y : y + 20, 1022:1026] = k
        records[k] = CleftRecord(pre=(1,), post=(2,))
    s = Session.create(tmp_path / "s", labels, VOXEL, records=records, in_memory=False)
    keep_session_volume(s, "segmentation", spec=str(tmp_path / "seg.zarr"))
    keep_session_volume(s, "image", spec=str(tmp_path / "image.zarr"))
    s.apply({"action": "reject", "cleft": 2})
    nbytes = int(np.prod(labels.shape)) * 4

    tracemalloc.start()
    try:
        out = export_session_files(s, "zarr", tmp_path / "e.zarr")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    print(f"export peak {peak / 2**20:.1f} MiB (labels {nbytes / 2**20:.0f} MiB)")
    assert peak < nbytes / 3, f"peak {peak / 2**20:.1f} MiB of {nbytes / 2**20:.0f} MiB labels"
    clefts = zarr.open_array(str(out / "clefts"), mode="r")
    np.testing.assert_array_equal(
        clefts[:, 380:1040, 1020:1030],
        labels[:, 380:1040, 1020:1030] * (labels[:, 380:1040, 1020:1030] != 2),
    )
    assert zarr.open_array(str(out / "image"), mode="r")[7, 500, 1500] == 128
    edges = pd.read_csv(out / "edges.csv")
    assert sorted(edges["cleft_segid"]) == [1, 2, 3, 4]
    assert (edges["presyn_segid"] == 1).all() and (edges["postsyn_segid"] == 2).all()
