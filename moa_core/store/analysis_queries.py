"""Read side of the Arena and Analysis pages: contenders, vote counts, scores, cost, latency.

A *contender* is what a vote compares, named by `analysis.contenders` (the rule the
Arena page uses too, so its votes and this leaderboard agree).

Votes are counted in SQL, one row per (left, right, outcome) cell, so the leaderboard
is fitted on counts whatever the number of votes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Unpack

import pandas as pd
from sqlalchemy import Engine, Select, func, select

from moa_core.analysis.contenders import contender_names
from moa_core.analysis.leaderboard import COUNT_COLUMNS  # the frame vote_counts returns is what it fits
from moa_core.store.models import JUDGE_PREFIX
from moa_core.store.queries import (
    GEN,
    RATER_KINDS,
    RATING_COLUMNS,
    RUN,
    VOTE,
    Many,
    VoteFilters,
    _frame,
    _rows_tuples,
    _where,
    generations_df,
    ratings_df,
    ratings_select,
    vote_conditions,
)
from moa_core.store.util import TimeLike
from moa_core.vocab import GenerationStatus, Role

COST_COLUMNS = ["contender", "cost", "latency", "answers"]


@dataclass(frozen=True)
class _VoteJoin:
    """A vote with both answers and their runs (and the vote's own run, if any)."""

    left: Any
    right: Any
    lrun: Any
    rrun: Any
    vrun: Any

    @property
    def contender_keys(self) -> list[Any]:
        """The columns ``contender_names`` needs for each side (prefixes ``l_`` and ``r_``)."""
        return [
            self.left.c.role.label("l_role"), self.left.c.label.label("l_label"),
            self.left.c.model.label("l_model"), self.lrun.c.preset.label("l_preset"),
            self.right.c.role.label("r_role"), self.right.c.label.label("r_label"),
            self.right.c.model.label("r_model"), self.rrun.c.preset.label("r_preset"),
        ]  # fmt: skip

    def select(self, columns: list[Any], filters: VoteFilters) -> Select:
        kind_col = func.coalesce(self.vrun.c.kind, self.lrun.c.kind)
        stmt = (
            select(*columns)
            .select_from(VOTE)
            .join(self.left, self.left.c.id == VOTE.c.left_generation_id)
            .join(self.right, self.right.c.id == VOTE.c.right_generation_id)
            .join(self.lrun, self.lrun.c.id == self.left.c.run_id)
            .join(self.rrun, self.rrun.c.id == self.right.c.run_id)
            .outerjoin(self.vrun, self.vrun.c.id == VOTE.c.run_id)
        )
        return _where(stmt, *vote_conditions(filters, kind_col))


def _vote_join() -> _VoteJoin:
    return _VoteJoin(GEN.alias("l"), GEN.alias("r"), RUN.alias("lrun"), RUN.alias("rrun"), RUN.alias("vrun"))


def vote_counts(engine: Engine, **filters: Unpack[VoteFilters]) -> pd.DataFrame:
    """Votes aggregated to (left, right, outcome, count), contenders named as above.

    Filters: ``VoteFilters``, as in ``votes_df``. Self-battles (both sides the same
    contender) are dropped: they carry no information about strength.
    """
    j = _vote_join()
    keys = [*j.contender_keys, VOTE.c.outcome]
    stmt = j.select([*keys, func.count().label("count")], filters)
    cells = _frame(engine, stmt.group_by(*keys))
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


VOTE_DETAIL_COLUMNS = [
    "id", "created_at", "rater", "is_judge", "outcome", "blind", "question_set", "run_question_set", "question", "category",
    "campaign", "verdicts", "left_generation_id", "right_generation_id", "left", "right",
]  # fmt: skip


def _meta_value(meta: object, key: str) -> object:
    return meta.get(key) if isinstance(meta, dict) else None


def vote_details(engine: Engine, **filters: Unpack[VoteFilters]) -> pd.DataFrame:
    """One row per vote (oldest first) with both contenders named as in ``vote_counts``.

    Same filters and the same self-battle rule as ``vote_counts``, so the two agree on
    what is counted. ``question_set`` is the vote's (what the filter matches),
    ``run_question_set`` that of the vote's run, else of the left answer's run (a blind
    review vote has only the latter). ``category`` and ``campaign`` come from the ``meta`` of the vote's
    run, else of the left answer's run (an evaluation stores the question's category on
    its judgement runs; a campaign vote's own ``campaign_id`` comes first), the Arena the category typed or drawn with the question);
    ``verdicts`` is a judge's pair of verdicts (left answer shown first, then second) as a
    tuple, when its run stored them. Texts are not read here: see ``generation_texts``.
    """
    j = _vote_join()
    columns = [
        VOTE.c.id, VOTE.c.created_at, VOTE.c.rater, VOTE.c.outcome, VOTE.c.blind, VOTE.c.question_set,
        func.coalesce(j.vrun.c.question, j.lrun.c.question).label("question"),
        func.coalesce(j.vrun.c.question_set, j.lrun.c.question_set).label("run_question_set"),
        j.vrun.c.meta.label("vote_meta"), j.lrun.c.meta.label("left_meta"), VOTE.c.campaign_id,
        VOTE.c.left_generation_id, VOTE.c.right_generation_id, *j.contender_keys,
    ]  # fmt: skip
    stmt = j.select(columns, filters)
    rows = _frame(engine, stmt.order_by(VOTE.c.created_at, VOTE.c.id))
    if rows.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in VOTE_DETAIL_COLUMNS})
    out = rows[["id", "created_at", "rater", "outcome", "blind", "question_set", "run_question_set", "question"]].copy()
    out["is_judge"] = rows["rater"].astype("object").str.startswith(JUDGE_PREFIX).astype(bool)
    metas = list(zip(rows["vote_meta"], rows["left_meta"], strict=True))
    for key in ("category", "campaign"):
        values = [_meta_value(vm, key) or _meta_value(lm, key) for vm, lm in metas]
        out[key] = [str(v) if v not in (None, "") else None for v in values]
    # A campaign vote names its campaign in its own column (store.campaigns).
    campaigns = [c if isinstance(c, str) else m for c, m in zip(rows["campaign_id"], out["campaign"], strict=True)]
    out["campaign"] = pd.Series([c if isinstance(c, str) else None for c in campaigns], index=out.index, dtype=object)
    verdicts = [_meta_value(vm, "verdicts") for vm, _ in metas]
    out["verdicts"] = pd.Series(
        [tuple(v) if isinstance(v, list) and len(v) == 2 else None for v in verdicts], index=out.index, dtype=object
    )
    out["left_generation_id"] = rows["left_generation_id"].astype("int64")
    out["right_generation_id"] = rows["right_generation_id"].astype("int64")
    out["left"] = contender_names(rows, "l_")
    out["right"] = contender_names(rows, "r_")
    out = out[out["left"] != out["right"]]
    return out[VOTE_DETAIL_COLUMNS].reset_index(drop=True)


RATING_DETAIL_COLUMNS = [
    "id", "created_at", "score", "comment", "rater", "is_judge", "generation_id", "contender", "question",
    "response", "status", "kind", "question_set", "category", "campaign",
]  # fmt: skip


def rating_details(engine: Engine, **filters: Unpack[VoteFilters]) -> pd.DataFrame:
    """One row per 1..5 rating (oldest first) with the rated answer's text, its contender
    (named as for votes), the run's question, and ``category`` / ``campaign`` from the
    run's ``meta``. ``question_set`` filters on the run's set."""
    extra = [GEN.c.text.label("response"), GEN.c.status, RUN.c.meta]
    rows = _frame(engine, ratings_select([*RATING_COLUMNS, *extra], filters))
    if rows.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in RATING_DETAIL_COLUMNS})
    rows["contender"] = contender_names(rows)
    rows["is_judge"] = rows["rater"].astype("object").str.startswith(JUDGE_PREFIX).astype(bool)
    for key in ("category", "campaign"):
        values = [_meta_value(m, key) for m in rows["meta"]]
        rows[key] = [str(v) if v not in (None, "") else None for v in values]
    return rows[RATING_DETAIL_COLUMNS].reset_index(drop=True)


def generation_texts(engine: Engine, ids: Sequence[int]) -> pd.DataFrame:
    """``id``, ``text`` and ``status`` of the given generations (any order; unknown ids are absent)."""
    wanted = sorted({int(i) for i in ids})
    parts = [
        _frame(engine, select(GEN.c.id, GEN.c.text, GEN.c.status).where(GEN.c.id.in_(wanted[i : i + 500])))
        for i in range(0, len(wanted), 500)
    ]
    if not parts:
        return pd.DataFrame(
            {"id": pd.Series(dtype="int64"), "text": pd.Series(dtype=object), "status": pd.Series(dtype=object)}
        )
    return pd.concat(parts, ignore_index=True)


def contender_ratings(engine: Engine, **filters: Unpack[VoteFilters]) -> pd.DataFrame:
    """One row per 1..5 rating with a ``contender`` column (same naming as the votes)."""
    df = ratings_df(engine, **filters)
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
    gens = generations_df(engine, since=since, until=until, kind=kind, question_set=question_set)
    if gens.empty:
        return pd.DataFrame({c: pd.Series(dtype="object" if c == "contender" else "float64") for c in COST_COLUMNS})
    done = gens[gens["status"] == GenerationStatus.DONE]
    single = done[done["role"] == Role.BASELINE]
    finals = done[done["role"] == Role.AGGREGATOR]
    pipeline = gens[gens["role"].isin([Role.PROPOSER, Role.AGGREGATOR])]
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
    gens = generations_df(engine, kind=kind, role=[Role.AGGREGATOR, Role.BASELINE], status=GenerationStatus.DONE)
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
    "RATER_KINDS",
    "RATING_DETAIL_COLUMNS",
    "VOTE_DETAIL_COLUMNS",
    "contender_costs",
    "contender_ratings",
    "generation_texts",
    "rating_details",
    "review_candidates",
    "vote_counts",
    "vote_details",
    "voted_pairs",
]
