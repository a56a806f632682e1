"""Engine events -> live columns: every draft streams into its own column at once.

Screen updates are batched per column (at most one every FLUSH_SECONDS), so six fast
columns do not flood the browser with websocket messages. The run is recorded as it
goes; if the script is stopped (Stop button, rerun, closed tab), the `aclosing` block
closes the event stream, which cancels every call and marks the run cancelled.
A replay (`stream_replay`) goes through the same columns, without a recorder or a model.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

import streamlit as st
from sqlalchemy.engine import Engine

from moa_core.config import AgentSpec, MoAConfig
from moa_core.engine import run_moa
from moa_core.events import ContextTrimmed, DraftDone, DraftStarted, Event, LayerDone, RunDone, RunStarted, TokenDelta
from moa_core.replay import replay_events, stage_columns
from moa_core.store.recorder import Recorder
from moa_core.ui.layout import fmt_cost, fmt_seconds
from moa_core.ui.safe_text import code_span, md_escape, safe_markdown

FLUSH_SECONDS = 0.08
CURSOR = " ▌"


@dataclass
class LiveColumn:
    title: str
    box: Any
    meta: Any
    text: str = ""
    last_flush: float = 0.0
    flushes: int = 0
    dirty: bool = False

    def flush(self, final: bool = False) -> None:
        self.box.markdown(safe_markdown(self.text) + ("" if final else CURSOR))
        self.last_flush = time.monotonic()
        self.flushes += 1
        self.dirty = False


@dataclass
class LiveRun:
    columns: dict[str, LiveColumn] = field(default_factory=dict)
    total_calls: int = 0
    done_calls: int = 0
    run_id: str | None = None
    result: RunDone | None = None


def meta_line(d: DraftDone) -> str:
    via = f" · via {md_escape(d.deployment)}" if d.deployment else ""
    return (
        f"{code_span(d.ref.model)} · {d.usage.prompt_tokens}→{d.usage.completion_tokens} tok · "
        f"TTFT {fmt_seconds(d.ttft)} · {fmt_seconds(d.latency)} · {fmt_cost(d.cost)}{via}"
    )


def _column(title: str) -> LiveColumn:
    st.markdown(f"**{md_escape(title)}**")
    box = st.empty()
    box.caption("waiting…")
    return LiveColumn(title, box, st.empty())


def layout_columns(stages: Sequence[tuple[str, Sequence[tuple[str, str]]]]) -> LiveRun:
    """One row of live columns per stage: (stage title, [(call_id, column title), ...])."""
    live = LiveRun()
    for title, calls in stages:
        st.markdown(f"##### {md_escape(title)}")
        for col, (call_id, name) in zip(st.columns(len(calls), border=True), calls, strict=False):
            with col:
                live.columns[call_id] = _column(name)
    live.total_calls = len(live.columns)
    return live


def layout_live(config: MoAConfig, baselines: Sequence[AgentSpec]) -> LiveRun:
    stages = [
        (
            f"Layer {k + 1} · {len(layer.proposers)} proposers",
            [(f"proposer-{k}-{i}", a.display_name) for i, a in enumerate(layer.proposers)],
        )
        for k, layer in enumerate(config.layers)
    ]
    finals = [(f"aggregator-{len(config.layers)}-0", f"MoA · {config.aggregator.display_name}")]
    finals += [(f"baseline--1-{i}", f"Alone · {a.display_name}") for i, a in enumerate(baselines)]
    return layout_columns([*stages, ("Aggregated answer and single models", finals)])


async def stream_run(
    engine: Engine,
    question: str,
    config: MoAConfig,
    history: Sequence[dict[str, Any]] = (),
    *,
    baselines: Sequence[AgentSpec] | None = None,
    kind: str = "playground",
    on_start: Callable[[str], None] | None = None,
) -> LiveRun:
    """Stream a run into freshly laid-out columns; returns when the run is done."""
    base = list(config.baselines if baselines is None else baselines)
    progress = st.progress(0.0, text="Streaming…")
    live = layout_live(config, base)
    recorder = Recorder(engine)
    events = recorder.record(run_moa(question, config, history, baselines=base, kind=kind))
    return await show_events(live, progress, events, on_start)


async def stream_replay(stored: Mapping[str, Any], speed: float | None) -> LiveRun:
    """Stream a stored run (`store.get_run`'s dict) again into live columns; no model, no recorder."""
    progress = st.progress(0.0, text="Replaying…")
    live = layout_columns(stage_columns(stored))
    return await show_events(live, progress, replay_events(stored, speed))


async def show_events(
    live: LiveRun, progress: Any, stream: AsyncGenerator[Event, None], on_start: Callable[[str], None] | None = None
) -> LiveRun:
    """Events -> the live columns. When the script stops (Stop, rerun), `aclosing` ends the stream."""
    async with aclosing(stream) as events:
        async for ev in events:
            if isinstance(ev, RunStarted):
                live.run_id = ev.run_id
                if on_start:
                    on_start(ev.run_id)
            elif isinstance(ev, DraftStarted):
                col = live.columns[ev.ref.call_id]
                col.box.caption("thinking…")
            elif isinstance(ev, TokenDelta):
                col = live.columns[ev.ref.call_id]
                col.text += ev.text
                col.dirty = True
                if time.monotonic() - col.last_flush >= FLUSH_SECONDS:
                    col.flush()
            elif isinstance(ev, ContextTrimmed):
                live.columns[ev.ref.call_id].meta.warning(
                    f"Drafts trimmed to fit {ev.context_window} tokens ({ev.tokens_before} → {ev.tokens_after})."
                )
            elif isinstance(ev, DraftDone):
                col = live.columns[ev.ref.call_id]
                col.text = ev.text
                col.flush(final=True)
                live.done_calls += 1
                if ev.ok:
                    col.meta.caption(meta_line(ev))
                else:
                    col.meta.error(md_escape(ev.error))
                progress.progress(
                    min(live.done_calls / live.total_calls, 1.0),
                    text=f"{live.done_calls}/{live.total_calls} calls done",
                )
            elif isinstance(ev, LayerDone) and ev.failed:
                st.toast(f"Layer {ev.layer + 1}: {ev.failed} proposer(s) failed, the run goes on.")
            elif isinstance(ev, RunDone):
                live.result = ev
    progress.empty()
    return live
