"""stage: what each pipeline stage of a run decided (used and cut calls, review/select details).

One row per (run, stage index), written from the engine's LayerDone. Runs recorded before
this revision have none; their stages are read from their generations as before.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "stage",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("layer", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("ok", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("used", sa.JSON(), nullable=False),
        sa.Column("cut", sa.JSON(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("ended_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["run.id"], name="fk_stage_run_id", ondelete="CASCADE"),
        sa.UniqueConstraint("run_id", "layer", name="uq_stage_run_layer"),
    )


def downgrade() -> None:
    op.drop_table("stage")
