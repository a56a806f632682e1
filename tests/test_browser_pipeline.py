"""A council pipeline (propose → review → chairman) in a real browser: every reviewer streams
in its own column at once, the de-anonymised aggregate ranking appears above the chairman's
answer when the review stage ends, and the run reopens from History the same.

The first test runs on the fake OpenAI server (timed, deterministic rankings); the second
runs the bundled `council-local` preset on the local models, with short answers.
"""

from __future__ import annotations

import pytest
import yaml

from moa_core.config import PRESETS_DIR
from moa_core.ui.run_view import run_link
from tests.browser_support import ask, open_app, wait_idle, wait_run_done
from tests.conftest import requires_local
from tests.test_browser_playground import WATCH_JS, artifact, db_rows, import_config

pytestmark = pytest.mark.browser

NAMES = ["Ada", "Bob", "Cy"]
RANKING_HEADING = "Aggregate ranking by the reviewers"


def agent(url: str, name: str, label: str, **opts: object) -> dict:
    """A fake-server agent (tests/fake_openai.py: the options ride in the model name)."""
    suffix = ",".join(f"{k}={v}" for k, v in opts.items())
    return {"model": f"openai/fake-{name}@{suffix}", "label": label, "api_base": url, "max_tokens": 64}


def fake_council(url: str) -> dict:
    # Reviewers stream ~1.5 s each, so streaming "at once" shows as overlap; each ends with a
    # ranking (letters are per reviewer: the engine shuffles the answers for each).
    return {
        "name": "fake-council",
        "num_retries": 0,
        "timeout": 30,
        "stages": [
            {"kind": "propose", "agents": [agent(url, f"p{i}", n, tokens=6, delay=0.02) for i, n in enumerate(NAMES)]},
            {
                "kind": "review",
                "agents": [
                    agent(url, f"r{i}", n, tokens=30, delay=0.05, rank=rank)
                    for i, (n, rank) in enumerate(zip(NAMES, ["ABC", "CAB", "BCA"], strict=True))
                ],
            },
            {
                "kind": "synthesize",
                "with_reviews": True,
                "agents": [agent(url, "chair", "Chair", tokens=8, delay=0.02)],
            },
        ],
    }


def watch(page, titles: list[str]) -> None:
    page.evaluate(WATCH_JS, titles)


def streamed(page) -> list[dict]:
    seen = page.evaluate("window.__proposers")
    assert len(seen) == 3 and all(None not in s.values() for s in seen), seen
    return seen


def ranking_text(page) -> str:
    """The aggregate ranking table's text, once it is on the page, checked to sit above the chairman."""
    page.get_by_text(RANKING_HEADING, exact=True).first.wait_for()
    table = page.get_by_test_id("stTable").first
    chair = page.locator("strong", has_text="MoA · ").first
    assert table.bounding_box()["y"] < chair.bounding_box()["y"], "the ranking is not above the final answer"
    return table.inner_text()


def run_council(page, app_server, tmp_path, config: dict, question: str, shot: str) -> tuple[list[dict], str]:
    """Import `config` (a council), ask, wait for the end: how each reviewer column streamed,
    and the ranking table's text (every reviewed model named in it)."""
    names = [a["label"] for a in config["stages"][1]["agents"]]
    open_app(page, app_server)
    import_config(page, tmp_path, config, f"{config['name']}.yaml")
    page.get_by_text("propose → review → synthesize").first.wait_for()
    watch(page, [f"Review by {n}" for n in names])
    ask(page, question)
    wait_run_done(page)
    artifact(page, shot)
    live = ranking_text(page)
    for name in names:
        assert name in live, (name, live)
    return streamed(page), live


def reopen(page, app_server, question: str, names: list[str]) -> str:
    """The run's History page: the same reviewer columns; returns its ranking table's text."""
    run_id, status = db_rows(app_server, "select id, status from run order by created_at desc limit 1")[0]
    assert status == "done"
    page.goto(app_server.url + run_link(run_id))
    wait_idle(page)
    page.get_by_text(question).first.wait_for()
    for name in names:
        assert page.locator("strong", has_text=f"Review by {name}").count() == 1, name
    return ranking_text(page)


def test_council_pipeline_streams_reviewers_ranks_and_reopens(page, app_server, fake_server, tmp_path):
    question = "Which planet is largest?"
    seen, live = run_council(
        page, app_server, tmp_path, fake_council(fake_server.url), question, "pipeline-council-fake.png"
    )
    # All three reviewers were streaming together: each started before any finished.
    assert max(s["first"] for s in seen) < min(s["done"] for s in seen), f"a reviewer waited: {seen}"
    roles = sorted(r[0] for r in db_rows(app_server, "select role from generation"))
    assert roles == ["aggregator", "proposer", "proposer", "proposer", "reviewer", "reviewer", "reviewer"]
    assert reopen(page, app_server, question, NAMES) == live


@requires_local
@pytest.mark.local_models
def test_council_local_end_to_end(page, app_server, tmp_path):
    short = yaml.safe_load((PRESETS_DIR / "council-local.yaml").read_text())
    # The preset's shape and models, with short answers (CPU time) and no baseline.
    short["baselines"] = []
    for stage in short["stages"]:
        for agent in stage["agents"]:
            agent["max_tokens"] = min(agent["max_tokens"], 48)
    question = "What is the capital of France?"
    seen, live = run_council(page, app_server, tmp_path, short, question, "pipeline-council-local.png")
    # Every reviewer's call started before any review ended. On shared CPU cores the local
    # models then take turns (Qwen reads the three answers slowly before its first token),
    # so their text need not overlap; the fake-server test checks that it streams together.
    assert max(s["started"] for s in seen) < min(s["done"] for s in seen), f"a reviewer waited: {seen}"
    assert reopen(page, app_server, question, [a["label"] for a in short["stages"][1]["agents"]]) == live


def test_quorum_marks_drafts_live_and_select_names_its_choice(page, app_server, fake_server, tmp_path):
    url = fake_server.url
    config = {
        "name": "fake-quorum-select",
        "num_retries": 0,
        "timeout": 60,
        "stages": [
            {
                "kind": "propose",
                "quorum": {"k": 2, "stragglers": "show"},
                "agents": [
                    agent(url, "q0", "Quick", tokens=4, delay=0.01),
                    agent(url, "q1", "Nimble", tokens=4, delay=0.01),
                    # Still streaming long after the quorum: it must be marked while it streams.
                    agent(url, "q2", "Slow", tokens=60, delay=0.1),
                ],
            },
            {"kind": "select", "agents": [agent(url, "sel", "Picker", tokens=2, choice="B")]},
        ],
    }
    open_app(page, app_server)
    import_config(page, tmp_path, config, "quorum.yaml")
    page.get_by_text("fake-quorum-select").first.wait_for()
    ask(page, "Pick one")
    slow = page.get_by_test_id("stColumn").filter(has=page.locator("strong", has_text="Slow"))
    slow.get_by_text("not used").wait_for()
    # Marked while its text was still streaming (the cursor still there).
    assert "\u258c" in slow.inner_text()
    wait_run_done(page)
    for name in ("Quick", "Nimble"):
        used = page.get_by_test_id("stColumn").filter(has=page.locator("strong", has_text=name))
        text = used.inner_text()  # the chosen one says so instead of "used"
        assert ("✅ used" in text or "✅ chosen" in text) and "not used" not in text, name
    # The selector's choice is named and marked; it is the run's final answer, verbatim.
    chosen = page.locator("p", has_text="Chosen draft:").inner_text()
    final, *_ = db_rows(app_server, "select final_text from run order by created_at desc limit 1")[0]
    texts = dict(db_rows(app_server, "select label, text from generation where role = 'proposer'"))
    # The selector answered "CHOICE: Response B": the second used draft in the shuffled order it saw.
    picked = [n for n in ("Quick", "Nimble") if n in chosen]
    assert len(picked) == 1 and final == texts[picked[0]], (chosen, final, texts)
    assert (
        "chosen" in page.get_by_test_id("stColumn").filter(has=page.locator("strong", has_text=picked[0])).inner_text()
    )
