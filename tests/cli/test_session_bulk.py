"""``napari-avan session create`` block by block: the session the whole-volume path makes
(labels bit for bit, partners and scores), kept on disk when larger than memory, resumable."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from napari_avan.cli import main
from napari_avan.core.session import Session

#: Small blocks: the 24 x 96 x 96 volume is 3 x 3 x 3 of them, most clefts cross some.
BULK = ("--block", "8,40,40", "--workers", "0")


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("session-bulk") / "s.zarr"
    assert main(["synth", "--out", str(out), "--shape", "24,96,96", "--seed", "5",
                 "--polyadic"]) == 0  # fmt: skip
    return out


@pytest.fixture(scope="module")
def detector(sample: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small real detector (random weights, a small window: many windows and window
    blocks) whose threshold keeps the top 10 % of its map on the sample: about ten clefts
    of many sizes."""
    import torch

    from napari_avan.io import read_volume
    from napari_avan.models.checkpoint import resolve_model, save_model
    from napari_avan.models.detect import detect
    from napari_avan.models.device import plan
    from napari_avan.models.networks import ResidualSymmetricUNet, UNetConfig

    folder = tmp_path_factory.mktemp("det") / "detector"
    torch.manual_seed(3)
    network = ResidualSymmetricUNet(UNetConfig(widths=(4, 8), groups=2))
    meta = {"task": "cleft-detector", "voxel_size_nm": [40.0, 8.0, 8.0], "patch": [8, 32, 32],
            "overlap": [2, 8, 8], "postprocess": {"threshold": 0.5,
                                                  "min_volume_nm3": 40 * 8 * 8 * 20}}  # fmt: skip
    save_model(folder, network, meta)
    image = read_volume(f"{sample}:image", lazy=False).data
    prob = detect(resolve_model(str(folder), "cleft-detector"), image, (40, 4, 4), run=plan("cpu"))
    meta["postprocess"]["threshold"] = float(np.quantile(prob.prob, 0.9))
    save_model(folder, network, meta, overwrite=True)
    return folder


def _create(sample: Path, detector: Path, folder: Path, *extra: str) -> int:
    return main(["session", "create", str(folder), "--image", f"{sample}:image",
                 "--segmentation", f"{sample}:segmentation", "--detector", str(detector),
                 "--device", "cpu", "--quiet", *extra])  # fmt: skip


@pytest.fixture(scope="module")
def whole(sample: Path, detector: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session the whole-volume path makes."""
    folder = tmp_path_factory.mktemp("whole") / "s"
    assert _create(sample, detector, folder) == 0
    return folder


@pytest.fixture(scope="module")
def bulk(sample: Path, detector: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same, block by block (labels in memory: they are small)."""
    folder = tmp_path_factory.mktemp("bulk") / "s"
    assert _create(sample, detector, folder, *BULK) == 0
    return folder


def _assert_same(got: Session, want: Session) -> None:
    """Labels bit for bit; every cleft's record, the scores to float precision."""
    assert got.labels.dtype == want.labels.dtype
    np.testing.assert_array_equal(np.asarray(got.labels), np.asarray(want.labels))
    assert sorted(got.records) == sorted(want.records)
    for cleft, w in want.records.items():
        g = got.records[cleft]
        exact = ("status", "origin", "pre", "post", "candidates", "box", "round", "note")
        assert [getattr(g, k) for k in exact] == [getattr(w, k) for k in exact], cleft
        for side in ("pre_scores", "post_scores"):
            np.testing.assert_allclose(getattr(g, side), getattr(w, side), rtol=1e-5, atol=1e-6)
        if w.score is None:
            assert g.score is None
        else:
            assert g.score == pytest.approx(w.score, rel=1e-6)
    assert got.status() == want.status()


def test_bulk_create_makes_the_whole_volume_session(
    whole: Path, bulk: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from napari_avan.core.geometry import label_statistics
    from napari_avan.io.export import session_volume

    got, want = Session.open(bulk), Session.open(whole)
    stats = label_statistics(np.asarray(want.labels))
    assert stats.ids.size >= 5 and any(r.pre for r in want.records.values())
    block = np.array([8, 40, 40])
    assert np.any(stats.bbox_begin // block != (stats.bbox_end - 1) // block)  # across blocks
    assert got.in_memory
    _assert_same(got, want)
    assert got.meta["models"] == want.meta["models"]
    assert got.meta["volumes"]["prob"] == "cleft_prob.zarr:cleft_prob"  # in the folder
    np.testing.assert_array_equal(
        np.asarray(session_volume(got, "prob", "cleft probability")),
        np.asarray(session_volume(want, "prob", "cleft probability")),
    )
    assert not (bulk.parent / "s.bulk").exists()
    assert not (bulk / "cleft_prob.zarr" / "clefts").exists()  # the session holds them
    capsys.readouterr()
    assert main(["session", "status", str(bulk), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == want.status()


def test_a_bulk_session_on_disk_applies_decisions_as_in_memory(
    sample: Path,
    detector: Path,
    whole: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("NAPARI_AVAN_LABELS_IN_MEMORY_MIB", "0.001")
    folder = tmp_path / "disk"
    assert _create(sample, detector, folder, *BULK) == 0
    assert "labels on disk" in capsys.readouterr().out
    disk, want = Session.open(folder), Session.open(whole)
    assert not disk.in_memory and want.in_memory
    _assert_same(disk, want)
    memory = tmp_path / "memory"
    shutil.copytree(whole, memory)
    labels = np.asarray(want.labels)
    ids = sorted(want.records, key=lambda c: int(np.sum(labels == c)))  # smallest first
    voxels = np.argwhere(labels == ids[0]).tolist()
    script = tmp_path / "d.jsonl"
    script.write_text("".join(json.dumps(d) + "\n" for d in (
        {"action": "accept", "cleft": ids[1]},
        {"action": "reject", "cleft": ids[2]},
        {"action": "delete", "cleft": ids[0]},
        {"action": "reseed", "voxels": voxels},
    )))  # fmt: skip
    for target in (folder, memory):
        assert main(["session", "apply", str(target), str(script), "--device", "cpu"]) == 0
    got = Session.open(folder)
    assert not got.in_memory
    _assert_same(got, Session.open(memory))
    new = max(got.records)
    assert got.records[new].origin == "added" and ids[0] not in got.records
    assert (got.records[new].pre, got.records[new].post) == (
        want.records[ids[0]].pre,
        want.records[ids[0]].post,
    )


def test_an_interrupted_bulk_create_resumes_to_the_same_session(
    sample: Path,
    detector: Path,
    bulk: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import napari_avan.bulk.assign as bulk_assign
    import napari_avan.bulk.detect as bulk_detect

    assign_group = bulk_assign.assign_group
    calls: list[int] = []

    def killed_after_two(*args: object, **kwargs: object) -> object:
        if len(calls) == 2:
            raise KeyboardInterrupt  # Ctrl-C in the assign phase
        calls.append(1)
        return assign_group(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(bulk_assign, "assign_group", killed_after_two)
    folder, staging = tmp_path / "s", tmp_path / "s.bulk"
    assert _create(sample, detector, folder, *BULK) == 130
    assert "--resume" in capsys.readouterr().err
    assert not folder.exists()
    assert (staging / "detect.zarr" / "clefts.csv").is_file()  # detected
    assert (staging / "edges.csv.bulk").is_dir()  # partly assigned
    monkeypatch.setattr(bulk_assign, "assign_group", assign_group)

    assert _create(sample, detector, folder, *BULK) == 2
    err = capsys.readouterr().err
    assert str(staging) in err and "--resume" in err and not folder.exists()
    assert _create(sample, detector, folder, "--block", "8,48,48", "--resume") == 2
    assert "block differ" in capsys.readouterr().err

    def no_detection(*args: object) -> object:
        raise AssertionError("the finished detection ran again")

    monkeypatch.setattr(bulk_detect, "_task", no_detection)
    assert _create(sample, detector, folder, *BULK, "--resume") == 0
    assert not staging.exists()
    _assert_same(Session.open(folder), Session.open(bulk))


def test_bulk_create_from_clefts_and_edges_and_a_stop_after_the_session_was_made(
    sample: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import napari_avan.cli.session as cli_session

    given = ("--clefts", f"{sample}:clefts", "--edges", str(sample / "partners.csv"))
    want = tmp_path / "whole"
    assert main(["session", "create", str(want), "--image", f"{sample}:image",
                 "--segmentation", f"{sample}:segmentation", "--quiet", *given]) == 0  # fmt: skip
    finish = cli_session._finish_bulk

    def stopped(*args: object) -> None:
        raise KeyboardInterrupt  # the session is made, the staging folder not yet removed

    monkeypatch.setattr(cli_session, "_finish_bulk", stopped)
    folder = tmp_path / "s"
    args = ["session", "create", str(folder), "--image", f"{sample}:image", "--segmentation",
            f"{sample}:segmentation", "--quiet", *given, "--block", "8,40,40"]  # fmt: skip
    assert main(args) == 130
    assert "--resume" in capsys.readouterr().err
    assert (tmp_path / "s.bulk").is_dir() and (folder / "session.json").is_file()
    monkeypatch.setattr(cli_session, "_finish_bulk", finish)
    assert main(args) == 2  # the session exists
    assert main([*args, "--resume"]) == 0
    assert not (tmp_path / "s.bulk").exists()
    _assert_same(Session.open(folder), Session.open(want))
