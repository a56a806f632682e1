"""Persistence: runs, generations, ratings and votes in SQLite (default) or PostgreSQL.

Typical use:

    engine = open_db()                       # DATABASE_URL or data/moa.db, migrated
    async with aclosing(Recorder(engine).record(engine_events)) as events:
        async for ev in events: ...
    add_rating(engine, generation_id, 4, "clear", "alice")
    runs_df(engine, kind="playground")
"""

from moa_core.store.db import StoreError, dispose_engines, get_engine, init_db, open_db, safe_url
from moa_core.store.export import export_all
from moa_core.store.queries import filter_options, generations_df, get_run, ratings_df, runs_df, votes_df
from moa_core.store.ratings import DuplicateVoteError, add_rating, add_vote
from moa_core.store.recorder import Recorder, annotate_run

__all__ = [
    "DuplicateVoteError",
    "Recorder",
    "StoreError",
    "add_rating",
    "add_vote",
    "annotate_run",
    "dispose_engines",
    "export_all",
    "filter_options",
    "generations_df",
    "get_engine",
    "get_run",
    "init_db",
    "open_db",
    "ratings_df",
    "runs_df",
    "safe_url",
    "votes_df",
]
