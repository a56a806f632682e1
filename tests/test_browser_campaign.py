"""Two raters vote in one campaign at once, each in its own browser context (own cookies,
own Streamlit session): each gets blind pairs, sees the names only after voting, the
database ends with every vote the campaign needs, none lost, none twice, and the
Analysis page's agreement table fills in."""

from __future__ import annotations

import pytest

from moa_core.store import dispose_engines, open_db
from moa_core.store.campaigns import create_campaign
from tests.browser_support import open_app, wait_idle
from tests.campaign_support import seed_answers
from tests.test_browser_arena import goto
from tests.test_browser_playground import db_rows

pytestmark = [pytest.mark.browser]

RATERS = ("ann", "ben")


def _open(page, server, cid: str, rater: str) -> None:
    open_app(page, server, f"/Campaign?c={cid}")
    page.get_by_test_id("stSidebar").get_by_label("Your name (for ratings)").fill(rater)
    page.keyboard.press("Tab")
    wait_idle(page)
    page.locator(".st-key-campaign_answer_A").wait_for()


def test_two_raters_vote_in_one_campaign_at_once(browser, app_server):
    engine = open_db(app_server.db_url)
    pairs = seed_answers(engine, questions=2, contenders=2, prefix="bq")
    cid = create_campaign(engine, "Two raters", pairs, target_votes=2, double_rate=0.0, repeat_rate=0.0)
    dispose_engines(app_server.db_url)
    contexts = [browser.new_context(viewport={"width": 1400, "height": 1000}) for _ in RATERS]
    try:
        pages = [ctx.new_page() for ctx in contexts]
        for pg, rater in zip(pages, RATERS, strict=True):
            pg.set_default_timeout(60_000)
            _open(pg, app_server, cid, rater)
        for _ in range(len(pairs)):
            for pg in pages:  # blind until the vote
                assert "model-0" not in pg.inner_text("body") and "model-1" not in pg.inner_text("body")
            # Both clicks go out before either page has heard back.
            pages[0].locator(".st-key-campaign_vote_A button").click()
            pages[1].locator(".st-key-campaign_vote_tie button").click()
            for pg in pages:
                pg.get_by_text("Vote saved").wait_for()
                body = pg.inner_text("body")
                assert "model-0" in body and "model-1" in body  # revealed after the vote
                pg.locator(".st-key-campaign_next button").click()
                wait_idle(pg)
        for pg in pages:
            pg.get_by_text("Nothing left for you to rate").wait_for()
        votes = db_rows(
            app_server,
            f"select rater, left_generation_id, right_generation_id, outcome from vote where campaign_id = '{cid}'",
        )
        assert sorted(v[0] for v in votes) == ["ann", "ann", "ben", "ben"]
        assert {v[3] for v in votes if v[0] == "ann"} == {"left"} and {v[3] for v in votes if v[0] == "ben"} == {"tie"}
        per_pair = {}
        for rater, left, right, _ in votes:
            per_pair.setdefault(frozenset((left, right)), set()).add(rater)
        assert list(per_pair.values()) == [set(RATERS), set(RATERS)]
        claims = db_rows(
            app_server, f"select count(*) from campaign_assignment where campaign_id = '{cid}' and status = 'open'"
        )
        assert claims[0][0] == 0
        # Both raters rated both pairs: the Analysis page's agreement table fills in.
        goto(pages[0], "Analysis")
        pages[0].get_by_text("Cohen's kappa per pair of raters").wait_for()
        doubly = pages[0].get_by_test_id("stMetric").filter(has_text="Doubly rated items")
        assert doubly.get_by_test_id("stMetricValue").inner_text().strip() == "2"
    finally:
        for ctx in contexts:
            ctx.close()
