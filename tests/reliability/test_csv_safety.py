"""Spreadsheet-safe CSV on every path the app writes it: `moa export`, the Analysis page's
download buttons, History's and the Evaluate page's. A text cell starting with = + - @,
tab or carriage return gets a leading ' (OWASP); numbers stay numbers; JSONL stays exact.

The tables' own toolbar export (written by the browser from raw cells) is switched off in
.streamlit/config.toml, checked here too.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import tomllib
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import insert
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
from streamlit.testing.v1 import AppTest

from moa_core import cli
from moa_core.csv_safe import FORMULA_STARTS, frame_csv, safe_cell, safe_frame
from moa_core.evaluation.contenders import moa_contender, single_contender
from moa_core.evaluation.runner import run_evaluation
from moa_core.store import add_rating, add_vote, dispose_engines, open_db
from moa_core.store.models import Generation, Run
from moa_core.ui import layout
from tests.conftest import fake_agent, fake_config
from tests.test_eval_runner import EvalFake, plan

ROOT = Path(__file__).resolve().parents[2]
# One of each dangerous start, as model output, questions, labels and comments carry them.
FORMULAS = ['=HYPERLINK("http://x.test","y")', "+cmd|' /C calc'!A0", "-2+3", "@SUM(A1:A9)", "\t=1", "\r=2"]


def _cells(data: bytes | str) -> list[list[str]]:
    text = data.decode("utf-8") if isinstance(data, bytes) else data
    return list(csv.reader(io.StringIO(text, newline="")))


def _unsafe(rows: list[list[str]]) -> list[str]:
    return [cell for row in rows for cell in row if cell.startswith(FORMULA_STARTS)]


# ---------------------------------------------------------------- the helper


@pytest.mark.parametrize("text", FORMULAS)
def test_a_formula_cell_gets_a_quote_and_plain_text_does_not(text):
    assert safe_cell(text) == "'" + text
    assert safe_cell("plain " + text) == "plain " + text
    assert safe_cell("'" + text) == "'" + text, "already quoted text is left alone"


def test_numbers_stay_numbers_and_text_columns_index_and_headers_are_safe():
    df = pd.DataFrame(
        {"=name": ["-1", "=A1", "ok", None], "score": [-1, 2, -3, 4], "ratio": [-0.5, 0.1, float("nan"), 1.0]},
        index=pd.Index(["@i", "j", "-k", "l"], name="+idx"),
    )
    out = safe_frame(df)
    assert list(out["'=name"])[:3] == ["'-1", "'=A1", "ok"] and pd.isna(out["'=name"].iloc[3])
    assert out["score"].tolist() == [-1, 2, -3, 4] and out["score"].dtype == df["score"].dtype
    assert out["ratio"].dtype == df["ratio"].dtype
    assert list(out.index) == ["'@i", "j", "'-k", "l"] and out.index.name == "'+idx"
    rows = _cells(frame_csv(df, index=True))
    assert rows[0] == ["'+idx", "'=name", "score", "ratio"]
    assert rows[1] == ["'@i", "'-1", "-1", "-0.5"], "a negative number is written as a number"
    assert rows[3] == ["'-k", "ok", "-3", ""]
    assert df.columns[0] == "=name", "the caller's frame is not changed"


# ---------------------------------------------------------------- moa export


@pytest.fixture
def formula_db(tmp_path):
    """A store whose text columns hold formula-like values, and a negative cost."""
    url = f"sqlite:///{tmp_path / 'formula.db'}"
    engine = open_db(url)
    with engine.begin() as c:
        c.execute(
            insert(Run.__table__).values(
                id="r1",
                created_at=1.0,
                kind="playground",
                question=FORMULAS[0],
                history=[],
                config={"name": FORMULAS[1]},
                preset=FORMULAS[2],
                status="done",
                final_text=FORMULAS[3],
                cost=-0.25,
                wall_time=1.5,
            )
        )
        gen = c.execute(
            insert(Generation.__table__).values(
                run_id="r1",
                call_id="c1",
                role="proposer",
                layer=0,
                slot=0,
                model="openai/x",
                label=FORMULAS[4],
                text=FORMULAS[5],
                params={},
                started_at=1.0,
                status="done",
            )
        ).inserted_primary_key[0]
        other = c.execute(
            insert(Generation.__table__).values(
                run_id="r1",
                call_id="c2",
                role="aggregator",
                layer=1,
                slot=0,
                model="openai/y",
                label="y",
                text="fine",
                params={},
                started_at=1.0,
                status="done",
            )
        ).inserted_primary_key[0]
    add_rating(engine, gen, 3, comment="=1+1", rater="@alice")
    add_vote(engine, gen, other, "left", "-bob", run_id="r1")
    yield url
    dispose_engines(url)


def test_cli_export_csv_is_spreadsheet_safe(formula_db, tmp_path, capsys):
    out = tmp_path / "out"
    assert cli.main(["export", "--database", formula_db, "--out", str(out)]) == 0
    tables = {p.stem: _cells(p.read_bytes()) for p in out.glob("*.csv")}
    assert set(tables) == {"runs", "generations", "ratings", "votes"}
    for name, rows in tables.items():
        _, *body = rows
        assert body, name
        unsafe = [c for row in body for c in row if c.startswith(FORMULA_STARTS) and c != "-0.25"]
        assert not unsafe, (name, unsafe)
    runs = dict(zip(tables["runs"][0], tables["runs"][1], strict=True))
    assert runs["question"] == "'" + FORMULAS[0] and runs["final_text"] == "'" + FORMULAS[3]
    assert runs["preset"] == "'" + FORMULAS[2]
    assert runs["cost"] == "-0.25", "a negative number stays a number"
    gens = dict(zip(tables["generations"][0], tables["generations"][1], strict=True))
    assert gens["label"] == "'" + FORMULAS[4] and gens["text"] == "'" + FORMULAS[5]
    ratings = dict(zip(tables["ratings"][0], tables["ratings"][1], strict=True))
    assert (ratings["comment"], ratings["rater"]) == ("'=1+1", "'@alice")
    votes = dict(zip(tables["votes"][0], tables["votes"][1], strict=True))
    assert votes["rater"] == "'-bob"


def test_cli_export_jsonl_stays_exact(formula_db, tmp_path):
    out = tmp_path / "out"
    assert cli.main(["export", "--database", formula_db, "--out", str(out), "--format", "jsonl"]) == 0
    run = json.loads((out / "runs.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert (run["question"], run["preset"], run["final_text"], run["cost"]) == (
        FORMULAS[0],
        FORMULAS[2],
        FORMULAS[3],
        -0.25,
    )
    assert run["config"] == {"name": FORMULAS[1]}
    gen = json.loads((out / "generations.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert (gen["label"], gen["text"]) == (FORMULAS[4], FORMULAS[5])


# ---------------------------------------------------------------- download buttons


@pytest.fixture
def downloads(monkeypatch) -> dict[str, bytes]:
    """Every file a download button hands to Streamlit's media store, by file name."""
    got: dict[str, bytes] = {}
    original = MemoryMediaFileStorage.load_and_get_id

    def spy(self, path_or_data, mimetype, kind, filename=None):
        if filename and isinstance(path_or_data, bytes):
            got[filename] = path_or_data
        return original(self, path_or_data, mimetype, kind, filename)

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", spy)
    return got


@pytest.fixture
def page_db(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'pages.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("MOA_SAVED_CONFIGS_DIR", str(tmp_path / "configs"))
    layout._store.clear()
    yield url
    layout._store.clear()
    dispose_engines(url)


def _page(name: str) -> AppTest:
    return AppTest.from_file(str(ROOT / "pages" / name), default_timeout=120)


def test_analysis_page_downloads_are_spreadsheet_safe(formula_db, monkeypatch, downloads):
    monkeypatch.setenv("DATABASE_URL", formula_db)
    layout._store.clear()
    at = _page("3_Analysis.py").run()
    layout._store.clear()
    assert not at.exception
    expected = {
        "leaderboard.csv",
        "win_rates.csv",
        "battle_counts.csv",
        "ratings.csv",
        "quality_cost_latency.csv",
        "style_control_comparison.csv",
        "raters.csv",
        "position_bias.csv",
    }
    csvs = {name: data for name, data in downloads.items() if name.endswith(".csv")}
    assert set(csvs) == expected, "every CSV download button is checked"
    for name, data in csvs.items():
        rows = _cells(data)
        assert not _unsafe(rows), (name, _unsafe(rows))
    # the contender named by a formula-like label is in the leaderboard and the matrices, quoted
    assert any("'" + FORMULAS[4] in row for row in _cells(downloads["leaderboard.csv"]))
    assert "'" + FORMULAS[4] in _cells(downloads["win_rates.csv"])[0], "column headers too"
    assert ["'" + FORMULAS[4]] == [r[0] for r in _cells(downloads["win_rates.csv"])[1:] if r[0].startswith("'")]
    assert any("'=1+1" in row and "'@alice" in row for row in _cells(downloads["ratings.csv"]))


def test_history_download_is_spreadsheet_safe(formula_db, monkeypatch, downloads):
    monkeypatch.setenv("DATABASE_URL", formula_db)
    layout._store.clear()
    at = _page("6_History.py").run()
    layout._store.clear()
    assert not at.exception
    rows = _cells(downloads["runs.csv"])
    assert not _unsafe(rows), _unsafe(rows)
    record = dict(zip(rows[0], rows[1], strict=True))
    assert record["question"] == "'" + FORMULAS[0] and record["preset"] == "'" + FORMULAS[2]
    assert record["run id"] == "r1"


@pytest.fixture(scope="module")
def eval_server():
    with EvalFake() as s:
        yield s


def test_evaluate_page_downloads_are_spreadsheet_safe(page_db, eval_server, downloads):
    cfg = fake_config(eval_server, [fake_agent(eval_server, "p1", tokens=4)], aggregator=fake_agent(eval_server, "agg"))
    solo = fake_agent(eval_server, "solo", tokens=3)
    contenders = [moa_contender(cfg, name="=moa"), single_contender(solo, "-solo", timeout=10, num_retries=0)]
    asyncio.run(run_evaluation(open_db(page_db), plan(eval_server, n=2, contenders=contenders), concurrency=2))
    at = _page("4_Evaluate.py").run()
    assert not at.exception
    assert {"win_rates.csv", "per_question.csv"} <= set(downloads)
    for name in ("win_rates.csv", "per_question.csv"):
        rows = _cells(downloads[name])
        assert not _unsafe(rows), (name, _unsafe(rows))
        assert any("'=moa" in row for row in rows) and any("'-solo" in row for row in rows), name


# ---------------------------------------------------------------- the tables' own export


def test_the_tables_own_csv_export_is_switched_off():
    """Streamlit writes that CSV in the browser from the raw cells, unquoted; every table
    that can be downloaded has a spreadsheet-safe button instead."""
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text(encoding="utf-8"))
    assert config["client"]["disableDataExport"] is True


@pytest.mark.browser
def test_history_in_the_browser_offers_only_the_safe_download(formula_db, tmp_path, page):
    """The real app and config: the table's toolbar has no CSV export of its own, and the
    page's download button saves quoted cells."""
    from tests.browser_support import open_app, start_app

    server = start_app(tmp_path / "app", db_url=formula_db)
    try:
        open_app(page, server, "/History")
        page.get_by_test_id("stDataFrame").hover()
        fullscreen = page.get_by_role("button", name="Fullscreen")
        fullscreen.wait_for()  # the toolbar is showing
        assert page.get_by_role("button", name="Download as CSV").count() == 0
        with page.expect_download() as info:
            page.get_by_role("button", name="Download CSV").click()
        rows = _cells(Path(info.value.path()).read_bytes())
        assert not _unsafe(rows), _unsafe(rows)
        assert dict(zip(rows[0], rows[1], strict=True))["question"] == "'" + FORMULAS[0]
    finally:
        server.stop()
