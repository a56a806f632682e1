"""Replay: timing recorded as a run streams, and a replay of it with the same order, text and timing."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from contextlib import aclosing
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import inspect as sa_inspect
from sqlalchemy import text, update

from moa_core import replay
from moa_core.engine import run_moa
from moa_core.events import DraftDone, Event, LayerDone, RunDone, RunStarted, TokenDelta
from moa_core.replay import replay_events, timing_is_derived
from moa_core.stage_layout import stage_columns
from moa_core.store import Recorder, add_rating, dispose_engines, get_engine, get_run, open_db
from moa_core.store.db import alembic_config, current_revision, init_db, upgrade
from moa_core.store.models import Generation, table_of
from moa_core.store.recorder import TIMING_BUCKET
from tests.conftest import fake_agent, fake_config
from tests.test_store_db import head_revision

QUESTION = "Why is the sky blue?"


@pytest.fixture
def sqlite_url(tmp_path: Path) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 'moa.db'}"
    yield url
    dispose_engines(url)


def config(server: Any) -> Any:
    # Delays far apart, so the columns' order of arrival is the same on a slow machine.
    return fake_config(
        server,
        [
            fake_agent(server, "slow", tokens=6, ttft=0.5, delay=0.05),
            fake_agent(server, "fast", tokens=30, ttft=0.0, delay=0.01),
            fake_agent(server, "mid", tokens=10, ttft=0.25, delay=0.03),
        ],
        aggregator=fake_agent(server, "agg", tokens=12, ttft=0.1, delay=0.02),
        baselines=[fake_agent(server, "alone", tokens=8, ttft=0.8, delay=0.02)],
    )


async def record_run(url: str, server: Any) -> list[Event]:
    engine = open_db(url)
    async with aclosing(Recorder(engine).record(run_moa(QUESTION, config(server)))) as events:
        return [ev async for ev in events]


def first_arrivals(events: list[Event]) -> list[str]:
    seen: list[str] = []
    for ev in events:
        if isinstance(ev, TokenDelta) and ev.ref.call_id not in seen:
            seen.append(ev.ref.call_id)
    return seen


def done_order(events: list[Event]) -> list[str]:
    return [ev.ref.call_id for ev in events if isinstance(ev, DraftDone)]


def texts(events: list[Event]) -> dict[str, str]:
    return {ev.ref.call_id: ev.text for ev in events if isinstance(ev, DraftDone)}


def streamed(events: list[Event]) -> dict[str, str]:
    out: dict[str, str] = {}
    for ev in events:
        if isinstance(ev, TokenDelta):
            out[ev.ref.call_id] = out.get(ev.ref.call_id, "") + ev.text
    return out


def delta_times(events: list[Event]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for ev in events:
        if isinstance(ev, TokenDelta):
            out.setdefault(ev.ref.call_id, []).append(ev.t)
    return out


async def test_replay_reproduces_order_text_and_timing(sqlite_url, fake_server):
    original = await record_run(sqlite_url, fake_server)
    assert isinstance(original[-1], RunDone) and original[-1].status == "done"
    stored = get_run(get_engine(sqlite_url), original[0].run_id)
    assert stored is not None and not timing_is_derived(stored)

    # Timing is compact: fewer points than deltas for the streamy column, each [offset, length].
    gens = {g["call_id"]: g for g in stored["generations"]}
    fast = gens["proposer-0-1"]
    n_deltas = sum(1 for ev in original if isinstance(ev, TokenDelta) and ev.ref.call_id == "proposer-0-1")
    assert 1 < len(fast["timing"]) < n_deltas
    for g in gens.values():
        offsets = [p[0] for p in g["timing"]]
        assert offsets == sorted(offsets) and g["timing"][-1][1] == len(g["text"])

    replayed = [ev async for ev in replay_events(stored, None)]
    assert first_arrivals(replayed) == first_arrivals(original)
    assert done_order(replayed) == done_order(original)
    assert texts(replayed) == texts(original) == streamed(replayed)
    assert [type(ev) for ev in replayed if isinstance(ev, (RunStarted, LayerDone, RunDone))] == [
        RunStarted,
        LayerDone,
        RunDone,
    ]
    assert replayed[-1].final_text == original[-1].final_text
    # Every column's first and last piece of text arrive when they did (to the millisecond);
    # the pieces between are at most one bucket late, never early.
    want, got = delta_times(original), delta_times(replayed)
    assert set(got) == set(want)
    for call_id, times in want.items():
        assert got[call_id][0] == pytest.approx(times[0], abs=2e-3)
        assert got[call_id][-1] == pytest.approx(times[-1], abs=2e-3)
        assert len(got[call_id]) <= len(times)
    # A replayed DraftDone carries the original metrics.
    orig_done = {ev.ref.call_id: ev for ev in original if isinstance(ev, DraftDone)}
    for ev in replayed:
        if isinstance(ev, DraftDone):
            o = orig_done[ev.ref.call_id]
            assert (ev.usage, ev.ttft, ev.started_at, ev.ended_at, ev.ok) == (
                o.usage,
                pytest.approx(o.ttft),
                pytest.approx(o.started_at),
                pytest.approx(o.ended_at),
                True,
            )


class FakeClock:
    """time.monotonic and asyncio.sleep for the replay module: sleeping moves the clock."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


async def test_replay_waits_the_recorded_gaps_divided_by_speed(sqlite_url, fake_server, monkeypatch):
    original = await record_run(sqlite_url, fake_server)
    stored = get_run(get_engine(sqlite_url), original[0].run_id)
    clock = FakeClock()
    monkeypatch.setattr(replay.time, "monotonic", clock.monotonic)
    monkeypatch.setattr(replay.asyncio, "sleep", clock.sleep)
    t0 = stored["run"]["created_at"]
    for speed in (1.0, 2.0, 5.0):
        start, clock.sleeps = clock.now, []
        seen = [(clock.now - start, ev) async for ev in replay_events(stored, speed)]
        for at, ev in seen:
            when = ev.ended_at if isinstance(ev, DraftDone) else ev.t
            assert at == pytest.approx((when - t0) / speed, abs=1e-6), ev
        assert clock.sleeps and all(s > 0 for s in clock.sleeps)
    # Instant: the same events in the same order, without a single sleep.
    clock.sleeps = []
    instant = [ev async for ev in replay_events(stored, None)]
    assert clock.sleeps == [] and instant == [ev for _, ev in seen]


def old_run(url: str) -> str:
    """A run as 0005 code wrote it (no timing column) into a database at revision 0005."""
    engine = get_engine(url)
    upgrade(engine, "0005")
    run_id, t = uuid.uuid4().hex, time.time() - 3600
    with engine.begin() as c:
        c.execute(
            text(
                "INSERT INTO run (id, created_at, kind, question, history, config, config_hash, preset, status, "
                "prompt_tokens, completion_tokens, cost, wall_time, final_text) VALUES (:id, :t, 'playground', "
                "'old q', '[]', '{}', 'h', 'p', 'done', 30, 12, 0, 3.0, 'final words here')"
            ),
            {"id": run_id, "t": t},
        )
        gen = text(
            "INSERT INTO generation (run_id, call_id, role, layer, slot, model, label, params, system_prompt, "
            "text, prompt_tokens, completion_tokens, cost, ttft, latency, started_at, ended_at, status) VALUES "
            "(:r, :cid, :role, :layer, 0, 'm', '', '{}', '', :txt, 10, 4, 0, :ttft, :lat, :s, :e, 'done')"
        )
        c.execute(
            gen,
            {
                "r": run_id,
                "cid": "proposer-0-0",
                "role": "proposer",
                "layer": 0,
                "txt": "a draft of old",
                "ttft": 0.5,
                "lat": 1.5,
                "s": t,
                "e": t + 1.5,
            },
        )
        c.execute(
            gen,
            {
                "r": run_id,
                "cid": "aggregator-1-0",
                "role": "aggregator",
                "layer": 1,
                "txt": "final words here",
                "ttft": 0.2,
                "lat": 1.0,
                "s": t + 1.6,
                "e": t + 2.6,
            },
        )
    return run_id


async def test_migration_keeps_rows_and_old_runs_replay_at_a_derived_rate(db_url):
    run_id = old_run(db_url)
    engine = get_engine(db_url)
    init_db(engine)
    assert current_revision(engine) == head_revision()
    stored = get_run(engine, run_id)
    assert stored is not None and stored["run"]["question"] == "old q"
    assert [(g["text"], g["timing"]) for g in stored["generations"]] == [
        ("a draft of old", None),
        ("final words here", None),
    ]
    assert timing_is_derived(stored)
    replayed = [ev async for ev in replay_events(stored, None)]
    assert streamed(replayed) == {"proposer-0-0": "a draft of old", "aggregator-1-0": "final words here"}
    times = delta_times(replayed)
    t = stored["run"]["created_at"]
    # Text starts at TTFT and ends at the call's end, evenly in between.
    assert times["proposer-0-0"][0] > t + 0.5 and times["proposer-0-0"][-1] == pytest.approx(t + 1.5)
    assert times["aggregator-1-0"][0] > t + 1.8 and times["aggregator-1-0"][-1] == pytest.approx(t + 2.6)
    gaps = [b - a for a, b in zip(times["proposer-0-0"], times["proposer-0-0"][1:], strict=False)]
    assert gaps and max(gaps) == pytest.approx(min(gaps), abs=1e-4)
    assert done_order(replayed) == ["proposer-0-0", "aggregator-1-0"]
    # The new column is written by runs recorded from now on.
    with engine.begin() as c:
        c.execute(update(table_of(Generation)).where(table_of(Generation).c.run_id == run_id).values(timing=[[0.5, 3]]))
    again = get_run(engine, run_id)
    assert again is not None and again["generations"][0]["timing"] == [[0.5, 3]]
    # And back down, foreign keys on: the column goes, every row (and rating) stays.
    add_rating(engine, again["generations"][0]["id"], 4, "kept", "ann")
    with engine.connect() as c:
        command.downgrade(alembic_config(c), "0005")
        c.commit()
    with engine.connect() as c:
        counts = [c.execute(text(f"SELECT count(*) FROM {tb}")).scalar() for tb in ("run", "generation", "rating")]
        assert counts == [1, 2, 1]
        assert "timing" not in {col["name"] for col in sa_inspect(c).get_columns("generation")}


async def test_stopped_run_replays_what_it_had(sqlite_url, fake_server):
    """A run stopped mid-stream replays the partial text it kept, marked cancelled."""
    engine = open_db(sqlite_url)
    cfg = fake_config(fake_server, [fake_agent(fake_server, "long", tokens=200, delay=0.01)])
    seen = 0
    async with aclosing(Recorder(engine, flush_interval=0.05).record(run_moa(QUESTION, cfg))) as events:
        async for ev in events:
            if isinstance(ev, TokenDelta):
                seen += 1
                if seen == 20:
                    break
    stored = get_run(engine, ev.ref.run_id)
    assert stored is not None and stored["run"]["status"] == "cancelled"
    draft = stored["generations"][0]
    assert draft["status"] == "cancelled" and draft["timing"][-1][1] == len(draft["text"]) > 0
    replayed = [ev async for ev in replay_events(stored, None)]
    assert streamed(replayed) == {"proposer-0-0": draft["text"]}
    done = [ev for ev in replayed if isinstance(ev, DraftDone)]
    assert [d.error for d in done] == ["cancelled"]
    assert isinstance(replayed[-1], RunDone) and replayed[-1].status == "cancelled"


def test_timing_points_are_one_per_bucket_after_the_first(sqlite_url):
    from moa_core.store.recorder import _Draft

    d = _Draft(1, started_at=100.0)
    for i, t in enumerate([100.3, 100.31, 100.32, 100.35, 100.5, 100.52]):
        d.add("ab", t)
        assert d.timing[-1] == [round(t - 100.0, 3), 2 * (i + 1)]
    # First delta alone (exact TTFT); then 100.31..100.35 in one bucket; then 100.5..100.52.
    assert d.timing == [[0.3, 2], [0.35, 8], [0.52, 12]]
    assert TIMING_BUCKET > 0.05
    assert json.loads(json.dumps(d.timing)) == d.timing


def test_stage_columns_follow_the_stored_run(sqlite_url):
    stored = {
        "run": {},
        "generations": [
            {"role": "baseline", "layer": -1, "slot": 0, "model": "b", "label": ""},
            {"role": "proposer", "layer": 0, "slot": 1, "model": "p1", "label": "P1"},
            {"role": "proposer", "layer": 0, "slot": 0, "model": "p0", "label": ""},
            {"role": "aggregator", "layer": 1, "slot": 0, "model": "agg", "label": ""},
            {"role": "judge", "layer": 2, "slot": 0, "model": "j", "label": ""},
        ],
    }
    assert stage_columns(stored) == [
        ("Layer 1 · 2 proposers", [("proposer-0-0", "p0"), ("proposer-0-1", "P1")]),
        ("Aggregated answer and single models", [("aggregator-1-0", "MoA · agg"), ("baseline--1-0", "Alone · b")]),
    ]


@pytest.fixture
def wide_console(monkeypatch):
    # rich wraps at 80 columns when not on a terminal; wide output keeps names on one line
    monkeypatch.setenv("COLUMNS", "240")


async def test_cli_replay_prints_every_call_in_the_recorded_order(sqlite_url, fake_server, capsys, wide_console):
    from moa_core import cli

    original = await record_run(sqlite_url, fake_server)
    capsys.readouterr()
    # cli.main runs its own event loop: give it a thread, as a shell would give it a process.
    code = await asyncio.to_thread(cli.main, ["replay", original[0].run_id, "--speed", "0", "--database", sqlite_url])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "no model is called" in out and QUESTION in out
    done = [ev for ev in original if isinstance(ev, DraftDone)]
    # One panel per call, in the order the calls finished, each with its text.
    names = [ev.ref.model.split("/", 1)[1].split("@")[0] for ev in done]
    positions = [out.index(f"· {ev.ref.model}") for ev in done]
    assert positions == sorted(positions), names
    for ev in done:
        assert ev.text.split()[-1] in out
    assert f"run {original[0].run_id[:8]} done: 5 calls" in out
    assert "uniform rate" not in out


def test_cli_replay_errors_are_one_line(sqlite_url, capsys):
    from moa_core import cli

    open_db(sqlite_url)
    assert cli.main(["replay", "nope", "--database", sqlite_url]) == 2
    assert capsys.readouterr().err == "moa: no run with id 'nope' (see `moa history`)\n"
    assert cli.main(["replay", "nope", "--speed", "-1", "--database", sqlite_url]) == 2
    assert capsys.readouterr().err == "moa: --speed must be 0 (instant) or more\n"


def test_cli_replay_of_an_old_run_says_its_timing_is_derived(sqlite_url, capsys, wide_console):
    from moa_core import cli

    run_id = old_run(sqlite_url)
    assert cli.main(["replay", run_id, "--speed", "50", "--database", sqlite_url]) == 0
    out = capsys.readouterr().out
    assert "uniform rate" in out and "a draft of old" in out and "final words here" in out


# ---------------------------------------------------------------- History page (AppTest: final states)

ROOT = str(Path(__file__).resolve().parent.parent)


def history(run_id: str) -> Any:
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(ROOT + "/pages/6_History.py", default_timeout=60)
    at.query_params["run"] = run_id
    return at


async def test_history_replay_streams_into_live_columns_and_stop_returns(sqlite_url, fake_server, monkeypatch):
    from tests.conftest import md_text

    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    original = await record_run(sqlite_url, fake_server)
    finals = texts(original)
    at = history(original[0].run_id).run()
    assert not at.exception
    assert [b.label for b in at.button if b.label.startswith("Replay")] == ["Replay"]
    stored_forms = [b for b in at.button if b.label == "Save rating"]
    assert stored_forms  # the stored view, with its rating forms
    at.segmented_control(key="replay_speed").set_value("instant")
    at.button(key="replay").click()
    at = await asyncio.to_thread(at.run)
    assert not at.exception
    shown = " ".join(md_text(m.value) for m in at.markdown)
    # Every column's final text, under its live title, and no rating form: this is the replay.
    for call_id, final in finals.items():
        assert final in shown, call_id
    assert "MoA · " in shown and "Alone · " in shown
    assert not [b for b in at.button if b.label == "Save rating"]
    captions = " ".join(c.value for c in at.caption)
    assert "Replay finished" in captions and "uniform rate" not in captions
    at.button(key="stop_replay").click()
    at = await asyncio.to_thread(at.run)
    assert [b for b in at.button if b.label == "Save rating"] and "Replay finished" not in " ".join(
        c.value for c in at.caption
    )


def test_history_replay_of_an_old_run_says_its_timing_is_derived(sqlite_url, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    run_id = old_run(sqlite_url)
    at = history(run_id).run()
    at.segmented_control(key="replay_speed").set_value("instant")
    at.button(key="replay").click().run()
    assert not at.exception
    assert any("uniform rate" in c.value for c in at.caption)
