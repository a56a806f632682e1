"""Alembic environment, driven from code by `moa_core.store.db.upgrade`.

`db.upgrade` passes an open connection in `config.attributes["connection"]`. Running the
`alembic` command directly (for `alembic revision --autogenerate` while developing) uses
`-x url=...`, else DATABASE_URL, else the default SQLite file.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection
from sqlmodel import SQLModel

import moa_core.store.models  # noqa: F401  (registers the tables on SQLModel.metadata)

config = context.config
target_metadata = SQLModel.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    from moa_core.store.db import get_engine

    url = context.get_x_argument(as_dictionary=True).get("url")
    with get_engine(url).connect() as conn:
        _run(conn)
        conn.commit()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run against a database")
run_migrations_online()
