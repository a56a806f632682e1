"""The MoA engine: layers of concurrent agents, then the aggregator, as a stream of events.

`run_moa` is the one entry point. Calls run as asyncio tasks that push events into a
queue; the generator yields from it. When the consumer stops iterating (break, cancel,
exception, Streamlit rerun), the `finally` block cancels every task still in flight,
which in turn frees local model instances.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from moa_core.config import AgentSpec, LayerSpec, MoAConfig
from moa_core.events import (
    CallRef,
    ContextTrimmed,
    DraftDone,
    DraftStarted,
    Event,
    LayerDone,
    RunDone,
    RunStarted,
    TokenDelta,
    Totals,
    Usage,
)
from moa_core.inputs import MAX_QUESTION_CHARS, surrogate_problem
from moa_core.prompts import aggregator_messages, proposer_messages
from moa_core.providers import llm
from moa_core.providers.errors import describe
from moa_core.providers.router import router_for
from moa_core.providers.secrets import redact_secrets
from moa_core.vocab import Role, RunStatus

# Tokens kept free in the receiving agent's window beyond its own max_tokens: chat
# templates add role markers that the plain token count does not see.
CONTEXT_MARGIN = 64
# Longest a streamed delta waits to be batched with the next ones of its call: at 500-2,000
# tokens/s per stream that is 5-20 chunks per event instead of one, far below what a reader sees.
DELTA_FLUSH_S = 0.01


class RunInputError(ValueError):
    """The question or config cannot be run; the message is meant for the user."""


def validate_question(question: str) -> str:
    q = (question or "").strip()
    if not q:
        raise RunInputError("The question is empty: type a question first.")
    if len(q) > MAX_QUESTION_CHARS:
        raise RunInputError(
            f"The question is {len(q):,} characters long; the limit is {MAX_QUESTION_CHARS:,}. "
            "Shorten it or attach less text."
        )
    if problem := surrogate_problem(q):
        raise RunInputError(f"The question {problem}: retype it, or check that the terminal or file is UTF-8.")
    return q


def short_error(exc: BaseException, key_env: str | None = None) -> str:
    """One line a user can read, the same whichever client path failed (providers.errors),
    with any key value (from the environment, or the agent's `key_env`) replaced by ***."""
    return redact_secrets(describe(exc), [key_env])[:500]


def fit_drafts(model: str, drafts: list[str], budget: int) -> list[str]:
    """Trim drafts so their total tokens fit the budget, sharing it fairly.

    Short drafts keep all their tokens; the rest split what is left equally
    (water-filling), so one long draft cannot crowd the others out.
    """
    sizes = [llm.count_tokens(model, d) for d in drafts]
    if sum(sizes) <= budget:
        return list(drafts)
    allowance = [0] * len(drafts)
    remaining, pending = max(budget, 0), sorted(range(len(drafts)), key=lambda i: sizes[i])
    while pending:
        share = remaining // len(pending)
        i = pending[0]
        if sizes[i] <= share:
            allowance[i] = sizes[i]
            remaining -= sizes[i]
            pending.pop(0)
        else:
            for j in pending:
                allowance[j] = share
            break
    return [d if allowance[i] >= sizes[i] else llm.trim_to_tokens(model, d, allowance[i]) for i, d in enumerate(drafts)]


@dataclass
class _Ctx:
    run_id: str
    config: MoAConfig
    queue: asyncio.Queue[Event]
    totals: dict[str, float]


def _served_by(config: MoAConfig, agent: AgentSpec) -> list[str]:
    """The models that may answer a call of `agent`: itself, or its Router group's
    deployments and those of the groups (or the plain models) it falls back to."""
    if not config.uses_router(agent):
        return [agent.model]
    names = [agent.model, *config.fallbacks.get(agent.model, [])]
    return [d.model for n in names for d in config.deployments.get(n, [])] + [
        n for n in names if n not in config.deployments
    ]


async def _call(ctx: _Ctx, ref: CallRef, agent: AgentSpec, messages: list[dict[str, Any]]) -> DraftDone:
    """One streamed model call; always ends with a DraftDone (error filled on failure).

    Deltas travel in batches: the call's first delta is flushed on the next loop tick, every
    later one waits at most DELTA_FLUSH_S, so deltas that arrive in the same tick (or within
    that window) for this call are one TokenDelta. Everything downstream (queue, events,
    recorder, page) then works per flush, not per chunk.
    """
    started = time.time()
    agent = llm.with_call_seed(agent, _served_by(ctx.config, agent))
    routed: dict[str, Any] = {}
    attempts = ctx.config.num_retries + 1
    if ctx.config.uses_router(agent):
        routed["router"] = router_for(ctx.config)
        # Through a Router, a call may also fall back to each model listed for its group.
        attempts *= 1 + len(ctx.config.fallbacks.get(agent.model, []))
    params = {**agent.public_params(), "client": llm.client_for(agent, routed.get("router"))}
    system = messages[0]["content"] if messages[0]["role"] == "system" else ""
    await ctx.queue.put(DraftStarted(ref, system, params, started))
    result = llm.StreamResult()
    error: str | None = None
    pending: list[str] = []
    queue = ctx.queue

    arrived = 0.0  # when the batch's last delta came: a TokenDelta's time is its text's, not its flush's

    def flush() -> None:
        if pending:
            queue.put_nowait(TokenDelta(ref, "".join(pending), arrived))
            pending.clear()

    loop = asyncio.get_running_loop()
    batched = False
    try:
        async with asyncio.timeout(ctx.config.timeout * attempts):
            async for delta in llm.stream_chat(
                agent, messages, result, ctx.config.timeout, ctx.config.num_retries, **routed
            ):
                if not pending:
                    if batched:
                        loop.call_later(DELTA_FLUSH_S, flush)
                    else:  # the call's first text: on screen at once
                        loop.call_soon(flush)
                        batched = True
                pending.append(delta)
                arrived = time.time()
    except asyncio.CancelledError:
        flush()
        queue.put_nowait(draft_done(ref, result, started, "cancelled", "cancelled"))
        raise
    except Exception as exc:
        error = short_error(exc, agent.api_key_env)
    flush()
    if error is None and not result.text.strip():
        error = "empty answer"
    done = draft_done(ref, result, started, result.finish_reason if error is None else "error", error)
    ctx.totals["prompt_tokens"] += done.usage.prompt_tokens
    ctx.totals["completion_tokens"] += done.usage.completion_tokens
    ctx.totals["cost"] += done.cost
    ctx.totals["calls"] += 1
    ctx.totals["failed_calls"] += 0 if done.ok else 1
    await queue.put(done)
    return done


def draft_done(
    ref: CallRef, result: llm.StreamResult, started: float, finish: str | None, error: str | None
) -> DraftDone:
    """The call's DraftDone from its provider response object (the only place one is made)."""
    return DraftDone(
        ref,
        result.text,
        finish,
        Usage(result.prompt_tokens, result.completion_tokens),
        result.cost,
        started,
        time.time(),
        result.ttft(started),
        error,
        result.deployment,
    )


def _context_window(config: MoAConfig, agent: AgentSpec) -> int | None:
    """The agent's input window; for a Router group, the smallest of its deployments' (when all are known)."""
    if not config.uses_router(agent):
        return llm.context_window(agent.model)
    windows = [llm.context_window(d.model) for d in config.deployments[agent.model]]
    return None if any(w is None for w in windows) else min(windows)  # type: ignore[type-var]  # no None left: checked by the any() before min()


async def _synth_messages(
    ctx: _Ctx, ref: CallRef, agent: AgentSpec, question: str, history: Sequence[dict[str, Any]], drafts: list[str]
) -> list[dict[str, Any]]:
    """Aggregator messages, with drafts trimmed to the agent's context window if needed."""
    template = ctx.config.aggregator_template
    messages = aggregator_messages(question, drafts, template, history, agent.system_prompt)
    window = agent.context_window or _context_window(ctx.config, agent)
    if window is None:
        return messages
    fixed = aggregator_messages(question, [""] * len(drafts), template, history, agent.system_prompt)
    fixed_tokens = llm.count_tokens(agent.model, "\n".join(m["content"] for m in fixed))
    budget = window - agent.max_tokens - fixed_tokens - CONTEXT_MARGIN
    before = sum(llm.count_tokens(agent.model, d) for d in drafts)
    if before <= budget:
        return messages
    trimmed = fit_drafts(agent.model, drafts, budget)
    after = sum(llm.count_tokens(agent.model, d) for d in trimmed)
    await ctx.queue.put(ContextTrimmed(ref, window, before, after, time.time()))
    return aggregator_messages(question, trimmed, template, history, agent.system_prompt)


async def _run_layers(ctx: _Ctx, question: str, history: Sequence[dict[str, Any]]) -> tuple[str, str | None]:
    """Returns (final text, error). Emits every call's events through the queue."""
    drafts: list[str] = []
    for k, layer in enumerate(ctx.config.layers):
        refs = [
            CallRef(ctx.run_id, Role.PROPOSER, k, i, a.model, a.display_name) for i, a in enumerate(layer.proposers)
        ]

        async def one(ref: CallRef, agent: AgentSpec, prev: list[str] = drafts, k: int = k) -> DraftDone:
            if k == 0:
                msgs = proposer_messages(question, history, agent.system_prompt)
            else:
                msgs = await _synth_messages(ctx, ref, agent, question, history, prev)
            return await _call(ctx, ref, agent, msgs)

        results = await asyncio.gather(*(one(r, a) for r, a in zip(refs, layer.proposers, strict=False)))
        ok = [r for r in results if r.ok]
        await ctx.queue.put(LayerDone(ctx.run_id, k, len(ok), len(results) - len(ok), time.time()))
        if not ok:
            reasons = "; ".join(f"{r.ref.name}: {r.error}" for r in results)
            return "", f"Every proposer of layer {k + 1} failed ({reasons})"
        drafts = [r.text for r in ok]
    agg = ctx.config.aggregator
    ref = CallRef(ctx.run_id, Role.AGGREGATOR, len(ctx.config.layers), 0, agg.model, agg.display_name)
    msgs = await _synth_messages(ctx, ref, agg, question, history, drafts)
    final = await _call(ctx, ref, agg, msgs)
    if not final.ok:
        return final.text, f"The aggregator {agg.display_name} failed: {final.error}"
    return final.text, None


async def _run_baseline(
    ctx: _Ctx, slot: int, agent: AgentSpec, question: str, history: Sequence[dict[str, Any]]
) -> None:
    ref = CallRef(ctx.run_id, Role.BASELINE, -1, slot, agent.model, agent.display_name)
    await _call(ctx, ref, agent, proposer_messages(question, history, agent.system_prompt))


async def run_moa(
    question: str,
    config: MoAConfig,
    history: Sequence[dict[str, Any]] = (),
    *,
    baselines: Sequence[AgentSpec] | None = None,
    kind: str = "playground",
    run_id: str | None = None,
) -> AsyncGenerator[Event, None]:
    """Run `question` through `config`; yield every event until RunDone.

    `baselines` (default: the config's) answer the same question alone, concurrently.
    Raises RunInputError before anything starts when the question cannot be run.
    """
    question = validate_question(question)
    history = [{"role": m["role"], "content": m["content"]} for m in history]
    ctx = _Ctx(
        run_id or uuid.uuid4().hex,
        config,
        asyncio.Queue(),
        dict(prompt_tokens=0, completion_tokens=0, cost=0.0, calls=0, failed_calls=0),
    )
    started = time.time()
    yield RunStarted(
        ctx.run_id, question, history, config.model_dump(mode="json"), config.stable_hash(), config.name, kind, started
    )
    llm.ensure_ready()

    base_agents = list(config.baselines if baselines is None else baselines)
    outcome: dict[str, Any] = {}

    async def main() -> None:
        layers = asyncio.create_task(_run_layers(ctx, question, history))
        extra = [asyncio.create_task(_run_baseline(ctx, i, a, question, history)) for i, a in enumerate(base_agents)]
        try:
            outcome["final"], outcome["error"] = await layers
            await asyncio.gather(*extra)
        finally:
            for t in [layers, *extra]:
                t.cancel()

    task = asyncio.create_task(main())
    try:
        while True:
            get = asyncio.create_task(ctx.queue.get())
            await asyncio.wait({get, task}, return_when=asyncio.FIRST_COMPLETED)
            if get.done():
                yield get.result()
                continue
            get.cancel()
            while not ctx.queue.empty():
                yield ctx.queue.get_nowait()
            task.result()  # re-raise a bug in the engine itself
            break
        yield RunDone(
            ctx.run_id,
            RunStatus.FAILED if outcome.get("error") else RunStatus.DONE,
            outcome.get("final", ""),
            _totals(ctx, started),
            time.time(),
            outcome.get("error"),
        )
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


async def run_single(
    question: str,
    agent: AgentSpec,
    history: Sequence[dict[str, Any]] = (),
    *,
    kind: str = "arena",
    run_id: str | None = None,
    timeout: float = 120.0,
    num_retries: int = 2,
    routing: MoAConfig | None = None,
) -> AsyncGenerator[Event, None]:
    """One model answering alone, as a run of its own with the same events as run_moa.

    The call has role `baseline`; the run's config is a one-proposer MoA config whose
    aggregator is the same agent, so stored runs keep one shape. `routing`: a config whose
    Router groups (deployments, fallbacks, strategy) the agent may name.
    """
    router_fields = {}
    if routing is not None and routing.uses_router(agent):
        router_fields = dict(
            deployments=routing.deployments, fallbacks=routing.fallbacks, routing_strategy=routing.routing_strategy
        )
    config = MoAConfig(
        name=agent.display_name,
        layers=[LayerSpec(proposers=[agent])],
        aggregator=agent,
        timeout=timeout,
        num_retries=num_retries,
        **router_fields,
    )
    question = validate_question(question)
    history = [{"role": m["role"], "content": m["content"]} for m in history]
    ctx = _Ctx(
        run_id or uuid.uuid4().hex,
        config,
        asyncio.Queue(),
        dict(prompt_tokens=0, completion_tokens=0, cost=0.0, calls=0, failed_calls=0),
    )
    started = time.time()
    payload = {"single": agent.model_dump(mode="json")}
    yield RunStarted(
        ctx.run_id, question, history, payload, f"single-{config.stable_hash()}", agent.display_name, kind, started
    )
    llm.ensure_ready()
    ref = CallRef(ctx.run_id, Role.BASELINE, -1, 0, agent.model, agent.display_name)
    task = asyncio.create_task(_call(ctx, ref, agent, proposer_messages(question, history, agent.system_prompt)))
    try:
        while not (task.done() and ctx.queue.empty()):
            get = asyncio.create_task(ctx.queue.get())
            await asyncio.wait({get, task}, return_when=asyncio.FIRST_COMPLETED)
            if get.done():
                yield get.result()
            else:
                get.cancel()
        done = task.result()
        yield RunDone(
            ctx.run_id,
            RunStatus.DONE if done.ok else RunStatus.FAILED,
            done.text,
            _totals(ctx, started),
            time.time(),
            None if done.ok else f"{agent.display_name} failed: {done.error}",
        )
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def _totals(ctx: _Ctx, started: float) -> Totals:
    t = ctx.totals
    return Totals(
        int(t["prompt_tokens"]),
        int(t["completion_tokens"]),
        float(t["cost"]),
        time.time() - started,
        int(t["calls"]),
        int(t["failed_calls"]),
    )


async def collect(events: AsyncIterator[Event]) -> list[Event]:
    """All events of a run, in order (for tests and scripts)."""
    return [ev async for ev in events]
