"""The MoA engine: a pipeline of stages (`config.pipeline()`), each stage's calls at once,
as one stream of events.

`run_moa` is the one entry point. A stage is propose (answer, or refine the answers before
it), review (rank the answers, anonymised and shuffled per reviewer), synthesize (write the
final answer) or select (pick one answer verbatim); a quorum lets the next stage start once
k answers of a stage are in. Every call is a stream of events (`_CallStream`); a stage's
calls, and the baselines beside the pipeline, are read together through
`streams.merge_streams`. When the consumer stops iterating (break, cancel, exception,
Streamlit rerun), closing the merged streams cancels every call still in flight, which in
turn frees local model instances.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field, replace
from typing import Any

from moa_core.analysis import review_ranking
from moa_core.analysis.review_ranking import RankRow, Review
from moa_core.config import AgentSpec, LayerSpec, MoAConfig, StageSpec
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
from moa_core.prompts import (
    aggregator_messages,
    proposer_messages,
    review_for_chairman,
    review_messages,
    select_messages,
)
from moa_core.providers import llm
from moa_core.providers.errors import describe
from moa_core.providers.fit import fit_to_window
from moa_core.providers.router import router_for
from moa_core.providers.secrets import redact_secrets
from moa_core.streams import merge_streams
from moa_core.vocab import STAGE_ROLE, Role, RunStatus, StageKind

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


@dataclass
class _Ctx:
    run_id: str
    config: MoAConfig
    # Where `_call` puts its events; None (put by `_CallStream`) ends a call's stream.
    queue: asyncio.Queue[Event | None]
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
        queue.put_nowait(_draft_done(ref, result, started, "cancelled", "cancelled"))
        raise
    except Exception as exc:
        error = short_error(exc, agent.api_key_env)
    flush()
    if error is None and not result.text.strip():
        error = "empty answer"
    done = _draft_done(ref, result, started, result.finish_reason if error is None else "error", error)
    ctx.totals["prompt_tokens"] += done.usage.prompt_tokens
    ctx.totals["completion_tokens"] += done.usage.completion_tokens
    ctx.totals["cost"] += done.cost
    ctx.totals["calls"] += 1
    ctx.totals["failed_calls"] += 0 if done.ok else 1
    await queue.put(done)
    return done


def _draft_done(
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


Messages = list[dict[str, Any]]


async def _fit_messages(
    ctx: _Ctx, ref: CallRef, agent: AgentSpec, drafts: list[str], build: Callable[[list[str]], Messages]
) -> Messages:
    """`build(drafts)`, with the drafts trimmed to the agent's context window if needed."""
    window = agent.context_window or _context_window(ctx.config, agent)
    fitted = fit_to_window(agent.model, window, agent.max_tokens, drafts, build)
    if fitted.trimmed and window is not None:
        await ctx.queue.put(ContextTrimmed(ref, window, fitted.tokens_before, fitted.tokens_after, time.time()))
    return build(fitted.drafts)


class _CallStream:
    """One call (its messages built first) as a stream of its events, for `merge_streams`.

    `_call` pushes its events into the context's queue; each call gets a queue of its own
    (the totals stay shared), drained here. `cancel` stops the call early (a quorum's
    straggler): it still ends with its DraftDone.
    """

    def __init__(self, ctx: _Ctx, work: Callable[[_Ctx], Coroutine[Any, Any, object]]) -> None:
        self.ctx = replace(ctx, queue=asyncio.Queue())
        self.work = work
        self.task: asyncio.Task[object] | None = None

    def cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()

    async def events(self) -> AsyncGenerator[Event, None]:
        queue = self.ctx.queue
        task = self.task = asyncio.create_task(self.work(self.ctx))
        task.add_done_callback(lambda _: queue.put_nowait(None))
        try:
            while (ev := await queue.get()) is not None:
                yield ev
            if not task.cancelled():
                task.result()  # re-raise a bug in the engine itself
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task


def _call_stream(
    ctx: _Ctx, ref: CallRef, agent: AgentSpec, build: Callable[[_Ctx], Awaitable[Messages]]
) -> _CallStream:
    async def work(c: _Ctx) -> DraftDone:
        return await _call(c, ref, agent, await build(c))

    return _CallStream(ctx, work)


NOT_USED = "not used: quorum reached"


@dataclass
class _Gathered:
    """What one stage's calls came to: their DraftDones, which were used and which cut, and
    (with stragglers shown) the rest of the stage's stream, which the next stage carries on."""

    calls: list[str] = field(default_factory=list)
    dones: dict[str, DraftDone] = field(default_factory=dict)
    used: list[str] = field(default_factory=list)
    cut: list[str] = field(default_factory=list)
    rest: AsyncGenerator[Event, None] | None = None


async def _grace_timer(start: asyncio.Event, stop: asyncio.Event, delay: float) -> AsyncGenerator[None, None]:
    """Yields once, `delay` seconds after `start`, unless `stop` comes first."""
    await start.wait()
    if stop.is_set():
        return
    try:
        await asyncio.wait_for(stop.wait(), delay)
    except TimeoutError:
        yield None


async def _events_of(merged: AsyncIterator[tuple[str, Event | None]]) -> AsyncGenerator[Event, None]:
    async with aclosing(merged):  # type: ignore[type-var]  # merge_streams returns an async generator
        async for _, ev in merged:
            if ev is not None:
                yield ev


async def _gather(
    stage: StageSpec,
    calls: dict[str, _CallStream],
    carried: Sequence[AsyncIterator[Event]],
    out: _Gathered,
    *,
    last: bool,
) -> AsyncGenerator[Event, None]:
    """Run a stage's calls at once and yield their events (and those of streams carried over
    from earlier stages) as they come; fill `out` as the stage decides what it used.

    Without a quorum the stage ends when every call has. With one, it ends once `k` calls
    answered (and `grace_s` more seconds passed, or every call ended); the stragglers are
    cancelled, or, `stragglers='show'`, left streaming in `out.rest`.
    """
    quorum = stage.quorum
    out.calls = list(calls)
    streams: dict[str, AsyncIterator[Event | None]] = {cid: c.events() for cid, c in calls.items()}
    streams.update({f"carried-{j}": it for j, it in enumerate(carried)})
    start, stop = asyncio.Event(), asyncio.Event()
    if quorum is not None and quorum.grace_s > 0:
        streams["grace"] = _grace_timer(start, stop, quorum.grace_s)
    cancel_cut = quorum is not None and quorum.stragglers == "cancel"
    merged = merge_streams(streams)
    decided = handed_on = False

    def decide() -> None:
        out.used = [cid for cid in calls if cid in out.dones and out.dones[cid].ok]
        out.cut = [cid for cid in calls if cid not in out.dones]
        stop.set()
        start.set()
        if cancel_cut:
            for cid in out.cut:
                calls[cid].cancel()

    try:
        async for key, ev in merged:
            if ev is None:  # the grace period after the k-th answer is over
                if not decided:
                    decided = True
                    decide()
            else:
                if isinstance(ev, DraftDone) and key in calls:
                    if cancel_cut and key in out.cut:
                        ev = replace(ev, error=NOT_USED)
                    out.dones[key] = ev
                yield ev
            if not decided:
                ok = sum(1 for d in out.dones.values() if d.ok)
                if len(out.dones) == len(calls) or (quorum and ok >= quorum.k and not quorum.grace_s):
                    decided = True
                    decide()
                elif quorum and ok >= quorum.k:
                    start.set()
            # Hand the rest of the stream on (stragglers shown, streams carried from before)
            # rather than wait for it; the last stage waits, so RunDone comes after everything.
            if (
                decided
                and not last
                and (carried or (out.cut and not cancel_cut))
                and all(cid in out.dones for cid in out.cut if cancel_cut)
            ):
                out.rest = _events_of(merged)
                handed_on = True
                return
    finally:
        if not handed_on:
            await merged.aclose()


@dataclass
class _State:
    """What the stages so far hand to the next: the answers (the last propose stage's used
    calls), the reviews of them and their aggregate ranking; at the end, the final text."""

    answers: list[DraftDone] = field(default_factory=list)
    reviews: list[tuple[DraftDone, list[int]]] = field(default_factory=list)
    ranking: list[RankRow] = field(default_factory=list)
    seed: int | None = None
    select_order: list[int] | None = None  # the answers' order as the selector saw them (A, B, …)
    final: str = ""
    error: str | None = None

    def review_seed(self) -> int:
        if self.seed is None:
            self.seed = _seed_rng.randrange(2**31)
        return self.seed


_seed_rng = random.SystemRandom()
# The selector's shuffle is drawn like a reviewer's, from the run's seed, under its own slot.
SELECTOR_SLOT = -1


def _review_notes(state: _State) -> tuple[list[str], list[str]]:
    """The reviews and the aggregate ranking as a chairman reads them, keyed to the drafts'
    [1], [2]… numbers (each reviewer saw its own order of letters)."""
    reviews = [review_for_chairman(done.text, order) for done, order in state.reviews]
    ranking = [
        f"[{row.answer + 1}] mean rank {row.mean_rank:.2f} over {row.votes} reviewers, Borda {row.borda:g}"
        if row.mean_rank is not None
        else f"[{row.answer + 1}] not ranked"
        for row in state.ranking
    ]
    return reviews, ranking


def _stage_calls(
    ctx: _Ctx, i: int, stage: StageSpec, question: str, history: Sequence[dict[str, Any]], state: _State
) -> dict[str, _CallStream]:
    """Stage i's calls, each with the messages its kind gives it."""
    drafts = [d.text for d in state.answers]
    calls: dict[str, _CallStream] = {}
    for slot, agent in enumerate(stage.agents):
        ref = CallRef(ctx.run_id, STAGE_ROLE[stage.kind], i, slot, agent.model, agent.display_name)
        sp = agent.system_prompt
        build: Callable[[list[str]], Messages]
        texts = drafts
        if stage.kind == StageKind.PROPOSE and i == 0:
            msgs = proposer_messages(question, history, sp)
            calls[ref.call_id] = _call_stream(ctx, ref, agent, _ready(msgs))
            continue
        if stage.kind in (StageKind.PROPOSE, StageKind.SYNTHESIZE):
            reviews, ranking = _review_notes(state) if stage.with_reviews else ([], [])
            build = functools.partial(
                _aggregator, question, ctx.config.aggregator_template, history, sp, reviews, ranking
            )
        elif stage.kind == StageKind.REVIEW:
            order = review_ranking.shuffled_order(len(drafts), state.review_seed(), slot)
            texts = [drafts[j] for j in order]
            build = functools.partial(_reviewer, question, history, sp)
        else:
            # Shuffled like a reviewer's view: small selectors favour a position ("B" in 44
            # of 48 runs of ranker-local when the order was fixed).
            order = review_ranking.shuffled_order(len(drafts), state.review_seed(), SELECTOR_SLOT)
            state.select_order = order
            texts = [drafts[j] for j in order]
            build = functools.partial(_selector, question, history, sp)
        calls[ref.call_id] = _call_stream(ctx, ref, agent, _fitted(ref, agent, texts, build))
    return calls


def _aggregator(
    question: str,
    template: str,
    history: Sequence[dict[str, Any]],
    system_prompt: str,
    reviews: list[str],
    ranking: list[str],
    drafts: list[str],
) -> Messages:
    return aggregator_messages(question, drafts, template, history, system_prompt, reviews=reviews, ranking=ranking)


def _reviewer(question: str, history: Sequence[dict[str, Any]], system_prompt: str, answers: list[str]) -> Messages:
    return review_messages(question, answers, history, system_prompt)


def _selector(question: str, history: Sequence[dict[str, Any]], system_prompt: str, answers: list[str]) -> Messages:
    return select_messages(question, answers, history, system_prompt)


def _ready(msgs: Messages) -> Callable[[_Ctx], Awaitable[Messages]]:
    async def build(_: _Ctx) -> Messages:
        return msgs

    return build


def _fitted(
    ref: CallRef, agent: AgentSpec, drafts: list[str], build: Callable[[list[str]], Messages]
) -> Callable[[_Ctx], Awaitable[Messages]]:
    async def fitted(c: _Ctx) -> Messages:
        return await _fit_messages(c, ref, agent, drafts, build)

    return fitted


def _own_answer(reviewer: CallRef, answers: list[DraftDone]) -> int | None:
    """The answer a reviewer wrote itself, matched by display name (same slot first)."""
    same = [k for k, a in enumerate(answers) if a.ref.name == reviewer.name]
    return next((k for k in same if answers[k].ref.slot == reviewer.slot), same[0] if same else None)


def _conclude(ctx: _Ctx, i: int, stage: StageSpec, out: _Gathered, state: _State) -> LayerDone:
    """What stage i decided: update `state` (answers, reviews, final text or error) and say it in a LayerDone."""
    ran = [out.dones[cid] for cid in out.calls if cid in out.dones]
    used = [out.dones[cid] for cid in out.used]
    failed = sum(1 for d in ran if not d.ok and d.ref.call_id not in out.cut)
    reasons = "; ".join(f"{d.ref.name}: {d.error}" for d in ran)
    details: dict[str, Any] = {}
    if stage.kind == StageKind.PROPOSE:
        if not used:
            state.error = f"Every proposer of layer {i + 1} failed ({reasons})"
        state.answers, state.reviews, state.ranking = used, [], []
    elif stage.kind == StageKind.REVIEW:
        if not used:
            state.error = f"Every reviewer of stage {i + 1} failed ({reasons})"
        details = _review_details(state, used, stage.include_own)
    else:
        done = used[0] if used else (ran[0] if ran else None)
        name = stage.agents[0].display_name
        if stage.kind == StageKind.SYNTHESIZE:
            state.final = done.text if done else ""
            if not used:
                state.error = f"The aggregator {name} failed: {done.error if done else 'no answer'}"
        elif not used:
            state.error = f"The selector {name} failed: {done.error if done else 'no answer'}"
        else:
            n = len(state.answers)
            letter = review_ranking.parse_choice(used[0].text, n)
            order = state.select_order or list(range(n))
            choice = None if letter is None else order[letter]
            parsed = choice is not None
            if choice is None:
                # Never guessed from the selector's words: the reviewers' winner, else the first answer.
                top = state.ranking[0] if state.ranking else None
                choice = top.answer if top is not None and top.votes else 0
            state.final = state.answers[choice].text
            details = {
                "chosen": state.answers[choice].ref.call_id,
                "parsed": parsed,
                "seed": state.review_seed(),
                "order": [state.answers[j].ref.call_id for j in order],
            }
    return LayerDone(
        ctx.run_id,
        i,
        len(used),
        failed,
        time.time(),
        stage.kind,
        tuple(out.used),
        tuple(out.cut),
        details,
    )


def _review_details(state: _State, reviewers: list[DraftDone], include_own: bool) -> dict[str, Any]:
    answers = state.answers
    n = len(answers)
    seed = state.review_seed()
    ids = [a.ref.call_id for a in answers]
    reviews: list[Review] = []
    rows: list[dict[str, Any]] = []
    state.reviews = []
    for r in reviewers:
        order = review_ranking.shuffled_order(n, seed, r.ref.slot)
        ranking = review_ranking.parse_ranking(r.text, n)
        own = _own_answer(r.ref, answers)
        reviews.append(Review(order=order, ranking=ranking, own=own))
        state.reviews.append((r, order))
        rows.append(
            {
                "reviewer": r.ref.call_id,
                "order": [ids[j] for j in order],
                "ranking": None if ranking is None else [ids[order[letter]] for letter in ranking],
                "own": None if own is None else ids[own],
            }
        )
    state.ranking = review_ranking.aggregate(reviews, n, include_own)
    aggregate = [
        {
            "call_id": ids[row.answer],
            "name": answers[row.answer].ref.name,
            "mean_rank": row.mean_rank,
            "borda": row.borda,
            "votes": row.votes,
        }
        for row in state.ranking
    ]
    return {"seed": seed, "reviews": rows, "aggregate": aggregate}


async def _run_pipeline(
    ctx: _Ctx, question: str, history: Sequence[dict[str, Any]], state: _State
) -> AsyncGenerator[Event, None]:
    """Every stage in turn, each stage's calls at once; `state` ends with the final text or the error."""
    stages = ctx.config.pipeline()
    # A config written as layers + aggregator keeps the events it always had: no LayerDone
    # for the aggregator.
    announce_last = bool(ctx.config.stages)
    carried: list[AsyncGenerator[Event, None]] = []
    try:
        for i, stage in enumerate(stages):
            last = i == len(stages) - 1
            out = _Gathered()
            calls = _stage_calls(ctx, i, stage, question, history, state)
            held: DraftDone | None = None
            async with aclosing(_gather(stage, calls, carried, out, last=last)) as events:
                async for ev in events:
                    if stage.kind == StageKind.SELECT and isinstance(ev, DraftDone) and ev.ref.layer == i:
                        held = ev  # its text becomes the chosen draft once the choice is read
                        continue
                    yield ev
            carried = [out.rest] if out.rest is not None else []
            done = _conclude(ctx, i, stage, out, state)
            if held is not None:
                # The selector's answer is the draft it chose, word for word, so every reader of
                # final answers (votes, leaderboards, evaluation) sees the answer, not "CHOICE: B";
                # what it wrote stays in the stage's details.
                if held.ok and "chosen" in done.details:
                    done.details["selector_text"] = held.text
                    held = replace(held, text=state.final)
                yield held
            if not last or announce_last:
                yield done
            if state.error:
                return
    finally:
        for rest in carried:
            await rest.aclose()


async def run_moa(
    question: str,
    config: MoAConfig,
    history: Sequence[dict[str, Any]] = (),
    *,
    baselines: Sequence[AgentSpec] | None = None,
    kind: str = "playground",
    run_id: str | None = None,
) -> AsyncGenerator[Event, None]:
    """Run `question` through `config`'s pipeline; yield every event until RunDone.

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

    state = _State()
    streams: dict[str, AsyncIterator[Event]] = {"pipeline": _run_pipeline(ctx, question, history, state)}
    for i, agent in enumerate(config.baselines if baselines is None else baselines):
        ref = CallRef(ctx.run_id, Role.BASELINE, -1, i, agent.model, agent.display_name)
        msgs = proposer_messages(question, history, agent.system_prompt)
        streams[ref.call_id] = _call_stream(ctx, ref, agent, _ready(msgs)).events()
    async with aclosing(merge_streams(streams)) as merged:
        async for _, ev in merged:
            yield ev
    yield RunDone(
        ctx.run_id,
        RunStatus.FAILED if state.error else RunStatus.DONE,
        state.final,
        _totals(ctx, started),
        time.time(),
        state.error,
    )


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
    role: Role = Role.BASELINE,
) -> AsyncGenerator[Event, None]:
    """One model answering alone, as a run of its own with the same events as run_moa.

    The call has role `role` (layer -1, slot 0); the run's config is a one-proposer MoA config whose
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
    ref = CallRef(ctx.run_id, role, -1, 0, agent.model, agent.display_name)
    call = _call_stream(ctx, ref, agent, _ready(proposer_messages(question, history, agent.system_prompt)))
    done: DraftDone | None = None
    async with aclosing(call.events()) as events:
        async for ev in events:
            if isinstance(ev, DraftDone):
                done = ev
            yield ev
    error = "no answer" if done is None else done.error
    yield RunDone(
        ctx.run_id,
        RunStatus.FAILED if error else RunStatus.DONE,
        done.text if done else "",
        _totals(ctx, started),
        time.time(),
        f"{agent.display_name} failed: {error}" if error else None,
    )


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
