"""Run leases: a `running` run whose process is gone becomes `interrupted`.

Every run row names its owner (host, pid, process start time, boot id, PID namespace) and
carries `heartbeat_at`, which the owning process refreshes while the run is open (one
UPDATE per database every lease/6 seconds, from one daemon thread per process, whatever
the number of runs). A run still `running` is interrupted when

- its owner is a process of this machine (same boot, same PID namespace) that no longer
  exists, or whose PID now belongs to another process: no need to wait, or
- its lease expired: no heartbeat for `MOA_RUN_LEASE_SECONDS` (default 60). This covers
  owners on other hosts or in other containers, whose processes cannot be looked up.

A process sweeps each database when it first opens it (`db.init_db`) and then every half
lease. Interrupting keeps every finished draft; drafts still `streaming` become
`interrupted` with the partial text the recorder had flushed; the run's wall time and
totals are set from what the rows show. A live process never loses its run to a sweep
(its heartbeat is younger than the lease); if one ever did (a stall longer than the lease),
its own later writes put the true status back.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

from sqlalchemy import Connection, Engine, func, select, update
from sqlalchemy.exc import SQLAlchemyError

from moa_core import settings
from moa_core.store.db import StoreError, migrated_engines, safe_url, write_transaction
from moa_core.store.models import Generation, Run, table_of
from moa_core.store.util import one_line
from moa_core.vocab import GenerationStatus, RunStatus

log = logging.getLogger(__name__)
RUN = table_of(Run)
GEN = table_of(Generation)

LEASE_ENV = "MOA_RUN_LEASE_SECONDS"
DEFAULT_LEASE_SECONDS = 60.0
# Heartbeats per lease: a run survives five missed heartbeats in a row.
BEATS_PER_LEASE = 6


def lease_seconds() -> float:
    """The lease from `MOA_RUN_LEASE_SECONDS` (settings.py); StoreError (one line) when unusable."""
    try:
        return settings.current().run_lease_seconds
    except settings.SettingsError as err:
        raise StoreError(str(err)) from None


# ---------------------------------------------------------------- who owns a run


@dataclass(frozen=True)
class Owner:
    """A process, precisely enough to tell later, on the same machine, that it has ended."""

    host: str
    pid: int
    start: str = ""  # start time in clock ticks since boot (/proc/<pid>/stat): tells a reused PID
    boot: str = ""  # kernel boot id: PIDs and start times only compare within one boot
    pidns: str = ""  # PID namespace: PIDs only compare within one (containers)

    def __str__(self) -> str:
        return "/".join((self.host, str(self.pid), self.start, self.boot, self.pidns))

    @classmethod
    def parse(cls, text: str | None) -> Owner | None:
        if not text:
            return None
        parts = text.rsplit("/", 4)
        if len(parts) != 5 or not parts[1].isdigit():
            return None
        return cls(parts[0], int(parts[1]), *parts[2:])

    def describe(self) -> str:
        return f"{self.host}, pid {self.pid}"


def _read(path: str) -> str:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return f.read().strip()
    except OSError:
        return ""


def _proc_stat(pid: int | str) -> tuple[str, str] | None:
    """(state, start time) of a process from /proc, or None when /proc has no such entry."""
    text = _read(f"/proc/{pid}/stat")
    if ")" not in text:
        return None
    fields = text.rsplit(")", 1)[1].split()  # the command name may hold spaces and parentheses
    return (fields[0], fields[19]) if len(fields) > 19 else None


def _pidns() -> str:
    try:
        return "".join(ch for ch in os.readlink("/proc/self/ns/pid") if ch.isdigit())
    except OSError:
        return ""


_me: Owner | None = None


def current_owner() -> Owner:
    """This process (recomputed in a forked child, which is another process)."""
    global _me
    if _me is None or _me.pid != os.getpid():
        stat = _proc_stat("self")
        _me = Owner(
            host=socket.gethostname()[:128].replace("/", "_") or "localhost",
            pid=os.getpid(),
            start=stat[1] if stat else "",
            boot=_read("/proc/sys/kernel/random/boot_id"),
            pidns=_pidns(),
        )
    return _me


def owner_gone(owner: Owner) -> bool:
    """True only when `owner` certainly no longer runs: a process of this machine, this boot
    and this PID namespace whose PID is free or taken by a younger process. Anything that
    cannot be checked counts as alive (the lease decides)."""
    me = current_owner()
    if not (owner.start and owner.boot and owner.pidns and me.start):
        return False
    if (owner.host, owner.boot, owner.pidns) != (me.host, me.boot, me.pidns):
        return False
    stat = _proc_stat(owner.pid)
    if stat is None:
        try:
            os.kill(owner.pid, 0)
        except ProcessLookupError:
            return True
        except OSError:
            return False  # exists, but not ours to look at (/proc mounted with hidepid)
        return False
    state, start = stat
    return start != owner.start or state in ("Z", "X")  # a zombie writes nothing more


# ---------------------------------------------------------------- heartbeats and sweeps


def heartbeat(engine: Engine, run_ids: set[str] | list[str], now: float | None = None) -> int:
    """Refresh the lease of these runs (those still `running`); returns how many rows."""
    if not run_ids:
        return 0
    stamp = time.time() if now is None else now
    with write_transaction(engine) as c:
        stmt = (
            update(RUN).where(RUN.c.id.in_(list(run_ids)), RUN.c.status == RunStatus.RUNNING).values(heartbeat_at=stamp)
        )
        return int(c.execute(stmt).rowcount)


def _interrupt(engine: Engine, run_id: str, claim: Any, reason: str) -> bool:
    def write(c: Connection) -> bool:
        # The claim re-checks the condition inside the write: a heartbeat that landed since
        # the sweep looked, or another sweeper that got there first, leaves the row alone.
        claimed = c.execute(
            update(RUN)
            .where(RUN.c.id == run_id, RUN.c.status == RunStatus.RUNNING, claim)
            .values(status=RunStatus.INTERRUPTED, error=f"interrupted: {reason}")
        ).rowcount
        if not claimed:
            return False
        created, beat = c.execute(select(RUN.c.created_at, RUN.c.heartbeat_at).where(RUN.c.id == run_id)).one()
        ended, started, p_tok, c_tok, cost = c.execute(
            select(
                func.max(GEN.c.ended_at),
                func.max(GEN.c.started_at),
                func.coalesce(func.sum(GEN.c.prompt_tokens), 0),
                func.coalesce(func.sum(GEN.c.completion_tokens), 0),
                func.coalesce(func.sum(GEN.c.cost), 0.0),
            ).where(GEN.c.run_id == run_id)
        ).one()
        # The last moment the process is known to have been alive.
        last_seen = max(t for t in (created, beat, ended, started) if t is not None)
        c.execute(
            update(GEN)
            .where(GEN.c.run_id == run_id, GEN.c.status == GenerationStatus.STREAMING)
            .values(status=GenerationStatus.INTERRUPTED, ended_at=last_seen)
        )
        c.execute(
            update(RUN)
            .where(RUN.c.id == run_id)
            .values(
                wall_time=last_seen - created, prompt_tokens=int(p_tok), completion_tokens=int(c_tok), cost=float(cost)
            )
        )
        return True

    try:
        with write_transaction(engine) as c:
            return write(c)
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot mark run {run_id} interrupted in {safe_url(engine)}: {one_line(exc)}") from exc


def sweep(engine: Engine, lease: float | None = None) -> list[str]:
    """Mark every `running` run whose process is gone (see the module doc) as `interrupted`.

    Returns the ids of the runs this call marked. Raises StoreError when the database
    cannot be read or written.
    """
    lease = lease_seconds() if lease is None else lease
    try:
        with engine.connect() as c:
            rows = c.execute(
                select(RUN.c.id, RUN.c.owner, RUN.c.heartbeat_at, RUN.c.created_at).where(
                    RUN.c.status == RunStatus.RUNNING
                )
            ).all()
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot read {safe_url(engine)}: {one_line(exc)}") from exc
    cutoff = time.time() - lease
    marked = []
    for run_id, owner_text, beat, created in rows:
        owner = Owner.parse(owner_text)
        who = f" ({owner.describe()})" if owner else ""
        if owner is not None and owner_gone(owner):
            claim = RUN.c.owner == owner_text
            reason = f"the process running it{who} ended before the run finished"
        elif (beat if beat is not None else created) < cutoff:
            claim = func.coalesce(RUN.c.heartbeat_at, RUN.c.created_at) < cutoff
            reason = f"no heartbeat from the process running it{who} for over {lease:g} s"
        else:
            continue
        if _interrupt(engine, run_id, claim, reason):
            log.warning("run %s marked interrupted: %s", run_id, reason)
            marked.append(run_id)
    return marked


class _Recording(Protocol):
    engine: Engine

    def open_runs(self) -> list[str]: ...


class _Keeper:
    """The per-process daemon thread: heartbeats for the runs this process's recorders have
    open, and a sweep of every database this process opened, every half lease."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.recorders: weakref.WeakSet[_Recording] = weakref.WeakSet()
        self.thread: threading.Thread | None = None
        self.failing: set[str] = set()

    def track(self, recorder: _Recording) -> None:
        with self.lock:
            self.recorders.add(recorder)
        self.start()

    def start(self) -> None:
        with self.lock:
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._loop, name="moa-run-lease", daemon=True)
                self.thread.start()

    def beat(self) -> None:
        with self.lock:
            recorders = list(self.recorders)
        open_by_engine: dict[int, tuple[Engine, set[str]]] = {}
        for rec in recorders:
            open_ids = rec.open_runs()
            if open_ids:
                open_by_engine.setdefault(id(rec.engine), (rec.engine, set()))[1].update(open_ids)
        for engine, ids in open_by_engine.values():
            self._guard("heartbeat", engine, partial(heartbeat, engine, ids))

    def sweep_all(self, lease: float) -> None:
        for engine in migrated_engines():
            self._guard("sweep", engine, partial(sweep, engine, lease))

    def _guard(self, what: str, engine: Engine, fn: Callable[[], object]) -> None:
        # One warning per database while it keeps failing, not one every few seconds.
        key = f"{what} {safe_url(engine)}"
        try:
            fn()
        except (StoreError, SQLAlchemyError, OSError) as exc:
            if key not in self.failing:
                self.failing.add(key)
                log.warning("run lease %s failed: %s", what, one_line(exc))
        except Exception:
            # Anything else is a bug; the thread must outlive it, or this process's live
            # runs would stop beating and be taken for dead.
            log.exception("run lease %s failed", what)
        else:
            self.failing.discard(key)

    def _loop(self) -> None:
        next_sweep = 0.0  # set on the first pass: open_db has just swept
        while True:
            try:
                lease = lease_seconds()
            except StoreError:
                lease = DEFAULT_LEASE_SECONDS  # open_db reports a bad value; the thread keeps going
            if not next_sweep:
                next_sweep = time.monotonic() + lease / 2
            elif time.monotonic() >= next_sweep:
                next_sweep = time.monotonic() + lease / 2
                self.sweep_all(lease)
            time.sleep(lease / BEATS_PER_LEASE)
            self.beat()


_keeper = _Keeper()


def track(recorder: _Recording) -> None:
    """Keep the leases of `recorder`'s open runs fresh for as long as the recorder lives."""
    _keeper.track(recorder)


def start_sweeping() -> None:
    """Sweep every database this process has opened, every half lease, from now on."""
    _keeper.start()


def _after_fork_in_child() -> None:
    # A forked child is another process: it must not beat for its parent's runs.
    global _keeper, _me
    _keeper, _me = _Keeper(), None


os.register_at_fork(after_in_child=_after_fork_in_child)


__all__ = [
    "DEFAULT_LEASE_SECONDS",
    "LEASE_ENV",
    "Owner",
    "current_owner",
    "heartbeat",
    "lease_seconds",
    "owner_gone",
    "start_sweeping",
    "sweep",
    "track",
]
