"""Evaluation reports as DataFrames: pairwise win rates with Wilson intervals, cost and
latency per question, and the collaborativeness of each model. Pure pandas; no I/O.

Scoring convention used throughout: a win counts 1, a tie 1/2, a loss 0, and the win
rate is the mean score over decided comparisons (wins + ties + losses). Unparseable
outcomes are excluded from the rate and reported in their own column, so a judge that
fails to answer shows up as missing data instead of as a 50% result.

The interval is Wilson's score interval at 95% applied to that mean score with n =
decided comparisons. With ties the score is not strictly binomial, so the interval is
an approximation (slightly conservative: a tie has less variance than a coin flip).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Literal, Protocol, cast

import pandas as pd

from moa_core.analysis.stats import wilson_interval as _wilson
from moa_core.evaluation.judge import OUTCOMES

OVERALL = "(overall)"
SETTINGS = ("alone", "aggregator")
# Two-sided 95% normal quantile, Φ⁻¹(0.975), written out to avoid a scipy dependency.
Z95 = 1.959963984540054

OUTCOME_COLUMNS = ("question_id", "category", "contender_a", "contender_b", "outcome")
GENERATION_COLUMNS = (
    "contender",
    "question_id",
    "cost",
    "prompt_tokens",
    "completion_tokens",
    "latency",
)
COLLAB_COLUMNS = ("model", "setting", "question_id", "outcome")


def wilson_interval(successes: float, n: float, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a proportion ``successes / n``; (nan, nan) when n == 0.

    ``successes`` may be fractional (ties counted as half). A thin scalar wrapper over
    :func:`moa_core.analysis.stats.wilson_interval` with the exact 95% quantile."""
    lo, hi = _wilson(successes, n, z)
    return (float(lo), float(hi))


def _require(df: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what} is missing column(s): {', '.join(missing)}")


def _check_outcomes(values: pd.Series) -> None:
    bad = sorted(set(values.dropna().astype(str)) - set(OUTCOMES))
    if bad or values.isna().any():
        shown = ", ".join(repr(b) for b in bad) or "missing values"
        raise ValueError(f"unknown outcome(s) {shown}; expected one of {', '.join(OUTCOMES)}")


def _score(counts: dict[str, int]) -> dict[str, float]:
    wins, losses, ties = counts["left"], counts["right"], counts["tie"]
    n = wins + losses + ties
    score = wins + 0.5 * ties
    lo, hi = wilson_interval(score, n)
    return {
        "n": n,
        "win_rate": score / n if n else math.nan,
        "ci_low": lo,
        "ci_high": hi,
    }


def _counts(outcomes: pd.Series) -> dict[str, int]:
    vc = outcomes.value_counts()
    return {o: int(vc.get(o, 0)) for o in OUTCOMES}


def orient_pairs(outcomes: pd.DataFrame) -> pd.DataFrame:
    """Give every unordered pair one orientation: the first (contender_a, contender_b)
    seen in the frame. Rows stored the other way round are swapped and their left/right
    outcome flipped, so "X vs Y" and "Y vs X" rows pool into one comparison."""
    _require(outcomes, OUTCOME_COLUMNS, "outcomes")
    _check_outcomes(outcomes["outcome"])
    df = outcomes.copy()
    pairs = list(zip(df["contender_a"], df["contender_b"], strict=True))
    first: dict[frozenset[str], tuple[str, str]] = {}
    for a, b in pairs:
        first.setdefault(frozenset((a, b)), (a, b))
    flip = pd.Series([first[frozenset(p)] != p for p in pairs], index=df.index, dtype=bool)
    swapped = df.loc[flip, ["contender_b", "contender_a"]].to_numpy()
    df.loc[flip, ["contender_a", "contender_b"]] = swapped
    df.loc[flip, "outcome"] = df.loc[flip, "outcome"].map(
        {"left": "right", "right": "left", "tie": "tie", "unparseable": "unparseable"}
    )
    return df


def win_rates(outcomes: pd.DataFrame, by_category: bool = False) -> pd.DataFrame:
    """One row per pair of contenders (and per category if ``by_category``).

    Columns: [category,] contender_a, contender_b, wins_a, wins_b, ties, unparseable,
    n (decided = wins_a + wins_b + ties), win_rate_a (ties as half), ci_low, ci_high
    (95% Wilson). Pairs keep the orientation of their first appearance (see
    :func:`orient_pairs`); rows are in order of first appearance, within categories
    sorted by name.
    """
    df = orient_pairs(outcomes)
    if by_category:
        # Stable sort: categories alphabetical, pairs still in first-appearance order.
        df = df.sort_values("category", kind="stable")
    keys = (["category"] if by_category else []) + ["contender_a", "contender_b"]
    rows = []
    for key, group in df.groupby(keys, sort=False):
        c = _counts(group["outcome"])
        s = _score(c)
        rows.append(
            dict(zip(keys, key, strict=True))
            | {"wins_a": c["left"], "wins_b": c["right"], "ties": c["tie"]}
            | {"unparseable": c["unparseable"], "n": s["n"], "win_rate_a": s["win_rate"]}
            | {"ci_low": s["ci_low"], "ci_high": s["ci_high"]}
        )
    columns = [*keys, "wins_a", "wins_b", "ties", "unparseable", "n", "win_rate_a", "ci_low", "ci_high"]
    return pd.DataFrame(rows, columns=columns)


def pairwise_report(outcomes: pd.DataFrame) -> pd.DataFrame:
    """:func:`win_rates` overall (category = ``OVERALL``) followed by per-category rows."""
    overall = win_rates(outcomes).assign(category=OVERALL)
    per_category = win_rates(outcomes, by_category=True)
    return pd.concat([overall[per_category.columns], per_category], ignore_index=True)


def cost_summary(generations: pd.DataFrame, latency: Literal["max", "sum"] = "max") -> pd.DataFrame:
    """Per contender: what one question costs on average.

    ``generations`` has one row per model call: contender, question_id, cost (USD;
    NaN when the price is unknown), prompt_tokens, completion_tokens, latency (seconds).
    A contender such as an MoA config makes several calls per question; their cost and
    tokens are summed per question. Latency per question is the ``max`` over its calls
    (right for parallel calls, or when each row already carries end-to-end latency) or
    their ``sum`` (right for strictly sequential calls). A layered MoA lies between the
    two; record its end-to-end latency on its rows to get it exactly.

    Columns: contender, questions, calls, total_cost, cost_per_question,
    prompt_tokens_per_question, completion_tokens_per_question, tokens_per_question,
    latency_mean, latency_median. A question whose calls all lack a cost is left out of
    the cost columns (NaN if none is known) rather than counted as free.
    """
    _require(generations, GENERATION_COLUMNS, "generations")
    if latency not in ("max", "sum"):
        raise ValueError("latency must be 'max' or 'sum'")
    g = generations.groupby(["contender", "question_id"], sort=False)
    per_q = pd.DataFrame(
        {
            "cost": g["cost"].sum(min_count=1),
            "prompt_tokens": g["prompt_tokens"].sum(min_count=1),
            "completion_tokens": g["completion_tokens"].sum(min_count=1),
            "latency": g["latency"].agg(latency),
            "calls": g.size(),
        }
    ).reset_index()
    per_q["tokens"] = per_q["prompt_tokens"] + per_q["completion_tokens"]
    by = per_q.groupby("contender", sort=False)
    out = pd.DataFrame(
        {
            "questions": by.size(),
            "calls": by["calls"].sum(),
            "total_cost": by["cost"].sum(min_count=1),
            "cost_per_question": by["cost"].mean(),
            "prompt_tokens_per_question": by["prompt_tokens"].mean(),
            "completion_tokens_per_question": by["completion_tokens"].mean(),
            "tokens_per_question": by["tokens"].mean(),
            "latency_mean": by["latency"].mean(),
            "latency_median": by["latency"].median(),
        }
    )
    return out.reset_index()


def collaborativeness(rows: pd.DataFrame) -> pd.DataFrame:
    """Does each model answer better when it sees other models' drafts?

    Expected input, one row per judged comparison (after :func:`combine_verdicts`):

    - ``model``: the model under study.
    - ``setting``: ``"alone"`` — the model answered the question by itself — or
      ``"aggregator"`` — the same model answered as the aggregator over other models'
      drafts of that question.
    - ``question_id``.
    - ``outcome``: left/right/tie/unparseable with **left = the model's answer in that
      setting** and right = a fixed opponent's answer.
    - optional ``opponent``: if present it must be the same for both settings of a
      model, because win rates against different opponents are not comparable.

    The opponent is one fixed baseline per model (e.g. a strong reference model, as
    AlpacaEval uses), so the two win rates are directly comparable; the MoA paper calls
    a model *collaborative* when its aggregator win rate exceeds its alone win rate.

    Columns: model, alone_n, alone_win_rate, alone_ci_low, alone_ci_high, aggregator_n,
    aggregator_win_rate, aggregator_ci_low, aggregator_ci_high, delta (aggregator -
    alone), unparseable, clear_gain (delta > 0 and the two intervals do not overlap;
    False when either setting has no decided comparisons).
    """
    _require(rows, COLLAB_COLUMNS, "collaborativeness rows")
    _check_outcomes(rows["outcome"])
    bad = sorted(set(rows["setting"].astype(str)) - set(SETTINGS))
    if bad:
        raise ValueError(f"unknown setting(s) {bad}; expected 'alone' or 'aggregator'")
    if "opponent" in rows.columns:
        opponents = rows.groupby("model", sort=False)["opponent"].nunique()
        mixed = opponents[opponents > 1].index.tolist()
        if mixed:
            raise ValueError(f"model(s) {mixed} were compared against several opponents")
    out = []
    for model, group in rows.groupby("model", sort=False):
        row: dict[str, object] = {"model": model}
        for setting in SETTINGS:
            c = _counts(group.loc[group["setting"] == setting, "outcome"])
            s = _score(c)
            row |= {
                f"{setting}_n": s["n"],
                f"{setting}_win_rate": s["win_rate"],
                f"{setting}_ci_low": s["ci_low"],
                f"{setting}_ci_high": s["ci_high"],
            }
        row["delta"] = row["aggregator_win_rate"] - row["alone_win_rate"]  # type: ignore[operator]  # both rates are floats here: rows without votes were skipped
        row["unparseable"] = int((group["outcome"] == "unparseable").sum())
        # Non-overlapping intervals: a deliberately cautious call for small samples.
        gain, agg_low = row["delta"], row["aggregator_ci_low"]
        row["clear_gain"] = bool(gain > 0 and agg_low > row["alone_ci_high"])  # type: ignore[operator]  # both rates are floats here: rows without votes were skipped
        out.append(row)
    columns = (
        ["model"]
        + [f"{s}_{k}" for s in SETTINGS for k in ("n", "win_rate", "ci_low", "ci_high")]
        + ["delta", "unparseable", "clear_gain"]
    )
    return pd.DataFrame(out, columns=columns)


# ---------------------------------------------------------------- evaluation frames
#
# The functions below take the frames of moa_core.evaluation.records (one row per
# stored answer or judgement) and shape them for the functions above.

_FLIP = {"left": "right", "right": "left", "tie": "tie", "unparseable": "unparseable"}


def judged_outcomes(judgements: pd.DataFrame) -> pd.DataFrame:
    """Finished judgements as :data:`OUTCOME_COLUMNS` rows (input to :func:`win_rates`)."""
    if judgements.empty:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in OUTCOME_COLUMNS})
    df = judgements[judgements["outcome"].isin(OUTCOMES)]
    return df.loc[:, list(OUTCOME_COLUMNS)].reset_index(drop=True)


def position_bias(judgements: pd.DataFrame) -> int:
    """How many judgements picked the same *position* in both orders (A then A, or B
    then B): the judge followed the slot, not the answer, and the pair became a tie."""
    if judgements.empty:
        return 0
    same = judgements["verdict_ab"].isin(["A", "B"]) & (judgements["verdict_ab"] == judgements["verdict_ba"])
    return int(same.sum())


def reference_summary(answers: pd.DataFrame) -> pd.DataFrame:
    """Per contender, over questions with a reference answer: how many answers state it.

    Columns: contender, n, correct, accuracy, ci_low, ci_high (95% Wilson). Empty when
    no question has a reference.
    """
    columns = ["contender", "n", "correct", "accuracy", "ci_low", "ci_high"]
    if answers.empty or "reference_ok" not in answers.columns:
        return pd.DataFrame(columns=columns)
    has_ref = answers[answers["reference"].fillna("").astype(str).str.strip().astype(bool)]
    rows = []
    for contender, g in has_ref.groupby("contender", sort=False):
        ok = g["reference_ok"].fillna(False).astype(bool)
        n, k = len(g), int(ok.sum())
        lo, hi = wilson_interval(k, n)
        rows.append(
            {
                "contender": contender,
                "n": n,
                "correct": k,
                "accuracy": k / n if n else math.nan,
                "ci_low": lo,
                "ci_high": hi,
            }
        )
    return pd.DataFrame(rows, columns=columns)


def per_question(answers: pd.DataFrame) -> pd.DataFrame:
    """One row per (question, contender): cost, tokens, end-to-end latency, reference check."""
    cols = [
        "question_id",
        "category",
        "contender",
        "cost",
        "prompt_tokens",
        "completion_tokens",
        "tokens",
        "latency",
        "reference_ok",
    ]
    if answers.empty:
        return pd.DataFrame(columns=cols)
    df = answers.assign(tokens=answers["prompt_tokens"] + answers["completion_tokens"], latency=answers["wall_time"])
    return df.loc[:, cols].reset_index(drop=True)


def cost_rows(answers: pd.DataFrame) -> pd.DataFrame:
    """:data:`GENERATION_COLUMNS` rows for :func:`cost_summary`: one per answer, with the
    run's end-to-end latency (exact for layered MoA configs)."""
    if answers.empty:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in GENERATION_COLUMNS})
    df = answers.assign(latency=answers["wall_time"])
    return df.loc[:, list(GENERATION_COLUMNS)].reset_index(drop=True)


def collaborativeness_rows(judgements: pd.DataFrame, answers: pd.DataFrame) -> pd.DataFrame:
    """Input for :func:`collaborativeness` from an evaluation built with
    ``collaborativeness_contenders``: every judgement of a marked contender (a model
    alone, or that model aggregating the others) against an unmarked opponent, oriented
    so that left is the marked contender."""
    cols = [*COLLAB_COLUMNS, "opponent"]
    if judgements.empty or answers.empty or "collab_model" not in answers.columns:
        return pd.DataFrame(columns=cols)
    marks = answers.dropna(subset=["collab_model"]).drop_duplicates("contender").set_index("contender")
    rows = []
    for r in judged_outcomes(judgements).itertuples(index=False):
        a_marked, b_marked = r.contender_a in marks.index, r.contender_b in marks.index
        if a_marked == b_marked:
            continue
        me, opponent, outcome = (
            (r.contender_a, r.contender_b, r.outcome)
            if a_marked
            else (r.contender_b, r.contender_a, _FLIP[str(r.outcome)])
        )
        rows.append(
            {
                "model": marks.at[me, "collab_model"],
                "setting": marks.at[me, "collab_setting"],
                "question_id": r.question_id,
                "outcome": outcome,
                "opponent": opponent,
            }
        )
    return pd.DataFrame(rows, columns=cols)


class _PairwiseRow(Protocol):
    """A :func:`pairwise_report` row from ``itertuples`` (pandas-stubs cannot know the columns)."""

    category: str
    contender_a: str
    contender_b: str
    wins_a: int
    wins_b: int
    ties: int
    unparseable: int
    n: int
    win_rate_a: float
    ci_low: float
    ci_high: float


def pct(x: float | None) -> str:
    """A share as a whole percentage; "–" when unknown (None or NaN)."""
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.0f}%"


def format_duration(seconds: float | None) -> str:
    """Seconds as "4.2s", "37s", "3m 07s" or "1h 02m"; "–" when unknown (None or NaN)."""
    if seconds is None or seconds != seconds:
        return "–"
    if seconds < 10:
        return f"{max(seconds, 0.0):.1f}s"
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s // 3600}h {s % 3600 // 60:02d}m"


def _with_ci(rate: float, lo: float, hi: float) -> str:
    return f"{pct(rate)} ({pct(lo)}–{pct(hi)})"


def reference_display(ref: pd.DataFrame) -> pd.DataFrame:
    """:func:`reference_summary` as table columns: contender, questions, correct, accuracy, 95% CI."""
    return pd.DataFrame(
        {
            "contender": ref["contender"],
            "questions": ref["n"],
            "correct": ref["correct"],
            "accuracy": ref["accuracy"].map(pct),
            "95% CI": [f"{pct(lo)}–{pct(hi)}" for lo, hi in zip(ref["ci_low"], ref["ci_high"], strict=True)],
        }
    )


def cost_display(costs: pd.DataFrame) -> pd.DataFrame:
    """Per-contender costs (``EvalReport.costs``) per question, as table columns."""
    c = costs
    return pd.DataFrame(
        {
            "contender": c["contender"],
            "questions": c["questions"],
            "calls / question": (c["calls"] / c["questions"]).round(1),
            "tokens / question": c["tokens_per_question"].round(0),
            "cost / question": c["cost_per_question"].map(
                lambda x: "free" if x == 0 else ("–" if x != x else f"${x:.5f}")
            ),
            "latency mean": c["latency_mean"].map(format_duration),
            "latency median": c["latency_median"].map(format_duration),
        }
    )


def collab_display(collab: pd.DataFrame) -> pd.DataFrame:
    """:func:`collaborativeness` as table columns: each model's win rate alone and as the
    aggregator (95% CI, n), the change, and whether the gain is clear."""
    c = collab
    return pd.DataFrame(
        {
            "model": c["model"],
            "alone": [
                f"{_with_ci(w, lo, hi)}, n={n}"
                for w, lo, hi, n in zip(
                    c["alone_win_rate"], c["alone_ci_low"], c["alone_ci_high"], c["alone_n"], strict=True
                )
            ],
            "as aggregator": [
                f"{_with_ci(w, lo, hi)}, n={n}"
                for w, lo, hi, n in zip(
                    c["aggregator_win_rate"],
                    c["aggregator_ci_low"],
                    c["aggregator_ci_high"],
                    c["aggregator_n"],
                    strict=True,
                )
            ],
            "change": c["delta"].map(lambda d: "–" if d != d else f"{100 * d:+.0f} pts"),
            "clear gain": c["clear_gain"].map(lambda b: "yes" if b else "no"),
        }
    )


def pairwise_display(pairwise: pd.DataFrame) -> pd.DataFrame:
    """:func:`pairwise_report` as compact text columns for tables: category, A, B,
    "A/B/tie" (counts), unparseable, "A win rate (95% CI)"."""
    cols = ["category", "A", "B", "A/B/tie", "unparseable", "A win rate (95% CI)"]
    rows = [
        {
            "category": r.category,
            "A": r.contender_a,
            "B": r.contender_b,
            "A/B/tie": f"{int(r.wins_a)}/{int(r.wins_b)}/{int(r.ties)}",
            "unparseable": int(r.unparseable),
            "A win rate (95% CI)": _with_ci(r.win_rate_a, r.ci_low, r.ci_high) if r.n else "–",
        }
        for r in cast(Iterable[_PairwiseRow], pairwise.itertuples(index=False))
    ]
    return pd.DataFrame(rows, columns=cols)
