"""Interrupted runs: SIGINT or SIGKILL at a random moment never leaves a partial output.

``detect`` (bundled model) and ``convert --to zarr|ome-zarr`` (image, segmentation and
clefts) run as subprocesses. One full run per command calibrates the typical duration
T; then each (command, signal) pair gets RUNS runs, signalled at seeded random times
between 0.15 T and T (one in each third of that span). After each run the final
``--out`` path either does not exist or is complete and equal to an uninterrupted run's
output (when the run finished before the signal). SIGINT must exit 130 with the one
stderr line ``napari-avan: interrupted`` and leave no hidden temporaries; SIGKILL may
leave hidden temporaries beside the output (they are counted and printed), which must
not break a rerun nor show up as keys of the output. All runs of a pair write to one
destination (with --overwrite once an output exists), so a killed run must also leave an
earlier complete output intact. Finally the same command is rerun without a signal: it
must succeed and leave no hidden temporaries at all (it removes those of killed runs).

Run with ``pytest -s`` to see the figures (runs, signal times, outcomes, leftovers).
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

DETECT_SHAPE = (8, 128, 128)
CONVERT_SHAPE = (64, 1024, 1024)
VOXEL = (40.0, 4.0, 4.0)
RUNS = 3
SIGNALS = {"SIGINT": signal.SIGINT, "SIGKILL": signal.SIGKILL}
COMMANDS = ("detect", "convert-zarr", "convert-ome-zarr")
OUT_NAME = {
    "detect": "det{}.zarr",
    "convert-zarr": "conv{}.zarr",
    "convert-ome-zarr": "conv{}.ome.zarr",
}
#: Figures of every (command, signal) pair, printed again at the end of the module.
FIGURES: list[str] = []


@pytest.fixture(scope="module", autouse=True)
def _summary() -> Iterator[None]:
    """All figures in one place at the end of the module (pytest -s)."""
    yield
    if FIGURES:
        print("\n[kill] summary\n" + "\n".join(FIGURES))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """em.npy (synthetic EM for detect); image/segmentation/clefts.npy (for convert)."""
    from napari_avan.core.synth import synthesize
    from napari_avan.io import write_volume

    root = tmp_path_factory.mktemp("kill-inputs")
    sample = synthesize(seed=21, shape=DETECT_SHAPE)
    write_volume(root / "em.npy", sample.image, sample.voxel_size_nm)
    rng = np.random.default_rng(0)
    z, y, x = (np.arange(n, dtype=np.uint32) for n in CONVERT_SHAPE)
    image = rng.integers(0, 256, CONVERT_SHAPE, dtype=np.uint8)  # incompressible: slow to write
    write_volume(root / "image.npy", image, VOXEL)
    del image
    seg = (
        (z[:, None, None] // 8) * 4096 + (y[None, :, None] // 64) * 64 + x[None, None, :] // 64 + 1
    )
    write_volume(root / "segmentation.npy", seg.astype(np.uint32), VOXEL)
    del seg
    clefts = np.zeros(CONVERT_SHAPE, np.uint32)
    for i in range(1, 40):
        zc, yc, xc = rng.integers(2, CONVERT_SHAPE[0] - 4), *rng.integers(8, 1000, 2)
        clefts[zc : zc + 3, yc : yc + 12, xc : xc + 20] = i
    write_volume(root / "clefts.npy", clefts, VOXEL)
    return root


def argv(command: str, inputs: Path, out: Path) -> list[str]:
    if command == "detect":
        args = ["detect", str(inputs / "em.npy"), "--quiet", "--device", "cpu"]
    else:
        args = ["convert", "--to", command.removeprefix("convert-")]
        args += [f"--{n}={inputs / f'{n}.npy'}" for n in ("image", "segmentation", "clefts")]
    return [sys.executable, "-m", "napari_avan.cli", *args, "--out", str(out)]


def hidden_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def members(command: str, out: Path) -> dict[str, np.ndarray]:
    """The volumes of an output, read fully (raises when any is missing or unreadable)."""
    from napari_avan.io import list_keys, read_volume

    keys = list_keys(out)
    hidden = [k for k in keys if any(part.startswith(".") for part in k.split("/"))]
    if hidden:
        raise AssertionError(f"hidden temporaries show up as keys: {hidden}")
    if command == "detect":
        names = {"cleft_prob": "cleft_prob", "clefts": "clefts"}
    elif command == "convert-zarr":
        names = {n: n for n in ("image", "segmentation", "clefts")}
    else:
        names = {"image": None, "segmentation": "labels/segmentation", "clefts": "labels/clefts"}
    found = {}
    for name, key in names.items():
        spec = str(out) if key is None else f"{out}:{key}"
        found[name] = np.asarray(read_volume(spec, lazy=False).data)
    if command == "detect":
        from napari_avan.io import read_table

        read_table(out / "clefts.csv")
    return found


def completeness(
    command: str, out: Path, inputs: Path, reference: dict[str, np.ndarray] | None
) -> str | None:
    """None when ``out`` is complete and right; else what is wrong."""
    try:
        found = members(command, out)
    except Exception as err:  # any failure to read is a partial output
        return f"unreadable ({type(err).__name__}: {str(err)[:100]})"
    if command == "detect":
        expected = reference
    else:
        expected = {
            n: np.load(inputs / f"{n}.npy", mmap_mode="r")
            for n in ("image", "segmentation", "clefts")
        }
    if expected is None:
        return None
    for name, data in expected.items():
        if found[name].shape != data.shape or not np.array_equal(found[name], data):
            return f"{name} differs from an uninterrupted run"
    return None


@pytest.fixture(scope="module")
def calibration(
    inputs: Path, tmp_path_factory: pytest.TempPathFactory
) -> Callable[[str], tuple[float, dict[str, np.ndarray] | None]]:
    """command -> (seconds of one full run, detect's output as the reference)."""
    cache: dict[str, tuple[float, dict[str, np.ndarray] | None]] = {}

    def get(command: str) -> tuple[float, dict[str, np.ndarray] | None]:
        if command not in cache:
            folder = tmp_path_factory.mktemp(f"calibrate-{command}")
            out = folder / OUT_NAME[command].format("")
            start = time.monotonic()
            run = subprocess.run(
                argv(command, inputs, out), capture_output=True, text=True, cwd=folder, timeout=600
            )
            seconds = time.monotonic() - start
            assert run.returncode == 0, f"calibration run of {command} failed: {run.stderr[-500:]}"
            reference = members(command, out) if command == "detect" else None
            problem = completeness(command, out, inputs, None)
            assert problem is None, f"calibration output of {command}: {problem}"
            print(f"\n[kill] calibrated {command}: one full run takes {seconds:.2f} s")
            cache[command] = (seconds, reference)
        return cache[command]

    return get


@pytest.mark.parametrize("sig", sorted(SIGNALS))
@pytest.mark.parametrize("command", COMMANDS)
def test_signal_leaves_no_partial_output(
    command: str, sig: str, inputs: Path, calibration: Callable, tmp_path: Path
) -> None:
    typical, reference = calibration(command)
    rng = random.Random(f"napari-avan kill {command} {sig}")
    parent = tmp_path / "outputs"
    parent.mkdir()
    problems: list[str] = []
    outcomes: list[str] = []
    leftovers: list[str] = []
    # Every run writes to one destination, as a user retrying the same command would:
    # an output a finished run left there must survive a later run killed while
    # replacing it (--overwrite), and each run sweeps what a killed one left beside it.
    out = parent / OUT_NAME[command].format(0)
    for i in range(RUNS):
        # Stratified: run i is signalled in the i-th slice of [0.15 T, T], so one run
        # always lands late, when the outputs are being written.
        lo, width = 0.15 * typical, 0.85 * typical / RUNS
        delay = lo + width * (i + rng.random())
        hidden_before = set(hidden_in(parent))
        proc = subprocess.Popen(
            argv(command, inputs, out) + (["--overwrite"] if out.exists() else []),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
        )
        time.sleep(delay)
        signalled = proc.poll() is None
        if signalled:
            proc.send_signal(SIGNALS[sig])
        try:
            _, stderr = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, stderr = proc.communicate()
            problems.append(f"run {i}: still running 120 s after {sig}")
        rc = proc.returncode
        tag = f"run {i} ({sig} at {delay:.2f} s)"
        if rc == 0:
            # Signalled in its last moments (or finished first): the output must be whole.
            outcomes.append(f"{'exit 0 after signal' if signalled else 'finished'}@{delay:.1f}s")
        else:
            outcomes.append(f"{'interrupted' if rc == 130 else f'exit {rc}'}@{delay:.1f}s")
        if out.exists():
            problem = completeness(command, out, inputs, reference)
            if problem:
                problems.append(f"{tag}: partial output at --out: {problem}")
        elif rc == 0:
            problems.append(f"{tag}: exit 0 but no output")
        new_hidden = sorted(set(hidden_in(parent)) - hidden_before)
        leftovers += new_hidden
        lines = [line for line in stderr.splitlines() if line.strip()]
        if "Traceback" in stderr:
            problems.append(f"{tag}: traceback on stderr ({lines[-1][:80] if lines else ''})")
        if rc == 0:
            continue
        if sig == "SIGINT":
            if rc != 130:
                problems.append(f"{tag}: exit {rc}, not 130")
            if lines != ["napari-avan: interrupted"]:
                problems.append(
                    f"{tag}: stderr {lines[:2]!r} (want one line 'napari-avan: interrupted')"
                )
            if new_hidden:
                problems.append(f"{tag}: left hidden temporaries {new_hidden[:3]}")
        elif rc != -signal.SIGKILL:
            problems.append(f"{tag}: exit {rc}, not killed")
    # Rerun without a signal, into the same path (leftovers beside it).
    args = argv(command, inputs, out) + (["--overwrite"] if out.exists() else [])
    start = time.monotonic()
    rerun = subprocess.run(args, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    rerun_s = time.monotonic() - start
    if rerun.returncode != 0:
        tail = (rerun.stderr.strip().splitlines() or [""])[-1]
        problems.append(f"rerun: exit {rerun.returncode}: {tail[:150]}")
    else:
        problem = completeness(command, out, inputs, reference)
        if problem:
            problems.append(f"rerun: output {problem}")
    remaining = hidden_in(parent)
    if remaining:
        problems.append(f"after the rerun, hidden temporaries remain: {remaining[:3]}")
    figures = (
        f"[kill] {command} {sig}: {RUNS} runs (typical {typical:.2f} s): {', '.join(outcomes)}; "
        f"hidden leftovers {len(leftovers)}{' ' + str(leftovers[:4]) if leftovers else ''}; "
        f"rerun exit {rerun.returncode} in {rerun_s:.2f} s; left after the rerun "
        f"{len(remaining)}"
    )
    print("\n" + figures)
    FIGURES.append(figures)
    assert not problems, "; ".join(problems)
