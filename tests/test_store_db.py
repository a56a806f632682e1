"""Store plumbing: engines, pragmas, errors, migrations, concurrency (SQLite and PostgreSQL)."""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import func, select, text
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.exc import IntegrityError
from sqlmodel import SQLModel

from moa_core.store import (
    DuplicateVoteError,
    Recorder,
    StoreError,
    add_rating,
    add_vote,
    get_engine,
    get_run,
    open_db,
    votes_df,
)
from moa_core.store.db import alembic_config, current_revision, dispose_engines, init_db, upgrade
from moa_core.store.models import Rating, Vote
from moa_core.store.util import strip_secrets
from tests.test_store_support import run_events


def test_sqlite_pragmas_are_on(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    engine = open_db(url)
    try:
        with engine.connect() as c:
            assert c.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert c.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert c.exec_driver_sql("PRAGMA busy_timeout").scalar() == 10000
        with pytest.raises(IntegrityError, match="FOREIGN KEY"), engine.begin() as c:
            c.execute(
                Rating.__table__.insert().values(generation_id=42, score=3, comment="", rater="a", created_at=1.0)
            )
        assert get_engine(url) is engine  # cached per URL
    finally:
        dispose_engines(url)


def test_default_url_comes_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'sub' / 'env.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    try:
        engine = open_db()
        assert str(engine.url) == url and (tmp_path / "sub" / "env.db").exists()  # directory created
    finally:
        dispose_engines(url)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    "url, expected",
    [
        ("postgresql+psycopg://moa:hunter2@127.0.0.1:{port}/x", "cannot open database postgresql+psycopg://moa:***@"),
        ("not a url", "invalid database URL not a url"),
        ("nosuchdialect://h/x", "cannot use database nosuchdialect://h/x: no driver"),
        ("sqlite:///{tmp}", "unable to open database file"),
    ],
)
def test_bad_url_raises_store_error(tmp_path: Path, url: str, expected: str) -> None:
    url = url.format(port=_free_port(), tmp=tmp_path)  # a directory is no database file
    with pytest.raises(StoreError) as info:
        open_db(url)
    msg = str(info.value)
    assert expected in msg and "hunter2" not in msg and "\n" not in msg


def test_read_only_file_raises_store_error(tmp_path: Path) -> None:
    path = tmp_path / "ro.db"
    open_db(f"sqlite:///{path}")
    dispose_engines()
    # Root ignores file modes, so open the file read-only the way SQLite itself offers.
    url = f"sqlite:///file:{path}?mode=ro&uri=true"
    with pytest.raises(StoreError, match=r"^cannot open database sqlite:///.*attempt to write a readonly database$"):
        open_db(url)
    if os.geteuid() != 0:
        path.chmod(0o444)
        with pytest.raises(StoreError, match="readonly database"):
            open_db(f"sqlite:///{path}")


def test_strip_secrets() -> None:
    params = {
        "api_key": "k",
        "API_KEY": "k",
        "temperature": 0.1,
        "max_tokens": 5,
        "aws_secret_access_key": "k",
        "nested": {"password": "p", "keep": [{"token": "t", "ok": 1}]},
        "anthropic_api_key": "k",
    }
    assert strip_secrets(params) == {"temperature": 0.1, "max_tokens": 5, "nested": {"keep": [{"ok": 1}]}}


def test_concurrent_ratings_from_threads(db_url: str) -> None:
    engine = open_db(db_url)
    events = run_events()
    rec = Recorder(engine)
    for ev in events:
        rec.handle(ev)
    gen_ids = [g["id"] for g in get_run(engine, events[0].run_id)["generations"]]

    def rate(i: int) -> int:
        return add_rating(engine, gen_ids[i % len(gen_ids)], i % 5 + 1, f"c{i}", f"rater{i % 8}")

    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = list(pool.map(rate, range(1000)))
    assert len(set(ids)) == 1000
    with engine.connect() as c:
        assert c.execute(select(func.count()).select_from(Rating.__table__)).scalar() == 1000


def test_runs_recorded_concurrently_in_threads(db_url: str) -> None:
    engine = open_db(db_url)
    rec = Recorder(engine, flush_interval=0.0)  # one recorder shared by all threads, flushing often
    runs = [run_events() for _ in range(8)]
    barrier = threading.Barrier(len(runs))

    def play(events: list) -> None:
        barrier.wait()
        for ev in events:
            rec.handle(ev)

    threads = [threading.Thread(target=play, args=(evs,)) for evs in runs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for evs in runs:
        run = get_run(engine, evs[0].run_id)
        assert run["run"]["status"] == "done" and [g["status"] for g in run["generations"]] == ["done"] * 3
    assert rec.open_runs() == []


def head_revision() -> str:

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def test_migration_from_0001_keeps_rows(db_url: str) -> None:
    engine = get_engine(db_url)
    upgrade(engine, "0001")
    assert current_revision(engine) == "0001"
    run_id = uuid.uuid4().hex
    now = time.time()
    with engine.begin() as c:
        c.execute(
            text(
                "INSERT INTO run (id, created_at, kind, question, history, config, config_hash, preset, status, "
                "prompt_tokens, completion_tokens, cost) VALUES (:id, :t, 'arena', 'old q', '[]', '{}', 'h', 'p', "
                "'done', 1, 2, 0.5)"
            ),
            {"id": run_id, "t": now},
        )
        for slot in (0, 1):
            c.execute(
                text(
                    "INSERT INTO generation (run_id, call_id, role, layer, slot, model, label, params, system_prompt, "
                    "text, prompt_tokens, completion_tokens, cost, started_at, status) VALUES (:r, :cid, 'baseline', "
                    "-1, :s, :m, '', '{\"temperature\": 0.5}', '', :txt, 0, 0, 0, :t, 'done')"
                ),
                {"r": run_id, "cid": f"baseline--1-{slot}", "s": slot, "m": f"m{slot}", "txt": f"t{slot}", "t": now},
            )
        g = [row[0] for row in c.execute(text("SELECT id FROM generation ORDER BY slot"))]
        c.execute(
            text(
                "INSERT INTO rating (generation_id, score, comment, rater, created_at) VALUES (:g, 4, 'ok', 'ann', :t)"
            ),
            {"g": g[0], "t": now},
        )
        c.execute(
            text(
                "INSERT INTO vote (left_generation_id, right_generation_id, outcome, blind, rater, created_at, "
                "run_id) VALUES (:a, :b, 'both_bad', :blind, 'ann', :t, :r)"
            ),
            {"a": g[0], "b": g[1], "blind": True, "t": now, "r": run_id},
        )

    init_db(engine)
    assert current_revision(engine) == head_revision()
    run = get_run(engine, run_id)
    assert run["run"]["question"] == "old q" and run["run"]["meta"] is None and run["run"]["tags"] is None
    assert [x["text"] for x in run["generations"]] == ["t0", "t1"]
    assert run["generations"][0]["params"] == {"temperature": 0.5}
    assert run["ratings"][0]["comment"] == "ok" and run["votes"][0]["outcome"] == "both_bad"
    assert run["votes"][0]["question_set"] is None
    # The new columns work.
    add_vote(engine, g[1], g[0], "left", "bea", question_set="qs-new", run_id=run_id)
    assert votes_df(engine, question_set="qs-new")["left_model"].tolist() == ["m1"]
    # Hand-written revisions and the models describe the same schema.
    with engine.connect() as c:
        assert compare_metadata(MigrationContext.configure(c, opts={"compare_type": True}), SQLModel.metadata) == []


def test_migration_from_0003_keeps_rows_and_interrupts_runs_left_running(db_url: str) -> None:
    """A database written by 0003 code, with a run its crashed process left `running` (and
    a draft `streaming`) long ago: the upgrade keeps every row, and the first open marks
    that run interrupted with its partial text; the new vocabulary passes the CHECKs."""
    engine = get_engine(db_url)
    upgrade(engine, "0003")
    t = time.time() - 3600
    run_sql = text(
        "INSERT INTO run (id, created_at, kind, question, history, config, config_hash, preset, status, "
        "prompt_tokens, completion_tokens, cost, wall_time) VALUES (:id, :t, 'playground', :q, '[]', '{}', 'h', 'p', "
        ":st, 0, 0, 0, :w)"
    )
    gen_sql = text(
        "INSERT INTO generation (run_id, call_id, role, layer, slot, model, label, params, system_prompt, "
        "text, prompt_tokens, completion_tokens, cost, started_at, ended_at, status, deployment) VALUES (:r, :cid, "
        "'proposer', 0, :s, 'm', '', '{}', '', :txt, :pt, 0, 0, :t, :end, :st, :dep)"
    )
    with engine.begin() as c:
        c.execute(run_sql, {"id": "old-done", "t": t, "q": "finished", "st": "done", "w": 2.0})
        c.execute(run_sql, {"id": "old-stuck", "t": t, "q": "stuck", "st": "running", "w": None})
        for r, slot, txt, st, end in [
            ("old-done", 0, "all of it", "done", t + 2),
            ("old-stuck", 0, "a whole draft", "done", t + 3),
            ("old-stuck", 1, "half of a dra", "streaming", None),
        ]:
            c.execute(
                gen_sql,
                {
                    "r": r,
                    "cid": f"proposer-0-{slot}",
                    "s": slot,
                    "txt": txt,
                    "pt": 5,
                    "t": t,
                    "end": end,
                    "st": st,
                    "dep": "d1",
                },
            )
        g = [row[0] for row in c.execute(text("SELECT id FROM generation ORDER BY id"))]
        c.execute(
            text("INSERT INTO rating (generation_id, score, comment, rater, created_at) VALUES (:g, 5, 'ok', 'a', :t)"),
            {"g": g[1], "t": t},
        )
        c.execute(
            text(
                "INSERT INTO vote (left_generation_id, right_generation_id, outcome, blind, rater, created_at, "
                "run_id, question_set) VALUES (:a, :b, 'left', :blind, 'a', :t, 'old-stuck', 'qs')"
            ),
            {"a": g[1], "b": g[2], "blind": True, "t": t},
        )

    init_db(engine)
    assert current_revision(engine) == head_revision()
    with engine.connect() as c:
        counts = [
            c.execute(text(f"SELECT count(*) FROM {tb}")).scalar() for tb in ("run", "generation", "rating", "vote")
        ]
    assert counts == [2, 3, 1, 1]
    done = get_run(engine, "old-done")
    assert (done["run"]["status"], done["run"]["wall_time"], done["run"]["owner"], done["run"]["heartbeat_at"]) == (
        "done",
        2.0,
        None,
        None,
    )
    assert [(x["text"], x["deployment"]) for x in done["generations"]] == [("all of it", "d1")]
    stuck = get_run(engine, "old-stuck")
    assert stuck["run"]["status"] == "interrupted" and stuck["run"]["error"].startswith("interrupted: no heartbeat")
    assert stuck["run"]["wall_time"] == pytest.approx(3.0) and stuck["run"]["prompt_tokens"] == 10
    assert [(x["status"], x["text"]) for x in stuck["generations"]] == [
        ("done", "a whole draft"),
        ("interrupted", "half of a dra"),
    ]
    assert stuck["ratings"][0]["comment"] == "ok" and stuck["votes"][0]["question_set"] == "qs"
    with pytest.raises(IntegrityError), engine.begin() as c:
        c.execute(text("UPDATE run SET status = 'exploded' WHERE id = 'old-done'"))
    with pytest.raises(IntegrityError), engine.begin() as c:
        c.execute(text("UPDATE generation SET status = 'exploded' WHERE run_id = 'old-done'"))
    with engine.connect() as c:
        assert compare_metadata(MigrationContext.configure(c, opts={"compare_type": True}), SQLModel.metadata) == []


def test_downgrade_from_0004_keeps_rows_in_the_old_vocabulary(db_url: str) -> None:
    engine = open_db(db_url)
    rec = Recorder(engine, flush_interval=0.0)
    events = run_events()
    for ev in events[:3]:
        rec.handle(ev)
    del rec  # no heartbeats for it while the columns go away
    with engine.begin() as c:
        c.execute(text("UPDATE run SET status = 'interrupted'"))
        c.execute(text("UPDATE generation SET status = 'interrupted'"))
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql("PRAGMA foreign_keys=OFF")  # as db.upgrade does: batch rebuilds tables
        command.downgrade(alembic_config(conn), "0003")
        conn.commit()
    assert current_revision(engine) == "0003"
    with engine.connect() as c:
        assert [tuple(r) for r in c.execute(text("SELECT id, status FROM run"))] == [(events[0].run_id, "failed")]
        assert [tuple(r) for r in c.execute(text("SELECT status, text FROM generation"))] == [
            ("cancelled", events[2].text)
        ]
        assert "owner" not in {col["name"] for col in sa_inspect(c).get_columns("run")}


def test_newer_database_revision_is_a_clear_error(db_url: str) -> None:
    engine = open_db(db_url)
    with engine.begin() as c:
        c.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    dispose_engines(db_url)
    with pytest.raises(StoreError, match=r"cannot migrate database .*newer MoA Studio"):
        open_db(db_url)


def _two_generations(engine) -> tuple[str, list[int]]:
    events = run_events()
    rec = Recorder(engine)
    for ev in events:
        rec.handle(ev)
    return events[0].run_id, [g["id"] for g in get_run(engine, events[0].run_id)["generations"]]


def test_one_vote_per_pair_and_rater_even_at_the_same_instant(db_url: str) -> None:
    """Twelve attempts by one rater on one pair, released together, both side orders:
    the database keeps exactly one; every other attempt is told which vote counts."""
    engine = open_db(db_url)
    run_id, (g0, g1, _) = _two_generations(engine)
    attempts = 12
    barrier = threading.Barrier(attempts)

    def vote(i: int) -> int | DuplicateVoteError:
        left, right = (g0, g1) if i % 2 else (g1, g0)
        barrier.wait()
        try:
            return add_vote(engine, left, right, ("left", "right", "tie", "both_bad")[i % 4], "ann", run_id=run_id)
        except DuplicateVoteError as dup:
            return dup

    with ThreadPoolExecutor(max_workers=attempts) as pool:
        results = list(pool.map(vote, range(attempts)))
    saved = [r for r in results if isinstance(r, int)]
    refused = [r for r in results if isinstance(r, DuplicateVoteError)]
    assert len(saved) == 1 and len(refused) == attempts - 1
    assert {r.vote_id for r in refused} == set(saved)
    assert "already voted" in str(refused[0]) and "ann" in str(refused[0])
    assert votes_df(engine)["id"].tolist() == saved
    # Other raters and other pairs are not affected.
    add_vote(engine, g0, g1, "left", "bea")
    add_vote(engine, g0, _, "left", "ann")
    assert len(votes_df(engine)) == 3


def test_judge_votes_are_one_per_judgement_run(db_url: str) -> None:
    """A judge's rater name is `judge:<model>`: a new judge config with the same model
    judges the same answers again in a new run, and that run's vote must be stored."""
    engine = open_db(db_url)
    first, (g0, g1, _) = _two_generations(engine)
    second, _ = _two_generations(engine)
    judge = "judge:openai/gpt-4o-mini"
    add_vote(engine, g0, g1, "left", judge, run_id=first)
    add_vote(engine, g1, g0, "right", judge, run_id=second)
    with pytest.raises(DuplicateVoteError):
        add_vote(engine, g1, g0, "tie", judge, run_id=first)  # the same judgement saved twice
    add_vote(engine, g0, g1, "tie", judge)  # no run: nothing to tie it to, so no rule
    add_vote(engine, g0, g1, "tie", judge)
    assert len(votes_df(engine)) == 4


def test_migration_to_0005_keeps_the_first_of_duplicate_votes(db_url: str) -> None:
    engine = get_engine(db_url)
    upgrade(engine, "0003")
    with engine.begin() as c:
        for name in ("r1", "r2"):
            c.execute(
                text(
                    "INSERT INTO run (id, created_at, kind, question, history, config, config_hash, preset, status, "
                    "prompt_tokens, completion_tokens, cost) VALUES (:id, 1, 'playground', 'q', '[]', '{}', 'h', "
                    "'p', 'done', 0, 0, 0)"
                ),
                {"id": name},
            )
        for slot in range(3):
            c.execute(
                text(
                    "INSERT INTO generation (run_id, call_id, role, layer, slot, model, label, params, system_prompt, "
                    "text, prompt_tokens, completion_tokens, cost, started_at, status) VALUES ('r1', :cid, "
                    "'baseline', -1, :s, :m, '', '{}', '', 't', 0, 0, 0, 1, 'done')"
                ),
                {"cid": f"baseline--1-{slot}", "s": slot, "m": f"m{slot}"},
            )
        g = [row[0] for row in c.execute(text("SELECT id FROM generation ORDER BY slot"))]
        rows = [
            ("ann", g[0], g[1], None),  # kept: ann's first vote on the pair
            ("ann", g[1], g[0], None),  # deleted: the same pair, sides swapped (a second tab)
            ("ann", g[0], g[1], None),  # deleted
            ("ann", g[0], g[2], None),  # kept: another pair
            ("bob", g[1], g[0], None),  # kept: another rater
            ("judge:m", g[0], g[1], "r1"),  # kept
            ("judge:m", g[1], g[0], "r1"),  # deleted: the same judgement run
            ("judge:m", g[0], g[1], "r2"),  # kept: another judgement run
            ("judge:m", g[0], g[1], None),  # kept twice: judge votes without a run have no key
            ("judge:m", g[0], g[1], None),
        ]
        for i, (rater, left, right, run) in enumerate(rows):
            c.execute(
                text(
                    "INSERT INTO vote (left_generation_id, right_generation_id, outcome, blind, rater, created_at, "
                    "run_id) VALUES (:a, :b, 'left', :blind, :rater, :t, :r)"
                ),
                {"a": left, "b": right, "blind": True, "rater": rater, "t": 100 + i, "r": run},
            )
        ids = [row[0] for row in c.execute(text("SELECT id FROM vote ORDER BY id"))]

    init_db(engine)
    assert current_revision(engine) == head_revision()
    with engine.connect() as c:
        kept = c.execute(select(Vote.__table__.c.id, Vote.__table__.c.pair_key).order_by("id")).all()
    low, high = sorted(g[:2])
    assert [k[0] for k in kept] == [ids[i] for i in (0, 3, 4, 5, 7, 8, 9)]
    assert [k[1] for k in kept] == [
        f"{low}:{high}",
        f"{min(g[0], g[2])}:{max(g[0], g[2])}",
        f"{low}:{high}",
        f"{low}:{high}@r1",
        f"{low}:{high}@r2",
        None,
        None,
    ]
    with pytest.raises(DuplicateVoteError) as dup:
        add_vote(engine, g[1], g[0], "tie", "ann")
    assert dup.value.vote_id == ids[0]
    with engine.connect() as c:
        assert compare_metadata(MigrationContext.configure(c, opts={"compare_type": True}), SQLModel.metadata) == []
    # And back: the column and the index go, the kept votes stay.
    from alembic import command

    with engine.connect() as c:
        command.downgrade(alembic_config(c), "0004")
        c.commit()
    with engine.connect() as c:
        assert c.execute(text("SELECT count(*) FROM vote")).scalar() == 7
        assert "pair_key" not in [col["name"] for col in sa_inspect(c).get_columns("vote")]
