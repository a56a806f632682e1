"""How pipelines look: rows of columns per stage (live and stored alike), quorum marks, a
review's de-anonymised ranking, a select's choice, and History showing a stored pipeline."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from moa_core.config import load_preset
from moa_core.events import CallRef, DraftDone, DraftStarted, LayerDone, RunDone, RunStarted, Totals, Usage
from moa_core.stage_layout import (
    CHOSEN,
    NOT_USED,
    SELECTOR_TEXT_TITLE,
    USED,
    StageResult,
    call_names,
    marks,
    pipeline_columns,
    ranking_rows,
    reviewer_rows,
    stage_columns,
    stored_stage_results,
)
from moa_core.store import open_db
from moa_core.store.queries import get_run
from moa_core.store.recorder import Recorder
from moa_core.vocab import Role, StageKind
from tests.conftest import md_text

ROOT = str(Path(__file__).resolve().parent.parent)
HOSTILE = "[click](javascript:alert(1)) **bold** <b>x</b>"

# What the engine reports when council-local's review stage ends (design contract).
REVIEW_DETAILS: dict[str, Any] = {
    "seed": 7,
    "reviews": [
        {
            "reviewer": "reviewer-1-0",
            "order": ["proposer-0-2", "proposer-0-0", "proposer-0-1"],
            "ranking": ["proposer-0-0", "proposer-0-2", "proposer-0-1"],
            "own": "proposer-0-0",
        },
        {
            "reviewer": "reviewer-1-1",
            "order": ["proposer-0-1", "proposer-0-2", "proposer-0-0"],
            "ranking": None,
            "own": "proposer-0-1",
        },
    ],
    "aggregate": [
        {"call_id": "proposer-0-2", "name": "Gemma 3 270M (base)", "mean_rank": 1.5, "borda": 3.0, "votes": 2},
        {"call_id": "proposer-0-0", "name": "Qwen 0.5B", "mean_rank": 2.0, "borda": 1.0, "votes": 1},
        {"call_id": "proposer-0-1", "name": "SmolLM2 135M", "mean_rank": None, "borda": 0.0, "votes": 0},
    ],
}


def test_legacy_config_keeps_the_columns_it_always_had():
    config = load_preset("local-moa")
    assert pipeline_columns(config, config.baselines) == [
        (
            "Layer 1 · 3 proposers",
            [
                ("proposer-0-0", "Qwen 0.5B"),
                ("proposer-0-1", "SmolLM2 135M"),
                ("proposer-0-2", "Gemma 3 270M (base)"),
            ],
        ),
        (
            "Aggregated answer and single models",
            [("aggregator-1-0", "MoA · Qwen 0.5B (aggregator)"), ("baseline--1-0", "Alone · Qwen 0.5B alone")],
        ),
    ]


def test_council_rows_give_each_reviewer_its_own_column():
    config = load_preset("council-local")
    rows = pipeline_columns(config, config.baselines)
    assert [title for title, _ in rows] == [
        "Layer 1 · 3 proposers",
        "Layer 2 · peer review by 3 reviewers (answers anonymised)",
        "Aggregated answer and single models",
    ]
    assert rows[1][1] == [
        ("reviewer-1-0", "Review by Qwen 0.5B"),
        ("reviewer-1-1", "Review by SmolLM2 135M"),
        ("reviewer-1-2", "Review by Gemma 3 270M (base)"),
    ]
    assert rows[2][1][0] == ("aggregator-2-0", "MoA · Qwen 0.5B (chairman)")
    names = call_names(rows, config)
    assert names["reviewer-1-2"] == "Gemma 3 270M (base)" and names["proposer-0-0"] == "Qwen 0.5B"


def test_ranker_and_quorum_rows():
    ranker = load_preset("ranker-local")
    assert pipeline_columns(ranker, [])[-1] == (
        "Selected answer and single models",
        [("selector-1-0", "Selector · Qwen 0.5B (selector)")],
    )
    quorum = load_preset("quorum-local")
    assert pipeline_columns(quorum, [])[0][0] == "Layer 1 · 3 proposers · quorum 2 of 3"


def test_quorum_marks_used_and_cut_and_select_marks_its_choice():
    done = LayerDone("r", 0, 2, 0, 0.0, StageKind.PROPOSE, ("proposer-0-1", "proposer-0-0"), ("proposer-0-2",))
    assert marks(StageResult.from_event(done)) == {"proposer-0-0": USED, "proposer-0-1": USED, "proposer-0-2": NOT_USED}
    # Without a quorum nothing is cut, and nothing needs a mark.
    plain = LayerDone("r", 0, 3, 0, 0.0, StageKind.PROPOSE, ("proposer-0-0", "proposer-0-1", "proposer-0-2"))
    assert marks(StageResult.from_event(plain)) == {}
    select = StageResult(1, StageKind.SELECT, details={"chosen": "proposer-0-1", "parsed": True})
    assert marks(select) == {"proposer-0-1": CHOSEN}


def test_ranking_is_de_anonymised_best_first():
    assert ranking_rows(REVIEW_DETAILS, {}) == [
        {"place": "1", "model": "Gemma 3 270M (base)", "mean rank": "1.50", "Borda": "3.0", "votes": "2"},
        {"place": "2", "model": "Qwen 0.5B", "mean rank": "2.00", "Borda": "1.0", "votes": "1"},
        {"place": "3", "model": "SmolLM2 135M", "mean rank": "–", "Borda": "0.0", "votes": "0"},
    ]
    names = {"proposer-0-0": "Qwen", "proposer-0-1": "Smol", "proposer-0-2": "Gemma", "reviewer-1-0": "Qwen"}
    first, second = reviewer_rows(REVIEW_DETAILS, names)
    # Each reviewer saw its own shuffled order: the letters map to different models.
    assert first["letters"] == "A = Gemma; B = Qwen; C = Smol"
    assert first["ranking, best first"] == "B (Qwen) > A (Gemma) > C (Smol)"
    assert first["own answer"] == "Qwen"
    assert second["letters"] == "A = Smol; B = Gemma; C = Qwen"
    assert second["ranking, best first"] == "unparsed (not counted)"


def test_stored_stage_results_skip_rows_they_cannot_read():
    data = {
        "stages": [
            {"layer": 1, "kind": "review", "used": [], "cut": [], "details": REVIEW_DETAILS},
            {"layer": 2, "kind": "no-such-kind"},
            {"kind": "select"},
        ]
    }
    results = stored_stage_results(data)
    assert list(results) == [1] and results[1].kind == StageKind.REVIEW
    assert stored_stage_results({}) == {}


def seed_council_run(url: str, name: str = "Qwen 0.5B") -> tuple[str, dict[str, Any]]:
    """A council-local run as the Recorder stores it (roles and layers per stage)."""
    engine = open_db(url)
    rec = Recorder(engine)
    run_id = uuid.uuid4().hex
    t = time.time()
    cfg = load_preset("council-local")
    rec.handle(RunStarted(run_id, "What is 2+2?", [], cfg.model_dump(mode="json"), cfg.stable_hash(), cfg.name, "playground", t))  # fmt: skip
    for i, stage in enumerate(cfg.pipeline()):
        role = {StageKind.PROPOSE: Role.PROPOSER, StageKind.REVIEW: Role.REVIEWER}.get(stage.kind, Role.AGGREGATOR)
        for slot, agent in enumerate(stage.agents):
            label = name if (i, slot) == (0, 0) else agent.display_name
            ref = CallRef(run_id, role, i, slot, agent.model, label)
            rec.handle(DraftStarted(ref, "", {"temperature": 0.3}, t))
            text = f"{role} {slot} text. FINAL RANKING:\n1. Response A" if role == Role.REVIEWER else f"{role} {slot} 4"
            rec.handle(DraftDone(ref, text, "stop", Usage(5, 6), 0.0, t, t + 1, 0.2))
    rec.handle(RunDone(run_id, "done", "aggregator 0 4", Totals(10, 12, 0.0, 1.0, 7, 0), t + 1))
    data = get_run(engine, run_id)
    assert data is not None
    return run_id, data


def test_a_stored_pipeline_has_the_rows_it_ran_with(tmp_path):
    _, data = seed_council_run(f"sqlite:///{tmp_path / 'moa.db'}")
    cfg = load_preset("council-local")
    # The stored run has no baselines (the seed records none): the rows are the pipeline's.
    assert stage_columns(data) == pipeline_columns(cfg, [])


def _history(url: str, run_id: str, stages: list[dict[str, Any]]) -> AppTest:
    def page(url: str, run_id: str, stages: list) -> None:  # its source runs alone: builtins only
        from moa_core.store import open_db
        from moa_core.store.queries import get_run
        from moa_core.ui.run_view import render_run

        engine = open_db(url)
        data = get_run(engine, run_id)
        assert data is not None
        render_run(engine, {**data, "stages": stages}, rate=False)

    return AppTest.from_function(page, args=(url, run_id, stages), default_timeout=60)


@pytest.mark.parametrize("with_stages", [True, False])
def test_history_shows_reviewers_and_the_de_anonymised_ranking(tmp_path, with_stages):
    url = f"sqlite:///{tmp_path / 'moa.db'}"
    run_id, _ = seed_council_run(url, name=HOSTILE)
    details = {**REVIEW_DETAILS, "aggregate": [dict(r) for r in REVIEW_DETAILS["aggregate"]]}
    details["aggregate"][1]["name"] = HOSTILE
    stages = [{"layer": 1, "kind": "review", "used": [], "cut": [], "details": details}] if with_stages else []
    at = _history(url, run_id, stages).run()
    assert not at.exception
    shown = [md_text(m.value) for m in at.markdown]
    for title in ("Review by SmolLM2 135M", "Review by Gemma 3 270M (base)", "MoA · Qwen 0.5B (chairman)"):
        assert f"**{title}**" in shown, title
    assert "##### Layer 2 · peer review by 3 reviewers (answers anonymised)" in shown
    tables = at.table
    if not with_stages:
        assert not tables  # a run stored without stage results: columns, no ranking
        return
    # The ranking table (and the per-reviewer letters) above the chairman's answer.
    assert "**Aggregate ranking by the reviewers**" in shown
    ranking = tables[0].value
    assert list(ranking.columns) == ["place", "model", "mean rank", "Borda", "votes"]
    # A hostile name is escaped to plain text: no markdown link or bold survives in the cell.
    cell = ranking["model"].iloc[1]
    assert md_text(cell) == HOSTILE and "](javascript" not in cell and "**" not in cell
    assert md_text(ranking["model"].iloc[0]) == "Gemma 3 270M (base)"
    assert shown.index("**Aggregate ranking by the reviewers**") < shown.index("**MoA · Qwen 0.5B (chairman)**")


def _live(preset: str, stage_ends: list) -> AppTest:
    """The live columns of `preset`, fed a synthetic run: every call streams and ends, then
    the given LayerDone events (what the engine reports per stage)."""

    def page(preset: str, stage_ends: list) -> None:  # its source runs alone: builtins only
        import streamlit as st

        from moa_core.config import load_preset
        from moa_core.events import CallRef, DraftDone, LayerDone, RunDone, RunStarted, TokenDelta, Totals, Usage
        from moa_core.ui.layout import run_async
        from moa_core.ui.streaming import layout_live, show_events
        from moa_core.vocab import STAGE_ROLE, RunStatus

        config = load_preset(preset)

        async def events():
            yield RunStarted("r", "q", [], {}, "", preset, "playground", 0.0)
            for i, stage in enumerate(config.pipeline()):
                for slot, agent in enumerate(stage.agents):
                    ref = CallRef("r", STAGE_ROLE[stage.kind], i, slot, agent.model, agent.display_name)
                    yield TokenDelta(ref, f"text of {ref.call_id}", 0.0)
                    yield DraftDone(ref, f"text of {ref.call_id}", "stop", Usage(1, 1), 0.0, 0.0, 1.0, 0.1)
                for end in stage_ends:
                    if end["layer"] == i:
                        yield LayerDone("r", ok=len(stage.agents), failed=0, t=1.0, **end)
            yield RunDone("r", RunStatus.DONE, "final", Totals(), 1.0)

        live = run_async(show_events(layout_live(config, []), st.progress(0.0), events()))
        st.session_state.done = live.done_calls

    return AppTest.from_function(page, args=(preset, stage_ends), default_timeout=60)


def test_live_review_stage_shows_its_ranking_above_the_chairman():
    at = _live("council-local", [{"layer": 1, "kind": "review", "details": REVIEW_DETAILS}]).run()
    assert not at.exception
    assert at.session_state.done == 7
    shown = [md_text(m.value) for m in at.markdown]
    assert "**Review by SmolLM2 135M**" in shown
    heading = shown.index("**Aggregate ranking by the reviewers**")
    assert shown.index("**Review by Gemma 3 270M (base)**") < heading < shown.index("**MoA · Qwen 0.5B (chairman)**")
    ranking = at.table[0].value
    assert [md_text(m) for m in ranking["model"]] == ["Gemma 3 270M (base)", "Qwen 0.5B", "SmolLM2 135M"]


def test_live_quorum_marks_used_and_cut_drafts():
    cut = {
        "layer": 0,
        "kind": "propose",
        "used": ("proposer-0-0", "proposer-0-1"),
        "cut": ("proposer-0-2",),
    }
    at = _live("quorum-local", [cut]).run()
    assert not at.exception
    captions = [md_text(c.value) for c in at.caption]
    assert captions.count(f"✅ {USED}") == 2 and captions.count(f"✂️ {NOT_USED}") == 1


def test_live_select_names_the_chosen_draft():
    said = "Both fine; **B** is clearer. CHOICE: Response B"
    choice = {
        "layer": 1,
        "kind": "select",
        "used": (),
        "details": {"chosen": "proposer-0-1", "parsed": True, "selector_text": said},
    }
    at = _live("ranker-local", [choice]).run()
    assert not at.exception
    shown = [md_text(m.value) for m in at.markdown]
    assert "**Chosen draft:** SmolLM2 135M, returned verbatim as the answer." in shown
    assert [e.label for e in at.expander] == [SELECTOR_TEXT_TITLE] and said in shown
    assert f"✅ {CHOSEN}" in [md_text(c.value) for c in at.caption]


def test_presentation_steps_through_every_stage(tmp_path):
    from moa_core.ui.present import stages

    _, data = seed_council_run(f"sqlite:///{tmp_path / 'moa.db'}")
    got = [(s.title, [g["role"] for g in s.calls]) for s in stages(data["generations"])]
    assert got == [
        ("Layer 1 · 3 proposers", ["proposer"] * 3),
        ("Layer 2 · peer review by 3 reviewers (answers anonymised)", ["reviewer"] * 3),
        ("Aggregated answer and single models", ["aggregator"]),
    ]
