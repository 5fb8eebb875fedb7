"""benchmarks/holdout.py scores model folders on the synthetic hold-out with their own settings."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "holdout.py"


def test_holdout_scores_the_bundled_models(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--detector", "bundled", "--avan", "bundled",
         "--volumes", "1"],
        capture_output=True, text=True, timeout=900, cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    out = run.stdout
    assert "machine:" in out and "1 v1 volumes per kind" in out
    assert "cleft-detector bundled {'threshold': 0.5" in out
    assert "avan bundled {'pre_threshold'" in out
    # one line per model and kind, each with counts that add up
    lines = [line for line in out.splitlines() if line.startswith("  ")]
    assert [line.split(":")[0].strip() for line in lines] == ["dyadic", "polyadic"] * 2
    for line in lines:
        p, r, f1 = (float(x) for x in re.findall(r"(?:precision|recall|F1) ([0-9.]+)", line))
        tp, fp, fn = (int(x) for x in re.search(r"tp/fp/fn (\d+)/(\d+)/(\d+)", line).groups())
        assert tp + fn > 0
        assert abs(r - tp / (tp + fn)) < 1e-3
        assert abs(p - (tp / (tp + fp) if tp + fp else 1.0)) < 1e-3
        assert 0.0 <= f1 <= 1.0
    assert re.search(r"presynaptic accuracy [0-9.]+ of \d+ clefts", lines[2])


def test_holdout_needs_a_model() -> None:
    run = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert "--detector or --avan" in run.stderr
