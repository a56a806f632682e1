"""Question sets from JSONL: MT-Bench, AlpacaEval and a plain format, auto-detected.

Formats (one JSON object per line; blank lines are ignored; unknown keys are ignored so
files exported with extra columns still load):

- MT-Bench:   ``question_id`` (int or str), ``turns`` (non-empty list of strings),
              ``category`` (optional), ``reference`` (optional, a string or one string
              per turn, as in FastChat's ``mt_bench/question.jsonl``).
- AlpacaEval: ``instruction`` (string), ``dataset`` (optional, used as the category),
              ``generator`` / ``output`` ignored. Ids are the 1-based position.
- plain:      ``question`` (string), ``category``, ``reference`` (string or number) and
              ``id`` (string or int) all optional. A missing id is the 1-based position.

The format is detected per line from its marker key (``turns``, ``instruction``,
``question``, in that priority order) and every line must agree with the first one, so a
file is one format. Loading is all-or-nothing: every line is checked, all problems are
reported together in one :class:`QuestionSetError`, and no partial set is ever returned.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from moa_core import settings
from moa_core.inputs import MAX_QUESTION_CHARS, InputError, loads_json, printable
from moa_core.vocab import digest

Format = Literal["mt_bench", "alpaca_eval", "plain"]

DEFAULT_MAX_BYTES = 5 * 1024 * 1024
DEFAULT_CATEGORY = "general"
BUNDLED_DIR = settings.QUESTIONS_DIR

FORMAT_LABELS: dict[Format, str] = {
    "mt_bench": "MT-Bench",
    "alpaca_eval": "AlpacaEval",
    "plain": "plain",
}
# Priority order matters only for lines carrying several marker keys, e.g. an MT-Bench
# export that also copied the first turn into "question".
_MARKERS: tuple[tuple[str, Format], ...] = (
    ("turns", "mt_bench"),
    ("instruction", "alpaca_eval"),
    ("question", "plain"),
)
# A message listing hundreds of broken lines helps nobody; the count says the rest.
_MAX_LISTED_ERRORS = 10


@dataclass(frozen=True)
class LineError:
    line: int | None
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}" if self.line is not None else self.reason


class QuestionSetError(ValueError):
    """A question set that cannot be loaded; the message names the line(s) and the reason.

    ``errors`` holds every problem found; ``line`` is the first offending line number
    (1-based) or None for whole-file problems (size, encoding of an unknown line, empty).
    """

    def __init__(self, name: str, errors: list[LineError]):
        self.name = name
        self.errors = errors
        self.line = errors[0].line if errors else None
        shown = "; ".join(str(e) for e in errors[:_MAX_LISTED_ERRORS])
        more = len(errors) - _MAX_LISTED_ERRORS
        if more > 0:
            shown += f"; and {more} more problem{'s' if more > 1 else ''}"
        # Line-level problems are where a user might wonder whether the good lines got in.
        nothing = " (nothing was imported)" if any(e.line for e in errors) else ""
        # printable: a name or key from the file may hold a newline; the message is one line.
        super().__init__(printable(f"{name}: {shown}{nothing}"))


class Question(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str = Field(min_length=1)
    category: str = DEFAULT_CATEGORY
    turns: list[str] = Field(min_length=1, description="the first turn is the question")
    reference: str | None = Field(default=None, description="reference answer to turn 1")
    turn_references: list[str] = Field(
        default_factory=list,
        description="MT-Bench per-turn references, kept so multi-turn runs lose nothing",
    )

    @field_validator("turns")
    @classmethod
    def _non_empty_turns(cls, v: list[str]) -> list[str]:
        if any(not t.strip() for t in v):
            raise ValueError("turns must not be empty")
        return v

    @property
    def text(self) -> str:
        return self.turns[0]


class QuestionSet(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    source: str | None = Field(default=None, description="file path; None for uploads")
    format: Format
    questions: list[Question] = Field(min_length=1)

    def __len__(self) -> int:
        return len(self.questions)

    def categories(self) -> list[str]:
        """Categories in order of first appearance."""
        return list(dict.fromkeys(q.category for q in self.questions))

    def get(self, question_id: str) -> Question:
        for q in self.questions:
            if q.id == question_id:
                return q
        raise KeyError(question_id)

    def fingerprint(self) -> str:
        """Stable hash of the content (not the name or path): lets a resumed run check
        that it is still answering the same questions."""
        # Spaced separators and unescaped text: the bytes stored fingerprints were made from.
        return digest(json.dumps([q.model_dump() for q in self.questions], sort_keys=True, ensure_ascii=False))


# ---------------------------------------------------------------- line parsing


class _Bad(Exception):
    """One line's problem; collected, never escapes this module."""


def _type_name(v: Any) -> str:
    # JSON vocabulary, since the user wrote JSON, not Python.
    if v is None:
        return "null"
    names = {dict: "object", list: "array", str: "string", bool: "boolean"}
    return names.get(type(v), "number" if isinstance(v, int | float) else type(v).__name__)


def _detect(obj: dict[str, Any]) -> Format | None:
    for key, fmt in _MARKERS:
        if key in obj:
            return fmt
    return None


def _text(obj: dict[str, Any], key: str) -> str:
    v = obj[key]
    if not isinstance(v, str):
        raise _Bad(f"wrong type: '{key}' must be a string, got {_type_name(v)}")
    if not v.strip():
        raise _Bad(f"empty question: '{key}' is blank")
    _check_length(v, f"'{key}'")
    return v


def _check_length(text: str, what: str) -> None:
    # The engine refuses such a question at run time; refusing the file here keeps an
    # evaluation from failing item by item after it started.
    n = len(text.strip())
    if n > MAX_QUESTION_CHARS:
        raise _Bad(f"question too long: {what} is {n:,} characters; the limit is {MAX_QUESTION_CHARS:,}")


def _optional_label(obj: dict[str, Any], key: str, default: str) -> str:
    v = obj.get(key)
    if v is None:
        return default
    if not isinstance(v, str):
        raise _Bad(f"wrong type: '{key}' must be a string, got {_type_name(v)}")
    return v.strip() or default


def _id(obj: dict[str, Any], key: str, position: int, required: bool) -> str:
    if key not in obj or obj[key] is None:
        if required:
            raise _Bad(f"missing field '{key}'")
        return str(position)
    v = obj[key]
    # bool is an int subclass; "id": true is a mistake, not the id "True".
    if isinstance(v, bool) or not isinstance(v, int | str):
        raise _Bad(f"wrong type: '{key}' must be a string or integer, got {_type_name(v)}")
    s = str(v).strip()
    if not s:
        raise _Bad(f"empty id: '{key}' is blank")
    return s


def _scalar_reference(v: Any, key: str = "reference") -> str | None:
    if v is None:
        return None
    # Short numeric references ("reference": 42) are natural in hand-written files.
    if isinstance(v, int | float) and not isinstance(v, bool):
        return str(v)
    if not isinstance(v, str):
        raise _Bad(f"wrong type: '{key}' must be a string or number, got {_type_name(v)}")
    return v.strip() or None


def _mt_bench(obj: dict[str, Any], position: int) -> Question:
    turns = obj["turns"]
    if not isinstance(turns, list):
        raise _Bad(f"wrong type: 'turns' must be a list of strings, got {_type_name(turns)}")
    if not turns:
        raise _Bad("empty question: 'turns' is an empty list")
    for i, t in enumerate(turns, start=1):
        if not isinstance(t, str):
            raise _Bad(f"wrong type: turn {i} must be a string, got {_type_name(t)}")
        if not t.strip():
            raise _Bad(f"empty question: turn {i} is blank")
        _check_length(t, f"turn {i}")
    ref = obj.get("reference")
    turn_refs: list[str] = []
    if isinstance(ref, list):
        if not all(isinstance(r, str) for r in ref):
            raise _Bad("wrong type: 'reference' must be a string or a list of strings")
        turn_refs = list(ref)
        first = turn_refs[0].strip() if turn_refs else ""
        reference = first or None
    else:
        reference = _scalar_reference(ref)
    return Question(
        id=_id(obj, "question_id", position, required=True),
        category=_optional_label(obj, "category", DEFAULT_CATEGORY),
        turns=turns,
        reference=reference,
        turn_references=turn_refs,
    )


def _alpaca_eval(obj: dict[str, Any], position: int) -> Question:
    return Question(
        id=str(position),
        category=_optional_label(obj, "dataset", DEFAULT_CATEGORY),
        turns=[_text(obj, "instruction")],
    )


def _plain(obj: dict[str, Any], position: int) -> Question:
    return Question(
        id=_id(obj, "id", position, required=False),
        category=_optional_label(obj, "category", DEFAULT_CATEGORY),
        turns=[_text(obj, "question")],
        reference=_scalar_reference(obj.get("reference")),
    )


_PARSERS = {"mt_bench": _mt_bench, "alpaca_eval": _alpaca_eval, "plain": _plain}


def _lines(text: str) -> list[str]:
    # Not str.splitlines(): it also splits on U+2028/U+0085 etc., which JSON allows
    # unescaped inside strings, so a valid line would be cut in two.
    return [ln.rstrip("\r") for ln in text.split("\n")]


def _parse(text: str, name: str, source: str | None) -> QuestionSet:
    errors: list[LineError] = []
    questions: list[Question] = []
    lines_of: list[int] = []
    file_format: Format | None = None
    format_line = 0
    auto_id_lines: set[int] = set()

    for lineno, raw in enumerate(_lines(text), start=1):
        if not raw.strip():
            continue
        try:
            try:
                obj = loads_json(raw)
            except json.JSONDecodeError as e:
                hint = (
                    " (a JSON array file must be converted to one object per line)"
                    if (lineno == 1 and raw.lstrip().startswith("["))
                    else ""
                )
                raise _Bad(f"invalid JSON: {e.msg} at column {e.colno}{hint}") from None
            except InputError as e:
                raise _Bad(f"'{e.path}': {e.reason}" if e.path else f"invalid JSON: {e.reason}") from None
            if not isinstance(obj, dict):
                raise _Bad(f"expected a JSON object, got {_type_name(obj)}")
            fmt = _detect(obj)
            if fmt is None:
                expected = (
                    f"'{next(k for k, f in _MARKERS if f == file_format)}' "
                    f"({FORMAT_LABELS[file_format]} format, from line {format_line})"
                    if file_format
                    else "one of 'turns' (MT-Bench), 'instruction' (AlpacaEval), 'question' (plain)"
                )
                raise _Bad(f"missing field: expected {expected}")
            if file_format is None:
                file_format, format_line = fmt, lineno
            elif fmt != file_format:
                raise _Bad(
                    f"mixed formats: this line is {FORMAT_LABELS[fmt]} but line {format_line} "
                    f"is {FORMAT_LABELS[file_format]}"
                )
            questions.append(_PARSERS[fmt](obj, len(questions) + 1))
            lines_of.append(lineno)
            if fmt == "alpaca_eval" or (fmt == "plain" and obj.get("id") is None):
                auto_id_lines.add(lineno)
        except _Bad as e:
            errors.append(LineError(lineno, str(e)))
        except ValidationError as e:
            # The checks above should pre-empt the model's own; this keeps a gap between
            # them a line error instead of a traceback.
            errors.append(LineError(lineno, f"invalid question: {e.errors()[0]['msg']}"))

    if not errors and not questions:
        errors.append(LineError(None, "empty file: no questions found"))
    seen: dict[str, int] = {}
    dupes: dict[str, list[int]] = {}
    for q, ln in zip(questions, lines_of, strict=True):
        if q.id in seen:
            dupes.setdefault(q.id, [seen[q.id]]).append(ln)
        else:
            seen[q.id] = ln
    for qid, lns in dupes.items():
        # A position-based id clashing with an explicit one is otherwise baffling.
        auto = [ln for ln in lns if ln in auto_id_lines]
        note = f"; no 'id' on line(s) {', '.join(map(str, auto))}, so the position is used" if auto else ""
        errors.append(LineError(lns[1], f"duplicate id {qid!r} (lines {', '.join(map(str, lns))}{note})"))
    if errors:
        errors.sort(key=lambda e: (e.line is not None, e.line or 0))
        raise QuestionSetError(name, errors)
    assert file_format is not None
    return QuestionSet(name=name, source=source, format=file_format, questions=questions)


def _decode(data: bytes, name: str, max_bytes: int) -> str:
    if len(data) > max_bytes:
        raise QuestionSetError(name, [LineError(None, _too_big(len(data), max_bytes))])
    try:
        # utf-8-sig: Windows editors often prepend a BOM, which json.loads rejects.
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        reason = f"not UTF-8 text (byte 0x{data[e.start]:02x}); save the file as UTF-8"
        raise QuestionSetError(name, [LineError(line, reason)]) from None


def _too_big(size: int, max_bytes: int) -> str:
    return f"file too large: {size / 1e6:.1f} MB exceeds the {max_bytes / 1e6:.1f} MB limit"


# ---------------------------------------------------------------- public API


def load_question_set_text(text: str | bytes, name: str, max_bytes: int = DEFAULT_MAX_BYTES) -> QuestionSet:
    """Parse an uploaded question set. Bytes are decoded as UTF-8 (BOM allowed), so an
    upload widget's raw content can be passed directly."""
    if isinstance(text, str):
        # surrogatepass: a lone surrogate is reported by its line below, not here.
        data_len = len(text.encode("utf-8", "surrogatepass"))
        if data_len > max_bytes:
            raise QuestionSetError(name, [LineError(None, _too_big(data_len, max_bytes))])
        text = text.removeprefix("\ufeff")
    else:
        text = _decode(text, name, max_bytes)
    return _parse(text, name, source=None)


def load_question_set(path: str | Path, name: str | None = None, max_bytes: int = DEFAULT_MAX_BYTES) -> QuestionSet:
    """Load a JSONL question set; ``name`` defaults to the file stem."""
    p = Path(path)
    name = name or p.stem
    if not p.is_file():
        raise QuestionSetError(name, [LineError(None, f"no such file: {p}")])
    # Check the size before reading so a huge file is refused without loading it.
    try:
        size = p.stat().st_size
        if size > max_bytes:
            raise QuestionSetError(name, [LineError(None, _too_big(size, max_bytes))])
        data = p.read_bytes()
    except OSError as err:
        raise QuestionSetError(
            name, [LineError(None, f"cannot read {p}: {err.strerror or type(err).__name__}")]
        ) from None
    text = _decode(data, name, max_bytes)
    return _parse(text, name, source=str(p))


def list_bundled_sets(directory: Path = BUNDLED_DIR) -> list[str]:
    """Names (file stems) of the bundled ``*.jsonl`` sets, sorted."""
    if not directory.is_dir():
        return []
    return sorted(p.stem for p in directory.glob("*.jsonl") if p.is_file())


def load_bundled_set(name: str, directory: Path = BUNDLED_DIR) -> QuestionSet:
    # Only listed names are accepted, so a name from a URL or widget can't escape the dir.
    available = list_bundled_sets(directory)
    if name not in available:
        listed = ", ".join(available) or "none"
        reason = f"no bundled question set {name!r}; available: {listed}"
        raise QuestionSetError(name, [LineError(None, reason)])
    return load_question_set(directory / f"{name}.jsonl", name=name)
