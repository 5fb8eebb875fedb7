"""benchmarks/real_em.py runs on the real VNC crop and writes consistent figures and a plot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "real_em.py"


def _fraction(value: object) -> bool:
    return isinstance(value, float | int) and 0.0 <= float(value) <= 1.0


@pytest.mark.realdata
def test_real_em_val_region(vnc_left_dir: Path, tmp_path: Path) -> None:
    assert (vnc_left_dir / "vnc_left.npz").is_file()
    out, png = tmp_path / "val.json", tmp_path / "val.png"
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--region", "val", "--json", str(out), "--plot", str(png)],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "machine:" in run.stdout and "CREMI" in run.stdout

    result = json.loads(out.read_text())
    assert result["region"] == "val"
    n = result["true_clefts_scored"]
    assert n == len(result["scored_cleft_ids"]) > 0
    assert not set(result["scored_cleft_ids"]) & set(result["ignored_crossing_cleft_ids"])
    det = result["detector"]
    for rule in ("at_iou", "any_overlap"):
        m = det[rule]
        for key in ("precision", "recall", "f1"):
            assert _fraction(m[key]), (rule, key, m[key])
        assert m["tp"] + m["fn"] == n == m["n_true"]
        assert m["tp"] + m["fp"] == m["n_pred"]
        assert min(m["tp"], m["fp"], m["fn"]) >= 0
    # any shared voxel is a looser rule than IoU >= 0.1: never fewer matches
    assert det["any_overlap"]["tp"] >= det["at_iou"]["tp"]
    assert _fraction(det["threshold"]) and det["min_size_voxels"] >= 1
    cremi = det["cremi"]
    for key in ("adf", "adgt", "cremi_score"):
        assert cremi[key] is None or cremi[key] >= 0
    assert 0 <= cremi["fn_voxels"] <= cremi["n_true_voxels"]
    assert 0 <= cremi["fp_voxels"] <= cremi["n_pred_voxels"]

    av = result["avan"]
    assert av["assigned_clefts"] == n
    for key in ("pre_accuracy", "named_pre_accuracy", "edge_precision", "edge_recall", "edge_f1"):
        assert _fraction(av[key]), (key, av[key])
    partner = av["cremi_partner"]
    assert _fraction(partner["fscore"])
    assert partner["tp"] + partner["fn"] == partner["n_true_pairs"] == av["edge_tp"] + av["edge_fn"]
    assert partner["tp"] + partner["fp"] == partner["n_pred_pairs"]

    assert result["cpu"] and result["device"]
    assert all(v >= 0 for v in result["seconds"].values())
    assert set(result["targets"]) >= {"cleft_met", "avan_met"}
    assert png.is_file() and png.stat().st_size > 10_000
    assert det["adapt_norm"] is False


@pytest.mark.realdata
def test_real_em_adapt_norm(vnc_left_dir: Path, tmp_path: Path) -> None:
    """--adapt-norm re-estimates the detector's statistics on the crop: recorded, and the
    probabilities change (the bundled detector has BatchNorm)."""
    assert (vnc_left_dir / "vnc_left.npz").is_file()
    figures = {}
    for flag in ([], ["--adapt-norm"]):
        out = tmp_path / f"val{len(flag)}.json"
        run = subprocess.run(
            [sys.executable, str(SCRIPT), "--region", "val", *flag, "--json", str(out)],
            capture_output=True,
            text=True,
            timeout=900,
            cwd=tmp_path,
        )
        assert run.returncode == 0, run.stderr[-3000:]
        assert ("re-estimated on the crop" in run.stdout) == bool(flag)
        figures[bool(flag)] = json.loads(out.read_text())["detector"]
    assert figures[True]["adapt_norm"] is True
    assert figures[True]["prob_p999"] != figures[False]["prob_p999"]


def test_real_em_help() -> None:
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "--region" in run.stdout and "--adapt-norm" in run.stdout
