"""Replay a stored run as the engine's own events, with the timing it was recorded with.

`replay_events` yields the same event types `engine.run_moa` does (RunStarted, DraftStarted,
TokenDelta, ContextTrimmed, DraftDone, LayerDone, RunDone), so every consumer of a live
run (the live columns, `moa ask`'s printer) shows a replay unchanged. No model is called.

A generation's `timing` (see `store.recorder`) says when each piece of its text arrived.
Runs recorded before timing was kept get a uniform rate: text starts at the call's TTFT
and ends at its latency; `timing_is_derived` says when that is the case, so the UI can say so.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

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
from moa_core.vocab import GenerationStatus, Role, RunStatus, StageKind

SPEEDS: dict[str, float | None] = {"1×": 1.0, "2×": 2.0, "5×": 5.0, "instant": None}
# Derived timing for old runs: one piece of text per this many seconds (at most DERIVED_MAX pieces).
DERIVED_STEP = 0.1
DERIVED_MAX = 200
_REPLAYED_ROLES = (Role.PROPOSER, Role.REVIEWER, Role.AGGREGATOR, Role.SELECTOR, Role.BASELINE)


@dataclass(frozen=True, order=True)
class _Scheduled:
    t: float
    seq: int
    event: Event


def _ref(run_id: str, g: Mapping[str, Any]) -> CallRef:
    return CallRef(run_id, Role(g["role"]), int(g["layer"]), int(g["slot"]), g["model"], g.get("label") or "")


def _has_text(g: Mapping[str, Any]) -> bool:
    return bool(g.get("text"))


def timing_is_derived(stored: Mapping[str, Any]) -> bool:
    """True when some call with text has no recorded timing (a run from before it was kept)."""
    return any(_has_text(g) and not g.get("timing") for g in _generations(stored))


def _generations(stored: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [g for g in stored["generations"] if g["role"] in _REPLAYED_ROLES]


def _end(g: Mapping[str, Any]) -> float:
    if g.get("ended_at") is not None:
        return float(g["ended_at"])
    if g.get("latency") is not None:
        return float(g["started_at"]) + float(g["latency"])
    timing = g.get("timing") or []
    return float(g["started_at"]) + (float(timing[-1][0]) if timing else 0.0)


def _points(g: Mapping[str, Any]) -> list[tuple[float, int]]:
    """(seconds since the call started, characters so far), ending with the whole text."""
    text, start = g.get("text") or "", float(g["started_at"])
    if not text:
        return []
    recorded = g.get("timing")
    if recorded:
        points = [(float(off), min(int(n), len(text))) for off, n in recorded]
    else:
        first = float(g["ttft"]) if g.get("ttft") is not None else 0.0
        last = max(_end(g) - start, first)
        steps = max(1, min(DERIVED_MAX, len(text), int((last - first) / DERIVED_STEP)))
        points = [(first + (last - first) * i / steps, round(len(text) * i / steps)) for i in range(1, steps + 1)]
    if not points or points[-1][1] < len(text):
        # The stored text can be longer than what streamed (e.g. a final text set at the end).
        points.append((max(_end(g) - start, points[-1][0] if points else 0.0), len(text)))
    return points


def _draft_done(ref: CallRef, g: Mapping[str, Any]) -> DraftDone:
    error = g.get("error")
    unfinished = (GenerationStatus.CANCELLED, GenerationStatus.INTERRUPTED, GenerationStatus.STREAMING)
    if error is None and g["status"] in unfinished:
        error = "cancelled" if g["status"] == GenerationStatus.CANCELLED else g["status"]
    return DraftDone(
        ref,
        g.get("text") or "",
        g.get("finish_reason"),
        Usage(int(g.get("prompt_tokens") or 0), int(g.get("completion_tokens") or 0)),
        float(g.get("cost") or 0.0),
        float(g["started_at"]),
        _end(g),
        g.get("ttft"),
        error,
        g.get("deployment"),
    )


def _schedule(stored: Mapping[str, Any]) -> list[_Scheduled]:
    run, gens = stored["run"], _generations(stored)
    run_id = run["id"]
    out: list[_Scheduled] = []

    def add(t: float, ev: Event) -> None:
        out.append(_Scheduled(t, len(out), ev))

    t0 = float(run["created_at"])
    add(
        t0,
        RunStarted(
            run_id,
            run["question"],
            list(run.get("history") or []),
            dict(run.get("config") or {}),
            run.get("config_hash") or "",
            run.get("preset") or "",
            run["kind"],
            t0,
        ),
    )
    trims = {tr["call_id"]: tr for tr in (run.get("meta") or {}).get("context_trimmed") or []}
    for g in sorted(gens, key=lambda g: (float(g["started_at"]), g["layer"], g["slot"])):
        ref, start = _ref(run_id, g), float(g["started_at"])
        if ref.call_id in trims:
            tr = trims[ref.call_id]
            add(start, ContextTrimmed(ref, tr["context_window"], tr["tokens_before"], tr["tokens_after"], start))
        add(start, DraftStarted(ref, g.get("system_prompt") or "", dict(g.get("params") or {}), start))
        text, shown, t = g.get("text") or "", 0, start
        for off, n in _points(g):
            if n > shown:
                t = max(t, start + off)
                add(t, TokenDelta(ref, text[shown:n], t))
                shown = n
        add(max(_end(g), t), _draft_done(ref, g))
    for stage in _stages(stored, gens):
        add(stage.t, stage)
    last = max([t0, *(s.t for s in out)])
    wall = run.get("wall_time")
    end = max(last, t0 + float(wall)) if wall is not None else last
    ended = (RunStatus.DONE, RunStatus.FAILED, RunStatus.CANCELLED)
    status = RunStatus(run["status"]) if run["status"] in ended else RunStatus.CANCELLED
    totals = Totals(
        int(run.get("prompt_tokens") or 0),
        int(run.get("completion_tokens") or 0),
        float(run.get("cost") or 0.0),
        float(wall) if wall is not None else end - t0,
        len(gens),
        sum(1 for g in gens if g["status"] != GenerationStatus.DONE),
    )
    add(end, RunDone(run_id, status, run.get("final_text") or "", totals, end, run.get("error")))
    return sorted(out)


def _stages(stored: Mapping[str, Any], gens: Sequence[Mapping[str, Any]]) -> list[LayerDone]:
    """The LayerDone of every stage as recorded (get_run's "stages"); runs recorded before
    stages were stored get one per proposer layer, read from its generations, as they had."""
    run_id = stored["run"]["id"]
    rows = stored.get("stages") or []
    if rows:
        return [
            LayerDone(
                run_id,
                int(r["layer"]),
                int(r["ok"]),
                int(r["failed"]),
                float(r["ended_at"]),
                StageKind(r["kind"]),
                tuple(r.get("used") or ()),
                tuple(r.get("cut") or ()),
                dict(r.get("details") or {}),
            )
            for r in rows
        ]
    layers: dict[int, list[Mapping[str, Any]]] = {}
    for g in gens:
        if g["role"] == "proposer":
            layers.setdefault(int(g["layer"]), []).append(g)
    out = []
    for k, row in sorted(layers.items()):
        ok = sum(1 for g in row if g["status"] == "done")
        end = max(_end(g) for g in row)
        out.append(
            LayerDone(run_id, k, ok, len(row) - ok, end, used=tuple(g["call_id"] for g in row if g["status"] == "done"))
        )
    return out


async def replay_events(stored: Mapping[str, Any], speed: float | None = 1.0) -> AsyncGenerator[Event, None]:
    """The events of a stored run (`store.get_run`'s dict), spaced as recorded / `speed`.

    `speed` None (or 0) is instant: every event at once, in the recorded order. Event times
    (`t`, `started_at`, ...) are the recorded ones, so metrics read as in the original.
    """
    schedule = _schedule(stored)
    fast = speed is None or speed <= 0
    clock0, t0 = time.monotonic(), schedule[0].t
    for item in schedule:
        if not fast:
            delay = clock0 + (item.t - t0) / cast(float, speed) - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        yield item.event


__all__ = [
    "SPEEDS",
    "replay_events",
    "timing_is_derived",
]
