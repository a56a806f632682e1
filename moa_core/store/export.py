"""Dump the whole store to CSV or JSON Lines: one file per table, streamed row by row.

CSV cells are spreadsheet-safe (`moa_core.csv_safe`); JSON Lines keep every value as stored.
"""

from __future__ import annotations

import json
from itertools import chain
from pathlib import Path
from typing import Any

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


__all__ = ["FORMATS", "TABLES", "export_all"]
