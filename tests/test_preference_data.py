"""Votes and ratings read for analysis and exported as training data, on SQLite and PostgreSQL.

The export round trip writes the DPO pairs and the rated responses with the real CLI,
loads them back with pandas and pyarrow, and checks every row against the database.
"""

from __future__ import annotations

import itertools
import json
import time
import uuid

import pandas as pd
import pyarrow.parquet as pq
import pytest
from sqlalchemy import Engine, insert, select

from moa_core.cli import RATER_CHOICES, main
from moa_core.evaluation.feedback import UNCATEGORISED, load_votes, rated_responses
from moa_core.store import add_rating, add_vote, open_db
from moa_core.store.analysis_queries import vote_counts, vote_details
from moa_core.store.models import Generation, Rating, Run, Vote, table_of
from moa_core.store.queries import RATER_KINDS

AUSTRALIA = "What is the capital city of Australia?"  # moa-studio-30, category "factual"
_clock = itertools.count()


def answer(
    engine: Engine,
    model: str,
    text: str,
    question: str = AUSTRALIA,
    kind: str = "playground",
    question_set: str | None = "moa-studio-30",
    meta: dict | None = None,
) -> int:
    """One finished run with one single-model answer; returns the generation id."""
    run_id = uuid.uuid4().hex
    t = time.time() + next(_clock)
    with engine.begin() as c:
        c.execute(
            insert(table_of(Run)).values(
                id=run_id, created_at=t, kind=kind, question=question, history=[], config={}, status="done",
                question_set=question_set, meta=meta,
            )
        )  # fmt: skip
        res = c.execute(
            insert(table_of(Generation)).values(
                run_id=run_id, call_id="baseline-0", role="baseline", layer=-1, slot=0, model=model, params={},
                text=text, started_at=t, ended_at=t + 1, status="done",
            )
        )  # fmt: skip
        return int(res.inserted_primary_key[0])


def judge_run(engine: Engine, verdicts: list[str], category: str) -> str:
    run_id = uuid.uuid4().hex
    with engine.begin() as c:
        c.execute(
            insert(table_of(Run)).values(
                id=run_id, created_at=time.time(), kind="eval", question=AUSTRALIA, history=[], config={},
                status="done", meta={"eval_item": "judge", "verdicts": verdicts, "category": category},
            )
        )  # fmt: skip
    return run_id


@pytest.fixture
def seeded(db_url: str) -> tuple[str, Engine, dict[str, int]]:
    """Answers, votes and ratings on SQLite and PostgreSQL (``db_url`` from tests/pg_support.py)."""
    url = db_url
    engine = open_db(url)
    g = {
        "a": answer(engine, "m/a", "Canberra."),
        "b": answer(engine, "m/b", "# Answer\n\n**Canberra** is the capital.\n- since 1913\n- planned city"),
        "c": answer(engine, "m/c", "Sydney, I think."),
        "a2": answer(engine, "m/a", "An old pond, a frog.", "Write a haiku", "arena", None, {"category": "writing"}),
        "c2": answer(engine, "m/c", "Haiku? Sure: ...", "Write a haiku", "arena", None, {"category": "writing"}),
    }
    add_vote(engine, g["a"], g["b"], "left", "alice")
    add_vote(engine, g["b"], g["a"], "right", "bob")  # sides swapped: a wins again
    add_vote(engine, g["a"], g["b"], "tie", "carol")
    add_vote(engine, g["a"], g["c"], "left", "alice")
    add_vote(engine, g["c"], g["a"], "left", "bob")  # c wins: the a-c pair is split 1-1
    add_vote(engine, g["b"], g["c"], "both_bad", "alice")
    add_vote(engine, g["a2"], g["c2"], "right", "dave")
    add_vote(engine, g["a"], g["b"], "left", "judge:gpt", run_id=judge_run(engine, ["A", "B"], "math"))
    add_rating(engine, g["a"], 5, 'short, "right"', "alice")
    add_rating(engine, g["c"], 1, "", "bob")
    add_rating(engine, g["b"], 4, "", "judge:gpt")
    return url, engine, g


def test_rater_choices_are_the_stores():
    assert RATER_CHOICES == RATER_KINDS


def test_vote_details_agree_with_vote_counts(seeded):
    _url, engine, g = seeded
    details = vote_details(engine)
    assert len(details) == 8
    counts = vote_counts(engine)
    recount = details.groupby(["left", "right", "outcome"]).size().rename("count").reset_index()
    pd.testing.assert_frame_equal(recount.sort_values(["left", "right", "outcome"]).reset_index(drop=True), counts)
    judge = details[details["is_judge"]].iloc[0]
    assert judge["rater"] == "judge:gpt" and judge["verdicts"] == ("A", "B") and judge["category"] == "math"
    assert details[~details["is_judge"]]["verdicts"].isna().all()
    haiku = details[details["left_generation_id"] == g["a2"]].iloc[0]
    assert haiku["category"] == "writing" and haiku["question"] == "Write a haiku"
    assert len(vote_details(engine, rater_kind="people")) == 7
    assert vote_details(engine, question_set="nope").empty


def test_load_votes_fills_categories_and_style(seeded):
    _url, engine, g = seeded
    votes = load_votes(engine, style=True, texts=True)
    by_pair = votes.set_index(["left_generation_id", "right_generation_id", "rater"])
    # from the bundled set (no category stored on the run), from run meta, from the judge run
    assert by_pair.loc[(g["a"], g["b"], "alice"), "category"] == "factual"
    assert by_pair.loc[(g["a2"], g["c2"], "dave"), "category"] == "writing"
    assert by_pair.loc[(g["a"], g["b"], "judge:gpt"), "category"] == "math"
    row = by_pair.loc[(g["b"], g["a"], "bob")]
    assert row["left_text"].startswith("# Answer") and row["right_text"] == "Canberra."
    assert (row["left_headers"], row["left_lists"], row["left_bold"]) == (1, 2, 1)
    assert row["right_length"] == len("Canberra.")
    # a question typed by hand, in no set, has no category
    other = answer(engine, "m/a", "x", "Typed by hand", "playground", None)
    add_vote(engine, other, g["c"], "left", "erin")
    assert load_votes(engine, rater="erin")["category"].tolist() == [UNCATEGORISED]


def db_votes(engine: Engine) -> pd.DataFrame:
    with engine.connect() as c:
        return pd.DataFrame(c.execute(select(table_of(Vote))).mappings().all())


def gen_text(engine: Engine, gid: int) -> str:
    gen = table_of(Generation)
    with engine.connect() as c:
        return str(c.execute(select(gen.c.text).where(gen.c.id == gid)).scalar_one())


def check_pair_rows(engine: Engine, rows: list[dict], people_only: bool = False) -> None:
    """Every exported pair, checked against the vote and generation tables."""
    votes = db_votes(engine).set_index("id")
    run = table_of(Run)
    for r in rows:
        chosen, rejected = r["chosen_generation_id"], r["rejected_generation_id"]
        assert r["chosen"] == gen_text(engine, chosen) and r["rejected"] == gen_text(engine, rejected)
        mine = votes.loc[list(r["vote_ids"])]
        assert all(
            {a, b} == {chosen, rejected}
            for a, b in zip(mine["left_generation_id"], mine["right_generation_id"], strict=True)
        )
        assert sorted(mine["rater"]) == sorted(r["raters"]) and r["votes"] == len(mine)
        if people_only:
            assert not any(x.startswith("judge:") for x in r["raters"])
        # recount: a vote for the chosen answer is "left" when it sat on the left, else "right"
        won = [
            (o == "left") == (lg == chosen)
            for o, lg in zip(mine["outcome"], mine["left_generation_id"], strict=True)
            if o in ("left", "right")
        ]
        assert r["chosen_votes"] == sum(won) and r["rejected_votes"] == len(won) - sum(won)
        assert r["ties"] == int((mine["outcome"] == "tie").sum()) and r["both_bad"] == int(
            (mine["outcome"] == "both_bad").sum()
        )
        assert r["chosen_votes"] > max(r["rejected_votes"], r["ties"], r["both_bad"])
        assert r["agreement"] == pytest.approx(r["chosen_votes"] / r["votes"])
        with engine.connect() as c:
            gen = table_of(Generation)
            q = c.execute(
                select(run.c.question).join(gen, gen.c.run_id == run.c.id).where(gen.c.id == chosen)
            ).scalar_one()
        assert r["prompt"] == q


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_dpo_export_round_trip(seeded, tmp_path, capsys, fmt):
    url, engine, g = seeded
    out = tmp_path / "out"
    assert main(["export", "--format", f"dpo-{fmt}", "--out", str(out), "--database", url, "--ties-apart"]) == 0
    printed = capsys.readouterr().out.split()
    assert printed == [str(out / f"preference_pairs.{fmt}"), str(out / f"preference_ties.{fmt}")]
    if fmt == "jsonl":
        lines = (out / "preference_pairs.jsonl").read_text(encoding="utf-8").splitlines()
        rows = [json.loads(line) for line in lines]
        frame = pd.read_json(out / "preference_pairs.jsonl", lines=True)
        ties = [json.loads(line) for line in (out / "preference_ties.jsonl").read_text(encoding="utf-8").splitlines()]
    else:
        table = pq.read_table(out / "preference_pairs.parquet")
        assert str(table.schema.field("raters").type) == "list<element: string>"
        assert str(table.schema.field("campaigns").type) == "list<element: string>"
        rows = table.to_pylist()
        frame = pd.read_parquet(out / "preference_pairs.parquet")
        ties = pq.read_table(out / "preference_ties.parquet").to_pylist()
    assert len(frame) == len(rows) == 2
    assert {"prompt", "chosen", "rejected"} <= set(frame.columns)
    check_pair_rows(engine, rows)
    by_chosen = {r["chosen_generation_id"]: r for r in rows}
    ab = by_chosen[g["a"]]  # alice, bob and the judge for a; carol a tie
    assert (ab["rejected_generation_id"], ab["chosen_contender"], ab["rejected_contender"]) == (g["b"], "m/a", "m/b")
    assert (ab["votes"], ab["chosen_votes"], ab["ties"]) == (4, 3, 1)
    assert ab["raters"] == ["alice", "bob", "carol", "judge:gpt"] and ab["category"] == "factual"
    assert ab["question_set"] == "moa-studio-30" and list(ab["campaigns"]) == []
    haiku = by_chosen[g["c2"]]
    assert (haiku["category"], haiku["prompt"], haiku["agreement"]) == ("writing", "Write a haiku", 1.0)
    # ties, both-bad and split pairs are kept apart, and only with --ties-apart
    assert sorted(t["verdict"] for t in ties) == ["both_bad", "split"]
    split = next(t for t in ties if t["verdict"] == "split")
    assert {split["generation_id_a"], split["generation_id_b"]} == {g["a"], g["c"]}
    assert (split["a_votes"], split["b_votes"], split["agreement"]) == (1, 1, 0.5)
    assert split["response_a"] == gen_text(engine, split["generation_id_a"])


def test_dpo_export_people_only_and_without_ties(seeded, tmp_path):
    url, engine, g = seeded
    out = tmp_path / "p"
    assert main(["export", "--format", "dpo-jsonl", "--out", str(out), "--database", url, "--raters", "people"]) == 0
    assert not (out / "preference_ties.jsonl").exists()
    rows = [json.loads(x) for x in (out / "preference_pairs.jsonl").read_text(encoding="utf-8").splitlines()]
    check_pair_rows(engine, rows, people_only=True)
    assert next(r for r in rows if r["chosen_generation_id"] == g["a"])["votes"] == 3


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_ratings_export_round_trip(seeded, tmp_path, fmt):
    url, engine, _g = seeded
    out = tmp_path / "r"
    assert main(["export", "--format", f"ratings-{fmt}", "--out", str(out), "--database", url]) == 0
    path = out / f"rated_responses.{fmt}"
    frame = pd.read_json(path, lines=True) if fmt == "jsonl" else pd.read_parquet(path)
    assert list(frame.columns[:4]) == ["prompt", "response", "score", "rater"]
    assert len(frame) == 3
    ratings = table_of(Rating)
    with engine.connect() as c:
        stored = {r.id: r for r in c.execute(select(ratings))}
    for r in frame.to_dict("records"):
        s = stored[int(r["rating_id"])]
        assert (int(r["score"]), r["rater"], int(r["generation_id"])) == (s.score, s.rater, s.generation_id)
        assert r["response"] == gen_text(engine, s.generation_id) and r["prompt"] == AUSTRALIA
        assert r["comment"] == s.comment and r["category"] == "factual"
    people = rated_responses(engine, rater_kind="people")
    assert sorted(people["rater"]) == ["alice", "bob"]


def test_export_writes_nothing_half_way(seeded, tmp_path, monkeypatch):
    url, _engine, _g = seeded
    out = tmp_path / "x"
    out.mkdir()
    import pyarrow.parquet

    def broken(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(pyarrow.parquet, "write_table", broken)
    with pytest.raises(OSError, match="disk full"):
        main(["export", "--format", "dpo-parquet", "--out", str(out), "--database", url])
    assert list(out.iterdir()) == []


def test_export_options_that_do_not_apply_exit_2(seeded, tmp_path, capsys):
    url, _engine, _g = seeded
    assert main(["export", "--format", "csv", "--out", str(tmp_path), "--database", url, "--ties-apart"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "apply to the dpo-*" in err
    assert main(["export", "--format", "ratings-jsonl", "--out", str(tmp_path), "--database", url, "--ties-apart"]) == 2


def test_analyze_prints_boards_agreement_and_bias(seeded, capsys):
    url, _engine, _g = seeded
    assert main(["analyze", "--database", url, "--boot", "20"]) == 0
    out = " ".join(capsys.readouterr().out.split())  # rich wraps titles at the terminal width
    for heading in (
        "Leaderboard",
        "with and without style control",
        "Style effects",
        "Ratings by category",
        "Agreement",
        "Cohen's kappa per rater pair",
        "Position bias",
        "Judge–human agreement",
    ):
        assert heading in out, heading
    assert "m/a" in out and "judge:gpt" in out
    assert main(["analyze", "--database", url, "--category", "nothing"]) == 0
    assert "No votes match these filters." in capsys.readouterr().out
    assert main(["analyze", "--database", url, "--items", "rater"]) == 2
    assert main(["analyze", "--database", url, "--no-style", "--raters", "people", "--boot", "0"]) == 0
    out = capsys.readouterr().out
    assert "Style effects" not in out and "judge:gpt" not in out
