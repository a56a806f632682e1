"""Load on the engine and the store, against the fake OpenAI server (issue 8).

Three loads, each checked for completeness (nothing lost), timings only printed:

  runs     N MoA runs at once (3 proposers -> aggregator + 1 baseline), recorded into
           one database: threads of this process and, with --procs, other processes
  writes   N rating and vote writes from threads of this process
  memory   one 6 proposers x 3 layers run with long outputs: peak traced memory and
           RSS growth

Run from the repository root:
  .venv/bin/python benchmarks/load.py                     # all three, a fake server of its own
  .venv/bin/python benchmarks/load.py runs --runs 20 --procs 2

The reliability tests (tests/reliability/test_load.py) start this file as a worker
process: `runs --api-base URL --db URL --go FILE` waits until FILE exists (so workers
in several processes start together), then prints one JSON line with what it did.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
import uuid
from contextlib import aclosing
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from moa_core.config import AgentSpec, LayerSpec, MoAConfig  # noqa: E402
from moa_core.store import add_rating, add_vote, open_db  # noqa: E402
from moa_core.store.recorder import Recorder  # noqa: E402

RUN_TOKENS = 20


def agent(api_base: str, name: str, **opts: object) -> AgentSpec:
    suffix = ",".join(f"{k}={v}" for k, v in opts.items())
    return AgentSpec(
        model=f"openai/fake-{name}" + (f"@{suffix}" if suffix else ""), label=name, api_base=api_base, max_tokens=4096
    )


def run_config(api_base: str, tokens: int = RUN_TOKENS, delay: float = 0.03) -> MoAConfig:
    a = lambda n: agent(api_base, n, tokens=tokens, delay=delay)  # noqa: E731
    return MoAConfig(
        name="load",
        layers=[LayerSpec(proposers=[a("p0"), a("p1"), a("p2")])],
        aggregator=a("agg"),
        baselines=[a("solo")],
        timeout=60,
        num_retries=1,
    )


def big_config(api_base: str, tokens: int, proposers: int = 6, layers: int = 3) -> MoAConfig:
    return MoAConfig(
        name="big",
        layers=[
            LayerSpec(proposers=[agent(api_base, f"l{k}p{i}", tokens=tokens) for i in range(proposers)])
            for k in range(layers)
        ],
        aggregator=agent(api_base, "agg", tokens=tokens),
        timeout=120,
        num_retries=0,
    )


async def recorded_run(db_url: str, config: MoAConfig, question: str, tag: str) -> dict[str, Any]:
    from moa_core.engine import run_moa
    from moa_core.events import RunDone, RunStarted

    engine = open_db(db_url)
    started = time.time()
    run_id, status, error = None, None, None
    async with aclosing(Recorder(engine, tags=[tag]).record(run_moa(question, config))) as events:
        async for ev in events:
            if isinstance(ev, RunStarted):
                run_id = ev.run_id
            elif isinstance(ev, RunDone):
                status, error = ev.status, ev.error
    return {"run_id": run_id, "status": status, "error": error, "start": started, "end": time.time()}


def runs_in_threads(db_url: str, api_base: str, n: int, tag: str, go: Path | None = None) -> list[dict[str, Any]]:
    """n recorded runs at once, one thread (own event loop) each, like n app sessions."""
    config = run_config(api_base)
    results: list[dict[str, Any]] = []
    errors: list[str] = []
    start = threading.Barrier(n)

    def one(i: int) -> None:
        try:
            start.wait(60)
            results.append(asyncio.run(recorded_run(db_url, config, f"Question {i} from {tag}?", tag)))
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")

    if go is not None:
        print(json.dumps({"ready": True}), flush=True)  # imports done: the caller may say go
        deadline = time.time() + 120
        while not go.exists() and time.time() < deadline:
            time.sleep(0.02)
    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError("; ".join(errors))
    return results


def writes_in_threads(db_url: str, gen_ids: list[int], n: int, threads: int, rater: str) -> dict[str, Any]:
    """n writes (ratings and votes alternating), split over `threads` threads.

    A rater may vote once per pair, so each vote takes a pair of its own: with fewer
    pairs than votes (see `seed_generations`) the extra votes are refused and counted as errors.
    """
    engine = open_db(db_url)
    ids: list[int] = []
    errors: list[str] = []
    lock = threading.Lock()
    pairs = list(itertools.combinations(gen_ids, 2))
    share = [n // threads + (1 if k < n % threads else 0) for k in range(threads)]
    first = [sum(share[:k]) for k in range(threads)]

    def worker(k: int, count: int) -> None:
        for i in range(count):
            try:
                if i % 2 == 0:
                    rid = add_rating(engine, gen_ids[i % len(gen_ids)], 1 + i % 5, f"{rater} t{k} #{i}", rater)
                else:
                    left, right = pairs[(first[k] + i) % len(pairs)]
                    rid = -add_vote(engine, left, right, ("left", "right", "tie", "both_bad")[i % 4], rater)
            except Exception as exc:
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}")
            else:
                with lock:
                    ids.append(rid)

    ts = [threading.Thread(target=worker, args=(k, c)) for k, c in enumerate(share)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return {
        "written": len(ids),
        "ratings": sum(1 for i in ids if i > 0),
        "votes": sum(1 for i in ids if i < 0),
        "errors": errors[:5],
        "error_count": len(errors),
    }


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        return True
    except OSError:
        return False


def live_stream_wrappers() -> int:
    """litellm stream objects still alive: each holds every chunk of its call."""
    import gc

    gc.collect()
    return sum(1 for o in gc.get_objects() if type(o).__name__ == "CustomStreamWrapper")


def memory_run(api_base: str, db_url: str, tokens: int, trace: bool = False) -> dict[str, Any]:
    """One 6x3 run with `tokens`-token outputs, recorded. Reports the peak RSS growth
    during the run (VmHWM reset first), and with `trace` the peak memory Python
    allocated (tracemalloc; about 4x slower) and what it still held afterwards."""
    config = big_config(api_base, tokens)
    wrappers_before = live_stream_wrappers()
    rss_before = _status_kb("VmRSS")
    hwm_ok = _reset_peak_rss()
    if trace:
        tracemalloc.start()
    t0 = time.time()
    result = asyncio.run(recorded_run(db_url, config, "Tell me everything about lighthouses.", "memory"))
    out: dict[str, Any] = {**result, "wall": time.time() - t0}
    if trace:
        current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        out.update(peak_mb=peak / 2**20, left_mb=current / 2**20)
    out["rss_peak_growth_mb"] = (_status_kb("VmHWM") - rss_before) / 1024 if hwm_ok else None
    out["stream_wrappers_left"] = live_stream_wrappers() - wrappers_before
    return out


def seed_generations(db_url: str, count: int = 46) -> list[int]:
    """A finished run with `count` generations to rate and vote on (no model calls).

    46 generations make 1,035 pairs: enough for the default 1,000 writes to give every
    vote a pair of its own."""
    from moa_core.events import CallRef, DraftDone, DraftStarted, RunDone, RunStarted, Totals, Usage

    rec = Recorder(open_db(db_url))
    run_id, now = uuid.uuid4().hex, time.time()
    rec.handle(RunStarted(run_id, "seed?", [], {}, "seed", "seed", "playground", now))
    for i in range(count):
        ref = CallRef(run_id, "proposer", 0, i, "openai/seed", f"s{i}")
        rec.handle(DraftStarted(ref, "", {}, now))
        rec.handle(DraftDone(ref, f"answer {i}", "stop", Usage(1, 2), 0.0, now, now + 1, 0.1))
    rec.handle(RunDone(run_id, "done", "answer 0", Totals(), now + 1))
    from sqlalchemy import text

    with open_db(db_url).connect() as c:
        return [r[0] for r in c.execute(text("select id from generation where run_id = :r order by id"), {"r": run_id})]


def _emit(obj: Any) -> None:
    print(json.dumps(obj), flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", nargs="?", default="all", choices=("all", "runs", "writes", "memory"))
    p.add_argument("--db", help="database URL (default: a temporary SQLite file)")
    p.add_argument("--api-base", help="fake server URL (default: start one)")
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--procs", type=int, default=0, help="runs: this many more processes, --runs each")
    p.add_argument("--writes", type=int, default=1000)
    p.add_argument("--threads", type=int, default=8)
    p.add_argument("--gen-ids", help="writes: comma-separated generation ids (default: seed a run)")
    p.add_argument("--rater", default="load")
    p.add_argument("--tag", default="load")
    p.add_argument("--tokens", type=int, default=1000, help="memory: tokens per output")
    p.add_argument("--go", help="runs: wait for this file before starting")
    p.add_argument("--json", action="store_true", help="print one JSON line (worker mode)")
    args = p.parse_args(argv)

    server = None
    if args.api_base is None and args.what != "writes":
        from tests.fake_openai import FakeOpenAI

        server = FakeOpenAI().__enter__()
        args.api_base = server.url
    tmp = tempfile.mkdtemp(prefix="moa-load-")
    db = args.db or f"sqlite:///{tmp}/load.db"
    open_db(db)
    try:
        if args.what in ("all", "runs"):
            go = Path(args.go) if args.go else None
            if args.json:
                _emit({"runs": runs_in_threads(db, args.api_base, args.runs, args.tag, go)})
            else:
                procs = [
                    subprocess.Popen(
                        [
                            sys.executable,
                            __file__,
                            "runs",
                            "--db",
                            db,
                            "--api-base",
                            args.api_base,
                            "--runs",
                            str(args.runs),
                            "--tag",
                            f"proc{i}",
                            "--go",
                            f"{tmp}/go",
                            "--json",
                        ],
                        stdout=subprocess.PIPE,
                        text=True,
                    )
                    for i in range(args.procs)
                ]
                t0 = time.time()
                Path(f"{tmp}/go").touch()
                here = runs_in_threads(db, args.api_base, args.runs, args.tag)
                there = [r for pr in procs for r in json.loads(pr.communicate()[0].splitlines()[-1])["runs"]]
                done = [r for r in here + there if r["status"] == "done"]
                print(
                    f"runs: {len(done)}/{len(here) + len(there)} done in {time.time() - t0:.1f}s "
                    f"({args.runs} threads here + {args.procs} process(es) x {args.runs})"
                )
        if args.what in ("all", "writes"):
            ids = [int(x) for x in args.gen_ids.split(",")] if args.gen_ids else seed_generations(db)
            t0 = time.time()
            out = writes_in_threads(db, ids, args.writes, args.threads, args.rater)
            if args.json:
                _emit(out)
            else:
                print(
                    f"writes: {out['written']}/{args.writes} in {time.time() - t0:.1f}s from {args.threads} threads, "
                    f"{out['error_count']} error(s)"
                )
        if args.what in ("all", "memory"):
            out = memory_run(args.api_base, db, args.tokens, trace=True)
            if args.json:
                _emit(out)
            else:
                print(
                    f"memory: 6x3 run of {args.tokens}-token outputs {out['status']} in {out['wall']:.1f}s "
                    f"(tracemalloc on); peak traced {out['peak_mb']:.1f} MB, still held {out['left_mb']:.1f} MB, "
                    f"peak RSS +{out['rss_peak_growth_mb']:.0f} MB, "
                    f"{out['stream_wrappers_left']} litellm stream(s) left alive"
                )
    finally:
        if server is not None:
            server.__exit__(None, None, None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
