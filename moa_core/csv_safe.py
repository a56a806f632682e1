"""Spreadsheet-safe CSV: the one place every CSV the app writes goes through.

Model output, questions, labels and comments end up in CSV cells; a spreadsheet opening
the file runs any cell that starts with ``=``, ``+``, ``-`` or ``@`` as a formula (tab and
carriage return lead there too). The OWASP rule: such a text cell gets a leading single
quote, which spreadsheets show as text and do not evaluate. Only text is touched, so
negative numbers stored as numbers stay numbers; JSONL and Parquet stay byte-faithful.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from typing import IO, Any

import pandas as pd

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> Any:
    """`value`, with a leading ``'`` when it is text a spreadsheet would run as a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def _is_text(values: pd.Series | pd.Index) -> bool:
    types = pd.api.types
    return not (
        types.is_numeric_dtype(values)
        or types.is_bool_dtype(values)
        or types.is_datetime64_any_dtype(values)
        or types.is_timedelta64_dtype(values)
    )


def _safe_index(index: pd.Index) -> pd.Index:
    if isinstance(index, pd.MultiIndex):
        tuples = [tuple(safe_cell(v) for v in t) for t in index]
        return pd.MultiIndex.from_tuples(tuples, names=[safe_cell(n) for n in index.names])
    out = index.map(safe_cell) if _is_text(index) else index.copy()
    out.name = safe_cell(index.name)
    return out


def safe_frame(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of `df` whose text cells, column names and index labels are formula-safe.

    Numeric, boolean and date/time columns are left as they are.
    """
    out = df.copy()
    for i, (_, col) in enumerate(out.items()):
        if _is_text(col):
            # A categorical column would need new categories; as text it writes the same.
            dtype = object if isinstance(col.dtype, pd.CategoricalDtype) else col.dtype
            out.isetitem(i, pd.Series([safe_cell(v) for v in col], index=col.index, dtype=dtype).array)
    out.columns = _safe_index(out.columns)
    out.index = _safe_index(out.index)
    return out


def frame_csv(df: pd.DataFrame, index: bool = False) -> bytes:
    """`df` as formula-safe UTF-8 CSV bytes (for download buttons)."""
    return safe_frame(df).to_csv(index=index).encode("utf-8")


def write_rows(f: IO[str], rows: Iterable[Iterable[Any]]) -> None:
    """Write rows (the header first) to an open text file as formula-safe CSV."""
    writer = csv.writer(f)
    for row in rows:
        writer.writerow([safe_cell(v) for v in row])


__all__ = ["FORMULA_STARTS", "frame_csv", "safe_cell", "safe_frame", "write_rows"]
