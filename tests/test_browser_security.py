"""Hostile model output and questions are inert in a real browser: no dialog, no script."""

from __future__ import annotations

import pytest

from tests.browser_support import ask, open_app, wait_run_done
from tests.test_browser_playground import db_rows, import_config

pytestmark = pytest.mark.browser

IMG = "<img src=x onerror=alert(1)>"
SCRIPT = "<script>alert(2)</script>"
JS_LINK = "[click me](javascript:alert(3))"


def hostile_config() -> dict:
    def agent(label: str, text: str) -> dict:
        return {"model": "openai/hostile", "label": label, "max_tokens": 64, "extra": {"mock_response": text}}

    return {
        "name": "hostile <b>cfg</b>",
        "layers": [
            {
                "proposers": [
                    agent("img", f"before {IMG} after"),
                    agent("script", f"x {SCRIPT} y"),
                    agent("link", f"see {JS_LINK}"),
                ]
            }
        ],
        "aggregator": agent("agg <i>x</i>", f"final {IMG} {SCRIPT} {JS_LINK}"),
        "baselines": [agent("solo", SCRIPT)],
        "num_retries": 0,
    }


def test_hostile_output_is_shown_as_text_and_never_runs(page, app_server, tmp_path):
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    open_app(page, app_server)
    import_config(page, tmp_path, hostile_config(), "hostile.yaml")
    ask(page, f"Tell me about {IMG} and {SCRIPT}")
    wait_run_done(page)
    body = page.inner_text("body")
    assert "onerror=alert(1)" in body, "the img tag should be shown as text"
    assert "<script>alert(2)</script>" in body
    # no element created from model output
    assert page.locator("img[src='x']").count() == 0
    assert page.evaluate("[...document.scripts].filter(s => s.textContent.includes('alert(')).length") == 0
    # a click from script follows an anchor's href as a user's click would
    page.evaluate(
        "[...document.querySelectorAll('a')].filter(a => a.innerText.includes('click me')).forEach(a => a.click())"
    )
    page.wait_for_timeout(500)
    assert not dialogs
    assert (
        page.evaluate("[...document.querySelectorAll('a')].filter(a => a.href.startsWith('javascript:')).length") == 0
    )
    statuses = db_rows(app_server, "select status from run")
    assert statuses and statuses[-1][0] == "done"
