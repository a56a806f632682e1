"""The Analysis page: leaderboard with confidence intervals, pairwise matrices, scores, cost.

Everything is read through ``store.analysis_queries`` (votes counted in SQL) and computed
by ``moa_core.analysis``; every chart is plotly and every table has a CSV download.
"""

from __future__ import annotations

import time
from datetime import date, timedelta
from typing import Any

import pandas as pd
import streamlit as st

from moa_core.analysis import battle_count_matrix, leaderboard, win_rate_matrix
from moa_core.analysis.charts import (
    battle_count_heatmap,
    leaderboard_figure,
    quality_vs_cost,
    quality_vs_latency,
    score_distribution,
    win_rate_heatmap,
)
from moa_core.store.analysis_queries import contender_costs, contender_ratings, vote_counts
from moa_core.store.db import StoreError
from moa_core.store.html_export import leaderboard_html
from moa_core.store.queries import filter_options
from moa_core.ui.layout import csv_download, store
from moa_core.ui.safe_text import md_escape

N_BOOT = 200
FEW_BATTLES = 10
TIME_RANGES: dict[str, float | None] = {
    "All time": None, "Last 24 hours": 86_400.0, "Last 7 days": 7 * 86_400.0, "Last 30 days": 30 * 86_400.0,
    "Custom dates": None,
}  # fmt: skip
RATERS = {"people and judges": "all", "people": "people", "judges": "judges"}


@st.cache_data(ttl=120, show_spinner=False, max_entries=32)
def _board(counts: pd.DataFrame) -> pd.DataFrame:
    return leaderboard(counts, n_boot=N_BOOT, seed=0)


def _filters(opts: dict[str, list[str]]) -> dict[str, Any]:
    c = st.columns([2, 2, 2, 2])
    span = c[0].selectbox("Time range", list(TIME_RANGES), key="an_time")
    since: Any = None
    until: Any = None
    if span == "Custom dates":
        picked = c[0].date_input("From – to", value=(date.today() - timedelta(days=7), date.today()), key="an_dates")
        dates = list(picked) if isinstance(picked, (tuple, list)) else [picked]
        since = dates[0] if dates else None
        until = dates[1] if len(dates) > 1 else None
    elif TIME_RANGES[span] is not None:
        since = time.time() - float(TIME_RANGES[span])  # type: ignore[arg-type]
    rater = c[1].selectbox("Raters", list(RATERS), key="an_raters")
    kinds = c[2].multiselect("Kind of run", opts["kinds"], key="an_kinds", placeholder="all kinds")
    sets = c[3].multiselect("Question set", opts["question_sets"], key="an_sets", placeholder="any (or none)")
    return {
        "since": since,
        "until": until,
        "rater_kind": RATERS[rater],
        "kind": kinds or None,
        "question_set": sets or None,
    }


def _leaderboard_section(board: pd.DataFrame, votes: int) -> None:
    st.subheader("Leaderboard")
    st.caption(
        f"Bradley–Terry ratings (Elo-like scale, mean 1000) from {votes:,} vote(s), 95% bootstrap "
        f"confidence intervals ({N_BOOT} resamples). Rank = 1 + the number of contenders whose whole "
        "interval lies above this one's. Ties and both-bad count as half a win each."
    )
    table = pd.DataFrame(
        {
            "rank": board["rank"].astype(int),
            "contender": board["contender"],
            "rating": board["rating"].round(0),
            "95% CI": [f"{lo:.0f} – {hi:.0f}" for lo, hi in zip(board["ci_low"], board["ci_high"], strict=False)],
            "battles": board["battles"].astype(int),
            "win rate": board["win_rate"],
            "wins": board["wins"].astype(int),
            "losses": board["losses"].astype(int),
            "ties": board["ties"].astype(int),
            "both bad": board["both_bad"].astype(int),
        }
    )
    st.dataframe(
        table,
        hide_index=True,
        width="stretch",
        key="an_board",
        column_config={
            "win rate": st.column_config.ProgressColumn("win rate", format="percent", min_value=0.0, max_value=1.0),
            "rating": st.column_config.NumberColumn("rating", format="%d"),
        },
    )
    few = int((board["battles"] < FEW_BATTLES).sum())
    if few:
        st.caption(
            f":material/warning: {few} contender(s) have fewer than {FEW_BATTLES} battles. Their intervals "
            "come from resampling very few votes and understate the uncertainty (a single vote gives an "
            "interval of zero width)."
        )
    csv_download(board, "leaderboard", "an_dl_board")
    st.download_button("Download as HTML", leaderboard_html(board, votes, n_boot=N_BOOT), "leaderboard.html", "text/html", key="an_html_board", on_click="ignore", icon=":material/download:")  # fmt: skip
    st.plotly_chart(
        leaderboard_figure(board, title="Ratings with 95% confidence intervals"), width="stretch", key="an_forest"
    )


def _matrices_section(counts: pd.DataFrame, order: list[str]) -> None:
    st.subheader("Head to head")
    rates = win_rate_matrix(counts, order=order)
    battles = battle_count_matrix(counts, order=order)
    c = st.columns(2)
    with c[0]:
        st.plotly_chart(win_rate_heatmap(rates), width="stretch", key="an_winrate")
        csv_download(rates, "win_rates", "an_dl_winrate", index=True)
    with c[1]:
        st.plotly_chart(battle_count_heatmap(battles), width="stretch", key="an_battles")
        csv_download(battles, "battle_counts", "an_dl_battles", index=True)


def _scores_section(ratings: pd.DataFrame) -> None:
    st.subheader("Absolute scores")
    if ratings.empty:
        st.info("No 1–5 ratings match these filters yet. Rate answers in the Playground or History.")
        return
    st.plotly_chart(
        score_distribution(ratings, contender="contender", score="score", title="1–5 ratings per contender"),
        width="stretch",
        key="an_scores",
    )
    summary = (
        ratings.groupby("contender")["score"]
        .agg(ratings="size", mean="mean", median="median")
        .reset_index()
        .sort_values("mean", ascending=False)
    )
    summary["mean"] = summary["mean"].round(2)
    st.dataframe(summary, hide_index=True, width="stretch", key="an_scores_table")
    csv_download(
        ratings[["created", "contender", "score", "comment", "rater", "kind", "question"]], "ratings", "an_dl_scores"
    )


def _cost_section(board: pd.DataFrame, costs: pd.DataFrame) -> None:
    st.subheader("Quality against cost and latency")
    st.caption(
        "Quality is the leaderboard rating; cost and latency are means over each contender's finished "
        "answers (a MoA answer counts all its proposer and aggregator calls, and is timed from the first "
        "proposer's start to the end of the aggregator). Green points are on the Pareto frontier."
    )
    df = board[["contender", "rating", "ci_low", "ci_high"]].merge(costs, on="contender", how="left")
    if df[["cost", "latency"]].isna().all().all():
        st.info("None of the ranked contenders has a finished answer in this range, so cost and latency are unknown.")
    else:
        c = st.columns(2)
        c[0].plotly_chart(quality_vs_cost(df), width="stretch", key="an_cost")
        c[1].plotly_chart(quality_vs_latency(df), width="stretch", key="an_latency")
        if (df["cost"].fillna(0) == 0).all():
            st.caption("Every cost is zero here (local models are free), so the cost plot has one column.")
    st.dataframe(
        df.round({"rating": 0, "ci_low": 0, "ci_high": 0, "latency": 2}),
        hide_index=True,
        width="stretch",
        key="an_cost_table",
        column_config={
            "cost": st.column_config.NumberColumn("mean cost (USD)", format="%.6f"),
            "latency": st.column_config.NumberColumn("mean latency (s)", format="%.2f"),
        },
    )
    csv_download(df, "quality_cost_latency", "an_dl_cost")


def analysis_page() -> None:
    engine = store()
    st.title("Analysis")
    try:
        filters = _filters(filter_options(engine))
        counts = vote_counts(engine, **filters)
        ratings = contender_ratings(engine, **filters)
    except StoreError as err:
        st.error(f"The votes cannot be read: {md_escape(str(err))}")
        return
    if counts.empty:
        st.info(
            "No votes yet"
            + (" for these filters" if any(v for v in filters.values() if v not in (None, "all")) else "")
            + ". Run blind battles in the Arena (or judge an evaluation) and the "
            "leaderboard appears here."
        )
        _scores_section(ratings)
        return
    board = _board(counts)
    _leaderboard_section(board, int(counts["count"].sum()))
    _matrices_section(counts, board["contender"].tolist())
    _scores_section(ratings)
    try:
        costs = contender_costs(
            engine,
            since=filters["since"],
            until=filters["until"],
            kind=filters["kind"],
            question_set=filters["question_set"],
        )
    except StoreError as err:
        st.error(f"Cost and latency cannot be read: {md_escape(str(err))}")
        return
    _cost_section(board, costs)
