"""Writes the engine's events to the store as they arrive.

Each write is its own short transaction on a fresh connection, so runs recorded from
several threads (or processes) never share a session. Token deltas are kept in memory
and only flushed now and then, so streaming does not turn into one UPDATE per token.
Each run row names this process as its owner; while the run is open, `lease` keeps its
heartbeat fresh, so a run whose process dies is found and marked `interrupted`.
Each draft also keeps a compact timing of its text (`_Draft.timing`), so a replay can
stream the run again as it arrived.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, insert, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

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
)
from moa_core.store import lease
from moa_core.store.db import StoreError, safe_url, write_transaction
from moa_core.store.models import Generation, Run, Stage, table_of
from moa_core.store.util import inserted_id, one_line, strip_secrets
from moa_core.vocab import GenerationStatus, RunStatus

log = logging.getLogger(__name__)
T = TypeVar("T")
RUN = table_of(Run)
GEN = table_of(Generation)
STAGE = table_of(Stage)
# One timing point per this many seconds of streaming at most: about a screen flush of the
# live columns (ui.streaming.FLUSH_SECONDS), so a replay looks the same at a fraction of the
# size of one point per token.
TIMING_BUCKET = 0.1


@dataclass
class _Draft:
    gen_id: int
    started_at: float
    parts: list[str] = field(default_factory=list)
    last_flush: float = field(default_factory=time.monotonic)
    flushed_len: int = 0
    length: int = 0
    # [[seconds since started_at, characters so far], ...]. The first delta keeps a point of
    # its own (the exact TTFT); after it, the last point of a bucket moves forward as deltas
    # arrive, so a point never claims text earlier than it came and the last one is exact.
    timing: list[list[float]] = field(default_factory=list)
    bucket_start: float = float("-inf")

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def add(self, text: str, t: float) -> None:
        self.parts.append(text)
        self.length += len(text)
        point = [round(max(t - self.started_at, 0.0), 3), self.length]
        if len(self.timing) > 1 and t - self.bucket_start < TIMING_BUCKET:
            self.timing[-1] = point
        else:
            self.timing.append(point)
            self.bucket_start = t


@dataclass
class _OpenRun:
    drafts: dict[str, _Draft] = field(default_factory=dict)
    trims: list[dict[str, Any]] = field(default_factory=list)


class Recorder:
    """Records events into `engine` (already migrated: see `db.open_db`).

    `question_set` and `tags`, when given, are stored on every run this recorder starts.
    `flush_interval` is how often (seconds) partial text of a streaming draft is saved;
    None keeps it in memory until the draft ends.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        question_set: str | None = None,
        tags: list[str] | None = None,
        flush_interval: float | None = 2.0,
    ) -> None:
        self.engine = engine
        self.question_set = question_set
        self.tags = tags
        self.flush_interval = flush_interval
        self._runs: dict[str, _OpenRun] = {}
        self._lock = threading.Lock()
        lease.track(self)

    # -- writing -----------------------------------------------------------------------

    def _write(self, what: str, fn: Callable[[Connection], T]) -> T:
        try:
            with write_transaction(self.engine) as conn:
                return fn(conn)
        except IntegrityError as exc:
            raise StoreError(f"cannot record {what}: {one_line(exc)}") from exc
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot record {what} in {safe_url(self.engine)}: {one_line(exc)}") from exc

    def handle(self, ev: Event) -> None:
        """Record one event. Raises StoreError when the database refuses the write."""
        if isinstance(ev, RunStarted):
            self._run_started(ev)
        elif isinstance(ev, DraftStarted):
            self._draft(ev.ref, ev.t, ev.system_prompt, ev.params)
        elif isinstance(ev, TokenDelta):
            self._delta(ev)
        elif isinstance(ev, DraftDone):
            self._draft_done(ev)
        elif isinstance(ev, ContextTrimmed):
            self._state(ev.ref.run_id).trims.append(
                {
                    "call_id": ev.ref.call_id,
                    "context_window": ev.context_window,
                    "tokens_before": ev.tokens_before,
                    "tokens_after": ev.tokens_after,
                }
            )
        elif isinstance(ev, LayerDone):
            self._stage_done(ev)
        elif isinstance(ev, RunDone):
            self._run_done(ev)

    def _state(self, run_id: str) -> _OpenRun:
        with self._lock:
            return self._runs.setdefault(run_id, _OpenRun())

    def _run_started(self, ev: RunStarted) -> None:
        row = {
            "id": ev.run_id,
            "created_at": ev.t,
            "kind": ev.kind,
            "question": ev.question,
            "history": strip_secrets(list(ev.history)),
            "config": strip_secrets(dict(ev.config)),
            "config_hash": ev.config_hash,
            "preset": ev.preset,
            "status": RunStatus.RUNNING,
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "cost": 0.0,
            "question_set": self.question_set,
            "tags": self.tags,
            "owner": str(lease.current_owner()),
            # Now, not ev.t: the lease runs from when this process took the run on.
            "heartbeat_at": time.time(),
        }
        self._write(f"run {ev.run_id}", lambda c: c.execute(insert(RUN).values(**row)))
        self._state(ev.run_id)

    def _draft(self, ref: CallRef, t: float, system_prompt: str = "", params: dict[str, Any] | None = None) -> _Draft:
        row = {
            "run_id": ref.run_id,
            "call_id": ref.call_id,
            "role": ref.role,
            "layer": ref.layer,
            "slot": ref.slot,
            "model": ref.model,
            "label": ref.label,
            "params": strip_secrets(dict(params or {})),
            "system_prompt": system_prompt,
            "text": "",
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "cost": 0.0,
            "started_at": t,
            "status": GenerationStatus.STREAMING,
        }
        gen_id = self._write(
            f"draft {ref.call_id} of run {ref.run_id}",
            lambda c: inserted_id(c.execute(insert(GEN).values(**row))),
        )
        draft = _Draft(gen_id, t)
        self._state(ref.run_id).drafts[ref.call_id] = draft
        return draft

    def _get_draft(self, ref: CallRef, t: float) -> _Draft:
        draft = self._state(ref.run_id).drafts.get(ref.call_id)
        if draft is None:
            # A draft whose start we missed (e.g. recorder attached mid-run): look it up or create it.
            found = self._write(
                f"draft {ref.call_id}",
                lambda c: c.execute(
                    select(GEN.c.id, GEN.c.started_at).where(GEN.c.run_id == ref.run_id, GEN.c.call_id == ref.call_id)
                ).first(),
            )
            if found is None:
                return self._draft(ref, t)
            draft = _Draft(int(found[0]), float(found[1]))
            self._state(ref.run_id).drafts[ref.call_id] = draft
        return draft

    def _delta(self, ev: TokenDelta) -> None:
        draft = self._get_draft(ev.ref, ev.t)
        draft.add(ev.text, ev.t)
        now = time.monotonic()
        if self.flush_interval is not None and now - draft.last_flush >= self.flush_interval:
            text = draft.text
            if len(text) != draft.flushed_len:
                timing = [list(p) for p in draft.timing]

                def flush(c: Connection) -> None:
                    c.execute(
                        update(GEN)
                        .where(GEN.c.id == draft.gen_id, GEN.c.status == GenerationStatus.STREAMING)
                        .values(text=text, timing=timing)
                    )
                    # A heartbeat for free: if the process dies, the run's wall time ends here.
                    c.execute(
                        update(RUN)
                        .where(RUN.c.id == ev.ref.run_id, RUN.c.status == RunStatus.RUNNING)
                        .values(heartbeat_at=time.time())
                    )

                self._write(f"partial text of {ev.ref.call_id}", flush)
                draft.flushed_len = len(text)
            draft.last_flush = now

    def _draft_done(self, ev: DraftDone) -> None:
        draft = self._get_draft(ev.ref, ev.started_at)
        err = ev.error
        # A quorum's cut straggler ends "not used: quorum reached", cancelled like a stopped call.
        cancelled = err is not None and (err.lower().startswith("cancel") or ev.finish_reason == "cancelled")
        status = (
            GenerationStatus.DONE
            if err is None
            else (GenerationStatus.CANCELLED if cancelled else GenerationStatus.ERROR)
        )
        values = {
            "text": ev.text or draft.text,
            "error": err,
            "finish_reason": ev.finish_reason,
            "prompt_tokens": ev.usage.prompt_tokens,
            "completion_tokens": ev.usage.completion_tokens,
            "cost": ev.cost,
            "ttft": ev.ttft,
            "latency": ev.latency,
            "started_at": ev.started_at,
            "ended_at": ev.ended_at,
            "status": status,
            "deployment": ev.deployment,
            "timing": draft.timing or None,
        }
        self._write(
            f"result of {ev.ref.call_id} in run {ev.ref.run_id}",
            lambda c: c.execute(update(GEN).where(GEN.c.id == draft.gen_id).values(**values)),
        )
        self._state(ev.ref.run_id).drafts.pop(ev.ref.call_id, None)

    def _stage_done(self, ev: LayerDone) -> None:
        row = {
            "run_id": ev.run_id,
            "layer": ev.layer,
            "kind": ev.kind,
            "ok": ev.ok,
            "failed": ev.failed,
            "used": list(ev.used),
            "cut": list(ev.cut),
            "details": strip_secrets(dict(ev.details)),
            "ended_at": ev.t,
        }
        self._write(f"stage {ev.layer} of run {ev.run_id}", lambda c: c.execute(insert(STAGE).values(**row)))

    def _run_done(self, ev: RunDone) -> None:
        tot = ev.totals
        values = {
            "status": ev.status,
            "error": ev.error,
            "final_text": ev.final_text,
            "prompt_tokens": tot.prompt_tokens,
            "completion_tokens": tot.completion_tokens,
            "cost": tot.cost,
            "wall_time": tot.wall_time,
        }
        self._finish(ev.run_id, values, draft_status=GenerationStatus.CANCELLED, t=ev.t)

    def _finish(
        self, run_id: str, values: dict[str, Any], *, draft_status: str, t: float, only_if_running: bool = False
    ) -> bool:
        with self._lock:
            state = self._runs.pop(run_id, None) or _OpenRun()
        if state.trims:
            values = {**values, "meta": {"context_trimmed": state.trims}}

        def write(c: Connection) -> bool:
            # Drafts still streaming never got their DraftDone: keep what they had written so far.
            # (`interrupted` too: a sweep that took this live run for dead was wrong, and the
            # text in memory is longer than what it kept.)
            for draft in state.drafts.values():
                c.execute(
                    update(GEN)
                    .where(
                        GEN.c.id == draft.gen_id,
                        GEN.c.status.in_((GenerationStatus.STREAMING, GenerationStatus.INTERRUPTED)),
                    )
                    .values(text=draft.text, timing=draft.timing or None, status=draft_status, ended_at=t)
                )
            c.execute(
                update(GEN)
                .where(GEN.c.run_id == run_id, GEN.c.status == GenerationStatus.STREAMING)
                .values(status=draft_status, ended_at=t)
            )
            stmt = update(RUN).where(RUN.c.id == run_id)
            if only_if_running:
                stmt = stmt.where(RUN.c.status.in_((RunStatus.RUNNING, RunStatus.INTERRUPTED)))
            if "meta" in values:
                old = c.execute(select(RUN.c.meta).where(RUN.c.id == run_id)).scalar()
                values["meta"] = {**(old or {}), **values["meta"]}
            return c.execute(stmt.values(**values)).rowcount > 0

        return self._write(f"end of run {run_id}", write)

    def close_unfinished(self, run_id: str, status: str = RunStatus.CANCELLED, error: str | None = None) -> bool:
        """Mark a run that never got RunDone (and its streaming drafts) as ended.

        Partial text held in memory is saved. Returns False if the run was already ended
        (an `interrupted` run is not: this process is alive after all, and knows better).
        """
        return self._finish(
            run_id,
            {"status": status, "error": error},
            draft_status=GenerationStatus.CANCELLED,
            t=time.time(),
            only_if_running=True,
        )

    def open_runs(self) -> list[str]:
        with self._lock:
            return list(self._runs)

    # -- streaming ---------------------------------------------------------------------

    async def record(self, events: AsyncIterator[Event]) -> AsyncGenerator[Event, None]:
        """Pass `events` through, recording each one before it is yielded.

        If iteration stops before RunDone (the consumer broke out, the task was cancelled,
        or the engine raised), the run is closed as cancelled (or failed, with the error),
        and the upstream generator is closed. Use `contextlib.aclosing` around this so the
        cleanup runs at once rather than when the generator is garbage-collected.
        """
        started: list[str] = []
        status, error = RunStatus.CANCELLED, None
        try:
            async for ev in events:
                if isinstance(ev, RunStarted):
                    started.append(ev.run_id)
                self.handle(ev)
                yield ev
        except (GeneratorExit, asyncio.CancelledError):
            raise
        except StoreError as exc:
            status, error = RunStatus.FAILED, f"recording failed: {exc}"
            raise
        except Exception as exc:
            status, error = RunStatus.FAILED, one_line(exc)
            raise
        finally:
            aclose = getattr(events, "aclose", None)
            if aclose is not None:
                try:
                    await aclose()
                except Exception:  # the upstream's own cleanup failing must not hide why we stopped
                    log.exception("closing the event stream failed")
            with self._lock:
                unfinished = [r for r in started if r in self._runs]
            for run_id in unfinished:
                try:
                    self.close_unfinished(run_id, status, error)
                except StoreError:
                    log.exception("could not mark run %s as %s", run_id, status)


def annotate_run(
    engine: Engine,
    run_id: str,
    *,
    question_set: str | None = None,
    tags: list[str] | None = None,
    meta: dict[str, Any] | None = None,
) -> None:
    """Attach later information to a run: `meta` is merged into the stored dict, `tags` replace."""
    try:
        with write_transaction(engine) as c:
            old = c.execute(select(RUN.c.meta).where(RUN.c.id == run_id)).first()
            if old is None:
                raise ValueError(f"run {run_id} does not exist")
            values: dict[str, Any] = {}
            if question_set is not None:
                values["question_set"] = question_set
            if tags is not None:
                values["tags"] = list(tags)
            if meta is not None:
                values["meta"] = {**(old[0] or {}), **strip_secrets(meta)}
            if values:
                c.execute(update(RUN).where(RUN.c.id == run_id).values(**values))
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot annotate run {run_id}: {one_line(exc)}") from exc


__all__ = ["Recorder", "annotate_run"]
