"""One vote per pair and rater, in a real browser: the same rater reviews the same stored
pair in two browser contexts (two people's worth of tabs: separate cookies, separate
Streamlit sessions) at once and votes in both at the same moment."""

from __future__ import annotations

import time
import uuid

import pytest

from moa_core.events import CallRef, RunDone, RunStarted, Totals
from moa_core.store import Recorder, dispose_engines, open_db
from tests.browser_support import open_app, wait_idle
from tests.test_browser_arena import goto
from tests.test_browser_playground import db_rows
from tests.test_store_support import draft

pytestmark = [pytest.mark.browser]

QUESTION = "Which tab votes first?"
MOA_ANSWER, SOLO_ANSWER = "The MoA answer, combined.", "The single model's own answer."


def seed_playground_run(db_url: str) -> None:
    """A finished playground run with a MoA answer and one baseline (no model calls)."""
    engine = open_db(db_url)
    run_id, t = uuid.uuid4().hex, time.time()
    rec = Recorder(engine)
    rec.handle(RunStarted(run_id, QUESTION, [], {}, "h", "tabs-moa", "playground", t))
    calls = [
        (CallRef(run_id, "proposer", 0, 0, "openai/fake-p", "P"), "a draft"),
        (CallRef(run_id, "aggregator", 1, 0, "openai/fake-agg", "Agg"), MOA_ANSWER),
        (CallRef(run_id, "baseline", -1, 0, "openai/fake-solo", "solo-model"), SOLO_ANSWER),
    ]
    for ref, text in calls:
        for ev in draft(ref, text, t):
            rec.handle(ev)
    rec.handle(RunDone(run_id, "done", MOA_ANSWER, Totals(), t + 1))
    dispose_engines(db_url)


def open_review(page, server) -> None:
    open_app(page, server)
    goto(page, "Arena")
    page.get_by_test_id("stSidebar").get_by_label("Your name (for ratings)").fill("ivy")
    page.keyboard.press("Tab")
    wait_idle(page)
    page.locator(".st-key-arena_mode").get_by_text("Blind review", exact=True).click()
    wait_idle(page)
    page.get_by_text(QUESTION).wait_for()


def test_same_rater_two_browser_contexts_one_vote(browser, app_server):
    seed_playground_run(app_server.db_url)
    contexts = [browser.new_context(viewport={"width": 1400, "height": 1000}) for _ in range(2)]
    try:
        pages = [ctx.new_page() for ctx in contexts]
        for pg in pages:
            pg.set_default_timeout(60_000)
            open_review(pg, app_server)
            assert "tabs-moa" not in pg.inner_text("body") and "solo-model" not in pg.inner_text("body")
        # Both clicks go out before either page has heard back: the two votes race in the app.
        pages[0].locator(".st-key-review_vote_A button").click()
        pages[1].locator(".st-key-review_vote_B button").click()
        for pg in pages:
            pg.locator("[data-testid='stAlertContentSuccess'], [data-testid='stAlertContentWarning']").first.wait_for()
            wait_idle(pg)
        bodies = [pg.inner_text("body") for pg in pages]
        saved = [b for b in bodies if "Vote saved" in b]
        refused = [b for b in bodies if "already voted on this pair" in b]
        assert len(saved) == 1 and len(refused) == 1, bodies
        assert "MoA · tabs-moa" in saved[0] and "solo-model" in saved[0]
        assert "tabs-moa" not in refused[0] and "solo-model" not in refused[0]
        votes = db_rows(app_server, "select rater, outcome from vote")
        assert len(votes) == 1 and votes[0][0] == "ivy"
        winner = 0 if "Vote saved" in bodies[0] else 1
        assert votes[0][1] == ("left", "right")[winner]  # the stored vote is the saved page's choice
    finally:
        for ctx in contexts:
            ctx.close()
