"""Tables: CSV/Parquet round trips, atomic writes, partner table validation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from napari_avan.io import check_partners, read_partners, read_table, write_table
from napari_avan.types import AvanInputError


def _edges() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "cleft_segid": np.array([1, 2], np.uint64),
            "presyn_segid": np.array([10, 2**63 + 5], np.uint64),
            "presyn_wt": [0.1 + 0.2, 1 / 3],
            "status": ["predicted", "accepted"],
        }
    )


@pytest.mark.parametrize("name", ["edges.csv", "edges.tsv", "edges.parquet"])
def test_round_trip(tmp_path: Path, name: str) -> None:
    df = _edges()
    path = write_table(df, tmp_path / name)
    back = read_table(path)
    pd.testing.assert_frame_equal(back, df, check_dtype=name.endswith(".parquet"))
    assert back["presyn_segid"].tolist() == df["presyn_segid"].tolist()
    assert back["presyn_wt"].tolist() == df["presyn_wt"].tolist()  # floats exact


def test_write_refuses_overwrite(tmp_path: Path) -> None:
    path = write_table(_edges(), tmp_path / "e.csv")
    before = path.read_text()
    with pytest.raises(AvanInputError, match=r"e\.csv already exists.*--overwrite"):
        write_table(_edges().head(1), path)
    assert path.read_text() == before
    write_table(_edges().head(1), path, overwrite=True)
    assert len(read_table(path)) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.csv"]


def test_table_errors(tmp_path: Path) -> None:
    with pytest.raises(AvanInputError, match="does not exist"):
        read_table(tmp_path / "missing.csv")
    odd = tmp_path / "t.xlsx"
    odd.write_text("x")
    with pytest.raises(AvanInputError, match=r"unknown table format .*\.csv, \.tsv or \.parquet"):
        read_table(odd)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(AvanInputError, match="is empty"):
        read_table(empty)


def test_parquet_without_pyarrow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "pyarrow" else real(name, *a)
    )
    with pytest.raises(AvanInputError, match="needs pyarrow: pip install pyarrow, or use CSV"):
        write_table(_edges(), tmp_path / "e.parquet")


def test_read_partners(tmp_path: Path) -> None:
    path = tmp_path / "partners.csv"
    path.write_text("cleft_id,pre_id,post_id,note\n1,23,22,a\n1,23,26,b\n2,5,7,c\n")
    df = read_partners(path)
    assert list(df.columns) == ["cleft_id", "pre_id", "post_id", "note"]
    assert all(df[c].dtype == np.uint64 for c in ("cleft_id", "pre_id", "post_id"))
    assert df["post_id"].tolist() == [22, 26, 7]
    header_only = tmp_path / "none.csv"
    header_only.write_text("cleft_id,pre_id,post_id\n")
    assert len(read_partners(header_only)) == 0
    # integral floats are ids too
    floats = check_partners(pd.DataFrame({"cleft_id": [1.0], "pre_id": [2.0], "post_id": [3.0]}))
    assert floats.to_numpy().tolist() == [[1, 2, 3]]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("cleft,pre_id\n1,2\n", r"lacks column\(s\) cleft_id, post_id"),
        ("cleft_id,pre_id,post_id\n1,2.5,3\n", r"pre_id must be integer ids, found 2.5 in row 1"),
        (
            "cleft_id,pre_id,post_id\n1,2,3\n1,x,3\n",
            r"pre_id must be integer ids, found 'x' in row 2",
        ),
        ("cleft_id,pre_id,post_id\n1,2,\n", r"post_id must be integer ids, found nan in row 1"),
        ("cleft_id,pre_id,post_id\n-1,2,3\n", r"cleft_id must be >= 0 .*found -1 in row 1"),
    ],
)
def test_read_partners_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "p.csv"
    path.write_text(text)
    with pytest.raises(AvanInputError, match=message):
        read_partners(path)
