"""Engines and schema: one cached engine per URL, Alembic migrations run from code.

The URL comes from the caller, else `DATABASE_URL`, else SQLite at `<data dir>/moa.db` (settings.py).
Every failure to reach or write the database becomes a `StoreError` with one line that
names the URL (password hidden) and the driver's reason.
"""

from __future__ import annotations

import fcntl
import json
import logging
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.util.exc import CommandError
from sqlalchemy import URL, Connection, Engine, create_engine, event, make_url, text
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from moa_core import settings
from moa_core.inputs import user_path
from moa_core.store.util import one_line, redact_url

MIGRATIONS_DIR = settings.MIGRATIONS_DIR
SQLITE_BUSY_TIMEOUT_MS = 10_000

log = logging.getLogger(__name__)
_engines: dict[str, Engine] = {}
_migrated: set[str] = set()
_lock = threading.RLock()


class StoreError(RuntimeError):
    """The database cannot be opened, migrated or written; the message is one line."""


def default_url() -> str:
    return settings.current().database_url


def safe_url(url: str | URL | Engine) -> str:
    """The URL as it may be shown or logged: the password replaced by ***."""
    if isinstance(url, Engine):
        url = url.url
    if isinstance(url, URL):
        return url.render_as_string(hide_password=True)
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return redact_url(url)


def _json_dumps(value: Any) -> str:
    # Params can hold values json cannot encode (e.g. a Path); storing their text beats failing the run.
    return json.dumps(value, default=str, ensure_ascii=False)


def _is_memory(url: URL) -> bool:
    return url.database in (None, "", ":memory:") or "mode=memory" in str(url)


def _sqlite_on_connect(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    try:
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA foreign_keys=ON")
        # WAL lets the app read while a run is being written from another thread/process.
        cur.execute("PRAGMA journal_mode=WAL")
        # NORMAL is safe from corruption in WAL mode and avoids an fsync per small write.
        cur.execute("PRAGMA synchronous=NORMAL")
    finally:
        cur.close()


def _create(url: URL) -> Engine:
    if url.get_backend_name() == "sqlite":
        connect_args = {"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
        kwargs: dict[str, Any] = {"connect_args": connect_args}
        if _is_memory(url):
            # One shared connection, or every thread would see its own empty database.
            kwargs["poolclass"] = StaticPool
        elif url.database and not url.database.startswith("file:"):
            user_path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, json_serializer=_json_dumps, **kwargs)
        event.listen(engine, "connect", _sqlite_on_connect)
        return engine
    return create_engine(url, json_serializer=_json_dumps, pool_pre_ping=True)


_write_locks: dict[int, tuple[threading.Lock, Any]] = {}
_write_locks_guard = threading.Lock()


def _sqlite_write_lock(engine: Engine) -> tuple[threading.Lock, Any]:
    """A thread lock, plus an open sidecar file to flock() when the database is a file."""
    with _write_locks_guard:
        if id(engine) not in _write_locks:
            db = engine.url.database
            lockfile = None
            if db and not _is_memory(engine.url) and not db.startswith("file:"):
                try:
                    lockfile = open(f"{db}.writelock", "a+b")  # noqa: SIM115 - kept open for the engine's life
                except OSError:
                    lockfile = None  # read-only directory: SQLite's own locking still applies
            _write_locks[id(engine)] = (threading.Lock(), lockfile)
        return _write_locks[id(engine)]


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """`engine.begin()`, but SQLite writers queue for their turn first.

    SQLite allows one writer at a time, and a writer that finds the database locked
    sleeps in SQLite's busy handler in growing steps (up to 100 ms), which makes the
    slowest commits slow when many sessions rate at once. Writers here queue instead on
    a thread lock (same process) and an flock on a sidecar file (other processes), which
    wake the next writer as soon as the previous one commits.
    """
    if engine.dialect.name != "sqlite":
        with engine.begin() as conn:
            yield conn
        return
    lock, lockfile = _sqlite_write_lock(engine)
    with lock:
        if lockfile is not None:
            fcntl.flock(lockfile.fileno(), fcntl.LOCK_EX)
        try:
            with engine.begin() as conn:
                yield conn
        finally:
            if lockfile is not None:
                fcntl.flock(lockfile.fileno(), fcntl.LOCK_UN)


def get_engine(url: str | None = None) -> Engine:
    """Cached engine for `url`; connects once so a bad URL fails here, not mid-run."""
    raw = url or default_url()
    try:
        parsed = make_url(raw)
    except ArgumentError:
        raise StoreError(
            f"invalid database URL {redact_url(raw)}: expected e.g. sqlite:///data/moa.db "
            "or postgresql+psycopg://user:password@host/dbname"
        ) from None
    key = parsed.render_as_string(hide_password=False)
    shown = safe_url(parsed)
    with _lock:
        cached = _engines.get(key)
        if cached is not None:
            return cached
        try:
            engine = _create(parsed)
        except (NoSuchModuleError, ImportError) as exc:
            raise StoreError(f"cannot use database {shown}: no driver for it ({one_line(exc)})") from None
        except (ArgumentError, OSError, SQLAlchemyError) as exc:
            raise StoreError(f"cannot open database {shown}: {one_line(exc, parsed.password)}") from None
        try:
            with engine.connect():
                pass
        except (SQLAlchemyError, OSError) as exc:
            engine.dispose()
            raise StoreError(f"cannot open database {shown}: {one_line(exc, parsed.password)}") from None
        _engines[key] = engine
        return engine


def alembic_config(connection: Any = None) -> Config:
    """Alembic config built in code (no alembic.ini): migrations ship inside the package."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the schema to `revision` ("head" or e.g. "0001")."""
    shown = safe_url(engine)
    sqlite = engine.dialect.name == "sqlite"
    try:
        with engine.connect() as conn:
            if sqlite:
                # Batch migrations rebuild tables; with FKs on, dropping the old table
                # would cascade-delete child rows. The pragma only works outside a transaction.
                conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
                # One write transaction for the whole upgrade: a crash leaves no half-made
                # schema, and a second process starting at the same time waits, then finds
                # the schema current, instead of racing to create the same tables.
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            try:
                command.upgrade(alembic_config(conn), revision)
                conn.commit()
            finally:
                if sqlite:
                    conn.rollback()
                    conn.exec_driver_sql("PRAGMA foreign_keys=ON")
    except CommandError as exc:
        raise StoreError(f"cannot migrate database {shown}: {one_line(exc)} (is it from a newer MoA Studio?)") from None
    except (SQLAlchemyError, OSError) as exc:
        raise StoreError(f"cannot open database {shown}: {one_line(exc, engine.url.password)}") from None


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def _probe_writable(engine: Engine) -> None:
    # A no-op write, rolled back: a read-only file or role fails here, at start-up,
    # instead of on the first recorded run.
    with engine.connect() as conn:
        try:
            conn.execute(text("UPDATE alembic_version SET version_num = version_num"))
        finally:
            conn.rollback()


def init_db(engine: Engine) -> Engine:
    """Bring the schema to head and check it is writable (once per engine per process), then
    mark runs whose process is gone as interrupted (see `lease`) and keep sweeping for them."""
    from moa_core.store import lease  # lease builds on this module

    key = engine.url.render_as_string(hide_password=False)
    with _lock:
        if key in _migrated:
            return engine
        lease_s = lease.lease_seconds()  # a bad MOA_RUN_LEASE_SECONDS fails here, at start-up
        upgrade(engine, "head")
        try:
            _probe_writable(engine)
        except (SQLAlchemyError, OSError) as exc:
            raise StoreError(f"cannot open database {safe_url(engine)}: {one_line(exc, engine.url.password)}") from None
        _migrated.add(key)
    try:
        lease.sweep(engine, lease_s)
    except StoreError as exc:
        # The database opened and is writable: a failed sweep is retried by the periodic one.
        log.warning("sweep for interrupted runs failed: %s", exc)
    lease.start_sweeping()
    return engine


def migrated_engines() -> list[Engine]:
    """The cached engines `init_db` has brought to head in this process."""
    with _lock:
        return [e for k, e in _engines.items() if k in _migrated]


def open_db(url: str | None = None) -> Engine:
    """What the app and CLI call: engine for `url` (or the default), migrated to head."""
    return init_db(get_engine(url))


def dispose_engines(url: str | None = None) -> None:
    """Close cached engines (all, or the one for `url`): tests, or before dropping a database."""
    with _lock:
        keys = list(_engines) if url is None else [make_url(url).render_as_string(hide_password=False)]
        for key in keys:
            engine = _engines.pop(key, None)
            if engine is not None:
                engine.dispose()
            _migrated.discard(key)


__all__ = [
    "StoreError",
    "alembic_config",
    "current_revision",
    "default_url",
    "dispose_engines",
    "get_engine",
    "init_db",
    "migrated_engines",
    "open_db",
    "safe_url",
    "upgrade",
]
