"""pytest plugin: run database tests on SQLite and on a real, throw-away PostgreSQL.

Fixtures:
  pg_server  (session) admin URL of a PostgreSQL: MOA_TEST_POSTGRES_URL if set, else a
             cluster started from the local binaries in a temp dir (removed afterwards);
             skipped with install advice when there are no binaries.
  pg_url     a fresh, empty database (or schema, if the role may not create databases)
             on that server, dropped after the test.
  db_url     parametrized: "sqlite" (a file in tmp_path) and "postgres" (marked `postgres`).

Register with `pytest_plugins = ["tests.pg_support"]` in tests/conftest.py.
"""

from __future__ import annotations

import glob
import os
import pwd
import shlex
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

INSTALL_HINT = (
    "no PostgreSQL server binaries (initdb, pg_ctl) found; install them with "
    "`apt-get install -y postgresql`, or set MOA_TEST_POSTGRES_URL=postgresql+psycopg://user:pass@host:port/db"
)
CLUSTER_USER = "moa-pg"
SUPERUSER = "moa"


def find_pg_bindir() -> Path | None:
    """Directory holding initdb, pg_ctl and postgres of one PostgreSQL version."""
    candidates: list[Path] = []
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(os.path.realpath(on_path)).parent)

    def version(bindir: str) -> list[int]:
        return [int(x) for x in Path(bindir).parent.name.split(".") if x.isdigit()]

    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True)]
    candidates += [Path(os.path.realpath("/usr/local/bin/pg_ctl")).parent, Path("/usr/local/pgsql/bin")]
    for d in candidates:
        if all((d / exe).is_file() and os.access(d / exe, os.X_OK) for exe in ("initdb", "pg_ctl", "postgres")):
            return d
    return None


def _cluster_user() -> str | None:
    """None when not root; else a user initdb accepts (it refuses to run as root)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", CLUSTER_USER):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            pass
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", CLUSTER_USER],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return CLUSTER_USER


def _as_user(user: str | None, argv: list[str]) -> list[str]:
    if user is None:
        return argv
    if shutil.which("runuser"):
        return ["runuser", "-u", user, "--", *argv]
    return ["su", user, "-s", "/bin/sh", "-c", shlex.join(argv)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(argv: list[str], what: str, log: Path | None = None) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
        pytest.fail(f"{what} failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}\n{tail}")


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """Admin URL (postgresql+psycopg://...) of a server the tests may create databases on."""
    env_url = os.environ.get("MOA_TEST_POSTGRES_URL")
    if env_url:
        yield env_url
        return
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg is not installed: pip install 'psycopg[binary]'")
    bindir = find_pg_bindir()
    if bindir is None:
        pytest.skip(INSTALL_HINT)
    user = _cluster_user()
    tmp = Path(tempfile.mkdtemp(prefix="moa-pg-", dir="/tmp"))
    data, log = tmp / "data", tmp / "server.log"
    if user is not None:
        info = pwd.getpwnam(user)
        os.chown(tmp, info.pw_uid, info.pw_gid)
    os.chmod(tmp, 0o700)
    port = _free_port()
    try:
        _run(
            _as_user(
                user,
                [
                    str(bindir / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    SUPERUSER,
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--no-locale",
                    "--no-sync",
                ],
            ),
            "initdb",
        )
        # Durability is pointless for a throw-away cluster; turning it off keeps tests fast.
        opts = (
            f"-p {port} -k {tmp} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=100"
        )
        _run(
            _as_user(
                user, [str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", opts, "-w", "-t", "60", "start"]
            ),
            "pg_ctl start",
            log,
        )
        yield f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{port}/postgres"
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run(
                _as_user(user, [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]),
                capture_output=True,
                timeout=60,
            )
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def pg_url(pg_server: str) -> Iterator[str]:
    """URL of a new empty database (dropped after the test)."""
    import psycopg
    from psycopg import errors, sql
    from sqlalchemy import make_url

    from moa_core.store.db import dispose_engines

    admin = make_url(pg_server)
    conninfo = admin.set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"moa_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(conninfo, autocommit=True) as conn:
        try:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            url = admin.set(database=name)
            dropped = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        except errors.InsufficientPrivilege:
            # A role that may not create databases still gets isolation from its own schema.
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
            url = admin.update_query_dict({"options": f"-csearch_path={name}"})
            dropped = sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name))
    text = url.render_as_string(hide_password=False)
    try:
        yield text
    finally:
        dispose_engines(text)
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(dropped)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database URL of each backend; the database is new and empty."""
    from moa_core.store.db import dispose_engines

    if request.param == "postgres":
        yield request.getfixturevalue("pg_url")
        return
    url = f"sqlite:///{tmp_path / 'moa.db'}"
    try:
        yield url
    finally:
        dispose_engines(url)
