"""Run lease: run.owner and run.heartbeat_at; status `interrupted` for runs and generations.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Spelled out rather than imported from models: a revision must keep meaning what it meant
# when it was written, whatever later revisions add to the vocabulary.
RUN_OLD = ("running", "done", "failed", "cancelled")
GEN_OLD = ("streaming", "done", "error", "cancelled")


def _in(values: tuple[str, ...]) -> str:
    return f"status IN ({', '.join(repr(v) for v in values)})"


def upgrade() -> None:
    # Nullable columns: rows written before this revision have no owner; the lease sweep
    # then judges them by created_at (a run that old and still `running` lost its process).
    with op.batch_alter_table("run") as batch:
        batch.add_column(sa.Column("owner", sa.String(255), nullable=True))
        batch.add_column(sa.Column("heartbeat_at", sa.Float(), nullable=True))
        batch.drop_constraint("ck_run_status", type_="check")
        batch.create_check_constraint("ck_run_status", _in((*RUN_OLD, "interrupted")))
    with op.batch_alter_table("generation") as batch:
        batch.drop_constraint("ck_generation_status", type_="check")
        batch.create_check_constraint("ck_generation_status", _in((*GEN_OLD, "interrupted")))


def downgrade() -> None:
    # The old vocabulary has no `interrupted`: the nearest old words, the error text kept.
    op.execute("UPDATE generation SET status = 'cancelled' WHERE status = 'interrupted'")
    op.execute("UPDATE run SET status = 'failed' WHERE status = 'interrupted'")
    with op.batch_alter_table("generation") as batch:
        batch.drop_constraint("ck_generation_status", type_="check")
        batch.create_check_constraint("ck_generation_status", _in(GEN_OLD))
    with op.batch_alter_table("run") as batch:
        batch.drop_constraint("ck_run_status", type_="check")
        batch.create_check_constraint("ck_run_status", _in(RUN_OLD))
        batch.drop_column("heartbeat_at")
        batch.drop_column("owner")
