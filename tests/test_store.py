"""Store: recording event streams, ratings/votes, queries, export — on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import csv
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import aclosing
from datetime import date, datetime, timedelta

import pytest
from sqlalchemy import Engine, insert, select
from sqlalchemy.exc import IntegrityError

from moa_core.events import CallRef, DraftStarted, RunDone, RunStarted, TokenDelta, Totals
from moa_core.store import (
    Recorder,
    StoreError,
    add_rating,
    add_vote,
    annotate_run,
    export_all,
    filter_options,
    generations_df,
    get_run,
    open_db,
    ratings_df,
    runs_df,
    votes_df,
)
from moa_core.store.models import Rating
from tests.test_store_support import QUESTION, run_events, stream


@pytest.fixture
def engine(db_url: str) -> Engine:
    return open_db(db_url)


def record_all(engine: Engine, events: list, **kw: object) -> list:
    async def main() -> list:
        async with aclosing(Recorder(engine, **kw).record(stream(events))) as evs:
            return [ev async for ev in evs]

    return asyncio.run(main())


def gens_by_call(run: dict) -> dict[str, dict]:
    return {g["call_id"]: g for g in run["generations"]}


def test_full_run_is_recorded(engine: Engine) -> None:
    events = run_events()
    passed = record_all(engine, events, question_set="qs1")
    assert passed == events  # passes every event through unchanged
    run = get_run(engine, events[0].run_id)
    assert run is not None
    r = run["run"]
    assert (r["status"], r["kind"], r["preset"], r["question"]) == ("done", "playground", "local-moa", QUESTION)
    assert r["config_hash"] == events[0].config_hash and r["config"]["aggregator"]["model"] == "local/agg"
    assert r["history"] == [{"role": "user", "content": "hi"}]
    assert (r["prompt_tokens"], r["completion_tokens"], r["cost"], r["wall_time"]) == (30, 12, 0.003, 2.0)
    assert r["final_text"] == "final answer: Rayleigh scattering" and r["question_set"] == "qs1"
    assert r["meta"]["context_trimmed"][0]["tokens_after"] == 4000
    assert [g["call_id"] for g in run["generations"]] == ["proposer-0-0", "proposer-0-1", "aggregator-1-0"]
    g0 = run["generations"][0]
    assert g0["status"] == "done" and g0["text"] == "draft 0 from local/a" and g0["label"] == "A"
    assert g0["finish_reason"] == "stop" and g0["ttft"] == 0.1 and g0["latency"] == pytest.approx(0.5)
    assert g0["ended_at"] - g0["started_at"] == pytest.approx(0.5) and g0["system_prompt"] == "You are helpful."
    # Secrets never reach the database, at any depth.
    assert g0["params"] == {"temperature": 0.7, "max_tokens": 256, "extra_headers": {}}


def test_consumer_stopping_marks_run_cancelled(engine: Engine) -> None:
    events = run_events()
    run_id = events[0].run_id
    closed: list[bool] = []

    async def main() -> None:
        async with aclosing(Recorder(engine).record(stream(events, closed))) as evs:
            async for ev in evs:
                # Stop once proposer 0 has finished and proposer 1 has streamed a little.
                if isinstance(ev, TokenDelta) and ev.ref.slot == 1:
                    break

    asyncio.run(main())
    run = get_run(engine, run_id)
    assert run["run"]["status"] == "cancelled"
    gens = gens_by_call(run)
    assert gens["proposer-0-0"]["status"] == "done" and gens["proposer-0-0"]["text"] == "draft 0 from local/a"
    assert gens["proposer-0-1"]["status"] == "cancelled" and gens["proposer-0-1"]["text"] == "dra"
    assert gens["proposer-0-1"]["ended_at"] is not None
    assert "aggregator-1-0" not in gens
    assert closed == [True]  # the engine's generator was closed too


def test_break_without_aclosing_still_closes_run(engine: Engine) -> None:
    events = run_events()

    async def main() -> None:
        async for ev in Recorder(engine).record(stream(events)):
            if isinstance(ev, TokenDelta):
                break
        for _ in range(5):  # the event loop finalizes the abandoned generator shortly after
            await asyncio.sleep(0)

    asyncio.run(main())
    run = get_run(engine, events[0].run_id)
    assert run["run"]["status"] == "cancelled"
    assert run["generations"][0]["status"] == "cancelled" and run["generations"][0]["text"] == "dra"


def test_cancelled_task_marks_run_cancelled(engine: Engine) -> None:
    events = run_events()
    seen = asyncio.Event()

    async def slow() -> AsyncIterator:
        for ev in events[:4]:
            yield ev
        seen.set()
        await asyncio.sleep(60)  # the engine waiting on a model that never answers

    async def consume() -> None:
        async with aclosing(Recorder(engine).record(slow())) as evs:
            async for _ in evs:
                pass

    async def main() -> None:
        task = asyncio.create_task(consume())
        await seen.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    run = get_run(engine, events[0].run_id)
    assert run["run"]["status"] == "cancelled" and run["generations"][0]["status"] == "cancelled"
    assert run["generations"][0]["text"] == events[2].text + events[3].text


def test_failed_draft_and_failing_engine(engine: Engine) -> None:
    events = run_events(failing_slot=1)
    record_all(engine, events)
    g = gens_by_call(get_run(engine, events[0].run_id))["proposer-0-1"]
    assert (g["status"], g["error"], g["finish_reason"]) == ("error", "RateLimitError: slow down", None)
    assert g["text"] == "draft 1 from local/b"  # partial text is kept with the error

    events = run_events()
    with pytest.raises(RuntimeError, match="engine exploded"):

        async def main() -> None:
            async with aclosing(Recorder(engine).record(stream(events, fail_after=5))) as evs:
                async for _ in evs:
                    pass

        asyncio.run(main())
    r = get_run(engine, events[0].run_id)["run"]
    assert (r["status"], r["error"]) == ("failed", "engine exploded")


def test_partial_text_flush_and_close_unfinished(engine: Engine) -> None:
    rec = Recorder(engine, flush_interval=0.0)
    events = run_events()
    for ev in events[:4]:  # RunStarted, DraftStarted, two deltas
        rec.handle(ev)
    run_id = events[0].run_id
    assert get_run(engine, run_id)["generations"][0]["text"] == events[2].text + events[3].text
    assert rec.open_runs() == [run_id]
    assert rec.close_unfinished(run_id) is True
    assert rec.close_unfinished(run_id) is False  # already ended
    run = get_run(engine, run_id)
    assert run["run"]["status"] == "cancelled" and run["generations"][0]["status"] == "cancelled"


def test_recording_failures_raise_store_error(engine: Engine) -> None:
    rec = Recorder(engine)
    events = run_events()
    rec.handle(events[0])
    with pytest.raises(StoreError, match="cannot record run"):
        rec.handle(events[0])  # the same run twice
    orphan = CallRef("no-such-run", "proposer", 0, 0, "m")
    with pytest.raises(StoreError, match="cannot record draft proposer-0-0 of run no-such-run"):
        rec.handle(DraftStarted(orphan, "", {}, time.time()))
    with pytest.raises(StoreError):
        rec.handle(RunDone(events[0].run_id, "weird", "", Totals(), time.time()))  # type: ignore[arg-type]


def test_ratings_and_votes_validation(engine: Engine) -> None:
    events = run_events()
    record_all(engine, events)
    gens = get_run(engine, events[0].run_id)["generations"]
    g1, g2 = gens[0]["id"], gens[1]["id"]
    for bad in (0, 6, 3.5, True, "4", None):
        with pytest.raises(ValueError, match="score must be an integer from 1 to 5"):
            add_rating(engine, g1, bad, "", "alice")  # type: ignore[arg-type]
    for bad_rater in ("", "   ", None):
        with pytest.raises(ValueError, match="rater must be a non-empty"):
            add_rating(engine, g1, 3, "", bad_rater)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="generation 999999 does not exist"):
        add_rating(engine, 999999, 3, "", "alice")
    rid = add_rating(engine, g1, 5, " great ", "alice")
    assert isinstance(rid, int) and get_run(engine, events[0].run_id)["ratings"][0]["comment"] == "great"
    # The database itself refuses a bad score too (check constraint), whatever the caller.
    with pytest.raises(IntegrityError), engine.begin() as c:
        c.execute(insert(Rating.__table__).values(generation_id=g1, score=9, comment="", rater="x", created_at=1.0))

    with pytest.raises(ValueError, match="outcome must be one of left, right, tie, both_bad"):
        add_vote(engine, g1, g2, "draw", "alice")
    with pytest.raises(ValueError, match="two different generations"):
        add_vote(engine, g1, g1, "left", "alice")
    with pytest.raises(ValueError, match="rater"):
        add_vote(engine, g1, g2, "left", " ")
    with pytest.raises(ValueError, match="run nope does not exist"):
        add_vote(engine, g1, g2, "left", "alice", run_id="nope")
    v1 = add_vote(engine, g1, g2, "tie", "alice", run_id=events[0].run_id)
    v2 = add_vote(engine, g1, g2, "both_bad", "judge:local/agg", blind=False, question_set="qs")
    df = votes_df(engine).set_index("id")
    assert df.loc[v1, "outcome"] == "tie" and df.loc[v2, "outcome"] == "both_bad"
    assert not bool(df.loc[v2, "blind"]) and df.loc[v2, "question_set"] == "qs"


def _populate(engine: Engine) -> dict[str, str]:
    now = time.time()
    specs = {
        "old": dict(kind="eval", preset="p1", t0=now - 10 * 86400, question="What is entropy?"),
        "arena": dict(kind="arena", preset="p2", models=("local/x", "local/b"), question="Sky colour?"),
        "play": dict(kind="playground", preset="p1", t0=now - 60),
    }
    ids = {}
    for name, kw in specs.items():
        evs = run_events(**kw)  # type: ignore[arg-type]
        record_all(engine, evs, question_set="math" if name == "old" else None)
        ids[name] = evs[0].run_id
    return ids


def test_queries_with_filters(engine: Engine) -> None:
    ids = _populate(engine)
    assert len(runs_df(engine)) == 3
    assert runs_df(engine)["id"].tolist()[0] == ids["arena"]  # newest first
    assert runs_df(engine, kind="eval")["id"].tolist() == [ids["old"]]
    assert set(runs_df(engine, kind=["eval", "arena"])["id"]) == {ids["old"], ids["arena"]}
    assert runs_df(engine, model="local/x")["id"].tolist() == [ids["arena"]]
    assert runs_df(engine, model="X")["id"].tolist() == [ids["arena"]]  # labels name contenders too
    assert set(runs_df(engine, preset="p1")["id"]) == {ids["old"], ids["play"]}
    assert runs_df(engine, search="ENTROPY")["id"].tolist() == [ids["old"]]
    assert runs_df(engine, search="100%").empty  # wildcards in the search are literal
    assert runs_df(engine, question_set="math")["id"].tolist() == [ids["old"]]
    week_ago = datetime.now() - timedelta(days=7)
    assert set(runs_df(engine, since=week_ago)["id"]) == {ids["arena"], ids["play"]}
    assert runs_df(engine, until=week_ago)["id"].tolist() == [ids["old"]]
    assert len(runs_df(engine, until=date.today())) == 3  # a date as upper bound includes that day
    df = runs_df(engine, kind="arena")
    assert df.loc[0, "models"] == "local/agg, local/b, local/x" and str(df["created"].dt.tz) == "UTC"
    assert runs_df(engine, kind="nothing").empty and "models" in runs_df(engine, kind="nothing").columns

    g = generations_df(engine, run_ids=[ids["arena"]])
    assert len(g) == 3 and set(g["kind"]) == {"arena"} and "params" in g.columns
    assert len(generations_df(engine, role="aggregator")) == 3
    assert len(generations_df(engine, model="local/b", kind="eval")) == 1
    assert set(generations_df(engine, question_set="math")["run_id"]) == {ids["old"]}

    arena = get_run(engine, ids["arena"])["generations"]
    old = get_run(engine, ids["old"])["generations"]
    add_rating(engine, arena[0]["id"], 4, "", "alice")
    add_rating(engine, old[1]["id"], 2, "meh", "bob")
    rdf = ratings_df(engine)
    assert len(rdf) == 2 and set(rdf.columns) >= {"model", "label", "name", "kind", "score", "rater", "created"}
    assert ratings_df(engine, rater="bob")["model"].tolist() == ["local/b"]
    assert ratings_df(engine, kind="arena")["name"].tolist() == ["X"]
    assert ratings_df(engine, model="local/x")["score"].tolist() == [4]
    assert ratings_df(engine, since=time.time() + 60).empty
    # Ratings take the same filters as votes (one builder): the run's question set, people/judges.
    assert ratings_df(engine, question_set="math")["rater"].tolist() == ["bob"]
    assert ratings_df(engine, rater_kind="judges").empty and len(ratings_df(engine, rater_kind="people")) == 2
    with pytest.raises(TypeError, match=r"unknown filter.*question_sets"):
        ratings_df(engine, question_sets="math")  # type: ignore[call-arg]  # the misspelling under test

    add_vote(engine, arena[0]["id"], arena[1]["id"], "left", "alice", run_id=ids["arena"], question_set="qs")
    add_vote(engine, old[0]["id"], old[1]["id"], "right", "judge:local/agg")
    vdf = votes_df(engine)
    assert len(vdf) == 2
    first = vdf.iloc[0]
    assert (first["left_model"], first["left_name"], first["right_name"], first["kind"]) == (
        "local/x",
        "X",
        "B",
        "arena",
    )
    assert votes_df(engine, rater_kind="people")["rater"].tolist() == ["alice"]
    assert votes_df(engine, rater_kind="judges")["kind"].tolist() == ["eval"]
    assert votes_df(engine, kind="eval", rater_kind="all")["is_judge"].tolist() == [True]
    assert votes_df(engine, question_set="qs")["rater"].tolist() == ["alice"]
    assert votes_df(engine, model="X")["rater"].tolist() == ["alice"]
    with pytest.raises(ValueError, match="rater_kind"):
        votes_df(engine, rater_kind="robots")
    with pytest.raises(TypeError, match="unknown filter"):
        votes_df(engine, rater_kinds="people")  # type: ignore[call-arg]  # the misspelling under test

    opts = filter_options(engine)
    assert opts["kinds"] == ["arena", "eval", "playground"] and "judge:local/agg" in opts["raters"]
    assert opts["question_sets"] == ["math", "qs"]
    assert get_run(engine, "missing") is None
    assert len(get_run(engine, ids["arena"])["votes"]) == 1

    annotate_run(engine, ids["play"], tags=["keep"], meta={"diversity": 0.4, "token": "x"})
    r = get_run(engine, ids["play"])["run"]
    assert r["tags"] == ["keep"] and r["meta"]["diversity"] == 0.4 and "token" not in r["meta"]
    assert "context_trimmed" in r["meta"]  # merged, not replaced
    with pytest.raises(ValueError, match="does not exist"):
        annotate_run(engine, "missing", tags=[])


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_export_round_trip(engine: Engine, tmp_path, fmt: str) -> None:
    ids = _populate(engine)
    gens = get_run(engine, ids["play"])["generations"]
    add_rating(engine, gens[0]["id"], 3, 'multi\nline, "quoted"', "alice")
    add_vote(engine, gens[0]["id"], gens[1]["id"], "tie", "bob")
    paths = export_all(engine, tmp_path / "out", fmt)
    assert [p.name for p in paths] == [f"{n}.{fmt}" for n in ("runs", "generations", "ratings", "votes")]
    if fmt == "csv":
        tables = {p.stem: list(csv.DictReader(p.open(encoding="utf-8", newline=""))) for p in paths}
    else:
        tables = {p.stem: [json.loads(line) for line in p.open(encoding="utf-8")] for p in paths}
    assert {k: len(v) for k, v in tables.items()} == {"runs": 3, "generations": 9, "ratings": 1, "votes": 1}
    assert tables["ratings"][0]["comment"] == 'multi\nline, "quoted"'
    params = tables["generations"][0]["params"]
    params = json.loads(params) if fmt == "csv" else params
    assert params["temperature"] == 0.7 and "api_key" not in params
    with pytest.raises(ValueError, match="format"):
        export_all(engine, tmp_path, "xlsx")


def test_unknown_event_stream_ids_are_uuid_hex(engine: Engine) -> None:
    # Run ids are opaque strings; a 32-char uuid hex is what the engine uses.
    run_id = uuid.uuid4().hex
    Recorder(engine).handle(RunStarted(run_id, "q", [], {}, "h", "", "challenge", time.time()))
    with engine.connect() as c:
        from moa_core.store.models import Run

        assert c.execute(select(Run.__table__.c.kind).where(Run.__table__.c.id == run_id)).scalar() == "challenge"
