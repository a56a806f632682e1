"""The Analysis page in the browser with people and a judge voting on answers of different
lengths: the style-controlled comparison and the agreement tables are on screen. Leaves
test-artifacts/analysis-style-control.png and analysis-agreement.png (the README's screenshots)."""

from __future__ import annotations

import pytest

from moa_core.store import add_vote, open_db
from moa_core.store.db import dispose_engines
from tests.browser_support import ROOT, open_app, wait_idle
from tests.test_preference_data import answer, judge_run

pytestmark = pytest.mark.browser

FACTUAL = "What is the capital city of Australia?"
MATHS = "What is 12 multiplied by 12?"


def seed(url: str) -> None:
    engine = open_db(url)
    try:
        for q, short in ((FACTUAL, "Canberra."), (MATHS, "144")):
            s = answer(engine, "local/smollm2-135m", short, q)
            lo = answer(engine, "MoA · local-moa", "# Answer\n\n**Sure.**\n- one\n- two\n" * 5, q)
            mi = answer(engine, "local/qwen2.5-coder-0.5b", "A fair answer of medium length.", q)
            add_vote(engine, lo, s, "left", "alice")
            add_vote(engine, s, lo, "right", "bob")
            add_vote(engine, mi, s, "left", "alice")
            add_vote(engine, mi, s, "tie", "bob")
            add_vote(engine, lo, mi, "left", "carol")
            add_vote(engine, mi, lo, "right", "alice")
            add_vote(engine, lo, mi, "left", "bob")
            add_vote(engine, lo, s, "right", "judge:local/qwen", run_id=judge_run(engine, ["B", "A"], "factual"))
    finally:
        dispose_engines(url)


def test_style_control_and_agreement_views(page, app_server):
    seed(app_server.db_url)
    page.set_viewport_size({"width": 1400, "height": 1100})
    open_app(page, app_server)
    page.get_by_test_id("stSidebarNav").get_by_text("Analysis", exact=True).click()
    page.get_by_text("With and without style control").first.wait_for(timeout=60_000)
    wait_idle(page)
    body = page.inner_text("body")
    for heading in (
        "With and without style control",
        "By category",
        "Agreement and bias",
        "Cohen's kappa per pair of raters",
        "Position bias",
        "Judges against people",
    ):
        assert heading in body, heading
    out = ROOT / "test-artifacts"
    out.mkdir(exist_ok=True)
    for heading, name in (("With and without style control", "style-control"), ("Agreement and bias", "agreement")):
        page.get_by_text(heading, exact=True).first.scroll_into_view_if_needed()
        page.evaluate("() => window.scrollBy(0, 0)")
        page.screenshot(path=str(out / f"analysis-{name}.png"))
