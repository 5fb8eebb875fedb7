"""Exporting a proofreading session: every format re-imports as the session."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from napari_avan.cli import main
from napari_avan.core.session import Session, records_from_partners
from napari_avan.core.session.tables import corrected_labels, session_edges
from napari_avan.core.synth import synthesize
from napari_avan.io import read_cremi, read_table, read_volume, write_sample
from napari_avan.io.cremi import partners_from_cremi
from napari_avan.io.export import export_session
from napari_avan.types import AvanInputError


@pytest.fixture(scope="module")
def proofread(tmp_path_factory: pytest.TempPathFactory) -> tuple[Session, object]:
    """A session with an accepted, a rejected, a deleted and a re-seeded cleft."""
    root = tmp_path_factory.mktemp("export")
    sample = synthesize(seed=4, shape=(16, 256, 256), polyadic=True)  # 4 clefts
    data = write_sample(root / "s.zarr", sample)
    s = Session.create(
        root / "session", sample.clefts, sample.voxel_size_nm,
        records=records_from_partners(sample.partners),
        volumes={"image": f"{data}:image", "segmentation": f"{data}:segmentation"},
    )  # fmt: skip
    first, second, third, *_ = sorted(s.records)
    moved = s.records[third]
    voxels = np.argwhere(s.labels == third).tolist()
    s.apply({"action": "accept", "cleft": first})
    s.apply({"action": "reject", "cleft": second})
    s.apply({"action": "delete", "cleft": third})
    s.apply({"action": "reseed", "voxels": voxels})
    added = max(s.records)
    s.apply({"action": "set_partners", "cleft": added, "pre": list(moved.pre),
             "post": list(moved.post)})  # fmt: skip
    return s, sample


def _kept_partners(s: Session) -> set[tuple[int, int, int]]:
    return {
        (c, a, b)
        for c, r in s.records.items()
        if r.status != "rejected"
        for a in r.pre
        for b in r.post
    }


def test_corrected_labels_and_statuses(proofread: tuple[Session, object]) -> None:
    s, sample = proofread
    labels = corrected_labels(s)
    rejected = [c for c, r in s.records.items() if r.status == "rejected"]
    assert len(rejected) == 1 and not (labels == rejected[0]).any()
    assert set(np.unique(labels)) - {0} == {c for c in s.records if c not in rejected}
    edges = session_edges(s, sample.segmentation)
    status = edges.groupby("cleft_segid")["status"].first().to_dict()
    assert sorted(set(status.values())) == ["accepted", "added", "predicted", "rejected"]


@pytest.mark.parametrize("fmt", ["zarr", "ome-zarr"])
def test_stores_round_trip(proofread: tuple, tmp_path: Path, fmt: str) -> None:
    s, sample = proofread
    out = export_session(s, fmt, tmp_path / f"e.{fmt}", segmentation=sample.segmentation,
                         image=sample.image)  # fmt: skip
    prefix = "labels/" if fmt == "ome-zarr" else ""
    clefts = read_volume(f"{out}:{prefix}clefts", lazy=False)
    np.testing.assert_array_equal(clefts.data, corrected_labels(s))
    assert clefts.voxel_size_nm == s.voxel_size_nm
    seg = read_volume(f"{out}:{prefix}segmentation", lazy=False).data
    np.testing.assert_array_equal(seg, sample.segmentation)
    image = read_volume(str(out) if fmt == "ome-zarr" else f"{out}:image", lazy=False).data
    np.testing.assert_array_equal(image, sample.image)
    edges = read_table(out / "edges.csv")
    kept = edges[edges["status"] != "rejected"]
    again = records_from_partners(kept)
    assert {(c, a, b) for c, r in again.items() for a in r.pre for b in r.post} == (
        _kept_partners(s)
    )


def test_cremi_round_trip(proofread: tuple, tmp_path: Path) -> None:
    s, sample = proofread
    out = export_session(s, "cremi", tmp_path / "e.hdf", segmentation=sample.segmentation,
                         image=sample.image)  # fmt: skip
    with h5py.File(out, "r") as f:
        for key in ("volumes/raw", "volumes/labels/neuron_ids", "volumes/labels/clefts"):
            assert tuple(f[key].attrs["resolution"]) == s.voxel_size_nm
        assert "annotations/presynaptic_site/partners" in f
    data = read_cremi(out, lazy=False)
    np.testing.assert_array_equal(data.clefts.data, corrected_labels(s))
    np.testing.assert_array_equal(data.neuron_ids.data, sample.segmentation)
    np.testing.assert_array_equal(data.image.data, sample.image)
    table = partners_from_cremi(data.annotations, data.neuron_ids.data, data.clefts.data,
                                s.voxel_size_nm)  # fmt: skip
    assert set(map(tuple, table.to_numpy().astype(int).tolist())) == _kept_partners(s)


def test_csv_and_tiff(proofread: tuple, tmp_path: Path) -> None:
    s, sample = proofread
    csv = export_session(s, "csv", tmp_path / "e.csv", segmentation=sample.segmentation)
    expected = session_edges(s, sample.segmentation).drop(columns="updated")
    got = read_table(csv).drop(columns="updated")
    got["model"] = got["model"].astype(object).fillna("")  # an empty CSV field reads as NaN
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)
    tif = export_session(s, "tiff", tmp_path / "e.tif")
    np.testing.assert_array_equal(read_volume(str(tif), lazy=False).data, corrected_labels(s))


def test_existing_output_is_refused_and_kept(proofread: tuple, tmp_path: Path) -> None:
    s, sample = proofread
    out = tmp_path / "e.csv"
    out.write_text("mine\n")
    with pytest.raises(AvanInputError, match="exists"):
        export_session(s, "csv", out, segmentation=sample.segmentation)
    assert out.read_text() == "mine\n"
    export_session(s, "csv", out, segmentation=sample.segmentation, overwrite=True)
    assert "cleft_segid" in out.read_text()


def test_cli_export_reads_the_session_volumes(
    proofread: tuple, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    s, _ = proofread
    out = tmp_path / "e.zarr"
    assert main(["export", str(s.path), "--format", "zarr", "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    np.testing.assert_array_equal(read_volume(f"{out}:clefts", lazy=False).data,
                                  corrected_labels(s))  # fmt: skip
    assert main(["export", str(s.path), "--format", "zarr", "--out", str(out)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_a_kept_volume_travels_with_the_session_folder(tmp_path: Path) -> None:
    import shutil

    from napari_avan.io.export import export_session_files, keep_session_volume, session_volume

    sample = synthesize(seed=2, shape=(8, 64, 64))
    s = Session.create(tmp_path / "a", sample.clefts, sample.voxel_size_nm)
    keep_session_volume(s, "segmentation", sample.segmentation)
    keep_session_volume(s, "image", sample.image)
    assert s.meta["volumes"]["segmentation"] == "segmentation.zarr"
    with pytest.raises(AvanInputError, match="shape"):
        keep_session_volume(s, "prob", np.zeros((2, 2, 2), np.float32))
    shutil.move(tmp_path / "a", tmp_path / "b")  # a relative spec names the folder's own copy
    moved = Session.open(tmp_path / "b")
    np.testing.assert_array_equal(session_volume(moved, "image", "image"), sample.image)
    assert session_volume(moved, "prob", "cleft probability") is None
    out = export_session_files(moved, "cremi", tmp_path / "b.h5")
    np.testing.assert_array_equal(read_cremi(out).neuron_ids.data, sample.segmentation)


def test_the_writer_picks_the_export_format_from_the_name() -> None:
    from napari_avan._napari._writer import session_format

    names = {"x.zarr": "zarr", "x.ome.zarr": "ome-zarr", "x.h5": "cremi", "x.HDF5": "cremi",
             "x.tif": "tiff", "x.csv": "csv"}  # fmt: skip
    assert {n: session_format(Path(n)) for n in names} == names
    with pytest.raises(AvanInputError, match=r"export format of x\.npz"):
        session_format(Path("x.npz"))
