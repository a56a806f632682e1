"""Replay in a real browser: a stored run streams again in History at the recorded pace,
its text arriving piece by piece, and Stop replay ends it and shows the stored run."""

from __future__ import annotations

import re
import time
import uuid

import pytest

from moa_core.events import CallRef, DraftDone, DraftStarted, RunDone, RunStarted, TokenDelta, Totals, Usage
from moa_core.store import Recorder, dispose_engines, open_db
from tests.browser_support import open_app, wait_idle

pytestmark = [pytest.mark.browser]

WORDS = [f"word{i:02d}" for i in range(40)]


def seed_slow_run(db_url: str) -> str:
    """A run whose one proposer streamed 40 words over 40 s, the aggregator after it."""
    engine = open_db(db_url)
    run_id, t = uuid.uuid4().hex, time.time() - 600
    rec = Recorder(engine, flush_interval=None)
    rec.handle(RunStarted(run_id, "A slow question?", [], {}, "h", "slow", "playground", t))
    slow = CallRef(run_id, "proposer", 0, 0, "openai/fake-slow", "Slowpoke")
    rec.handle(DraftStarted(slow, "", {}, t))
    for i, w in enumerate(WORDS):
        rec.handle(TokenDelta(slow, f"{w} ", t + 1 + i))
    text = "".join(f"{w} " for w in WORDS)
    rec.handle(DraftDone(slow, text, "stop", Usage(5, 40), 0.0, t, t + 41, 1.0))
    agg = CallRef(run_id, "aggregator", 1, 0, "openai/fake-agg", "Agg")
    rec.handle(DraftStarted(agg, "", {}, t + 41))
    rec.handle(TokenDelta(agg, "combined answer", t + 42))
    rec.handle(DraftDone(agg, "combined answer", "stop", Usage(5, 2), 0.0, t + 41, t + 42, 1.0))
    rec.handle(RunDone(run_id, "done", "combined answer", Totals(10, 42, 0.0, 42.0, 2, 0), t + 42))
    dispose_engines(db_url)
    return run_id


def test_replay_streams_then_stop_shows_the_stored_run(page, app_server):
    run_id = seed_slow_run(app_server.db_url)
    open_app(page, app_server, f"/History?run={run_id}")
    main = page.get_by_test_id("stMain")
    main.get_by_text("link to this run").first.wait_for()
    page.get_by_role("button", name="Replay").click()
    # The third word arrives about 3 s in, in a live column (with its cursor); the last is 40 s away.
    main.get_by_text(re.compile(r"word02.*▌")).wait_for(timeout=30_000)
    assert page.get_by_role("button", name="Stop replay").count() == 1
    assert main.get_by_text("word39").count() == 0 and main.get_by_text("link to this run").count() == 0
    page.get_by_role("button", name="Stop replay").click()
    wait_idle(page)
    main.get_by_text("link to this run").first.wait_for()
    assert (
        main.get_by_text("word39", exact=False).count() > 0
        and page.get_by_role("button", name="Stop replay").count() == 0
    )
    assert main.get_by_text("Replay finished").count() == 0
