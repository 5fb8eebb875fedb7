"""Session labels kept on disk (a volume larger than memory): the store's array operations
against numpy, a session made from a lazy array without reading it whole, and the same
decisions giving the same state as a session in memory (journal, undo and crash recovery are
covered for both in test_session.py)."""

from __future__ import annotations

import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr

from napari_avan.core.geometry import label_statistics
from napari_avan.core.session import CleftRecord, Session
from napari_avan.core.session.store import ChunkedLabels, chunked_statistics, scan_boxes
from napari_avan.types import AvanInputError

VOXEL = (40.0, 4.0, 4.0)


def _labels(shape: tuple[int, int, int], seed: int) -> np.ndarray:
    """Random blobs of ids 1..40 (some ids twice, apart), many across chunk faces."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, np.uint32)
    for k in range(1, 41):
        z, y, x = (rng.integers(0, n - 3) for n in shape)
        labels[
            z : z + rng.integers(1, 4), y : y + rng.integers(2, 12), x : x + rng.integers(2, 12)
        ] = k
    return labels


def _zarr(path: Path, data: np.ndarray, chunks: tuple[int, ...]) -> Any:
    array = zarr.create_array(store=str(path), shape=data.shape, dtype=data.dtype, chunks=chunks)
    array[...] = data
    return array


def test_scan_boxes_cover_the_volume_once_in_whole_chunks() -> None:
    for shape, chunks, voxels in [((7, 50, 61), (2, 16, 16), 2048), ((3, 5, 5), (8, 8, 8), 10),
                                  ((9, 40, 40), (4, 40, 40), 1 << 20)]:  # fmt: skip
        seen = np.zeros(shape, np.int64)
        for box in scan_boxes(shape, chunks, voxels):
            seen[box] += 1
            for s, c, n in zip(box, chunks, shape, strict=True):
                assert s.start % min(c, n) == 0  # starts on a chunk
        assert (seen == 1).all()


def test_chunked_labels_read_and_write_as_numpy_does(tmp_path: Path) -> None:
    data = _labels((10, 40, 50), seed=1)
    store = ChunkedLabels(_zarr(tmp_path / "l.zarr", data, (4, 16, 16)))
    assert store.shape == data.shape and store.dtype == data.dtype and store.ndim == 3
    for key in [np.s_[2:7, 3:30, 5:44], np.s_[4], np.s_[:, 5, :], np.s_[..., 3], np.s_[1, 2, 3]]:
        np.testing.assert_array_equal(store[key], data[key])
    rng = np.random.default_rng(2)
    index = np.unique(rng.integers(0, data.size, 500))
    np.testing.assert_array_equal(store.gather(index), data.ravel()[index])
    values = rng.integers(1, 99, index.size).astype(np.uint32)
    store.scatter(index, values)
    data.ravel()[index] = values
    np.testing.assert_array_equal(np.asarray(store), data)
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "l.zarr"))[...], data)
    np.testing.assert_array_equal(store.find(7), np.flatnonzero(data.ravel() == 7))
    assert store.max() == data.max()
    # an overlay is seen by reads (boxes and gathers) and written nowhere
    extra = np.flatnonzero(data.ravel() == 0)[:300:7]
    store.overlay(extra, np.full(extra.size, 1000, np.uint32))
    shown = data.copy()
    shown.ravel()[extra] = 1000
    for key in [np.s_[2:7, 3:30, 5:44], np.s_[4], np.s_[:, 5, :], np.s_[...]]:
        np.testing.assert_array_equal(store[key], shown[key])
    np.testing.assert_array_equal(store.gather(extra), np.full(extra.size, 1000))
    with pytest.raises(AvanInputError, match="boxes of slices"):
        store[np.array([1, 2])]
    store.overlay(None, None)
    np.testing.assert_array_equal(np.asarray(store), data)


def test_chunked_statistics_equal_the_whole_volumes(tmp_path: Path) -> None:
    data = _labels((12, 64, 80), seed=3)
    values = np.random.default_rng(4).random(data.shape).astype(np.float32)
    whole = label_statistics(data, values)
    for chunks in [(4, 16, 16), (5, 64, 7), (12, 64, 80)]:
        part = chunked_statistics(_zarr(tmp_path / f"{chunks}.zarr", data, chunks), values)
        for name in ("ids", "size", "bbox_begin", "bbox_end"):
            np.testing.assert_array_equal(getattr(part, name), getattr(whole, name), name)
        np.testing.assert_allclose(part.centroid, whole.centroid, rtol=1e-12)
        np.testing.assert_allclose(part.value_mean, whole.value_mean, rtol=1e-9)
    empty = chunked_statistics(np.zeros((3, 4, 5), np.uint16))
    assert empty.ids.size == 0 and empty.ids.dtype == np.uint16


def test_a_session_from_a_lazy_volume_never_holds_it_whole(tmp_path: Path) -> None:
    """128 MiB of labels (16 x 1024 x 2048 uint32) with a few clefts: creating, deciding and
    reopening keep traced memory (numpy's allocations) to a small part of that."""
    shape = (16, 1024, 2048)
    source = zarr.create_array(
        store=str(tmp_path / "clefts.zarr"), shape=shape, dtype=np.uint32, chunks=(8, 256, 256)
    )
    source[3:5, 100:110, 1000:1030] = 5  # across a chunk face in x (1024)
    source[10, 900:905, 7:9] = 9
    tracemalloc.start()
    try:
        s = Session.create(tmp_path / "s", source, VOXEL, in_memory=False)
        s.apply({"action": "reject", "cleft": 9})
        s.apply({"action": "merge", "clefts": [5, 9]})
        s.apply({"action": "reseed", "voxels": [[0, 0, x] for x in range(2040, 2048)]})
        s.undo()
        reopened = Session.open(s.path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    labels_bytes = int(np.prod(shape)) * 4
    print(
        f"\n[session on disk] traced peak {peak / 2**20:.1f} MiB for {labels_bytes / 2**20:.0f} MiB"
    )
    assert peak < labels_bytes / 3
    assert not reopened.in_memory and isinstance(reopened.labels, ChunkedLabels)
    assert sorted(reopened.records) == [5]
    assert reopened.records[5].box == (3, 100, 7, 11, 905, 1030)  # both clefts
    assert (reopened.labels[10, 900:905, 7:9] == 5).all()
    assert not reopened.labels[0, 0, 2040:].any()  # the re-seed was undone


def test_on_disk_and_in_memory_sessions_agree(tmp_path: Path) -> None:
    data = _labels((10, 48, 48), seed=5)
    prob = np.random.default_rng(6).random(data.shape).astype(np.float32)
    source = _zarr(tmp_path / "c.zarr", data, (4, 16, 16))
    records = {3: CleftRecord(pre=(7,), post=(8,), pre_scores=(0.9, 0.8), post_scores=(0.7,))}
    mem = Session.create(tmp_path / "m", data, VOXEL, records=records, probability=prob)
    disk = Session.create(
        tmp_path / "d", source, VOXEL, records=records, probability=prob, in_memory=False
    )
    assert mem.in_memory and not disk.in_memory
    assert disk.meta["labels_in_memory"] is False and mem.meta["labels_in_memory"] is True
    assert sorted(mem.records) == sorted(disk.records)
    for cleft, record in mem.records.items():
        other = disk.records[cleft]
        assert other.box == record.box and other.pre == record.pre
        assert other.score == pytest.approx(record.score, rel=1e-9)
    assert disk.review_queue("position") == mem.review_queue("position")
    assert disk.review_queue("uncertainty") == mem.review_queue("uncertainty")

    def assigner(session: Session, cleft: int) -> CleftRecord:
        # the new cleft is visible to the assigner, but not yet on disk
        seen = np.asarray(session.labels[0:2, 0:48, 40:48]) == cleft
        stored = zarr.open_array(str(session.path / "clefts.zarr"))[0:2, 0:48, 40:48]
        calls.append((int(seen.sum()), int((stored == cleft).sum())))
        return CleftRecord(pre=(1,), post=(2,))

    calls: list[tuple[int, int]] = []
    for s in (mem, disk):
        s.assigner = assigner
        s.apply({"action": "reseed", "voxels": [[0, y, 47] for y in range(30, 40)]})
        s.apply({"action": "delete", "cleft": 3})
        s.apply({"action": "merge", "clefts": [1, 2]})
        s.undo()
    assert calls[0][0] == 10 and calls[1] == calls[0]  # seen both times, stored neither
    np.testing.assert_array_equal(np.asarray(disk.labels), mem.labels)
    assert {k: v.to_json() for k, v in disk.records.items()} == {
        k: v.to_json() for k, v in mem.records.items()
    }
    stored = zarr.open_array(str(disk.path / "clefts.zarr"))[...]
    np.testing.assert_array_equal(stored, mem.labels)  # written through, chunk by chunk


def test_the_size_limit_chooses_where_labels_live(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _labels((4, 32, 32), seed=7)  # 16 KiB
    monkeypatch.setenv("NAPARI_AVAN_LABELS_IN_MEMORY_MIB", "0.01")
    assert not Session.create(tmp_path / "a", data, VOXEL).in_memory
    assert not Session.open(tmp_path / "a").in_memory  # recorded, whatever the limit now
    monkeypatch.setenv("NAPARI_AVAN_LABELS_IN_MEMORY_MIB", "1")
    assert Session.create(tmp_path / "b", data, VOXEL).in_memory
    monkeypatch.setenv("NAPARI_AVAN_LABELS_IN_MEMORY_MIB", "lots")
    with pytest.raises(AvanInputError, match="not a number of MiB"):
        Session.create(tmp_path / "c", data, VOXEL)


def test_a_round_refuses_a_session_on_disk_and_leaves_nothing(tmp_path: Path) -> None:
    from napari_avan.models.bootstrap import iter_round

    s = Session.create(tmp_path / "s", _labels((4, 32, 32), seed=8), VOXEL, in_memory=False)
    with pytest.raises(AvanInputError, match="keeps its labels on disk"):
        next(iter_round(s, tmp_path / "round", steps=1))
    assert not (tmp_path / "round").exists()
