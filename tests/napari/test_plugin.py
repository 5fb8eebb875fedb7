"""The plugin as napari sees it: manifest, sample data, reader, writer, demo."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.gui

REPO = Path(__file__).resolve().parents[2]


def test_npe2_validate_finds_installed_plugin() -> None:
    npe2 = shutil.which("npe2", path=str(Path(sys.executable).parent)) or shutil.which("npe2")
    assert npe2 is not None
    out = subprocess.run([npe2, "validate", "napari-avan"], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "valid" in out.stdout


def test_manifest_contributions_are_discovered() -> None:
    from npe2 import PluginManager

    pm = PluginManager.instance()
    pm.discover()
    manifest = pm.get_manifest("napari-avan")
    keys = {s.key for s in manifest.contributions.sample_data or []}
    assert keys == {
        "synthetic-dyadic",
        "synthetic-polyadic",
        "synthetic-dyadic-predicted",
        "synthetic-polyadic-predicted",
    }
    assert manifest.contributions.readers
    assert manifest.contributions.writers


def test_open_sample_through_napari(make_napari_viewer) -> None:
    viewer = make_napari_viewer()
    viewer.open_sample("napari-avan", "synthetic-polyadic")
    names = [layer.name for layer in viewer.layers]
    assert names == ["EM", "segmentation", "clefts"]
    em, seg, clefts = (viewer.layers[n] for n in names)
    assert em.data.dtype == np.uint8 and em.data.ndim == 3
    assert seg.data.shape == em.data.shape == clefts.data.shape
    assert tuple(em.scale) == tuple(clefts.scale) == (40.0, 4.0, 4.0)
    assert clefts.data.max() >= 1
    partners = clefts.metadata["partners"]
    assert set(partners["cleft_id"]) == set(np.unique(clefts.data[clefts.data > 0]).tolist())


def test_reader_opens_synth_output(make_napari_viewer, tmp_path: Path) -> None:
    from napari_avan.core.synth import synthesize
    from napari_avan.io import write_sample

    sample = synthesize(seed=3, shape=(8, 96, 96))
    path = write_sample(tmp_path / "s.zarr", sample)
    viewer = make_napari_viewer()
    layers = viewer.open(str(path), plugin="napari-avan")
    by_name = {layer.name: layer for layer in layers}
    assert by_name["image"].__class__.__name__ == "Image"
    assert by_name["clefts"].__class__.__name__ == "Labels"
    np.testing.assert_array_equal(np.asarray(by_name["clefts"].data), sample.clefts)
    assert tuple(by_name["image"].scale) == sample.voxel_size_nm
    # each layer names the volume it came from, so a session can name it instead of a copy
    from napari_avan._napari._layers import SOURCE_SPEC_KEY

    assert by_name["clefts"].metadata[SOURCE_SPEC_KEY] == f"{path.resolve()}:clefts"


def test_writer_round_trip(make_napari_viewer, tmp_path: Path) -> None:
    from napari_avan.io import read_volume

    viewer = make_napari_viewer()
    labels = np.zeros((4, 16, 16), np.uint32)
    labels[1:3, 4:9, 5:12] = 7
    viewer.add_labels(labels, name="fixed", scale=(40, 4, 4))
    target = tmp_path / "fixed.zarr"
    viewer.layers.save(str(target), selected=False, plugin="napari-avan")
    vol = read_volume(str(target), lazy=False)
    np.testing.assert_array_equal(vol.data, labels)
    assert vol.data.dtype == np.uint32
    assert vol.voxel_size_nm == (40.0, 4.0, 4.0)


@pytest.mark.slow
def test_demo_headless_writes_screenshot(tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "napari-avan"
    out = tmp_path / "demo"
    run = subprocess.run(
        [str(exe), "demo", "--headless", "--out", str(out)],
        capture_output=True,
        text=True,
        env={**os.environ},
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    shot = out / "demo.png"
    assert str(shot) in run.stdout
    from imageio.v3 import imread

    pixels = imread(shot)
    assert pixels.shape[0] > 400 and pixels.shape[1] > 600
    assert pixels[..., :3].std() > 10  # not a blank window
    assert (out / "clefts.csv").exists() and (out / "edges.csv").exists()
    # a rerun replaces the demo's own output, but a folder of the user's is refused
    user = tmp_path / "mine"
    user.mkdir()
    (user / "notes.txt").write_text("keep me")
    refused = subprocess.run(
        [str(exe), "demo", "--headless", "--out", str(user)], capture_output=True, text=True
    )
    assert refused.returncode == 2
    assert "did not write" in refused.stderr
    assert (user / "notes.txt").read_text() == "keep me"


@pytest.mark.slow
def test_wheel_carries_manifest(tmp_path: Path) -> None:
    # build from a copy, so the build leaves nothing (build/, *.egg-info) in the checkout
    source = tmp_path / "src"
    shutil.copytree(
        REPO,
        source,
        symlinks=True,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "build", "dist", "*.egg-info", "demo_out", "__pycache__", ".*_cache"
        ),
    )
    wheels = tmp_path / "wheels"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(wheels),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    (wheel,) = wheels.glob("napari_avan-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        manifest = zf.read("napari_avan/napari.yaml").decode()
        entry_points = next(n for n in names if n.endswith("entry_points.txt"))
        eps = zf.read(entry_points).decode()
    assert manifest == (REPO / "napari.yaml").read_text()
    assert "napari_avan:napari.yaml" in eps
    assert not any(n.endswith((".npz", ".h5")) for n in names)  # no shared data in the wheel
