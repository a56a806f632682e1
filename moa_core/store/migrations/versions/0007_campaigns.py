"""Rating campaigns: campaign, campaign_pair, campaign_assignment; vote.campaign_id.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "campaign",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("question_set", sa.String(), nullable=True),
        sa.Column("evaluation", sa.String(), nullable=True),
        sa.Column("target_votes", sa.Integer(), nullable=False),
        sa.Column("instructions", sa.Text(), nullable=False),
        sa.Column("selection", sa.String(16), nullable=False),
        sa.Column("double_rate", sa.Float(), nullable=False),
        sa.Column("repeat_rate", sa.Float(), nullable=False),
        sa.Column("claim_seconds", sa.Float(), nullable=False),
        sa.CheckConstraint("selection IN ('informative', 'uniform')", name="ck_campaign_selection"),
    )
    op.create_table(
        "campaign_pair",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("campaign_id", sa.String(64), nullable=False),
        sa.Column("question_id", sa.String(), nullable=False),
        sa.Column("category", sa.String(), nullable=True),
        sa.Column("a_contender", sa.String(), nullable=False),
        sa.Column("b_contender", sa.String(), nullable=False),
        sa.Column("a_generation_id", sa.Integer(), nullable=False),
        sa.Column("b_generation_id", sa.Integer(), nullable=False),
        sa.Column("needed", sa.Integer(), nullable=False),
        sa.Column("filled", sa.Integer(), nullable=False),
        sa.Column("votes", sa.Integer(), nullable=False),
        sa.Column("a_score", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"], ["campaign.id"], name="fk_campaign_pair_campaign_id", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["a_generation_id"], ["generation.id"], name="fk_campaign_pair_a", ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["b_generation_id"], ["generation.id"], name="fk_campaign_pair_b", ondelete="CASCADE"),
        sa.UniqueConstraint("campaign_id", "a_generation_id", "b_generation_id", name="uq_campaign_pair"),
    )
    op.create_index("ix_campaign_pair_fill", "campaign_pair", ["campaign_id", "filled"])
    op.create_table(
        "campaign_assignment",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("campaign_id", sa.String(64), nullable=False),
        sa.Column("pair_id", sa.Integer(), nullable=False),
        sa.Column("rater", sa.String(), nullable=False),
        sa.Column("slot", sa.Integer(), nullable=True),
        sa.Column("is_repeat", sa.Boolean(), nullable=False),
        sa.Column("a_left", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("claimed_at", sa.Float(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.Column("done_at", sa.Float(), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=True),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("reason", sa.String(), nullable=True),
        sa.Column("vote_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["campaign_id"], ["campaign.id"], name="fk_campaign_assignment_campaign_id", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["pair_id"], ["campaign_pair.id"], name="fk_campaign_assignment_pair_id", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["vote_id"], ["vote.id"], name="fk_campaign_assignment_vote_id", ondelete="SET NULL"),
        sa.CheckConstraint("status IN ('open', 'voted', 'skipped', 'expired')", name="ck_campaign_assignment_status"),
    )
    op.create_index("uq_campaign_assignment_slot", "campaign_assignment", ["pair_id", "slot"], unique=True)
    op.create_index(
        "uq_campaign_assignment_rater", "campaign_assignment", ["pair_id", "rater", "is_repeat"], unique=True
    )
    op.create_index("ix_campaign_assignment_rater", "campaign_assignment", ["campaign_id", "rater"])
    op.create_index("ix_campaign_assignment_status", "campaign_assignment", ["campaign_id", "status"])
    # A plain ADD COLUMN, not a batch rebuild of `vote`.
    op.add_column("vote", sa.Column("campaign_id", sa.String(64), nullable=True))
    op.create_index("ix_vote_campaign_id", "vote", ["campaign_id"])


def downgrade() -> None:
    op.drop_index("ix_vote_campaign_id", table_name="vote")
    op.drop_column("vote", "campaign_id")
    op.drop_table("campaign_assignment")
    op.drop_table("campaign_pair")
    op.drop_table("campaign")
