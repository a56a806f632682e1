"""The Analysis page: leaderboards (overall or per category, with or without style
control) with confidence intervals, votes needed, pairwise matrices, agreement and bias of
the raters, scores, cost.

Everything is read through ``store.analysis_queries`` (votes counted in SQL) and
``evaluation.feedback`` (one row per vote, with categories and style features), and
computed by ``moa_core.analysis``; every chart is plotly and every table has a CSV download.
"""

from __future__ import annotations

import math
import time
from datetime import date, timedelta
from typing import Any

import pandas as pd
import streamlit as st

from moa_core.analysis.agreement import AgreementReport
from moa_core.analysis.charts import (
    battle_count_heatmap,
    leaderboard_figure,
    quality_vs_cost,
    quality_vs_latency,
    score_distribution,
    win_rate_heatmap,
)
from moa_core.analysis.leaderboard import battle_count_matrix, count_outcomes, win_rate_matrix
from moa_core.analysis.preference_report import PreferenceReport, category_table, preference_report
from moa_core.evaluation.feedback import load_votes
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
ALL_CATEGORIES = "All categories"
ITEMS = {"the same two answers": "answers", "the same question and contenders": "question"}
STYLE = ("without", "with")


@st.cache_data(ttl=120, show_spinner=False, max_entries=32)
def _report(votes: pd.DataFrame, counts: pd.DataFrame | None, items: str) -> PreferenceReport:
    return preference_report(votes, counts, n_boot=N_BOOT, seed=0, items=items)


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
        since = time.time() - float(TIME_RANGES[span])  # type: ignore[arg-type]  # mypy does not narrow a dict lookup checked just above
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


def _leaderboard_section(report: PreferenceReport, style: str, category: str) -> pd.DataFrame:
    """The board shown (plain or style-controlled), its figure and the style comparison."""
    styled = style == "with" and report.styled is not None
    board = report.styled.board if styled and report.styled is not None else report.plain.board
    st.subheader("Leaderboard" + ("" if category == ALL_CATEGORIES else f" · {md_escape(category)}"))
    st.caption(
        f"Bradley–Terry ratings (Elo-like scale, mean 1000) from {report.votes:,} vote(s), 95% bootstrap "
        f"confidence intervals ({N_BOOT} resamples). Rank = 1 + the number of contenders whose whole "
        "interval lies above this one's. Ties and both-bad count as half a win each."
        + (
            " **With style control**: ratings after taking out the pull of answer length and markdown "
            "(headers, lists, bold), fitted together with the strengths."
            if styled
            else ""
        )
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
    csv_download(board, "leaderboard_style_control" if styled else "leaderboard", "an_dl_board")
    scope = " · ".join(
        x for x in (category if category != ALL_CATEGORIES else "", "style controlled" if styled else "") if x
    )
    st.download_button(
        "Download as HTML",
        leaderboard_html(board, report.votes, n_boot=N_BOOT, scope=scope),
        "leaderboard.html",
        "text/html",
        key="an_html_board",
        on_click="ignore",
        icon=":material/download:",
    )
    st.plotly_chart(
        leaderboard_figure(board, title="Ratings with 95% confidence intervals"), width="stretch", key="an_forest"
    )
    _style_section(report)
    return board


def _style_section(report: PreferenceReport) -> None:
    if report.comparison is None or report.styled is None:
        return
    st.markdown("**With and without style control**")
    coef = report.styled.coefficients
    if coef is None or coef.empty:
        st.caption("The answers compared here never differ in length or markdown: there is no style to control for.")
        return
    st.caption(
        "A style effect is in log-odds per unit of the normalised difference (left − right) / (left + right) "
        "of that feature (⅓ = twice as long), and in rating points; a positive one means raters favour the "
        "answer with more of it, whoever wrote it. Rank change > 0: the contender moves up once style is "
        "taken out."
    )
    comp = report.comparison
    st.dataframe(
        pd.DataFrame(
            {
                "contender": comp["contender"],
                "rating": comp["rating"].round(0),
                "rank": comp["rank"].astype(int),
                "rating (style ctrl)": comp["rating_sc"].round(0),
                "95% CI (style ctrl)": [
                    f"{lo:.0f} – {hi:.0f}" for lo, hi in zip(comp["ci_low_sc"], comp["ci_high_sc"], strict=True)
                ],
                "rank (style ctrl)": comp["rank_sc"].astype(int),
                "rank change": comp["change"].astype(int),
            }
        ),
        hide_index=True,
        width="stretch",
        key="an_style_compare",
    )
    csv_download(comp, "style_control_comparison", "an_dl_style")
    st.dataframe(
        pd.DataFrame(
            {
                "feature": coef["feature"],
                "effect (log-odds)": coef["coef"].round(3),
                "95% CI": [f"{lo:+.2f} to {hi:+.2f}" for lo, hi in zip(coef["ci_low"], coef["ci_high"], strict=True)],
                "rating points": coef["points"].round(0),
                "votes where it differs": coef["votes_with_difference"],
            }
        ),
        hide_index=True,
        width="stretch",
        key="an_style_coef",
    )


def _needed_section(needed: pd.DataFrame) -> None:
    if needed.empty:
        return
    st.markdown("**Votes needed**")
    st.caption(
        "For neighbours whose intervals overlap: about how many more votes between the two, at their current "
        "win rate, before the 95% interval of their rating gap excludes zero (the evidence from every other "
        "vote counts too). “never”: the two are exactly level."
    )
    shown = pd.DataFrame(
        {
            "contender": needed["contender"],
            "vs": needed["opponent"],
            "rating gap": needed["rating_gap"].round(0),
            "win rate": needed["win_prob"],
            "votes so far (head to head)": needed["head_to_head"],
            "more votes needed": [
                "never" if math.isinf(v) else ("–" if math.isnan(v) else f"{int(v):,}") for v in needed["votes_needed"]
            ],
        }
    )
    st.dataframe(
        shown,
        hide_index=True,
        width="stretch",
        key="an_needed",
        column_config={"win rate": st.column_config.NumberColumn("win rate", format="percent")},
    )


def _category_section(report: PreferenceReport) -> None:
    if report.by_category["category"].nunique() < 2:
        return
    st.subheader("By category")
    st.caption(
        "Each category's ratings are fitted on that category's votes alone. A category comes from the question "
        "set the question was drawn from, or is typed with the question in the Arena."
    )
    table = category_table(report.by_category, report.plain.board)
    st.dataframe(
        table.round(0),
        hide_index=True,
        width="stretch",
        key="an_categories",
        column_config={c: st.column_config.NumberColumn(c, format="%d") for c in table.columns[1:]},
    )
    csv_download(report.by_category, "leaderboards_by_category", "an_dl_categories")


def _pct(x: float) -> str:
    return "–" if x != x else f"{100 * x:.0f}%"


def _num(x: float) -> str:
    return "–" if x != x else f"{x:.2f}"


def _agreement_section(ag: AgreementReport) -> None:
    o = ag.overall
    c = st.columns(4)
    c[0].metric(
        "Doubly rated items",
        f"{o.items:,}",
        help=f"Items rated by two or more people: {o.raters} rater(s), {o.ratings} rating(s). Judges are "
        "compared with people below (with each other when there are no people).",
    )
    c[1].metric("Raw agreement", _pct(o.agreement), help="Share of pairs of raters that gave an item the same verdict.")
    c[2].metric(
        "Krippendorff's alpha",
        _num(o.alpha),
        help="Nominal alpha over every item with 2+ ratings: 1 = perfect, 0 = chance level.",
    )
    c[3].metric(
        "Fleiss' kappa",
        _num(o.fleiss_kappa),
        help=f"On the {o.fleiss_items} item(s) rated by exactly {o.fleiss_raters} raters.",
    )
    if o.retest_items:
        st.caption(
            f"Rated again by the same rater: {o.retest_items} item(s); the second verdict matched the first "
            f"{_pct(o.retest_agreement)} of the time (kappa {_num(o.retest_kappa)})."
        )

    def pct(label: str) -> Any:
        return st.column_config.NumberColumn(label, format="percent")

    kappa_labels = {
        "rater_a": "rater A",
        "rater_b": "rater B",
        "kappa_low": "kappa 95% low",
        "kappa_high": "kappa 95% high",
    }
    if not ag.pairs.empty:
        st.markdown("**Cohen's kappa per pair of raters**")
        st.dataframe(
            ag.pairs.round(3),
            hide_index=True,
            width="stretch",
            key="an_pairs",
            column_config={"agreement": pct("agreement"), **kappa_labels},
        )
        csv_download(ag.pairs, "rater_pairs", "an_dl_pairs")
    st.markdown("**Raters**")
    st.caption(
        "Left rate: share of a rater's decisive votes that went to the left answer (95% Wilson interval); "
        "sides are random, so it should be near 50%. Self-agreement: of the votes on an item the rater had "
        "already judged, the share that repeated the first verdict."
    )
    st.dataframe(
        ag.raters[
            [
                "rater",
                "votes",
                "tie_rate",
                "both_bad_rate",
                "left_rate",
                "left_low",
                "left_high",
                "repeat_votes",
                "self_agreement",
            ]
        ],
        hide_index=True,
        width="stretch",
        key="an_rater_table",
        column_config={
            "tie_rate": pct("ties"),
            "both_bad_rate": pct("both bad"),
            "left_rate": pct("left"),
            "left_low": pct("left 95% low"),
            "left_high": pct("left 95% high"),
            "repeat_votes": "repeat votes",
            "self_agreement": pct("self-agreement"),
        },
    )
    csv_download(ag.raters, "raters", "an_dl_raters")
    if not ag.position.empty:
        st.markdown("**Position bias**")
        st.caption(
            "Share of decisive choices that went to the answer shown first (left, or A for a judge that saw "
            "both orders), with its 95% interval and the exact binomial test against 50%."
        )
        st.dataframe(
            ag.position,
            hide_index=True,
            width="stretch",
            key="an_position",
            column_config={
                "decisive": "decisive choices",
                "first_picks": "first picked",
                "first_rate": pct("first rate"),
                "ci_low": pct("95% low"),
                "ci_high": pct("95% high"),
                "p_value": st.column_config.NumberColumn("p (vs 50%)", format="%.3g"),
            },
        )
        csv_download(ag.position, "position_bias", "an_dl_position")
    if not ag.judge_human.empty:
        st.markdown("**Judges against people**")
        st.caption(
            "Each judge's verdict against every person's on the items both rated; the last row is people "
            "against each other, the level a judge should reach."
        )
        st.dataframe(
            ag.judge_human.round(3),
            hide_index=True,
            width="stretch",
            key="an_judge_human",
            column_config={"agreement": pct("agreement"), **kappa_labels},
        )
        csv_download(ag.judge_human, "judge_human_agreement", "an_dl_judge_human")


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
        votes = load_votes(engine, **filters, style=True)
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
    c = st.columns([2, 2, 4])
    categories = sorted(votes["category"].dropna().unique())
    category = c[0].selectbox("Category", [ALL_CATEGORIES, *categories], key="an_category")
    style = c[1].segmented_control("Style control", STYLE, default="without", key="an_style") or "without"
    if category != ALL_CATEGORIES:
        votes = votes[votes["category"] == category]
        counts = count_outcomes(votes)
    items = ITEMS[st.session_state.get("an_items", next(iter(ITEMS)))]
    report = _report(votes, counts, items)
    board = _leaderboard_section(report, style, category)
    _needed_section(report.needed_styled if style == "with" and report.needed_styled is not None else report.needed)
    if category == ALL_CATEGORIES:
        _category_section(report)
    _matrices_section(counts, board["contender"].tolist())
    st.subheader("Agreement and bias")
    st.radio(
        "An item (what two votes must share to be compared) is",
        list(ITEMS),
        horizontal=True,
        key="an_items",
        help="The same question and contenders also pairs votes on different answers, so more items are "
        "doubly rated, but answer-to-answer variation then counts as disagreement.",
    )
    _agreement_section(report.agreement)
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
