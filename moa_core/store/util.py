"""Small helpers shared by the store modules: secret stripping, time coercion, messages."""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import CursorResult
from sqlalchemy.exc import DBAPIError

from moa_core.config import SECRET_PARAM_NAMES

# Exact names (case-insensitive) plus suffixes: catches provider-specific spellings such
# as `anthropic_api_key` or `aws_secret_access_key` without touching `max_tokens`.
_SECRET_NAMES = frozenset(SECRET_PARAM_NAMES) | {"authorization", "api-key", "x-api-key", "apikey"}
_SECRET_SUFFIXES = ("_key", "_token", "_secret", "_password", "_secret_access_key")
_URL_PASSWORD = re.compile(r"(://[^:/@\s]*):[^@\s]*@")


def is_secret_name(name: str) -> bool:
    n = name.lower()
    return n in _SECRET_NAMES or n.endswith(_SECRET_SUFFIXES)


def strip_secrets(value: Any) -> Any:
    """Copy of `value` with secret-looking keys removed at every depth."""
    if isinstance(value, dict):
        return {k: strip_secrets(v) for k, v in value.items() if not (isinstance(k, str) and is_secret_name(k))}
    if isinstance(value, (list, tuple)):
        return [strip_secrets(v) for v in value]
    return value


def redact_url(url: str) -> str:
    """Fallback for URLs SQLAlchemy cannot parse: still never show a password."""
    return _URL_PASSWORD.sub(r"\1:***@", url)


def one_line(exc: BaseException, secret: str | None = None) -> str:
    """First meaningful line of an error; driver errors unwrapped so SQL and params stay out."""
    inner: BaseException = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    text = str(inner).strip()
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), type(inner).__name__)
    if secret:
        line = line.replace(secret, "***")
    return line


def inserted_id(result: CursorResult[Any]) -> int:
    """Primary key of the row a single-row INSERT just wrote."""
    key = result.inserted_primary_key
    if key is None:  # SQLAlchemy gives None only when the INSERT wrote no row
        raise RuntimeError("the INSERT returned no primary key")
    return int(key[0])


TimeLike = float | int | datetime | date | None


def to_unix(value: TimeLike, *, end_of_day: bool = False) -> float | None:
    """Unix seconds from a number, datetime (naive = local time) or date (local midnight).

    A bare date used as an upper bound means "through that day", so `end_of_day` moves it
    to the next midnight.
    """
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    to_py = getattr(value, "to_pydatetime", None)  # pandas.Timestamp without importing pandas here
    if to_py is not None:
        value = to_py()
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, date):
        day = value + timedelta(days=1) if end_of_day else value
        return datetime.combine(day, time()).timestamp()
    raise TypeError(f"expected a number, datetime or date, got {type(value).__name__}")
