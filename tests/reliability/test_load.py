"""Load: many sessions at once, a thousand feedback writes, one very large run.

The engine-level loads use benchmarks/load.py (the same code the benchmark reports
from): runs and writes in threads of this process, and the same functions in other
processes started from that file, all into one SQLite database. The browser-level load
(real app sessions in Playwright) is in test_browser_reliability.py.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

from moa_core.store import dispose_engines, open_db
from tests.reliability.conftest import rows

ROOT = Path(__file__).resolve().parents[2]
LOAD_PY = ROOT / "benchmarks" / "load.py"
_spec = importlib.util.spec_from_file_location("moa_benchmark_load", LOAD_PY)
load = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(load)  # type: ignore[union-attr]

WORKER_BOUND = 240  # seconds: a liveness bound for worker processes, not a speed claim


def _worker(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(LOAD_PY), *args, "--json"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _result(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=WORKER_BOUND)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def test_twenty_concurrent_sessions_complete_and_are_stored(fault_server, tmp_path):
    """14 runs on threads of this process (as app sessions are) and 2 processes x 3 runs
    (as CLI runs beside the app), all in flight at the same moment, one SQLite file."""
    db = f"sqlite:///{tmp_path / 'load.db'}"
    open_db(db)
    go = tmp_path / "go"
    procs = [
        _worker("runs", "--db", db, "--api-base", fault_server.url, "--runs", "3", "--tag", f"proc{i}", "--go", str(go))
        for i in range(2)
    ]
    try:
        for p in procs:  # each worker says when its imports are done
            assert json.loads(p.stdout.readline()) == {"ready": True}
        go.touch()
        here = load.runs_in_threads(db, fault_server.url, 14, "threads")
        there = [r for p in procs for r in _result(p)["runs"]]
    finally:
        for p in procs:
            p.kill() if p.poll() is None else None
    runs = here + there
    assert len(runs) == 20 and all(r["status"] == "done" for r in runs), [r.get("error") for r in runs]
    assert max(r["start"] for r in runs) < min(r["end"] for r in runs), "the 20 runs were not all in flight at once"

    engine = open_db(db)
    stored = rows(engine, "select id, status, final_text, tags from run")
    assert {r[0] for r in stored} == {r["run_id"] for r in runs}
    assert all(r[1] == "done" for r in stored)
    gens = rows(engine, "select run_id, role, status, text, completion_tokens from generation")
    assert len(gens) == 20 * 5, "3 proposers + aggregator + baseline per run"
    assert all(g[2] == "done" and len(g[3].split()) == load.RUN_TOKENS and g[4] == load.RUN_TOKENS for g in gens)
    finals = {g[0]: g[3] for g in gens if g[1] == "aggregator"}
    assert all(finals[r[0]] == r[2] for r in stored), "the run's final text is its aggregator's text"
    tags = sorted(json.loads(r[3])[0] if isinstance(r[3], str) else r[3][0] for r in stored)
    assert tags.count("threads") == 14 and tags.count("proc0") == 3 and tags.count("proc1") == 3
    dispose_engines(db)


def test_thousand_rating_and_vote_writes_from_threads_and_processes(tmp_path):
    db = f"sqlite:///{tmp_path / 'writes.db'}"
    ids = load.seed_generations(db)
    procs = [
        _worker(
            "writes",
            "--db",
            db,
            "--gen-ids",
            ",".join(map(str, ids)),
            "--writes",
            "250",
            "--threads",
            "2",
            "--rater",
            f"proc{i}",
        )
        for i in range(2)
    ]
    try:
        here = load.writes_in_threads(db, ids, 500, 5, "threads")
        there = [_result(p) for p in procs]
    finally:
        for p in procs:
            p.kill() if p.poll() is None else None
    assert here["error_count"] == 0, here["errors"]
    assert all(t["error_count"] == 0 for t in there), [t["errors"] for t in there]
    assert here["written"] + sum(t["written"] for t in there) == 1000
    engine = open_db(db)
    by_rater = dict(
        rows(
            engine,
            "select rater, count(*) from (select rater from rating union all select rater from vote) group by rater",
        )
    )
    assert by_rater == {"threads": 500, "proc0": 250, "proc1": 250}
    # ratings and votes alternate in each thread: 5 x (50 + 50) here, 2 x 2 x (63 + 62) there
    assert rows(engine, "select count(*) from rating") == [(250 + 4 * 63,)]
    assert rows(engine, "select count(*) from vote") == [(250 + 4 * 62,)]
    assert rows(engine, "select count(distinct id) from rating") == [(250 + 4 * 63,)]
    dispose_engines(db)


def test_six_by_three_run_with_long_outputs_keeps_memory_bounded(fault_server, tmp_path):
    """6 proposers x 3 layers + aggregator, 600 tokens each, recorded. Peak RSS growth
    stays far below what keeping every chunk of every call would take, every litellm
    stream object is released, and every text is stored whole."""
    tokens = 600
    db = f"sqlite:///{tmp_path / 'big.db'}"
    open_db(db)
    out = load.memory_run(fault_server.url, db, tokens)
    assert out["status"] == "done"
    assert out["stream_wrappers_left"] == 0, "a finished run must not keep litellm streams (and their chunks) alive"
    assert out["rss_peak_growth_mb"] is not None, "peak RSS could not be reset and read on this machine"
    assert out["rss_peak_growth_mb"] < 256, out
    engine = open_db(db)
    gens = rows(engine, "select layer, status, text from generation")
    assert len(gens) == 19 and all(g[1] == "done" and len(g[2].split()) == tokens for g in gens)
    assert rows(engine, "select count(*) from generation where layer = 2 and role = 'proposer'") == [(6,)]
    dispose_engines(db)
