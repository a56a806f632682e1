"""The presentation view (`?present=1`) with AppTest: a stored run stepped stage by stage, no
editors or rating widgets; the browser test (sidebar hidden, arrow keys, screenshot) is
tests/test_browser_present.py."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from moa_core.ui.present import stages
from tests.conftest import md_text
from tests.test_demo_details import ROOT, db_url, seed_moa_run  # noqa: F401  (db_url is a fixture)


def history(run_id: str, present: bool = True) -> AppTest:
    at = AppTest.from_file(f"{ROOT}/pages/6_History.py", default_timeout=60)
    at.query_params["run"] = run_id
    if present:
        at.query_params["present"] = "1"
    return at


def shown(at: AppTest) -> str:
    return " ".join(md_text(m.value) for m in at.markdown)


def test_stages_follow_the_run_order():
    gens = [
        {"role": "baseline", "layer": -1, "slot": 0, "id": 1},
        {"role": "proposer", "layer": 1, "slot": 1, "id": 2},
        {"role": "proposer", "layer": 0, "slot": 1, "id": 3},
        {"role": "proposer", "layer": 0, "slot": 0, "id": 4},
        {"role": "aggregator", "layer": 2, "slot": 0, "id": 5},
    ]
    got = [(s.title, [g["id"] for g in s.calls]) for s in stages(gens)]
    assert got == [
        ("Layer 1 · 2 proposers", [4, 3]),
        ("Layer 2 · 1 proposer", [2]),
        ("Aggregated answer and single models", [5, 1]),
    ]


def test_a_stored_run_steps_stage_by_stage(db_url):  # noqa: F811
    run_id = seed_moa_run(db_url)
    at = history(run_id).run()
    assert not at.exception
    text = shown(at)
    assert "Stage 1 of 2" in text and "draft 0" in text and "draft 1" in text
    assert "final answer" not in text and "alone" not in text
    assert at.button(key="present_prev").disabled and not at.button(key="present_next").disabled
    assert not at.main.text_input and not at.main.radio, "no editors and no rating widgets on the page"
    assert not [b for b in at.button if b.label == "Rate"]

    at.button(key="present_next").click().run()
    text = shown(at)
    assert "Stage 2 of 2" in text and "final answer" in text and "alone" in text and "draft 0" not in text
    assert any(md_text(c.value).startswith("Whole pipeline") for c in at.caption)
    assert at.button(key="present_next").disabled
    at.button(key="present_prev").click().run()
    assert "Stage 1 of 2" in shown(at)

    at.button(key="present_exit").click().run()
    assert "present" not in at.query_params and at.query_params["run"] == run_id
    assert "draft 0" in shown(at) and "final answer" in shown(at), "the whole run again"


def test_the_normal_view_offers_the_presentation_view(db_url):  # noqa: F811
    run_id = seed_moa_run(db_url)
    at = history(run_id, present=False).run()
    assert "Stage 1 of" not in shown(at)
    at.sidebar.button(key="present_enter").click().run()
    assert at.query_params["present"] == "1" and "Stage 1 of 2" in shown(at)
