"""Human and judge feedback: 1..5 ratings of one generation, pairwise votes of two."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, Engine, insert, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from moa_core.store.db import StoreError, write_transaction
from moa_core.store.models import JUDGE_PREFIX, VOTE_OUTCOMES, Generation, Rating, Run, Vote, table_of
from moa_core.store.util import inserted_id, one_line

GEN, VOTE = table_of(Generation), table_of(Vote)


class DuplicateVoteError(StoreError):
    """This rater has already voted on this pair; `vote_id` is the vote that counts."""

    def __init__(self, rater: str, vote_id: int) -> None:
        super().__init__(f"{rater} has already voted on this pair: only the first vote counts")
        self.rater = rater
        self.vote_id = vote_id


def vote_pair_key(left_id: int, right_id: int, rater: str, run_id: str | None = None) -> str | None:
    """The key that makes a second vote of one rater on one pair collide in the database.

    Order-independent: swapping the sides is the same pair. People get one vote per pair,
    wherever it is cast (battle, blind review, any later campaign). A judge's vote is tied
    to its judgement run instead: an evaluation judges each pair once per judge config,
    in both orders inside one run (``evaluation.judge_call``), and stores one vote per
    run; a changed judge config with the same model (so the same ``judge:<model>`` rater)
    re-judges the same answers in a new run, which must get its vote too.
    """
    low, high = sorted((int(left_id), int(right_id)))
    key = f"{low}:{high}"
    if rater.startswith(JUDGE_PREFIX):
        return f"{key}@{run_id}" if run_id else None
    return key


def _rater(rater: str) -> str:
    name = (rater or "").strip() if isinstance(rater, str) else ""
    if not name:
        raise ValueError("rater must be a non-empty name (a person, or 'judge:<model>')")
    return name


def _require(conn: Connection, table: Any, key: Any, what: str) -> None:
    if conn.execute(select(table.c.id).where(table.c.id == key)).first() is None:
        raise ValueError(f"{what} {key} does not exist")


def _insert(
    engine: Engine,
    what: str,
    check: Any,
    row: dict[str, Any],
    table: Any,
    then: Callable[[Connection, int], None] | None = None,
) -> int:
    try:
        with write_transaction(engine) as conn:
            check(conn)
            new_id = inserted_id(conn.execute(insert(table).values(**row)))
            if then is not None:
                then(conn, new_id)
            return new_id
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
    campaign_id: str | None = None,
    then: Callable[[Connection, int], None] | None = None,
) -> int:
    """Store a pairwise vote; returns the vote id.

    `outcome` is left|right|tie|both_bad (both_bad: neither answer is acceptable, which
    is not the same as a tie). `rater` is a person's name or "judge:<model>". A second
    vote of the same rater on the same pair raises `DuplicateVoteError` (see `vote_pair_key`).
    `then(conn, vote_id)` runs inside the same transaction (a campaign closes its claim
    there, so a vote and its claim are written together or not at all); it may raise.
    """
    if outcome not in VOTE_OUTCOMES:
        raise ValueError(f"outcome must be one of {', '.join(VOTE_OUTCOMES)}, got {outcome!r}")
    left, right = int(left_id), int(right_id)
    if left == right:
        raise ValueError("a vote needs two different generations")
    who = _rater(rater)
    key = vote_pair_key(left, right, who, run_id)
    row = {
        "left_generation_id": left,
        "right_generation_id": right,
        "outcome": outcome,
        "blind": bool(blind),
        "rater": who,
        "created_at": time.time(),
        "question_set": question_set,
        "run_id": run_id,
        "pair_key": key,
        "campaign_id": campaign_id,
    }

    def check(conn: Connection) -> None:
        _require(conn, GEN, row["left_generation_id"], "generation")
        _require(conn, GEN, row["right_generation_id"], "generation")
        if run_id is not None:
            _require(conn, table_of(Run), run_id, "run")

    try:
        return _insert(engine, "vote", check, row, VOTE, then)
    except StoreError as exc:
        # The unique index decides (two tabs may insert at the same moment); which
        # constraint failed is read back rather than parsed from driver messages.
        first = _vote_with_key(engine, who, key) if isinstance(exc.__cause__, IntegrityError) else None
        if first is None:
            raise
        raise DuplicateVoteError(who, first) from None


def _vote_with_key(engine: Engine, rater: str, key: str | None) -> int | None:
    if key is None:
        return None
    try:
        with engine.connect() as conn:
            found = conn.execute(select(VOTE.c.id).where(VOTE.c.rater == rater, VOTE.c.pair_key == key)).first()
    except SQLAlchemyError:
        return None
    return None if found is None else int(found[0])


__all__ = ["DuplicateVoteError", "add_rating", "add_vote", "vote_pair_key"]
