"""The Evaluate page in a real browser with the bundled local models: a tiny judged
evaluation is stopped midway, resumed from the page, and reported."""

from __future__ import annotations

import pytest

from tests.browser_support import open_app, wait_idle
from tests.conftest import requires_local
from tests.test_browser_playground import db_rows

pytestmark = [pytest.mark.browser, pytest.mark.local_models, requires_local]

RUN_MS = 300_000


def goto(page, title: str) -> None:
    # Through the sidebar: loading /evaluate directly can show a "Page not found" dialog.
    page.get_by_test_id("stSidebarNav").get_by_text(title, exact=True).click()
    wait_idle(page)


def set_number(page, key: str, value: int) -> None:
    box = page.locator(f".st-key-{key} input")
    box.fill(str(value))
    box.press("Enter")
    wait_idle(page)


def test_stop_resume_and_report(page, app_server):
    open_app(page, app_server)
    goto(page, "Evaluate")
    page.get_by_text("A tiny local judge is weak evidence").first.wait_for()
    set_number(page, "ev_limit", 3)
    set_number(page, "ev_cap", 16)
    set_number(page, "ev_jtok", 24)
    page.locator(".st-key-ev_name input").fill("browser-eval")
    page.locator(".st-key-ev_name input").press("Enter")
    wait_idle(page)
    page.get_by_text("3 questions × 2 contenders = 6 answers").wait_for()

    page.locator(".st-key-ev_run button").click()
    # stop once two items are done
    page.wait_for_function("() => /\\b[2-8]\\/9 items/.test(document.body.innerText)", timeout=RUN_MS, polling=200)
    page.locator(".st-key-ev_stop button").first.click()
    wait_idle(page)
    # the stopped script cancels what was in flight and closes those runs
    for _ in range(60):
        statuses = [s for (s,) in db_rows(app_server, "select status from run")]
        if "running" not in statuses:
            break
        page.wait_for_timeout(500)
    assert "running" not in statuses and statuses.count("done") >= 2

    # the page knows the evaluation is half done and resumes it
    page.get_by_text("already has").wait_for()
    run_button = page.locator(".st-key-ev_run button")
    assert "Resume evaluation" in run_button.inner_text()
    run_button.click()
    page.get_by_text("Finished browser-eval").wait_for(timeout=RUN_MS)
    wait_idle(page)
    body = page.inner_text("body")
    assert "resumed" in body and "Judged win rates" in body
    done = "select count(*) from run where status = 'done' and json_extract(meta, '$.eval_item') = '{}'"
    answers = db_rows(app_server, done.format("answer"))
    assert answers == [(6,)]
    judged = db_rows(app_server, done.format("judge"))
    assert judged == [(3,)]
    votes = db_rows(app_server, "select count(*) from vote where rater = 'judge:local/qwen2.5-coder-0.5b'")
    assert votes[0][0] <= 3
