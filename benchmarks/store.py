"""Store under concurrent writers: 20 threads and 4 processes writing ratings and votes at
once (one commit each), then a bulk insert of 100k generations.

Reports p50/p99 commit latency and checks the row count equals what was written.
Run: .venv/bin/python benchmarks/store.py [--url sqlite:///...] [--per-writer 100]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import func, insert, select

from moa_core.store import add_rating, add_vote, open_db
from moa_core.store.models import Generation, Rating, Run, Vote


def seed(url: str) -> list[int]:
    engine = open_db(url)
    run_id = uuid.uuid4().hex
    now = time.time()
    with engine.begin() as c:
        c.execute(
            insert(Run.__table__).values(
                id=run_id,
                created_at=now,
                kind="playground",
                question="q",
                history=[],
                config={},
                config_hash="h",
                preset="p",
                status="done",
            )
        )
        c.execute(
            insert(Generation.__table__),
            [
                dict(
                    run_id=run_id,
                    call_id=f"proposer-0-{i}",
                    role="proposer",
                    layer=0,
                    slot=i,
                    model=f"m{i}",
                    params={},
                    text="t",
                    started_at=now,
                    status="done",
                )
                for i in range(4)
            ],
        )
        return [
            r for (r,) in c.execute(select(Generation.__table__.c.id).where(Generation.__table__.c.run_id == run_id))
        ]


def writer(url: str, gens: list[int], n: int, tag: str, rate: float = 0.0) -> list[float]:
    """n writes, back to back (rate 0: saturation) or paced at `rate` writes per second."""
    engine = open_db(url)
    lat = []
    start = time.perf_counter()
    for i in range(n):
        if rate:
            time.sleep(max(0.0, start + i / rate - time.perf_counter()))
        t0 = time.perf_counter()
        if i % 2:
            add_rating(engine, gens[i % 4], 1 + i % 5, "", f"{tag}")
        else:
            # A rater per vote: one vote per pair and rater is the rule, and the write is what is timed.
            add_vote(engine, gens[0], gens[1 + i % 3], ("left", "right", "tie", "both_bad")[i % 4], f"{tag} #{i}")
        lat.append(time.perf_counter() - t0)
    return lat


def _proc(url: str, gens: list[int], n: int, tag: str, rate: float, out: mp.Queue) -> None:
    out.put(writer(url, gens, n, tag, rate))


def count_feedback(url: str) -> int:
    with open_db(url).connect() as c:
        return (
            c.execute(select(func.count()).select_from(Rating.__table__)).scalar()
            + c.execute(select(func.count()).select_from(Vote.__table__)).scalar()
        )


def concurrent_writes(url: str, per_writer: int, rate: float = 0.0) -> dict[str, float]:
    gens = seed(url)
    before = count_feedback(url)
    latencies: list[float] = []
    lock = threading.Lock()

    def thread_main(k: int) -> None:
        lat = writer(url, gens, per_writer, f"thread{k}", rate)
        with lock:
            latencies.extend(lat)

    ctx = mp.get_context("spawn")
    q: mp.Queue = ctx.Queue()
    procs = [ctx.Process(target=_proc, args=(url, gens, per_writer, f"proc{k}", rate, q)) for k in range(4)]
    threads = [threading.Thread(target=thread_main, args=(k,)) for k in range(20)]
    t0 = time.perf_counter()
    for p in procs:
        p.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for _ in procs:
        latencies.extend(q.get())
    for p in procs:
        p.join()
    wall = time.perf_counter() - t0
    rows = count_feedback(url) - before
    latencies.sort()
    written = 24 * per_writer
    return {
        "writers": 24,
        "written": written,
        "rows": rows,
        "lost": written - rows,
        "wall_s": wall,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))],
    }


def bulk_generations(url: str, n: int = 100_000) -> dict[str, float]:
    engine = open_db(url)
    run_id = uuid.uuid4().hex
    now = time.time()
    with engine.begin() as c:
        c.execute(
            insert(Run.__table__).values(
                id=run_id,
                created_at=now,
                kind="eval",
                question="q",
                history=[],
                config={},
                config_hash="h",
                preset="p",
                status="done",
            )
        )
    rows = [
        dict(
            run_id=run_id,
            call_id=f"proposer-0-{i}",
            role="proposer",
            layer=0,
            slot=i,
            model="m",
            params={},
            text="draft text " * 20,
            started_at=now,
            status="done",
            completion_tokens=40,
        )
        for i in range(n)
    ]
    t0 = time.perf_counter()
    with engine.begin() as c:
        c.execute(insert(Generation.__table__), rows)
    return {"rows": n, "seconds": time.perf_counter() - t0}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", help="SQLAlchemy URL (default: a fresh SQLite file)")
    ap.add_argument("--per-writer", type=int, default=100)
    args = ap.parse_args()
    url = args.url or f"sqlite:///{tempfile.mkdtemp()}/bench.db"
    db = url.split(":", 1)[0]
    print(
        "| database | writers | pace | written | rows | lost | p50 commit | p99 commit | wall |\n"
        "|---|---|---|---|---|---|---|---|---|"
    )
    # Back to back, every writer saturating: latency is mostly waiting for the one SQLite
    # writer slot. Paced at 10 writes/s per writer (240/s in all), closer to people rating.
    for rate in (0.0, 10.0):
        w = concurrent_writes(url, args.per_writer, rate)
        pace = "back to back" if not rate else f"{rate:g}/s each"
        print(
            f"| {db} | 20 threads + 4 processes | {pace} | {w['written']} | {w['rows']} | {w['lost']} | "
            f"{w['p50_ms']:.1f} ms | {w['p99_ms']:.1f} ms | {w['wall_s']:.1f} s |"
        )
    b = bulk_generations(url)
    print(f"\nbulk insert of {b['rows']:,} generations: {b['seconds']:.2f} s")


if __name__ == "__main__":
    main()
