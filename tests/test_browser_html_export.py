"""The exported run opened from disk in chromium with the network blocked: every column's
text is on screen, no request leaves the file, no dialog opens; with scripts off the page
reads the same, and with scripts on Replay types the columns again and restores them."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import expect

from moa_core.store import open_db
from moa_core.store.html_export import export_run_html
from tests.html_export_support import (
    BASELINE_TEXT,
    CHAIRMAN_TEXT,
    COMMENT,
    FINAL_TEXT,
    HOSTILE_LABEL,
    PROPOSER_TEXTS,
    council_config,
    record_hostile_run,
    record_pipeline,
    visible,
)


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("html")
    engine = open_db(f"sqlite:///{tmp / 'moa.db'}")
    return export_run_html(engine, record_hostile_run(engine), tmp / "run.html")


def open_offline(browser, path: Path, *, javascript: bool, csp: bool = True):
    """A page on `path` where every request but the file itself is aborted and recorded
    (`csp=False`: the page's Content-Security-Policy ignored, so the content alone is tested)."""
    ctx = browser.new_context(
        java_script_enabled=javascript, bypass_csp=not csp, viewport={"width": 1400, "height": 1000}
    )
    url = path.resolve().as_uri()
    blocked: list[str] = []
    requests: list[str] = []
    dialogs: list[str] = []

    def route(r) -> None:
        if r.request.url == url:
            r.continue_()
        else:
            blocked.append(r.request.url)
            r.abort()

    ctx.route("**/*", route)
    page = ctx.new_page()
    page.on("request", lambda req: requests.append(req.url))
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(url)
    page.wait_for_load_state("load")
    return ctx, page, url, blocked, requests, dialogs


def column_texts() -> list[str]:
    return [visible(t)[0] for t in [*PROPOSER_TEXTS, FINAL_TEXT, BASELINE_TEXT]]


@pytest.mark.parametrize(
    ("javascript", "csp"), [(False, True), (True, True), (True, False)], ids=["scripts-off", "scripts-on", "no-csp"]
)
def test_exported_run_reads_offline(browser, exported: Path, javascript: bool, csp: bool) -> None:
    ctx, page, url, blocked, requests, dialogs = open_offline(browser, exported, javascript=javascript, csp=csp)
    try:
        cols = page.locator("section.col")
        assert cols.count() == 5
        for text in column_texts():
            assert page.get_by_text(text, exact=False).first.is_visible(), text
        body = page.inner_text("body")
        assert HOSTILE_LABEL in body and "Nice <img src=x onerror=alert(11)>" in body and COMMENT[:4] in body
        assert page.locator("svg.chart rect.bar").count() == 5
        # Only the file itself; not even a favicon.
        assert blocked == [] and requests == [url], (blocked, requests)
        assert dialogs == []
        assert page.locator("img, iframe, object, embed").count() == 0
        hrefs = page.eval_on_selector_all("a", "as => as.map(a => a.href)") if javascript else None
        if hrefs is not None:
            assert all(h.startswith(("http:", "https:", "mailto:")) for h in hrefs), hrefs
        # The replay controls appear only when the script can drive them.
        assert page.locator("#replay").is_visible() is javascript
    finally:
        ctx.close()


def test_replay_types_every_column_again(browser, exported: Path) -> None:
    ctx, page, url, blocked, requests, dialogs = open_offline(browser, exported, javascript=True)
    try:
        final = page.locator("section.col.aggregator .out")
        full = final.inner_text()
        page.click("#replay")
        # Locator waits: the page's CSP forbids the eval a wait_for_function would need.
        # Typing: the aggregator (first token 1.1 s into the run) starts empty, then grows.
        expect(page.locator(".out.typing")).to_have_count(5)
        assert len(final.inner_text()) < len(full)
        expect(final).to_contain_text("The aggregated answer")
        # At the end every column is back as rendered, the link included.
        expect(page.locator(".out.typing")).to_have_count(0, timeout=20_000)
        assert final.inner_text() == full
        assert page.locator("section.col.aggregator a[href='https://example.org/ok']").count() == 1
        assert page.inner_text("#replay") == "Replay"
        assert blocked == [] and requests == [url] and dialogs == []
    finally:
        ctx.close()


@pytest.fixture(scope="module")
def exported_council(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("council")
    engine = open_db(f"sqlite:///{tmp / 'moa.db'}")
    data = record_pipeline(engine, council_config())
    return export_run_html(engine, data["run"]["id"], tmp / "council.html")


def test_exported_council_run_shows_its_stages_offline(browser, exported_council: Path) -> None:
    """Scripts off: the proposals, the reviewers' own row, the ranking table (the hostile label
    as text) and the chairman, in that order, all on screen, and nothing requested."""
    ctx, page, url, blocked, requests, dialogs = open_offline(browser, exported_council, javascript=False)
    try:
        headings = page.locator("h2").all_inner_texts()
        assert headings[:3] == [
            "Layer 1 · 3 proposers",
            "Layer 2 · peer review by 2 reviewers (answers anonymised)",
            "Aggregated answer and single models",
        ]
        assert page.locator("section.col.reviewer").count() == 2
        expect(page.get_by_text("Review by Rev one")).to_be_visible()
        ranking = page.locator(".stage-result table").first
        expect(ranking).to_be_visible()
        assert ranking.locator("th").all_inner_texts() == ["place", "model", "mean rank", "Borda", "votes"]
        models = ranking.locator("tbody td:nth-child(2)").all_inner_texts()
        assert sorted(models) == sorted([HOSTILE_LABEL, "P2", "P3"])
        assert ranking.locator("b, a").count() == 0
        expect(page.get_by_text(CHAIRMAN_TEXT)).to_be_visible()
        assert blocked == [] and requests == [url] and dialogs == []
    finally:
        ctx.close()
