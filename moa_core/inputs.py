"""Text and JSON-shaped values that come from a user, checked where they come in.

Everything downstream (the store's drivers, litellm, Streamlit's protobuf messages, CSV
exports) assumes valid Unicode text and JSON-compatible values. This module is where that
is made true for question files, config files, typed questions and command-line
arguments, with a one-line reason that names the place, instead of a traceback later.

Lone surrogates (U+D800-U+DFFF outside a pair) are refused, not replaced: they come from a
JSON/YAML escape such as ``"\\ud800"`` or from command-line bytes that are not UTF-8
(Python maps those to U+DC80-U+DCFF), neither is text anyone meant, and silently changing
a question would make the stored run differ from what was asked.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

MAX_QUESTION_CHARS = 100_000
# JSON/YAML from a user nests a few levels (a config is 4 deep); the bound keeps the
# recursive encoders downstream (json.dumps in the store, pydantic) far from Python's
# recursion limit.
MAX_DEPTH = 64
# Values visited, counting shared YAML aliases once per use, so an alias bomb
# ("billion laughs") is refused after a bounded walk instead of expanding later.
MAX_VALUES = 100_000
# Python refuses int() of longer digit strings (CVE-2020-10735); a number that long in a
# config or question file is a mistake either way.
MAX_INT_DIGITS = 4300


class InputError(ValueError):
    """Input that cannot be used: `reason` is one line, `path` where in a parsed value
    (``turns[1]``, ``layers[0].proposers[0].label``; empty for the whole input)."""

    def __init__(self, reason: str, path: str = "") -> None:
        self.reason = reason
        self.path = path
        super().__init__(f"{path}: {reason}" if path else reason)


def _hex(ch: str) -> str:
    return f"U+{ord(ch):04X}"


def surrogate_problem(text: str) -> str | None:
    """Why `text` is not valid Unicode text, or None when it is."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        ch = text[err.start]
        hint = " (a byte that is not UTF-8?)" if "\udc80" <= ch <= "\udcff" else ""
        return f"contains an unpaired surrogate {_hex(ch)} at character {err.start + 1}, which is not text{hint}"
    return None


def printable(text: str) -> str:
    """`text` on one line: control characters (newlines included) shown as escapes."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() or ch == " " else repr(ch)[1:-1] for ch in text)


def user_path(text: str) -> Path:
    """A path typed by a user, with ``~`` expanded when it can be: ``~nosuchuser/x`` stays
    as typed (and is then "not found") instead of raising RuntimeError."""
    try:
        return Path(text).expanduser()
    except (RuntimeError, ValueError):  # ValueError: a NUL byte in `~\x00` (getpwnam refuses it)
        return Path(text)


def _path(parent: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{parent}[{key}]"
    return f"{parent}.{key}" if parent else key


def check_value(value: Any, *, max_depth: int = MAX_DEPTH, max_values: int = MAX_VALUES) -> None:
    """Raise InputError for the first reason `value` (parsed JSON or YAML) is not plain
    JSON data, naming where it is.

    Plain JSON data: dicts with string keys, lists, valid text, finite numbers, booleans,
    null; at most `max_depth` levels and `max_values` values. Walked iteratively, so the
    check itself cannot hit the recursion limit.
    """
    stack: list[tuple[str, Any, int]] = [("", value, 0)]
    seen = 0
    while stack:
        path, v, depth = stack.pop()
        seen += 1
        if seen > max_values:
            raise InputError(f"more than {max_values:,} values (YAML aliases count each time they are used)")
        if isinstance(v, str):
            if problem := surrogate_problem(v):
                raise InputError(problem, path)
        elif isinstance(v, bool) or v is None:
            continue
        elif isinstance(v, int):
            # str() of such a number would itself raise; its bit length says as much.
            if abs(v).bit_length() > MAX_INT_DIGITS * math.log2(10):
                raise InputError(f"a number with more than {MAX_INT_DIGITS:,} digits", path)
        elif isinstance(v, float):
            if not math.isfinite(v):
                raise InputError(f"{v!r} is not a number JSON allows (NaN and infinities are refused)", path)
        elif isinstance(v, dict | list | tuple):
            if depth >= max_depth:
                # The full path of a deep value is as long as the nesting; its start says where.
                top = path.split(".", 1)[0].split("[", 1)[0]
                raise InputError(f"nested more than {max_depth} levels deep", top)
            items: list[tuple[Any, Any]] = list(v.items()) if isinstance(v, dict) else list(enumerate(v))
            for key, child in reversed(items):
                if isinstance(v, dict):
                    if not isinstance(key, str):
                        raise InputError(f"the key {repr(key)[:40]} is not text", path)
                    if problem := surrogate_problem(key):
                        raise InputError(f"the key {key[:40]!r} {problem}", path)
                stack.append((_path(path, key), child, depth + 1))
        else:
            # YAML dates, timestamps, binary and sets: litellm and the store take JSON only.
            raise InputError(f"a {type(v).__name__} value is not allowed here (quote it to make it text)", path)


def _parse_int(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_INT_DIGITS:
        raise InputError(f"a number with {len(digits.lstrip('-')):,} digits is too long")
    return int(digits)


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise InputError(f"the number {text[:20]}{'…' if len(text) > 20 else ''} is too large")
    return value


def _refuse_constant(name: str) -> Any:
    raise InputError(f"{name} is not a number JSON allows")


def loads_json(text: str) -> Any:
    """`json.loads` for user input: NaN/Infinity, out-of-range and overlong numbers, deep
    nesting, lone surrogates and other non-JSON data raise InputError (one line).

    Syntax errors still raise `json.JSONDecodeError`, so callers keep reporting its line
    and column; catch it before InputError (both are ValueErrors).
    """
    try:
        value = json.loads(text, parse_int=_parse_int, parse_float=_parse_float, parse_constant=_refuse_constant)
    except RecursionError:
        raise InputError(f"nested more than {MAX_DEPTH} levels deep") from None
    check_value(value)
    return value


__all__ = [
    "MAX_DEPTH",
    "MAX_INT_DIGITS",
    "MAX_QUESTION_CHARS",
    "MAX_VALUES",
    "InputError",
    "check_value",
    "loads_json",
    "printable",
    "surrogate_problem",
    "user_path",
]
