"""Style-controlled leaderboard: 1M synthetic votes, 20 contenders, a planted length effect.

Run: .venv/bin/python benchmarks/style_control.py [--votes N] [--contenders K] [--boot B] [--repeats R]

The votes come from Bradley–Terry with a length effect,

    P(left wins) = σ(b_left - b_right + g · (len_left - len_right) / (len_left + len_right)),

with known strengths b (spread over 3 nats), g = 0.6, and lengths that differ by contender
(some models are verbose) and from answer to answer. Only decisive votes: ties drawn at
random are blind to strength and style and would pull every coefficient towards 0.
Outcomes come from their own random stream (see tests/test_style_control.py for why).

Timed, per repeat: ``style_leaderboard`` end to end on the raw votes (encode, bin into
cells, fit, 100 bootstrap refits, board) and, for reference, the plain ``leaderboard``
on the same votes. Reported: median and best wall time, this process's CPU time, and how
many cores the rest of the machine kept busy meanwhile (from /proc/stat): on a busy
machine wall time is not comparable with an idle one, CPU time much more so.
Then the fit against the truth: is the order right, how far are the strengths, and is
the planted coefficient inside its 95% bootstrap interval.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from moa_core.analysis.bradley_terry import ELO_BASE, ELO_SCALE
from moa_core.analysis.leaderboard import leaderboard
from moa_core.analysis.style_control import normalised_difference, style_leaderboard

LENGTH_COEF = 0.6


def synthetic_votes(n_votes: int, n_contenders: int, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    """Votes with a planted length effect, and the true log-strengths by contender name."""
    rng, outcome_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    strengths = np.linspace(-1.5, 1.5, n_contenders)
    rng.shuffle(strengths)
    names = np.array([f"model-{i:02d}" for i in range(n_contenders)], dtype=object)
    typical_length = 400.0 * np.exp(rng.uniform(-0.7, 0.7, n_contenders))
    left = rng.integers(0, n_contenders, n_votes)
    right = (left + rng.integers(1, n_contenders, n_votes)) % n_contenders
    left_len = np.rint(typical_length[left] * rng.lognormal(0.0, 0.5, n_votes))
    right_len = np.rint(typical_length[right] * rng.lognormal(0.0, 0.5, n_votes))
    d = normalised_difference(left_len, right_len)
    p_left = 1.0 / (1.0 + np.exp(-(strengths[left] - strengths[right] + LENGTH_COEF * d)))
    outcome = np.where(outcome_rng.random(n_votes) < p_left, "left", "right").astype(object)
    votes = pd.DataFrame(
        {
            "left": names[left],
            "right": names[right],
            "outcome": outcome,
            "left_length": left_len,
            "right_length": right_len,
        }
    )
    return votes, pd.Series(strengths, index=names)


def _machine_busy() -> float:
    """CPU seconds all processes on the machine have spent busy (from /proc/stat; 0 if unavailable)."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except OSError:
        return 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def timed(fn, *args, **kwargs):  # type: ignore[no-untyped-def]
    busy0, cpu0, t0 = _machine_busy(), time.process_time(), time.perf_counter()
    out = fn(*args, **kwargs)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    others = max(0.0, _machine_busy() - busy0 - cpu) / wall if wall > 0 else 0.0
    return out, wall, cpu, others


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--votes", type=int, default=1_000_000)
    ap.add_argument("--contenders", type=int, default=20)
    ap.add_argument("--boot", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    t0 = time.perf_counter()
    votes, truth = synthetic_votes(args.votes, args.contenders)
    print(f"(generating {args.votes:,} votes: {time.perf_counter() - t0:.2f} s; load average {os.getloadavg()})\n")

    rows = []
    fit = None
    for name, fn, kw in (
        ("style-controlled (length)", style_leaderboard, {"features": ("length",)}),
        ("plain, for reference", leaderboard, {}),
    ):
        samples = []
        for _ in range(args.repeats):
            out, wall, cpu, others = timed(fn, votes, n_boot=args.boot, seed=0, **kw)
            samples.append((wall, cpu, others))
            if fit is None and name.startswith("style"):
                fit = out
        walls = [s[0] for s in samples]
        rows.append(
            (
                name,
                statistics.median(walls),
                min(walls),
                statistics.median(s[1] for s in samples),
                statistics.median(s[2] for s in samples),
            )
        )

    print(f"{args.votes:,} votes, {args.contenders} contenders, {args.boot} bootstrap rounds, {args.repeats} repeats\n")
    print("| leaderboard | wall median (s) | wall best (s) | CPU median (s) | other cores busy |")
    print("|---|---:|---:|---:|---:|")
    for name, med, best, cpu, others in rows:
        print(f"| {name} | {med:.3f} | {best:.3f} | {cpu:.3f} | {others:.2f} of {os.cpu_count()} |")

    assert fit is not None and fit.coefficients is not None
    est = (fit.board.set_index("contender")["rating"] - ELO_BASE) / ELO_SCALE
    est = est[truth.index]
    order_ok = bool((est.sort_values().index == truth.sort_values().index).all())
    coef = fit.coefficients.iloc[0]
    inside = bool(coef["ci_low"] <= LENGTH_COEF <= coef["ci_high"])
    print(f"\nrecovered order matches truth: {order_ok}")
    print(f"largest strength error: {float((est - truth).abs().max()):.3f} nats")
    print(
        f"length coefficient: planted {LENGTH_COEF}, fitted {coef['coef']:.4f} "
        f"(95% CI {coef['ci_low']:.4f} – {coef['ci_high']:.4f}; contains the planted value: {inside})"
    )


if __name__ == "__main__":
    main()
