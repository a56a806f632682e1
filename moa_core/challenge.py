"""Daily challenge logic without Streamlit: the whole challenge recorded as one run.

The N independent runs are `engine.run_single` calls whose events are re-addressed to one
run of kind "challenge": proposers of layer 0 (`proposer-0-<i>`), streaming concurrently.
Each synthesis attempt is an aggregator call of layer 1 (`aggregator-1-<attempt>`) whose
messages are exactly `prompts.aggregator_messages(question, drafts, your_template)`, and
ends with a RunDone carrying the final text and the totals so far. Feed the events to
`store.Recorder` (`record` or `handle`); the UI is `moa_core.ui.challenge`.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing
from dataclasses import replace
from typing import Any

from moa_core.config import AgentSpec, LayerSpec, MoAConfig
from moa_core.engine import RunInputError, run_single, validate_question
from moa_core.events import CallRef, DraftDone, DraftStarted, Event, LayerDone, RunDone, RunStarted, TokenDelta, Totals
from moa_core.prompts import DEFAULT_AGGREGATOR_TEMPLATE, DRAFTS_PLACEHOLDER, aggregator_messages
from moa_core.providers import llm
from moa_core.providers.fit import fit_to_window
from moa_core.streams import merge_streams
from moa_core.vocab import Role, RunStatus, digest

KIND = "challenge"
PRESET = "daily challenge"
CALL_TIMEOUT = 300.0

SUGGESTIONS = [
    "What happens, step by step, when a TLS 1.3 connection is established?",
    "How does CRISPR-Cas9 cut DNA at a chosen site, and what limits its precision?",
    "What were the main causes of the 2008 financial crisis?",
    "How does a lithium-ion battery store and release energy, and why does it wear out?",
    "How do Type 1 and Type 2 diabetes differ in cause, onset and treatment?",
    "How does the Raft consensus algorithm elect a leader and keep logs consistent?",
    "Why does the Moon always show the same face to the Earth?",
    "How do mRNA vaccines train the immune system?",
    "What does the Python global interpreter lock protect, and what does it cost?",
    "What sets the boiling point of water, and how does altitude change it?",
]


def todays_suggestion(day: dt.date | None = None) -> str:
    day = day or dt.date.today()
    return SUGGESTIONS[day.toordinal() % len(SUGGESTIONS)]


# -- events: the whole challenge as one run ----------------------------------------------------


def challenge_config(
    agents: Sequence[AgentSpec], aggregator: AgentSpec | None = None, template: str = DEFAULT_AGGREGATOR_TEMPLATE
) -> dict[str, Any]:
    """The run's config: the N runs as one proposer layer; the aggregator shown is the
    default one (the model and prompt actually used go to meta.challenge per attempt)."""
    cfg = MoAConfig(
        name=PRESET,
        layers=[LayerSpec(proposers=list(agents))],
        aggregator=aggregator or _default_aggregator(agents),
        aggregator_template=template,
        description="Daily challenge: the aggregator model and prompt of each synthesis are in "
        "meta.challenge.attempts.",
    )
    return cfg.model_dump(mode="json")


def _default_aggregator(agents: Sequence[AgentSpec]) -> AgentSpec:
    first = agents[0]
    return AgentSpec(
        model=first.model,
        api_base=first.api_base,
        api_key_env=first.api_key_env,
        context_window=first.context_window,
        extra=dict(first.extra),
        temperature=0.3,
        max_tokens=max(a.max_tokens for a in agents),
        label="Synthesis",
    )


def _totals(calls: Sequence[DraftDone], base: Totals | None, wall: float) -> Totals:
    b = base or Totals()
    return Totals(
        b.prompt_tokens + sum(c.usage.prompt_tokens for c in calls),
        b.completion_tokens + sum(c.usage.completion_tokens for c in calls),
        b.cost + sum(c.cost for c in calls),
        b.wall_time + wall,
        b.calls + len(calls),
        b.failed_calls + sum(1 for c in calls if not c.ok),
    )


async def draft_events(
    run_id: str, question: str, agents: Sequence[AgentSpec], *, timeout: float = CALL_TIMEOUT, num_retries: int = 1
) -> AsyncGenerator[Event, None]:
    """RunStarted (kind challenge), then every run's call as proposer-0-<i>, LayerDone, RunDone.

    Each run is `engine.run_single` (timeouts, retries, errors as events); their events
    are re-addressed to this run. The run ends "done" with no final text: a synthesis
    attempt later adds the aggregator call and the final text.
    """
    question = validate_question(question)
    started = time.time()
    yield RunStarted(
        run_id,
        question,
        [],
        challenge_config(agents),
        # Spaced separators, as stored since the first challenge runs: the hash must not change.
        "challenge-" + digest(json.dumps([a.model_dump(mode="json") for a in agents], sort_keys=True)),
        PRESET,
        KIND,
        started,
    )
    done: list[DraftDone] = []
    streams = [run_single(question, a, kind=KIND, timeout=timeout, num_retries=num_retries) for a in agents]
    async with aclosing(merge_streams(dict(enumerate(streams)))) as merged:
        async for slot, ev in merged:
            if isinstance(ev, (DraftStarted, TokenDelta, DraftDone)):
                ev = replace(ev, ref=CallRef(run_id, Role.PROPOSER, 0, slot, ev.ref.model, ev.ref.label))
                if isinstance(ev, DraftDone):
                    done.append(ev)
                yield ev
    ok = sum(1 for d in done if d.ok)
    yield LayerDone(run_id, 0, ok, len(done) - ok, time.time())
    yield RunDone(
        run_id,
        RunStatus.DONE if ok else RunStatus.FAILED,
        "",
        _totals(done, None, time.time() - started),
        time.time(),
        None if ok else "Every run failed: " + "; ".join(f"{d.ref.name}: {d.error}" for d in done),
    )


def fit_for(agent: AgentSpec, question: str, template: str, drafts: list[str]) -> list[str]:
    """Drafts trimmed (fairly) so the prompt fits the aggregator's context window."""
    window = agent.context_window or llm.context_window(agent.model)
    return fit_to_window(
        agent.model, window, agent.max_tokens, drafts, lambda d: aggregator_messages(question, d, template)
    ).drafts


async def synthesis_events(
    run_id: str,
    question: str,
    drafts: list[str],
    template: str,
    agent: AgentSpec,
    slot: int,
    base: Totals | None = None,
    *,
    timeout: float = CALL_TIMEOUT,
    num_retries: int = 1,
) -> AsyncGenerator[Event, None]:
    """One synthesis attempt: aggregator-1-<slot> events, then RunDone with the final text.

    The messages are exactly `prompts.aggregator_messages(question, drafts, template)`:
    the rendered template as system message, the question as user message.
    """
    if DRAFTS_PLACEHOLDER not in template:
        raise RunInputError(f"The prompt must contain {DRAFTS_PLACEHOLDER} where the drafts go.")
    started = time.time()
    system = aggregator_messages(question, fit_for(agent, question, template, drafts), template)[0]["content"]
    caller = agent.model_copy(update={"system_prompt": system})
    final: DraftDone | None = None
    async with aclosing(run_single(question, caller, kind=KIND, timeout=timeout, num_retries=num_retries)) as events:
        async for ev in events:
            if isinstance(ev, (DraftStarted, TokenDelta, DraftDone)):
                ev = replace(
                    ev, ref=CallRef(run_id, Role.AGGREGATOR, 1, slot, ev.ref.model, agent.label or "Synthesis")
                )
                if isinstance(ev, DraftDone):
                    final = ev
                yield ev
    calls = [final] if final else []
    ok = final is not None and final.ok
    yield RunDone(
        run_id,
        RunStatus.DONE if ok else RunStatus.FAILED,
        final.text if final else "",
        _totals(calls, base, time.time() - started),
        time.time(),
        None if ok else f"The synthesis failed: {final.error if final else 'no answer'}",
    )


__all__ = [
    "CALL_TIMEOUT",
    "KIND",
    "PRESET",
    "SUGGESTIONS",
    "challenge_config",
    "draft_events",
    "fit_for",
    "synthesis_events",
    "todays_suggestion",
]
