"""Tables of the store. Times are Unix seconds (floats), like the engine's events.

Constraint and index names are explicit so the hand-written Alembic revisions match the
models exactly (a test compares them) and batch migrations on SQLite can address them.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, CheckConstraint, Column, ForeignKeyConstraint, Index, Table, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from moa_core.vocab import GenerationStatus, Role, RunStatus, VoteOutcome, values

RUN_KINDS = ("playground", "arena", "eval", "challenge")
# The CHECK constraints below are spelled from these tuples and the hand-written migrations
# spell the same words in the same order (a test compares them): a new member is a migration.
RUN_STATUSES = values(RunStatus)
GENERATION_STATUSES = values(GenerationStatus)
ROLES = values(Role)  # no CHECK on generation.role: a new stage's role needs no migration
VOTE_OUTCOMES = values(VoteOutcome)
JUDGE_PREFIX = "judge:"


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Run(SQLModel, table=True):
    __tablename__ = "run"
    __table_args__ = (
        CheckConstraint(_in("status", RUN_STATUSES), name="ck_run_status"),
        Index("ix_run_created_at", "created_at"),
        Index("ix_run_kind", "kind"),
        Index("ix_run_preset", "preset"),
        Index("ix_run_config_hash", "config_hash"),
        Index("ix_run_status", "status"),
        Index("ix_run_question_set", "question_set"),
    )

    id: str = Field(primary_key=True, max_length=64)
    created_at: float
    kind: str = Field(max_length=32)
    question: str = Field(sa_type=Text)
    history: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    config: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    config_hash: str = Field(default="", max_length=64)
    preset: str = ""
    status: str = Field(default="running", max_length=16)
    error: str | None = Field(default=None, sa_type=Text)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    wall_time: float | None = None
    question_set: str | None = None
    # Added in revision 0002.
    final_text: str | None = Field(default=None, sa_type=Text)
    tags: list[str] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    meta: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    # Added in revision 0004: which process records the run, and when it last said it is alive.
    owner: str | None = Field(default=None, max_length=255)
    heartbeat_at: float | None = None


class Generation(SQLModel, table=True):
    __tablename__ = "generation"
    __table_args__ = (
        ForeignKeyConstraint(["run_id"], ["run.id"], name="fk_generation_run_id", ondelete="CASCADE"),
        # Also serves lookups by run_id (leading column), so no separate index for it.
        UniqueConstraint("run_id", "call_id", name="uq_generation_run_call"),
        CheckConstraint(_in("status", GENERATION_STATUSES), name="ck_generation_status"),
        Index("ix_generation_model", "model"),
        Index("ix_generation_role", "role"),
    )

    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(max_length=64)
    call_id: str = Field(max_length=64)
    role: str = Field(max_length=16)
    layer: int
    slot: int
    model: str
    label: str = ""
    params: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    system_prompt: str = Field(default="", sa_type=Text)
    text: str = Field(default="", sa_type=Text)
    error: str | None = Field(default=None, sa_type=Text)
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    ttft: float | None = None
    latency: float | None = None
    started_at: float
    ended_at: float | None = None
    status: str = Field(default="streaming", max_length=16)
    # Added in revision 0003.
    deployment: str | None = None
    # Added in revision 0006: [[seconds since started_at, characters so far], ...] as the text
    # streamed (store.recorder.TIMING_BUCKET apart at most); NULL for older rows.
    timing: list[list[float]] | None = Field(default=None, sa_column=Column(JSON, nullable=True))


class Rating(SQLModel, table=True):
    __tablename__ = "rating"
    __table_args__ = (
        ForeignKeyConstraint(["generation_id"], ["generation.id"], name="fk_rating_generation_id", ondelete="CASCADE"),
        CheckConstraint("score >= 1 AND score <= 5", name="ck_rating_score"),
        Index("ix_rating_generation_id", "generation_id"),
        Index("ix_rating_created_at", "created_at"),
        Index("ix_rating_rater", "rater"),
    )

    id: int | None = Field(default=None, primary_key=True)
    generation_id: int
    score: int
    comment: str = Field(default="", sa_type=Text)
    rater: str
    created_at: float


class Vote(SQLModel, table=True):
    __tablename__ = "vote"
    __table_args__ = (
        ForeignKeyConstraint(
            ["left_generation_id"], ["generation.id"], name="fk_vote_left_generation_id", ondelete="CASCADE"
        ),
        ForeignKeyConstraint(
            ["right_generation_id"], ["generation.id"], name="fk_vote_right_generation_id", ondelete="CASCADE"
        ),
        ForeignKeyConstraint(["run_id"], ["run.id"], name="fk_vote_run_id", ondelete="SET NULL"),
        CheckConstraint(_in("outcome", VOTE_OUTCOMES), name="ck_vote_outcome"),
        CheckConstraint("left_generation_id <> right_generation_id", name="ck_vote_distinct"),
        Index("ix_vote_left_generation_id", "left_generation_id"),
        Index("ix_vote_right_generation_id", "right_generation_id"),
        Index("ix_vote_created_at", "created_at"),
        Index("ix_vote_rater", "rater"),
        Index("ix_vote_run_id", "run_id"),
        Index("ix_vote_question_set", "question_set"),
        # One vote per pair and rater, enforced here rather than in a session: two tabs
        # are two sessions. NULL keys (judge votes without a run) are never equal.
        Index("uq_vote_rater_pair", "rater", "pair_key", unique=True),
        Index("ix_vote_campaign_id", "campaign_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    left_generation_id: int
    right_generation_id: int
    outcome: str = Field(max_length=16)
    blind: bool = True
    rater: str
    created_at: float
    run_id: str | None = Field(default=None, max_length=64)
    # Added in revision 0002.
    question_set: str | None = None
    # Added in revision 0005: which pair the vote is about (`store.ratings.vote_pair_key`).
    pair_key: str | None = Field(default=None, max_length=160)
    # Added in revision 0007: the campaign the vote was cast in (`store.campaigns`).
    campaign_id: str | None = Field(default=None, max_length=64)


class Stage(SQLModel, table=True):
    """Revision 0008: what one pipeline stage of a run decided (the engine's LayerDone):
    which calls' answers the next stage used, which a quorum cut, and the stage's details
    (a review's orders, rankings and aggregate; a select's choice). Runs recorded before
    have no rows; their stages are read from the generations."""

    __tablename__ = "stage"
    __table_args__ = (
        ForeignKeyConstraint(["run_id"], ["run.id"], name="fk_stage_run_id", ondelete="CASCADE"),
        UniqueConstraint("run_id", "layer", name="uq_stage_run_layer"),
    )

    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(max_length=64)
    layer: int
    kind: str = Field(max_length=16)
    ok: int = 0
    failed: int = 0
    used: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    cut: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    details: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    ended_at: float


CAMPAIGN_SELECTIONS = ("informative", "uniform")
ASSIGNMENT_STATUSES = ("open", "voted", "skipped", "expired")


class Campaign(SQLModel, table=True):
    """Revision 0007: a question set x contenders rated by people, pair by pair."""

    __tablename__ = "campaign"
    __table_args__ = (CheckConstraint(_in("selection", CAMPAIGN_SELECTIONS), name="ck_campaign_selection"),)

    id: str = Field(primary_key=True, max_length=64)
    name: str
    created_at: float
    question_set: str | None = None
    evaluation: str | None = None
    target_votes: int = 1
    instructions: str = Field(default="", sa_type=Text)
    selection: str = Field(default="informative", max_length=16)
    double_rate: float = 0.1
    repeat_rate: float = 0.03
    claim_seconds: float = 600.0


class CampaignPair(SQLModel, table=True):
    """Two answers to one question. ``filled`` counts the vote slots taken (votes cast plus
    claims open), kept beside ``needed`` so picking the next pair reads one indexed table."""

    __tablename__ = "campaign_pair"
    __table_args__ = (
        ForeignKeyConstraint(["campaign_id"], ["campaign.id"], name="fk_campaign_pair_campaign_id", ondelete="CASCADE"),
        ForeignKeyConstraint(["a_generation_id"], ["generation.id"], name="fk_campaign_pair_a", ondelete="CASCADE"),
        ForeignKeyConstraint(["b_generation_id"], ["generation.id"], name="fk_campaign_pair_b", ondelete="CASCADE"),
        UniqueConstraint("campaign_id", "a_generation_id", "b_generation_id", name="uq_campaign_pair"),
        Index("ix_campaign_pair_fill", "campaign_id", "filled"),
    )

    id: int | None = Field(default=None, primary_key=True)
    campaign_id: str = Field(max_length=64)
    question_id: str
    category: str | None = None
    a_contender: str
    b_contender: str
    a_generation_id: int
    b_generation_id: int
    needed: int = 1
    filled: int = 0
    # Votes cast on the pair and the first answer's share of them (ties and both-bad count
    # half), kept with each vote so the contenders' intervals are a sum over pairs.
    votes: int = 0
    a_score: float = 0.0


class CampaignAssignment(SQLModel, table=True):
    """A pair given to a rater. While open or voted it holds one of the pair's ``needed``
    slots; the unique slot index is what stops two sessions from claiming the same vote.
    A skipped or expired claim gives its slot back (slot NULL) but stays, so the rater is
    never offered that pair again. A repeat (``is_repeat``) holds no slot: its outcome is
    kept here, not as a second vote, so leaderboards count each rater once per pair."""

    __tablename__ = "campaign_assignment"
    __table_args__ = (
        ForeignKeyConstraint(
            ["campaign_id"], ["campaign.id"], name="fk_campaign_assignment_campaign_id", ondelete="CASCADE"
        ),
        ForeignKeyConstraint(
            ["pair_id"], ["campaign_pair.id"], name="fk_campaign_assignment_pair_id", ondelete="CASCADE"
        ),
        ForeignKeyConstraint(["vote_id"], ["vote.id"], name="fk_campaign_assignment_vote_id", ondelete="SET NULL"),
        CheckConstraint(_in("status", ASSIGNMENT_STATUSES), name="ck_campaign_assignment_status"),
        Index("uq_campaign_assignment_slot", "pair_id", "slot", unique=True),
        Index("uq_campaign_assignment_rater", "pair_id", "rater", "is_repeat", unique=True),
        Index("ix_campaign_assignment_rater", "campaign_id", "rater"),
        Index("ix_campaign_assignment_status", "campaign_id", "status"),
    )

    id: int | None = Field(default=None, primary_key=True)
    campaign_id: str = Field(max_length=64)
    pair_id: int
    rater: str
    slot: int | None = None
    is_repeat: bool = False
    a_left: bool = True
    status: str = Field(default="open", max_length=16)
    claimed_at: float
    expires_at: float
    done_at: float | None = None
    # In the pair's stored order ("a", "b", "tie", "both_bad"), whichever side each was shown on.
    outcome: str | None = Field(default=None, max_length=16)
    comment: str = Field(default="", sa_type=Text)
    reason: str | None = None
    vote_id: int | None = None


def table_of(model: type[SQLModel]) -> Table:
    """The Core table behind a table model. `Model.__table__` is set by SQLAlchemy's
    metaclass and invisible to type checkers; the metadata lookup is typed."""
    return SQLModel.metadata.tables[str(model.__tablename__)]


__all__ = [
    "ASSIGNMENT_STATUSES",
    "CAMPAIGN_SELECTIONS",
    "GENERATION_STATUSES",
    "JUDGE_PREFIX",
    "ROLES",
    "RUN_KINDS",
    "RUN_STATUSES",
    "VOTE_OUTCOMES",
    "Campaign",
    "CampaignAssignment",
    "CampaignPair",
    "Generation",
    "Rating",
    "Run",
    "Stage",
    "Vote",
    "table_of",
]
