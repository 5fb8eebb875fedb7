"""benchmarks/target_table.py trains one detector per target and scores each everywhere."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "target_table.py"


@pytest.mark.slow
@pytest.mark.realdata
def test_two_targets_are_trained_and_scored_on_synthetic_and_real_data(
    vnc_left_dir: Path, tmp_path: Path
) -> None:
    md, out, work = tmp_path / "table.md", tmp_path / "table.json", tmp_path / "work"
    command = [
        sys.executable, str(SCRIPT), "--steps", "2", "--vnc-steps", "1", "--volumes", "1",
        "--shape", "16,128,128", "--train-shape", "16,128,128", "--arms", "mask,cleftnet",
        "--data", str(vnc_left_dir), "--work", str(work), "--md", str(md), "--json", str(out),
    ]  # fmt: skip
    run = subprocess.run(command, capture_output=True, text=True, timeout=1200, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]

    record = json.loads(out.read_text())
    assert set(record["arms"]) == {"mask", "cleftnet"}
    for arm, row in record["arms"].items():
        assert row["steps"] == 2, arm
        for kind in ("dyadic", "polyadic"):
            m = row[kind]
            assert m["tp"] + m["fn"] > 0 and 0.0 <= m["f1"] <= 1.0
        for stage in ("vnc_zero_shot", "vnc_fine_tuned"):
            v = row[stage]
            assert v["cleft_tp"] + v["cleft_fn"] == 10  # the clefts wholly in y >= 700
        tuned = json.loads((work / arm / "vnc" / "cleft-detector" / "model.json").read_text())
        assert tuned["target"] == arm  # the VNC fine-tuning kept the arm's target
        assert tuned["training"]["init"] == str(work / arm / "synthetic")
    text = md.read_text()
    assert text.count("\n| mask |") == 1 and text.count("\n| cleftnet |") == 1
    assert "Machine:" in text

    # a second run reuses every model: nothing is trained again
    again = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "reusing" in again.stdout and "train clefts --out" not in again.stdout
