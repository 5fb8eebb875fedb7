"""Tables: CSV (and Parquet when pyarrow is installed), written atomically."""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from napari_avan.core.files import atomic_path
from napari_avan.types import PARTNER_COLUMNS, AvanInputError

if TYPE_CHECKING:
    import pandas as pd

_CSV = (".csv", ".txt")
_TSV = (".tsv",)
_PARQUET = (".parquet", ".pq")


def _table_kind(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in _CSV:
        return "csv"
    if suffix in _TSV:
        return "tsv"
    if suffix in _PARQUET:
        if importlib.util.find_spec("pyarrow") is None:
            raise AvanInputError(
                f"{path} is Parquet, which needs pyarrow: pip install pyarrow, or use CSV"
            )
        return "parquet"
    raise AvanInputError(f"unknown table format of {path}: use .csv, .tsv or .parquet")


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV/TSV table, or Parquet when pyarrow is importable.

    Raises:
        AvanInputError: the file is missing, has an unknown suffix, or cannot be parsed.
    """
    import pandas as pd

    path = Path(path).expanduser()
    if not path.is_file():
        raise AvanInputError(f"table {path} does not exist: check the path")
    kind = _table_kind(path)
    try:
        if kind == "parquet":
            return pd.read_parquet(path)
        return pd.read_csv(path, sep="\t" if kind == "tsv" else ",")
    except pd.errors.EmptyDataError:
        raise AvanInputError(f"table {path} is empty: it needs at least a header row") from None
    except (OSError, ValueError, pd.errors.ParserError) as err:
        raise AvanInputError(f"cannot read table {path}: {err}") from err


def write_table(df: pd.DataFrame, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write ``df`` without its index as CSV/TSV (or Parquet by suffix), atomically.

    The table goes to a temporary sibling, is flushed to disk (fsync) and renamed over
    ``path`` (:func:`os.replace`), so readers never see half a table.

    Raises:
        AvanInputError: ``path`` exists and ``overwrite`` is False, unknown suffix, or
            an OS error (nothing is left behind).
    """
    path = Path(path).expanduser()
    write_tables({path: df}, overwrite=overwrite)
    return path


def write_tables(tables: Mapping[Path, pd.DataFrame], *, overwrite: bool = False) -> None:
    """Write several tables (path -> table) atomically: all are written before any lands.

    Raises:
        AvanInputError: as :func:`write_table`; then none of the tables is written.
    """
    kinds = {Path(path).expanduser(): _table_kind(Path(path)) for path in tables}
    with contextlib.ExitStack() as stack:
        for (path, kind), df in zip(kinds.items(), tables.values(), strict=True):
            tmp = stack.enter_context(atomic_path(path, overwrite=overwrite))
            if kind == "parquet":
                df.to_parquet(tmp, index=False)
            else:
                df.to_csv(tmp, index=False, sep="\t" if kind == "tsv" else ",")


def _shown(value: object) -> str:
    if isinstance(value, np.generic):
        value = value.item()
    return repr(value) if isinstance(value, str) else str(value)


def check_partners(df: pd.DataFrame, source: str = "partner table") -> pd.DataFrame:
    """Validate a partner table and return a copy whose id columns are ``uint64``.

    Columns ``cleft_id, pre_id, post_id`` must exist and hold non-negative integers
    (integral floats such as ``3.0`` are accepted); other columns are kept as they are.

    Raises:
        AvanInputError: naming missing columns, the first bad value and its row, or
            repeated (cleft_id, pre_id, post_id) rows.
    """
    import pandas as pd

    missing = [c for c in PARTNER_COLUMNS if c not in df.columns]
    if missing:
        raise AvanInputError(
            f"{source} lacks column(s) {', '.join(missing)}: a partner table has columns "
            f"{','.join(PARTNER_COLUMNS)} (one row per pre->post pair)"
        )
    out = df.copy()
    for column in PARTNER_COLUMNS:
        values = pd.to_numeric(df[column], errors="coerce")
        numbers = values.to_numpy(dtype=np.float64, na_value=np.nan)
        bad = ~np.isfinite(numbers) | (numbers != np.round(numbers))
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise AvanInputError(
                f"{source}: {column} must be integer ids, found {_shown(df[column].iloc[row])} "
                f"in row {row + 1}"
            )
        negative = numbers < 0
        if negative.any():
            row = int(np.flatnonzero(negative)[0])
            raise AvanInputError(
                f"{source}: {column} must be >= 0 (0 = background), found "
                f"{_shown(df[column].iloc[row])} in row {row + 1}"
            )
        if pd.api.types.is_integer_dtype(values.dtype):
            out[column] = values.to_numpy().astype(np.uint64)
        else:
            out[column] = numbers.astype(np.uint64)
    repeated = out.duplicated(list(PARTNER_COLUMNS), keep="first").to_numpy()
    if repeated.any():
        row = int(np.flatnonzero(repeated)[0])
        cleft, pre, post = (int(out[c].iloc[row]) for c in PARTNER_COLUMNS)
        raise AvanInputError(
            f"{source}: {int(repeated.sum())} duplicate row(s), the first is row {row + 1} "
            f"(cleft {cleft}, {pre}->{post}): each pre->post pair must appear once; remove "
            "the repeats"
        )
    return out


def read_partners(path: str | Path) -> pd.DataFrame:
    """Read a partner table (``cleft_id, pre_id, post_id``; docs/architecture.md, partner table).

    Returns:
        The table with id columns as ``uint64`` (unsigned, like the label volumes);
        extra columns are kept.

    Raises:
        AvanInputError: missing columns, non-integer or negative ids.
    """
    path = Path(path).expanduser()
    return check_partners(read_table(path), str(path))
