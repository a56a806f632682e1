"""The Arena in a real browser: a blind battle between two bundled local models, a vote cast
while they are still streaming, identities revealed, the vote stored, the leaderboard."""

from __future__ import annotations

import pytest

from tests.browser_support import open_app, wait_idle
from tests.conftest import requires_local
from tests.test_browser_playground import db_rows

pytestmark = [pytest.mark.browser, pytest.mark.local_models, requires_local]

SMOL, QWEN = "local/smollm2-135m", "local/qwen2.5-coder-0.5b"
# Both answer columns show model text (not the "waiting" caption) of at least a few characters.
BOTH_STREAMING_JS = """() => ['A', 'B'].every(s => {
  const el = document.querySelector('.st-key-arena_answer_' + s);
  const t = el ? el.innerText.trim() : '';
  return t.length >= 8 && !t.startsWith('waiting');
})"""


def pick(page, key: str, option: str) -> None:
    page.locator(f".st-key-{key}").click()
    page.get_by_role("option", name=option, exact=True).click()
    wait_idle(page)


def goto(page, title: str) -> None:
    # Through the sidebar navigation: loading /arena directly shows Streamlit's
    # "Page not found" dialog over the (correct) page, which makes the page inert.
    page.get_by_test_id("stSidebarNav").get_by_text(title, exact=True).click()
    wait_idle(page)


def test_blind_battle_vote_while_streaming_then_leaderboard(page, app_server):
    open_app(page, app_server)
    goto(page, "Arena")
    page.get_by_test_id("stSidebar").get_by_label("Your name (for ratings)").fill("alice")
    page.keyboard.press("Tab")
    wait_idle(page)

    pick(page, "arena_c1", SMOL)
    pick(page, "arena_c2", QWEN)
    page.get_by_text("Single-model settings").click()
    tokens = page.locator(".st-key-arena_max_tokens input")
    tokens.fill("300")
    tokens.press("Enter")
    wait_idle(page)
    box = page.locator(".st-key-arena_question textarea")
    box.fill("Write a long story about a lighthouse keeper and the storm that changed his life.")
    box.press("Tab")
    wait_idle(page)

    page.locator(".st-key-arena_start button").click()
    page.wait_for_function(BOTH_STREAMING_JS, timeout=180_000, polling=100)
    body = page.inner_text("body")
    assert SMOL not in body and QWEN not in body, "identities must stay hidden before the vote"
    page.locator(".st-key-arena_vote_A button").click()

    page.get_by_text("Vote saved").wait_for(timeout=120_000)
    wait_idle(page)
    success = page.get_by_test_id("stAlertContentSuccess").inner_text()
    assert SMOL in success and QWEN in success, "identities revealed after the vote"

    votes = db_rows(app_server, "select outcome, rater, blind, left_generation_id, right_generation_id from vote")
    assert len(votes) == 1
    outcome, rater, blind, left_id, right_id = votes[0]
    assert (outcome, rater, bool(blind)) == ("left", "alice", True)
    gens = {
        r[0]: r[1:]
        for r in db_rows(
            app_server,
            "select g.id, g.model, g.status, g.text, r.status, r.kind from generation g join run r on r.id = g.run_id",
        )
    }
    assert {gens[left_id][0], gens[right_id][0]} == {SMOL, QWEN}
    a_model = gens[left_id][0]
    assert success.index("A was") < success.index(a_model) < success.index("B was")
    assert all(gens[i][2].strip() for i in (left_id, right_id)), "the vote references the partial answers"
    assert all(gens[i][4] == "arena" for i in (left_id, right_id))
    print({i: (g[0], g[1], g[3], len(g[2])) for i, g in gens.items()})
    # voting stopped the answers that were still streaming
    assert any(gens[i][1] == "cancelled" and gens[i][3] == "cancelled" for i in (left_id, right_id))

    goto(page, "Analysis")
    page.get_by_text("Leaderboard", exact=True).wait_for()
    page.wait_for_function(
        "names => { const p = document.querySelector('.js-plotly-plot');"
        " return p && names.every(n => p.textContent.includes(n)); }",
        arg=[SMOL, QWEN],
        timeout=60_000,
    )
