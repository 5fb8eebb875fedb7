"""``napari-avan evaluate clefts|edges --cremi``: the CREMI metrics beside ours, from files.

Volumes are (1, 1, N) rows of voxels written as .npy (voxel size in the sidecar) to
tmp_path; at (40, 4, 4) nm one x step is 4 nm.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from napari_avan.cli import main
from napari_avan.io import write_volume

VS = (40.0, 4.0, 4.0)


def row_file(
    path: Path, n: int, voxel_size: tuple[float, float, float] | None = VS, **spans: tuple
) -> str:
    """Write a (1, 1, n) uint32 volume, label int(k[1:]) on x in [start, stop) per k='l<id>'."""
    data = np.zeros(n, np.uint32)
    for key, (start, stop) in spans.items():
        data[start:stop] = int(key[1:])
    write_volume(path, data.reshape(1, 1, n), voxel_size)
    return str(path)


def table_file(path: Path, *rows: tuple[int, int, int]) -> str:
    pd.DataFrame(list(rows), columns=["cleft_id", "pre_id", "post_id"]).to_csv(path, index=False)
    return str(path)


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    assert main(list(args)) == 0
    return json.loads(capsys.readouterr().out)


def test_clefts_cremi_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    truth = row_file(tmp_path / "truth.npy", 8, l1=(1, 2))
    pred = row_file(tmp_path / "pred.npy", 8, l3=(4, 5))
    out = run_json(
        capsys, "evaluate", "clefts", "--pred", pred, "--truth", truth, "--cremi", "--json"
    )
    keys = list(out)
    assert keys[-1] == "cremi" and keys[:-1] == sorted(keys[:-1])  # ours first, unchanged
    assert out["f1"] == 0.0 and out["voxel_fp"] == 1  # our metrics: no overlap
    c = out["cremi"]
    # 3 voxels * 4 nm apart, both ways
    assert c["adf"] == c["adgt"] == c["cremi_score"] == 12.0
    assert (c["fp_voxels"], c["fn_voxels"]) == (0, 0)
    assert c["voxel_size_nm"] == [40.0, 4.0, 4.0] and c["cutoff_nm"] == 200.0
    # --cremi-cutoff below 12 nm: both voxels are beyond it; --json may come first too
    out = run_json(
        capsys, "evaluate", "--json", "clefts", "--pred", pred, "--truth", truth,
        "--cremi", "--cremi-cutoff", "10",
    )  # fmt: skip
    assert (out["cremi"]["fp_voxels"], out["cremi"]["fn_voxels"]) == (1, 1)
    # without --cremi the output is our metrics alone
    plain = run_json(capsys, "evaluate", "clefts", "--pred", pred, "--truth", truth, "--json")
    assert "cremi" not in plain and plain == {k: v for k, v in out.items() if k != "cremi"}


def test_clefts_cremi_voxel_size_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    truth = row_file(tmp_path / "truth.npy", 8, None, l1=(1, 2))
    pred = row_file(tmp_path / "pred.npy", 8, None, l3=(4, 5))
    args = ["evaluate", "clefts", "--pred", pred, "--truth", truth, "--cremi", "--json"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("napari-avan: error: ") and "--voxel-size" in err
    assert len(err.strip().splitlines()) == 1
    out = run_json(capsys, *args, "--voxel-size", "40,8,8")
    assert out["cremi"]["cremi_score"] == 24.0  # 3 voxels * 8 nm
    # the option overrides the files' own voxel size
    truth = row_file(tmp_path / "truth_vs.npy", 8, l1=(1, 2))
    out = run_json(
        capsys, "evaluate", "clefts", "--pred", pred, "--truth", truth, "--cremi", "--json",
        "--voxel-size", "40,2,2",
    )  # fmt: skip
    assert out["cremi"]["adf"] == 6.0
    # one file knows its voxel size: it is used
    out = run_json(
        capsys, "evaluate", "clefts", "--pred", pred, "--truth", truth, "--cremi", "--json"
    )
    assert out["cremi"]["adf"] == 12.0


def test_clefts_cremi_disagreeing_voxel_sizes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    truth = row_file(tmp_path / "truth.npy", 8, l1=(1, 2))
    pred = row_file(tmp_path / "pred.npy", 8, (40.0, 8.0, 8.0), l3=(4, 5))
    assert main(["evaluate", "clefts", "--pred", pred, "--truth", truth, "--cremi"]) == 2
    err = capsys.readouterr().err
    assert "voxel size" in err and "--voxel-size" in err


def test_clefts_cremi_empty_prediction(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    truth = row_file(tmp_path / "truth.npy", 8, l1=(1, 3))
    pred = row_file(tmp_path / "pred.npy", 8)
    args = ["evaluate", "clefts", "--pred", pred, "--truth", truth, "--cremi"]
    assert main([*args, "--json"]) == 0
    text = capsys.readouterr().out
    assert "Infinity" not in text and "NaN" not in text
    c = json.loads(text)["cremi"]
    assert c["adf"] == 0.0 and c["adgt"] is None and c["cremi_score"] is None
    assert (c["fp_voxels"], c["fn_voxels"], c["n_true_voxels"]) == (0, 2, 2)
    # the text output shows the infinite distance as inf, after our metrics
    assert main(args) == 0
    text = capsys.readouterr().out
    assert text.index("clefts metrics") < text.index("CREMI clefts metrics")
    assert "cremi_score" in text and "inf" in text


def test_edges_cremi_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # true cleft 1 at x 0.5 -> 2 nm, 2 at x 200.5 -> 802 nm; predicted 5 at 6 nm,
    # 6 at 200 nm (602 nm from true cleft 2), 7 at 40 nm
    true_clefts = row_file(tmp_path / "true.npy", 300, l1=(0, 2), l2=(200, 202))
    pred_clefts = row_file(tmp_path / "pred.npy", 300, l5=(1, 3), l6=(50, 51), l7=(10, 11))
    truth = table_file(tmp_path / "truth.csv", (1, 10, 20), (2, 30, 40))
    pred = table_file(
        tmp_path / "pred.csv",
        (5, 10, 20),  # tp
        (5, 10, 20),  # repeated: fp
        (6, 30, 40),  # too far: fp
        (7, 10, 21),  # wrong post id: fp
    )
    args = [
        "evaluate", "edges", "--pred-clefts", pred_clefts, "--pred", pred,
        "--truth-clefts", true_clefts, "--truth", truth, "--json", "--cremi",
    ]  # fmt: skip
    out = run_json(capsys, *args)
    assert list(out)[-1] == "cremi"
    c = out["cremi"]
    assert (c["tp"], c["fp"], c["fn"]) == (1, 3, 1)
    assert (c["precision"], c["recall"]) == (0.25, 0.5)
    assert c["fscore"] == pytest.approx(1 / 3)
    assert c["n_duplicates"] == 1 and c["max_distance_nm"] == 400.0
    out = run_json(capsys, *args, "--cremi-distance", "700")
    assert (out["cremi"]["tp"], out["cremi"]["fp"], out["cremi"]["fn"]) == (2, 2, 0)
    # no voxel size anywhere: a one-line error asking for --voxel-size
    bare = row_file(tmp_path / "bare.npy", 300, None, l1=(0, 2), l2=(200, 202))
    bare_pred = row_file(tmp_path / "bare_pred.npy", 300, None, l5=(1, 3), l6=(50, 51), l7=(10, 11))
    args[args.index(true_clefts)] = bare
    args[args.index(pred_clefts)] = bare_pred
    assert main(args) == 2
    assert "--voxel-size" in capsys.readouterr().err
