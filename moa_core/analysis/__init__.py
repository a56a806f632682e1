"""Pure analysis code (no Streamlit): preference leaderboards, statistics and charts.

``charts`` is not imported here so that callers needing only numbers do not pay for
importing plotly.
"""

from moa_core.analysis.leaderboard import (
    OUTCOMES,
    battle_count_matrix,
    bootstrap_ratings,
    count_outcomes,
    fit_bradley_terry,
    leaderboard,
    win_rate_matrix,
)
from moa_core.analysis.stats import pareto_frontier, wilson_interval

__all__ = [
    "OUTCOMES",
    "battle_count_matrix",
    "bootstrap_ratings",
    "count_outcomes",
    "fit_bradley_terry",
    "leaderboard",
    "pareto_frontier",
    "wilson_interval",
    "win_rate_matrix",
]
