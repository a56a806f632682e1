"""Synthetic engine event streams for the store tests (no tests here; named to sit with them)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator

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

QUESTION = "Why is the sky blue?"


def config(models: tuple[str, ...] = ("local/a", "local/b"), aggregator: str = "local/agg") -> MoAConfig:
    return MoAConfig(
        name="test",
        layers=[LayerSpec(proposers=[AgentSpec(model=m, label=m.split("/")[-1].upper()) for m in models])],
        aggregator=AgentSpec(model=aggregator, system_prompt="Combine."),
    )


def draft(
    ref: CallRef, text: str, t: float, *, error: str | None = None, params: dict | None = None, split: int = 3
) -> Iterator[Event]:
    yield DraftStarted(ref, "You are helpful.", params if params is not None else {"temperature": 0.7}, t)
    chunks = [text[i : i + split] for i in range(0, len(text), split)]
    for c in chunks:
        yield TokenDelta(ref, c, t + 0.1)
    yield DraftDone(
        ref, text, None if error else "stop", Usage(10, len(chunks)), 0.001, t, t + 0.5, None if error else 0.1, error
    )


def run_events(
    run_id: str | None = None,
    *,
    kind: str = "playground",
    preset: str = "local-moa",
    models: tuple[str, ...] = ("local/a", "local/b"),
    aggregator: str = "local/agg",
    failing_slot: int | None = None,
    question: str = QUESTION,
    t0: float | None = None,
) -> list[Event]:
    """A complete one-layer MoA run: proposers, aggregator, RunDone."""
    run_id = run_id or uuid.uuid4().hex
    t = time.time() if t0 is None else t0
    cfg = config(models, aggregator)
    evs: list[Event] = [
        RunStarted(
            run_id,
            question,
            [{"role": "user", "content": "hi"}],
            cfg.model_dump(mode="json"),
            cfg.stable_hash(),
            preset,
            kind,
            t,
        )
    ]
    for slot, agent in enumerate(cfg.layers[0].proposers):
        ref = CallRef(run_id, "proposer", 0, slot, agent.model, agent.label or "")
        params = {**agent.public_params(), "api_key": "sk-SECRET", "extra_headers": {"Authorization": "Bearer x"}}
        err = "RateLimitError: slow down" if slot == failing_slot else None
        evs += draft(ref, f"draft {slot} from {agent.model}", t, error=err, params=params)
    failed = int(failing_slot is not None)
    evs.append(LayerDone(run_id, 0, len(models) - failed, failed, t + 1))
    agg = CallRef(run_id, "aggregator", 1, 0, aggregator)
    evs.append(ContextTrimmed(agg, 4096, 5000, 4000, t + 1))
    evs += draft(agg, "final answer: Rayleigh scattering", t + 1)
    totals = Totals(30, 12, 0.003, 2.0, len(models) + 1, failed)
    evs.append(RunDone(run_id, "done", "final answer: Rayleigh scattering", totals, t + 2))
    return evs


async def stream(
    events: Iterable[Event], closed: list[bool] | None = None, fail_after: int | None = None
) -> AsyncIterator[Event]:
    """Async generator like the engine's; records in `closed` whether its cleanup ran."""
    try:
        for i, ev in enumerate(events):
            if fail_after is not None and i == fail_after:
                raise RuntimeError("engine exploded\nwith a traceback")
            yield ev
            await asyncio.sleep(0)
    finally:
        if closed is not None:
            closed.append(True)
