"""Run leases (store/lease.py) on SQLite and PostgreSQL: which `running` runs a sweep marks
`interrupted`, what it keeps, and which it must leave alone.

The end-to-end proofs (a real SIGKILL of a real server, two live apps on one database)
are in tests/reliability/test_crash_recovery.py; these pin the rules one at a time.
"""

from __future__ import annotations

import gc
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, insert, select, text

from moa_core import cli
from moa_core.store import Recorder, StoreError, dispose_engines, get_run, open_db
from moa_core.store.lease import LEASE_ENV, Owner, current_owner, owner_gone, sweep
from moa_core.store.models import Generation, Run
from tests.test_store_support import run_events

RUN, GEN = Run.__table__, Generation.__table__


@pytest.fixture
def engine(db_url: str) -> Engine:
    return open_db(db_url)


def wait_until(cond, timeout: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def dead_owner() -> Owner:
    """The owner a process of this machine had, once that process has exited and been reaped."""
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        start = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    finally:
        proc.communicate(b"")
    return replace(current_owner(), pid=proc.pid, start=start)


def stuck_run(
    engine: Engine, owner: Owner | str | None, *, created: float, beat: float | None, partial: str = "half a dr"
) -> str:
    """A run left `running` by its process: one draft done, one cut while streaming."""
    run_id = uuid.uuid4().hex
    with engine.begin() as c:
        c.execute(
            insert(RUN).values(
                id=run_id,
                created_at=created,
                kind="playground",
                question="Why?",
                history=[],
                config={},
                config_hash="h",
                preset="p",
                status="running",
                owner=None if owner is None else str(owner),
                heartbeat_at=beat,
            )
        )
        common = dict(run_id=run_id, role="proposer", layer=0, model="m", params={}, system_prompt="")
        c.execute(
            insert(GEN).values(
                **common,
                call_id="proposer-0-0",
                slot=0,
                text="a finished draft",
                prompt_tokens=11,
                completion_tokens=3,
                cost=0.25,
                started_at=created + 0.1,
                ended_at=created + 1.5,
                status="done",
            )
        )
        c.execute(
            insert(GEN).values(
                **common,
                call_id="proposer-0-1",
                slot=1,
                text=partial,
                prompt_tokens=0,
                completion_tokens=0,
                cost=0.0,
                started_at=created + 0.2,
                status="streaming",
            )
        )
    return run_id


def gens(engine: Engine, run_id: str) -> dict[str, dict]:
    return {g["call_id"]: g for g in get_run(engine, run_id)["generations"]}


def test_a_run_whose_process_is_gone_is_interrupted_when_the_database_is_next_opened(db_url: str) -> None:
    """The owner was a process of this machine that has exited: the next open_db marks the
    run at once, although its last heartbeat is fresh (no waiting for the lease)."""
    open_db(db_url)
    dispose_engines(db_url)  # the next open_db is a first open again, as in a new process
    raw = create_engine(db_url)  # writes the crash's leftovers without sweeping
    now = time.time()
    owner = dead_owner()
    assert owner_gone(owner) and not owner_gone(current_owner())
    run_id = stuck_run(raw, owner, created=now - 5, beat=now - 1)
    alive = stuck_run(raw, current_owner(), created=now - 5, beat=now - 1)  # this process: alive
    assert get_run(raw, run_id)["run"]["status"] == "running"
    raw.dispose()

    engine = open_db(db_url)
    run = get_run(engine, run_id)["run"]
    assert run["status"] == "interrupted"
    assert (
        run["error"]
        == f"interrupted: the process running it ({owner.host}, pid {owner.pid}) ended before the run finished"
    )
    # wall time up to the last sign of life; totals from the drafts that finished
    assert run["wall_time"] == pytest.approx(4.0)
    assert (run["prompt_tokens"], run["completion_tokens"], run["cost"]) == (11, 3, 0.25)
    g = gens(engine, run_id)
    assert (g["proposer-0-0"]["status"], g["proposer-0-0"]["text"]) == ("done", "a finished draft")
    assert (g["proposer-0-1"]["status"], g["proposer-0-1"]["text"]) == ("interrupted", "half a dr")
    assert g["proposer-0-1"]["ended_at"] == pytest.approx(now - 1)
    assert get_run(engine, alive)["run"]["status"] == "running"


def test_lease_expiry_decides_for_owners_that_cannot_be_looked_up(engine: Engine) -> None:
    """Another host (or container), and runs written before leases existed: the heartbeat
    age alone decides; a fresh heartbeat is never interrupted."""
    now = time.time()
    other = Owner("another-host", 4242, "99", "boot", "1")
    stale = stuck_run(engine, other, created=now - 300, beat=now - 31)
    fresh = stuck_run(engine, other, created=now - 300, beat=now - 5)
    legacy_old = stuck_run(engine, None, created=now - 31, beat=None)
    legacy_new = stuck_run(engine, None, created=now - 5, beat=None)
    unparseable = stuck_run(engine, "something odd", created=now - 5, beat=now - 5)
    assert sorted(sweep(engine, lease=30)) == sorted([stale, legacy_old])
    statuses = {r: get_run(engine, r)["run"]["status"] for r in (stale, fresh, legacy_old, legacy_new, unparseable)}
    assert statuses == {
        stale: "interrupted",
        fresh: "running",
        legacy_old: "interrupted",
        legacy_new: "running",
        unparseable: "running",
    }
    assert get_run(engine, stale)["run"]["error"] == (
        "interrupted: no heartbeat from the process running it (another-host, pid 4242) for over 30 s"
    )
    assert get_run(engine, stale)["run"]["wall_time"] == pytest.approx(300 - 31)
    assert get_run(engine, legacy_old)["run"]["wall_time"] == pytest.approx(1.5)  # its last draft's end
    assert sweep(engine, lease=30) == []  # nothing left to do, and nothing is marked twice


def test_concurrent_sweepers_mark_a_run_once(engine: Engine) -> None:
    now = time.time()
    # 20 s stale: past this test's lease, within the default one the background sweep uses
    run_id = stuck_run(engine, Owner("another-host", 1, "1", "b", "1"), created=now - 100, beat=now - 20)
    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda _: sweep(engine, lease=10), range(6)))
    assert sorted(r for rs in results for r in rs) == [run_id]
    assert gens(engine, run_id)["proposer-0-1"]["status"] == "interrupted"


def test_a_live_recorder_keeps_its_run_and_a_lost_one_does_not(engine: Engine, monkeypatch) -> None:
    """Heartbeats keep a run past many leases while its recorder lives; once the recorder is
    gone (its process would be), the lease runs out and the run is interrupted with the
    partial text that had been flushed."""
    monkeypatch.setenv(LEASE_ENV, "1")
    rec = Recorder(engine, flush_interval=0.0)
    events = run_events()
    run_id = events[0].run_id
    for ev in events[:4]:  # RunStarted, DraftStarted, two deltas (flushed)
        rec.handle(ev)

    def beat() -> float:
        with engine.connect() as c:
            return c.execute(select(RUN.c.heartbeat_at).where(RUN.c.id == run_id)).scalar_one()

    first = beat()
    wait_until(lambda: beat() > first + 3, what="heartbeats past three leases")
    assert sweep(engine, lease=1) == [] and get_run(engine, run_id)["run"]["status"] == "running"

    del rec
    gc.collect()

    def interrupted() -> bool:
        sweep(engine, lease=1)  # or the background sweep, which runs every half lease now
        return get_run(engine, run_id)["run"]["status"] == "interrupted"

    wait_until(interrupted, what="the lease to run out")
    g = get_run(engine, run_id)["generations"][0]
    assert (g["status"], g["text"]) == ("interrupted", events[2].text + events[3].text)


def test_a_run_taken_for_dead_is_put_right_by_its_live_process(engine: Engine) -> None:
    """A stall longer than the lease gets a live run interrupted; the process's own later
    writes restore the truth."""
    rec = Recorder(engine)
    events = run_events()
    run_id = events[0].run_id
    for ev in events[:3]:
        rec.handle(ev)
    assert sweep(engine, lease=1e-9) == [run_id]
    assert get_run(engine, run_id)["run"]["status"] == "interrupted"
    for ev in events[3:]:
        rec.handle(ev)
    run = get_run(engine, run_id)
    assert (run["run"]["status"], run["run"]["error"]) == ("done", None)
    assert [g["status"] for g in run["generations"]] == ["done"] * 3


def test_a_bad_lease_setting_is_one_line(db_url: str, monkeypatch, capsys) -> None:
    monkeypatch.setenv(LEASE_ENV, "soon")
    with pytest.raises(StoreError, match=rf"^{LEASE_ENV} must be a number of seconds, at least 1; got 'soon'$"):
        open_db(db_url)
    assert cli.main(["history", "--database", db_url]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and LEASE_ENV in err
    monkeypatch.setenv(LEASE_ENV, "0.5")
    with pytest.raises(StoreError, match="at least 1"):
        open_db(db_url)


def test_moa_history_shows_interrupted_runs(engine: Engine, db_url: str, capsys, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "300")
    now = time.time()
    done = stuck_run(engine, current_owner(), created=now - 50, beat=now - 40)
    with engine.begin() as c:
        c.execute(text("UPDATE run SET status = 'done', question = '[red]not markup[/' WHERE id = :i"), {"i": done})
    cut = stuck_run(engine, Owner("another-host", 7, "1", "b", "1"), created=now - 10, beat=now - 1000)
    sweep(engine)
    assert cli.main(["history", "--database", db_url]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if cut in line)
    assert "interrupted" in row and "no heartbeat from the process running it (another-host, pid 7)" in row
    assert "[red]not markup[/" in out  # untrusted text printed as text
    assert "1 run(s) interrupted: their process stopped mid-run" in " ".join(out.split())
    assert cli.main(["history", "--database", db_url, "--status", "done"]) == 0
    out = capsys.readouterr().out
    assert done in out and cut not in out and "interrupted:" not in out
    for bad in (["--status", "crashed"], ["--limit", "0"]):
        assert cli.main(["history", "--database", db_url, *bad]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("moa: "), err
