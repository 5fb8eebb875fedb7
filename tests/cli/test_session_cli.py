"""``napari-avan session create/apply/status`` end to end on a small synthetic volume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from napari_avan.cli import main
from napari_avan.core.session import Session


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("session-cli") / "s.zarr"
    assert main(["synth", "--out", str(out), "--shape", "8,128,128", "--seed", "5",
                 "--polyadic"]) == 0  # fmt: skip
    return out


def _create(sample: Path, folder: Path, *extra: str) -> int:
    return main(["session", "create", str(folder), "--image", f"{sample}:image",
                 "--segmentation", f"{sample}:segmentation", "--quiet", *extra])  # fmt: skip


def _lines(path: Path, *decisions: dict) -> Path:
    path.write_text("".join(json.dumps(d) + "\n" for d in decisions))
    return path


def test_create_from_clefts_and_edges_starts_all_pending(
    sample: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "s"
    assert _create(sample, folder, "--clefts", f"{sample}:clefts",
                   "--edges", str(sample / "partners.csv")) == 0  # fmt: skip
    truth = pd.read_csv(sample / "partners.csv")
    volumes = Session.open(folder).meta["volumes"]
    for key in ("image", "segmentation"):  # found again from any working folder
        assert Path(volumes[key].rsplit(":", 1)[0]).is_absolute()
    table = Session.open(folder).partner_table()
    got = set(map(tuple, table[["cleft_id", "pre_id", "post_id"]].to_numpy().tolist()))
    assert got == set(map(tuple, truth[["cleft_id", "pre_id", "post_id"]].to_numpy().tolist()))
    capsys.readouterr()
    assert main(["session", "status", str(folder), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    n = truth["cleft_id"].nunique()
    assert status == {"clefts": n, "pending": n, "accepted": 0, "rejected": 0, "added": 0,
                      "decisions": 0, "round": 0}  # fmt: skip


def test_apply_checks_every_line_first_then_stops_at_the_first_failure(
    sample: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "s"
    assert _create(sample, folder, "--clefts", f"{sample}:clefts",
                   "--edges", str(sample / "partners.csv")) == 0  # fmt: skip
    bad = _lines(tmp_path / "bad.jsonl", {"action": "accept", "cleft": 1}, {"action": "nope"})
    assert main(["session", "apply", str(folder), str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "line 2" in err[0] and "nothing was applied" in err[0]
    assert (folder / "journal.jsonl").read_bytes() == b""
    stops = _lines(
        tmp_path / "stops.jsonl",
        {"action": "accept", "cleft": 1},
        {"action": "reject", "cleft": 999},
        {"action": "accept", "cleft": 2},
    )
    assert main(["session", "apply", str(folder), str(stops)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "decision 2" in err[0] and "cleft 999" in err[0]
    status = Session.open(folder).status()
    assert (status["accepted"], status["decisions"]) == (1, 1)


def test_avan_assigns_at_creation_and_after_a_reseed(
    sample: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "s"
    assert _create(sample, folder, "--clefts", f"{sample}:clefts") == 0
    edges = tmp_path / "edges.csv"
    assert main(["assign", f"{sample}:image", "--clefts", f"{sample}:clefts",
                 "--segmentation", f"{sample}:segmentation", "--polyadic", "--out",
                 str(edges), "--quiet"]) == 0  # fmt: skip
    session = Session.open(folder)
    by_cli = pd.read_csv(edges)[["cleft_segid", "presyn_segid", "postsyn_segid"]]
    got = session.partner_table()[["cleft_id", "pre_id", "post_id"]]
    assert set(map(tuple, got.to_numpy().tolist())) == set(map(tuple, by_cli.to_numpy().tolist()))
    cleft = min(session.records)
    before = session.records[cleft]
    voxels = np.argwhere(session.labels == cleft).tolist()
    script = _lines(tmp_path / "d.jsonl", {"action": "delete", "cleft": cleft},
                    {"action": "reseed", "voxels": voxels})  # fmt: skip
    assert main(["session", "apply", str(folder), str(script)]) == 0
    after = Session.open(folder)
    new = max(after.records)
    assert new > max(session.records) and after.records[new].origin == "added"
    # the same voxels, the same AVAN: the same partners as the cleft they replace
    assert (after.records[new].pre, after.records[new].post) == (before.pre, before.post)
    assert after.status()["added"] == 1 and after.status()["decisions"] == 2


def test_create_refuses_an_existing_folder_and_edges_without_clefts(
    sample: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "taken").mkdir()
    assert _create(sample, tmp_path / "taken") == 2
    assert "exists" in capsys.readouterr().err
    assert _create(sample, tmp_path / "s", "--edges", str(sample / "partners.csv")) == 2
    assert "--clefts" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()
