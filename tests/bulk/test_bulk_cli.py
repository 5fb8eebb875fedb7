"""``napari-avan detect`` block by block: the same output as the whole-volume command, and a
run killed with SIGKILL resumes to identical output."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from bulk_cases import assert_same_outputs, noise_image, outputs

from napari_avan.cli import main
from napari_avan.io import write_volume

VOXEL = (45.0, 6.0, 6.0)


@pytest.fixture(scope="module")
def image_zarr(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bulk_cli") / "image.zarr"
    write_volume(path, noise_image((12, 120, 130)), VOXEL, chunks=(4, 64, 64))
    return path


def _cli(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "napari_avan.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_bulk_command_equals_the_whole_volume_command(detector, image_zarr, tmp_path) -> None:
    whole, bulk = tmp_path / "whole.zarr", tmp_path / "bulk.zarr"
    common = [str(image_zarr), "--model", str(detector), "--device", "cpu", "--quiet"]
    assert main(["detect", *common, "--out", str(whole)]) == 0
    assert main(["detect", *common, "--out", str(bulk), "--block", "5,40,50"]) == 0
    assert_same_outputs(bulk, outputs(whole))


@pytest.mark.slow
def test_a_killed_run_resumes_to_identical_output(detector, image_zarr, tmp_path) -> None:
    whole, bulk = tmp_path / "whole.zarr", tmp_path / "bulk.zarr"
    common = [str(image_zarr), "--model", str(detector), "--device", "cpu", "--quiet"]
    assert main(["detect", *common, "--out", str(whole)]) == 0
    args = [*common, "--out", str(bulk), "--block", "2,24,24", "--workers", "0"]
    proc = _cli("detect", *args)
    done = bulk / "_bulk" / "done"
    deadline = time.monotonic() + 120
    while not (done.is_dir() and len(list(done.glob("predict-*"))) >= 3):
        assert proc.poll() is None, f"the run ended before it was killed: {proc.stderr.read()}"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not (bulk / "clefts.csv").exists()
    # without --resume the unfinished output is not touched
    again = _cli("detect", *args)
    _, err = again.communicate(timeout=120)
    assert again.returncode == 2 and "--overwrite" in err
    resumed = _cli("detect", *args, "--resume")
    out, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err
    assert "done before" in out
    assert_same_outputs(bulk, outputs(whole))


def test_bulk_refuses_what_it_cannot_do(detector, image_zarr, tmp_path) -> None:
    common = [str(image_zarr), "--model", str(detector), "--out", str(tmp_path / "o.zarr")]
    proc = _cli("detect", *common, "--block", "4,0,64")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and "three positive integers" in err
