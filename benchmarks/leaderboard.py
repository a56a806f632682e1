"""Leaderboard throughput: 1M synthetic votes over 20 contenders.

Run: .venv/bin/python benchmarks/leaderboard.py [--votes N] [--contenders K] [--boot B]
Times counting, the point fit and the bootstrap separately, and checks that the
recovered order equals the true one.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from moa_core.analysis.bradley_terry import bootstrap_log_strengths, fit_log_strengths
from moa_core.analysis.leaderboard import _cells, count_outcomes, leaderboard


def synthetic_votes(n_votes: int, n_contenders: int, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Votes drawn from known BT strengths (natural-log scale), with ties and both_bad."""
    rng = np.random.default_rng(seed)
    # Spread of ~4 nats end to end: a realistic arena, not a trivially separable one.
    strengths = np.linspace(-2.0, 2.0, n_contenders)
    rng.shuffle(strengths)
    names = np.array([f"model-{i:02d}" for i in range(n_contenders)], dtype=object)
    left = rng.integers(0, n_contenders, n_votes)
    right = (left + rng.integers(1, n_contenders, n_votes)) % n_contenders
    p_left = 1.0 / (1.0 + np.exp(-(strengths[left] - strengths[right])))
    u = rng.random(n_votes)
    # 10% of votes are non-decisive (tie or both_bad); they carry no strength signal.
    undecided = rng.random(n_votes) < 0.10
    outcome = np.where(u < p_left, "left", "right").astype(object)
    outcome[undecided] = np.where(rng.random(undecided.sum()) < 0.5, "tie", "both_bad")
    votes = pd.DataFrame({"left": names[left], "right": names[right], "outcome": outcome})
    return votes, strengths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--votes", type=int, default=1_000_000)
    ap.add_argument("--contenders", type=int, default=20)
    ap.add_argument("--boot", type=int, default=200)
    args = ap.parse_args()

    t0 = time.perf_counter()
    votes, truth = synthetic_votes(args.votes, args.contenders)
    t_gen = time.perf_counter() - t0

    t0 = time.perf_counter()
    counts = count_outcomes(votes)
    t_count = time.perf_counter() - t0

    t0 = time.perf_counter()
    cells = _cells(counts)
    beta = fit_log_strengths(cells.wins())
    t_fit = time.perf_counter() - t0

    t0 = time.perf_counter()
    boot = bootstrap_log_strengths(
        cells.left, cells.right, cells.left_score, cells.count, len(cells.names), args.boot, seed=0
    )
    t_boot = time.perf_counter() - t0

    true_by_name = truth[[int(n.split("-")[1]) for n in cells.names]]
    order_ok = bool(np.array_equal(np.argsort(-beta), np.argsort(-true_by_name)))
    ci_width = np.percentile(boot, 97.5, axis=0) - np.percentile(boot, 2.5, axis=0)

    print(f"(generating votes: {t_gen:.2f} s, {len(counts)} count cells, {args.boot} bootstrap resamples)\n")
    print("| votes | contenders | count_outcomes (s) | fit (s) | bootstrap (s) | total (s) |")
    print("|---:|---:|---:|---:|---:|---:|")
    total = t_count + t_fit + t_boot
    print(
        f"| {args.votes:,} | {args.contenders} | {t_count:.3f} | {t_fit:.4f} | {t_boot:.3f} | {total:.3f} |"
    )
    print(f"\nrecovered order matches truth: {order_ok}")
    # Absolute ratings are not compared with the truth: scoring the 10% strength-blind
    # ties as half wins compresses the scale by design, while the order is preserved.
    print(f"median 95% CI width: {np.median(ci_width) * 400 / np.log(10):.1f} rating points")

    t0 = time.perf_counter()
    leaderboard(votes, n_boot=args.boot, seed=0)
    print(f"leaderboard() end to end on the raw votes: {time.perf_counter() - t0:.3f} s")


if __name__ == "__main__":
    main()
