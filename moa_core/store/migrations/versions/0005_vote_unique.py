"""vote.pair_key and a unique index on (rater, pair_key): one vote per pair and rater.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JUDGE_PREFIX = "judge:"
_CHUNK = 500


def _pair_key(left_id: int, right_id: int, rater: str, run_id: str | None) -> str | None:
    # The rule of `moa_core.store.ratings.vote_pair_key` as it stands at this revision,
    # copied so that later changes to the app cannot change what this migration does.
    low, high = sorted((int(left_id), int(right_id)))
    key = f"{low}:{high}"
    if rater.startswith(JUDGE_PREFIX):
        return f"{key}@{run_id}" if run_id else None
    return key


def upgrade() -> None:
    with op.batch_alter_table("vote") as batch:
        batch.add_column(sa.Column("pair_key", sa.String(160), nullable=True))

    vote = sa.table(
        "vote",
        sa.column("id", sa.Integer()),
        sa.column("left_generation_id", sa.Integer()),
        sa.column("right_generation_id", sa.Integer()),
        sa.column("rater", sa.String()),
        sa.column("run_id", sa.String()),
        sa.column("pair_key", sa.String()),
    )
    conn = op.get_bind()
    rows = conn.execute(
        sa.select(
            vote.c.id, vote.c.left_generation_id, vote.c.right_generation_id, vote.c.rater, vote.c.run_id
        ).order_by(vote.c.id)
    ).all()
    # Older databases can hold a second vote of one rater on one pair: the old UI let a
    # second tab vote again. The first vote (lowest id: ids only grow) is kept and the
    # later ones deleted. The first was cast blind; a later one may have been cast after
    # the first tab had revealed the names, and either way it counts the rater twice. Run meta that named a deleted vote id
    # (`arena_vote_id`, `vote_id`) keeps the stale number; nothing reads it to count votes.
    seen: set[tuple[str, str]] = set()
    keys: list[dict[str, object]] = []
    later: list[int] = []
    for vid, left, right, rater, run_id in rows:
        key = _pair_key(left, right, rater, run_id)
        if key is None:
            continue
        if (rater, key) in seen:
            later.append(vid)
            continue
        seen.add((rater, key))
        keys.append({"vid": vid, "key": key})
    for i in range(0, len(later), _CHUNK):
        conn.execute(sa.delete(vote).where(vote.c.id.in_(later[i : i + _CHUNK])))
    for i in range(0, len(keys), _CHUNK):
        conn.execute(
            sa.update(vote).where(vote.c.id == sa.bindparam("vid")).values(pair_key=sa.bindparam("key")),
            keys[i : i + _CHUNK],
        )
    # A plain unique index (not a table constraint): SQLite can add it without rebuilding
    # the table, and NULL keys never collide on either database.
    op.create_index("uq_vote_rater_pair", "vote", ["rater", "pair_key"], unique=True)


def downgrade() -> None:
    # Deleted duplicates are not restored.
    op.drop_index("uq_vote_rater_pair", table_name="vote")
    with op.batch_alter_table("vote") as batch:
        batch.drop_column("pair_key")
