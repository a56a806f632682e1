"""Engine behaviour against the fake OpenAI server and litellm's mock_response."""

from __future__ import annotations

import asyncio

import litellm
import pytest

from moa_core.config import AgentSpec, LayerSpec, MoAConfig
from moa_core.engine import RunInputError, collect, run_moa
from moa_core.events import ContextTrimmed, DraftDone, DraftStarted, LayerDone, RunDone, RunStarted, TokenDelta
from moa_core.providers.fit import fit_drafts
from tests.conftest import fake_agent, fake_config


def dones(events):
    return [e for e in events if isinstance(e, DraftDone)]


async def test_full_run_events_in_order(fake_server):
    cfg = fake_config(
        fake_server,
        [fake_agent(fake_server, f"p{i}", tokens=5) for i in range(3)],
        baselines=[fake_agent(fake_server, "base", tokens=4)],
    )
    events = await collect(run_moa("Why is the sky blue?", cfg))
    assert isinstance(events[0], RunStarted)
    assert isinstance(events[-1], RunDone) and events[-1].status == "done"
    by_role = {}
    for d in dones(events):
        by_role.setdefault(d.ref.role, []).append(d)
    assert len(by_role["proposer"]) == 3 and len(by_role["aggregator"]) == 1 and len(by_role["baseline"]) == 1
    assert all(d.ok and d.usage.completion_tokens > 0 for d in dones(events))
    # the aggregator saw the three drafts (the fake server echoes what it received)
    final = by_role["aggregator"][0]
    assert final.text.startswith("m2d3"), final.text
    assert events[-1].final_text == final.text
    # every token of a call arrives between its start and its end
    deltas = "".join(e.text for e in events if isinstance(e, TokenDelta) and e.ref.role == "aggregator")
    assert deltas == final.text
    layer_done = [e for e in events if isinstance(e, LayerDone)]
    assert [(e.layer, e.ok, e.failed) for e in layer_done] == [(0, 3, 0)]
    assert (
        events[-1].totals.calls == 5 and events[-1].totals.completion_tokens == 3 * 5 + 8 + 4
    )  # fake default: 8 tokens


async def test_proposers_run_concurrently(fake_server):
    props = [fake_agent(fake_server, f"slow{i}", tokens=3, ttft=0.3) for i in range(3)]
    events = await collect(run_moa("q", fake_config(fake_server, props)))
    props_done = [d for d in dones(events) if d.ref.role == "proposer"]
    latest_start = max(d.started_at for d in props_done)
    earliest_end = min(d.ended_at for d in props_done)
    assert latest_start < earliest_end, "proposer calls did not overlap"


async def test_second_layer_sees_first_layer_drafts(fake_server):
    props = [fake_agent(fake_server, f"l{i}") for i in range(2)]
    events = await collect(run_moa("q", fake_config(fake_server, props, layers=2)))
    layer1 = [d for d in dones(events) if d.ref.role == "proposer" and d.ref.layer == 1]
    assert len(layer1) == 2 and all(d.text.startswith("m2d2") for d in layer1)


async def test_one_failing_proposer_does_not_sink_the_run(fake_server):
    props = [fake_agent(fake_server, "ok1"), fake_agent(fake_server, "bad", fail=500), fake_agent(fake_server, "ok2")]
    events = await collect(run_moa("q", fake_config(fake_server, props)))
    failed = [d for d in dones(events) if not d.ok]
    assert len(failed) == 1 and failed[0].ref.slot == 1 and "server error" in failed[0].error
    assert events[-1].status == "done"
    agg = next(d for d in dones(events) if d.ref.role == "aggregator")
    assert agg.text.startswith("m2d2")  # only the two good drafts


async def test_all_proposers_failing_ends_with_clear_error(fake_server):
    props = [fake_agent(fake_server, f"bad{i}", fail=500) for i in range(2)]
    events = await collect(run_moa("q", fake_config(fake_server, props)))
    done = events[-1]
    assert isinstance(done, RunDone) and done.status == "failed"
    assert "Every proposer of layer 1 failed" in done.error
    assert not [d for d in dones(events) if d.ref.role == "aggregator"]


async def test_aggregator_failure_fails_the_run(fake_server):
    cfg = fake_config(
        fake_server, [fake_agent(fake_server, "p")], aggregator=fake_agent(fake_server, "aggbad", fail=500)
    )
    events = await collect(run_moa("q", cfg))
    assert events[-1].status == "failed" and "aggregator" in events[-1].error


async def test_mock_response_provider_error_and_text():
    cfg = MoAConfig(
        layers=[
            LayerSpec(
                proposers=[
                    AgentSpec(model="openai/gpt-x", extra={"mock_response": "Rayleigh scattering."}),
                    AgentSpec(model="openai/gpt-y", extra={"mock_response": "litellm.RateLimitError"}),
                ]
            )
        ],
        aggregator=AgentSpec(model="openai/gpt-z", extra={"mock_response": "Because of Rayleigh scattering."}),
        num_retries=0,
    )
    events = await collect(run_moa("Why is the sky blue?", cfg))
    d = dones(events)
    assert [x.ok for x in sorted(d, key=lambda x: x.ref.slot) if x.ref.role == "proposer"] == [True, False]
    assert "RateLimit" in next(x for x in d if not x.ok).error
    assert events[-1].final_text == "Because of Rayleigh scattering."


async def test_timeout_marks_call_failed(fake_server, client_path):
    props = [fake_agent(fake_server, "quick"), fake_agent(fake_server, "hang", fail="hang")]
    cfg = fake_config(fake_server, props, timeout=1)
    events = await asyncio.wait_for(collect(run_moa("q", cfg)), timeout=30)
    failed = [d for d in dones(events) if not d.ok]
    assert len(failed) == 1 and failed[0].ref.model.endswith("fail=hang")
    assert events[-1].status == "done"


async def test_stopping_iteration_cancels_in_flight_calls(fake_server, client_path):
    props = [fake_agent(fake_server, f"long{i}-{client_path}", tokens=200, delay=0.02) for i in range(2)]
    gen = run_moa("q", fake_config(fake_server, props))
    seen = 0
    async for ev in gen:
        if isinstance(ev, TokenDelta):
            seen += 1
            if seen == 5:
                break
    await gen.aclose()
    # Every call was cut on the server's side: its streams end (the server notices the
    # closed connection at its next write) long before their 200 tokens were sent.
    models = [a.model.removeprefix("openai/") for a in props]
    await fake_server.wait_idle(models)
    assert all(fake_server.chunks_sent[m] < 200 for m in models), {m: fake_server.chunks_sent[m] for m in models}


async def test_context_trimming_emits_event(fake_server):
    litellm.register_model(
        {
            "openai/fake-tiny-ctx": {
                "max_input_tokens": 300,
                "max_tokens": 300,
                "litellm_provider": "openai",
                "mode": "chat",
                "input_cost_per_token": 0,
                "output_cost_per_token": 0,
            }
        }
    )
    props = [fake_agent(fake_server, f"long{i}", tokens=150) for i in range(3)]
    agg = AgentSpec(model="openai/fake-tiny-ctx", api_base=fake_server.url, max_tokens=50)
    events = await collect(run_moa("q", fake_config(fake_server, props, aggregator=agg)))
    trimmed = [e for e in events if isinstance(e, ContextTrimmed)]
    assert len(trimmed) == 1
    t = trimmed[0]
    assert t.tokens_after < t.tokens_before and t.context_window == 300
    assert events[-1].status == "done"


def test_fit_drafts_shares_budget_fairly():
    drafts = ["short draft", "word " * 400, "word " * 400]
    out = fit_drafts("gpt-4o", drafts, 200)
    assert out[0] == drafts[0]
    sizes = [litellm.token_counter(model="gpt-4o", text=d) for d in out]
    assert sum(sizes) <= 200
    assert abs(sizes[1] - sizes[2]) <= 2


@pytest.mark.parametrize("question", ["", "   \n\t"])
async def test_empty_question_is_refused(fake_server, question):
    with pytest.raises(RunInputError, match="empty"):
        await collect(run_moa(question, fake_config(fake_server, [fake_agent(fake_server, "p")])))


async def test_huge_question_is_refused(fake_server):
    with pytest.raises(RunInputError, match="limit"):
        await collect(run_moa("x" * 200_000, fake_config(fake_server, [fake_agent(fake_server, "p")])))


async def test_draft_started_carries_no_secret(fake_server, monkeypatch):
    monkeypatch.setenv("MOA_TEST_KEY", "sk-test-SECRET-123")
    agent = AgentSpec(model="openai/fake-k", api_base=fake_server.url, api_key_env="MOA_TEST_KEY")
    events = await collect(run_moa("q", fake_config(fake_server, [agent])))
    for e in events:
        assert "sk-test-SECRET-123" not in repr(e)
    assert [e for e in events if isinstance(e, DraftStarted)]


async def test_run_single_emits_one_baseline_call(fake_server):
    from moa_core.engine import run_single

    events = await collect(run_single("q", fake_agent(fake_server, "solo", tokens=3)))
    assert isinstance(events[0], RunStarted) and events[0].kind == "arena"
    d = dones(events)
    assert len(d) == 1 and d[0].ref.role == "baseline" and d[0].ok
    assert events[-1].status == "done" and events[-1].final_text == d[0].text


async def test_run_single_failure_is_a_failed_run(fake_server):
    from moa_core.engine import run_single

    events = await collect(run_single("q", fake_agent(fake_server, "solo-bad", fail=500), num_retries=0))
    assert events[-1].status == "failed" and "solo-bad" in events[-1].error


async def test_every_call_draws_its_own_seed_and_stores_it(fake_server):
    """Same model, same prompt, at once: each call gets a seed of its own, sent to the
    provider and carried in the parameters that are stored with the generation."""
    same = [fake_agent(fake_server, "twin", tokens=2) for _ in range(3)]
    fixed = fake_agent(fake_server, "fixed", tokens=2).model_copy(update={"extra": {"seed": 1234}})
    cfg = fake_config(fake_server, [*same, fixed], aggregator=fake_agent(fake_server, "twin", tokens=2))
    start = len(fake_server.requests)
    events = await collect(run_moa("Same question for all?", cfg))
    started = {(e.ref.role, e.ref.slot): e.params for e in events if isinstance(e, DraftStarted)}
    seeds = [p["seed"] for (role, slot), p in started.items() if slot < 3 or role == "aggregator"]
    assert len(seeds) == 4 and len(set(seeds)) == 4 and all(isinstance(s, int) and s >= 0 for s in seeds)
    assert started[("proposer", 3)]["seed"] == 1234  # a seed the config fixes wins
    sent = {(r["model"].partition("@")[0], r["seed"]) for r in fake_server.requests[start:]}
    assert {s for m, s in sent if m == "fake-twin"} == set(seeds) and ("fake-fixed", 1234) in sent
    assert "seed" not in cfg.aggregator.extra  # the config itself is left as it was


def test_no_seed_where_the_provider_would_drop_it():
    from moa_core.providers import llm

    assert llm.accepts_seed("local/smollm2-135m") and llm.accepts_seed("openai/gpt-4o-mini")
    assert not llm.accepts_seed("anthropic/claude-3-5-haiku-20241022")
    claude = AgentSpec(model="anthropic/claude-3-5-haiku-20241022")
    assert llm.with_call_seed(claude) is claude
    # a Router group is seeded only when every model that may serve it takes a seed
    local = AgentSpec(model="team")
    assert "seed" in llm.with_call_seed(local, ["local/smollm2-135m", "openai/x"]).extra
    assert "seed" not in llm.with_call_seed(local, ["openai/x", "anthropic/claude-3-5-haiku-20241022"]).extra
