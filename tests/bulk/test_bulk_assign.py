"""``napari-avan assign`` block by block: the whole-volume command's edge table, each cleft
assigned once, whatever the blocks and workers; an interrupted run resumes to the same."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from napari_avan.bulk.assign import iter_bulk_assign, plan_assign_job
from napari_avan.cli import main
from napari_avan.core.geometry import label_statistics
from napari_avan.io import read_volume
from napari_avan.types import AvanInputError


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bulk_assign") / "s.zarr"
    args = ["synth", "--out", str(out), "--shape", "24,320,320", "--seed", "11", "--polyadic"]
    assert main(args) == 0
    return out


def _inputs(sample: Path) -> list[str]:
    return [f"{sample}:image", "--clefts", f"{sample}:clefts",
            "--segmentation", f"{sample}:segmentation", "--device", "cpu", "--quiet"]  # fmt: skip


def _whole(sample: Path, out: Path, *extra: str) -> pd.DataFrame:
    assert main(["assign", *_inputs(sample), "--out", str(out), *extra]) == 0
    return pd.read_csv(out)


def _same(got: Path, want: pd.DataFrame) -> None:
    table = pd.read_csv(got)
    assert list(table.columns) == list(want.columns)
    pd.testing.assert_frame_equal(table.drop(columns="updated"), want.drop(columns="updated"))
    assert table["updated"].nunique() == 1  # one time stamp for the run


@pytest.mark.parametrize(("extra", "block"), [((), "4,64,64"), (("--polyadic",), "24,100,90")])
def test_bulk_assign_equals_the_whole_volume(sample, tmp_path, extra, block) -> None:
    want = _whole(sample, tmp_path / "whole.csv", *extra)
    clefts = read_volume(f"{sample}:clefts", lazy=False, role="clefts").data
    stats = label_statistics(clefts)
    assert len(want) >= len(stats.ids) > 5
    grid = [int(b) for b in block.split(",")]
    crossing = np.any(stats.bbox_begin // grid != (stats.bbox_end - 1) // grid, axis=1)
    assert crossing.any()  # some clefts lie in several blocks: each is assigned once
    out = tmp_path / "bulk.csv"
    assert main(["assign", *_inputs(sample), "--out", str(out), "--block", block, *extra]) == 0
    _same(out, want)
    assert not Path(f"{out}.bulk").exists()


def test_an_interrupted_assignment_resumes_to_the_same_table(sample, tmp_path) -> None:
    want = _whole(sample, tmp_path / "whole.csv")
    out = tmp_path / "bulk.csv"
    spec = (f"{sample}:image", f"{sample}:clefts", f"{sample}:segmentation")
    job = plan_assign_job(*spec, out, device="cpu", block=(4, 64, 64))
    steps = iter_bulk_assign(job)
    for step in steps:
        if step.phase == "assign" and step.done > step.total - 3:
            break
    steps.close()  # as if killed in the assign phase
    assert Path(f"{out}.bulk").is_dir() and not out.exists()
    with pytest.raises(AvanInputError, match="--resume"):
        list(iter_bulk_assign(job))
    other = plan_assign_job(*spec, out, device="cpu", block=(4, 64, 64), polyadic=True)
    with pytest.raises(AvanInputError, match="polyadic differ"):
        list(iter_bulk_assign(other, resume=True))
    result = list(iter_bulk_assign(job, resume=True))[-1].result
    assert result is not None and result.run.tasks_skipped > 0 and result.run.tasks_run > 0
    _same(out, want)


def test_bulk_assign_refuses_the_pruners(sample, tmp_path) -> None:
    code = main(["assign", *_inputs(sample), "--out", str(tmp_path / "e.csv"),
                        "--block", "8,64,64", "--method", "mask-pruner"])  # fmt: skip
    assert code == 2 and not (tmp_path / "e.csv").exists()


@pytest.mark.slow
def test_bulk_assign_on_a_local_dask_cluster(sample, tmp_path) -> None:
    want = _whole(sample, tmp_path / "whole.csv", "--polyadic")
    out = tmp_path / "bulk.csv"
    args = ["assign", *_inputs(sample), "--out", str(out), "--polyadic", "--workers", "2"]
    assert main([*args, "--block", "8,128,128"]) == 0
    _same(out, want)
