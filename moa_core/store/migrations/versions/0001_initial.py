"""First schema: run, generation, rating, vote.

Revision ID: 0001
Revises:
Create Date: 2025-11-21
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "run",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("question", sa.Text(), nullable=False),
        sa.Column("history", sa.JSON(), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("config_hash", sa.String(64), nullable=False),
        sa.Column("preset", sa.String(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("completion_tokens", sa.Integer(), nullable=False),
        sa.Column("cost", sa.Float(), nullable=False),
        sa.Column("wall_time", sa.Float(), nullable=True),
        sa.Column("question_set", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.CheckConstraint("status IN ('running', 'done', 'failed', 'cancelled')", name="ck_run_status"),
    )
    for col in ("created_at", "kind", "preset", "config_hash", "status", "question_set"):
        op.create_index(f"ix_run_{col}", "run", [col])

    op.create_table(
        "generation",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("call_id", sa.String(64), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("layer", sa.Integer(), nullable=False),
        sa.Column("slot", sa.Integer(), nullable=False),
        sa.Column("model", sa.String(), nullable=False),
        sa.Column("label", sa.String(), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("system_prompt", sa.Text(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("finish_reason", sa.String(), nullable=True),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("completion_tokens", sa.Integer(), nullable=False),
        sa.Column("cost", sa.Float(), nullable=False),
        sa.Column("ttft", sa.Float(), nullable=True),
        sa.Column("latency", sa.Float(), nullable=True),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.Column("ended_at", sa.Float(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.ForeignKeyConstraint(["run_id"], ["run.id"], name="fk_generation_run_id", ondelete="CASCADE"),
        sa.UniqueConstraint("run_id", "call_id", name="uq_generation_run_call"),
        sa.CheckConstraint("status IN ('streaming', 'done', 'error', 'cancelled')", name="ck_generation_status"),
    )
    op.create_index("ix_generation_model", "generation", ["model"])
    op.create_index("ix_generation_role", "generation", ["role"])

    op.create_table(
        "rating",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("generation_id", sa.Integer(), nullable=False),
        sa.Column("score", sa.Integer(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("rater", sa.String(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.ForeignKeyConstraint(
            ["generation_id"], ["generation.id"], name="fk_rating_generation_id", ondelete="CASCADE"
        ),
        sa.CheckConstraint("score >= 1 AND score <= 5", name="ck_rating_score"),
    )
    for col in ("generation_id", "created_at", "rater"):
        op.create_index(f"ix_rating_{col}", "rating", [col])

    op.create_table(
        "vote",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("left_generation_id", sa.Integer(), nullable=False),
        sa.Column("right_generation_id", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("blind", sa.Boolean(), nullable=False),
        sa.Column("rater", sa.String(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("run_id", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.ForeignKeyConstraint(
            ["left_generation_id"], ["generation.id"], name="fk_vote_left_generation_id", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["right_generation_id"], ["generation.id"], name="fk_vote_right_generation_id", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["run_id"], ["run.id"], name="fk_vote_run_id", ondelete="SET NULL"),
        sa.CheckConstraint("outcome IN ('left', 'right', 'tie', 'both_bad')", name="ck_vote_outcome"),
        sa.CheckConstraint("left_generation_id <> right_generation_id", name="ck_vote_distinct"),
    )
    for col in ("left_generation_id", "right_generation_id", "created_at", "rater", "run_id"):
        op.create_index(f"ix_vote_{col}", "vote", [col])


def downgrade() -> None:
    for table in ("vote", "rating", "generation", "run"):
        op.drop_table(table)
