"""Every script in examples/ runs on small data."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

SMALL_ARGS = {
    "evaluate_synthetic.py": ["--shape", "8,96,96"],
    "render_synth_slice.py": ["--out", "{tmp}/slice.png"],
    "render_synth_v2.py": ["--out", "{tmp}/v2.png", "--seeds", "2"],
    "screenshots.py": ["--out", "{tmp}/shots", "--data", "synthetic"],
    "vnc_recipe.py": ["--steps", "1", "--out", "{tmp}/out"],
}


#: Examples that read the real EM data in ../shared/data.
REALDATA = {"vnc_recipe.py"}


@pytest.mark.parametrize(
    "script",
    [
        pytest.param(name, marks=[pytest.mark.realdata] if name in REALDATA else [])
        for name in sorted(p.name for p in EXAMPLES.glob("*.py"))
    ],
)
def test_example_runs(script: str, tmp_path: Path) -> None:
    args = [a.format(tmp=tmp_path) for a in SMALL_ARGS.get(script, [])]
    run = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip() or any(tmp_path.iterdir())
    text = (EXAMPLES / script).read_text()
    assert text.lstrip().startswith('"""'), "examples start with a docstring saying what they show"
