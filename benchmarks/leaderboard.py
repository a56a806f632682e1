"""Leaderboard throughput: 1M synthetic votes over 20 contenders, 100 bootstrap rounds.

Run: .venv/bin/python benchmarks/leaderboard.py [--votes N] [--contenders K] [--boot B] [--no-naive]

Two ways to the same leaderboard (Bradley–Terry fit + bootstrap CIs):

- counts (what the app does): aggregate the votes once to (left, right, outcome) cells,
  fit on the dense win matrix, and draw every bootstrap replicate as one multinomial
  over the cells; all replicates are fitted in one batched Newton loop.
- naive: keep one row per vote. Each Newton step sums gradient and Hessian over all
  rows; each bootstrap round resamples the rows with replacement and refits.

Both use the same model (ties and both_bad are half a win each, ridge l2 = DEFAULT_L2),
so their point ratings agree to rounding; the table reports the largest difference.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from moa_core.analysis.bradley_terry import DEFAULT_L2, bootstrap_log_strengths, fit_log_strengths, to_rating
from moa_core.analysis.leaderboard import _LEFT_SCORE, OUTCOMES, _cells, count_outcomes, leaderboard


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


# -- the naive way: one row per vote ------------------------------------------------------


def naive_fit(
    left: np.ndarray,
    right: np.ndarray,
    score: np.ndarray,
    k: int,
    l2: float = DEFAULT_L2,
    tol: float = 1e-9,
    max_iter: int = 100,
) -> np.ndarray:
    """Penalised BT log-strengths by Newton's method, every sum taken over the vote rows."""
    beta = np.zeros(k)
    gauge = np.ones((k, k))
    pair = left * k + right
    for _ in range(max_iter):
        p = 1.0 / (1.0 + np.exp(-(beta[left] - beta[right])))
        resid = score - p
        grad = np.bincount(left, resid, k) - np.bincount(right, resid, k) - l2 * beta
        w = p * (1.0 - p)
        off = np.bincount(pair, w, k * k).reshape(k, k)
        off = off + off.T
        neg_hess = -off + np.diag(off.sum(axis=1) + l2)
        step = np.linalg.solve(neg_hess + gauge, grad)
        beta = beta + step
        beta -= beta.mean()
        if np.abs(step).max() < tol:
            break
    return beta


def naive_leaderboard(votes: pd.DataFrame, n_boot: int, seed: int = 0) -> dict:
    """Names, point ratings and (n_boot, K) bootstrap ratings from one row per vote, with timings."""
    t0 = time.perf_counter()
    names = sorted(set(votes["left"]) | set(votes["right"]))
    left = pd.Categorical(votes["left"], categories=names).codes.astype(np.intp)
    right = pd.Categorical(votes["right"], categories=names).codes.astype(np.intp)
    scores = np.array([_LEFT_SCORE[o] for o in OUTCOMES])
    score = scores[pd.Categorical(votes["outcome"], categories=list(OUTCOMES)).codes]
    k, n = len(names), len(votes)
    t1 = time.perf_counter()
    point = naive_fit(left, right, score, k)
    t2 = time.perf_counter()
    rng = np.random.default_rng(seed)
    boot = np.empty((n_boot, k))
    for b in range(n_boot):
        rows = rng.integers(0, n, n)
        boot[b] = naive_fit(left[rows], right[rows], score[rows], k)
    t3 = time.perf_counter()
    return {
        "names": names,
        "point": to_rating(point),
        "boot": to_rating(boot),
        "t_encode": t1 - t0,
        "t_fit": t2 - t1,
        "t_boot": t3 - t2,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--votes", type=int, default=1_000_000)
    ap.add_argument("--contenders", type=int, default=20)
    ap.add_argument("--boot", type=int, default=100)
    ap.add_argument("--no-naive", action="store_true", help="skip the one-row-per-vote computation")
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

    t0 = time.perf_counter()
    leaderboard(votes, n_boot=args.boot, seed=0)
    t_end_to_end = time.perf_counter() - t0

    true_by_name = truth[[int(n.split("-")[1]) for n in cells.names]]
    order_ok = bool(np.array_equal(np.argsort(-beta), np.argsort(-true_by_name)))
    ci_width = np.percentile(boot, 97.5, axis=0) - np.percentile(boot, 2.5, axis=0)
    fast_rating = to_rating(beta)

    rows = [("counts (the app)", t_count, t_fit, t_boot, t_count + t_fit + t_boot)]
    naive_note = ""
    if not args.no_naive:
        naive = naive_leaderboard(votes, args.boot)
        assert naive["names"] == cells.names
        diff = float(np.abs(naive["point"] - fast_rating).max())
        naive_boot = naive["boot"]
        t_naive_all = naive["t_encode"] + naive["t_fit"] + naive["t_boot"]
        naive_width = np.percentile(naive_boot, 97.5, axis=0) - np.percentile(naive_boot, 2.5, axis=0)
        rows.append(("one row per vote (naive)", naive["t_encode"], naive["t_fit"], naive["t_boot"], t_naive_all))
        naive_note = (
            f"\nnaive vs counts: largest rating difference {diff:.2e} points; median 95% CI width "
            f"{np.median(naive_width):.1f} vs {np.median(ci_width) * 400 / np.log(10):.1f} points; "
            f"speed-up {t_naive_all / (t_count + t_fit + t_boot):.0f}x"
        )

    print(f"(generating votes: {t_gen:.2f} s, {len(counts)} count cells, {args.boot} bootstrap rounds)\n")
    print(f"{args.votes:,} votes, {args.contenders} contenders, {args.boot} bootstrap rounds\n")
    print("| method | count / encode (s) | point fit (s) | bootstrap (s) | total (s) |")
    print("|---|---:|---:|---:|---:|")
    for name, tc, tf, tb, tt in rows:
        print(f"| {name} | {tc:.3f} | {tf:.3f} | {tb:.3f} | {tt:.3f} |")
    print(f"\nleaderboard() end to end on the raw votes (count + fit + bootstrap + table): {t_end_to_end:.3f} s")
    print(f"recovered order matches truth: {order_ok}")
    # Absolute ratings are not compared with the truth: scoring the 10% strength-blind
    # ties as half wins compresses the scale by design, while the order is preserved.
    print(f"median 95% CI width: {np.median(ci_width) * 400 / np.log(10):.1f} rating points" + naive_note)


if __name__ == "__main__":
    main()
