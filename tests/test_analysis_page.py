"""The Analysis and Arena pages with Streamlit's AppTest, on a temporary SQLite database.

The Analysis page is seeded with votes through the store API. The Arena battle runs two
MoA configs (saved configs) against the fake OpenAI server, to a finished state, then
votes; streaming while voting is covered by tests/test_browser_arena.py.
"""

from __future__ import annotations

import random
import time
from contextlib import aclosing
from datetime import date
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from moa_core import arena
from moa_core.config import AgentSpec, save_config
from moa_core.engine import run_single
from moa_core.events import CallRef, DraftStarted, RunStarted
from moa_core.store import Recorder, add_rating, add_vote, get_run, open_db
from moa_core.store.analysis_queries import contender_ratings
from moa_core.store.queries import votes_df
from moa_core.ui import layout
from tests.conftest import fake_agent, fake_config

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def db_url(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'moa.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("MOA_SAVED_CONFIGS_DIR", str(tmp_path / "configs"))
    layout._store.clear()  # store() is cached per process: make it open this test's database
    yield url
    layout._store.clear()


def page(name: str) -> AppTest:
    return AppTest.from_file(str(ROOT / "pages" / name), default_timeout=90)


async def answer(engine, agent) -> int:
    async with aclosing(Recorder(engine).record(run_single("Which is better?", agent, kind="arena"))) as evs:
        run_id = [ev async for ev in evs][0].run_id  # noqa: RUF015 (async generator: no next())
    return next(g["id"] for g in get_run(engine, run_id)["generations"] if g["role"] == "baseline")


def texts(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption]
    parts += [x.value for kind in ("info", "success", "warning", "error") for x in getattr(at, kind)]
    return "\n".join(str(p) for p in parts)


def test_empty_database_says_no_votes_yet(db_url):
    at = page("3_Analysis.py").run()
    assert not at.exception
    assert any("No votes yet" in i.value for i in at.info)
    assert not at.dataframe


async def test_leaderboard_from_seeded_votes(db_url, fake_server):
    engine = open_db(db_url)
    strong, weak, mid = [await answer(engine, fake_agent(fake_server, n)) for n in ("strong", "weak", "mid")]
    rng = random.Random(0)
    for i in range(30):  # one vote per pair and rater: thirty raters
        add_vote(engine, strong, weak, rng.choice(["left"] * 4 + ["right"]), f"alice{i}")
        add_vote(engine, mid, weak, rng.choice(["left", "left", "right", "tie"]), f"bob{i}")
    add_vote(engine, strong, mid, "both_bad", "judge:gpt")
    add_rating(engine, strong, 5, rater="alice")
    add_rating(engine, weak, 2, rater="alice")

    at = page("3_Analysis.py").run()
    assert not at.exception
    board = at.dataframe[0].value
    assert list(board["contender"]) == ["openai/fake-strong", "openai/fake-mid", "openai/fake-weak"]
    assert list(board["battles"]) == [31, 31, 60]
    assert board["rank"].iloc[0] == 1 and board["rank"].iloc[-1] > 1
    assert all(float(lo) < float(hi) for lo, hi in (s.split(" – ") for s in board["95% CI"]))
    assert board.set_index("contender").loc["openai/fake-mid", "both bad"] == 1
    assert len(at.get("plotly_chart")) >= 6  # forest, 2 heatmaps, scores, cost, latency
    assert len(at.get("download_button")) >= 5

    # filters: judges only -> one vote; people only drops it
    at.selectbox(key="an_raters").set_value("judges").run()
    board = at.dataframe[0].value
    assert list(board["battles"]) == [1, 1]
    at.selectbox(key="an_raters").set_value("people").run()
    assert at.dataframe[0].value["battles"].sum() == 120
    assert at.multiselect(key="an_kinds").options == ["arena"]
    at.selectbox(key="an_time").set_value("Custom dates").run()
    at.date_input(key="an_dates").set_value((date(2020, 1, 1), date(2020, 1, 31))).run()
    assert any("No votes yet for these filters" in i.value for i in at.info)
    assert not at.exception


def save_fake(tmp_path: Path, fake_server, name: str, **opts: object) -> None:
    cfg = fake_config(
        fake_server,
        [fake_agent(fake_server, f"{name}-p", **opts)],
        aggregator=fake_agent(fake_server, f"{name}-agg", **opts),
    ).model_copy(update={"name": name})
    (tmp_path / "configs").mkdir(exist_ok=True)
    save_config(cfg, tmp_path / "configs" / f"{name}.yaml")


def start_battle(at: AppTest, first: str, second: str) -> AppTest:
    at.text_input(key="rater_input").set_value("carol").run()
    at.selectbox(key="arena_c1").set_value(first)
    at.selectbox(key="arena_c2").set_value(second)
    at.text_area(key="arena_question").set_value("Name a colour.")
    return at.button(key="arena_start").click().run()


def test_arena_battle_then_vote_reveals_and_saves(db_url, tmp_path, fake_server):
    save_fake(tmp_path, fake_server, "alpha")
    save_fake(tmp_path, fake_server, "beta")
    at = page("2_Arena.py").run()
    assert at.button(key="arena_start").disabled  # no rater yet
    at = start_battle(at, "saved:alpha", "saved:beta")
    assert not at.exception
    body = texts(at)
    assert "Both answers are complete" in body
    assert "alpha" not in body and "beta" not in body  # identities hidden before the vote
    at.button(key="arena_vote_A").click().run()
    assert not at.exception
    assert "Vote saved" in texts(at)
    success = at.success[0].value
    assert "`MoA · alpha`" in success and "`MoA · beta`" in success
    # the other choices are closed; the counted one stays enabled so it keeps its highlight
    assert all(at.button(key=f"arena_vote_{c}").disabled for c in ("B", "tie", "both_bad"))
    assert at.button(key="arena_vote_A").proto.type == "primary"

    votes = votes_df(open_db(db_url))
    assert len(votes) == 1
    v = votes.iloc[0]
    assert v["outcome"] == "left" and v["rater"] == "carol" and bool(v["blind"]) and v["kind"] == "arena"
    assert v["left_role"] == v["right_role"] == "aggregator" and v["left_run_id"] != v["right_run_id"]
    a_name = success.split("A was `")[1].split("`")[0]
    assert get_run(open_db(db_url), v["left_run_id"])["run"]["preset"] == a_name.removeprefix("MoA · ")

    # the Analysis page now ranks both
    an = page("3_Analysis.py").run()
    assert set(an.dataframe[0].value["contender"]) == {"MoA · alpha", "MoA · beta"}


def test_arena_failed_contender_makes_the_battle_invalid(db_url, tmp_path, fake_server):
    save_fake(tmp_path, fake_server, "good")
    save_fake(tmp_path, fake_server, "broken", fail=500)
    at = start_battle(page("2_Arena.py").run(), "saved:good", "saved:broken")
    assert not at.exception
    errors = " ".join(e.value for e in at.error)
    assert "invalid" in errors and "failed" in errors and "`MoA · broken`" in errors
    assert all(at.button(key=f"arena_vote_{c}").disabled for c in ("A", "B", "tie", "both_bad"))
    engine = open_db(db_url)
    assert votes_df(engine).empty
    from moa_core.store.queries import runs_df

    runs = runs_df(engine, kind="arena")
    assert len(runs) == 2 and all((m or {}).get("arena") == "invalid" for m in runs["meta"])


def test_arena_draws_a_question_from_a_bundled_set(db_url, tmp_path, fake_server):
    save_fake(tmp_path, fake_server, "one")
    save_fake(tmp_path, fake_server, "two")
    at = page("2_Arena.py").run()
    at.text_input(key="rater_input").set_value("dan").run()
    at.button(key="arena_draw").click().run()
    drawn = at.text_area(key="arena_question").value
    assert drawn.strip()
    at.selectbox(key="arena_c1").set_value("saved:one")
    at.selectbox(key="arena_c2").set_value("saved:two")
    at.button(key="arena_start").click().run()
    at.button(key="arena_vote_tie").click().run()
    assert not at.exception
    votes = votes_df(open_db(db_url))
    assert votes["question_set"].tolist() == [at.selectbox(key="arena_qset").value]
    assert votes["outcome"].tolist() == ["tie"]


async def test_blind_review_replays_a_playground_run(db_url, fake_server):
    engine = open_db(db_url)
    cfg = fake_config(fake_server, [fake_agent(fake_server, "p")], baselines=[fake_agent(fake_server, "solo")])
    cfg = cfg.model_copy(update={"name": "reviewed"})
    from moa_core.engine import run_moa

    async with aclosing(Recorder(engine).record(run_moa("What is up?", cfg))) as evs:
        run_id = [ev async for ev in evs][0].run_id  # noqa: RUF015 (async generator: no next())
    at = page("2_Arena.py").run()
    at.text_input(key="rater_input").set_value("erin").run()
    at.segmented_control(key="arena_mode").set_value("Blind review").run()
    assert not at.exception
    assert "What is up?" in texts(at) and "reviewed" not in texts(at)
    at.button(key="review_vote_both_bad").click().run()
    assert "`MoA · reviewed`" in at.success[0].value
    votes = votes_df(engine)
    assert len(votes) == 1 and votes.iloc[0]["run_id"] == run_id and votes.iloc[0]["outcome"] == "both_bad"
    assert votes.iloc[0]["kind"] == "playground" and votes.iloc[0]["rater"] == "erin"
    # after the reveal each answer can get an absolute 1-5 score too
    gid = int(votes.iloc[0]["left_generation_id"])
    at.radio(key=f"score-{gid}").set_value(3)
    next(b for b in at.button if b.label == "Save rating" and b.form_id == f"rate-{gid}").click().run()
    assert any("Rating saved (3★)" in s.value for s in at.success)
    ratings = contender_ratings(engine)
    assert ratings["score"].tolist() == [3] and ratings["rater"].tolist() == ["erin"]
    at.button(key="review_next").click().run()
    assert any("Nothing left to review" in i.value for i in at.info)


def test_arena_random_pair_from_a_chosen_set(db_url, tmp_path, fake_server):
    for name in ("r1", "r2", "r3"):
        save_fake(tmp_path, fake_server, name)
    at = page("2_Arena.py").run()
    at.text_input(key="rater_input").set_value("fay").run()
    at.radio(key="arena_how").set_value("Random pair").run()
    at.multiselect(key="arena_pool").set_value(["saved:r1", "saved:r3"])
    at.text_area(key="arena_question").set_value("Pick a number.")
    at.button(key="arena_start").click().run()
    at.button(key="arena_vote_B").click().run()
    assert not at.exception
    votes = votes_df(open_db(db_url))
    assert len(votes) == 1 and votes.iloc[0]["outcome"] == "right"
    names = {get_run(open_db(db_url), votes.iloc[0][f"{s}_run_id"])["run"]["preset"] for s in ("left", "right")}
    assert names == {"r1", "r3"}

    # a pool of one cannot make a pair
    at.button(key="arena_new").click().run()
    at.multiselect(key="arena_pool").set_value(["saved:r2"])
    at.button(key="arena_start").click().run()
    assert any("at least two" in e.value for e in at.error)


def unstarted_battle(engine) -> arena.Battle:
    """A battle whose two answers were stopped before either wrote a word (a vote cast
    the instant it started): recorded as the engine leaves such runs, cancelled and empty."""
    one, two = (
        arena.Contender(f"model:{m}", agent=AgentSpec(model=m)) for m in ("openai/fake-hidden1", "openai/fake-hidden2")
    )
    battle = arena.new_battle("Name a colour.", one, two, random.Random(3))
    rec, now = Recorder(engine), time.time()
    for side in arena.SIDES:
        run_id, agent = battle.run_ids[side], battle.sides[side].agent
        assert agent is not None
        rec.handle(RunStarted(run_id, battle.question, [], {}, "h", agent.display_name, "arena", now))
        rec.handle(DraftStarted(CallRef(run_id, "baseline", -1, 0, agent.model, agent.display_name), "", {}, now))
        rec.close_unfinished(run_id, "cancelled")
    battle.status = "stopped"
    battle.closed.set()
    return battle


def test_arena_vote_that_cannot_count_reveals_nothing(db_url):
    engine = open_db(db_url)
    battle = unstarted_battle(engine)
    at = page("2_Arena.py")
    at.session_state["arena_battle"] = battle
    at.run()
    at.text_input(key="rater_input").set_value("gus").run()
    assert not at.exception and not at.button(key="arena_vote_A").disabled
    at.button(key="arena_vote_A").click().run()
    assert not at.exception
    body = texts(at)
    assert "not counted" in body and "had not written anything yet" in body
    assert "hidden1" not in body and "hidden2" not in body, "a vote that does not count must not reveal the names"
    assert all(at.button(key=f"arena_vote_{c}").disabled for c in ("A", "B", "tie", "both_bad"))
    assert votes_df(engine).empty
    at.button(key="arena_new").click().run()
    assert "arena_battle" not in at.session_state


async def test_blind_review_in_two_sessions_counts_one_vote(db_url, fake_server):
    """The same rater reviews the same pair in two sessions (two tabs): the first vote
    is saved and revealed, the second is refused with 'already voted' and reveals nothing."""
    engine = open_db(db_url)
    cfg = fake_config(fake_server, [fake_agent(fake_server, "p")], baselines=[fake_agent(fake_server, "solo")])
    cfg = cfg.model_copy(update={"name": "twice"})
    from moa_core.engine import run_moa

    async with aclosing(Recorder(engine).record(run_moa("Which tab wins?", cfg))) as evs:
        [ev async for ev in evs]
    tabs = [page("2_Arena.py").run() for _ in range(2)]
    for at in tabs:
        at.text_input(key="rater_input").set_value("hal").run()
        at.segmented_control(key="arena_mode").set_value("Blind review").run()
        assert "Which tab wins?" in texts(at) and not at.button(key="review_vote_A").disabled
    first, second = tabs
    first.button(key="review_vote_A").click().run()
    assert "`MoA · twice`" in first.success[0].value
    second.button(key="review_vote_B").click().run()
    assert not second.exception
    assert any("already voted" in w.value for w in second.warning)
    assert "twice" not in texts(second) and "solo" not in texts(second)
    assert all(second.button(key=f"review_vote_{c}").disabled for c in ("A", "B", "tie", "both_bad"))
    votes = votes_df(engine)
    assert len(votes) == 1 and votes.iloc[0]["outcome"] == "left" and votes.iloc[0]["rater"] == "hal"
    second.button(key="review_next").click().run()
    assert any("Nothing left to review" in i.value for i in second.info)
