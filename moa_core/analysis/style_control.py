"""Style control, as on Chatbot Arena: ratings with the pull of answer length and markdown taken out.

People (and judges) prefer longer, better formatted answers whatever their substance. The
style-controlled fit adds, for every vote, covariates that describe how the left answer's
style differs from the right one's, next to the contenders' strengths:

    P(left wins) = σ(b_left - b_right + Σ_f g_f · d_f),  d_f = (f_left - f_right) / (f_left + f_right)

with f the character count, markdown headers, list items and bold spans of each answer
(d_f = 0 when both are 0). ``g_f`` is the style effect in log-odds per unit of that
normalised difference (d = 1/3 is "twice as long"); the strengths ``b`` are what is left
once style is accounted for. Ties and both-bad are half a win each, as in the plain board.

The style coefficients get the same ridge ``l2`` as the strengths. That matters only when
a style feature is confounded with a contender (in a small sample, say, only one model
ever writes headers): the data cannot tell the two apart, and an unpenalised coefficient
would take all the credit, pinning that model at the mean; the shared prior splits it.
With thousands of votes the ridge is negligible.

To stay fast at a million votes the fit runs on cells, not votes: votes are grouped by
contender pair and by a grid of ``bins`` equal-width bins per covariate over [-1, 1], each
cell carrying the mean covariates of its votes. Within a bin the covariate varies by at
most 2 / bins, which moves the coefficients by a second-order amount (well under 1 % at
the default 16 bins for effects of realistic size). The bootstrap resamples the
(cell, outcome) counts multinomially, exactly as the plain leaderboard does.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from moa_core.analysis.bradley_terry import DEFAULT_L2, ELO_SCALE, fit_cells, resample_counts, weighted_bincount
from moa_core.analysis.leaderboard import _LEFT_SCORE, OUTCOMES, LeaderboardFit, _Cells, _empty_board, _finish

STYLE_FEATURES: tuple[str, ...] = ("length", "headers", "lists", "bold")
COEFFICIENT_COLUMNS = ["feature", "coef", "ci_low", "ci_high", "points", "votes_with_difference"]
DEFAULT_BINS = 16

_HEADER = re.compile(r"^ {0,3}#{1,6}[ \t]+\S", re.MULTILINE)
_LIST_ITEM = re.compile(r"^[ \t]*(?:[-*+]|\d{1,9}[.)])[ \t]+\S", re.MULTILINE)
_BOLD = re.compile(r"\*\*(?=\S)[^*\n]+?\*\*|__(?=\S)[^_\n]+?__")


def style_features(text: str | None) -> dict[str, int]:
    """Character count and the number of markdown headers, list items and bold spans."""
    t = text or ""
    return {
        "length": len(t),
        "headers": len(_HEADER.findall(t)),
        "lists": len(_LIST_ITEM.findall(t)),
        "bold": len(_BOLD.findall(t)),
    }


def style_frame(texts: pd.Series) -> pd.DataFrame:
    """:func:`style_features` of each text, one column per feature, same index."""
    return pd.DataFrame([style_features(t) for t in texts], index=texts.index, columns=list(STYLE_FEATURES))


def normalised_difference(a: NDArray[np.float64], b: NDArray[np.float64]) -> NDArray[np.float64]:
    """(a - b) / (a + b), 0 where both are 0; in [-1, 1] for non-negative counts."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    total = a + b
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, (a - b) / total, 0.0)


def _codes(values: pd.Series, categories: Sequence[str]) -> NDArray[np.intp]:
    """Index of each value in ``categories`` (a few fixed strings); factorize first, which is
    far cheaper than a Categorical on a million Arrow-backed strings."""
    codes, uniques = pd.factorize(values)
    bad = set(uniques) - set(categories)
    if bad:
        raise ValueError(f"unknown outcomes {sorted(map(repr, bad))}; expected one of {tuple(categories)}")
    lut = np.array([list(categories).index(u) for u in uniques], dtype=np.intp)
    return lut[codes]


def _encode(
    votes: pd.DataFrame, features: Sequence[str]
) -> tuple[list[str], NDArray[np.intp], NDArray[np.intp], NDArray[np.intp], NDArray[np.float64]]:
    """Names and per-vote left / right / outcome codes and covariates (self-battles dropped)."""
    need = {"left", "right", "outcome"} | {f"{side}_{f}" for f in features for side in ("left", "right")}
    missing = need - set(votes.columns)
    if missing:
        raise ValueError(f"votes is missing columns: {sorted(missing)}")
    keep = votes["left"].notna() & votes["right"].notna() & (votes["left"] != votes["right"])
    v = votes if bool(keep.all()) else votes.loc[keep]
    # One factorisation of both columns together gives a shared, sorted contender index.
    codes, uniques = pd.factorize(pd.concat([v["left"], v["right"]], ignore_index=True), sort=True)
    n = len(v)
    left, right = codes[:n].astype(np.intp), codes[n:].astype(np.intp)
    outcome = _codes(v["outcome"], OUTCOMES)
    z = np.empty((n, len(features)))
    for c, f in enumerate(features):
        a = pd.to_numeric(v[f"left_{f}"], errors="coerce").fillna(0.0).to_numpy(dtype=float)
        b = pd.to_numeric(v[f"right_{f}"], errors="coerce").fillna(0.0).to_numpy(dtype=float)
        z[:, c] = normalised_difference(a, b)
    return [str(x) for x in uniques], left, right, outcome, z


# Outcome code seen from the other side: left <-> right, tie and both_bad unchanged.
_SWAPPED = np.array([OUTCOMES.index(o) for o in ("right", "left", "tie", "both_bad")], dtype=np.intp)
# Above this many possible cells, cells are found by sorting instead of a dense table.
_DENSE_CELLS = 8_000_000


def style_leaderboard(
    votes: pd.DataFrame,
    features: Sequence[str] = STYLE_FEATURES,
    n_boot: int = 200,
    seed: int | None = 0,
    l2: float = DEFAULT_L2,
    bins: int = DEFAULT_BINS,
) -> LeaderboardFit:
    """Style-controlled leaderboard: one row per vote with ``left``, ``right``, ``outcome`` and,
    for every feature f, ``left_<f>`` and ``right_<f>`` (e.g. character counts).

    The board has the plain leaderboard's columns (record counts are the same; ratings,
    intervals and ranks are style-controlled). ``coefficients`` has one row per feature
    that varies in these votes: ``coef`` in log-odds per unit of normalised difference
    with its 95% bootstrap interval, ``points`` the same in rating points. Features that
    never differ between the two sides are left out: there is nothing to control for.
    """
    if bins < 1:
        raise ValueError("bins must be at least 1")
    names, left, right, outcome, z_all = _encode(votes, features)
    if not names:
        return LeaderboardFit(_empty_board(), pd.DataFrame(), pd.DataFrame(), _coefficients([], None, None, []))
    varying = [c for c in range(len(features)) if np.any(z_all[:, c] != 0)]
    z = z_all[:, varying]
    used = [features[c] for c in varying]
    k, p_cov, n_out = len(names), len(used), len(OUTCOMES)

    # Orient every vote as (lower index, higher index), so that a pair is one set of cells.
    flip = left > right
    lo, hi = np.minimum(left, right), np.maximum(left, right)
    z[flip] *= -1.0
    out = np.where(flip, _SWAPPED[outcome], outcome)
    key = (lo * k + hi).astype(np.int64)
    for c in range(p_cov):
        key = key * bins + np.minimum(((z[:, c] + 1.0) * (bins / 2.0)).astype(np.int64), bins - 1)
    space = k * k * bins**p_cov
    if space <= _DENSE_CELLS:
        present = np.flatnonzero(np.bincount(key, minlength=space))
        lookup = np.empty(space, dtype=np.intp)
        lookup[present] = np.arange(len(present))
        cell_ids, vote_cell = present, lookup[key]
    else:
        cell_ids, vote_cell = np.unique(key, return_inverse=True)
    n_cells = len(cell_ids)
    sub_full = np.bincount(vote_cell * n_out + out, minlength=n_cells * n_out)
    sub_ids = np.flatnonzero(sub_full)
    sub_counts = sub_full[sub_ids]
    sub_cell, sub_outcome = np.divmod(sub_ids, n_out)
    # Each cell stands for its votes at their mean covariates (over every outcome).
    cell_votes = np.bincount(vote_cell, minlength=n_cells).astype(float)
    cz = np.empty((n_cells, p_cov))
    for c in range(p_cov):
        cz[:, c] = weighted_bincount(vote_cell, z[:, c], n_cells) / cell_votes
    c_lo, c_hi = np.divmod(cell_ids // (bins**p_cov), k)
    score = np.array([_LEFT_SCORE[o] for o in OUTCOMES])[sub_outcome]

    def cell_totals(counts: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        b = counts.shape[0]
        idx = (np.arange(b)[:, None] * n_cells + sub_cell[None, :]).ravel()
        n = weighted_bincount(idx, counts.ravel(), b * n_cells).reshape(b, n_cells)
        y = weighted_bincount(idx, (counts * score).ravel(), b * n_cells).reshape(b, n_cells)
        return n, y

    def fit(n: NDArray[np.float64], y: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        return fit_cells(c_lo, c_hi, n, y, k, covariates=cz, l2=l2, covariate_l2=l2)

    beta, gamma = fit(*cell_totals(sub_counts[None, :].astype(float)))
    resampled = resample_counts(sub_counts, n_boot, seed)
    if resampled is None:
        boot_beta, boot_gamma = np.zeros((0, k)), np.zeros((0, p_cov))
    else:
        boot_beta, boot_gamma = fit(*cell_totals(resampled.astype(float)))

    # The record (battles, wins, ...) in the votes' own orientation, as the plain board has it.
    rec = np.bincount((left * k + right) * n_out + outcome, minlength=k * k * n_out)
    nz = np.flatnonzero(rec)
    rl, rem = np.divmod(nz, k * n_out)
    rr, ro = np.divmod(rem, n_out)
    cells = _Cells(names=names, left=rl, right=rr, outcome=ro, count=rec[nz].astype(np.int64))
    board, boot, battles = _finish(cells, beta[0], boot_beta)
    changed = [int(np.count_nonzero(z[:, c])) for c in range(p_cov)]
    return LeaderboardFit(board, boot, battles, _coefficients(used, gamma[0], boot_gamma, changed))


def _coefficients(
    used: list[str], gamma: NDArray[np.float64] | None, boot: NDArray[np.float64] | None, changed: list[int]
) -> pd.DataFrame:
    if gamma is None or not used:
        return pd.DataFrame({c: pd.Series(dtype=object if c == "feature" else float) for c in COEFFICIENT_COLUMNS})
    if boot is not None and len(boot):
        lo, hi = np.percentile(boot, [2.5, 97.5], axis=0)
    else:
        lo, hi = gamma.copy(), gamma.copy()
    return pd.DataFrame(
        {
            "feature": used,
            "coef": gamma,
            "ci_low": lo,
            "ci_high": hi,
            "points": gamma * ELO_SCALE,
            "votes_with_difference": changed,
        },
        columns=COEFFICIENT_COLUMNS,
    )


STYLE_COMPARISON_COLUMNS = [
    "contender", "rating", "ci_low", "ci_high", "rank",
    "rating_sc", "ci_low_sc", "ci_high_sc", "rank_sc", "change", "battles",
]  # fmt: skip


def style_comparison(plain: pd.DataFrame, controlled: pd.DataFrame) -> pd.DataFrame:
    """Both boards side by side (``_sc``: with style control), ordered by the controlled
    rating; ``change`` is the rank without minus the rank with (positive: moves up)."""
    keep = ["contender", "rating", "ci_low", "ci_high", "rank"]
    sc = controlled[[*keep, "battles"]].rename(columns={c: f"{c}_sc" for c in keep[1:]})
    both = plain[keep].merge(sc, on="contender", how="outer")
    both["change"] = both["rank"] - both["rank_sc"]
    both = both.sort_values(["rating_sc", "contender"], ascending=[False, True], kind="stable")
    return both[STYLE_COMPARISON_COLUMNS].reset_index(drop=True)


__all__ = [
    "COEFFICIENT_COLUMNS",
    "STYLE_COMPARISON_COLUMNS",
    "STYLE_FEATURES",
    "normalised_difference",
    "style_comparison",
    "style_features",
    "style_frame",
    "style_leaderboard",
]
