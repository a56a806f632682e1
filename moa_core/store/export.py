"""Dump the whole store to CSV or JSON Lines (one file per table, streamed row by row), and
write derived datasets (preference pairs, rated responses) as JSON Lines or Parquet.

CSV cells are spreadsheet-safe (`moa_core.csv_safe`); JSON Lines keep every value as stored.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import JSON, Engine, Table, select
from sqlalchemy.exc import SQLAlchemyError

from moa_core.csv_safe import write_rows
from moa_core.store.db import StoreError, safe_url
from moa_core.store.models import Generation, Rating, Run, Vote, table_of
from moa_core.store.util import one_line

TABLES: dict[str, Table] = {
    "runs": table_of(Run),
    "generations": table_of(Generation),
    "ratings": table_of(Rating),
    "votes": table_of(Vote),
}
FORMATS = ("csv", "jsonl")


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def export_all(engine: Engine, out_dir: str | Path, fmt: str = "csv") -> list[Path]:
    """Write runs, generations, ratings and votes to `out_dir`; returns the four paths.

    In CSV, JSON columns (history, config, params, tags, meta) hold their JSON text.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    try:
        with engine.connect() as conn:
            for name, table in TABLES.items():
                path = out / f"{name}.{fmt}"
                cols = [c.name for c in table.c]
                json_cols = {c.name for c in table.c if isinstance(c.type, JSON)}
                # yield_per streams, so a large store is not held in memory at once.
                rows = conn.execution_options(yield_per=500).execute(select(table).order_by(*table.primary_key))
                with path.open("w", encoding="utf-8", newline="") as f:
                    if fmt == "csv":
                        values = (
                            [_dump(row[c]) if c in json_cols and row[c] is not None else row[c] for c in cols]
                            for row in rows.mappings()
                        )
                        write_rows(f, chain([cols], values))
                    else:
                        for row in rows.mappings():
                            f.write(_dump(dict(row)) + "\n")
                paths.append(path)
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot export {safe_url(engine)}: {one_line(exc)}") from exc
    return paths


DATASET_FORMATS = ("jsonl", "parquet")


def _plain(value: Any) -> Any:
    """numpy / pandas scalars and arrays as JSON values; NaN and NaT as null."""
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if value is pd.NaT:
        return None
    return value


def write_dataset(df: pd.DataFrame, path: str | Path, fmt: str) -> Path:
    """Write ``df`` to ``path`` as JSON Lines or Parquet, all or nothing.

    The file is written next to its destination and renamed into place, so a failure
    (disk full, an unserialisable value) leaves no half-written file behind. List columns
    stay lists in both formats; in Parquet a list column that is empty in every row is
    typed as a list of strings rather than of nulls.
    """
    if fmt not in DATASET_FORMATS:
        raise ValueError(f"format must be one of {', '.join(DATASET_FORMATS)}, got {fmt!r}")
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        if fmt == "jsonl":
            with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
                for row in df.to_dict(orient="records"):
                    f.write(json.dumps({k: _plain(v) for k, v in row.items()}, ensure_ascii=False) + "\n")
        else:
            os.close(fd)
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.Table.from_pandas(df, preserve_index=False)
            for i, field in enumerate(table.schema):
                if pa.types.is_list(field.type) and pa.types.is_null(field.type.value_type):
                    table = table.set_column(i, field.name, table.column(i).cast(pa.list_(pa.string())))
            pq.write_table(table, tmp)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dest


__all__ = ["DATASET_FORMATS", "FORMATS", "TABLES", "export_all", "write_dataset"]
