"""Read side: pandas DataFrames for the history, ratings and leaderboard pages.

Filters are optional and combine with AND. Text filters (`kind`, `model`, `preset`,
`rater`, `question_set`) take one value or a list. Time bounds take Unix seconds, a
datetime (naive = local time) or a date; `since` is inclusive, `until` exclusive, and a
bare date as `until` means "through that day". Every frame has `created` (UTC
timestamps) next to the raw `created_at` seconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypedDict, Unpack

import pandas as pd
from sqlalchemy import ColumnElement, Engine, Select, and_, exists, func, not_, or_, select
from sqlalchemy.exc import SQLAlchemyError

from moa_core.store.db import StoreError, safe_url
from moa_core.store.models import JUDGE_PREFIX, Generation, Rating, Run, Stage, Vote, table_of
from moa_core.store.util import TimeLike, one_line, to_unix

RUN, GEN, RAT, VOTE = table_of(Run), table_of(Generation), table_of(Rating), table_of(Vote)
STAGE = table_of(Stage)
Many = str | Sequence[str] | None

RUN_COLUMNS = [c for c in RUN.c if c.name not in ("config", "history")]


def _values(value: str | Sequence[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _many(col: Any, value: Many) -> Any | None:
    if value is None:
        return None
    values = _values(value)
    return col.in_(values) if values else None


def _time(col: Any, since: TimeLike, until: TimeLike) -> list[Any]:
    out = []
    if (lo := to_unix(since)) is not None:
        out.append(col >= lo)
    if (hi := to_unix(until, end_of_day=True)) is not None:
        out.append(col < hi)
    return out


def _where(stmt: Select, *conds: Any) -> Select:
    conds = tuple(c for c in conds if c is not None)
    return stmt.where(and_(*conds)) if conds else stmt


def _frame(engine: Engine, stmt: Select) -> pd.DataFrame:
    try:
        with engine.connect() as conn:
            result = conn.execute(stmt)
            df = pd.DataFrame(result.mappings().all(), columns=list(result.keys()))
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot read {safe_url(engine)}: {one_line(exc)}") from exc
    if "created_at" in df.columns:
        df.insert(
            list(df.columns).index("created_at") + 1,
            "created",
            pd.to_datetime(df["created_at"].astype("float64"), unit="s", utc=True),
        )
    return df


def _display_name(label: pd.Series, model: pd.Series) -> pd.Series:
    """What the UI calls a contender: its label, or its model string when unlabelled."""
    return label.where(label.fillna("").astype(bool), model).astype("object")


def _named(gen: Any, model: str | Sequence[str]) -> ColumnElement[bool]:
    """A contender is named by its model string or its label; an empty list matches nothing."""
    values = _values(model)
    return or_(gen.c.model.in_(values), gen.c.label.in_(values))


def _model_match(gen: Any, model: Many) -> ColumnElement[bool] | None:
    return None if model is None else _named(gen, model)


def runs_df(
    engine: Engine,
    since: TimeLike = None,
    until: TimeLike = None,
    kind: Many = None,
    model: Many = None,
    preset: Many = None,
    search: str | None = None,
    question_set: Many = None,
    status: Many = None,
    limit: int | None = None,
) -> pd.DataFrame:
    """One row per run, newest first, with a `models` column (distinct models, comma-separated)."""
    stmt = select(*RUN_COLUMNS).order_by(RUN.c.created_at.desc())
    has_model = None
    if model is not None:
        has_model = exists().where(GEN.c.run_id == RUN.c.id, _named(GEN, model))
    text_match = None
    if search and search.strip():
        s = search.strip().lower()
        text_match = or_(
            func.lower(RUN.c.question).contains(s, autoescape=True),
            func.lower(RUN.c.final_text).contains(s, autoescape=True),
        )
    stmt = _where(
        stmt,
        *_time(RUN.c.created_at, since, until),
        _many(RUN.c.kind, kind),
        _many(RUN.c.preset, preset),
        _many(RUN.c.question_set, question_set),
        _many(RUN.c.status, status),
        has_model,
        text_match,
    )
    if limit:
        stmt = stmt.limit(limit)
    df = _frame(engine, stmt)
    if df.empty:
        df["models"] = pd.Series(dtype="object")
        return df
    ids = df["id"].tolist()
    names = _frame(engine, select(GEN.c.run_id, GEN.c.model).where(GEN.c.run_id.in_(ids)).distinct())
    models = names.groupby("run_id")["model"].agg(lambda s: ", ".join(sorted(s)))
    df["models"] = df["id"].map(models).fillna("")
    return df


def generations_df(
    engine: Engine,
    run_ids: Sequence[str] | None = None,
    since: TimeLike = None,
    until: TimeLike = None,
    kind: Many = None,
    role: Many = None,
    model: Many = None,
    status: Many = None,
    question_set: Many = None,
) -> pd.DataFrame:
    """One row per model call, with its run's kind, question, preset and time (`created_at`)."""
    stmt = (
        select(*GEN.c, RUN.c.kind, RUN.c.question, RUN.c.preset, RUN.c.question_set, RUN.c.created_at)
        .join(RUN, RUN.c.id == GEN.c.run_id)
        .order_by(RUN.c.created_at, GEN.c.run_id, GEN.c.layer, GEN.c.slot, GEN.c.id)
    )
    stmt = _where(
        stmt,
        _many(GEN.c.run_id, run_ids) if run_ids is not None else None,
        *_time(RUN.c.created_at, since, until),
        _many(RUN.c.kind, kind),
        _many(GEN.c.role, role),
        _model_match(GEN, model),
        _many(GEN.c.status, status),
        _many(RUN.c.question_set, question_set),
    )
    return _frame(engine, stmt)


RATER_KINDS = ("people", "judges", "all")


class VoteFilters(TypedDict, total=False):
    """The filters of every vote and rating reader; all optional, combined with AND.

    `since`/`until`: when the vote or rating was cast (see the module docstring).
    `rater_kind`: "people" (not judges), "judges" (rater "judge:<model>") or "all" (default).
    `rater`: rater name(s). `kind`: kind of the run (for a vote: its own run, else the
    left answer's run). `question_set`: the vote's set; for a rating, its run's set.
    """

    since: TimeLike
    until: TimeLike
    rater_kind: str
    rater: Many
    kind: Many
    question_set: Many


def filter_conditions(filters: VoteFilters, *, cast_at: Any, rater: Any, kind: Any, question_set: Any) -> list[Any]:
    """`filters` as WHERE conditions on the given columns (None entries: no condition)."""
    unknown = set(filters) - set(VoteFilters.__annotations__)
    if unknown:  # a misspelt filter must not quietly match everything
        raise TypeError(f"unknown filter(s): {', '.join(sorted(unknown))}")
    rater_kind = filters.get("rater_kind", "all")
    check_rater_kind(rater_kind)
    return [
        *_time(cast_at, filters.get("since"), filters.get("until")),
        rater_filter(rater, rater_kind),
        _many(rater, filters.get("rater")),
        _many(kind, filters.get("kind")),
        _many(question_set, filters.get("question_set")),
    ]


def ratings_select(columns: Sequence[Any], filters: VoteFilters, *extra: Any) -> Select:
    """Ratings (oldest first) joined to the rated generation (GEN) and its run (RUN)."""
    stmt = (
        select(*columns)
        .select_from(RAT)
        .join(GEN, GEN.c.id == RAT.c.generation_id)
        .join(RUN, RUN.c.id == GEN.c.run_id)
        .order_by(RAT.c.created_at, RAT.c.id)
    )
    conds = filter_conditions(
        filters, cast_at=RAT.c.created_at, rater=RAT.c.rater, kind=RUN.c.kind, question_set=RUN.c.question_set
    )
    return _where(stmt, *conds, *extra)


RATING_COLUMNS = [
    RAT.c.id, RAT.c.created_at, RAT.c.score, RAT.c.comment, RAT.c.rater, RAT.c.generation_id,
    GEN.c.run_id, GEN.c.call_id, GEN.c.role, GEN.c.layer, GEN.c.slot, GEN.c.model, GEN.c.label,
    RUN.c.kind, RUN.c.preset, RUN.c.question, RUN.c.question_set,
]  # fmt: skip


def ratings_df(
    engine: Engine, model: Many = None, run_id: str | None = None, **filters: Unpack[VoteFilters]
) -> pd.DataFrame:
    """One row per rating, with the rated generation (model, label, role...) and its run."""
    stmt = ratings_select(
        RATING_COLUMNS,
        filters,
        _model_match(GEN, model),
        GEN.c.run_id == run_id if run_id is not None else None,
    )
    df = _frame(engine, stmt)
    df["name"] = _display_name(df["label"], df["model"])
    return df


def check_rater_kind(rater_kind: str) -> None:
    if rater_kind not in RATER_KINDS:
        raise ValueError(f"rater_kind must be one of {', '.join(RATER_KINDS)}, got {rater_kind!r}")


def rater_filter(col: Any, rater_kind: str) -> Any | None:
    """People, judges (raters named `judge:<model>`) or everyone; call check_rater_kind first."""
    is_judge = col.like(f"{JUDGE_PREFIX}%")
    return {"people": not_(is_judge), "judges": is_judge, "all": None}[rater_kind]


def votes_df(engine: Engine, model: Many = None, **filters: Unpack[VoteFilters]) -> pd.DataFrame:
    """One row per vote with both contenders (`left_model`, `left_label`, `left_name`, ...).

    Filters: see `VoteFilters`. `model` keeps votes where either side is that model or label.
    """
    left, right, lrun = GEN.alias("l"), GEN.alias("r"), RUN.alias("lrun")
    vrun = RUN.alias("vrun")
    kind_col = func.coalesce(vrun.c.kind, lrun.c.kind)
    stmt = (
        select(
            VOTE.c.id,
            VOTE.c.created_at,
            VOTE.c.outcome,
            VOTE.c.blind,
            VOTE.c.rater,
            VOTE.c.question_set,
            func.coalesce(VOTE.c.run_id, left.c.run_id).label("run_id"),
            kind_col.label("kind"),
            func.coalesce(vrun.c.question, lrun.c.question).label("question"),
            VOTE.c.left_generation_id,
            left.c.model.label("left_model"),
            left.c.label.label("left_label"),
            left.c.role.label("left_role"),
            left.c.run_id.label("left_run_id"),
            VOTE.c.right_generation_id,
            right.c.model.label("right_model"),
            right.c.label.label("right_label"),
            right.c.role.label("right_role"),
            right.c.run_id.label("right_run_id"),
        )
        .join(left, left.c.id == VOTE.c.left_generation_id)
        .join(right, right.c.id == VOTE.c.right_generation_id)
        .join(lrun, lrun.c.id == left.c.run_id)
        .outerjoin(vrun, vrun.c.id == VOTE.c.run_id)
        .order_by(VOTE.c.created_at, VOTE.c.id)
    )
    stmt = _where(
        stmt,
        *vote_conditions(filters, kind_col),
        or_(_named(left, model), _named(right, model)) if model is not None else None,
    )
    df = _frame(engine, stmt)
    for side in ("left", "right"):
        df[f"{side}_name"] = _display_name(df[f"{side}_label"], df[f"{side}_model"])
    df["is_judge"] = df["rater"].astype("object").str.startswith(JUDGE_PREFIX).astype(bool)
    return df


def vote_conditions(filters: VoteFilters, kind: Any) -> list[Any]:
    """`filters` on VOTE; `kind`: the column giving the kind of the vote's run."""
    return filter_conditions(
        filters, cast_at=VOTE.c.created_at, rater=VOTE.c.rater, kind=kind, question_set=VOTE.c.question_set
    )


def read_rows(engine: Engine, stmt: Select) -> list[dict[str, Any]]:
    """The rows of `stmt` as dicts; a database error is a StoreError naming the database."""
    try:
        with engine.connect() as conn:
            return [dict(r) for r in conn.execute(stmt).mappings()]
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot read {safe_url(engine)}: {one_line(exc)}") from exc


def get_run(engine: Engine, run_id: str) -> dict[str, Any] | None:
    """Everything to re-display a run: {"run", "generations", "stages", "ratings", "votes"}; None if unknown.

    Generations are ordered by layer then slot (baselines, layer -1, first; the aggregator last).
    `stages`: what each pipeline stage decided (layer, kind, ok, failed, used, cut, details,
    ended_at), by layer; empty for runs recorded before stages were stored.
    """
    runs = read_rows(engine, select(RUN).where(RUN.c.id == run_id))
    if not runs:
        return None
    gens = read_rows(
        engine, select(GEN).where(GEN.c.run_id == run_id).order_by(GEN.c.layer, GEN.c.slot, GEN.c.role, GEN.c.id)
    )
    stages = read_rows(engine, select(STAGE).where(STAGE.c.run_id == run_id).order_by(STAGE.c.layer))
    gen_ids = [g["id"] for g in gens]
    ratings = read_rows(
        engine, select(RAT).where(RAT.c.generation_id.in_(gen_ids)).order_by(RAT.c.created_at, RAT.c.id)
    )
    votes = read_rows(
        engine,
        select(VOTE)
        .where(
            or_(
                VOTE.c.run_id == run_id, VOTE.c.left_generation_id.in_(gen_ids), VOTE.c.right_generation_id.in_(gen_ids)
            )
        )
        .order_by(VOTE.c.created_at, VOTE.c.id),
    )
    return {"run": runs[0], "generations": gens, "stages": stages, "ratings": ratings, "votes": votes}


def filter_options(engine: Engine) -> dict[str, list[str]]:
    """Distinct values for the UI's filter widgets: kinds, presets, models, question sets, raters."""

    def distinct(col: Any) -> list[str]:
        return sorted(v for (v,) in _rows_tuples(engine, select(col).distinct()) if v)

    return {
        "kinds": distinct(RUN.c.kind),
        "presets": distinct(RUN.c.preset),
        "models": distinct(GEN.c.model),
        "labels": distinct(GEN.c.label),
        "question_sets": sorted(set(distinct(RUN.c.question_set)) | set(distinct(VOTE.c.question_set))),
        "raters": sorted(set(distinct(RAT.c.rater)) | set(distinct(VOTE.c.rater))),
    }


def _rows_tuples(engine: Engine, stmt: Select) -> list[tuple[Any, ...]]:
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(stmt)]
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot read {safe_url(engine)}: {one_line(exc)}") from exc


__all__ = ["VoteFilters", "filter_options", "generations_df", "get_run", "ratings_df", "runs_df", "votes_df"]
