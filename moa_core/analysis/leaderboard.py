"""Preference-vote leaderboards: counts, Bradley–Terry ratings, bootstrap CIs, matrices.

A vote row is ``left``, ``right`` (contender names) and ``outcome`` in OUTCOMES. Every
function here also accepts an already aggregated frame with a ``count`` column (as
returned by ``count_outcomes`` or a SQL GROUP BY), so callers never need to materialise
one row per vote.

Ties and both_bad votes are scored as half a win for each side, in the fit, the
win rates and the matrices alike. Ratings are on an Elo-like scale (see bradley_terry):
400 points per factor of 10 in odds, mean rating 1000.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from moa_core.analysis.bradley_terry import (
    DEFAULT_L2,
    ELO_SCALE,
    bootstrap_log_strengths,
    fit_log_strengths,
    to_rating,
    win_matrix,
)
from moa_core.analysis.stats import pareto_frontier, wilson_interval
from moa_core.vocab import VoteOutcome, values

OUTCOMES: tuple[str, ...] = values(VoteOutcome)
_LEFT_SCORE: dict[str, float] = {
    VoteOutcome.LEFT: 1.0,
    VoteOutcome.RIGHT: 0.0,
    VoteOutcome.TIE: 0.5,
    VoteOutcome.BOTH_BAD: 0.5,
}
COUNT_COLUMNS = ["left", "right", "outcome", "count"]
LEADERBOARD_COLUMNS = [
    "contender", "rating", "ci_low", "ci_high", "battles", "wins", "losses",
    "ties", "both_bad", "win_rate", "rank",
]  # fmt: skip


def count_outcomes(votes: pd.DataFrame) -> pd.DataFrame:
    """Aggregate votes to one row per (left, right, outcome) with an integer ``count``.

    Self-battles (left == right) and rows with a missing name are dropped: they say
    nothing about relative strength. Unknown outcomes raise ValueError rather than being
    silently ignored, since that would skew every rating.
    """
    missing = {"left", "right", "outcome"} - set(votes.columns)
    if missing:
        raise ValueError(f"votes is missing columns: {sorted(missing)}")
    bad = set(votes["outcome"].unique()) - set(OUTCOMES)
    if bad:
        raise ValueError(f"unknown outcomes {sorted(map(repr, bad))}; expected one of {OUTCOMES}")
    keep = votes["left"].notna() & votes["right"].notna() & (votes["left"] != votes["right"])
    v = votes.loc[keep]
    if v.empty:
        return pd.DataFrame({c: pd.Series(dtype="int64" if c == "count" else object) for c in COUNT_COLUMNS})
    weight = v["count"].to_numpy(dtype=np.int64) if "count" in v.columns else np.ones(len(v), np.int64)
    # factorize + bincount is several times faster than a 3-key string groupby at 1M rows.
    l_codes, l_names = pd.factorize(v["left"], sort=True)
    r_codes, r_names = pd.factorize(v["right"], sort=True)
    o_codes = pd.Categorical(v["outcome"], categories=list(OUTCOMES)).codes.astype(np.int64)
    n_l, n_r, n_o = len(l_names), len(r_names), len(OUTCOMES)
    key = (l_codes.astype(np.int64) * n_r + r_codes) * n_o + o_codes
    totals = np.bincount(key, weights=weight, minlength=n_l * n_r * n_o)
    cells = np.flatnonzero(totals)
    li, rem = np.divmod(cells, n_r * n_o)
    ri, oi = np.divmod(rem, n_o)
    return pd.DataFrame(
        {
            "left": np.asarray(l_names, dtype=object)[li],
            "right": np.asarray(r_names, dtype=object)[ri],
            "outcome": np.asarray(OUTCOMES, dtype=object)[oi],
            "count": np.rint(totals[cells]).astype(np.int64),
        }
    )


@dataclass(frozen=True)
class _Cells:
    """Count cells as index arrays over a sorted contender list."""

    names: list[str]
    left: NDArray[np.intp]
    right: NDArray[np.intp]
    outcome: NDArray[np.intp]  # index into OUTCOMES
    count: NDArray[np.int64]

    @property
    def left_score(self) -> NDArray[np.float64]:
        return np.array([_LEFT_SCORE[o] for o in OUTCOMES])[self.outcome]

    def wins(self) -> NDArray[np.float64]:
        return win_matrix(self.left, self.right, self.left_score, self.count, len(self.names))


def _cells(votes_or_counts: pd.DataFrame) -> _Cells:
    counts = count_outcomes(votes_or_counts)
    names = sorted(set(counts["left"]) | set(counts["right"]))
    pos = {n: i for i, n in enumerate(names)}
    return _Cells(
        names=names,
        left=counts["left"].map(pos).to_numpy(dtype=np.intp),
        right=counts["right"].map(pos).to_numpy(dtype=np.intp),
        # np.asarray: pandas-stubs type Series[int].to_numpy as any-int whatever the dtype asked for.
        outcome=np.asarray(counts["outcome"].map({o: i for i, o in enumerate(OUTCOMES)}), dtype=np.intp),
        count=counts["count"].to_numpy(dtype=np.int64),
    )


def fit_bradley_terry(votes: pd.DataFrame, l2: float = DEFAULT_L2) -> pd.Series:
    """Point-estimate ratings (mean 1000) indexed by contender; ``l2`` is the ridge on log-strengths."""
    cells = _cells(votes)
    beta = fit_log_strengths(cells.wins(), l2=l2)
    return pd.Series(to_rating(beta), index=pd.Index(cells.names, name="contender"), name="rating")


def bootstrap_ratings(
    votes: pd.DataFrame, n_boot: int = 200, seed: int | None = 0, l2: float = DEFAULT_L2
) -> pd.DataFrame:
    """(n_boot, contenders) ratings refitted on multinomial resamples of the vote counts."""
    cells = _cells(votes)
    beta = bootstrap_log_strengths(
        cells.left, cells.right, cells.left_score, cells.count, len(cells.names), n_boot, seed, l2
    )
    return pd.DataFrame(to_rating(beta), columns=pd.Index(cells.names, name="contender"))


def _record(cells: _Cells) -> pd.DataFrame:
    """Per-contender battles, wins, losses, ties, both_bad and half-tie win rate."""
    k = len(cells.names)
    # tally[i, o] = votes of outcome o in which contender i sat on the left (or right).
    as_left = np.bincount(cells.left * 4 + cells.outcome, weights=cells.count, minlength=k * 4).reshape(k, 4)
    as_right = np.bincount(cells.right * 4 + cells.outcome, weights=cells.count, minlength=k * 4).reshape(k, 4)
    left, right, tie, both_bad = range(4)
    rec = pd.DataFrame(
        {
            "wins": as_left[:, left] + as_right[:, right],
            "losses": as_left[:, right] + as_right[:, left],
            "ties": as_left[:, tie] + as_right[:, tie],
            "both_bad": as_left[:, both_bad] + as_right[:, both_bad],
        },
        index=pd.Index(cells.names, name="contender"),
    ).astype(np.int64)
    rec.insert(0, "battles", rec.sum(axis=1))
    rec["win_rate"] = (rec["wins"] + 0.5 * (rec["ties"] + rec["both_bad"])) / rec["battles"]
    return rec


def _rank(ci_low: NDArray[np.float64], ci_high: NDArray[np.float64]) -> NDArray[np.int64]:
    # 1 + number of contenders that are better beyond reasonable doubt: their whole CI
    # lies above ours. Overlapping CIs share a rank, as on LMSYS-style arenas.
    return 1 + (ci_low[None, :] > ci_high[:, None]).sum(axis=1)


@dataclass(frozen=True)
class LeaderboardFit:
    """A leaderboard with what produced it: the bootstrap ratings and head-to-head counts.

    ``boot`` is (n_boot, contenders) ratings, columns in ``board`` order; ``battles`` is
    the symmetric count of votes between each pair, same order. ``coefficients`` is set
    by a style-controlled fit (one row per covariate), None otherwise.
    """

    board: pd.DataFrame
    boot: pd.DataFrame
    battles: pd.DataFrame
    coefficients: pd.DataFrame | None = None


def _finish(
    cells: _Cells, beta: NDArray[np.float64], boot_beta: NDArray[np.float64]
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Board (sorted, columns LEADERBOARD_COLUMNS), bootstrap ratings and battles, in board order."""
    rating = to_rating(beta)
    boot = to_rating(boot_beta)
    if len(boot):
        ci_low, ci_high = np.percentile(boot, [2.5, 97.5], axis=0)
    else:
        ci_low, ci_high = rating.copy(), rating.copy()
    board = _record(cells)
    board.insert(0, "rating", rating)
    board.insert(1, "ci_low", ci_low)
    board.insert(2, "ci_high", ci_high)
    board["rank"] = _rank(ci_low, ci_high)
    board = board.reset_index().sort_values(["rating", "contender"], ascending=[False, True], kind="stable")
    board = board[LEADERBOARD_COLUMNS].reset_index(drop=True)
    order = board["contender"].tolist()
    boot_df = pd.DataFrame(boot, columns=pd.Index(cells.names, name="contender"))[order]
    wins = cells.wins()
    battles = pd.DataFrame(
        np.rint(wins + wins.T).astype(np.int64),
        index=pd.Index(cells.names, name="contender"),
        columns=pd.Index(cells.names, name="opponent"),
    ).loc[order, order]
    return board, boot_df, battles


def _empty_board() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object if c == "contender" else float) for c in LEADERBOARD_COLUMNS})


def leaderboard_fit(
    votes: pd.DataFrame, n_boot: int = 200, seed: int | None = 0, l2: float = DEFAULT_L2
) -> LeaderboardFit:
    """:func:`leaderboard` together with its bootstrap ratings and battle counts."""
    cells = _cells(votes)
    if not cells.names:
        return LeaderboardFit(_empty_board(), pd.DataFrame(), pd.DataFrame())
    k = len(cells.names)
    beta = fit_log_strengths(cells.wins(), l2=l2)
    boot = bootstrap_log_strengths(cells.left, cells.right, cells.left_score, cells.count, k, n_boot, seed, l2)
    return LeaderboardFit(*_finish(cells, beta, boot))


def leaderboard(votes: pd.DataFrame, n_boot: int = 200, seed: int | None = 0, l2: float = DEFAULT_L2) -> pd.DataFrame:
    """One row per contender (columns LEADERBOARD_COLUMNS), sorted by rating descending.

    ci_low / ci_high are the 2.5% / 97.5% bootstrap percentiles of the rating. With
    ``n_boot=0`` they collapse to the rating itself, so rank becomes plain competition
    ranking by rating.
    """
    return leaderboard_fit(votes, n_boot=n_boot, seed=seed, l2=l2).board


def leaderboards_by(
    votes: pd.DataFrame, column: str, n_boot: int = 200, seed: int | None = 0, l2: float = DEFAULT_L2
) -> pd.DataFrame:
    """Leaderboards of each value of ``column`` (e.g. ``category``), stacked: that column first.

    Each group is fitted on its own votes only, so a contender's rating in one category
    does not borrow strength from another. Rows with a missing ``column`` are left out.
    """
    if column not in votes.columns:
        raise ValueError(f"votes has no column {column!r}")
    parts = [
        leaderboard(group, n_boot=n_boot, seed=seed, l2=l2).assign(**{column: value})
        for value, group in votes.groupby(column, sort=True, dropna=True)
    ]
    if not parts:
        return _empty_board().assign(**{column: pd.Series(dtype=object)})[[column, *LEADERBOARD_COLUMNS]]
    return pd.concat(parts, ignore_index=True)[[column, *LEADERBOARD_COLUMNS]]


VOTES_NEEDED_COLUMNS = [
    "contender", "opponent", "rating_gap", "win_prob", "head_to_head", "gap_sd", "votes_needed",
]  # fmt: skip


def votes_needed(fit: LeaderboardFit, pairs: str = "adjacent", z: float = 1.96) -> pd.DataFrame:
    """How many more head-to-head votes would separate contenders whose CIs overlap.

    For a pair (a above b) the current evidence on their log-strength gap ``d`` (all
    votes, direct and through third contenders) is summarised by its bootstrap sd ``s``.
    At the current win rate p = 1 / (1 + exp(-d)), each further a-vs-b vote adds p(1 - p)
    to the precision of ``d``, so after ``m`` more votes its sd is (1/s² + m p(1 - p))^-½.
    The pair is separated when the 95% interval of the gap excludes zero, |d| ≥ z · sd:

        m = (z² / d² - 1 / s²) / (p (1 - p)),  rounded up, at least 0.

    That test is on the *difference*, so it can pass while the two individual intervals
    (and so their ranks) still overlap. ``pairs`` is "adjacent" (each contender and the
    next one down) or "all"; only pairs with overlapping intervals are listed. A gap of
    exactly zero needs infinitely many; no bootstrap (sd 0) gives NaN.
    """
    if pairs not in ("adjacent", "all"):
        raise ValueError("pairs must be 'adjacent' or 'all'")
    board = fit.board
    rows = []
    n = len(board)
    candidates = [(i, i + 1) for i in range(n - 1)] if pairs == "adjacent" else [
        (i, j) for i in range(n) for j in range(i + 1, n)
    ]  # fmt: skip
    for i, j in candidates:
        a, b = board.iloc[i], board.iloc[j]
        if a["ci_low"] > b["ci_high"]:
            continue
        gap = (float(a["rating"]) - float(b["rating"])) / ELO_SCALE
        sd = float("nan")
        if len(fit.boot) > 1:
            sd = float(np.std((fit.boot[a["contender"]] - fit.boot[b["contender"]]).to_numpy(), ddof=1)) / ELO_SCALE
        p = 1.0 / (1.0 + np.exp(-gap))
        if not sd > 0:
            need = float("nan")
        elif gap == 0:
            need = float("inf")
        else:
            need = max(0.0, float(np.ceil((z * z / (gap * gap) - 1.0 / (sd * sd)) / (p * (1.0 - p)))))
        rows.append(
            {
                "contender": a["contender"],
                "opponent": b["contender"],
                "rating_gap": gap * ELO_SCALE,
                "win_prob": p,
                "head_to_head": int(fit.battles.loc[a["contender"], b["contender"]]) if len(fit.battles) else 0,
                "gap_sd": sd * ELO_SCALE,
                "votes_needed": need,
            }
        )
    return pd.DataFrame(rows, columns=VOTES_NEEDED_COLUMNS)


def _pair_matrices(votes: pd.DataFrame, order: Sequence[str] | None) -> tuple[list[str], NDArray[np.float64]]:
    cells = _cells(votes)
    wins = cells.wins()
    if order is None:
        return cells.names, wins
    # Contenders without votes get empty rows/columns instead of a KeyError, so the UI can
    # pass a fixed roster.
    pos = {n: i for i, n in enumerate(cells.names)}
    names = list(order)
    src = np.array([pos.get(n, -1) for n in names], dtype=np.intp)
    known = src >= 0
    out = np.zeros((len(names), len(names)))
    out[np.ix_(known, known)] = wins[np.ix_(src[known], src[known])]
    return names, out


def win_rate_matrix(votes: pd.DataFrame, order: Sequence[str] | None = None) -> pd.DataFrame:
    """rate[row, col] = share of row-vs-col battles won by row (ties/both_bad half); NaN if none.

    ``order`` fixes the row/column order (e.g. leaderboard order); default is by name.
    """
    names, wins = _pair_matrices(votes, order)
    battles = wins + wins.T
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(battles > 0, wins / battles, np.nan)
    return pd.DataFrame(rate, index=pd.Index(names, name="contender"), columns=pd.Index(names, name="opponent"))


def battle_count_matrix(votes: pd.DataFrame, order: Sequence[str] | None = None) -> pd.DataFrame:
    """Symmetric count of votes between each pair (either side), zero on the diagonal."""
    names, wins = _pair_matrices(votes, order)
    battles = np.rint(wins + wins.T).astype(np.int64)
    return pd.DataFrame(battles, index=pd.Index(names, name="contender"), columns=pd.Index(names, name="opponent"))


__all__ = [
    "COUNT_COLUMNS",
    "DEFAULT_L2",
    "LEADERBOARD_COLUMNS",
    "OUTCOMES",
    "VOTES_NEEDED_COLUMNS",
    "LeaderboardFit",
    "battle_count_matrix",
    "bootstrap_ratings",
    "count_outcomes",
    "fit_bradley_terry",
    "leaderboard",
    "leaderboard_fit",
    "leaderboards_by",
    "pareto_frontier",
    "votes_needed",
    "wilson_interval",
    "win_rate_matrix",
]
