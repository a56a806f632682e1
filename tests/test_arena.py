"""Arena logic without Streamlit: contenders, pairs, hidden sides, votes, blind review, queries."""

from __future__ import annotations

import random
from collections import Counter
from contextlib import aclosing

import pandas as pd
import pytest

from moa_core import arena
from moa_core.analysis.contenders import contender_name
from moa_core.analysis.leaderboard import leaderboard
from moa_core.arena import ArenaError, Contender, SideState
from moa_core.config import AgentSpec, LayerSpec, MoAConfig, load_preset
from moa_core.engine import run_moa, run_single
from moa_core.store import Recorder, add_rating, add_vote, get_run, open_db
from moa_core.store.analysis_queries import (
    contender_costs,
    contender_ratings,
    review_candidates,
    vote_counts,
    voted_pairs,
)
from tests.conftest import fake_agent, fake_config


def single(model: str, label: str | None = None) -> Contender:
    return Contender(f"model:{model}", agent=AgentSpec(model=model, label=label))


def moa(name: str) -> Contender:
    agent = AgentSpec(model="openai/x")
    return Contender(
        f"saved:{name}", config=MoAConfig(name=name, layers=[LayerSpec(proposers=[agent])], aggregator=agent)
    )


# -- contenders ----------------------------------------------------------------------------


def test_contender_names_match_the_leaderboard_rule():
    assert single("local/smollm2-135m").name == "local/smollm2-135m"
    assert single("openai/gpt-4o", label="GPT").name == "GPT"
    assert moa("local-moa").name == "MoA · local-moa"
    # the call whose text is the answer: the last stage's (one agent), or run_single's one call
    assert moa("local-moa").final_call == "aggregator-1-0" and single("m").final_call == "baseline--1-0"
    # what the stored generations of those runs are named after
    assert contender_name("aggregator", "Qwen 0.5B (aggregator)", "local/qwen", "local-moa") == "MoA · local-moa"
    assert contender_name("baseline", "", "local/smollm2-135m", "local/smollm2-135m") == "local/smollm2-135m"
    assert contender_name("baseline", "Qwen alone", "local/qwen", "local-moa") == "Qwen alone"
    # a ranker pipeline's answer is its selector's generation (the chosen draft): the pipeline's
    assert Contender("preset:ranker-local", config=load_preset("ranker-local")).final_call == "selector-1-0"
    assert contender_name("selector", "Qwen (selector)", "local/qwen", "ranker-local") == "MoA · ranker-local"
    assert contender_name("reviewer", "Qwen", "local/qwen", "council-local") == "Qwen"


def test_keys_labels_and_resolution():
    keys = arena.contender_options(["local/a", "local/b", "local/a"], ["local-moa"], ["mine"])
    assert keys == ["model:local/a", "model:local/b", "preset:local-moa", "saved:mine"]
    assert [arena.option_label(k) for k in keys] == ["local/a", "local/b", "MoA preset · local-moa", "MoA saved · mine"]
    c = arena.resolve_contender("model:local/a", max_tokens=300, temperature=0.2)
    assert c.agent is not None and c.agent.max_tokens == 300 and c.agent.temperature == 0.2 and not c.is_moa
    p = arena.resolve_contender("preset:local-moa")
    assert p.is_moa and p.config == load_preset("local-moa") and p.name == "MoA · local-moa"
    with pytest.raises(ArenaError, match="unknown preset"):
        arena.resolve_contender("preset:nope")
    with pytest.raises(ArenaError, match="no saved config"):
        arena.resolve_contender("saved:nope", saved=lambda n: (_ for _ in ()).throw(ValueError("no saved config")))
    for bad in ("local/a", "thing:x", "model:"):
        with pytest.raises(ArenaError):
            arena.split_key(bad)


def test_random_pair_is_two_different_and_uniform():
    rng = random.Random(1)
    pool = ["a", "b", "c", "a"]
    seen = Counter()
    for _ in range(3000):
        x, y = arena.random_pair(pool, rng)
        assert x != y and {x, y} <= {"a", "b", "c"}
        seen[frozenset((x, y))] += 1
    assert len(seen) == 3 and min(seen.values()) > 850  # 1000 expected each
    with pytest.raises(ArenaError, match="at least two"):
        arena.random_pair(["a", "a"], rng)


def test_sides_are_a_fair_coin_and_hidden_in_the_battle():
    rng = random.Random(7)
    a, b = single("m/a"), single("m/b")
    first_is_a = sum(arena.assign_sides(a, b, rng)["A"] is a for _ in range(4000))
    assert 1800 < first_is_a < 2200
    battle = arena.new_battle("Q?", a, b, rng, question_set="set")
    assert set(battle.sides) == {"A", "B"} and {c.name for c in battle.sides.values()} == {"m/a", "m/b"}
    assert battle.run_ids["A"] != battle.run_ids["B"] and battle.question_set == "set"
    assert not battle.revealed and battle.open_for_votes
    with pytest.raises(ArenaError, match="different"):
        arena.new_battle("Q?", a, single("m/a"), rng)


def test_draw_question():
    rng = random.Random(0)
    assert arena.draw_question(["q1", "q2"], rng) in ("q1", "q2")
    with pytest.raises(ArenaError):
        arena.draw_question([], rng)


# -- votes from stored runs -----------------------------------------------------------------


def gen(i: int, role: str, text: str = "answer", status: str = "done", error: str | None = None, layer: int = 0):
    return {"id": i, "role": role, "text": text, "status": status, "error": error, "layer": layer, "slot": 0}


def run(status: str, *gens: dict, error: str | None = None) -> dict:
    return {"run": {"status": status, "error": error}, "generations": list(gens)}


def test_final_generation_is_the_aggregator_else_the_baseline():
    assert arena.final_generation([gen(1, "proposer"), gen(2, "aggregator", layer=1)])["id"] == 2
    assert arena.final_generation([gen(3, "baseline")])["id"] == 3
    assert arena.final_generation([gen(1, "proposer")]) is None


def test_side_state_and_verdicts():
    ok_a = arena.side_state(run("done", gen(1, "baseline")))
    partial_b = arena.side_state(run("cancelled", gen(2, "baseline", text="half an ans", status="cancelled")))
    assert ok_a == SideState(gen(1, "baseline")) and partial_b.problem is None
    v = arena.judge_vote("A", {"A": ok_a, "B": partial_b})
    assert v.ok and (v.left_id, v.right_id, v.outcome) == (1, 2, "left")
    assert arena.judge_vote("B", {"A": ok_a, "B": partial_b}).outcome == "right"
    assert arena.judge_vote("tie", {"A": ok_a, "B": partial_b}).outcome == "tie"
    assert arena.judge_vote("both_bad", {"A": ok_a, "B": partial_b}).outcome == "both_bad"

    # the MoA side was still drafting: no final generation yet -> nothing to compare, not a failure
    drafting = arena.side_state(run("cancelled", gen(3, "proposer", status="cancelled")))
    v = arena.judge_vote("A", {"A": ok_a, "B": drafting})
    assert not v.ok and not v.invalid and "B had not started its answer" in v.problem
    empty = arena.side_state(run("cancelled", gen(4, "baseline", text="", status="cancelled")))
    assert not arena.judge_vote("A", {"A": empty, "B": ok_a}).ok
    assert not arena.judge_vote("A", {"A": arena.side_state(None), "B": ok_a}).ok

    # a contender that failed makes the battle invalid
    failed = arena.side_state(
        run("failed", gen(5, "baseline", text="", status="error", error="HTTP 500"), error="m failed: HTTP 500")
    )
    v = arena.judge_vote("B", {"A": failed, "B": ok_a})
    assert v.invalid and "A failed: m failed: HTTP 500" in v.problem and v.left_id is None
    broke_mid_stream = arena.side_state(run("cancelled", gen(6, "baseline", status="error", error="dropped")))
    assert arena.judge_vote("A", {"A": ok_a, "B": broke_mid_stream}).invalid
    with pytest.raises(ValueError):
        arena.judge_vote("left", {"A": ok_a, "B": ok_a})


# -- blind review pairs ----------------------------------------------------------------------


def review_frame() -> pd.DataFrame:
    rows = []
    for r in range(4):
        rows += [
            {
                "id": 10 * r + 1,
                "run_id": f"r{r}",
                "role": "aggregator",
                "text": f"moa {r}",
                "question": f"q{r}",
                "slot": 0,
                "contender": "MoA · cfg",
            },
            {
                "id": 10 * r + 2,
                "run_id": f"r{r}",
                "role": "baseline",
                "text": f"solo {r}",
                "question": f"q{r}",
                "slot": 0,
                "contender": "Solo",
            },
        ]
    rows.append(
        {
            "id": 99,
            "run_id": "r0",
            "role": "baseline",
            "text": "other",
            "question": "q0",
            "slot": 1,
            "contender": "Other",
        }
    )
    rows.append(
        {
            "id": 50,
            "run_id": "r5",
            "role": "baseline",
            "text": "lonely",
            "question": "q5",
            "slot": 0,
            "contender": "Solo",
        }
    )  # no MoA answer in that run
    rows.append(
        {
            "id": 61,
            "run_id": "r6",
            "role": "aggregator",
            "text": "  ",
            "question": "q6",
            "slot": 0,
            "contender": "MoA · cfg",
        }
    )
    rows.append(
        {"id": 62, "run_id": "r6", "role": "baseline", "text": "x", "question": "q6", "slot": 0, "contender": "Solo"}
    )  # MoA answer empty
    return pd.DataFrame(rows)


def test_blind_review_pairs_moa_against_each_baseline_in_random_order():
    pairs = arena.blind_review_pairs(review_frame(), random.Random(3))
    assert len(pairs) == 5  # 4 runs x Solo + Other in run r0
    for p in pairs:
        assert {p.left_name, p.right_name} in ({"MoA · cfg", "Solo"}, {"MoA · cfg", "Other"})
        assert p.question == "q" + p.run_id[1:]
        assert p.texts["A"] == (f"moa {p.run_id[1:]}" if p.names["A"] == "MoA · cfg" else p.texts["A"])
    orders = {tuple(p.left_id for p in arena.blind_review_pairs(review_frame(), random.Random(s))) for s in range(20)}
    assert len(orders) > 5  # order and sides vary
    moa_left = sum(
        p.left_name == "MoA · cfg"
        for s in range(40)
        for p in arena.blind_review_pairs(review_frame(), random.Random(s))
    )
    assert 60 < moa_left < 140  # of 200
    left = arena.blind_review_pairs(review_frame(), random.Random(3), voted={frozenset((1, 2)), frozenset((11, 12))})
    assert len(left) == 3 and all(frozenset((p.left_id, p.right_id)) not in ({1, 2}, {11, 12}) for p in left)
    assert arena.blind_review_pairs(review_frame().iloc[:0], random.Random(0)) == []


# -- store queries: naming, counts, costs (fake OpenAI server, real recorder) ------------------


@pytest.fixture
def engine(tmp_path):
    return open_db(f"sqlite:///{tmp_path / 'moa.db'}")


async def record(engine, events, question_set=None):
    out = []
    async with aclosing(Recorder(engine, question_set=question_set).record(events)) as evs:
        async for ev in evs:
            out.append(ev)
    return out


def final_id(engine, run_id: str) -> int:
    return arena.final_generation(get_run(engine, run_id)["generations"])["id"]


async def test_vote_counts_name_moa_answers_after_their_config(engine, fake_server):
    cfg = fake_config(
        fake_server,
        [fake_agent(fake_server, "p1"), fake_agent(fake_server, "p2")],
        baselines=[fake_agent(fake_server, "solo")],
    ).model_copy(update={"name": "my-moa"})
    evs = await record(engine, run_moa("Q1?", cfg, kind="playground"))
    playground_run = evs[0].run_id
    solo = await record(engine, run_single("Q2?", fake_agent(fake_server, "one"), kind="arena"), question_set="qs")
    moa_arena = await record(engine, run_moa("Q2?", cfg, baselines=[], kind="arena"), question_set="qs")
    data = get_run(engine, playground_run)
    agg = next(g for g in data["generations"] if g["role"] == "aggregator")
    base = next(g for g in data["generations"] if g["role"] == "baseline")
    add_vote(engine, agg["id"], base["id"], "left", "alice", run_id=playground_run)
    a, b = final_id(engine, solo[0].run_id), final_id(engine, moa_arena[0].run_id)
    add_vote(engine, a, b, "right", "bob", question_set="qs")
    add_vote(engine, b, a, "tie", "judge:gpt", question_set="qs")
    add_vote(engine, b, a, "both_bad", "cat", question_set="qs")  # one vote per pair and rater

    counts = vote_counts(engine)
    assert counts["count"].sum() == 4
    solo_name = "openai/fake-one"
    assert set(counts["left"]) | set(counts["right"]) == {"MoA · my-moa", "openai/fake-solo", solo_name}
    people = vote_counts(engine, rater_kind="people")
    assert people["count"].sum() == 3
    assert vote_counts(engine, rater_kind="judges")["outcome"].tolist() == ["tie"]
    arena_only = vote_counts(engine, kind="arena", question_set="qs")
    assert arena_only["count"].sum() == 3
    assert vote_counts(engine, kind="playground")["count"].sum() == 1
    assert vote_counts(engine, since=2**40).empty
    board = leaderboard(arena_only, n_boot=20)
    assert set(board["contender"]) == {"MoA · my-moa", solo_name}
    assert board.set_index("contender").loc["MoA · my-moa", "both_bad"] == 1

    add_rating(engine, agg["id"], 4, rater="alice")
    add_rating(engine, a, 2, rater="judge:gpt")
    r = contender_ratings(engine)
    assert sorted(zip(r["contender"], r["score"], strict=False)) == [("MoA · my-moa", 4), (solo_name, 2)]
    assert contender_ratings(engine, rater_kind="people")["contender"].tolist() == ["MoA · my-moa"]
    assert contender_ratings(engine, question_set="qs")["contender"].tolist() == [solo_name]

    costs = contender_costs(engine).set_index("contender")
    assert set(costs.index) == {"MoA · my-moa", "openai/fake-solo", solo_name}
    assert costs.loc["MoA · my-moa", "answers"] == 2
    assert (costs["latency"] > 0).all()
    # a MoA answer waits for its proposers: at least as long as its aggregator call alone
    gens = get_run(engine, moa_arena[0].run_id)["generations"]
    agg_latency = next(g["latency"] for g in gens if g["role"] == "aggregator")
    assert costs.loc["MoA · my-moa", "latency"] >= agg_latency * 0.5

    cands = review_candidates(engine)
    assert set(cands["run_id"]) == {playground_run}
    assert voted_pairs(engine, "alice") == {frozenset((agg["id"], base["id"]))}
    assert arena.blind_review_pairs(cands, random.Random(0), voted_pairs(engine, "alice")) == []
    assert len(arena.blind_review_pairs(cands, random.Random(0), voted_pairs(engine, "bob"))) == 1


def test_queries_on_an_empty_database(engine):
    assert vote_counts(engine).empty and list(vote_counts(engine).columns) == ["left", "right", "outcome", "count"]
    assert contender_ratings(engine).empty and contender_costs(engine).empty and review_candidates(engine).empty
    assert voted_pairs(engine, "x") == set()
    assert leaderboard(vote_counts(engine)).empty
    with pytest.raises(ValueError):
        vote_counts(engine, rater_kind="robots")
