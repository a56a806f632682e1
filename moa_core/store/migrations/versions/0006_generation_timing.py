"""generation.timing: when each piece of a call's text arrived, for replays.

A JSON list of [seconds since the call started, characters of text so far], one point per
~0.1 s of streaming (see `store.recorder.TIMING_BUCKET`). Older rows keep NULL: a replay
derives a uniform rate for them from their TTFT and latency.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("generation") as batch:
        batch.add_column(sa.Column("timing", sa.JSON(), nullable=True))


def downgrade() -> None:
    # A plain DROP COLUMN (SQLite 3.35+), not a batch rebuild: rebuilding `generation` with
    # foreign keys on would cascade into ratings and votes.
    op.drop_column("generation", "timing")
