"""The pre-run estimate's calibration on stored runs: synthetic runs of the default preset,
recorded into a real SQLite file, are what the estimate must follow."""

from __future__ import annotations

import pytest

from moa_core.config import load_preset
from moa_core.estimate import estimate
from moa_core.events import CallRef, DraftDone, DraftStarted, RunDone, RunStarted, Totals, Usage
from moa_core.store import Recorder, open_db
from moa_core.store.db import dispose_engines
from moa_core.store.timings import model_timings, summarise

QUESTION = "Why is the sky blue?"
# How the slow machine ran local-moa: (tokens/s, ttft for a short prompt, tokens written) per
# proposer; the aggregator, alone on the cores, writes faster but its long prompt takes
# longer before its first token.
PROPOSERS = {
    "local/qwen2.5-coder-0.5b": (12.0, 0.8, 100),
    "local/smollm2-135m": (50.0, 0.5, 100),
    "local/gemma3-270m": (40.0, 0.6, 41),
}
AGG_TTFT, AGG_TOKENS, AGG_PROMPT, AGG_SPEED = 3.0, 120, 430, 25.0


@pytest.fixture
def engine(tmp_path):
    url = f"sqlite:///{tmp_path / 'moa.db'}"
    yield open_db(url)
    dispose_engines(url)


def record_run(engine, run_id: str, t0: float) -> float:
    """One synthetic local-moa run with the timings above; returns its wall time."""
    cfg = load_preset("local-moa")
    rec = Recorder(engine, flush_interval=None)
    rec.handle(RunStarted(run_id, QUESTION, [], cfg.model_dump(mode="json"), cfg.stable_hash(), cfg.name, "test", t0))

    def call(role, layer: int, slot: int, agent, start: float, ttft: float, tokens: int, prompt: int) -> float:
        speed = AGG_SPEED if role == "aggregator" else PROPOSERS[agent.model][0]
        end = start + ttft + (tokens - 1) / speed
        ref = CallRef(run_id, role, layer, slot, agent.model, agent.display_name)
        rec.handle(DraftStarted(ref, "", agent.public_params(), start))
        rec.handle(DraftDone(ref, "x " * tokens, "stop", Usage(prompt, tokens), 0.0, start, end, ttft))
        return end

    ends = [
        call("proposer", 0, i, a, t0, PROPOSERS[a.model][1], PROPOSERS[a.model][2], 30)
        for i, a in enumerate(cfg.layers[0].proposers)
    ]
    end = call("aggregator", 1, 0, cfg.aggregator, max(ends), AGG_TTFT, AGG_TOKENS, AGG_PROMPT)
    base = cfg.baselines[0]
    end = max(end, call("baseline", -1, 0, base, t0, PROPOSERS[base.model][1], AGG_TOKENS, 25))
    rec.handle(RunDone(run_id, "done", "x", Totals(wall_time=end - t0, calls=5), end))
    return end - t0


def test_estimate_follows_the_stored_runs_of_its_models(engine):
    walls = [record_run(engine, f"run-{i}", 1000.0 + 100 * i) for i in range(3)]
    wall = sum(walls) / len(walls)
    cfg = load_preset("local-moa")
    models = [a.model for a in cfg.all_agents()]
    timings = model_timings(engine, models)
    assert set(timings) == set(PROPOSERS)
    qwen = timings["local/qwen2.5-coder-0.5b"]
    assert qwen.for_role("proposer").tokens_per_second == pytest.approx(12.0)
    assert qwen.for_role("aggregator").tokens_per_second == pytest.approx(AGG_SPEED)
    assert qwen.for_role("aggregator").first_token_seconds(AGG_PROMPT) == pytest.approx(AGG_TTFT)
    # Across roles, a longer prompt means a later first token.
    assert qwen.first_token_seconds(AGG_PROMPT) > qwen.first_token_seconds(30)
    calibrated = estimate(cfg, QUESTION, timings=timings)
    assert calibrated.calibrated
    assert 0.6 * wall <= calibrated.seconds <= 1.4 * wall, (calibrated.seconds, wall)
    # The defaults (fast, idle-machine speeds) are what the stored runs correct.
    default = estimate(cfg, QUESTION)
    assert not default.calibrated
    assert not 0.6 * wall <= default.seconds <= 1.4 * wall, (default.seconds, wall)
    # Tokens and cost stay upper bounds: calibration changes only the time.
    assert (calibrated.prompt_tokens, calibrated.completion_tokens) == (
        default.prompt_tokens,
        default.completion_tokens,
    )


def test_no_stored_runs_leaves_the_defaults(engine):
    cfg = load_preset("local-moa")
    assert model_timings(engine, [a.model for a in cfg.all_agents()]) == {}
    assert estimate(cfg, QUESTION, timings={}) == estimate(cfg, QUESTION)


def test_unfinished_and_one_token_calls_do_not_count():
    rows = [
        {"prompt_tokens": 30, "completion_tokens": 1, "ttft": 0.5, "latency": 0.5, "params": {"max_tokens": 10}},
        {"prompt_tokens": 30, "completion_tokens": 5, "ttft": None, "latency": 2.0, "params": {}},
    ]
    assert summarise(rows) is None
    rows.append(
        {"prompt_tokens": 30, "completion_tokens": 11, "ttft": 1.0, "latency": 2.0, "params": {"max_tokens": 22}}
    )
    timing = summarise(rows)
    assert timing is not None and timing.calls == 1
    assert (timing.tokens_per_second, timing.first_token_seconds(999), timing.output_share) == (10.0, 1.0, 0.5)


def test_pipelines_count_every_stage():
    council = load_preset("council-local")
    # 3 proposers, 3 reviewers, the chairman, the baseline.
    assert estimate(council, "q").calls == 8
    plain = council.model_copy(deep=True)
    plain.stages[-1].with_reviews = False
    assert estimate(council, "q").prompt_tokens > estimate(plain, "q").prompt_tokens
    # The aggregator starts at the 2nd draft, not the slowest (no baseline to wait for).
    quorum = load_preset("quorum-local").model_copy(update={"baselines": []}, deep=True)
    everyone = quorum.model_copy(deep=True)
    everyone.stages[0].quorum = None
    assert estimate(quorum, "q").seconds < estimate(everyone, "q").seconds
