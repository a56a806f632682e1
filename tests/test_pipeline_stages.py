"""Pipelines of stages: propose, review, synthesize, select, and quorums, through the real engine.

Agents answer with litellm's `mock_response` (set per agent in `extra`) or from the fake
OpenAI server (tests/fake_openai.py) where a call must be slow, hang or stream for long.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import aclosing
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from sqlmodel import SQLModel

from moa_core import engine as engine_module
from moa_core.analysis import review_ranking
from moa_core.config import AgentSpec, LayerSpec, MoAConfig, QuorumSpec, StageSpec
from moa_core.engine import NOT_USED, collect, run_moa
from moa_core.events import DraftDone, DraftStarted, Event, LayerDone, RunDone, TokenDelta
from moa_core.replay import replay_events
from moa_core.stage_layout import stage_columns
from moa_core.store import Recorder, dispose_engines, get_engine, get_run, init_db, open_db
from moa_core.store.db import current_revision, upgrade
from moa_core.vocab import StageKind
from tests.conftest import fake_agent
from tests.test_store_db import head_revision

QUESTION = "What is the capital of France?"
ANSWERS = ["Paris is the capital.", "It is Lyon.", "Paris, on the Seine."]


def mock(label: str, text: str, **extra: Any) -> AgentSpec:
    return AgentSpec(model=f"openai/mock-{label}", label=label, extra={"mock_response": text, **extra})


def proposers(texts: list[str] = ANSWERS) -> list[AgentSpec]:
    return [mock(f"P{i + 1}", t) for i, t in enumerate(texts)]


def ranking_text(*letters: str) -> str:
    lines = "\n".join(f"{i}. Response {x}" for i, x in enumerate(letters, start=1))
    return f"Response A is terse; Response B is wrong.\n\nFINAL RANKING:\n{lines}"


def pipeline(*stages: StageSpec, **kw: Any) -> MoAConfig:
    return MoAConfig(name="pipe", stages=list(stages), num_retries=0, timeout=kw.pop("timeout", 20), **kw)


def stage(kind: str, agents: list[AgentSpec], **kw: Any) -> StageSpec:
    return StageSpec(kind=StageKind(kind), agents=agents, **kw)


def dones(events: list[Event]) -> dict[str, DraftDone]:
    return {e.ref.call_id: e for e in events if isinstance(e, DraftDone)}


def stage_done(events: list[Event], layer: int) -> LayerDone:
    return next(e for e in events if isinstance(e, LayerDone) and e.layer == layer)


def index_of(events: list[Event], cls: type, call_id: str) -> int:
    return next(i for i, e in enumerate(events) if isinstance(e, cls) and e.ref.call_id == call_id)


# ---------------------------------------------------------------------------------- review


@pytest.fixture
def review_prompts(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The answers each reviewer was shown, in the order shown (recorded on the way to the prompt)."""
    seen: list[list[str]] = []
    real = engine_module.review_messages

    def spy(question: str, answers: Any, *args: Any, **kw: Any) -> Any:
        seen.append(list(answers))
        return real(question, answers, *args, **kw)

    monkeypatch.setattr(engine_module, "review_messages", spy)
    return seen


async def test_review_stage_shuffles_per_reviewer_parses_and_aggregates(review_prompts, monkeypatch):
    chairman: list[dict[str, Any]] = []
    real_aggregator = engine_module.aggregator_messages

    def spy(*args: Any, **kw: Any) -> Any:
        chairman.append(kw)
        return real_aggregator(*args, **kw)

    monkeypatch.setattr(engine_module, "aggregator_messages", spy)
    reviewers = [
        mock("R1", ranking_text("A", "B", "C")),
        mock("R2", ranking_text("C", "A", "B")),
        mock("R3", "They are all fine, I cannot choose."),  # no ranking: unparsed, kept apart
    ]
    cfg = pipeline(
        stage("propose", proposers()),
        stage("review", reviewers),
        stage("synthesize", [mock("Chair", "Paris.")], with_reviews=True),
    )
    events = await collect(run_moa(QUESTION, cfg))
    done = events[-1]
    assert isinstance(done, RunDone) and done.status == "done" and done.final_text == "Paris."
    review = stage_done(events, 1)
    assert (review.kind, review.ok, review.failed) == (StageKind.REVIEW, 3, 0)
    assert review.used == ("reviewer-1-0", "reviewer-1-1", "reviewer-1-2") and review.cut == ()
    d = review.details
    ids = ["proposer-0-0", "proposer-0-1", "proposer-0-2"]
    assert isinstance(d["seed"], int)
    for slot, row in enumerate(d["reviews"]):
        order = review_ranking.shuffled_order(3, d["seed"], slot)
        assert row["reviewer"] == f"reviewer-1-{slot}" and row["order"] == [ids[j] for j in order]
        # each reviewer was shown the answers in its own order, anonymised
        assert review_prompts[slot] == [ANSWERS[j] for j in order]
        assert row["own"] is None
    by_letter = {0: "ABC", 1: "CAB"}
    for slot, letters in by_letter.items():
        row = d["reviews"][slot]
        assert row["ranking"] == [row["order"][ord(x) - ord("A")] for x in letters]
    assert d["reviews"][2]["ranking"] is None
    # The aggregate counts the two parsed rankings, best first, with names.
    agg = d["aggregate"]
    assert [r["votes"] for r in agg] == [2, 2, 2]
    assert {r["call_id"] for r in agg} == set(ids) and {r["name"] for r in agg} == {"P1", "P2", "P3"}
    ranks: dict[str, list[int]] = {i: [] for i in ids}
    for slot in (0, 1):
        for pos, cid in enumerate(d["reviews"][slot]["ranking"]):
            ranks[cid].append(pos + 1)
    assert {r["call_id"]: r["mean_rank"] for r in agg} == {c: sum(v) / 2 for c, v in ranks.items()}
    assert [r["mean_rank"] for r in agg] == sorted(r["mean_rank"] for r in agg)
    # The chairman (with_reviews) is the only final call; reviewers are not final.
    assert {e.ref.role for e in events if isinstance(e, DraftDone)} == {"proposer", "reviewer", "aggregator"}
    assert stage_done(events, 2).kind == StageKind.SYNTHESIZE
    # with_reviews: the chairman got every answered review, keyed to the drafts' numbers, and the ranking
    reviews, ranking = chairman[-1]["reviews"], chairman[-1]["ranking"]
    assert len(reviews) == 3 and len(ranking) == 3
    first_key = ", ".join(
        f"Response {x} = [{ids.index(c) + 1}]" for x, c in zip("ABC", d["reviews"][0]["order"], strict=True)
    )
    assert reviews[0].startswith(f"({first_key})")
    assert ranking[0].startswith(f"[{ids.index(agg[0]['call_id']) + 1}] mean rank")


async def test_a_reviewer_ranking_its_own_answer_is_recorded_and_excluded_by_default():
    own_reviewer = mock("P2", ranking_text("A", "B", "C"))  # same display name as the second proposer
    other = mock("R", ranking_text("A", "B", "C"))
    results = {}
    for include_own in (False, True):
        cfg = pipeline(
            stage("propose", proposers()),
            stage("review", [own_reviewer, other], include_own=include_own),
            stage("synthesize", [mock("Chair", "Paris.")]),
        )
        events = await collect(run_moa(QUESTION, cfg))
        results[include_own] = stage_done(events, 1).details
    for details in results.values():
        assert [r["own"] for r in details["reviews"]] == ["proposer-0-1", None]
    votes = {include: {r["call_id"]: r["votes"] for r in d["aggregate"]} for include, d in results.items()}
    assert votes[False] == {"proposer-0-0": 2, "proposer-0-1": 1, "proposer-0-2": 2}
    assert votes[True] == {"proposer-0-0": 2, "proposer-0-1": 2, "proposer-0-2": 2}


async def test_a_failing_reviewer_does_not_sink_the_stage():
    cfg = pipeline(
        stage("propose", proposers()),
        stage("review", [mock("R1", ranking_text("B", "A", "C")), mock("R2", "litellm.RateLimitError")]),
        stage("synthesize", [mock("Chair", "Paris.")]),
    )
    events = await collect(run_moa(QUESTION, cfg))
    review = stage_done(events, 1)
    assert (review.ok, review.failed, review.used) == (1, 1, ("reviewer-1-0",))
    assert [r["reviewer"] for r in review.details["reviews"]] == ["reviewer-1-0"]
    assert events[-1].status == "done" and events[-1].final_text == "Paris."


async def test_every_reviewer_failing_fails_the_run_with_one_message():
    cfg = pipeline(
        stage("propose", proposers()),
        stage("review", [mock("R1", "litellm.RateLimitError"), mock("R2", "litellm.RateLimitError")]),
        stage("synthesize", [mock("Chair", "Paris.")]),
    )
    events = await collect(run_moa(QUESTION, cfg))
    done = events[-1]
    assert done.status == "failed" and done.error.startswith("Every reviewer of stage 2 failed (R1: ")
    assert "\n" not in done.error
    assert not [e for e in events if isinstance(e, DraftStarted) and e.ref.role == "aggregator"]


# ---------------------------------------------------------------------------------- select


async def test_select_sees_a_shuffled_order_and_returns_the_chosen_draft_verbatim(monkeypatch):
    shown: list[list[str]] = []
    real = engine_module.select_messages

    def spy(question, answers, *args, **kwargs):
        shown.append(list(answers))
        return real(question, answers, *args, **kwargs)

    monkeypatch.setattr(engine_module, "select_messages", spy)
    cfg = pipeline(stage("propose", proposers()), stage("select", [mock("Judge", "Best: CHOICE: Response C")]))
    events = await collect(run_moa(QUESTION, cfg))
    sel = stage_done(events, 1)
    order, seed = sel.details["order"], sel.details["seed"]
    # the selector saw the drafts in the run's seeded shuffle; "C" is the third it saw
    assert order == [f"proposer-0-{j}" for j in review_ranking.shuffled_order(3, seed, engine_module.SELECTOR_SLOT)]
    assert shown == [[ANSWERS[int(cid[-1])] for cid in order]]
    chosen = ANSWERS[int(order[2][-1])]
    done = events[-1]
    assert done.status == "done" and done.final_text == chosen
    assert sel.kind == StageKind.SELECT and sel.details == {
        "chosen": order[2],
        "parsed": True,
        "selector_text": "Best: CHOICE: Response C",
        "seed": seed,
        "order": order,
    }
    assert sel.used == ("selector-1-0",)
    # the selector's call ends with the chosen draft (what votes and leaderboards read); it
    # streamed its own words, which the stage keeps
    assert dones(events)["selector-1-0"].text == chosen
    streamed = "".join(e.text for e in events if isinstance(e, TokenDelta) and e.ref.role == "selector")
    assert streamed == "Best: CHOICE: Response C"


async def test_the_selectors_order_differs_between_runs():
    cfg = pipeline(stage("propose", proposers()), stage("select", [mock("Judge", "CHOICE: Response A")]))
    orders = set()
    for _ in range(12):
        events = await collect(run_moa(QUESTION, cfg))
        orders.add(tuple(stage_done(events, 1).details["order"]))
    assert len(orders) > 1  # 12 draws of 6 orders all equal: p = 6 ** -11


async def test_select_without_a_readable_choice_falls_back_to_the_first_answer():
    cfg = pipeline(stage("propose", proposers()), stage("select", [mock("Judge", "All good answers.")]))
    events = await collect(run_moa(QUESTION, cfg))
    assert events[-1].final_text == ANSWERS[0]
    details = stage_done(events, 1).details
    assert {k: details[k] for k in ("chosen", "parsed", "selector_text")} == {
        "chosen": "proposer-0-0",
        "parsed": False,
        "selector_text": "All good answers.",
    }


async def test_select_after_review_falls_back_to_the_reviewers_winner(monkeypatch):
    # Reviewers shown the answers in their given order, so fixed texts can rank the second first.
    monkeypatch.setattr(review_ranking, "shuffled_order", lambda n, seed, slot: list(range(n)))
    cfg = pipeline(
        stage("propose", proposers()),
        stage("review", [mock("R1", ranking_text("B", "A", "C")), mock("R2", ranking_text("B", "C", "A"))]),
        stage("select", [mock("Judge", "no idea")]),
    )
    events = await collect(run_moa(QUESTION, cfg))
    assert stage_done(events, 1).details["aggregate"][0]["call_id"] == "proposer-0-1"
    details = stage_done(events, 2).details
    assert {k: details[k] for k in ("chosen", "parsed", "selector_text", "order")} == {
        "chosen": "proposer-0-1",
        "parsed": False,
        "selector_text": "no idea",
        "order": ["proposer-0-0", "proposer-0-1", "proposer-0-2"],
    }
    assert events[-1].final_text == ANSWERS[1]


async def test_a_failing_selector_fails_the_run():
    cfg = pipeline(stage("propose", proposers()), stage("select", [mock("Judge", "litellm.RateLimitError")]))
    events = await collect(run_moa(QUESTION, cfg))
    assert events[-1].status == "failed" and events[-1].error.startswith("The selector Judge failed: ")


# ---------------------------------------------------------------------------------- propose


async def test_a_failing_proposer_does_not_sink_a_stage_and_all_failing_ends_the_run():
    some = pipeline(
        stage("propose", [mock("P1", "Paris."), mock("P2", "litellm.RateLimitError")]),
        stage("select", [mock("Judge", "CHOICE: Response A")]),
    )
    events = await collect(run_moa(QUESTION, some))
    first = stage_done(events, 0)
    assert (first.ok, first.failed, first.used) == (1, 1, ("proposer-0-0",))
    assert events[-1].status == "done" and events[-1].final_text == "Paris."
    none = pipeline(
        stage("propose", [mock("P1", "litellm.RateLimitError")]),
        stage("select", [mock("Judge", "CHOICE: Response A")]),
    )
    events = await collect(run_moa(QUESTION, none))
    assert events[-1].status == "failed" and events[-1].error.startswith("Every proposer of layer 1 failed (P1: ")
    assert not [e for e in events if isinstance(e, DraftStarted) and e.ref.role == "selector"]


# ---------------------------------------------------------------------------------- quorum


async def test_quorum_cancels_the_stragglers(fake_server):
    fast = [fake_agent(fake_server, f"q-fast{i}", tokens=3) for i in range(3)]
    slow = fake_agent(fake_server, "q-slow", tokens=400, delay=0.02)
    cfg = pipeline(
        stage("propose", [*fast, slow], quorum=QuorumSpec(k=3)),
        stage("synthesize", [fake_agent(fake_server, "q-agg")]),
    )
    events = await asyncio.wait_for(collect(run_moa(QUESTION, cfg)), 60)
    first = stage_done(events, 0)
    assert first.used == ("proposer-0-0", "proposer-0-1", "proposer-0-2") and first.cut == ("proposer-0-3",)
    assert (first.ok, first.failed) == (3, 0)
    cut = dones(events)["proposer-0-3"]
    assert cut.error == NOT_USED and cut.finish_reason == "cancelled"
    # the straggler ended before the next stage started, and the aggregator saw three drafts
    assert index_of(events, DraftDone, "proposer-0-3") < index_of(events, DraftStarted, "aggregator-1-0")
    assert dones(events)["aggregator-1-0"].text.startswith("m2d3")
    assert events[-1].status == "done"
    await fake_server.wait_idle(["fake-q-slow@tokens=400,delay=0.02"])
    assert fake_server.chunks_sent["fake-q-slow@tokens=400,delay=0.02"] < 400


async def test_quorum_show_lets_stragglers_stream_on_unused(fake_server):
    fast = [fake_agent(fake_server, f"s-fast{i}", tokens=3) for i in range(2)]
    hang = fake_agent(fake_server, "s-hang", fail="hang")  # ends only at the timeout
    cfg = pipeline(
        stage("propose", [*fast, hang], quorum=QuorumSpec(k=2, stragglers="show")),
        stage("synthesize", [fake_agent(fake_server, "s-agg")]),
        timeout=4,
    )
    events = await asyncio.wait_for(collect(run_moa(QUESTION, cfg)), 60)
    first = stage_done(events, 0)
    assert first.used == ("proposer-0-0", "proposer-0-1") and first.cut == ("proposer-0-2",)
    # The aggregator ran while the straggler was still out; the run ends after both.
    assert index_of(events, DraftDone, "aggregator-1-0") < index_of(events, DraftDone, "proposer-0-2")
    assert dones(events)["aggregator-1-0"].text.startswith("m2d2")
    assert dones(events)["proposer-0-2"].error == "timed out"
    assert isinstance(events[-1], RunDone) and events[-1].status == "done"


async def test_quorum_grace_takes_answers_that_come_soon_after(fake_server):
    fast = [fake_agent(fake_server, f"g-fast{i}", tokens=3) for i in range(2)]
    soon = fake_agent(fake_server, "g-soon", tokens=3, ttft=0.2)
    hang = fake_agent(fake_server, "g-hang", fail="hang")
    cfg = pipeline(
        stage("propose", [*fast, soon, hang], quorum=QuorumSpec(k=2, grace_s=3)),
        stage("synthesize", [fake_agent(fake_server, "g-agg")]),
        timeout=30,
    )
    events = await asyncio.wait_for(collect(run_moa(QUESTION, cfg)), 60)
    first = stage_done(events, 0)
    assert first.used == ("proposer-0-0", "proposer-0-1", "proposer-0-2") and first.cut == ("proposer-0-3",)
    assert dones(events)["proposer-0-3"].error == NOT_USED
    assert dones(events)["aggregator-1-0"].text.startswith("m2d3")


async def test_quorum_on_a_review_stage():
    reviewers = [mock(f"R{i}", ranking_text("A", "B", "C")) for i in range(2)]
    slow = mock("Rslow", ranking_text("C", "B", "A"), mock_delay=60)
    cfg = pipeline(
        stage("propose", proposers()),
        stage("review", [*reviewers, slow], quorum=QuorumSpec(k=2)),
        stage("synthesize", [mock("Chair", "Paris.")]),
    )
    events = await asyncio.wait_for(collect(run_moa(QUESTION, cfg)), 60)
    review = stage_done(events, 1)
    assert review.used == ("reviewer-1-0", "reviewer-1-1") and review.cut == ("reviewer-1-2",)
    assert [r["reviewer"] for r in review.details["reviews"]] == ["reviewer-1-0", "reviewer-1-1"]
    assert events[-1].status == "done"


# ---------------------------------------------------------------------------------- old configs


LEGACY_EVENTS = [  # what the engine before stages emitted for this config (commit 2f2ad65)
    ("DraftDone", "aggregator-2-0", None),
    ("DraftDone", "baseline--1-0", None),
    ("DraftDone", "proposer-0-0", None),
    ("DraftDone", "proposer-0-1", None),
    ("DraftDone", "proposer-1-0", None),
    ("DraftStarted", "aggregator-2-0", None),
    ("DraftStarted", "baseline--1-0", None),
    ("DraftStarted", "proposer-0-0", None),
    ("DraftStarted", "proposer-0-1", None),
    ("DraftStarted", "proposer-1-0", None),
    ("LayerDone", None, 0),
    ("LayerDone", None, 1),
    ("RunDone", None, None),
    ("RunStarted", None, None),
    ("TokenDelta", "aggregator-2-0", None),
    ("TokenDelta", "baseline--1-0", None),
    ("TokenDelta", "proposer-0-0", None),
    ("TokenDelta", "proposer-0-1", None),
    ("TokenDelta", "proposer-1-0", None),
]


def legacy_config() -> MoAConfig:
    def agent(name: str, text: str) -> AgentSpec:
        return AgentSpec(model=f"openai/{name}", label=name, extra={"mock_response": text})

    return MoAConfig(
        name="legacy",
        layers=[
            LayerSpec(proposers=[agent("p1", "One."), agent("p2", "Two.")]),
            LayerSpec(proposers=[agent("p3", "Three.")]),
        ],
        aggregator=agent("agg", "Final."),
        baselines=[agent("solo", "Alone.")],
        num_retries=0,
    )


def shape(events: list[Event]) -> list[tuple[str, str | None, int | None]]:
    seen = {
        (type(e).__name__, getattr(getattr(e, "ref", None), "call_id", None), getattr(e, "layer", None)) for e in events
    }
    return sorted(seen, key=str)


async def test_an_old_config_runs_as_before():
    cfg = legacy_config()
    assert cfg.stable_hash() == "b3906b71d45df354"  # as computed before stages existed
    events = await collect(run_moa("q?", cfg, run_id="r1"))
    assert shape(events) == LEGACY_EVENTS
    layers = [e for e in events if isinstance(e, LayerDone)]
    assert [(e.layer, e.ok, e.failed, e.kind) for e in layers] == [(0, 2, 0, "propose"), (1, 1, 0, "propose")]
    assert layers[0].used == ("proposer-0-0", "proposer-0-1") and layers[0].cut == () and layers[0].details == {}
    roles = {e.ref.call_id: e.ref.role for e in events if isinstance(e, DraftDone)}
    assert roles["aggregator-2-0"] == "aggregator" and roles["baseline--1-0"] == "baseline"
    assert events[-1].final_text == "Final."


async def test_the_same_pipeline_written_as_stages_makes_the_same_calls():
    old = legacy_config()
    new = MoAConfig(name="legacy", stages=old.pipeline(), baselines=old.baselines, num_retries=0)
    old_events = await collect(run_moa("q?", old, run_id="r1"))
    new_events = await collect(run_moa("q?", new, run_id="r1"))
    # Only difference: a stages config also says when its last stage is done.
    extra = [e for e in new_events if isinstance(e, LayerDone) and e.layer == 2]
    assert len(extra) == 1 and extra[0].kind == "synthesize" and extra[0].used == ("aggregator-2-0",)
    assert shape([e for e in new_events if e not in extra]) == shape(old_events)
    assert new_events[-1].final_text == old_events[-1].final_text


# ---------------------------------------------------------------------------------- cancelling


async def _break_after(gen: Any, role: str, deltas: int = 3) -> None:
    seen = 0
    async for ev in gen:
        if isinstance(ev, TokenDelta) and ev.ref.role == role:
            seen += 1
            if seen == deltas:
                break
    await gen.aclose()


@pytest.mark.parametrize("kind", ["review", "select", "synthesize"])
async def test_stopping_during_a_stage_cancels_its_calls(fake_server, kind):
    long = [
        fake_agent(fake_server, f"c-{kind}{i}", tokens=300, delay=0.02) for i in range(2 if kind == "review" else 1)
    ]
    props = [fake_agent(fake_server, f"c-p{i}", tokens=2) for i in range(2)]
    stages = [stage("propose", props)]
    if kind == "review":
        stages += [stage("review", long), stage("synthesize", [fake_agent(fake_server, "c-chair")])]
    else:
        stages.append(stage(kind, long))
    role = {"review": "reviewer", "select": "selector", "synthesize": "aggregator"}[kind]
    await asyncio.wait_for(_break_after(run_moa(QUESTION, pipeline(*stages)), role), 60)
    models = [a.model.removeprefix("openai/") for a in long]
    await fake_server.wait_idle(models)
    assert all(fake_server.chunks_sent[m] < 300 for m in models), {m: fake_server.chunks_sent[m] for m in models}


async def test_stopping_cancels_stragglers_shown_after_a_quorum(fake_server):
    fast = fake_agent(fake_server, "cq-fast", tokens=2)
    straggler = fake_agent(fake_server, "cq-slow", tokens=300, delay=0.02)
    agg = fake_agent(fake_server, "cq-agg", tokens=300, delay=0.02)
    cfg = pipeline(
        stage("propose", [fast, straggler], quorum=QuorumSpec(k=1, stragglers="show")),
        stage("synthesize", [agg]),
    )
    await asyncio.wait_for(_break_after(run_moa(QUESTION, cfg), "aggregator"), 60)
    models = [a.model.removeprefix("openai/") for a in (straggler, agg)]
    await fake_server.wait_idle(models)
    assert all(fake_server.chunks_sent[m] < 300 for m in models), {m: fake_server.chunks_sent[m] for m in models}


# ---------------------------------------------------------------------------------- store


@pytest.fixture
def sqlite_url(tmp_path: Path) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 'moa.db'}"
    yield url
    dispose_engines(url)


async def test_recorded_stages_round_trip_and_replay(sqlite_url, monkeypatch):
    # Reviewers and the selector shown the answers in their given order, so fixed texts choose.
    monkeypatch.setattr(review_ranking, "shuffled_order", lambda n, seed, slot: list(range(n)))
    engine = open_db(sqlite_url)
    slow = mock("P4", "Marseille.", mock_delay=60)
    cfg = pipeline(
        stage("propose", [*proposers(), slow], quorum=QuorumSpec(k=3)),
        stage("review", [mock("P1", ranking_text("A", "B", "C")), mock("R", ranking_text("C", "B", "A"))]),
        stage("select", [mock("Judge", "CHOICE: Response B")]),
    )
    async with aclosing(Recorder(engine).record(run_moa(QUESTION, cfg))) as stream:
        events = [ev async for ev in stream]
    assert events[-1].status == "done" and events[-1].final_text == ANSWERS[1]
    live = [e for e in events if isinstance(e, LayerDone)]
    assert [e.kind for e in live] == ["propose", "review", "select"]

    stored = get_run(engine, events[0].run_id)
    assert stored is not None and stored["run"]["final_text"] == ANSWERS[1]
    rows = stored["stages"]
    assert [(r["layer"], r["kind"], r["ok"], r["failed"]) for r in rows] == [
        (e.layer, e.kind, e.ok, e.failed) for e in live
    ]
    for r, e in zip(rows, live, strict=True):
        assert (r["used"], r["cut"], r["details"], r["ended_at"]) == (list(e.used), list(e.cut), e.details, e.t)
    assert rows[0]["cut"] == ["proposer-0-3"] and rows[2]["details"] == {
        "chosen": "proposer-0-1",
        "parsed": True,
        "selector_text": "CHOICE: Response B",
        "seed": rows[1]["details"]["seed"],
        "order": ["proposer-0-0", "proposer-0-1", "proposer-0-2"],
    }
    assert rows[1]["details"]["reviews"][0]["own"] == "proposer-0-0"
    cut = next(g for g in stored["generations"] if g["call_id"] == "proposer-0-3")
    assert (cut["status"], cut["error"]) == ("cancelled", NOT_USED)

    # A replay says what each stage decided, as recorded.
    replayed = [ev async for ev in replay_events(stored, None)]
    assert [e for e in replayed if isinstance(e, LayerDone)] == live
    assert {e.ref.role for e in replayed if isinstance(e, DraftDone)} == {"proposer", "reviewer", "selector"}
    assert replayed[-1].final_text == ANSWERS[1]
    columns = stage_columns(stored)
    assert [title for title, _ in columns] == [
        "Layer 1 · 4 proposers · quorum 3 of 4",
        "Layer 2 · peer review by 2 reviewers (answers anonymised)",
        "Selected answer and single models",
    ]
    assert columns[1][1] == [("reviewer-1-0", "Review by P1"), ("reviewer-1-1", "Review by R")]
    assert columns[2][1] == [("selector-2-0", "Selector · Judge")]

    # Deleting the run deletes its stages.
    with engine.begin() as c:
        c.execute(text("DELETE FROM run WHERE id = :id"), {"id": events[0].run_id})
        assert c.execute(text("SELECT count(*) FROM stage")).scalar() == 0


async def test_a_database_at_0007_upgrades_without_losing_a_row(sqlite_url):
    engine = get_engine(sqlite_url)
    upgrade(engine, "0007")
    t = time.time() - 60
    with engine.begin() as c:
        c.execute(
            text(
                "INSERT INTO run (id, created_at, kind, question, history, config, config_hash, preset, status, "
                "prompt_tokens, completion_tokens, cost, wall_time, final_text) VALUES ('old', :t, 'playground', 'q', "
                "'[]', '{}', 'h', 'p', 'done', 0, 0, 0, 2.0, 'final')"
            ),
            {"t": t},
        )
        for role, layer, slot, status in [
            ("proposer", 0, 0, "done"),
            ("proposer", 0, 1, "error"),
            ("aggregator", 1, 0, "done"),
        ]:
            c.execute(
                text(
                    "INSERT INTO generation (run_id, call_id, role, layer, slot, model, label, params, system_prompt, "
                    "text, prompt_tokens, completion_tokens, cost, started_at, ended_at, status) VALUES ('old', :cid, "
                    ":role, :layer, :slot, 'm', '', '{}', '', 'text', 0, 0, 0, :t, :end, :st)"
                ),
                {
                    "cid": f"{role}-{layer}-{slot}",
                    "role": role,
                    "layer": layer,
                    "slot": slot,
                    "t": t,
                    "end": t + 1,
                    "st": status,
                },
            )
        g = [row[0] for row in c.execute(text("SELECT id FROM generation ORDER BY id"))]
        c.execute(
            text("INSERT INTO rating (generation_id, score, comment, rater, created_at) VALUES (:g, 4, '', 'a', :t)"),
            {"g": g[0], "t": t},
        )
        c.execute(
            text(
                "INSERT INTO vote (left_generation_id, right_generation_id, outcome, blind, rater, created_at, run_id) "
                "VALUES (:a, :b, 'left', :blind, 'a', :t, 'old')"
            ),
            {"a": g[0], "b": g[2], "blind": True, "t": t},
        )
        c.execute(
            text(
                "INSERT INTO campaign (id, name, created_at, target_votes, instructions, selection, double_rate, "
                "repeat_rate, claim_seconds) VALUES ('c1', 'camp', :t, 1, '', 'uniform', 0.1, 0.0, 600)"
            ),
            {"t": t},
        )
    tables = ("run", "generation", "rating", "vote", "campaign")
    with engine.connect() as c:
        before = {tb: c.execute(text(f"SELECT * FROM {tb} ORDER BY 1")).all() for tb in tables}

    init_db(engine)
    assert current_revision(engine) == head_revision()
    with engine.connect() as c:
        assert {tb: c.execute(text(f"SELECT * FROM {tb} ORDER BY 1")).all() for tb in tables} == before
        assert compare_metadata(MigrationContext.configure(c, opts={"compare_type": True}), SQLModel.metadata) == []
    stored = get_run(engine, "old")
    assert stored is not None and stored["stages"] == []
    # An old run replays with the LayerDone it always had, read from its generations.
    replayed = [ev async for ev in replay_events(stored, None)]
    (layer,) = [e for e in replayed if isinstance(e, LayerDone)]
    assert (layer.layer, layer.ok, layer.failed, layer.kind, layer.used) == (0, 1, 1, "propose", ("proposer-0-0",))
