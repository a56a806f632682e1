"""Bradley–Terry leaderboard: counting, fit correctness, ties, bootstrap CIs, ranks, helpers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from moa_core.analysis.bradley_terry import ELO_SCALE
from moa_core.analysis.leaderboard import (
    LEADERBOARD_COLUMNS,
    battle_count_matrix,
    bootstrap_ratings,
    count_outcomes,
    fit_bradley_terry,
    leaderboard,
    win_rate_matrix,
)
from moa_core.analysis.stats import pareto_frontier, wilson_interval


def votes_from(rows: list[tuple[str, str, str]] | list[tuple[str, str, str, int]]) -> pd.DataFrame:
    """(left, right, outcome[, times]) -> one row per vote."""
    out = []
    for r in rows:
        out += [r[:3]] * (r[3] if len(r) == 4 else 1)
    return pd.DataFrame(out, columns=["left", "right", "outcome"])


def synthetic(strengths: np.ndarray, n: int, seed: int) -> pd.DataFrame:
    """Votes drawn from BT with the given natural-log strengths (no ties)."""
    rng = np.random.default_rng(seed)
    k = len(strengths)
    names = np.array([f"c{i}" for i in range(k)], dtype=object)
    left = rng.integers(0, k, n)
    right = (left + rng.integers(1, k, n)) % k
    p = 1.0 / (1.0 + np.exp(-(strengths[left] - strengths[right])))
    outcome = np.where(rng.random(n) < p, "left", "right")
    return pd.DataFrame({"left": names[left], "right": names[right], "outcome": outcome})


SMALL = votes_from(
    [
        ("a", "b", "left", 5), ("a", "b", "right", 3), ("b", "a", "left", 2), ("a", "b", "tie", 2),
        ("b", "c", "left", 4), ("c", "b", "left", 3), ("b", "c", "both_bad", 3),
        ("c", "a", "left", 2), ("a", "c", "left", 4), ("c", "a", "tie", 1), ("c", "d", "left", 2),
        ("d", "c", "left", 2), ("d", "a", "left", 1), ("a", "d", "left", 3), ("b", "d", "right", 2),
        ("d", "b", "both_bad", 1), ("b", "d", "left", 1),
    ]
)  # fmt: skip


def _half_win_nll(beta_free: np.ndarray, votes: pd.DataFrame, names: list[str], l2: float, pin_first: bool) -> float:
    """Negative BT log-likelihood written directly over vote rows (independent of the package)."""
    beta = np.concatenate([[0.0], beta_free]) if pin_first else beta_free
    pos = {n: i for i, n in enumerate(names)}
    li = votes["left"].map(pos).to_numpy()
    ri = votes["right"].map(pos).to_numpy()
    s = votes["outcome"].map({"left": 1.0, "right": 0.0, "tie": 0.5, "both_bad": 0.5}).to_numpy()
    d = beta[li] - beta[ri]
    ll = s * -np.logaddexp(0, -d) + (1 - s) * -np.logaddexp(0, d)
    return -ll.sum() + 0.5 * l2 * (beta**2).sum()


# --- counting ---------------------------------------------------------------------------


def test_count_outcomes_aggregates_and_is_idempotent():
    v = votes_from([("a", "b", "left", 3), ("a", "b", "tie"), ("b", "a", "left", 2), ("a", "a", "left")])
    counts = count_outcomes(v)
    assert list(counts.columns) == ["left", "right", "outcome", "count"]
    got = {(r.left, r.right, r.outcome): r.count for r in counts.itertuples()}
    assert got == {("a", "b", "left"): 3, ("a", "b", "tie"): 1, ("b", "a", "left"): 2}  # self-battle dropped
    pd.testing.assert_frame_equal(count_outcomes(counts), counts)
    assert counts["count"].sum() == 6


def test_count_outcomes_rejects_unknown_outcome_and_handles_empty():
    with pytest.raises(ValueError, match="unknown outcomes"):
        count_outcomes(votes_from([("a", "b", "draw")]))
    with pytest.raises(ValueError, match="missing columns"):
        count_outcomes(pd.DataFrame({"left": ["a"], "right": ["b"]}))
    empty = count_outcomes(pd.DataFrame(columns=["left", "right", "outcome"]))
    assert empty.empty and list(empty.columns) == ["left", "right", "outcome", "count"]


# --- fit correctness --------------------------------------------------------------------


def test_fit_matches_scipy_mle_with_half_ties():
    optimize = pytest.importorskip("scipy.optimize")
    names = sorted(set(SMALL["left"]) | set(SMALL["right"]))
    res = optimize.minimize(
        _half_win_nll, np.zeros(len(names) - 1), args=(SMALL, names, 0.0, True), method="BFGS", options={"gtol": 1e-10}
    )
    ref = np.concatenate([[0.0], res.x]) * ELO_SCALE
    ours = fit_bradley_terry(SMALL, l2=0.0).reindex(names).to_numpy()
    # Compare up to the additive constant, which BT cannot identify.
    np.testing.assert_allclose(ours - ours.mean(), ref - ref.mean(), atol=0.05)


def test_fit_matches_scipy_with_ridge_including_anchor():
    optimize = pytest.importorskip("scipy.optimize")
    names = sorted(set(SMALL["left"]) | set(SMALL["right"]))
    l2 = 0.5
    res = optimize.minimize(
        _half_win_nll, np.zeros(len(names)), args=(SMALL, names, l2, False), method="BFGS", options={"gtol": 1e-10}
    )
    ours = fit_bradley_terry(SMALL, l2=l2).reindex(names).to_numpy()
    # The ridge optimum has mean log-strength 0 by itself, so no re-centring here.
    np.testing.assert_allclose(ours, 1000 + ELO_SCALE * res.x, atol=0.05)
    assert ours.mean() == pytest.approx(1000.0)


def test_fit_matches_hunter_mm_iteration():
    """numpy-only cross-check with a different algorithm (Hunter 2004 MM), no scipy needed."""
    names = sorted(set(SMALL["left"]) | set(SMALL["right"]))
    pos = {n: i for i, n in enumerate(names)}
    k = len(names)
    w = np.zeros((k, k))
    for r in SMALL.itertuples():
        s = {"left": 1.0, "right": 0.0}.get(r.outcome, 0.5)
        w[pos[r.left], pos[r.right]] += s
        w[pos[r.right], pos[r.left]] += 1 - s
    n = w + w.T
    p = np.ones(k)
    for _ in range(20_000):
        p = w.sum(1) / (n / (p[:, None] + p[None, :])).sum(1)
        p /= np.exp(np.log(p).mean())
    ref = np.log(p) * ELO_SCALE
    ours = fit_bradley_terry(SMALL, l2=0.0).reindex(names).to_numpy()
    np.testing.assert_allclose(ours - ours.mean(), ref - ref.mean(), atol=0.05)


def test_recovers_known_strengths():
    truth = np.array([0.8, -0.4, 0.0, 1.5, -1.2])
    v = synthetic(truth, 20_000, seed=7)
    ratings = fit_bradley_terry(v).reindex([f"c{i}" for i in range(5)]).to_numpy()
    expected = 1000 + ELO_SCALE * (truth - truth.mean())
    assert list(np.argsort(-ratings)) == list(np.argsort(-truth))
    # ~8k battles each -> SE about 5 points; 20 points is a loose but meaningful bound.
    np.testing.assert_allclose(ratings, expected, atol=20)


def test_undefeated_contender_stays_finite_with_default_prior():
    v = votes_from([("a", "b", "left", 10), ("b", "c", "left", 3), ("c", "b", "left", 2)])
    r = fit_bradley_terry(v)
    assert np.isfinite(r).all() and r.idxmax() == "a"
    assert r.mean() == pytest.approx(1000.0)
    with pytest.warns(RuntimeWarning, match="did not converge"):
        fit_bradley_terry(v, l2=0.0)


# --- ties and both_bad --------------------------------------------------------------------


def test_pair_with_only_ties_gets_equal_ratings():
    v = votes_from([("a", "b", "tie", 3), ("b", "a", "both_bad", 2)])
    board = leaderboard(v, n_boot=50).set_index("contender")
    assert board["rating"].to_dict() == pytest.approx({"a": 1000.0, "b": 1000.0})
    assert board.loc["a", ["ties", "both_bad", "wins", "losses", "battles"]].tolist() == [3, 2, 0, 0, 5]
    assert board.loc["b", "win_rate"] == pytest.approx(0.5)


def test_both_bad_counts_as_half_win_for_each_side():
    one_and_bad = votes_from([("a", "b", "left"), ("a", "b", "both_bad")])
    one_and_tie = votes_from([("a", "b", "left"), ("b", "a", "tie")])
    three_to_one = votes_from([("a", "b", "left", 3), ("a", "b", "right")])
    r_bad = fit_bradley_terry(one_and_bad, l2=0.0)
    # 1.5 : 0.5 wins has the same MLE as 3 : 1 (the likelihood is just scaled).
    pd.testing.assert_series_equal(r_bad, fit_bradley_terry(three_to_one, l2=0.0), atol=1e-6)
    pd.testing.assert_series_equal(r_bad, fit_bradley_terry(one_and_tie, l2=0.0), atol=1e-6)
    assert r_bad["a"] - r_bad["b"] == pytest.approx(400 * math.log10(3), abs=1e-6)
    board = leaderboard(one_and_bad, n_boot=0).set_index("contender")
    assert board.loc["a", ["wins", "both_bad", "ties"]].tolist() == [1, 1, 0]
    assert board.loc["a", "win_rate"] == pytest.approx(0.75)
    assert board.loc["b", "win_rate"] == pytest.approx(0.25)


# --- leaderboard, ranks, bootstrap --------------------------------------------------------


def test_leaderboard_shape_and_rank_rule():
    board = leaderboard(SMALL, n_boot=100, seed=1)
    assert list(board.columns) == LEADERBOARD_COLUMNS
    assert board["rating"].is_monotonic_decreasing
    assert (board["battles"] == board[["wins", "losses", "ties", "both_bad"]].sum(axis=1)).all()
    assert board["battles"].sum() == 2 * len(SMALL)
    for _, row in board.iterrows():
        assert row["rank"] == 1 + (board["ci_low"] > row["ci_high"]).sum()


def test_rank_shares_overlapping_cis():
    v = votes_from(
        [("a", "b", "left", 180), ("a", "b", "right", 20), ("a", "c", "left", 180), ("c", "a", "left", 20),
         ("b", "c", "left", 105), ("b", "c", "right", 95)]
    )  # fmt: skip
    board = leaderboard(v, n_boot=200, seed=0)
    assert dict(zip(board["contender"], board["rank"], strict=True)) == {"a": 1, "b": 2, "c": 2}
    # Without a bootstrap the CIs collapse to the rating: plain competition ranking.
    assert sorted(leaderboard(v, n_boot=0)["rank"]) == [1, 2, 3]


def test_bootstrap_ci_contains_estimate_and_narrows_with_more_data():
    truth = np.array([0.5, 0.0, -0.5, 1.0, -1.0])
    widths = []
    for n in (500, 20_000):
        board = leaderboard(synthetic(truth, n, seed=3), n_boot=200, seed=0)
        assert ((board["ci_low"] <= board["rating"]) & (board["rating"] <= board["ci_high"])).all()
        widths.append((board["ci_high"] - board["ci_low"]).mean())
    # Width scales like 1/sqrt(n): a 40x larger sample should be about 6x narrower.
    assert widths[1] < widths[0] / 3


def test_bootstrap_is_seeded():
    a = bootstrap_ratings(SMALL, n_boot=30, seed=5)
    assert a.shape == (30, 4)
    pd.testing.assert_frame_equal(a, bootstrap_ratings(SMALL, n_boot=30, seed=5))
    assert not a.equals(bootstrap_ratings(SMALL, n_boot=30, seed=6))
    np.testing.assert_allclose(a.mean(axis=1), 1000.0)


def test_empty_leaderboard():
    board = leaderboard(pd.DataFrame(columns=["left", "right", "outcome"]))
    assert board.empty and list(board.columns) == LEADERBOARD_COLUMNS


# --- matrices ---------------------------------------------------------------------------


def test_win_rate_and_battle_count_matrices():
    v = votes_from(
        [("a", "b", "left"), ("b", "a", "right"), ("b", "a", "left"), ("a", "b", "tie"), ("b", "c", "both_bad")]
    )
    rate = win_rate_matrix(v)
    assert list(rate.index) == ["a", "b", "c"] and list(rate.columns) == ["a", "b", "c"]
    assert rate.loc["a", "b"] == pytest.approx(2.5 / 4)
    assert rate.loc["b", "a"] == pytest.approx(1.5 / 4)
    assert rate.loc["b", "c"] == pytest.approx(0.5)
    assert np.isnan(rate.loc["a", "c"]) and np.isnan(rate.loc["a", "a"])
    counts = battle_count_matrix(v)
    assert counts.loc["a", "b"] == counts.loc["b", "a"] == 4
    assert counts.loc["a", "c"] == 0 and counts.loc["c", "c"] == 0
    ordered = win_rate_matrix(v, order=["c", "b", "zz"])
    assert list(ordered.index) == ["c", "b", "zz"]
    assert ordered.loc["c", "b"] == pytest.approx(0.5) and ordered.loc["zz"].isna().all()


# --- helpers ----------------------------------------------------------------------------


def test_pareto_frontier_hand_example():
    df = pd.DataFrame(
        {
            "model": ["A", "B", "C", "D", "E", "F", "G"],
            "cost": [1.0, 2.0, 3.0, 4.0, 4.0, 2.0, np.nan],
            "quality": [1.0, 3.0, 2.0, 5.0, 4.0, 3.0, 9.0],
        },
        index=list("ABCDEFG"),
    )
    on = pareto_frontier(df, "cost", "quality")
    # C is beaten by B (cheaper, better); E by D (same cost, better); F duplicates B; G has no cost.
    assert on.to_dict() == {"A": True, "B": True, "C": False, "D": True, "E": False, "F": True, "G": False}
    # Throughput-like x where higher is better: only D (highest x, highest y) survives.
    assert pareto_frontier(df, "cost", "quality", x_lower_is_better=False).to_dict() == {
        "A": False, "B": False, "C": False, "D": True, "E": False, "F": False, "G": False,
    }  # fmt: skip
    assert pareto_frontier(df.iloc[:0], "cost", "quality").empty


def test_wilson_interval():
    low, high = wilson_interval(8, 10)
    assert (low, high) == pytest.approx((0.4902, 0.9433), abs=1e-4)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 1.0
    assert all(math.isnan(b) for b in wilson_interval(0, 0))
    lows, highs = wilson_interval(np.array([5.5, 1]), np.array([10, 2]))
    assert lows.shape == (2,) and (lows < highs).all()
    with pytest.raises(ValueError):
        wilson_interval(3, 2)
