"""Question-set loading: formats, auto-detection, errors with line numbers, bundled set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from moa_core.evaluation.questions import (
    BUNDLED_DIR,
    QuestionSet,
    QuestionSetError,
    list_bundled_sets,
    load_bundled_set,
    load_question_set,
    load_question_set_text,
)

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data"


def jsonl(*rows: object) -> str:
    return "\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n"


def error_of(text: str | bytes, **kw: object) -> QuestionSetError:
    with pytest.raises(QuestionSetError) as exc:
        load_question_set_text(text, "upload", **kw)  # type: ignore[arg-type]
    return exc.value


# ---------------------------------------------------------------- formats


def test_mt_bench_format() -> None:
    qs = load_question_set_text(
        jsonl(
            {"question_id": 81, "category": "writing", "turns": ["Write a poem.", "Shorter."]},
            {
                "question_id": 101,
                "category": "reasoning",
                "turns": ["Q?", "Q2?"],
                "reference": ["Second place.", "Uncertain."],
            },
        ),
        "mt",
    )
    assert qs.format == "mt_bench" and qs.name == "mt" and qs.source is None
    first, second = qs.questions
    assert first.id == "81" and first.category == "writing"
    assert first.turns == ["Write a poem.", "Shorter."] and first.text == "Write a poem."
    assert first.reference is None
    assert second.reference == "Second place."
    assert second.turn_references == ["Second place.", "Uncertain."]


def test_alpaca_eval_format() -> None:
    qs = load_question_set_text(
        jsonl(
            {"instruction": "List three fruits.", "dataset": "helpful_base", "generator": "gpt4", "output": "apple"},
            {"instruction": "Say hi."},
        ),
        "alpaca",
    )
    assert qs.format == "alpaca_eval"
    assert [q.id for q in qs.questions] == ["1", "2"]
    assert [q.category for q in qs.questions] == ["helpful_base", "general"]
    assert qs.questions[0].turns == ["List three fruits."]
    assert qs.questions[0].reference is None


def test_plain_format_with_optional_fields() -> None:
    qs = load_question_set_text(
        jsonl(
            {"question": "Capital of France?", "category": "factual", "reference": "Paris", "id": "f1"},
            {"question": "What is 6*7?", "reference": 42},
            {"question": "Tell a joke."},
        ),
        "plain",
    )
    assert qs.format == "plain"
    assert [q.id for q in qs.questions] == ["f1", "2", "3"]
    assert [q.reference for q in qs.questions] == ["Paris", "42", None]
    assert [q.category for q in qs.questions] == ["factual", "general", "general"]
    assert qs.categories() == ["factual", "general"]
    assert qs.get("f1").text == "Capital of France?"
    assert len(qs) == 3


def test_detection_is_per_file_and_blank_lines_and_crlf_are_fine() -> None:
    text = "\r\n\r\n" + jsonl({"question": "A?"}, "", "   ", {"question": "B?"}).replace("\n", "\r\n")
    qs = load_question_set_text(text, "x")
    assert [q.text for q in qs.questions] == ["A?", "B?"]


def test_bytes_upload_with_bom_and_unicode() -> None:
    data = "\ufeff".encode() + jsonl({"question": "Qu'est-ce que «café» ?"}).encode("utf-8")
    assert load_question_set_text(data, "u").questions[0].text == "Qu'est-ce que «café» ?"


def test_line_separator_inside_a_json_string_is_not_a_line_break() -> None:
    # json.dumps(ensure_ascii=False) writes U+2028 raw; it must not split the line.
    text = json.dumps({"question": "one\u2028two"}, ensure_ascii=False) + "\n"
    assert load_question_set_text(text, "x").questions[0].text == "one\u2028two"


def test_load_from_path_uses_stem_as_name(tmp_path: Path) -> None:
    p = tmp_path / "my-set.jsonl"
    p.write_text(jsonl({"question": "Why?"}), encoding="utf-8")
    qs = load_question_set(p)
    assert qs.name == "my-set" and qs.source == str(p)
    assert load_question_set(p, name="Other").name == "Other"


def test_fingerprint_depends_on_content_only() -> None:
    a = load_question_set_text(jsonl({"question": "A?"}), "one")
    b = load_question_set_text(jsonl({"question": "A?"}), "two")
    c = load_question_set_text(jsonl({"question": "B?"}), "one")
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("bad_line", "fragment"),
    [
        ('{"question": "x"', "invalid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"prompt": "x"}', "missing field"),
        ('{"question": 5}', "wrong type: 'question' must be a string"),
        ('{"question": "   "}', "empty question"),
        ('{"question": "x", "category": 3}', "wrong type: 'category'"),
        ('{"question": "x", "reference": {"a": 1}}', "wrong type: 'reference'"),
        ('{"question": "x", "id": true}', "wrong type: 'id'"),
        ('{"instruction": "x"}', "mixed formats"),
    ],
)
def test_malformed_line_names_line_number_and_reason(bad_line: str, fragment: str) -> None:
    err = error_of(jsonl({"question": "ok"}, {"question": "fine"}, bad_line))
    assert err.line == 3
    assert "line 3" in str(err) and fragment in str(err)
    assert "nothing was imported" in str(err)


@pytest.mark.parametrize(
    ("bad_line", "fragment"),
    [
        ('{"question_id": 1, "turns": "not a list"}', "'turns' must be a list of strings"),
        ('{"question_id": 1, "turns": []}', "empty question"),
        ('{"question_id": 1, "turns": ["ok", 2]}', "turn 2 must be a string"),
        ('{"question_id": 1, "turns": ["ok", " "]}', "turn 2 is blank"),
        ('{"turns": ["no id"]}', "missing field 'question_id'"),
        ('{"question_id": 1.5, "turns": ["x"]}', "wrong type: 'question_id'"),
    ],
)
def test_mt_bench_line_errors(bad_line: str, fragment: str) -> None:
    err = error_of(jsonl({"question_id": 0, "turns": ["fine"]}, bad_line))
    assert err.line == 2 and fragment in str(err)


def test_missing_marker_after_format_known_names_the_expected_field() -> None:
    err = error_of(jsonl({"question_id": 1, "turns": ["x"]}, {"question_id": 2}))
    assert "line 2" in str(err) and "'turns'" in str(err) and "MT-Bench" in str(err)


def test_all_errors_reported_at_once_and_nothing_imported() -> None:
    err = error_of(jsonl({"question": "ok"}, "{oops", {"question": ""}, {"question": "ok 2"}, "7"))
    assert [e.line for e in err.errors] == [2, 3, 5]
    assert err.line == 2


def test_all_or_nothing_from_file(tmp_path: Path) -> None:
    p = tmp_path / "set.jsonl"
    p.write_text(jsonl(*({"question": f"Q{i}?"} for i in range(50)), "{broken"), encoding="utf-8")
    with pytest.raises(QuestionSetError, match="line 51: invalid JSON"):
        load_question_set(p)


def test_error_list_is_capped_in_the_message() -> None:
    err = error_of(jsonl(*["{bad"] * 25))
    assert len(err.errors) == 25
    assert "and 15 more problems" in str(err)


def test_not_utf8_is_a_clear_error(tmp_path: Path) -> None:
    p = tmp_path / "latin1.jsonl"
    p.write_bytes(jsonl({"question": "plain"}, '{"question": "café"}').encode("latin-1"))
    with pytest.raises(QuestionSetError, match=r"line 2: not UTF-8") as exc:
        load_question_set(p)
    assert exc.value.line == 2
    with pytest.raises(QuestionSetError, match="not UTF-8"):
        load_question_set_text(p.read_bytes(), "upload")


@pytest.mark.parametrize("text", ["", "\n\n   \n", b""])
def test_empty_file(text: str | bytes) -> None:
    err = error_of(text)
    assert "empty file" in str(err) and err.line is None


def test_size_limit(tmp_path: Path) -> None:
    text = jsonl(*({"question": "x" * 100} for _ in range(20)))
    with pytest.raises(QuestionSetError, match="file too large"):
        load_question_set_text(text, "big", max_bytes=1000)
    with pytest.raises(QuestionSetError, match="file too large"):
        load_question_set_text(text.encode(), "big", max_bytes=1000)
    p = tmp_path / "big.jsonl"
    p.write_text(text, encoding="utf-8")
    with pytest.raises(QuestionSetError, match="file too large"):
        load_question_set(p, max_bytes=1000)
    assert len(load_question_set(p, max_bytes=10_000)) == 20


def test_duplicate_ids_are_named() -> None:
    err = error_of(
        jsonl(
            {"question_id": 7, "turns": ["a"]},
            {"question_id": 8, "turns": ["b"]},
            {"question_id": "7", "turns": ["c"]},
            {"question_id": 8, "turns": ["d"]},
        )
    )
    msg = str(err)
    assert "duplicate id '7' (lines 1, 3)" in msg and "duplicate id '8' (lines 2, 4)" in msg


def test_duplicate_of_a_position_id_explains_itself() -> None:
    err = error_of(jsonl({"question": "no id"}, {"question": "b", "id": "1"}))
    assert "duplicate id '1'" in str(err) and "no 'id' on line(s) 1" in str(err)


def test_json_array_file_gets_a_hint() -> None:
    err = error_of('[{"question": "a"},\n {"question": "b"}]\n')
    assert "one object per line" in str(err)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(QuestionSetError, match="no such file"):
        load_question_set(tmp_path / "nope.jsonl")


def test_error_is_a_value_error() -> None:
    assert issubclass(QuestionSetError, ValueError)


# ---------------------------------------------------------------- bundled and shared sets


def test_bundled_set_loads_with_about_thirty_questions() -> None:
    assert "moa-studio-30" in list_bundled_sets()
    qs = load_bundled_set("moa-studio-30")
    assert isinstance(qs, QuestionSet) and qs.format == "plain"
    assert 25 <= len(qs) <= 35
    with_ref = [q for q in qs.questions if q.reference]
    assert 7 <= len(with_ref) <= 15
    # References are meant to be checkable without a judge: short, one or two words.
    assert all(len(q.reference.split()) <= 2 for q in with_ref)  # type: ignore[union-attr]
    assert len(qs.categories()) >= 8
    # Short enough for tiny local models.
    assert max(len(q.text) for q in qs.questions) <= 200


def test_every_bundled_file_loads() -> None:
    names = list_bundled_sets()
    assert names == sorted(p.stem for p in BUNDLED_DIR.glob("*.jsonl"))
    for name in names:
        assert len(load_bundled_set(name)) > 0


def test_unknown_bundled_set_lists_available(tmp_path: Path) -> None:
    with pytest.raises(QuestionSetError, match="available: moa-studio-30"):
        load_bundled_set("../../etc/passwd")
    assert list_bundled_sets(tmp_path / "missing") == []


@pytest.mark.parametrize(
    ("filename", "categories"),
    [
        (
            "mt_bench_questions.jsonl",
            {"writing", "roleplay", "reasoning", "math", "coding", "extraction", "stem", "humanities"},
        ),
        (
            "vicuna_bench_questions.jsonl",
            {
                "generic",
                "knowledge",
                "roleplay",
                "common-sense",
                "fermi",
                "counterfactual",
                "coding",
                "math",
                "writing",
            },
        ),
    ],
)
def test_shared_fastchat_sets_load(filename: str, categories: set[str]) -> None:
    path = SHARED / filename
    if not path.is_file():
        pytest.skip(f"{path} not present (expects ../shared beside the clone)")
    qs = load_question_set(path)
    assert qs.format == "mt_bench" and len(qs) == 80
    assert set(qs.categories()) == categories
    assert len({q.id for q in qs.questions}) == 80
    if filename.startswith("mt_bench"):
        assert all(len(q.turns) == 2 for q in qs.questions)
        assert sum(q.reference is not None for q in qs.questions) >= 30
        assert qs.get("101").reference == "You are in second place."
