"""generation.deployment: which deployment of a Router group served the call.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("generation") as batch:
        batch.add_column(sa.Column("deployment", sa.String(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("generation") as batch:
        batch.drop_column("deployment")
