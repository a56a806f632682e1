"""Fault matrix: {HTTP 500, 429 + Retry-After, never answers, dropped mid-stream, malformed
chunks} x {one proposer, all proposers of a layer, the aggregator, a baseline, the judge},
plus transient faults (500 once, 429 once) that a retry must absorb.

Every cell records the run into a fresh SQLite file through the Recorder (as the
Playground does) and checks three things: the outcome is the expected one (the run goes on
with the call marked as an error / the run fails with one clear message / the retry makes
it succeed); the database says exactly what the events said; and nothing runs past a
liveness bound derived from the config's timeout and retries. Every cell runs once per client
path (`client_path`: the fast OpenAI-compatible path and litellm), and checks that the path
asked for is the one that served the calls.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid

import pytest

from moa_core.config import AgentSpec, LayerSpec, MoAConfig
from moa_core.engine import run_moa
from moa_core.evaluation.contenders import single_contender
from moa_core.evaluation.questions import Question, QuestionSet
from moa_core.evaluation.runner import EvalPlan, run_evaluation
from moa_core.events import DraftDone, RunDone
from moa_core.providers import llm
from tests.reliability.conftest import assert_store_matches_events, record, rows

TIMEOUT = 2.0  # seconds per call; `hang` cells wait this long (times retries + 1)
SLACK = 20.0  # liveness slack on a loaded 2-core machine: a bound, never a speed claim

FAULTS = ["500", "429", "hang", "drop", "garbage"]
TARGETS = ["one_proposer", "layer", "aggregator", "baseline", "judge"]
TRANSIENT = ["500once", "429once"]

# What each fault must leave in the call's error message (the user reads it).
# One spelling per fault on both client paths (moa_core/providers/errors.py).
ERROR_WORDS = {
    "500": "internalservererror: injected server error",
    "429": "ratelimiterror: injected rate limit",
    "hang": "timed out",
    "drop": "apiconnectionerror: the connection was lost before the answer was finished",
    "garbage": "apierror: malformed chunk in the stream (",
}


def retries_for(fault: str) -> int:
    # Retries are exercised for the HTTP errors; a hang is retried once in its own test
    # below, so the matrix stays fast.
    return 0 if fault == "hang" else 1


def served(agent: AgentSpec) -> str:
    """The model name the fake server sees (without litellm's provider prefix)."""
    return agent.model.split("/", 1)[1]


def _agent(server, name: str, **opts: object) -> AgentSpec:
    suffix = ",".join(f"{k}={v}" for k, v in opts.items())
    return AgentSpec(
        model=f"openai/fake-{name}" + (f"@{suffix}" if suffix else ""), label=name, api_base=server.url, max_tokens=64
    )


def _config(server, target: str, fault: str, uid: str, retries: int) -> tuple[MoAConfig, list[AgentSpec]]:
    ok = lambda n: _agent(server, f"{n}-{uid}", tokens=6)  # noqa: E731
    bad = lambda n: _agent(server, f"{n}-{uid}", tokens=6, fail=fault)  # noqa: E731
    baselines: list[AgentSpec] = []
    if target == "one_proposer":
        faulty = [bad("p1")]
        layers = [[ok("p0"), faulty[0], ok("p2")]]
        agg = ok("agg")
    elif target == "layer":
        faulty = [bad("q0"), bad("q1")]
        layers = [[ok("p0"), ok("p1")], faulty]
        agg = ok("agg")
    elif target == "aggregator":
        faulty = [bad("agg")]
        layers = [[ok("p0"), ok("p1")]]
        agg = faulty[0]
    elif target == "baseline":
        faulty = [bad("solo")]
        layers = [[ok("p0"), ok("p1")]]
        agg = ok("agg")
        baselines = faulty
    else:
        raise AssertionError(target)
    cfg = MoAConfig(
        name=f"fault-{target}-{fault}",
        layers=[LayerSpec(proposers=p) for p in layers],
        aggregator=agg,
        baselines=baselines,
        timeout=TIMEOUT,
        num_retries=retries,
    )
    return cfg, faulty


def _bound(cfg: MoAConfig) -> float:
    stages = len(cfg.layers) + 1  # each layer, then the aggregator (baselines run alongside)
    return cfg.timeout * (cfg.num_retries + 1) * stages + SLACK


async def _run_cell(server, engine, target: str, fault: str, retries: int, client: str):
    uid = uuid.uuid4().hex[:8]
    cfg, faulty = _config(server, target, fault, uid, retries)
    events = await asyncio.wait_for(record(engine, run_moa("Why is the sky blue?", cfg)), _bound(cfg))
    assert_store_matches_events(engine, events)
    served_by = {
        json.loads(p)["client"] if isinstance(p, str) else p["client"]
        for (p,) in rows(engine, "select params from generation")
    }
    assert served_by == {client}, f"calls were served by {served_by}, not the {client} path"
    assert not rows(engine, "select id from generation where status = 'streaming'")
    assert rows(engine, "select count(*) from run where status = 'running'") == [(0,)]
    dones = {d.ref.label: d for d in events if isinstance(d, DraftDone)}
    return cfg, faulty, events, dones


def _expect_fault(target: str, fault: str, cfg: MoAConfig, faulty: list[AgentSpec], events, dones, server) -> None:
    end: RunDone = events[-1]
    for agent in faulty:
        d = dones[agent.label]
        assert not d.ok, f"{agent.label} should have failed with {fault}, got text {d.text!r}"
        assert d.error and "\n" not in d.error and ERROR_WORDS[fault] in d.error.lower(), d.error
        if fault in ("500", "429"):
            assert len(server.stamps[served(agent)]) == cfg.num_retries + 1, "retried num_retries times, then gave up"
    healthy = [d for name, d in dones.items() if name not in {a.label for a in faulty}]
    if target in ("one_proposer", "baseline"):
        # the run goes on; the failed call is marked, everything else finished
        assert end.status == "done" and end.error is None
        assert all(d.ok for d in healthy)
        agg = next(d for d in healthy if d.ref.role == "aggregator")
        good_drafts = 2  # the aggregator saw only the drafts that succeeded
        assert agg.text.startswith(f"m2d{good_drafts}"), agg.text
        assert end.totals.failed_calls == 1
    elif target == "layer":
        assert end.status == "failed"
        assert end.error.startswith("Every proposer of layer 2 failed (") and "\n" not in end.error
        assert all(a.label in end.error for a in faulty)
        assert not [d for d in dones.values() if d.ref.role == "aggregator"], "no aggregator after a dead layer"
        assert all(d.ok for d in healthy) and len(healthy) == 2  # layer 1 kept
    elif target == "aggregator":
        assert end.status == "failed"
        assert end.error.startswith(f"The aggregator {faulty[0].label} failed: ") and "\n" not in end.error
        assert all(d.ok for d in healthy) and len(healthy) == 2


@pytest.mark.parametrize("target", [t for t in TARGETS if t != "judge"])
@pytest.mark.parametrize("fault", FAULTS)
async def test_fault_in_run(fault_server, rel_db, target, fault, client_path):
    cfg, faulty, events, dones = await _run_cell(fault_server, rel_db, target, fault, retries_for(fault), client_path)
    _expect_fault(target, fault, cfg, faulty, events, dones, fault_server)


@pytest.mark.parametrize("target", [t for t in TARGETS if t != "judge"])
@pytest.mark.parametrize("fault", TRANSIENT)
async def test_transient_fault_is_retried_then_succeeds(fault_server, rel_db, target, fault, client_path):
    _cfg, faulty, events, dones = await _run_cell(fault_server, rel_db, target, fault, 1, client_path)
    end: RunDone = events[-1]
    assert end.status == "done" and end.error is None and end.totals.failed_calls == 0
    assert all(d.ok for d in dones.values())
    for agent in faulty:
        stamps = fault_server.stamps[served(agent)]
        assert len(stamps) == 2, "one failed request, one retry"
        if fault == "429once":
            assert stamps[1] - stamps[0] >= 0.9, "the retry must wait for Retry-After (1 s)"


async def test_hang_with_retries_is_cut_at_timeout_times_attempts(fault_server, rel_db, client_path):
    """A call that never answers, with a retry: two attempts, then the call's error; the
    run goes on and ends within the bound."""
    cfg, faulty, events, dones = await _run_cell(fault_server, rel_db, "one_proposer", "hang", 1, client_path)
    d = dones[faulty[0].label]
    assert d.error == "timed out"
    assert d.latency < cfg.timeout * (cfg.num_retries + 1) + SLACK
    assert events[-1].status == "done"


# ---------------------------------------------------------------- the judge column


def _plan(server, judge: AgentSpec, uid: str, retries: int) -> EvalPlan:
    a = _agent(server, f"alpha-{uid}", tokens=5)
    b = _agent(server, f"beta-{uid}", tokens=9)
    questions = QuestionSet(name=f"rel-{uid}", format="plain", questions=[Question(id="q1", turns=["What is 2 + 2?"])])
    return EvalPlan(
        f"faults {uid}",
        questions,
        [
            single_contender(a, "alpha", timeout=TIMEOUT, num_retries=1),
            single_contender(b, "beta", timeout=TIMEOUT, num_retries=1),
        ],
        judge,
        judge_timeout=TIMEOUT,
        judge_retries=retries,
    )


async def _judge_cell(server, engine, fault: str, retries: int, client: str):
    uid = uuid.uuid4().hex[:8]
    judge = AgentSpec(
        model=f"openai/fake-judge-{uid}@verdict=A,fail={fault}",
        label="judge",
        api_base=server.url,
        temperature=0.0,
        max_tokens=64,
    )
    assert llm.client_for(judge) == client
    plan = _plan(server, judge, uid, retries)
    # two answers then one judgement (two judge calls, one after the other)
    bound = 2 * TIMEOUT * 2 + 2 * TIMEOUT * (retries + 1) + SLACK
    summary = await asyncio.wait_for(run_evaluation(engine, plan, concurrency=2), bound)
    assert summary.answers_new == 2 and summary.answers_failed == 0
    judge_runs = rows(engine, "select id, status, error from run where preset = :p", p=f"judge:{judge.model}")
    assert len(judge_runs) == 1
    gens = rows(
        engine, "select slot, status, error from generation where run_id = :id order by slot", id=judge_runs[0][0]
    )
    votes = rows(engine, "select outcome, rater from vote")
    assert rows(engine, "select count(*) from run where status in ('running')") == [(0,)]
    return judge, summary, judge_runs[0], gens, votes


@pytest.mark.parametrize("fault", FAULTS)
async def test_fault_in_judge(fault_server, rel_db, fault, client_path):
    _judge, summary, (_run_id, status, error), gens, votes = await _judge_cell(
        fault_server, rel_db, fault, retries_for(fault), client_path
    )
    # the judgement fails with one clear message; no vote is invented; the answers stay
    assert summary.judgements_failed == 1 and summary.judgements_new == 0 and summary.votes == 0
    assert status == "failed" and error.startswith("judge call 1 failed: ") and "\n" not in error
    assert ERROR_WORDS[fault] in error.lower()
    assert summary.errors and summary.errors[-1].endswith(error), "what the runner reported is what was stored"
    assert gens == [(0, "error", error.removeprefix("judge call 1 failed: "))], "the second order is not tried"
    assert votes == []


@pytest.mark.parametrize("fault", TRANSIENT)
async def test_transient_fault_in_judge_is_retried(fault_server, rel_db, fault, client_path):
    judge, summary, (_run_id, status, error), gens, votes = await _judge_cell(
        fault_server, rel_db, fault, 1, client_path
    )
    assert summary.judgements_new == 1 and summary.judgements_failed == 0
    assert status == "done" and error is None
    assert [g[:2] for g in gens] == [(0, "done"), (1, "done")]
    # "A" in both orders is position bias: recorded as a tie, and still a vote
    assert votes == [("tie", f"judge:{judge.model}")]
    stamps = fault_server.stamps[served(judge)]
    assert len(stamps) == 3, "first order: failed + retried; second order: once"
    if fault == "429once":
        assert stamps[1] - stamps[0] >= 0.9


async def test_call_errors_read_as_one_short_message(fault_server, rel_db, client_path):
    _cfg, faulty, _events, dones = await _run_cell(fault_server, rel_db, "one_proposer", "500", 0, client_path)
    messages = [dones[faulty[0].label].error]
    _cfg, faulty, _events, dones = await _run_cell(fault_server, rel_db, "one_proposer", "garbage", 0, client_path)
    messages.append(dones[faulty[0].label].error)
    for msg in messages:
        assert not re.search(r"\b(\w+): \1: ", msg), f"a name is repeated: {msg}"
        assert "Original exception" not in msg and len(msg) < 200, msg
