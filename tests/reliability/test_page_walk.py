"""Every page, on databases a user can end up with, shows no exception box.

Three databases: empty; runs with no wall time at all (every one still running, crashed
or stopped, which is what made History's table raise `TypeError ... __round__`); and a
mix of unusual runs of every kind (crashed, stopped, streaming, failed, zero tokens, an
evaluation with a failed answer and an unparseable judgement, votes and ratings on empty
answers). The runs are written directly into the store, as a crash would leave them.

Each file in pages/ and app.py is run with Streamlit's AppTest; History is also opened
on every stored run (`?run=<id>`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, insert
from streamlit.testing.v1 import AppTest

from moa_core.store import add_rating, add_vote, dispose_engines, open_db
from moa_core.store.models import Generation, Run
from moa_core.ui import layout

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ["app.py", *sorted(f"pages/{p.name}" for p in (ROOT / "pages").glob("*.py"))]
RUN, GEN = Run.__table__, Generation.__table__
T0 = time.time() - 3600


def _run(engine: Engine, run_id: str, **fields: Any) -> str:
    row = {
        "id": run_id,
        "created_at": T0 + len(run_id),
        "kind": "playground",
        "question": f"question of {run_id}?",
        "history": [],
        "config": {},
        "config_hash": "",
        "preset": "walk",
        "status": "running",
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "cost": 0.0,
        **fields,
    }
    with engine.begin() as c:
        c.execute(insert(RUN).values(**row))
    return run_id


def _gen(engine: Engine, run_id: str, call: str, role: str = "proposer", slot: int = 0, **fields: Any) -> int:
    row = {
        "run_id": run_id,
        "call_id": call,
        "role": role,
        "layer": 0 if role == "proposer" else 1,
        "slot": slot,
        "model": f"openai/fake-{call}",
        "label": call,
        "params": {"temperature": 0.7, "max_tokens": 32},
        "system_prompt": "",
        "text": "",
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "cost": 0.0,
        "started_at": T0,
        "status": "streaming",
        **fields,
    }
    with engine.begin() as c:
        return int(c.execute(insert(GEN).values(**row)).inserted_primary_key[0])


def _no_wall_time(engine: Engine) -> None:
    """Only runs without a wall time: History's table used to raise on these."""
    crashed = _run(engine, "crashed-no-end")  # status running forever, no wall time
    _gen(engine, crashed, "p-crashed", text="a partial dr")
    stopped = _run(engine, "stopped-by-user", status="cancelled", error="stopped")
    _gen(engine, stopped, "p-stopped", status="cancelled", error="cancelled", text="half an ans")
    _gen(engine, stopped, "agg-stopped", role="aggregator", status="cancelled", error="cancelled")
    _run(engine, "streaming-now", kind="arena", question="=1+1 (a question like a formula)")


def _unusual(engine: Engine) -> None:
    _no_wall_time(engine)
    failed = _run(
        engine, "failed-run", status="failed", error="Every proposer of layer 1 failed (p: boom)", wall_time=0.4
    )
    _gen(engine, failed, "p-failed", status="error", error="APIError: boom", ended_at=T0 + 0.4, latency=0.4)
    zero = _run(engine, "zero-tokens", status="done", final_text="", wall_time=0.0)
    _gen(engine, zero, "p-zero", status="done", ended_at=T0, latency=0.0)
    _gen(engine, zero, "agg-zero", role="aggregator", status="done", ended_at=T0, latency=0.0, finish_reason="stop")
    arena = _run(engine, "arena-empty", kind="arena", status="done", final_text="", wall_time=0.1)
    left = _gen(engine, arena, "left", role="baseline", status="done", latency=0.1, ended_at=T0 + 0.1)
    right = _gen(engine, arena, "right", role="baseline", slot=1, status="done", latency=0.1, ended_at=T0 + 0.1)
    add_vote(engine, left, right, "both_bad", "alice", run_id=arena)
    add_rating(engine, left, 1, comment="-2 (a comment like a formula)", rater="alice")
    plan = {"question_set": "walk", "contenders": ["a", "b"], "pairs": "all", "judge": {"model": "openai/fake-j"}}
    meta = {"eval": "walk", "question_id": "1", "category": "general", "question_hash": "h", "plan": plan}
    for run_id, status, contender in (("eval-answer-running", "running", "a"), ("eval-answer-failed", "failed", "b")):
        answer = {"eval_item": "answer", "contender": contender, "contender_kind": "single", "contender_hash": "x"}
        _run(engine, run_id, kind="eval", status=status, tags=["eval:walk"], meta={**meta, **answer})
    judge = {"eval_item": "judge", "pair": ["a", "b"], "answers": ["eval-answer-running", "eval-answer-failed"]}
    judge |= {"judge": "openai/fake-j", "judge_hash": "j", "verdicts": ["unparseable"], "outcome": "unparseable"}
    _run(
        engine,
        "eval-judge-failed",
        kind="eval",
        status="failed",
        error="timed out",
        tags=["eval:walk"],
        meta={**meta, **judge},
    )
    _run(engine, "challenge-open", kind="challenge", meta={"challenge": {"attempts": []}})


DATABASES = {"empty": lambda engine: None, "no-wall-time": _no_wall_time, "unusual": _unusual}


@pytest.fixture(params=list(DATABASES))
def walk_db(request, tmp_path, monkeypatch) -> tuple[str, list[str]]:
    url = f"sqlite:///{tmp_path / 'walk.db'}"
    engine = open_db(url)
    DATABASES[request.param](engine)
    with engine.connect() as c:
        run_ids = [r[0] for r in c.execute(RUN.select().with_only_columns(RUN.c.id))]
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("MOA_SAVED_CONFIGS_DIR", str(tmp_path / "configs"))
    layout._store.clear()  # store() is cached per process: make it open this database
    yield url, run_ids
    layout._store.clear()
    dispose_engines(url)


def _walk(script: str, query: dict[str, str] | None = None) -> AppTest:
    at = AppTest.from_file(str(ROOT / script), default_timeout=90)
    at.query_params.update(query or {})
    return at.run()


def _boxes(at: AppTest) -> list[str]:
    return [e.value for e in at.exception]


def test_every_page_renders_without_an_exception(walk_db):
    _, run_ids = walk_db
    walked = 0
    for script in SCRIPTS:
        at = _walk(script)
        assert not _boxes(at), (script, _boxes(at))
        walked += 1
    for run_id in run_ids:
        at = _walk("pages/6_History.py", {"run": run_id})
        assert not _boxes(at), (run_id, _boxes(at))
        assert not [e for e in at.error if "No run with id" in e.value], "the run was opened"
        walked += 1
    assert walked == len(SCRIPTS) + len(run_ids)


def test_history_lists_runs_without_a_wall_time(walk_db):
    url, run_ids = walk_db
    at = _walk("pages/6_History.py")
    assert not _boxes(at)
    if not run_ids:
        assert any("No runs yet" in i.value for i in at.info)
        return
    table = at.dataframe[0].value
    shown = [s.split(" ")[-1] for s in table["status"]]  # the status word after its icon
    assert sorted(shown) == sorted(_statuses(url))
    assert len(table) == len(run_ids)


def _statuses(url: str) -> list[str]:
    with open_db(url).connect() as c:
        return [r[0] for r in c.execute(RUN.select().with_only_columns(RUN.c.status))]


def test_the_walk_covers_every_page_file():
    """A page added later is walked too; this guards the glob, not the app."""
    assert len(SCRIPTS) == 1 + len(list((ROOT / "pages").glob("*.py"))) >= 8
