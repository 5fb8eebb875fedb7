"""The command line end to end: synth, tables, convert, evaluate, and bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from napari_avan.cli import main


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "napari_avan.cli", *args], capture_output=True, text=True
    )


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "s.zarr"
    assert (
        main(["synth", "--out", str(out), "--shape", "12,128,128", "--seed", "5", "--polyadic"])
        == 0
    )
    return out


def test_synth_writes_group_and_partners(synth_dir: Path) -> None:
    from napari_avan.io import read_partners, read_volume

    image = read_volume(f"{synth_dir}:image", lazy=False)
    clefts = read_volume(f"{synth_dir}:clefts", lazy=False)
    seg = read_volume(f"{synth_dir}:segmentation", lazy=False)
    assert image.shape == clefts.shape == seg.shape == (12, 128, 128)
    assert image.dtype == np.uint8 and clefts.dtype.kind == "u" and seg.dtype.kind == "u"
    assert image.voxel_size_nm == (40.0, 4.0, 4.0)
    partners = read_partners(synth_dir / "partners.csv")
    assert set(partners["cleft_id"]) == set(np.unique(clefts.data[clefts.data > 0]).tolist())


def test_synth_refuses_to_overwrite(synth_dir: Path) -> None:
    before = (synth_dir / "partners.csv").read_bytes()
    run = run_cli("synth", "--out", str(synth_dir), "--shape", "8,64,64", "--seed", "9")
    assert run.returncode == 2
    assert "--overwrite" in run.stderr and len(run.stderr.strip().splitlines()) == 1
    assert (synth_dir / "partners.csv").read_bytes() == before


def test_truth_against_itself_scores_one(synth_dir: Path, tmp_path: Path) -> None:
    tables = tmp_path / "tables"
    assert (
        main(
            [
                "tables",
                "--clefts",
                f"{synth_dir}:clefts",
                "--segmentation",
                f"{synth_dir}:segmentation",
                "--partners",
                str(synth_dir / "partners.csv"),
                "--out",
                str(tables),
            ]
        )
        == 0
    )
    edges = pd.read_csv(tables / "edges.csv")
    assert len(edges) == len(pd.read_csv(synth_dir / "partners.csv"))
    run = run_cli(
        "evaluate",
        "edges",
        "--pred-clefts",
        f"{synth_dir}:clefts",
        "--pred",
        str(tables / "edges.csv"),
        "--truth-clefts",
        f"{synth_dir}:clefts",
        "--truth",
        str(synth_dir / "partners.csv"),
        "--json",
    )
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["precision"] == result["recall"] == result["f1"] == 1.0
    run = run_cli(
        "evaluate",
        "clefts",
        "--pred",
        f"{synth_dir}:clefts",
        "--truth",
        f"{synth_dir}:clefts",
        "--json",
    )
    assert json.loads(run.stdout)["f1"] == 1.0
    run = run_cli(
        "evaluate",
        "assignment",
        "--pred",
        str(tables / "edges.csv"),
        "--truth",
        str(synth_dir / "partners.csv"),
        "--json",
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["f1"] == 1.0


def test_evaluate_detects_a_wrong_partner(synth_dir: Path, tmp_path: Path) -> None:
    truth = pd.read_csv(synth_dir / "partners.csv")
    pred = truth.copy()
    first = pred.index[0]
    pred.loc[first, ["pre_id", "post_id"]] = pred.loc[first, ["post_id", "pre_id"]].to_numpy()
    pred.to_csv(tmp_path / "pred.csv", index=False)
    run = run_cli(
        "evaluate",
        "assignment",
        "--pred",
        str(tmp_path / "pred.csv"),
        "--truth",
        str(synth_dir / "partners.csv"),
        "--json",
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["f1"] < 1.0


@pytest.mark.parametrize("fmt", ["zarr", "zarr2", "ome-zarr", "cremi"])
def test_convert_round_trip(synth_dir: Path, tmp_path: Path, fmt: str) -> None:
    from napari_avan.io import read_volume

    out = tmp_path / ("out.h5" if fmt == "cremi" else "out.zarr")
    extra = ["--partners", str(synth_dir / "partners.csv")] if fmt == "cremi" else []
    code = main(
        [
            "convert",
            "--image",
            f"{synth_dir}:image",
            "--segmentation",
            f"{synth_dir}:segmentation",
            "--clefts",
            f"{synth_dir}:clefts",
            "--to",
            fmt,
            "--out",
            str(out),
            *extra,
        ]
    )
    assert code == 0
    original = read_volume(f"{synth_dir}:clefts", lazy=False)
    key = "volumes/labels/clefts" if fmt == "cremi" else "clefts"
    if fmt == "ome-zarr":
        key = "labels/clefts"
    back = read_volume(f"{out}:{key}", lazy=False)
    np.testing.assert_array_equal(back.data, original.data)
    assert back.dtype == original.dtype
    assert back.voxel_size_nm == original.voxel_size_nm


# ----------------------------------------------------------------------------- bad input


@pytest.fixture()
def bad_inputs(tmp_path: Path) -> Path:
    np.save(tmp_path / "flat.npy", np.zeros((64, 64), np.uint8))
    np.save(tmp_path / "rgb.npy", np.zeros((4, 32, 32, 3), np.uint8))
    np.save(tmp_path / "vol.npy", np.zeros((4, 32, 32), np.uint8))
    np.save(tmp_path / "labels_small.npy", np.zeros((4, 16, 32), np.uint32))
    np.savez(tmp_path / "pack.npz", image=np.zeros((4, 32, 32), np.uint8))
    (tmp_path / "volume.xyz").write_text("not a volume")
    return tmp_path


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--image", "{d}/flat.npy"], "2D"),
        (["--image", "{d}/rgb.npy"], "RGB"),
        (["--image", "{d}/vol.npy", "--segmentation", "{d}/labels_small.npy"], "shape"),
        (["--image", "{d}/pack.npz:raw"], "image"),  # the message lists the available keys
        (["--image", "{d}/missing.zarr"], "does not exist"),
        (["--image", "{d}/volume.xyz"], "format"),
        (["--image", "{d}/vol.npy", "--voxel-size", "0,4,4"], "positive"),
        (["--image", "{d}/vol.npy", "--voxel-size=-40,4,4"], "positive"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(
    bad_inputs: Path, args: list[str], expected: str
) -> None:
    out = bad_inputs / "out.zarr"
    filled = [a.format(d=bad_inputs) for a in args]
    if not any(a.startswith("--voxel-size") for a in filled):
        filled += ["--voxel-size", "40,4,4"]
    before = sorted(p.name for p in bad_inputs.iterdir())
    run = run_cli("convert", *filled, "--to", "zarr", "--out", str(out))
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert expected in lines[0]
    assert "Traceback" not in run.stderr
    assert sorted(p.name for p in bad_inputs.iterdir()) == before  # nothing written


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["--val-image", "x.zarr"],
            "give --val-image, --val-segmentation, --val-clefts, --val-partners the same number "
            "of times (one group per volume)",
        ),
        (
            ["--image", "x.zarr", "--clefts", "c.zarr"],
            "give --image, --segmentation, --clefts, --partners the same number of times (one "
            "group per volume)",
        ),
    ],
)
def test_train_refuses_groups_of_mismatched_flags(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], expected: str
) -> None:
    out = tmp_path / "model"
    assert main(["train", "clefts", "--out", str(out), "--steps", "1", *args]) == 2
    assert capsys.readouterr().err == f"napari-avan: error: {expected}\n"
    assert not out.exists()


def test_progress_bar_helper_yields_every_step_and_follows_the_totals(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from types import SimpleNamespace

    from napari_avan.cli._common import drive

    steps = [SimpleNamespace(done=d, total=4) for d in (1, 3, 4)]
    seen: list[tuple[int, int | None]] = []
    driven = drive(
        iter(steps),
        desc="test",
        unit="patch",
        quiet=False,
        show=lambda bar, step: seen.append((bar.n, bar.total)),
    )
    assert list(driven) == steps
    assert seen == [(1, 4), (3, 4), (4, 4)]
    err = capsys.readouterr().err
    assert "test: 100%" in err and "4/4" in err and "patch" in err
