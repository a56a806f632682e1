"""Both contenders streaming at once, and every way the stream can stop (fake OpenAI server).

The screen is replaced by boxes that count updates; Streamlit's own stop (raised from a
screen update when the user clicks while the script runs) is simulated by raising a
BaseException from one.
"""

from __future__ import annotations

import asyncio
import random
import threading

import pytest

from moa_core import arena
from moa_core.store import get_run, open_db
from moa_core.ui import arena as ui
from tests.conftest import fake_agent


class ScriptStopped(BaseException):
    """Stands in for Streamlit's StopException/RerunException (BaseException, like them)."""


class Box:
    def __init__(self, on_update=None):
        self.updates: list[str] = []
        self.on_update = on_update

    def markdown(self, text: str) -> None:
        self.updates.append(text)
        if self.on_update:
            self.on_update(len(self.updates))

    def caption(self, text: str) -> None:
        pass


def boxes(on_update=None) -> dict[str, ui.LiveColumn]:
    return {s: ui.LiveColumn(s, Box(on_update), Box()) for s in arena.SIDES}


@pytest.fixture
def engine(tmp_path):
    return open_db(f"sqlite:///{tmp_path / 'moa.db'}")


def contender(server, name: str, **opts) -> arena.Contender:
    agent = fake_agent(server, name, **opts)
    return arena.Contender(f"model:{agent.model}", agent=agent)


def battle(server, a_opts: dict, b_opts: dict) -> arena.Battle:
    return arena.new_battle(
        "Tell me a story.", contender(server, "a", **a_opts), contender(server, "b", **b_opts), random.Random(0)
    )


def states(engine, b: arena.Battle) -> dict[str, tuple[str, str, str]]:
    out = {}
    for s in arena.SIDES:
        data = get_run(engine, b.run_ids[s])
        g = arena.final_generation(data["generations"])
        out[s] = (data["run"]["status"], g["status"], g["text"])
    return out


SLOW = {"tokens": 400, "delay": 0.01}


def test_both_stream_to_the_end_and_are_recorded(engine, fake_server):
    b = battle(fake_server, {"tokens": 12}, {"tokens": 20})
    cols = boxes()
    results = asyncio.run(ui._stream_battle(engine, b, cols))
    assert {s: r.status for s, r in results.items()} == {"A": "done", "B": "done"}
    assert b.closed.is_set()
    for s, (run_status, gen_status, text) in states(engine, b).items():
        assert run_status == "done" and gen_status == "done" and text == results[s].final_text
        assert cols[s].text == text  # the column ends with the whole answer


def test_a_stop_request_winds_both_down_with_partial_text(engine, fake_server):
    b = battle(fake_server, SLOW, SLOW)

    def vote_after(n: int) -> None:
        if n == 5:
            b.stop.set()  # what the vote callback does, possibly from another thread

    results = asyncio.run(ui._stream_battle(engine, b, boxes(vote_after)))
    assert results == {} and b.closed.is_set()
    for run_status, gen_status, text in states(engine, b).values():
        assert (run_status, gen_status) == ("cancelled", "cancelled") and text.strip()
    verdict = arena.judge_vote("A", {s: arena.side_state(get_run(engine, b.run_ids[s])) for s in arena.SIDES})
    assert verdict.ok and verdict.outcome == "left"


def test_a_stopped_script_records_everything_before_it_propagates(engine, fake_server):
    b = battle(fake_server, SLOW, SLOW)

    def stopped(n: int) -> None:
        if n == 3:
            raise ScriptStopped

    with pytest.raises(ScriptStopped):
        asyncio.run(ui._stream_battle(engine, b, boxes(stopped)))
    assert b.closed.is_set()
    assert all(s[:2] == ("cancelled", "cancelled") for s in states(engine, b).values())


def test_stop_from_another_thread_while_no_tokens_arrive(engine, fake_server):
    # ttft: both answers are silent for a while; the stop must not wait for a token.
    b = battle(fake_server, {"ttft": 8, "tokens": 5}, {"ttft": 8, "tokens": 5})
    threading.Timer(0.5, b.stop.set).start()
    results = asyncio.run(asyncio.wait_for(ui._stream_battle(engine, b, boxes()), timeout=20))
    assert results == {} and b.closed.is_set()
    assert all(s[0] == "cancelled" for s in states(engine, b).values())


def test_a_failing_contender_stops_the_other(engine, fake_server):
    b = battle(fake_server, {"fail": 500}, SLOW)
    results = asyncio.run(ui._stream_battle(engine, b, boxes()))
    failed = [s for s, r in results.items() if r.status == "failed"]
    assert failed == [next(s for s in arena.SIDES if "fail" in b.sides[s].agent.model)]
    st = states(engine, b)
    other = "B" if failed == ["A"] else "A"
    assert st[failed[0]][0] == "failed" and st[other][0] == "cancelled"
    assert arena.judge_vote("tie", {s: arena.side_state(get_run(engine, b.run_ids[s])) for s in arena.SIDES}).invalid


def test_a_script_stopped_before_streaming_still_releases_the_vote(engine, fake_server):
    # With fast reruns the vote is handled on a new thread, which waits for `closed`.
    b = battle(fake_server, SLOW, SLOW)

    class Stopping(Box):
        def caption(self, text: str) -> None:
            raise ScriptStopped

    cols = {s: ui.LiveColumn(s, Stopping(), Box()) for s in arena.SIDES}
    with pytest.raises(ScriptStopped):
        ui._stream(engine, b, cols)
    assert b.closed.is_set() and b.status == "streaming"
