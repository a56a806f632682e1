"""Bad input: every case gives a clear message where the user is (engine error, CLI
line, page error) and writes nothing half-way (row counts checked).

Browser-side cases (the Playground's config import, the Evaluate page's question upload,
a 200,000-character question typed into the page) are in test_browser_reliability.py.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid
from datetime import date
from pathlib import Path

import pytest
import yaml
from streamlit.testing.v1 import AppTest

from moa_core import cli
from moa_core.config import AgentSpec, LayerSpec, MoAConfig
from moa_core.engine import RunInputError, run_moa
from moa_core.evaluation.questions import QuestionSetError, load_question_set
from moa_core.events import DraftDone
from moa_core.store import StoreError, dispose_engines, get_engine, open_db
from tests.conftest import md_text
from tests.reliability.conftest import assert_store_matches_events, record, rows

ROOT = Path(__file__).resolve().parents[2]
BAD_PG = "postgresql+psycopg://moauser:pw-hunter2-secret@127.0.0.1:1/moa"


def _agent(server, name: str, **opts: object) -> AgentSpec:
    suffix = ",".join(f"{k}={v}" for k, v in opts.items())
    return AgentSpec(
        model=f"openai/fake-{name}" + (f"@{suffix}" if suffix else ""), label=name, api_base=server.url, max_tokens=32
    )


def _cfg(proposers: list[AgentSpec], agg: AgentSpec, **kw) -> MoAConfig:
    return MoAConfig(
        name="bad-input",
        layers=[LayerSpec(proposers=proposers)],
        aggregator=agg,
        timeout=kw.pop("timeout", 10),
        num_retries=kw.pop("num_retries", 0),
        **kw,
    )


def _count(engine, table: str) -> int:
    return rows(engine, f"select count(*) from {table}")[0][0]


def _served(server, agent: AgentSpec) -> int:
    return len(server.stamps[agent.model.split("/", 1)[1]])


# ---------------------------------------------------------------- questions


@pytest.mark.parametrize("question", ["", "   ", "\n\t  \n"], ids=["empty", "spaces", "whitespace"])
async def test_empty_question_is_refused_before_anything_runs(fault_server, rel_db, question):
    p = _agent(fault_server, f"p-{uuid.uuid4().hex[:6]}")
    with pytest.raises(RunInputError, match="The question is empty"):
        await record(rel_db, run_moa(question, _cfg([p], p)))
    assert _count(rel_db, "run") == 0 and _count(rel_db, "generation") == 0
    assert _served(fault_server, p) == 0, "no model was called"


async def test_200k_character_question_is_refused_with_the_limit(fault_server, rel_db):
    p = _agent(fault_server, f"p-{uuid.uuid4().hex[:6]}")
    with pytest.raises(RunInputError, match=r"200,000 characters long; the limit is 100,000"):
        await record(rel_db, run_moa("x" * 200_000, _cfg([p], p)))
    assert _count(rel_db, "run") == 0 and _served(fault_server, p) == 0


def test_cli_refuses_empty_and_huge_questions(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    cfg = tmp_path / "mock.yaml"
    cfg.write_text(yaml.safe_dump(_mock_config()))
    for question, words in (("   ", "The question is empty"), ("y" * 200_000, "the limit is 100,000")):
        assert cli.main(["ask", question, "--config", str(cfg)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("moa: ") and words in err and "\n" not in err
    assert not (tmp_path / "cli.db").exists() or _count(open_db(f"sqlite:///{tmp_path / 'cli.db'}"), "run") == 0


@pytest.mark.parametrize(
    ("question", "words"),
    [
        ("caf\ud800?", "U+D800 at character 4, which is not text"),
        # what Python makes of a command-line byte that is not UTF-8 (surrogateescape)
        ("caf\udcff?", "U+DCFF at character 4, which is not text (a byte that is not UTF-8?)"),
    ],
    ids=["escape", "non-utf8-byte"],
)
def test_cli_ask_refuses_a_question_that_is_not_text(tmp_path, monkeypatch, capsys, question, words):
    """It used to run the models and crash in the recorder (UnicodeEncodeError)."""
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    cfg = tmp_path / "mock.yaml"
    cfg.write_text(yaml.safe_dump(_mock_config()))
    assert cli.main(["ask", question, "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert err == f"moa: argument question contains an unpaired surrogate {words}\n"
    assert not (tmp_path / "cli.db").exists()


def test_cli_refuses_non_utf8_bytes_in_any_argument(tmp_path):
    """The real thing: bytes from a non-UTF-8 terminal, in a separate process."""
    db = tmp_path / "eval.db"
    argv = [
        b"eval",
        b"--name",
        b"run-\xff",
        b"--contender",
        b"openai/fake-x",
        b"--database",
        f"sqlite:///{db}".encode(),
    ]
    done = subprocess.run(
        [sys.executable.encode(), b"-m", b"moa_core.cli", *argv], cwd=ROOT, capture_output=True, timeout=120
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.decode() == (
        "moa: argument --name contains an unpaired surrogate U+DCFF at character 5, which is not text "
        "(a byte that is not UTF-8?)\n"
    )
    assert not db.exists()


async def test_engine_refuses_a_question_that_is_not_text(fault_server, rel_db):
    """The Playground, Arena and Challenge pages validate through the engine."""
    p = _agent(fault_server, f"p-{uuid.uuid4().hex[:6]}")
    with pytest.raises(RunInputError, match=r"^The question contains an unpaired surrogate U\+D800 at character 2, "):
        await record(rel_db, run_moa("a\ud800b", _cfg([p], p)))
    assert _count(rel_db, "run") == 0 and _served(fault_server, p) == 0


@pytest.mark.parametrize("question", ["   ", "\n\t "], ids=["spaces", "whitespace"])
def test_playground_says_an_empty_question_is_empty(tmp_path, monkeypatch, question):
    db = f"sqlite:///{tmp_path / 'page.db'}"
    monkeypatch.setenv("DATABASE_URL", db)
    monkeypatch.setenv("MOA_SAVED_CONFIGS_DIR", str(tmp_path / "configs"))
    at = _page("1_Playground").run()
    at.chat_input[0].set_value(question).run()
    assert not at.exception
    assert [md_text(e.value) for e in at.error] == ["The question is empty: type a question first."]
    assert _count(open_db(db), "run") == 0
    dispose_engines(db)


def _mock_config(**agg: object) -> dict:
    agent = {"model": "openai/mock", "max_tokens": 16, "extra": {"mock_response": "fine"}}
    return {"name": "mock", "layers": [{"proposers": [agent]}], "aggregator": {**agent, **agg}, "num_retries": 0}


# ---------------------------------------------------------------- models and keys


async def test_unknown_model_is_a_marked_error_and_the_run_goes_on(fault_server, rel_db):
    ok = _agent(fault_server, f"ok-{uuid.uuid4().hex[:6]}")
    unknown = AgentSpec(model="nosuchprovider/imaginary-model", label="imaginary", max_tokens=16)
    events = await record(rel_db, run_moa("q?", _cfg([ok, unknown], _agent(fault_server, "agg"))))
    assert_store_matches_events(rel_db, events)
    bad = next(e for e in events if isinstance(e, DraftDone) and e.ref.label == "imaginary")
    assert "LLM Provider NOT provided" in bad.error and "nosuchprovider/imaginary-model" in bad.error
    assert events[-1].status == "done"


async def test_only_unknown_models_fail_the_run_with_one_message(rel_db):
    unknown = AgentSpec(model="imaginary-model-xyz", label="imaginary", max_tokens=16)
    events = await record(rel_db, run_moa("q?", _cfg([unknown], unknown)))
    assert_store_matches_events(rel_db, events)
    end = events[-1]
    assert end.status == "failed" and end.error.startswith("Every proposer of layer 1 failed (imaginary: ")
    assert "LLM Provider NOT provided" in end.error and "\n" not in end.error


def test_cli_unknown_local_model_is_refused_before_running(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    cfg = tmp_path / "unknown.yaml"
    data = _mock_config()
    data["layers"][0]["proposers"].append({"model": "local/does-not-exist"})
    cfg.write_text(yaml.safe_dump(data))
    assert cli.main(["ask", "hello?", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "moa: cannot run this config: unknown local model local/does-not-exist"
    assert not (tmp_path / "cli.db").exists()


async def test_wrong_provider_key_fails_with_the_providers_message(key_stub, rel_db, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong")
    agent = AgentSpec(model="openai/gpt-4o-mini", label="gpt", api_base=key_stub.url, max_tokens=16)
    events = await record(rel_db, run_moa("q?", _cfg([agent], agent, num_retries=1)))
    assert_store_matches_events(rel_db, events)
    end = events[-1]
    assert end.status == "failed" and "AuthenticationError" in end.error and "Incorrect API key" in end.error
    assert "sk-wrong" in key_stub.seen, "the key from the environment was the one sent"
    assert _count(rel_db, "generation") == 1, "no aggregator call after the only proposer failed"


# ---------------------------------------------------------------- config files (CLI)


CONFIG_CASES = {
    "yaml-syntax": (
        "bad.yaml",
        "name: x\nlayers: [\n  {proposers: [}\n",
        r"^moa: YAML syntax error at line \d+, column \d+: ",
    ),
    "json-syntax": ("bad.json", '{"name": "x", "layers": [}', r"^moa: JSON syntax error at line 1, column \d+: "),
    "schema": (
        "schema.yaml",
        yaml.safe_dump(
            {"name": "x", "layers": [{"proposers": [{"modle": "openai/x"}]}], "aggregator": {"model": "openai/x"}}
        ),
        r"^moa: invalid config: layers\.0\.proposers\.0\.model: required field is missing; "
        r"layers\.0\.proposers\.0\.modle: unknown field$",
    ),
    "temperature": (
        "hot.yaml",
        yaml.safe_dump({**_mock_config(temperature=7.5)}),
        r"^moa: invalid config: aggregator\.temperature: Input should be less than or equal to 2$",
    ),
    "not-utf8": ("latin1.yaml", "name: caf\xe9\n".encode("latin-1"), r"^moa: config file is not UTF-8 text: "),
    # These were tracebacks: RecursionError, PyYAML's ValueErrors, int conversion, a label
    # the store cannot encode, a date litellm and the store cannot serialise.
    "yaml-deep": ("deep.yaml", "name: x\nlayers: " + "[" * 5000 + "]" * 5000, r"^moa: invalid config: nested more "),
    "yaml-impossible-date": (
        "date.yaml",
        yaml.safe_dump(_mock_config()) + "description: 2024-13-01\n",
        r"^moa: YAML value error: month must be in 1\.\.12$",
    ),
    "yaml-5001-digits": (
        "digits.yaml",
        yaml.safe_dump(_mock_config()) + "num_retries: " + "9" * 5001 + "\n",
        r"^moa: YAML value error: a number with more than 4,300 digits$",
    ),
    "json-5001-digits": (
        "digits.json",
        json.dumps(_mock_config())[:-1] + ', "num_retries": ' + "9" * 5001 + "}",
        r"^moa: invalid config: a number with 5,001 digits is too long$",
    ),
    "json-lone-surrogate": (
        "surrogate.json",
        json.dumps({**_mock_config(), "aggregator": {**_mock_config()["aggregator"], "label": "agg\ud800"}}),
        r"^moa: invalid config: aggregator\.label: contains an unpaired surrogate U\+D800 at character 4, ",
    ),
    "yaml-date-in-extra": (
        "extra.yaml",
        yaml.safe_dump(_mock_config(extra={"since": date(2024, 1, 1)})),
        r"^moa: invalid config: aggregator\.extra\.since: a date value is not allowed here \(quote it to make it text\)$",
    ),
    "yaml-nan-in-extra": (
        "nan.yaml",
        yaml.safe_dump(_mock_config(extra={"top_p": float("nan")})),
        r"^moa: invalid config: aggregator\.extra\.top_p: nan is not a number JSON allows",
    ),
}


def test_cli_config_path_that_is_a_directory_gives_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    (tmp_path / "cfg.yaml").mkdir()
    assert cli.main(["ask", "hello?", "--config", str(tmp_path / "cfg.yaml")]) == 2
    assert capsys.readouterr().err.strip() == f"moa: cannot read config file {tmp_path / 'cfg.yaml'}: Is a directory"
    assert not (tmp_path / "cli.db").exists()


@pytest.mark.parametrize("case", list(CONFIG_CASES))
def test_cli_bad_config_file_gives_one_line_and_runs_nothing(tmp_path, monkeypatch, capsys, case):
    name, content, pattern = CONFIG_CASES[case]
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    assert cli.main(["ask", "hello?", "--config", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert re.match(pattern, err), err
    assert "\n" not in err and "Traceback" not in err
    assert not (tmp_path / "cli.db").exists(), "nothing is written for a config that cannot load"


# ---------------------------------------------------------------- question files


def _q(*lines: str) -> bytes:
    return "\n".join(lines).encode()


QUESTION_CASES = {
    "malformed-line": (b'{"question": "one?"}\n{"question": "two?"\n{"question": "three?"}\n', "line 2: invalid JSON"),
    "wrong-encoding": ('{"question": "caf\xe9?"}\n'.encode("latin-1"), "line 1: not UTF-8 text (byte 0xe9)"),
    "utf16": ('{"question": "hello?"}\n'.encode("utf-16"), "not UTF-8 text"),
    # Each of these was a traceback (RecursionError, ValueError, UnicodeEncodeError later in
    # planning) or was accepted and stored as "nan"/"inf"; the CLI exited 1 on a long question.
    "deep-nesting": (
        _q('{"question": "ok?"}', '{"question": "q?", "extra": ' + "[" * 100_000 + "]" * 100_000 + "}"),
        "line 2: invalid JSON: nested more than 64 levels deep",
    ),
    "nesting-past-the-bound": (
        _q('{"question": "q?", "extra": ' + "[" * 100 + "]" * 100 + "}"),
        "line 1: 'extra': nested more than 64 levels deep",
    ),
    "5001-digit-number": (
        _q('{"question": "q?", "reference": ' + "7" * 5001 + "}"),
        "line 1: invalid JSON: a number with 5,001 digits is too long",
    ),
    "lone-surrogate": (
        _q('{"question": "fine?"}', '{"question": "caf\\ud800?"}'),
        "line 2: 'question': contains an unpaired surrogate U+D800 at character 4, which is not text",
    ),
    "lone-surrogate-in-a-turn": (
        _q('{"question_id": 1, "turns": ["a?", "\\udc80"]}'),
        "line 1: 'turns[1]': contains an unpaired surrogate U+DC80",
    ),
    "question-over-the-limit": (
        _q('{"question": "short?"}', '{"question": "' + "x" * 100_001 + '"}'),
        "line 2: question too long: 'question' is 100,001 characters; the limit is 100,000",
    ),
    "turn-over-the-limit": (
        _q('{"question_id": 1, "turns": ["a?", "' + "y" * 150_000 + '"]}'),
        "line 1: question too long: turn 2 is 150,000 characters; the limit is 100,000",
    ),
    "nan-reference": (
        _q('{"question": "q?", "reference": NaN}'),
        "line 1: invalid JSON: NaN is not a number JSON allows",
    ),
    "infinity-reference": (
        _q('{"question": "q?", "reference": -Infinity}'),
        "line 1: invalid JSON: -Infinity is not a number JSON allows",
    ),
    "overflowing-reference": (
        _q('{"question": "q?", "reference": 1e400}'),
        "line 1: invalid JSON: the number 1e400 is too large",
    ),
}


@pytest.mark.parametrize("case", list(QUESTION_CASES))
def test_bad_question_file_is_refused_whole(tmp_path, monkeypatch, capsys, case):
    data, words = QUESTION_CASES[case]
    path = tmp_path / "qs.jsonl"
    path.write_bytes(data)
    with pytest.raises(QuestionSetError) as info:
        load_question_set(path)
    assert words in str(info.value)
    if case == "malformed-line":
        assert str(info.value).endswith("(nothing was imported)")
    # the same file through `moa eval`: one line, exit 2, no run stored
    db = f"sqlite:///{tmp_path / 'eval.db'}"
    rc = cli.main(
        [
            "eval",
            "--questions",
            str(path),
            "--contender",
            "openai/fake-x",
            "--contender",
            "openai/fake-y",
            "--database",
            db,
            "--no-report",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("moa: qs: ") and words in err and "\n" not in err
    assert _count(open_db(db), "run") == 0
    dispose_engines(db)


@pytest.mark.parametrize(
    "case", ["deep-nesting", "5001-digit-number", "lone-surrogate", "question-over-the-limit", "nan-reference"]
)
def test_evaluate_page_upload_of_a_bad_question_file_shows_one_error(tmp_path, monkeypatch, case):
    data, words = QUESTION_CASES[case]
    db = f"sqlite:///{tmp_path / 'page.db'}"
    monkeypatch.setenv("DATABASE_URL", db)
    monkeypatch.setenv("MOA_SAVED_CONFIGS_DIR", str(tmp_path / "configs"))
    at = _page("4_Evaluate").run()
    at.radio(key="ev_qsrc").set_value("Upload JSONL").run()
    at.file_uploader(key="ev_upload").set_value(("qs.jsonl", data, "application/json")).run()
    assert not at.exception, [e.value for e in at.exception]
    errors = [md_text(e.value) for e in at.error]
    assert len(errors) == 1 and errors[0].startswith("qs: ") and words in errors[0] and "\n" not in errors[0]
    assert not [b for b in at.button if b.key == "ev_run"], "nothing to run"
    assert _count(open_db(db), "run") == 0
    dispose_engines(db)


# ---------------------------------------------------------------- databases


PAGES = ["1_Playground", "2_Arena", "3_Analysis", "4_Evaluate", "5_Challenge", "6_History"]


def _page(name: str) -> AppTest:
    return AppTest.from_file(str(ROOT / "pages" / f"{name}.py"), default_timeout=60)


# "page_name", not "page": a test asking for a fixture named "page" counts as a browser test.
@pytest.mark.parametrize("page_name", PAGES)
def test_database_url_that_does_not_connect_shows_a_clear_error(tmp_path, monkeypatch, page_name):
    monkeypatch.setenv("DATABASE_URL", BAD_PG)
    monkeypatch.setenv("MOA_SAVED_CONFIGS_DIR", str(tmp_path / "configs"))
    at = _page(page_name).run()
    assert not at.exception, [e.value for e in at.exception]
    errors = [md_text(e.value) for e in at.error]
    assert errors and errors[0].startswith(
        "The database cannot be used: cannot open database postgresql+psycopg://moauser:***@127.0.0.1:1/moa: "
    )
    assert errors[0].endswith('connection to server at "127.0.0.1", port 1 failed: Connection refused'), errors[0]
    page_text = " ".join(str(getattr(el, "value", "")) for el in at.main) + " ".join(errors)
    assert "pw-hunter2-secret" not in page_text, "the password must never be shown"


def _read_only_url(tmp_path: Path) -> tuple[str, str]:
    path = tmp_path / "ro.db"
    rw = f"sqlite:///{path}"
    open_db(rw)
    dispose_engines(rw)
    # Tests run as root, which ignores file modes: SQLite's own read-only mode instead.
    return rw, f"sqlite:///file:{path}?mode=ro&uri=true"


def test_read_only_database_file_shows_a_clear_error_in_the_app(tmp_path, monkeypatch):
    _, ro = _read_only_url(tmp_path)
    monkeypatch.setenv("DATABASE_URL", ro)
    monkeypatch.setenv("MOA_SAVED_CONFIGS_DIR", str(tmp_path / "configs"))
    at = _page("1_Playground").run()
    assert not at.exception
    assert [md_text(e.value) for e in at.error] == [
        f"The database cannot be used: cannot open database sqlite:///file%3A{tmp_path}/ro.db?mode=ro&uri=true: "
        "attempt to write a readonly database"
    ]
    assert at.info and "DATABASE_URL" in at.info[0].value
    dispose_engines(ro)


async def test_read_only_database_stops_the_run_before_any_model_call(fault_server, tmp_path):
    """A database that turns read-only after start-up (so the start-up probe passed): the
    first write fails, the run stops there, no model is called, nothing is half-written."""
    rw, ro = _read_only_url(tmp_path)
    engine = get_engine(ro)  # opened without the start-up write probe
    p = _agent(fault_server, f"p-{uuid.uuid4().hex[:6]}")
    with pytest.raises(StoreError, match=r"^cannot record run .*attempt to write a readonly database"):
        await record(engine, run_moa("q?", _cfg([p], p)))
    assert _served(fault_server, p) == 0
    check = open_db(rw)
    assert _count(check, "run") == 0 and _count(check, "generation") == 0
    dispose_engines(ro)
    dispose_engines(rw)


def test_cli_ask_with_a_database_that_does_not_connect_says_so_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", BAD_PG)
    cfg = tmp_path / "mock.yaml"
    cfg.write_text(yaml.safe_dump(_mock_config()))
    rc = cli.main(["ask", "hello?", "--config", str(cfg)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("moa: cannot open database postgresql+psycopg://moauser:***@")
    assert "pw-hunter2-secret" not in err


def test_cli_ask_with_a_read_only_database_says_so_in_one_line(tmp_path, monkeypatch, capsys):
    _, ro = _read_only_url(tmp_path)
    monkeypatch.setenv("DATABASE_URL", ro)
    cfg = tmp_path / "mock.yaml"
    cfg.write_text(yaml.safe_dump(_mock_config()))
    try:
        rc = cli.main(["ask", "hello?", "--config", str(cfg)])
    finally:
        dispose_engines(ro)
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("moa: cannot open database") and "readonly database" in err


def test_cli_export_with_a_database_that_does_not_connect_says_so_in_one_line(tmp_path, capsys):
    rc = cli.main(["export", "--database", BAD_PG, "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("moa: cannot open database") and "pw-hunter2-secret" not in err
    assert not (tmp_path / "out").exists()


def test_cli_eval_with_a_database_that_does_not_connect_says_so_in_one_line(tmp_path, capsys):
    rc = cli.main(["eval", "--contender", "openai/fake-x", "--contender", "openai/fake-y", "--database", BAD_PG])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("moa: cannot open database postgresql+psycopg://moauser:***@")
    assert "\n" not in err and "pw-hunter2-secret" not in err


def test_config_json_roundtrip_of_mock_is_valid():
    # guards the helper the CLI cases share: a config that does load
    from moa_core.config import config_from_dict

    assert config_from_dict(json.loads(json.dumps(_mock_config()))).aggregator.max_tokens == 16
