"""Draft diversity metrics, run_diversity on stored runs, diversity vs quality, challenge recording."""

from __future__ import annotations

import asyncio
from contextlib import aclosing

import pandas as pd
import pytest
from sqlalchemy import Engine

from moa_core.analysis.diversity import (
    DIVERSITY_VERSION,
    QUALITY_COLUMNS,
    diversity,
    diversity_quality_frame,
    embedding_matrix,
    fingerprint,
    layer_diversity,
    lexical_matrix,
    mean_pairwise,
    run_diversity,
    stored_diversity,
)
from moa_core.store import Recorder, add_rating, annotate_run, get_run, open_db, ratings_df, runs_df
from tests.conftest import fake_agent
from tests.test_alignment import D1, D2, D3, FINAL, fake_embed

A = "Photosynthesis turns light, water and carbon dioxide into glucose and oxygen inside chloroplasts."
B = "The Treaty of Westphalia ended the Thirty Years' War in 1648 and shaped European sovereignty."
C = "Quicksort partitions an array around a pivot and sorts both halves recursively in place."


def test_identical_drafts_have_no_diversity() -> None:
    ld = layer_diversity([A, A, A], fake_embed)
    assert ld.embedding_diversity == pytest.approx(0.0, abs=1e-6)
    assert ld.lexical_diversity == pytest.approx(0.0, abs=1e-6)
    assert ld.diversity == ld.embedding_diversity
    assert ld.embedding == [[1.0] * 3] * 3


def test_unrelated_drafts_are_diverse() -> None:
    ld = layer_diversity([A, B, C], fake_embed)
    assert ld.embedding_diversity > 0.9
    assert ld.lexical_diversity > 0.4
    related = layer_diversity([D1, D2, D3], fake_embed)
    assert related.embedding_diversity < ld.embedding_diversity
    assert related.lexical_diversity < ld.lexical_diversity


def test_matrices_are_symmetric_with_unit_diagonal() -> None:
    for m in (lexical_matrix([A, B, D1]), embedding_matrix([A, B, D1], fake_embed)):
        assert m.shape == (3, 3)
        assert (m == m.T).all() and (m.diagonal() == 1.0).all()
        assert ((m >= -1) & (m <= 1)).all()
    assert mean_pairwise(lexical_matrix([A])) is None and diversity(lexical_matrix([])) is None


def test_lexical_only_when_no_embedder() -> None:
    ld = layer_diversity([A, B], None)
    assert ld.embedding is None and ld.embedding_diversity is None
    assert ld.diversity == ld.lexical_diversity


def _gens() -> list[dict]:
    gens = [
        dict(id=i + 1, role="proposer", layer=0, slot=i, status="done", text=t, label=None, model=f"m{i}")
        for i, t in enumerate([D1, D2, D3])
    ]
    gens.append(dict(id=4, role="proposer", layer=0, slot=3, status="error", text="", label=None, model="bad"))
    gens.append(dict(id=5, role="baseline", layer=-1, slot=0, status="done", text=A, label=None, model="solo"))
    gens.append(dict(id=6, role="aggregator", layer=1, slot=0, status="done", text=FINAL, label="agg", model="m0"))
    return gens


def test_run_diversity_of_a_stored_run() -> None:
    d = run_diversity(_gens(), fake_embed)
    assert d["version"] == DIVERSITY_VERSION and d["embedding_model"] == "custom"
    (layer,) = d["layers"]
    assert layer["names"] == ["m0", "m1", "m2"] and layer["gen_ids"] == [1, 2, 3]  # failed draft left out
    assert d["diversity"] == layer["embedding_diversity"] == layer["diversity"]
    agg = d["aggregator"]
    assert agg["gen_id"] == 6 and agg["similarity"] == "embedding"
    assert [r["share"] for r in agg["drafts"]] == pytest.approx([0.5, 0.2727, 0.0], abs=1e-4)
    assert agg["new_share"] == pytest.approx(0.2273, abs=1e-4)
    assert [r["kept"] for r in agg["drafts"]] == [0, 1, 0] and [r["dropped"] for r in agg["drafts"]] == [1, 0, 2]
    assert agg["kept"] == 1 and agg["dropped"] == 3
    assert [s["source"] for s in agg["sentences"]] == [0, 0, 1, None]
    assert all(0 <= r["rouge_l_f1"] <= 1 for r in agg["drafts"])
    assert [c["final_agrees_with"] for c in agg["contradictions"]] == ["a", "a"]
    import json

    json.dumps(d)  # JSON-ready for run.meta


def test_run_diversity_edge_cases() -> None:
    assert run_diversity([], None)["layers"] == [] and run_diversity([], None)["aggregator"] is None
    only = [g for g in _gens() if g["role"] == "aggregator"]
    assert run_diversity(only, None)["aggregator"] is None  # nothing to trace to
    one = run_diversity(_gens()[:1], None)
    assert one["diversity"] is None and one["layers"][0]["lexical"] == [[1.0]]
    multi = [
        *_gens(),
        dict(id=7, role="proposer", layer=1, slot=0, status="done", text=A, model="x"),
        dict(id=8, role="proposer", layer=1, slot=1, status="done", text=A, model="y"),
    ]
    d = run_diversity(multi, None)
    assert [ly["layer"] for ly in d["layers"]] == [0, 1]
    assert d["layers"][1]["lexical_diversity"] == pytest.approx(0.0)
    assert [r["gen_id"] for r in d["aggregator"]["drafts"]] == [7, 8]  # the aggregator read the last layer


def test_stored_diversity_is_invalidated_by_new_generations() -> None:
    gens = _gens()
    d = run_diversity(gens, None)
    run = {"meta": {"diversity": d}}
    assert stored_diversity(run, gens) is d
    more = [*gens, dict(id=9, role="aggregator", layer=1, slot=1, status="done", text="New.", model="m")]
    assert fingerprint(more) != fingerprint(gens) and stored_diversity(run, more) is None
    assert stored_diversity({"meta": None}, gens) is None


def test_diversity_quality_frame() -> None:
    runs = pd.DataFrame(
        [
            {
                "id": "r1",
                "kind": "playground",
                "preset": "p",
                "created_at": 1.0,
                "meta": {
                    "diversity": {
                        "diversity": 0.4,
                        "embedding_diversity": 0.4,
                        "lexical_diversity": 0.5,
                        "layers": [{"names": ["a", "b"]}],
                    }
                },
            },
            {
                "id": "r2",
                "kind": "challenge",
                "preset": "daily challenge",
                "created_at": 2.0,
                "meta": {
                    "diversity": {
                        "diversity": 0.1,
                        "embedding_diversity": None,
                        "lexical_diversity": 0.1,
                        "layers": [{"names": ["a", "b", "c"]}],
                    }
                },
            },
            {"id": "r3", "kind": "playground", "preset": "p", "created_at": 3.0, "meta": None},
        ]
    )
    ratings = pd.DataFrame(
        [
            {"run_id": "r1", "role": "aggregator", "generation_id": 10, "score": 5},
            {"run_id": "r1", "role": "aggregator", "generation_id": 10, "score": 3},
            {"run_id": "r1", "role": "proposer", "generation_id": 11, "score": 2},
            {"run_id": "r1", "role": "proposer", "generation_id": 12, "score": 3},
            {"run_id": "r1", "role": "proposer", "generation_id": 12, "score": 5},
            {"run_id": "r3", "role": "aggregator", "generation_id": 30, "score": 1},
        ]
    )
    f = diversity_quality_frame(runs, ratings)
    assert list(f.columns) == QUALITY_COLUMNS
    assert f["run_id"].tolist() == ["r1", "r2"]
    r1 = f.iloc[0]
    assert (r1.final_score, r1.mean_draft_score, r1.best_draft_score) == (4.0, 3.0, 4.0)
    assert r1.gain_over_best_draft == 0.0 and r1.n_ratings == 5 and r1.n_drafts == 2
    r2 = f.iloc[1]
    assert pd.isna(r2.final_score) and r2.n_ratings == 0 and r2.diversity == 0.1
    empty = diversity_quality_frame(pd.DataFrame(columns=["id", "meta"]), pd.DataFrame())
    assert empty.empty and list(empty.columns) == QUALITY_COLUMNS


def test_badge_shows_its_label_as_text() -> None:
    from moa_core.ui.diversity_view import badge

    assert badge("a [b] <data:x> c", "red") == ":red-badge[a \\[b\\] \\<data\\:x\\> c]"


# -- the challenge as one recorded run (fake OpenAI server) --------------------------------------


@pytest.fixture
def engine(tmp_path) -> Engine:
    return open_db(f"sqlite:///{tmp_path / 'moa.db'}")


def test_challenge_is_recorded_as_one_run(engine: Engine, fake_server) -> None:
    from moa_core.challenge import draft_events, synthesis_events
    from moa_core.evaluation.diversity import ensure_run_diversity

    agents = [
        fake_agent(fake_server, f"d{i}", tokens=6).model_copy(update={"label": f"Draft {i + 1}"}) for i in range(3)
    ]
    agg = fake_agent(fake_server, "agg", tokens=5).model_copy(update={"label": "Synthesis"})

    async def record(events) -> list:
        out = []
        async with aclosing(Recorder(engine).record(events)) as stream:
            async for ev in stream:
                out.append(ev)
        return out

    evs = asyncio.run(record(draft_events("chal1", "What is MoA?", agents, timeout=10, num_retries=0)))
    assert type(evs[0]).__name__ == "RunStarted" and evs[0].kind == "challenge"
    assert type(evs[-1]).__name__ == "RunDone" and evs[-1].status == "done"
    data = get_run(engine, "chal1")
    assert data["run"]["kind"] == "challenge" and data["run"]["status"] == "done"
    assert sorted(g["call_id"] for g in data["generations"]) == [f"proposer-0-{i}" for i in range(3)]
    assert all(g["status"] == "done" and g["text"] for g in data["generations"])

    drafts = [g["text"] for g in sorted(data["generations"], key=lambda g: g["slot"])]
    template = "MY PROMPT for {question}\n{drafts}"
    run = data["run"]
    from moa_core.events import Totals

    base = Totals(run["prompt_tokens"], run["completion_tokens"], run["cost"], run["wall_time"], 3, 0)
    for slot in (0, 1):
        evs = asyncio.run(
            record(
                synthesis_events("chal1", run["question"], drafts, template, agg, slot, base, timeout=10, num_retries=0)
            )
        )
        assert evs[-1].status == "done" and evs[-1].final_text
    annotate_run(engine, "chal1", meta={"challenge": {"attempts": [{"slot": 0, "template": template}]}})
    data = get_run(engine, "chal1")
    aggs = [g for g in data["generations"] if g["role"] == "aggregator"]
    assert [g["call_id"] for g in aggs] == ["aggregator-1-0", "aggregator-1-1"]
    assert aggs[0]["system_prompt"].startswith("MY PROMPT for What is MoA?\n[1] ")
    sent = fake_server.requests[-1]["messages"]
    assert [m["role"] for m in sent] == ["system", "user"] and sent[1]["content"] == "What is MoA?"
    assert sent[0]["content"] == aggs[1]["system_prompt"] and "\n\n[3] " in sent[0]["content"]
    assert data["run"]["final_text"] == aggs[1]["text"]
    assert data["run"]["completion_tokens"] > base.completion_tokens
    assert data["run"]["meta"]["challenge"]["attempts"][0]["template"] == template

    add_rating(engine, aggs[1]["id"], 4, "", "alice")
    assert ratings_df(engine, kind="challenge")["role"].tolist() == ["aggregator"]
    assert runs_df(engine, kind="challenge")["id"].tolist() == ["chal1"]

    d = ensure_run_diversity(engine, get_run(engine, "chal1"))
    stored = get_run(engine, "chal1")["run"]["meta"]
    assert stored["diversity"]["fingerprint"] == d["fingerprint"] and "challenge" in stored
    assert d["aggregator"]["gen_id"] == aggs[1]["id"]


def test_synthesis_refuses_a_prompt_without_drafts(fake_server) -> None:
    from moa_core.challenge import synthesis_events
    from moa_core.engine import RunInputError

    async def main() -> None:
        async for _ in synthesis_events("x", "q", ["a"], "no placeholder", fake_agent(fake_server, "a"), 0):
            pass

    with pytest.raises(RunInputError):
        asyncio.run(main())


def test_stopping_a_challenge_mid_stream_cancels_every_draft(engine: Engine, fake_server) -> None:
    from moa_core.challenge import draft_events
    from moa_core.events import TokenDelta

    agents = [fake_agent(fake_server, f"slow{i}", tokens=200, delay=0.05) for i in range(2)]

    async def main() -> None:
        async with aclosing(
            Recorder(engine).record(draft_events("stop1", "Long?", agents, timeout=30, num_retries=0))
        ) as stream:
            async for ev in stream:
                if isinstance(ev, TokenDelta):
                    break

    asyncio.run(main())
    data = get_run(engine, "stop1")
    assert data["run"]["status"] == "cancelled"
    assert {g["status"] for g in data["generations"]} == {"cancelled"}


def test_todays_suggestion_changes_daily() -> None:
    import datetime as dt

    from moa_core.challenge import SUGGESTIONS, todays_suggestion

    days = {todays_suggestion(dt.date(2026, 1, 1) + dt.timedelta(days=i)) for i in range(len(SUGGESTIONS))}
    assert days == set(SUGGESTIONS)
