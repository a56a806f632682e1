"""Rating campaigns in the database: pairs to rate, claims on them, votes, skips, progress.

Every pair has ``needed`` vote slots (the campaign's target, plus one for a share of pairs
picked for a second rater). A rater asking for a pair claims a slot by inserting an
assignment row; the unique index on (pair, slot) makes two sessions unable to hold the
same slot, on SQLite and PostgreSQL alike, and the unique index on (pair, rater) means a
rater is never offered a pair twice (a skip counts). A claim left open past its expiry
is given back to the pool by the next rater who asks.

Next pair, informative mode: among the pairs this rater may take, those with the fewest
slots taken; among them, the pair whose two contenders' win-rate intervals (Wilson 95 %,
ties counted half, from this campaign's votes) overlap most, ties broken at random.
Uniform mode: any pair with a free slot, at random.
"""

from __future__ import annotations

import math
import random
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import Connection, Engine, and_, exists, func, insert, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from moa_core.store.db import StoreError, safe_url, write_transaction
from moa_core.store.models import (
    CAMPAIGN_SELECTIONS,
    VOTE_OUTCOMES,
    Campaign,
    CampaignAssignment,
    CampaignPair,
    Generation,
    Run,
    table_of,
)
from moa_core.store.ratings import DuplicateVoteError, _rater, add_vote
from moa_core.store.util import inserted_id, one_line
from moa_core.vocab import VoteOutcome

CAMP, PAIR, ASG = table_of(Campaign), table_of(CampaignPair), table_of(CampaignAssignment)
GEN, RUN = table_of(Generation), table_of(Run)
REASON_TAGS = ("more accurate", "more complete", "clearer", "better format", "safer", "other")
# A rater gets repeats only of pairs voted at least this many votes ago, so memory fades.
REPEAT_GAP = 5
_CANDIDATES = 400
_CLAIM_RETRIES = 20


class ClaimLostError(StoreError):
    """The assignment is no longer this rater's to vote on (expired and taken, or already used)."""


@dataclass(frozen=True)
class PairSpec:
    """One pair of answers to one question, as a campaign is created from."""

    question_id: str
    a_contender: str
    b_contender: str
    a_generation_id: int
    b_generation_id: int
    category: str | None = None


@dataclass(frozen=True)
class CampaignInfo:
    id: str
    name: str
    created_at: float
    question_set: str | None
    evaluation: str | None
    target_votes: int
    instructions: str
    selection: str
    double_rate: float
    repeat_rate: float
    claim_seconds: float


@dataclass(frozen=True)
class Assignment:
    """A pair as shown to one rater: ``left``/``right`` are generation ids in shown order."""

    id: int
    campaign_id: str
    pair_id: int
    rater: str
    is_repeat: bool
    question_id: str
    left_generation_id: int
    right_generation_id: int
    left_contender: str
    right_contender: str
    expires_at: float


@dataclass(frozen=True)
class RaterProgress:
    rater: str
    votes: int
    skips: int
    repeats: int


@dataclass(frozen=True)
class CampaignProgress:
    pairs: int
    votes: int
    target: int
    pairs_done: int
    open_claims: int
    uncertain_pairs: int
    contenders: int
    raters: list[RaterProgress] = field(default_factory=list)

    @property
    def fraction(self) -> float:
        return min(1.0, self.votes / self.target) if self.target else 1.0


def _validate(target_votes: int, selection: str, double_rate: float, repeat_rate: float, claim_seconds: float) -> None:
    if isinstance(target_votes, bool) or not isinstance(target_votes, int) or not 1 <= target_votes <= 100:
        raise ValueError(f"target votes per pair must be an integer from 1 to 100, got {target_votes!r}")
    if selection not in CAMPAIGN_SELECTIONS:
        raise ValueError(f"selection must be one of {', '.join(CAMPAIGN_SELECTIONS)}, got {selection!r}")
    for what, rate in (("double-rated share", double_rate), ("repeat share", repeat_rate)):
        if not 0.0 <= float(rate) <= 1.0:
            raise ValueError(f"{what} must be between 0 and 1, got {rate!r}")
    if not float(claim_seconds) > 0:
        raise ValueError(f"claim time must be positive, got {claim_seconds!r}")


def create_campaign(
    engine: Engine,
    name: str,
    pairs: Sequence[PairSpec],
    *,
    target_votes: int = 1,
    instructions: str = "",
    selection: str = "informative",
    double_rate: float = 0.1,
    repeat_rate: float = 0.03,
    claim_seconds: float = 600.0,
    question_set: str | None = None,
    evaluation: str | None = None,
    seed: int | None = None,
) -> str:
    """Store a campaign and its pairs; returns its id. Bad input -> ValueError."""
    title = (name or "").strip()
    if not title:
        raise ValueError("a campaign needs a name")
    _validate(target_votes, selection, double_rate, repeat_rate, claim_seconds)
    if not pairs:
        raise ValueError("a campaign needs at least one pair of answers to rate")
    rng = random.Random(seed)
    cid = f"c-{secrets.token_hex(4)}"
    # Exactly round(share x pairs) pairs get a second rater, so the share is what was asked.
    doubled = set(rng.sample(range(len(pairs)), round(double_rate * len(pairs))))
    rows = [
        {
            "campaign_id": cid,
            "question_id": p.question_id,
            "category": p.category,
            "a_contender": p.a_contender,
            "b_contender": p.b_contender,
            "a_generation_id": int(p.a_generation_id),
            "b_generation_id": int(p.b_generation_id),
            "needed": target_votes + (1 if i in doubled else 0),
            "filled": 0,
            "votes": 0,
            "a_score": 0.0,
        }
        for i, p in enumerate(pairs)
    ]
    try:
        with write_transaction(engine) as conn:
            conn.execute(
                insert(CAMP).values(
                    id=cid,
                    name=title,
                    created_at=time.time(),
                    question_set=question_set,
                    evaluation=evaluation,
                    target_votes=target_votes,
                    instructions=(instructions or "").strip(),
                    selection=selection,
                    double_rate=float(double_rate),
                    repeat_rate=float(repeat_rate),
                    claim_seconds=float(claim_seconds),
                )
            )
            for i in range(0, len(rows), 500):
                conn.execute(insert(PAIR), rows[i : i + 500])
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot save campaign: {one_line(exc)}") from exc
    return cid


def _info(row: object) -> CampaignInfo:
    m = row._mapping  # type: ignore[attr-defined]  # SQLAlchemy Row; typed as object so callers pass any row
    return CampaignInfo(**{k: m[k] for k in CampaignInfo.__dataclass_fields__})


def get_campaign(engine: Engine, campaign_id: str) -> CampaignInfo | None:
    try:
        with engine.connect() as conn:
            row = conn.execute(select(CAMP).where(CAMP.c.id == campaign_id)).first()
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot read {safe_url(engine)}: {one_line(exc)}") from exc
    return None if row is None else _info(row)


def list_campaigns(engine: Engine) -> list[CampaignInfo]:
    """Every campaign, newest first."""
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(CAMP).order_by(CAMP.c.created_at.desc())).all()
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot read {safe_url(engine)}: {one_line(exc)}") from exc
    return [_info(r) for r in rows]


def _wilson(score: float, n: float) -> tuple[float, float]:
    if n <= 0:
        return 0.0, 1.0
    z = 1.96
    p = score / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def contender_intervals(conn: Connection, campaign_id: str) -> dict[str, tuple[float, float]]:
    """Contender -> Wilson 95 % interval of its win rate in this campaign's votes (ties half)."""
    stmt = (
        select(PAIR.c.a_contender, PAIR.c.b_contender, func.sum(PAIR.c.votes), func.sum(PAIR.c.a_score))
        .where(PAIR.c.campaign_id == campaign_id, PAIR.c.votes > 0)
        .group_by(PAIR.c.a_contender, PAIR.c.b_contender)
    )
    score: dict[str, float] = {}
    games: dict[str, float] = {}
    for a, b, n, a_score in conn.execute(stmt):
        for who, won in ((a, float(a_score)), (b, float(n) - float(a_score))):
            games[who] = games.get(who, 0.0) + float(n)
            score[who] = score.get(who, 0.0) + won
    return {c: _wilson(score[c], n) for c, n in games.items()}


def _overlap(ci: dict[str, tuple[float, float]], a: str, b: str) -> float:
    la, ua = ci.get(a, (0.0, 1.0))
    lb, ub = ci.get(b, (0.0, 1.0))
    return max(0.0, min(ua, ub) - max(la, lb))


def _assignment(conn: Connection, asg_id: int) -> Assignment:
    row = (
        conn.execute(
            select(
                ASG.c.id,
                ASG.c.campaign_id,
                ASG.c.pair_id,
                ASG.c.rater,
                ASG.c.is_repeat,
                ASG.c.a_left,
                ASG.c.expires_at,
                PAIR.c.question_id,
                PAIR.c.a_generation_id,
                PAIR.c.b_generation_id,
                PAIR.c.a_contender,
                PAIR.c.b_contender,
            )
            .select_from(ASG.join(PAIR, ASG.c.pair_id == PAIR.c.id))
            .where(ASG.c.id == asg_id)
        )
        .one()
        ._mapping
    )
    a = (int(row["a_generation_id"]), str(row["a_contender"]))
    b = (int(row["b_generation_id"]), str(row["b_contender"]))
    left, right = (a, b) if row["a_left"] else (b, a)
    return Assignment(
        id=int(row["id"]),
        campaign_id=str(row["campaign_id"]),
        pair_id=int(row["pair_id"]),
        rater=str(row["rater"]),
        is_repeat=bool(row["is_repeat"]),
        question_id=str(row["question_id"]),
        left_generation_id=left[0],
        right_generation_id=right[0],
        left_contender=left[1],
        right_contender=right[1],
        expires_at=float(row["expires_at"]),
    )


def _expire(conn: Connection, campaign_id: str, now: float) -> None:
    stale = conn.execute(
        select(ASG.c.id, ASG.c.pair_id, ASG.c.slot).where(
            ASG.c.campaign_id == campaign_id, ASG.c.status == "open", ASG.c.expires_at < now
        )
    ).all()
    for asg_id, pair_id, slot in stale:
        # Guarded by status: another session expiring the same claim must not count it twice.
        done = conn.execute(
            update(ASG)
            .where(ASG.c.id == asg_id, ASG.c.status == "open")
            .values(status="expired", slot=None, done_at=now)
        )
        if done.rowcount == 1 and slot is not None:
            conn.execute(update(PAIR).where(PAIR.c.id == pair_id).values(filled=PAIR.c.filled - 1))


def _repeat_candidate(conn: Connection, camp: CampaignInfo, rater: str, rng: random.Random) -> int | None:
    done = conn.execute(
        select(ASG.c.pair_id)
        .where(
            ASG.c.campaign_id == camp.id,
            ASG.c.rater == rater,
            ASG.c.status == "voted",
            ASG.c.is_repeat.is_(False),
        )
        .order_by(ASG.c.done_at)
    ).all()
    older = [int(r[0]) for r in done[:-REPEAT_GAP]] if len(done) > REPEAT_GAP else []
    if not older:
        return None
    repeated = {
        int(r[0])
        for r in conn.execute(
            select(ASG.c.pair_id).where(ASG.c.campaign_id == camp.id, ASG.c.rater == rater, ASG.c.is_repeat.is_(True))
        )
    }
    fresh = [p for p in older if p not in repeated]
    return rng.choice(fresh) if fresh else None


def _pick_pair(conn: Connection, camp: CampaignInfo, rater: str, rng: random.Random) -> int | None:
    mine = exists().where(ASG.c.pair_id == PAIR.c.id, ASG.c.rater == rater, ASG.c.is_repeat.is_(False))
    free = and_(PAIR.c.campaign_id == camp.id, PAIR.c.filled < PAIR.c.needed, ~mine)
    if camp.selection == "uniform":
        row = conn.execute(select(PAIR.c.id).where(free).order_by(func.random()).limit(1)).first()
        return None if row is None else int(row[0])
    rows = conn.execute(
        select(PAIR.c.id, PAIR.c.a_contender, PAIR.c.b_contender, PAIR.c.filled)
        .where(free)
        .order_by(PAIR.c.filled, PAIR.c.id)
        .limit(_CANDIDATES)
    ).all()
    if not rows:
        return None
    fewest = [r for r in rows if r[3] == rows[0][3]]
    ci = contender_intervals(conn, camp.id)
    scored = [(_overlap(ci, r[1], r[2]), rng.random(), int(r[0])) for r in fewest]
    return max(scored)[2]


class _Taken(Exception):
    """The pair filled up between choosing it and claiming a slot (PostgreSQL: no global writer lock)."""


def _free_slot(conn: Connection, pair_id: int) -> int:
    needed = int(conn.execute(select(PAIR.c.needed).where(PAIR.c.id == pair_id)).scalar_one())
    taken = {
        int(r[0]) for r in conn.execute(select(ASG.c.slot).where(ASG.c.pair_id == pair_id, ASG.c.slot.is_not(None)))
    }
    free = [s for s in range(needed) if s not in taken]
    if not free:
        raise _Taken
    return free[0]


def claim_next(
    engine: Engine, campaign_id: str, rater: str, *, now: float | None = None, rng: random.Random | None = None
) -> Assignment | None:
    """The rater's open claim in this campaign, else a newly claimed pair; None when the
    rater has nothing left to rate. The claim is a database row (see the module doc)."""
    who = _rater(rater)
    camp = get_campaign(engine, campaign_id)
    if camp is None:
        raise ValueError(f"campaign {campaign_id!r} does not exist")
    rng = rng or random.Random()
    for attempt in range(_CLAIM_RETRIES):
        t = time.time() if now is None else now
        try:
            with write_transaction(engine) as conn:
                mine = conn.execute(
                    select(ASG.c.id)
                    .where(
                        ASG.c.campaign_id == camp.id,
                        ASG.c.rater == who,
                        ASG.c.status == "open",
                        ASG.c.expires_at >= t,
                    )
                    .order_by(ASG.c.id)
                    .limit(1)
                ).first()
                if mine is not None:
                    return _assignment(conn, int(mine[0]))
                _expire(conn, camp.id, t)
                repeat = rng.random() < camp.repeat_rate
                pair_id = _repeat_candidate(conn, camp, who, rng) if repeat else None
                slot: int | None = None
                if pair_id is None:
                    repeat = False
                    pair_id = _pick_pair(conn, camp, who, rng)
                    if pair_id is None:
                        return None
                    slot = _free_slot(conn, pair_id)
                asg_id = inserted_id(
                    conn.execute(
                        insert(ASG).values(
                            campaign_id=camp.id,
                            pair_id=pair_id,
                            rater=who,
                            slot=slot,
                            is_repeat=repeat,
                            a_left=rng.random() < 0.5,
                            status="open",
                            claimed_at=t,
                            expires_at=t + camp.claim_seconds,
                            comment="",
                        )
                    )
                )
                if slot is not None:
                    conn.execute(update(PAIR).where(PAIR.c.id == pair_id).values(filled=PAIR.c.filled + 1))
                return _assignment(conn, asg_id)
        except (IntegrityError, _Taken):
            # Another session took the same slot first (PostgreSQL: no global writer lock;
            # the unique slot index refused the second). Try again, a little later.
            if attempt == _CLAIM_RETRIES - 1:
                raise StoreError("cannot claim a pair: too many sessions at once, try again") from None
            time.sleep(rng.random() * 0.01 * (attempt + 1))
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot claim a pair: {one_line(exc)}") from exc
    return None  # unreachable: the last attempt returns or raises


# (outcome as shown, pair shown in its stored order?) -> the pair's side that won
_SHOWN_TO_PAIR: dict[tuple[str, bool], str] = {
    (VoteOutcome.LEFT, True): "a",
    (VoteOutcome.RIGHT, True): "b",
    (VoteOutcome.LEFT, False): "b",
    (VoteOutcome.RIGHT, False): "a",
}


def _close(conn: Connection, asg_id: int, rater: str, values: dict[str, object]) -> None:
    done = conn.execute(
        update(ASG).where(ASG.c.id == asg_id, ASG.c.rater == rater, ASG.c.status == "open").values(**values)
    )
    if done.rowcount != 1:
        raise ClaimLostError("this pair is no longer yours to rate (its claim expired or was already used)")


def vote(
    engine: Engine, assignment_id: int, rater: str, outcome: str, comment: str = "", reason: str | None = None
) -> int | None:
    """Record the rater's verdict on an open assignment; `outcome` is as shown
    (left|right|tie|both_bad). Returns the vote id (None for a repeat, which is kept on
    the assignment only). Raises ClaimLostError, DuplicateVoteError, ValueError."""
    who = _rater(rater)
    if outcome not in VOTE_OUTCOMES:
        raise ValueError(f"outcome must be one of {', '.join(VOTE_OUTCOMES)}, got {outcome!r}")
    if reason is not None and reason not in REASON_TAGS:
        raise ValueError(f"reason must be one of {', '.join(REASON_TAGS)}, got {reason!r}")
    try:
        with engine.connect() as conn:
            row = conn.execute(select(ASG).where(ASG.c.id == int(assignment_id))).first()
            if row is None or row._mapping["rater"] != who:
                raise ClaimLostError("this pair is not yours to rate")
            asg = _assignment(conn, int(assignment_id))
            a_left = bool(row._mapping["a_left"])
            qs = conn.execute(select(CAMP.c.question_set).where(CAMP.c.id == asg.campaign_id)).scalar_one()
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot read {safe_url(engine)}: {one_line(exc)}") from exc
    pair_outcome = _SHOWN_TO_PAIR.get((outcome, a_left), outcome)
    values: dict[str, object] = {
        "status": "voted",
        "outcome": pair_outcome,
        "comment": (comment or "").strip(),
        "reason": reason,
        "done_at": time.time(),
    }
    if asg.is_repeat:
        try:
            with write_transaction(engine) as conn:
                _close(conn, asg.id, who, values)
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot save vote: {one_line(exc)}") from exc
        return None

    def close(conn: Connection, vote_id: int) -> None:
        _close(conn, asg.id, who, {**values, "vote_id": vote_id})
        gained = {"a": 1.0, "b": 0.0}.get(pair_outcome, 0.5)
        conn.execute(
            update(PAIR).where(PAIR.c.id == asg.pair_id).values(votes=PAIR.c.votes + 1, a_score=PAIR.c.a_score + gained)
        )

    try:
        return add_vote(
            engine,
            asg.left_generation_id,
            asg.right_generation_id,
            outcome,
            who,
            blind=True,
            question_set=qs,
            campaign_id=asg.campaign_id,
            then=close,
        )
    except DuplicateVoteError:
        # Voted on these two answers elsewhere (Arena, blind review): that vote counts,
        # and this slot goes back to the pool.
        skip(engine, asg.id, who)
        raise


def skip(engine: Engine, assignment_id: int, rater: str) -> None:
    """Give the pair back; the skip is recorded and the pair is not offered to this rater again."""
    who = _rater(rater)
    try:
        with write_transaction(engine) as conn:
            row = conn.execute(select(ASG.c.pair_id, ASG.c.slot).where(ASG.c.id == int(assignment_id))).first()
            if row is None:
                raise ClaimLostError("this pair is not yours to rate")
            _close(conn, int(assignment_id), who, {"status": "skipped", "slot": None, "done_at": time.time()})
            if row[1] is not None:
                conn.execute(update(PAIR).where(PAIR.c.id == row[0]).values(filled=PAIR.c.filled - 1))
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot save skip: {one_line(exc)}") from exc


def pair_texts(engine: Engine, assignment: Assignment) -> tuple[str, str, str]:
    """(question, left answer, right answer) of an assignment, as stored."""
    try:
        with engine.connect() as conn:
            rows = dict(
                conn.execute(
                    select(GEN.c.id, GEN.c.text).where(
                        GEN.c.id.in_([assignment.left_generation_id, assignment.right_generation_id])
                    )
                ).all()
            )
            question = conn.execute(
                select(RUN.c.question)
                .select_from(GEN.join(RUN, GEN.c.run_id == RUN.c.id))
                .where(GEN.c.id == assignment.left_generation_id)
            ).scalar()
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot read {safe_url(engine)}: {one_line(exc)}") from exc
    return (
        str(question or ""),
        str(rows.get(assignment.left_generation_id, "")),
        str(rows.get(assignment.right_generation_id, "")),
    )


def progress(engine: Engine, campaign_id: str) -> CampaignProgress:
    """Votes against the target, pairs complete, claims open, contender pairs whose
    intervals still overlap, and per rater votes, skips and repeats."""
    try:
        with engine.connect() as conn:
            pairs, target = conn.execute(
                select(func.count(), func.coalesce(func.sum(PAIR.c.needed), 0)).where(PAIR.c.campaign_id == campaign_id)
            ).one()
            per_pair = (
                select(ASG.c.pair_id, func.count().label("n"))
                .where(ASG.c.campaign_id == campaign_id, ASG.c.status == "voted", ASG.c.is_repeat.is_(False))
                .group_by(ASG.c.pair_id)
                .subquery()
            )
            pairs_done = conn.execute(
                select(func.count())
                .select_from(per_pair.join(PAIR, PAIR.c.id == per_pair.c.pair_id))
                .where(per_pair.c.n >= PAIR.c.needed)
            ).scalar_one()
            counts = conn.execute(
                select(ASG.c.rater, ASG.c.status, ASG.c.is_repeat, func.count())
                .where(ASG.c.campaign_id == campaign_id)
                .group_by(ASG.c.rater, ASG.c.status, ASG.c.is_repeat)
            ).all()
            ci = contender_intervals(conn, campaign_id)
            names = sorted(
                {
                    r[0]
                    for r in conn.execute(
                        select(PAIR.c.a_contender).where(PAIR.c.campaign_id == campaign_id).distinct()
                    )
                }
                | {
                    r[0]
                    for r in conn.execute(
                        select(PAIR.c.b_contender).where(PAIR.c.campaign_id == campaign_id).distinct()
                    )
                }
            )
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot read {safe_url(engine)}: {one_line(exc)}") from exc
    per: dict[str, dict[str, int]] = {}
    votes = open_claims = 0
    for rater, status, is_repeat, n in counts:
        d = per.setdefault(rater, {"votes": 0, "skips": 0, "repeats": 0})
        if status == "voted" and is_repeat:
            d["repeats"] += n
        elif status == "voted":
            d["votes"] += n
            votes += n
        elif status == "skipped":
            d["skips"] += n
        elif status == "open":
            open_claims += n
    uncertain = sum(1 for i, a in enumerate(names) for b in names[i + 1 :] if _overlap(ci, a, b) > 0)
    return CampaignProgress(
        pairs=int(pairs),
        votes=votes,
        target=int(target),
        pairs_done=int(pairs_done),
        open_claims=open_claims,
        uncertain_pairs=uncertain,
        contenders=len(names),
        raters=[RaterProgress(r, **d) for r, d in sorted(per.items())],
    )


__all__ = [
    "REASON_TAGS",
    "Assignment",
    "CampaignInfo",
    "CampaignProgress",
    "ClaimLostError",
    "PairSpec",
    "RaterProgress",
    "claim_next",
    "contender_intervals",
    "create_campaign",
    "get_campaign",
    "list_campaigns",
    "pair_texts",
    "progress",
    "skip",
    "vote",
]
