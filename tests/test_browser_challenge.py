"""The daily challenge in a real browser with the bundled local models: all five steps once."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import create_engine, text

from tests.browser_support import RUN_TIMEOUT_MS, open_app, wait_idle
from tests.conftest import requires_local

pytestmark = [pytest.mark.browser, pytest.mark.local_models, requires_local]

QUESTION = "At what temperature does water boil at sea level?"
MY_PROMPT = "Merge these answers into one short, correct answer.\nQuestion: {question}\nAnswers:\n{drafts}"


def db_rows(server, sql: str) -> list[tuple]:
    eng = create_engine(server.db_url)
    try:
        with eng.connect() as c:
            return [tuple(r) for r in c.execute(text(sql))]
    finally:
        eng.dispose()


def set_number(page, label: str, index: int, value: int) -> None:
    box = page.get_by_label(label).nth(index)
    box.fill(str(value))
    box.press("Enter")
    wait_idle(page)


def test_challenge_walkthrough(page, app_server) -> None:
    # Through the navigation, as a user would (and a server's very first request to a deep
    # link shows Streamlit's "Page not found" dialog over the right page).
    open_app(page, app_server)
    page.get_by_test_id("stSidebarNav").get_by_text("Daily challenge").click()
    page.get_by_text("1 · Your question").wait_for()
    wait_idle(page)
    page.get_by_test_id("stSidebar").get_by_label("Your name (for ratings)").fill("alice")
    page.keyboard.press("Tab")
    wait_idle(page)

    # 1. the question
    page.get_by_role("textbox", name="Question").fill(QUESTION)
    page.keyboard.press("Tab")
    wait_idle(page)

    # 2. three independent runs: two models, short answers
    page.get_by_test_id("stSelectbox").nth(1).click()
    page.get_by_role("option", name="local/smollm2-135m").click()
    wait_idle(page)
    for i in range(3):
        set_number(page, "Max tokens", i, 40)
    page.get_by_role("button", name="Run the drafts").click()
    page.get_by_text("3 · What differs").wait_for(timeout=RUN_TIMEOUT_MS)
    wait_idle(page, RUN_TIMEOUT_MS)
    runs = db_rows(app_server, "select id, kind, status from run")
    assert len(runs) == 1 and runs[0][1:] == ("challenge", "done")
    run_id = runs[0][0]
    gens = db_rows(app_server, f"select call_id, model, status from generation where run_id='{run_id}' order by slot")
    assert [g[0] for g in gens] == ["proposer-0-0", "proposer-0-1", "proposer-0-2"]
    assert [g[1] for g in gens] == ["local/qwen2.5-coder-0.5b", "local/smollm2-135m", "local/qwen2.5-coder-0.5b"]
    assert all(g[2] == "done" for g in gens)

    # 3. what differs: every draft aligned, with the legend and the counts
    page.get_by_text("Statements only one draft makes").wait_for()  # the script may still be running
    page.get_by_text("4 · Write your aggregator prompt").wait_for()
    wait_idle(page)
    body = page.inner_text("body")
    assert "Statements in every draft" in body and "Possible contradictions" in body
    assert any(tag in body for tag in ("only here", "in every draft", "in some drafts"))

    # 4. my own aggregator prompt
    page.get_by_role("textbox", name="Aggregator prompt").fill(MY_PROMPT)
    page.keyboard.press("Tab")
    wait_idle(page)
    set_number(page, "Max tokens", 3, 40)
    page.get_by_role("button", name="Run the synthesis").click()
    page.get_by_text("5 · Compare and rate").wait_for(timeout=RUN_TIMEOUT_MS)
    page.get_by_text("Saved as a challenge run").wait_for(timeout=RUN_TIMEOUT_MS)
    wait_idle(page, RUN_TIMEOUT_MS)

    # 5. compare: sources per sentence, kept / dropped, then rate the synthesis
    page.get_by_text("Draft-only statements it dropped").wait_for()
    body = page.inner_text("body")
    assert "Where each sentence of the synthesis came from" in body
    assert "Draft-only statements it kept" in body and "Draft-only statements it dropped" in body
    assert "from Draft" in body or "new" in body
    page.get_by_role("button", name="Rate").first.click()
    pop = page.get_by_test_id("stPopoverBody")
    pop.get_by_text("5★").click()
    pop.get_by_role("button", name="Save rating").click()
    page.get_by_text("Rating saved (5★)").wait_for()

    ((status, final, meta),) = db_rows(app_server, f"select status, final_text, meta from run where id='{run_id}'")
    meta = json.loads(meta)
    assert status == "done" and final.strip()
    assert meta["challenge"]["attempts"][0]["template"] == MY_PROMPT
    assert meta["diversity"]["aggregator"] is not None and len(meta["diversity"]["layers"][0]["names"]) == 3
    ((agg_prompt, agg_text),) = db_rows(
        app_server, f"select system_prompt, text from generation where run_id='{run_id}' and role='aggregator'"
    )
    assert agg_prompt.startswith("Merge these answers into one short, correct answer.\nQuestion: " + QUESTION)
    assert agg_text == final
    ratings = db_rows(
        app_server, "select r.score, r.rater, g.role from rating r join generation g on g.id = r.generation_id"
    )
    assert ratings == [(5, "alice", "aggregator")]

    # the challenge is in History, and opens as it ran
    page.goto(f"{app_server.url}/History")
    page.get_by_text("Open a run").wait_for()
    wait_idle(page)
    page.get_by_test_id("stMultiSelect").filter(has_text="Kind").click()
    page.get_by_role("option", name="challenge").click()
    page.keyboard.press("Escape")
    wait_idle(page)
    page.get_by_text("1 run(s)").wait_for()
    page.get_by_test_id("stSelectbox").filter(has_text="Open a run").click()
    page.get_by_role("option").filter(has_text=QUESTION).click()
    page.get_by_text("link to this run").wait_for()
    wait_idle(page)
    assert f"run={run_id}" in page.url
    assert page.get_by_text("MoA · Synthesis").count() >= 1
    assert "daily challenge" in page.inner_text("body")  # the preset of a challenge run
