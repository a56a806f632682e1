"""Offline means offline: used in a browser, the app asks nothing of any host but this one.

Every page is visited and a question is run (on the fake OpenAI server, also on 127.0.0.1).
Every request the browser makes (documents, scripts, styles, fonts, images, the websocket)
is recorded, and so is every resource URL in each page's DOM: headless Chromium does not
fetch favicons, while a desktop browser does.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from moa_core.ui.run_view import run_link
from tests.browser_support import ask, open_app, wait_idle, wait_run_done
from tests.test_browser_playground import db_rows, import_config

pytestmark = pytest.mark.browser

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
PAGES = ["Arena", "Analysis", "Evaluate", "Daily challenge", "History", "Models"]
RESOURCES_JS = """() => [
  ...[...document.querySelectorAll('link[href]')].map(l => l.href),
  ...[...document.querySelectorAll('script[src], img[src], iframe[src], source[src], embed[src], video[src], audio[src]')]
      .map(e => e.src),
  ...[...document.querySelectorAll('object[data]')].map(e => e.data),
]"""


def leaves_this_host(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme not in ("data", "blob", "about") and parts.hostname not in LOOPBACK


def test_every_page_and_a_run_ask_nothing_of_another_host(page, app_server, fake_server, tmp_path):
    requests: list[str] = []
    page.context.on("request", lambda r: requests.append(r.url))
    page.on("websocket", lambda ws: requests.append(ws.url))
    resources: dict[str, list[str]] = {}

    def look(where: str) -> None:
        wait_idle(page)
        resources[where] = page.evaluate(RESOURCES_JS)

    def agent(name: str) -> dict:
        return {"model": f"openai/fake-{name}", "api_base": fake_server.url, "max_tokens": 16}

    open_app(page, app_server)
    import_config(
        page,
        tmp_path,
        {
            "name": "offline-cfg",
            "num_retries": 0,
            "layers": [{"proposers": [agent("p0"), agent("p1")]}],
            "aggregator": agent("agg"),
            "baselines": [agent("solo")],
        },
        "offline.yaml",
    )
    page.get_by_text("offline-cfg").first.wait_for()
    ask(page, "Does this page call home?")
    wait_run_done(page)
    look("Playground")
    for title in PAGES:
        page.get_by_test_id("stSidebarNav").get_by_text(title, exact=True).click()
        look(title)
    run_id = db_rows(app_server, "select id from run order by created_at desc limit 1")[0][0]
    page.goto(app_server.url + run_link(run_id))
    page.get_by_text("Does this page call home?").first.wait_for()
    look("History run page")
    page.reload()
    page.get_by_test_id("stApp").wait_for()
    look("reloaded run page")

    print(f"\n{len(resources)} pages walked, {len(requests)} requests observed")
    assert len(resources) == 9
    assert any(u.startswith("ws://127.0.0.1") for u in requests), "the websocket was seen"
    assert sum(1 for u in requests if u.startswith("http://127.0.0.1")) >= 20
    assert [u for u in requests if leaves_this_host(u)] == []
    assert {
        w: [u for u in urls if leaves_this_host(u)] for w, urls in resources.items() if any(map(leaves_this_host, urls))
    } == {}
    icons = page.evaluate("[...document.querySelectorAll('link[rel~=icon]')].map(l => l.href)")
    assert icons and all(u.startswith("data:image/svg+xml") for u in icons), icons
