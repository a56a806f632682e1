"""Two app replicas on one PostgreSQL: runs and ratings made in either appear in both.

Two `streamlit run` processes on different ports, DATABASE_URL pointing at the same
throw-away PostgreSQL database, every model call going to the fake OpenAI server. One
Playwright browser drives both at once: a run in each, a rating in one, and the other's
History shows both runs and the rating.
"""

from __future__ import annotations

import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest
import yaml
from sqlalchemy import create_engine, text

from moa_core.ui.run_view import run_link
from tests.browser_support import ROOT, ask, start_app, wait_idle, wait_run_done

pytestmark = [pytest.mark.browser, pytest.mark.postgres]
HISTORY = run_link("x").split("?", 1)[0]  # the History page's path, as the app links to it


def fake_config(url: str) -> dict:
    def agent(name: str, label: str) -> dict:
        return {"model": f"openai/fake-{name}@tokens=12,delay=0.02", "api_base": url, "label": label, "max_tokens": 32}

    return {
        "name": "team-fake",
        "layers": [{"proposers": [agent("p1", "Fake one"), agent("p2", "Fake two")]}],
        "aggregator": agent("agg", "Fake agg"),
        "timeout": 30,
        "num_retries": 0,
    }


def start_import(page, path) -> None:
    sidebar = page.get_by_test_id("stSidebar")
    sidebar.get_by_text("Import / export / save").click()
    sidebar.locator("input[type=file]").set_input_files(str(path))


def db_rows(url: str, sql: str) -> list[tuple]:
    eng = create_engine(url)
    try:
        with eng.connect() as c:
            return [tuple(r) for r in c.execute(text(sql))]
    finally:
        eng.dispose()


@pytest.fixture
def two_apps(pg_url, tmp_path):
    with ThreadPoolExecutor(2) as pool:  # both start at once: each takes a few seconds
        futures = [pool.submit(start_app, tmp_path / name, None, pg_url) for name in ("a", "b")]
    apps = [f.result() for f in futures if f.exception() is None]
    if len(apps) < len(futures):  # one did not start: stop the other, report why
        for app in apps:
            app.stop()
        raise next(f.exception() for f in futures if f.exception() is not None)
    yield apps
    for app in apps:  # stop both at once
        app.proc.terminate()
    for app in apps:
        try:
            app.proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            app.proc.kill()
            app.proc.wait(timeout=10)


def test_two_replicas_share_runs_and_ratings(browser, two_apps, fake_server, pg_url, tmp_path):
    app_a, app_b = two_apps
    assert app_a.url != app_b.url and app_a.db_url == app_b.db_url == pg_url
    cfg_path = tmp_path / "shared-config.yaml"
    cfg_path.write_text(yaml.safe_dump(fake_config(fake_server.url)))
    pages = []
    for app in (app_a, app_b):  # each step on both pages before waiting on either: both apps work at once
        page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
        page.set_default_timeout(60_000)
        page.goto(app.url + "/")
        pages.append(page)
    for page in pages:
        page.get_by_test_id("stApp").wait_for()
        wait_idle(page)
    for page in pages:
        start_import(page, cfg_path)
    for page in pages:
        wait_idle(page)
        page.get_by_text("team-fake").first.wait_for()
    page_a, page_b = pages
    try:
        # a run in each replica, both in flight at once
        ask(page_a, "Question asked on replica A?")
        ask(page_b, "Question asked on replica B?")
        wait_run_done(page_a, timeout=120_000)
        wait_run_done(page_b, timeout=120_000)
        runs = dict(db_rows(pg_url, "select question, id from run where status = 'done'"))
        assert set(runs) == {"Question asked on replica A?", "Question asked on replica B?"}, runs

        # a rating on replica A ...
        page_a.get_by_test_id("stSidebar").get_by_label("Your name (for ratings)").fill("alice")
        page_a.keyboard.press("Tab")
        wait_idle(page_a)
        page_a.get_by_role("button", name="Rate").nth(2).click()  # the aggregated answer
        pop = page_a.get_by_test_id("stPopoverBody")
        pop.get_by_text("5★").click()
        pop.get_by_label("Comment (optional)").fill("rated on A")
        pop.get_by_role("button", name="Save rating").click()
        page_a.get_by_text("Rating saved (5★)").wait_for()

        # ... is in replica B's History, beside both runs
        page_b.goto(app_b.url + HISTORY)
        wait_idle(page_b)
        page_b.get_by_text("2 run(s)").wait_for()  # the list itself is a canvas grid
        page_b.goto(app_b.url + run_link(runs["Question asked on replica A?"]))
        wait_idle(page_b)
        page_b.get_by_text("by alice — rated on A").wait_for()

        # and replica A's History shows B's run as it ran
        page_a.goto(app_a.url + run_link(runs["Question asked on replica B?"]))
        wait_idle(page_a)
        page_a.get_by_text("Question asked on replica B?").first.wait_for()
        page_a.get_by_text("MoA · Fake agg").wait_for()
    except Exception:
        out = ROOT / "test-artifacts"
        out.mkdir(exist_ok=True)
        for name, page in zip("ab", pages, strict=False):
            page.screenshot(path=str(out / f"replicas-{name}.png"), full_page=True)
        raise
    finally:
        for page in pages:
            page.context.close()
    assert db_rows(pg_url, "select score, rater from rating") == [(5, "alice")]
