"""Bad input: every case gives a clear message where the user is (engine error, CLI
line, page error) and writes nothing half-way (row counts checked).

Browser-side cases (the Playground's config import, the Evaluate page's question upload,
a 200,000-character question typed into the page) are in test_browser_reliability.py.
"""

from __future__ import annotations

import json
import re
import uuid
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
}


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


QUESTION_CASES = {
    "malformed-line": (b'{"question": "one?"}\n{"question": "two?"\n{"question": "three?"}\n', "line 2: invalid JSON"),
    "wrong-encoding": ('{"question": "caf\xe9?"}\n'.encode("latin-1"), "line 1: not UTF-8 text (byte 0xe9)"),
    "utf16": ('{"question": "hello?"}\n'.encode("utf-16"), "not UTF-8 text"),
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


# ---------------------------------------------------------------- databases


PAGES = ["1_Playground", "2_Arena", "3_Analysis", "4_Evaluate", "5_Challenge", "6_History"]


def _page(name: str) -> AppTest:
    return AppTest.from_file(str(ROOT / "pages" / f"{name}.py"), default_timeout=60)


@pytest.mark.parametrize("page", PAGES)
def test_database_url_that_does_not_connect_shows_a_clear_error(tmp_path, monkeypatch, page):
    monkeypatch.setenv("DATABASE_URL", BAD_PG)
    monkeypatch.setenv("MOA_SAVED_CONFIGS_DIR", str(tmp_path / "configs"))
    at = _page(page).run()
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
