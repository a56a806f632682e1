"""The presentation view in a real browser at 1920×1080: no sidebar, larger type, a stored run
stepped with the arrow keys and the buttons; leaves test-artifacts/present-*.png (the README's
screenshot is tests/screenshots/present-final.png, copied from there)."""

from __future__ import annotations

import time
import uuid

import pytest

from moa_core.events import CallRef, DraftDone, DraftStarted, RunDone, RunStarted, Totals, Usage
from moa_core.store import open_db
from moa_core.store.recorder import Recorder
from tests.browser_support import ROOT, open_app, wait_idle

pytestmark = pytest.mark.browser

QUESTION = "Why is the sky blue, and why are sunsets red?"
DRAFTS = [
    (
        "Qwen 0.5B",
        "local/qwen2.5-coder-0.5b",
        "Sunlight holds every colour. Air molecules are far smaller than the light's wavelength, so they "
        "scatter it by **Rayleigh scattering**, whose strength grows as 1/λ⁴: blue light (≈450 nm) is "
        "scattered about five times more than red (≈700 nm). Blue reaches our eyes from every part of the "
        "sky, so the sky looks blue.",
    ),
    (
        "SmolLM2 135M",
        "local/smollm2-135m",
        "The sky is blue because the atmosphere scatters short wavelengths more than long ones. Violet is "
        "scattered even more, but the Sun emits less of it and our eyes are less sensitive to it.",
    ),
    (
        "Gemma 3 270M",
        "local/gemma3-270m",
        "At sunset the light crosses much more air before reaching us. Most of the blue is scattered away "
        "on the way, and what is left is orange and red.",
    ),
]
FINAL = (
    "**Short answer:** air scatters blue light much more than red (Rayleigh scattering, ∝ 1/λ⁴).\n\n"
    "- **By day** the scattered blue light reaches us from every direction, so the whole sky glows blue; "
    "violet is scattered even more, but sunlight has less of it and our eyes are less sensitive to it.\n"
    "- **At sunset** sunlight crosses up to 40 times more atmosphere. Most of the blue is scattered out of "
    "the beam on the way, so the light that reaches us directly is orange and red."
)
ALONE = "The sky is blue because of the way sunlight is scattered by the air. Sunsets are red because of dust."


def seed(db_url: str) -> str:
    rec = Recorder(open_db(db_url))
    run_id = uuid.uuid4().hex
    t = time.time() - 60
    rec.handle(RunStarted(run_id, QUESTION, [], {"name": "local-moa"}, "h", "local-moa", "playground", t))
    for slot, (label, model, text) in enumerate(DRAFTS):
        ref = CallRef(run_id, "proposer", 0, slot, model, label)
        rec.handle(DraftStarted(ref, "", {"temperature": 0.7, "max_tokens": 256}, t))
        rec.handle(DraftDone(ref, text, "stop", Usage(30, 80), 0.0, t, t + 3 + slot, 0.3))
    ref = CallRef(run_id, "aggregator", 1, 0, "local/qwen2.5-coder-0.5b", "Qwen 0.5B (aggregator)")
    rec.handle(DraftStarted(ref, "", {"temperature": 0.3, "max_tokens": 256}, t + 5))
    rec.handle(DraftDone(ref, FINAL, "stop", Usage(320, 120), 0.0, t + 5, t + 9, 0.5))
    ref = CallRef(run_id, "baseline", -1, 0, "local/qwen2.5-coder-0.5b", "Qwen 0.5B alone")
    rec.handle(DraftStarted(ref, "", {"temperature": 0.3, "max_tokens": 256}, t))
    rec.handle(DraftDone(ref, ALONE, "stop", Usage(30, 30), 0.0, t, t + 2, 0.3))
    rec.handle(RunDone(run_id, "done", FINAL, Totals(440, 390, 0.0, 9.0, 5, 0), t + 9))
    return run_id


@pytest.fixture
def big_page(browser):
    ctx = browser.new_context(viewport={"width": 1920, "height": 1080})
    pg = ctx.new_page()
    pg.set_default_timeout(60_000)
    yield pg
    ctx.close()


def shot(page, name: str) -> None:
    out = ROOT / "test-artifacts"
    out.mkdir(exist_ok=True)
    page.screenshot(path=str(out / name))  # the screen as the audience sees it, not the full page


def stage_label(page) -> str:
    return page.get_by_text("Stage ", exact=False).first.inner_text()


def test_history_run_in_the_presentation_view(big_page, app_server):
    page = big_page
    run_id = seed(app_server.db_url)
    open_app(page, app_server, f"/History?run={run_id}&present=1")
    page.get_by_text("Stage 1 of 2").wait_for()
    page.wait_for_function("getComputedStyle(document.documentElement).fontSize === '20px'")
    page.get_by_test_id("stSidebar").wait_for(state="hidden")
    # the three drafts side by side fill the screen's width
    cols = page.get_by_test_id("stColumn").filter(has_text="Rayleigh").first
    box = page.get_by_test_id("stMainBlockContainer").bounding_box()
    assert box is not None and box["width"] >= 1800, box
    for label, _, _ in DRAFTS:
        assert page.get_by_text(label, exact=True).is_visible()
    assert cols.is_visible() and not page.get_by_text("Short answer").count()
    shot(page, "present-layer.png")

    page.keyboard.press("ArrowRight")
    page.get_by_text("Stage 2 of 2").wait_for()
    wait_idle(page)
    assert page.get_by_text("Short answer").is_visible() and page.get_by_text(ALONE).is_visible()
    assert not page.get_by_text(DRAFTS[1][2]).count()
    assert page.get_by_text("Whole pipeline").first.is_visible()
    shot(page, "present-final.png")

    page.keyboard.press("ArrowRight")  # already the last stage: nothing happens
    page.locator(".st-key-present_prev button").click()
    page.get_by_text("Stage 1 of 2").wait_for()
    page.keyboard.press("ArrowRight")
    page.get_by_text("Stage 2 of 2").wait_for()
    page.keyboard.press("ArrowLeft")
    page.get_by_text("Stage 1 of 2").wait_for()

    page.locator(".st-key-present_exit button").click()
    page.get_by_text("link to this run").wait_for()
    page.get_by_test_id("stSidebar").wait_for(state="visible")
    assert "present" not in page.url
    assert page.evaluate("getComputedStyle(document.documentElement).fontSize") == "16px"


def test_playground_and_arena_in_the_presentation_view(big_page, app_server):
    page = big_page
    for path in ("/Playground?present=1", "/Arena?present=1"):
        open_app(page, app_server, path)
        page.locator(".st-key-present_exit").wait_for()
        page.wait_for_function("getComputedStyle(document.documentElement).fontSize === '20px'")
        page.get_by_test_id("stSidebar").wait_for(state="hidden")
        assert not page.get_by_test_id("stSidebarNav").is_visible(), path
