"""Read side of the Arena and Analysis pages: contenders, vote counts, scores, cost, latency.

A *contender* is what a vote compares. A single model answering alone is named by its
label or model string (as in ``votes_df``); the final answer of a MoA run (its
aggregator generation) is named after the config, ``"MoA · <config name>"``, because the
aggregator's own model says little about the pipeline that wrote the answer. The same
rule names the contenders on the Arena page, so its votes and this leaderboard agree.

Votes are counted in SQL, one row per (left, right, outcome) cell, so the leaderboard
is fitted on counts whatever the number of votes.
"""

from __future__ import annotations

import pandas as pd
from sqlalchemy import Engine, func, select

from moa_core.store.models import JUDGE_PREFIX
from moa_core.store.queries import (
    GEN,
    RATER_KINDS,
    RUN,
    VOTE,
    Many,
    _frame,
    _many,
    _rows_tuples,
    _time,
    _where,
    check_rater_kind,
    generations_df,
    rater_filter,
    ratings_df,
)
from moa_core.store.util import TimeLike

MOA_PREFIX = "MoA · "
COUNT_COLUMNS = ["left", "right", "outcome", "count"]
COST_COLUMNS = ["contender", "cost", "latency", "answers"]


def contender_name(role: str | None, label: str | None, model: str | None, preset: str | None) -> str:
    """The contender a stored generation stands for (see the module docstring)."""
    if role == "aggregator" and preset:
        return f"{MOA_PREFIX}{preset}"
    return label or model or "?"


def contender_names(df: pd.DataFrame, prefix: str = "") -> pd.Series:
    """Vectorised ``contender_name`` over columns ``{prefix}role``, ``label``, ``model``, ``preset``."""
    if df.empty:
        return pd.Series([], index=df.index, dtype="object")
    role, label, model, preset = (df[f"{prefix}{c}"] for c in ("role", "label", "model", "preset"))
    single = label.where(label.fillna("").astype(bool), model).fillna("?")
    moa = MOA_PREFIX + preset.fillna("").astype(str)
    is_moa = (role == "aggregator") & preset.fillna("").astype(bool)
    return moa.where(is_moa, single).astype("object")


def vote_counts(
    engine: Engine,
    since: TimeLike = None,
    until: TimeLike = None,
    rater_kind: str = "all",
    rater: Many = None,
    kind: Many = None,
    question_set: Many = None,
) -> pd.DataFrame:
    """Votes aggregated to (left, right, outcome, count), contenders named as above.

    Filters as in ``votes_df``: vote time, people/judges/all, rater, kind of the vote's run
    (or of the left generation's run), question set of the vote. Self-battles (both sides
    the same contender) are dropped: they carry no information about strength.
    """
    check_rater_kind(rater_kind)
    left, right = GEN.alias("l"), GEN.alias("r")
    lrun, rrun, vrun = RUN.alias("lrun"), RUN.alias("rrun"), RUN.alias("vrun")
    kind_col = func.coalesce(vrun.c.kind, lrun.c.kind)
    keys = [
        left.c.role.label("l_role"), left.c.label.label("l_label"), left.c.model.label("l_model"),
        lrun.c.preset.label("l_preset"), right.c.role.label("r_role"), right.c.label.label("r_label"),
        right.c.model.label("r_model"), rrun.c.preset.label("r_preset"), VOTE.c.outcome,
    ]  # fmt: skip
    stmt = (
        select(*keys, func.count().label("count"))
        .select_from(VOTE)
        .join(left, left.c.id == VOTE.c.left_generation_id)
        .join(right, right.c.id == VOTE.c.right_generation_id)
        .join(lrun, lrun.c.id == left.c.run_id)
        .join(rrun, rrun.c.id == right.c.run_id)
        .outerjoin(vrun, vrun.c.id == VOTE.c.run_id)
    )
    stmt = _where(
        stmt,
        *_time(VOTE.c.created_at, since, until),
        rater_filter(VOTE.c.rater, rater_kind),
        _many(VOTE.c.rater, rater),
        _many(kind_col, kind),
        _many(VOTE.c.question_set, question_set),
    )
    stmt = stmt.group_by(*keys)
    cells = _frame(engine, stmt)
    if cells.empty:
        return pd.DataFrame({c: pd.Series(dtype="int64" if c == "count" else "object") for c in COUNT_COLUMNS})
    out = pd.DataFrame(
        {
            "left": contender_names(cells, "l_"),
            "right": contender_names(cells, "r_"),
            "outcome": cells["outcome"].astype("object"),
            "count": cells["count"].astype("int64"),
        }
    )
    out = out[out["left"] != out["right"]]
    # Different (label, preset) keys can map to one contender: merge their cells.
    return out.groupby(["left", "right", "outcome"], sort=True)["count"].sum().reset_index()


def contender_ratings(
    engine: Engine,
    since: TimeLike = None,
    until: TimeLike = None,
    rater_kind: str = "all",
    kind: Many = None,
    question_set: Many = None,
) -> pd.DataFrame:
    """One row per 1..5 rating with a ``contender`` column (same naming as the votes)."""
    check_rater_kind(rater_kind)
    df = ratings_df(engine, since=since, until=until, kind=kind)
    if not df.empty and rater_kind != "all":
        judge = df["rater"].astype(str).str.startswith(JUDGE_PREFIX)
        df = df[judge if rater_kind == "judges" else ~judge]
    if not df.empty and question_set is not None:
        sets = [question_set] if isinstance(question_set, str) else list(question_set)
        if sets:
            df = df[df["question_set"].isin(sets)]
    df = df.copy()
    df["contender"] = contender_names(df) if not df.empty else pd.Series(dtype="object")
    return df.reset_index(drop=True)


def contender_costs(
    engine: Engine,
    since: TimeLike = None,
    until: TimeLike = None,
    kind: Many = None,
    question_set: Many = None,
) -> pd.DataFrame:
    """Mean cost (USD) and latency (s) per answer of each contender, from finished answers.

    A single model's answer is one generation: its cost and latency. A MoA answer costs
    every call of its run that led to it (proposers and aggregator, not the baselines
    run beside it), and its latency is from the first proposer's start to the end of
    the aggregator: the time a user waits for the final answer.
    """
    gens = generations_df(engine, since=since, until=until, kind=kind)
    if not gens.empty and question_set is not None:
        sets = [question_set] if isinstance(question_set, str) else list(question_set)
        if sets:
            gens = gens[gens["question_set"].isin(sets)]
    if gens.empty:
        return pd.DataFrame({c: pd.Series(dtype="object" if c == "contender" else "float64") for c in COST_COLUMNS})
    done = gens[gens["status"] == "done"]
    single = done[done["role"] == "baseline"]
    finals = done[done["role"] == "aggregator"]
    pipeline = gens[gens["role"].isin(["proposer", "aggregator"])]
    per_run = pipeline.groupby("run_id").agg(run_cost=("cost", "sum"), first_start=("started_at", "min"))
    finals = finals.join(per_run, on="run_id")
    answers = pd.concat([
        pd.DataFrame({"contender": contender_names(single), "cost": single["cost"].astype(float),
                      "latency": pd.to_numeric(single["latency"], errors="coerce")}),
        pd.DataFrame({"contender": contender_names(finals), "cost": finals["run_cost"].astype(float),
                      "latency": pd.to_numeric(finals["ended_at"], errors="coerce") - finals["first_start"]}),
    ], ignore_index=True)  # fmt: skip
    if answers.empty:
        return pd.DataFrame({c: pd.Series(dtype="object" if c == "contender" else "float64") for c in COST_COLUMNS})
    out = answers.groupby("contender", sort=True).agg(
        cost=("cost", "mean"), latency=("latency", "mean"), answers=("cost", "size")
    )
    return out.reset_index()[COST_COLUMNS]


def review_candidates(engine: Engine, kind: Many = "playground") -> pd.DataFrame:
    """Finished MoA final answers and baselines of stored runs, with contender names.

    The raw material of the blind review: pairs are built from it by
    ``moa_core.arena.blind_review_pairs``.
    """
    gens = generations_df(engine, kind=kind, role=["aggregator", "baseline"], status="done")
    gens = gens.copy()
    gens["contender"] = contender_names(gens) if not gens.empty else pd.Series(dtype="object")
    return gens


def voted_pairs(engine: Engine, rater: str) -> set[frozenset[int]]:
    """The (unordered) generation pairs `rater` has already voted on."""
    rows = _rows_tuples(
        engine, select(VOTE.c.left_generation_id, VOTE.c.right_generation_id).where(VOTE.c.rater == rater)
    )
    return {frozenset((int(a), int(b))) for a, b in rows}


__all__ = [
    "COST_COLUMNS",
    "COUNT_COLUMNS",
    "MOA_PREFIX",
    "RATER_KINDS",
    "contender_costs",
    "contender_name",
    "contender_names",
    "contender_ratings",
    "review_candidates",
    "vote_counts",
    "voted_pairs",
]
