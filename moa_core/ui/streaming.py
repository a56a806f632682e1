"""Engine events -> live columns: every call streams into its own column at once.

This is the app's one live renderer: the Playground, a replay, the Arena and the Daily
challenge all show calls through `LiveRun.apply` (columns keyed by call id), so they share
one batching rule: screen updates are batched per column (at most one every
FLUSH_SECONDS), so six fast columns do not flood the browser with websocket messages.
The run is recorded as it goes; if the script is stopped (Stop button, rerun, closed tab),
the `aclosing` block closes the event stream, which cancels every call and marks the run
cancelled. A replay (`stream_replay`) goes through the same columns, without a recorder
or a model.
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
from moa_core.replay import replay_events
from moa_core.stage_layout import NOT_USED, StageResult, call_names, marks, pipeline_columns, stage_columns
from moa_core.store.recorder import Recorder
from moa_core.ui.layout import fmt_cost, fmt_seconds
from moa_core.ui.pipeline_view import show_stage_result
from moa_core.ui.safe_text import code_span, md_escape, safe_markdown
from moa_core.vocab import StageKind

FLUSH_SECONDS = 0.08
CURSOR = " ▌"
NO_TEXT = "_(no text)_"


@dataclass
class LiveColumn:
    """One call's text on screen. `blind` (the arena): only the answer shows; no "thinking…"
    and no meta line, which would name the model before the vote."""

    title: str
    box: Any
    meta: Any
    text: str = ""
    last_flush: float = 0.0
    flushes: int = 0
    dirty: bool = False
    blind: bool = False
    mark: Any = None  # quorum "used"/"not used", select's "chosen"
    cut: bool = False  # left out by a quorum: its cancellation is not a failure

    def flush(self, final: bool = False) -> None:
        shown = safe_markdown(self.text)
        self.box.markdown(shown + ("" if final else CURSOR) if shown or not final else NO_TEXT)
        self.last_flush = time.monotonic()
        self.flushes += 1
        self.dirty = False

    def started(self) -> None:
        if not self.blind:
            self.box.caption("thinking…")

    def add(self, text: str) -> None:
        """A token: on screen at once unless this column was updated less than FLUSH_SECONDS ago."""
        self.text += text
        self.dirty = True
        if time.monotonic() - self.last_flush >= FLUSH_SECONDS:
            self.flush()

    def trimmed(self, ev: ContextTrimmed) -> None:
        if not self.blind:
            self.meta.warning(
                f"Drafts trimmed to fit {ev.context_window} tokens ({ev.tokens_before} → {ev.tokens_after})."
            )

    def finish(self, ev: DraftDone) -> None:
        self.text = ev.text or self.text
        self.flush(final=True)
        if self.blind:
            return
        if ev.ok:
            self.meta.caption(meta_line(ev))
        elif self.cut:
            self.meta.caption(md_escape(ev.error))
        else:
            self.meta.error(md_escape(ev.error))


@dataclass
class LiveRun:
    columns: dict[str, LiveColumn] = field(default_factory=dict)
    total_calls: int = 0
    done_calls: int = 0
    run_id: str | None = None
    result: RunDone | None = None
    names: dict[str, str] = field(default_factory=dict)  # call id -> agent name, for stage results
    slots: dict[int, Any] = field(default_factory=dict)  # stage layer -> the place below its row

    def apply(self, ev: Event) -> LiveColumn | None:
        """One event onto its call's column; returns the column (None: a call not laid out here)."""
        if isinstance(ev, RunStarted):
            self.run_id = ev.run_id
        elif isinstance(ev, RunDone):
            self.result = ev
        elif isinstance(ev, (DraftStarted, TokenDelta, ContextTrimmed, DraftDone)):
            col = self.columns.get(ev.ref.call_id)
            if col is None:
                return None
            if isinstance(ev, DraftStarted):
                col.started()
            elif isinstance(ev, TokenDelta):
                col.add(ev.text)
            elif isinstance(ev, ContextTrimmed):
                col.trimmed(ev)
            else:
                col.finish(ev)
                self.done_calls += 1
            return col
        return None


def meta_line(d: DraftDone) -> str:
    via = f" · via {md_escape(d.deployment)}" if d.deployment else ""
    return (
        f"{code_span(d.ref.model)} · {d.usage.prompt_tokens}→{d.usage.completion_tokens} tok · "
        f"TTFT {fmt_seconds(d.ttft)} · {fmt_seconds(d.latency)} · {fmt_cost(d.cost)}{via}"
    )


def _column(title: str) -> LiveColumn:
    st.markdown(f"**{md_escape(title)}**")
    mark = st.empty()
    box = st.empty()
    box.caption("waiting…")
    return LiveColumn(title, box, st.empty(), mark=mark)


def layout_columns(stages: Sequence[tuple[str, Sequence[tuple[str, str]]]]) -> LiveRun:
    """One row of live columns per stage: (stage title or "", [(call_id, column title), ...]),
    each followed by a place for what the stage decided (a review's ranking, a select's choice)."""
    live = LiveRun()
    for title, calls in stages:
        if title:
            st.markdown(f"##### {md_escape(title)}")
        for col, (call_id, name) in zip(st.columns(len(calls), border=True), calls, strict=False):
            with col:
                live.columns[call_id] = _column(name)
        slot = st.empty()
        for call_id, _ in calls:
            live.slots.setdefault(_layer_of(call_id), slot)
    live.total_calls = len(live.columns)
    return live


def _layer_of(call_id: str) -> int:
    # call ids are role-layer-slot; a baseline's layer is -1 ("baseline--1-0").
    return int(call_id.rsplit("-", 2)[-2]) if call_id.count("-") == 2 else -1


def layout_live(config: MoAConfig, baselines: Sequence[AgentSpec]) -> LiveRun:
    rows = pipeline_columns(config, baselines)
    live = layout_columns(rows)
    live.names = call_names(rows, config)
    return live


def stage_done(live: LiveRun, ev: LayerDone) -> None:
    """A stage ended: mark the drafts a quorum used or cut (and select's choice) in their
    columns, and show a review's aggregate ranking below its row, above the final answer."""
    result = StageResult.from_event(ev)
    for call_id in result.cut:
        if call_id in live.columns:
            live.columns[call_id].cut = True
    for call_id, text in marks(result).items():
        col = live.columns.get(call_id)
        if col is not None and col.mark is not None:
            col.mark.caption(("✅ " if text != NOT_USED else "✂️ ") + md_escape(text))
    slot = live.slots.get(ev.layer)
    if slot is not None and ev.kind in (StageKind.REVIEW, StageKind.SELECT):
        with slot.container():
            show_stage_result(result, live.names)
    if ev.failed:
        who = "proposer(s)" if ev.kind == StageKind.PROPOSE else "call(s)"
        st.toast(f"Layer {ev.layer + 1}: {ev.failed} {who} failed, the run goes on.")


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
    rows = stage_columns(stored)
    live = layout_columns(rows)
    live.names = call_names(rows, stored)
    return await show_events(live, progress, replay_events(stored, speed))


async def show_events(
    live: LiveRun,
    progress: Any,
    stream: AsyncGenerator[Event, None],
    on_start: Callable[[str], None] | None = None,
) -> LiveRun:
    """Events -> the live columns (`progress`: a progress bar, or None). When the script
    stops (Stop, rerun), `aclosing` ends the stream."""
    async with aclosing(stream) as events:
        async for ev in events:
            col = live.apply(ev)
            if isinstance(ev, RunStarted):
                if on_start:
                    on_start(ev.run_id)
            elif isinstance(ev, DraftDone) and col is not None and progress is not None:
                progress.progress(
                    min(live.done_calls / live.total_calls, 1.0),
                    text=f"{live.done_calls}/{live.total_calls} calls done",
                )
            elif isinstance(ev, LayerDone):
                stage_done(live, ev)
    if progress is not None:
        progress.empty()
    return live
