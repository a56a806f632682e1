"""Human and judge feedback: 1..5 ratings of one generation, pairwise votes of two."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Connection, Engine, insert, select
from sqlalchemy.exc import SQLAlchemyError

from moa_core.store.db import StoreError, write_transaction
from moa_core.store.models import VOTE_OUTCOMES, Generation, Rating, Run, Vote, table_of
from moa_core.store.util import one_line

GEN = table_of(Generation)


def _rater(rater: str) -> str:
    name = (rater or "").strip() if isinstance(rater, str) else ""
    if not name:
        raise ValueError("rater must be a non-empty name (a person, or 'judge:<model>')")
    return name


def _require(conn: Connection, table: Any, key: Any, what: str) -> None:
    if conn.execute(select(table.c.id).where(table.c.id == key)).first() is None:
        raise ValueError(f"{what} {key} does not exist")


def _insert(engine: Engine, what: str, check: Any, row: dict[str, Any], table: Any) -> int:
    try:
        with write_transaction(engine) as conn:
            check(conn)
            return int(conn.execute(insert(table).values(**row)).inserted_primary_key[0])
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot save {what}: {one_line(exc)}") from exc


def add_rating(engine: Engine, generation_id: int, score: int, comment: str = "", rater: str = "") -> int:
    """Store a 1..5 rating of one generation; returns the rating id. Bad input -> ValueError."""
    if isinstance(score, bool) or not isinstance(score, int) or not 1 <= score <= 5:
        raise ValueError(f"score must be an integer from 1 to 5, got {score!r}")
    row = {
        "generation_id": int(generation_id),
        "score": score,
        "comment": (comment or "").strip(),
        "rater": _rater(rater),
        "created_at": time.time(),
    }
    return _insert(
        engine, "rating", lambda c: _require(c, GEN, row["generation_id"], "generation"), row, table_of(Rating)
    )


def add_vote(
    engine: Engine,
    left_id: int,
    right_id: int,
    outcome: str,
    rater: str,
    blind: bool = True,
    question_set: str | None = None,
    run_id: str | None = None,
) -> int:
    """Store a pairwise vote; returns the vote id.

    `outcome` is left|right|tie|both_bad (both_bad: neither answer is acceptable, which
    is not the same as a tie). `rater` is a person's name or "judge:<model>".
    """
    if outcome not in VOTE_OUTCOMES:
        raise ValueError(f"outcome must be one of {', '.join(VOTE_OUTCOMES)}, got {outcome!r}")
    if int(left_id) == int(right_id):
        raise ValueError("a vote needs two different generations")
    row = {
        "left_generation_id": int(left_id),
        "right_generation_id": int(right_id),
        "outcome": outcome,
        "blind": bool(blind),
        "rater": _rater(rater),
        "created_at": time.time(),
        "question_set": question_set,
        "run_id": run_id,
    }

    def check(conn: Connection) -> None:
        _require(conn, GEN, row["left_generation_id"], "generation")
        _require(conn, GEN, row["right_generation_id"], "generation")
        if run_id is not None:
            _require(conn, table_of(Run), run_id, "run")

    return _insert(engine, "vote", check, row, table_of(Vote))


__all__ = ["add_rating", "add_vote"]
