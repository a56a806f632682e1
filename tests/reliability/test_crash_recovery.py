"""Crash recovery: a real SIGKILL of a real process mid-run, on SQLite and PostgreSQL.

- `moa ask` killed while a draft streams: the next process (`moa history`) marks the run
  `interrupted`; `moa history` and `moa export` say so; the finished draft and the partial
  text of the cut one are kept.
- The app (`streamlit run`) killed while a run streams, restarted on the same database:
  History says the run was interrupted, its page shows what was kept.
- Two live apps on one database with a 2 s lease: neither marks the other's runs
  interrupted; when one is killed, the other's periodic sweep marks its run, unasked.

The test process reads the database through a plain engine (`raw`), never `open_db`, so
the marking is done by the processes under test and not by the test itself.
"""

from __future__ import annotations

import csv
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import Engine, create_engine, text

from moa_core.store import dispose_engines, open_db
from moa_core.store.lease import LEASE_ENV
from moa_core.ui.run_view import run_link
from tests.browser_support import ROOT, AppServer, ask, open_app, start_app, wait_idle, wait_run_done

QUESTION = "What survives a crash?"
SLOW = {"tokens": 400, "delay": 0.05}  # 20 s of streaming: always cut mid-draft


def agent(server, name: str, **opts: object) -> dict:
    suffix = ",".join(f"{k}={v}" for k, v in opts.items())
    return {"model": f"openai/fake-{name}@{suffix}", "label": name, "api_base": server.url, "max_tokens": 512}


def crash_config(server, name: str, slow: dict | None = None) -> dict:
    return {
        "name": name,
        "timeout": 120,
        "num_retries": 0,
        "layers": [
            {"proposers": [agent(server, "crash-fast", tokens=5), agent(server, "crash-slow", **(slow or SLOW))]}
        ],
        "aggregator": agent(server, "crash-agg", tokens=5),
    }


@pytest.fixture
def raw(db_url: str) -> Iterator[Engine]:
    """The database under test, migrated, then read without open_db's engine (which would sweep)."""
    open_db(db_url)
    dispose_engines(db_url)
    engine = create_engine(db_url)
    yield engine
    engine.dispose()


def rows(engine: Engine, sql: str, **params: Any) -> list[tuple]:
    with engine.connect() as c:
        return [tuple(r) for r in c.execute(text(sql), params)]


def wait_until(cond: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def wait_cut(raw: Engine, question: str, alive: Callable[[], bool]) -> str:
    """The run's id once its fast draft is done and the slow one has a few words stored."""

    def ready() -> str | None:
        assert alive(), "the process under test exited before the crash"
        found = rows(
            raw,
            "select r.id, s.text from run r join generation f on f.run_id = r.id and f.label = 'crash-fast' "
            "join generation s on s.run_id = r.id and s.label = 'crash-slow' where r.question = :q "
            "and f.status = 'done' and s.status = 'streaming'",
            q=question,
        )
        return found[0][0] if found and len(found[0][1].split()) >= 3 else None

    return wait_until(ready, 120, "a finished draft and a partially stored one")


def assert_left_running(raw: Engine, run_id: str) -> None:
    """What a SIGKILL leaves behind, before any process has looked (the state of the bug)."""
    assert rows(raw, "select status, wall_time from run where id = :r", r=run_id) == [("running", None)]
    assert rows(raw, "select status from generation where run_id = :r and label = 'crash-slow'", r=run_id) == [
        ("streaming",)
    ]


def assert_interrupted(raw: Engine, run_id: str) -> str:
    """The run is interrupted with a wall time; the finished draft kept whole, the cut one
    with the prefix of its stream that had been stored. Returns the kept partial text."""
    [(status, error, wall, created, beat)] = rows(
        raw, "select status, error, wall_time, created_at, heartbeat_at from run where id = :r", r=run_id
    )
    assert status == "interrupted", (status, error)
    assert error.startswith("interrupted: the process running it (") and "ended before the run finished" in error
    assert wall is not None and wall > 0 and created + wall >= beat
    gens = {
        label: (st, txt)
        for label, st, txt in rows(raw, "select label, status, text from generation where run_id = :r", r=run_id)
    }
    assert set(gens) == {"crash-fast", "crash-slow"}, gens  # the aggregator never started
    assert gens["crash-fast"][0] == "done" and re.fullmatch(r"m\d+d0 w1 w2 w3 w4", gens["crash-fast"][1])
    status, partial = gens["crash-slow"]
    words = partial.split()
    assert status == "interrupted" and 3 <= len(words) < SLOW["tokens"], partial
    assert re.fullmatch(r"m\d+d0", words[0]) and words[1:] == [f"w{i}" for i in range(1, len(words))], partial
    return partial


def kill(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL


# ---------------------------------------------------------------- the CLI


def test_sigkill_of_moa_ask_mid_run_then_the_next_process_marks_it_interrupted(db_url, raw, fake_server, tmp_path):
    cfg = tmp_path / "crash.yaml"
    cfg.write_text(yaml.safe_dump(crash_config(fake_server, "crash-cli")))
    env = {**os.environ, "DATABASE_URL": db_url, "COLUMNS": "300"}
    log = (tmp_path / "ask.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "moa_core.cli", "ask", QUESTION, "--config", str(cfg)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        run_id = wait_cut(raw, QUESTION, lambda: proc.poll() is None)
        kill(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    assert_left_running(raw, run_id)

    # the next process to open the database: `moa history`
    hist = subprocess.run(
        [sys.executable, "-m", "moa_core.cli", "history"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert hist.returncode == 0, hist.stderr
    line = next(ln for ln in hist.stdout.splitlines() if run_id in ln)
    assert "interrupted" in line and "the process running it" in line, hist.stdout
    assert "1 run(s) interrupted" in hist.stdout
    assert f"run {run_id} marked interrupted" in hist.stderr  # said once, by the process that marked it
    partial = assert_interrupted(raw, run_id)

    # and the export says the same
    out = tmp_path / "export"
    exp = subprocess.run(
        [sys.executable, "-m", "moa_core.cli", "export", "--out", str(out)], cwd=ROOT, env=env, capture_output=True
    )
    assert exp.returncode == 0, exp.stderr
    runs = list(csv.DictReader((out / "runs.csv").open(encoding="utf-8", newline="")))
    assert [(r["status"], r["error"].startswith("interrupted: ")) for r in runs if r["id"] == run_id] == [
        ("interrupted", True)
    ]
    gens = list(csv.DictReader((out / "generations.csv").open(encoding="utf-8", newline="")))
    assert sorted((g["label"], g["status"]) for g in gens if g["run_id"] == run_id) == [
        ("crash-fast", "done"),
        ("crash-slow", "interrupted"),
    ]
    assert next(g["text"] for g in gens if g["label"] == "crash-slow") == partial


# ---------------------------------------------------------------- the app


def import_config(page, path: Path, name: str) -> None:
    sidebar = page.get_by_test_id("stSidebar")
    drop = sidebar.get_by_test_id("stFileUploaderDropzone")
    if not drop.is_visible():
        sidebar.get_by_text("Import / export / save").click()
        drop.wait_for()
    sidebar.locator("input[type=file]").set_input_files(str(path))
    wait_idle(page)
    page.get_by_text(name).first.wait_for()
    wait_idle(page)


@pytest.mark.browser
def test_sigkill_of_the_app_mid_run_then_a_restart_marks_it_interrupted(page, db_url, raw, fake_server, tmp_path):
    cfg = tmp_path / "crash.yaml"
    cfg.write_text(yaml.safe_dump(crash_config(fake_server, "crash-app")))
    first = start_app(tmp_path / "first", db_url=db_url)
    try:
        open_app(page, first)
        import_config(page, cfg, "crash-app")
        ask(page, QUESTION)
        run_id = wait_cut(raw, QUESTION, lambda: first.proc.poll() is None)
        kill(first.proc)
    finally:
        if first.proc.poll() is None:
            first.stop()
    assert_left_running(raw, run_id)

    second = start_app(tmp_path / "second", db_url=db_url)  # same database, new process
    try:
        page.goto(second.url + run_link("x").split("?", 1)[0])
        wait_idle(page)
        page.get_by_text("1 run(s) interrupted: their server process stopped mid-run.").wait_for()
        page.goto(second.url + run_link(run_id))
        wait_idle(page)
        page.get_by_text("interrupted: the process running it (").wait_for()
        page.get_by_text("cut off: the server process stopped while this was streaming").wait_for()
        body = page.inner_text("body")
        assert "⚠️ interrupted" in body
        partial = assert_interrupted(raw, run_id)
        assert " ".join(partial.split()[:30]) in " ".join(body.split()), "the partial text is on the page"
        assert f"run {run_id} marked interrupted" in second.log_text()
    finally:
        second.stop()


# ---------------------------------------------------------------- two live apps


def start_two(tmp_path: Path, db_url: str, env: dict[str, str]) -> list[AppServer]:
    with ThreadPoolExecutor(2) as pool:  # each takes a few seconds to start
        futures = [pool.submit(start_app, tmp_path / name, env, db_url) for name in ("a", "b")]
    apps = [f.result() for f in futures if f.exception() is None]
    if len(apps) < 2:
        for app in apps:
            app.stop()
        raise next(f.exception() for f in futures if f.exception() is not None)  # type: ignore[misc]
    return apps


@pytest.mark.browser
def test_two_live_apps_on_one_database_never_interrupt_each_others_runs(browser, db_url, raw, fake_server, tmp_path):
    lease = 2.0
    # 8 s runs: four leases each, while both apps sweep every second and beat every 1/3 s
    cfg = tmp_path / "two.yaml"
    cfg.write_text(yaml.safe_dump(crash_config(fake_server, "crash-two", slow={"tokens": 40, "delay": 0.2})))
    apps = start_two(tmp_path, db_url, {LEASE_ENV: str(lease)})
    contexts = [browser.new_context(viewport={"width": 1400, "height": 1000}) for _ in apps]
    try:
        pages = [ctx.new_page() for ctx in contexts]
        for pg, app in zip(pages, apps, strict=True):
            pg.set_default_timeout(90_000)
            open_app(pg, app)
            import_config(pg, cfg, "crash-two")
        questions = [f"Asked on app {name}?" for name in "AB"]
        for pg, q in zip(pages, questions, strict=True):
            ask(pg, q)

        def both_done() -> bool:
            bad = rows(
                raw,
                "select r.question, r.status, g.label, g.status from run r left join generation g on g.run_id = r.id "
                "where r.status = 'interrupted' or g.status = 'interrupted'",
            )
            assert not bad, f"a live run was marked interrupted: {bad}"
            return rows(raw, "select count(*) from run where status = 'done'") == [(2,)]

        wait_until(both_done, 120, "both runs to finish")
        for pg in pages:
            wait_run_done(pg)
        runs = rows(raw, "select question, created_at, heartbeat_at, wall_time from run order by question")
        assert [r[0] for r in runs] == questions
        for q, created, beat, wall in runs:
            # heartbeats kept coming through the run (it streams for 8 s), not only at its start
            assert beat - created > lease, (q, created, beat, wall)
        for app in apps:
            assert "marked interrupted" not in app.log_text()

        # A dies mid-run: B, alive and not asked anything, marks A's run in its periodic sweep.
        app_a, app_b = apps
        ask(pages[0], "Cut short on app A?")
        run_id = wait_cut(raw, "Cut short on app A?", lambda: app_a.proc.poll() is None)
        kill(app_a.proc)
        wait_until(
            lambda: rows(raw, "select status from run where id = :r", r=run_id) == [("interrupted",)],
            60,
            "app B's sweep to mark the dead app's run",
        )
        assert f"run {run_id} marked interrupted" in app_b.log_text()
        assert rows(
            raw, "select status, text <> '' from generation where run_id = :r and label = 'crash-slow'", r=run_id
        ) == [("interrupted", True)]
        assert rows(raw, "select count(*) from run where status = 'done'") == [(2,)]
    finally:
        for ctx in contexts:
            ctx.close()
        for app in apps:
            if app.proc.poll() is None:
                app.stop()
