"""Run final_text/tags/meta (for later analyses such as diversity metrics); vote.question_set.

Revision ID: 0002
Revises: 0001
Create Date: 2025-11-21
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Only nullable columns: existing rows stay valid and SQLite can ADD COLUMN in place.
    with op.batch_alter_table("run") as batch:
        batch.add_column(sa.Column("final_text", sa.Text(), nullable=True))
        batch.add_column(sa.Column("tags", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("meta", sa.JSON(), nullable=True))
    with op.batch_alter_table("vote") as batch:
        batch.add_column(sa.Column("question_set", sa.String(), nullable=True))
        batch.create_index("ix_vote_question_set", ["question_set"])


def downgrade() -> None:
    with op.batch_alter_table("vote") as batch:
        batch.drop_index("ix_vote_question_set")
        batch.drop_column("question_set")
    with op.batch_alter_table("run") as batch:
        batch.drop_column("meta")
        batch.drop_column("tags")
        batch.drop_column("final_text")
