"""Style control, per-category boards and 'votes needed'.

The style-controlled fit is checked against statsmodels' GLM on one row per vote (an
independent implementation of the same logistic model), for recovery of a planted
length effect, and for the case it exists for: a contender that only wins by writing more.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from moa_core.analysis.bradley_terry import ELO_SCALE, fit_cells, fit_log_strengths
from moa_core.analysis.leaderboard import LeaderboardFit, leaderboard, leaderboards_by, votes_needed
from moa_core.analysis.style_control import (
    COEFFICIENT_COLUMNS,
    normalised_difference,
    style_comparison,
    style_features,
    style_leaderboard,
)


def planted(
    n: int,
    strengths: dict[str, float],
    length_coef: float,
    seed: int,
    lengths: dict[str, float] | None = None,
    tie_rate: float = 0.0,
) -> pd.DataFrame:
    """Votes from BT with a length effect: P(left) = σ(b_l - b_r + coef · d_length).

    ``tie_rate`` turns that share of votes into ties at random; being blind to strength,
    they pull every coefficient towards 0, so recovery tests leave them out."""
    # Outcomes from their own stream: drawn from the same one right after the lengths,
    # 40 seeds gave a coefficient 2 % low on average (2.7 standard errors), from separate
    # streams 1.000.
    rng, outcome_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    names = np.array(list(strengths), dtype=object)
    b = np.array(list(strengths.values()))
    base = np.array([(lengths or {}).get(x, 400.0) for x in names])
    k = len(names)
    left = rng.integers(0, k, n)
    right = (left + rng.integers(1, k, n)) % k
    ll = base[left] * rng.lognormal(0, 0.4, n)
    rl = base[right] * rng.lognormal(0, 0.4, n)
    d = normalised_difference(ll, rl)
    p = 1 / (1 + np.exp(-(b[left] - b[right] + length_coef * d)))
    outcome = np.where(outcome_rng.random(n) < p, "left", "right").astype(object)
    outcome[outcome_rng.random(n) < tie_rate] = "tie"
    return pd.DataFrame(
        {
            "left": names[left],
            "right": names[right],
            "outcome": outcome,
            "left_length": ll.round(),
            "right_length": rl.round(),
        }
    )


def test_style_features_count_markdown():
    text = (
        "# Title\n\nSome **bold** and __also bold__ text.\n\n## Part\n- one\n* two\n1. three\n2) four\n#not a header\n"
    )
    assert style_features(text) == {"length": len(text), "headers": 2, "lists": 4, "bold": 2}
    assert style_features(None) == {"length": 0, "headers": 0, "lists": 0, "bold": 0}
    assert style_features("** not bold**") == {"length": 13, "headers": 0, "lists": 0, "bold": 0}


def test_normalised_difference():
    d = normalised_difference(np.array([300.0, 100.0, 0.0, 5.0]), np.array([100.0, 100.0, 0.0, 0.0]))
    assert d.tolist() == [0.5, 0.0, 0.0, 1.0]


def test_style_fit_equals_a_glm_on_one_row_per_vote():
    # Lengths 100 or 200 only: d is -1/3, 0 or 1/3, so binning is exact and the binned fit
    # must be the plain maximum-likelihood fit. l2 = 0 on both sides.
    rng = np.random.default_rng(3)
    n, names = 3000, ["a", "b", "c", "d"]
    b = np.array([0.6, 0.1, -0.2, -0.5])
    left = rng.integers(0, 4, n)
    right = (left + rng.integers(1, 4, n)) % 4
    ll, rl = rng.choice([100.0, 200.0], n), rng.choice([100.0, 200.0], n)
    d = normalised_difference(ll, rl)
    p = 1 / (1 + np.exp(-(b[left] - b[right] + 1.2 * d)))
    outcome = np.where(rng.random(n) < p, "left", "right").astype(object)
    outcome[rng.random(n) < 0.1] = "tie"
    votes = pd.DataFrame({"left": np.array(names)[left], "right": np.array(names)[right], "outcome": outcome}).assign(
        left_length=ll, right_length=rl
    )
    fit = style_leaderboard(votes, features=("length",), n_boot=0, l2=0.0)

    x = np.zeros((n, 4))
    x[np.arange(n), left] += 1
    x[np.arange(n), right] -= 1
    design = np.column_stack([x[:, 1:], d])  # contender "a" pinned at 0
    y = pd.Series(outcome).map({"left": 1.0, "right": 0.0, "tie": 0.5}).to_numpy()
    glm = sm.GLM(y, design, family=sm.families.Binomial()).fit(tol=1e-12)
    ratings = fit.board.set_index("contender")["rating"]
    ours = ((ratings - ratings["a"]) / ELO_SCALE)[["b", "c", "d"]].to_numpy()
    np.testing.assert_allclose(ours, glm.params[:3], atol=1e-6)
    coef = fit.coefficients.set_index("feature").loc["length"]
    assert coef["coef"] == pytest.approx(glm.params[3], abs=1e-6)
    assert coef["points"] == pytest.approx(glm.params[3] * ELO_SCALE)
    assert coef["votes_with_difference"] == int(np.count_nonzero(d))


def test_planted_length_effect_and_order_are_recovered():
    strengths = {"m0": 1.0, "m1": 0.5, "m2": 0.0, "m3": -0.5, "m4": -1.0}
    votes = planted(40_000, strengths, length_coef=1.0, seed=7)
    fit = style_leaderboard(votes, features=("length",), n_boot=100, seed=0)
    coef = fit.coefficients.iloc[0]
    assert coef["ci_low"] < 1.0 < coef["ci_high"]
    assert abs(coef["coef"] - 1.0) < 0.1
    assert fit.board["contender"].tolist() == list(strengths)
    est = (fit.board.set_index("contender")["rating"] - 1000) / ELO_SCALE
    np.testing.assert_allclose(est[list(strengths)], list(strengths.values()), atol=0.08)
    assert len(fit.boot) == 100 and list(fit.boot.columns) == fit.board["contender"].tolist()
    # the record columns are the plain board's, whatever the fit
    plain = leaderboard(votes, n_boot=0)
    merged = plain.merge(fit.board, on="contender", suffixes=("", "_sc"))
    for col in ("battles", "wins", "losses", "ties", "both_bad"):
        assert (merged[col] == merged[f"{col}_sc"]).all()


def test_a_contender_that_only_writes_more_loses_its_lead():
    # "verbose" is exactly as good as "plain" but writes three times as much, and raters
    # love length. Without style control it leads; with it, the two are level.
    strengths = {"verbose": 0.0, "plain": 0.0, "weak": -1.0}
    lengths = {"verbose": 1200.0, "plain": 400.0, "weak": 400.0}
    votes = planted(30_000, strengths, length_coef=1.5, seed=11, lengths=lengths, tie_rate=0.05)
    plain_board = leaderboard(votes, n_boot=50)
    styled = style_leaderboard(votes, features=("length",), n_boot=50)
    p = plain_board.set_index("contender")["rating"]
    s = styled.board.set_index("contender")["rating"]
    assert p["verbose"] - p["plain"] > 60
    assert abs(s["verbose"] - s["plain"]) < 20
    both = style_comparison(plain_board, styled.board)
    assert both.columns.tolist()[:5] == ["contender", "rating", "ci_low", "ci_high", "rank"]
    row = both.set_index("contender").loc["verbose"]
    assert row["rating_sc"] == pytest.approx(s["verbose"]) and row["rating"] == pytest.approx(p["verbose"])


def test_features_that_never_differ_are_left_out_and_empty_votes():
    votes = planted(2000, {"a": 0.3, "b": 0.0}, 0.5, seed=1).assign(left_bold=0, right_bold=0)
    fit = style_leaderboard(votes, features=("length", "bold"), n_boot=0)
    assert fit.coefficients["feature"].tolist() == ["length"]
    empty = style_leaderboard(votes.iloc[:0], features=("length",))
    assert empty.board.empty and list(empty.coefficients.columns) == COEFFICIENT_COLUMNS
    with pytest.raises(ValueError, match="missing columns"):
        style_leaderboard(votes[["left", "right", "outcome"]], features=("length",))
    with pytest.raises(ValueError, match="unknown outcomes"):
        style_leaderboard(votes.assign(outcome="win"), features=("length",))


def test_fit_cells_without_covariates_is_the_plain_fit():
    rng = np.random.default_rng(0)
    wins = rng.integers(0, 30, (5, 5)).astype(float)
    np.fill_diagonal(wins, 0)
    i, j = np.triu_indices(5, 1)
    beta, gamma = fit_cells(i, j, wins[i, j] + wins[j, i], wins[i, j], 5)
    np.testing.assert_allclose(beta, fit_log_strengths(wins), atol=1e-10)
    assert gamma.shape == (0,)


def test_leaderboards_by_category_fit_each_category_alone():
    votes = pd.concat(
        [
            planted(3000, {"a": 1.0, "b": 0.0, "c": -1.0}, 0.0, seed=2).assign(category="math"),
            planted(3000, {"a": -1.0, "b": 0.0, "c": 1.0}, 0.0, seed=3).assign(category="writing"),
        ],
        ignore_index=True,
    )
    boards = leaderboards_by(votes, "category", n_boot=20)
    assert boards.columns[0] == "category"
    math_board = boards[boards["category"] == "math"].drop(columns="category").reset_index(drop=True)
    pd.testing.assert_frame_equal(math_board, leaderboard(votes[votes["category"] == "math"], n_boot=20))
    assert boards[boards["category"] == "writing"]["contender"].tolist() == ["c", "b", "a"]
    with pytest.raises(ValueError, match="no column"):
        leaderboards_by(votes, "campaign")


def fake_fit(ratings: dict[str, float], diffs: list[float], battles: int) -> LeaderboardFit:
    names = list(ratings)
    board = pd.DataFrame(
        {
            "contender": names,
            "rating": list(ratings.values()),
            "ci_low": [r - 60 for r in ratings.values()],
            "ci_high": [r + 60 for r in ratings.values()],
        }
    )
    boot = pd.DataFrame({names[0]: [1000 + x for x in diffs], names[1]: [1000.0] * len(diffs)})
    h2h = pd.DataFrame([[0, battles], [battles, 0]], index=names, columns=names)
    return LeaderboardFit(board, boot, h2h)


def test_votes_needed_worked_example():
    # Gap 50 points; bootstrap differences 0, 100, 50, 50 -> sd sqrt(5000 / 3) = 40.8248 points.
    fit = fake_fit({"a": 1050.0, "b": 1000.0}, [0.0, 100.0, 50.0, 50.0], battles=30)
    row = votes_needed(fit).iloc[0]
    gap = 50 / (400 / math.log(10))  # 0.287823 nats
    sd = math.sqrt(5000 / 3) / (400 / math.log(10))  # 0.235007 nats
    p = 1 / (1 + math.exp(-gap))  # 0.571462
    # m = (1.96² / gap² - 1 / sd²) / (p (1 - p)) = (46.373 - 18.107) / 0.244838 = 115.45
    expected = math.ceil((1.96**2 / gap**2 - 1 / sd**2) / (p * (1 - p)))
    assert expected == 116
    assert row["votes_needed"] == expected
    assert (row["contender"], row["opponent"], row["head_to_head"]) == ("a", "b", 30)
    assert row["win_prob"] == pytest.approx(p) and row["rating_gap"] == pytest.approx(50.0)
    assert row["gap_sd"] == pytest.approx(math.sqrt(5000 / 3))


def test_votes_needed_edge_cases():
    # Already separated on the difference although the intervals overlap: 0 more.
    assert votes_needed(fake_fit({"a": 1050.0, "b": 1000.0}, [49.0, 51.0, 50.0], 10)).iloc[0]["votes_needed"] == 0
    # No gap at all: never.
    assert math.isinf(votes_needed(fake_fit({"a": 1000.0, "b": 1000.0}, [-5.0, 5.0], 10)).iloc[0]["votes_needed"])
    # No bootstrap: unknown.
    assert math.isnan(votes_needed(fake_fit({"a": 1050.0, "b": 1000.0}, [], 10)).iloc[0]["votes_needed"])
    # Intervals that do not overlap are not listed.
    far = fake_fit({"a": 1300.0, "b": 1000.0}, [0.0, 100.0], 10)
    assert votes_needed(far).empty
    with pytest.raises(ValueError, match="adjacent"):
        votes_needed(far, pairs="some")


def test_votes_needed_shrinks_as_votes_pile_up():
    strengths = {"a": 0.12, "b": 0.0}
    few = votes_needed(style_leaderboard(planted(400, strengths, 0.0, seed=5), features=("length",), n_boot=200))
    more = votes_needed(style_leaderboard(planted(1600, strengths, 0.0, seed=5), features=("length",), n_boot=200))
    assert len(few) == 1 and few.iloc[0]["votes_needed"] > 0
    assert more.empty or more.iloc[0]["votes_needed"] < few.iloc[0]["votes_needed"]


def test_a_style_feature_confounded_with_one_contender_does_not_pin_it():
    # Only "fancy" ever writes headers, so its strength and the headers effect cannot be
    # told apart. The shared ridge splits the credit; without it the coefficient took it
    # all and "fancy" sat at exactly 1000 with a zero-width interval.
    votes = planted(300, {"fancy": 1.0, "b": 0.0, "c": -0.5}, 0.0, seed=4)
    fancy_left, fancy_right = votes["left"] == "fancy", votes["right"] == "fancy"
    votes = votes.assign(left_headers=fancy_left.astype(int) * 3, right_headers=fancy_right.astype(int) * 3)
    fit = style_leaderboard(votes, features=("length", "headers"), n_boot=50)
    fancy = fit.board.set_index("contender").loc["fancy"]
    assert fancy["rating"] > 1050 and fancy["ci_high"] - fancy["ci_low"] > 20
