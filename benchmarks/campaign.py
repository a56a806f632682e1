"""Rating campaigns: next-pair selection on a large campaign, then many raters at once.

1. Next pair: a campaign of 500 questions x 6 contenders (7,500 pairs) with 20,000 votes
   stored; time `claim_next` (informative and uniform rules) for new raters. Target <= 50 ms.
2. Concurrency: 20 rater threads against one database claim and vote for 60 s; every vote
   a rater was told about must be stored (0 lost), no pair may get more votes than it
   needs and no rater two votes on a pair (0 double-claimed); p50/p99 latencies reported.

Run: .venv/bin/python benchmarks/campaign.py [--url sqlite:///...|postgresql+psycopg://...]
     [--seconds 60] [--raters 20]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import bindparam, func, insert, select, update

from moa_core.store import open_db
from moa_core.store.campaigns import ASG, PAIR, claim_next, create_campaign, skip, vote
from moa_core.store.db import write_transaction
from moa_core.store.models import Vote, table_of
from tests.campaign_support import seed_answers

VOTE = table_of(Vote)
OUTCOMES = ("left", "right", "tie", "both_bad")


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] * 1000


def store_votes(engine, cid: str, n: int, rng: random.Random) -> None:
    """n votes spread over the pairs (slot k of pair i by rater <campaign>-r<k>-<i mod 100>), in bulk."""
    with engine.connect() as conn:
        pairs = conn.execute(
            select(PAIR.c.id, PAIR.c.a_generation_id, PAIR.c.b_generation_id)
            .where(PAIR.c.campaign_id == cid)
            .order_by(PAIR.c.id)
        ).all()
    strength = {}
    now = time.time()
    votes, asgs = [], []
    for j in range(n):
        pid, a, b = pairs[j % len(pairs)]
        slot = j // len(pairs)
        rater = f"{cid}-r{slot}-{j % 100}"
        sa, sb = strength.setdefault(a, rng.random()), strength.setdefault(b, rng.random())
        outcome = "a" if rng.random() < sa / (sa + sb) else "b"
        votes.append(
            {"left_generation_id": a, "right_generation_id": b, "outcome": "left" if outcome == "a" else "right",
             "blind": True, "rater": rater, "created_at": now, "pair_key": f"{min(a, b)}:{max(a, b)}",
             "campaign_id": cid}
        )  # fmt: skip
        asgs.append(
            {"campaign_id": cid, "pair_id": pid, "rater": rater, "slot": slot, "is_repeat": False, "a_left": True,
             "status": "voted", "claimed_at": now, "expires_at": now + 600, "done_at": now, "outcome": outcome,
             "comment": ""}
        )  # fmt: skip
    with write_transaction(engine) as conn:
        for i in range(0, n, 1000):
            conn.execute(insert(VOTE), votes[i : i + 1000])
            conn.execute(insert(ASG), asgs[i : i + 1000])
        tally: dict[int, list[float]] = {}
        for row in asgs:
            t = tally.setdefault(int(row["pair_id"]), [0, 0.0])
            t[0] += 1
            t[1] += 1.0 if row["outcome"] == "a" else 0.0
        conn.execute(
            update(PAIR)
            .where(PAIR.c.id == bindparam("pid"))
            .values(filled=bindparam("n"), votes=bindparam("n"), a_score=bindparam("s")),
            [{"pid": pid, "n": int(n), "s": sc} for pid, (n, sc) in tally.items()],
        )


def next_pair(url: str, requests: int) -> None:
    engine = open_db(url)
    t0 = time.perf_counter()
    pairs = seed_answers(engine, questions=500, contenders=6)
    rng = random.Random(0)
    cids = {}
    for selection in ("informative", "uniform"):
        cids[selection] = create_campaign(
            engine, f"bench-{selection}", pairs, target_votes=3, selection=selection, repeat_rate=0.0, seed=1
        )
        store_votes(engine, cids[selection], 20_000, rng)
    print(f"seeded 3,000 answers, 2 x 7,500 pairs, 2 x 20,000 votes in {time.perf_counter() - t0:.1f} s")
    print("| rule | requests | p50 ms | p95 ms | max ms |")
    print("|---|---:|---:|---:|---:|")
    for selection, cid in cids.items():
        lat = []
        for i in range(requests):
            t = time.perf_counter()
            a = claim_next(engine, cid, f"new-{i}", rng=rng)
            lat.append(time.perf_counter() - t)
            assert a is not None
            skip(engine, a.id, f"new-{i}")  # untimed: gives the slot back
        print(f"| {selection} | {requests} | {pct(lat, 0.5):.1f} | {pct(lat, 0.95):.1f} | {max(lat) * 1000:.1f} |")


def concurrent(url: str, raters: int, seconds: float) -> None:
    engine = open_db(url)
    pairs = seed_answers(engine, questions=500, contenders=6, prefix="cq")
    cid = create_campaign(engine, "bench-concurrent", pairs, target_votes=3, repeat_rate=0.03, seed=2)
    told: list[int] = []
    claim_lat: list[float] = []
    vote_lat: list[float] = []
    errors: list[str] = []
    repeats = 0
    lock = threading.Lock()
    start = threading.Barrier(raters)
    stop_at = [0.0]

    def rater(i: int) -> None:
        nonlocal repeats
        rng = random.Random(i)
        name = f"rater-{i}"
        mine, cl, vl, reps = [], [], [], 0
        start.wait()
        if i == 0:
            stop_at[0] = time.perf_counter() + seconds
        while stop_at[0] == 0.0:
            time.sleep(0.001)
        while time.perf_counter() < stop_at[0]:
            try:
                t = time.perf_counter()
                a = claim_next(engine, cid, name, rng=rng)
                cl.append(time.perf_counter() - t)
                if a is None:
                    break
                t = time.perf_counter()
                vid = vote(engine, a.id, name, rng.choice(OUTCOMES))
                vl.append(time.perf_counter() - t)
            except Exception as exc:
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}")
                continue
            if vid is None:
                reps += 1
            else:
                mine.append(vid)
        with lock:
            told.extend(mine)
            claim_lat.extend(cl)
            vote_lat.extend(vl)
            repeats += reps

    threads = [threading.Thread(target=rater, args=(i,)) for i in range(raters)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with engine.connect() as conn:
        stored = {int(r[0]) for r in conn.execute(select(VOTE.c.id).where(VOTE.c.campaign_id == cid))}
        per_pair = Counter(
            r[0]
            for r in conn.execute(
                select(ASG.c.pair_id).where(
                    ASG.c.campaign_id == cid, ASG.c.status == "voted", ASG.c.is_repeat.is_(False)
                )
            )
        )
        needed = dict(conn.execute(select(PAIR.c.id, PAIR.c.needed).where(PAIR.c.campaign_id == cid)).all())
        twice = conn.execute(
            select(func.count()).select_from(
                select(VOTE.c.rater, VOTE.c.pair_key)
                .where(VOTE.c.campaign_id == cid)
                .group_by(VOTE.c.rater, VOTE.c.pair_key)
                .having(func.count() > 1)
                .subquery()
            )
        ).scalar_one()
    lost = len(set(told) - stored)
    extra = len(stored - set(told))
    double = sum(1 for p, n in per_pair.items() if n > needed[p]) + twice
    print(f"\n{raters} rater threads, {seconds:.0f} s, {url.split(':')[0]}:")
    print(
        "| votes told | stored | lost | extra | double-claimed | repeats | errors | claim p50/p99 ms | vote p50/p99 ms |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(
        f"| {len(told):,} | {len(stored):,} | {lost} | {extra} | {double} | {repeats} | {len(errors)} | "
        f"{pct(claim_lat, 0.5):.1f} / {pct(claim_lat, 0.99):.1f} | {pct(vote_lat, 0.5):.1f} / {pct(vote_lat, 0.99):.1f} |"
    )
    for e in Counter(errors).most_common(3):
        print("  error:", e)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", help="database URL (default: a new SQLite file per part)")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--raters", type=int, default=20)
    ap.add_argument("--requests", type=int, default=200)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        next_pair(args.url or f"sqlite:///{tmp}/next.db", args.requests)
        concurrent(args.url or f"sqlite:///{tmp}/concurrent.db", args.raters, args.seconds)


if __name__ == "__main__":
    main()
