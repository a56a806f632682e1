"""Everything the Analysis page and ``moa analyze`` show about votes, from one frame of them.

The input is one row per vote as ``evaluation.feedback.load_votes`` gives it (contenders,
outcome, rater, generation ids, category; with ``style``, the style features of both
answers). The page and the CLI only render this.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from moa_core.analysis.agreement import AgreementReport, agreement_report
from moa_core.analysis.bradley_terry import DEFAULT_L2
from moa_core.analysis.leaderboard import LeaderboardFit, leaderboard_fit, leaderboards_by, votes_needed
from moa_core.analysis.style_control import STYLE_FEATURES, style_comparison, style_leaderboard


@dataclass(frozen=True)
class PreferenceReport:
    votes: int
    plain: LeaderboardFit
    styled: LeaderboardFit | None  # None without style features
    comparison: pd.DataFrame | None  # style_comparison(plain, styled)
    needed: pd.DataFrame  # votes_needed on the plain board
    needed_styled: pd.DataFrame | None
    by_category: pd.DataFrame  # leaderboards_by(votes, "category"), stacked
    agreement: AgreementReport


def preference_report(
    votes: pd.DataFrame,
    counts: pd.DataFrame | None = None,
    n_boot: int = 200,
    seed: int | None = 0,
    style: bool = True,
    items: str = "answers",
    l2: float = DEFAULT_L2,
) -> PreferenceReport:
    """Plain and style-controlled leaderboards, votes needed, per-category boards and the
    agreement report. ``style`` needs ``left_<f>`` / ``right_<f>`` columns for every
    feature; ``items`` is what makes an item for agreement (see ``agreement.item_votes``).
    ``counts`` is the same votes already counted (as ``store.analysis_queries.vote_counts``
    does in SQL) for the plain board; by default they are counted here."""
    plain = leaderboard_fit(votes if counts is None else counts, n_boot=n_boot, seed=seed, l2=l2)
    styled = comparison = needed_styled = None
    if style:
        styled = style_leaderboard(votes, features=STYLE_FEATURES, n_boot=n_boot, seed=seed, l2=l2)
        comparison = style_comparison(plain.board, styled.board)
        needed_styled = votes_needed(styled)
    by_category = leaderboards_by(votes, "category", n_boot=n_boot, seed=seed, l2=l2)
    return PreferenceReport(
        votes=int(plain.board["battles"].sum() // 2) if len(plain.board) else 0,
        plain=plain,
        styled=styled,
        comparison=comparison,
        needed=votes_needed(plain),
        needed_styled=needed_styled,
        by_category=by_category,
        agreement=agreement_report(votes, by=items),
    )


def category_table(by_category: pd.DataFrame, overall: pd.DataFrame) -> pd.DataFrame:
    """Ratings by category, one row per contender: ``overall`` then one column per
    category (NaN where the contender has no vote in it), rows in overall order."""
    wide = by_category.pivot(index="contender", columns="category", values="rating")
    out = overall[["contender", "rating"]].rename(columns={"rating": "overall"}).set_index("contender")
    out = out.join(wide, how="left")
    out.columns.name = None
    return out.reset_index()


__all__ = ["PreferenceReport", "category_table", "preference_report"]
