"""The Campaigns page with Streamlit's AppTest: the overview and its create form, an
unknown id, and one rater's skip and vote (with comment and reason) on a temporary database."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from streamlit.testing.v1 import AppTest

from moa_core.evaluation.runner import run_evaluation
from moa_core.store import open_db
from moa_core.store.campaigns import ASG, create_campaign, list_campaigns, progress
from moa_core.ui import layout
from tests.campaign_support import seed_answers
from tests.fake_openai import FakeOpenAI
from tests.test_campaign_eval import _plan

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def db_url(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'moa.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    layout._store.clear()  # store() is cached per process: make it open this test's database
    yield url
    layout._store.clear()


@pytest.fixture(scope="module")
def server():
    with FakeOpenAI() as s:
        yield s


def page() -> AppTest:
    return AppTest.from_file(str(ROOT / "pages" / "8_Campaign.py"), default_timeout=90)


def texts(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption]
    parts += [x.value for kind in ("info", "success", "warning", "error") for x in getattr(at, kind)]
    return "\n".join(str(p) for p in parts)


def test_overview_without_evaluations_says_what_to_do(db_url):
    at = page().run()
    assert not at.exception
    assert "Run an evaluation first" in texts(at)


async def test_create_form_opens_a_campaign_over_an_evaluation(db_url, server):
    await run_evaluation(open_db(db_url), _plan(server))
    at = page().run()
    at.text_input(key="campaign_new_name").input("**Spring** round")
    at.number_input(key="campaign_new_target").set_value(2)
    at.button[0].click()  # the form's submit button
    at.run()
    assert not at.exception
    (camp,) = list_campaigns(open_db(db_url))
    assert (camp.name, camp.target_votes, camp.evaluation) == ("**Spring** round", 2, "camp-eval")
    assert at.query_params["c"] == camp.id
    assert "\\*\\*Spring\\*\\*" in at.title[0].value  # a name is text, not markdown


def test_unknown_campaign_is_one_line(db_url):
    open_db(db_url)
    at = page()
    at.query_params["c"] = "c-nope"
    at.run()
    assert not at.exception
    assert "No campaign with id" in at.error[0].value


def test_a_rater_skips_then_votes_with_comment_and_reason(db_url):
    engine = open_db(db_url)
    cid = create_campaign(engine, "c", seed_answers(engine, 2, 2), double_rate=0.0, repeat_rate=0.0)
    at = page()
    at.query_params["c"] = cid
    at.run()
    assert "Enter your name" in texts(at)
    at.text_input(key="rater_input").input("dora").run()
    assert "Answer " in texts(at) and "model-0" not in texts(at)
    at.button(key="campaign_skip").click().run()
    assert not at.exception
    at.text_input(key=next(w.key for w in at.text_input if w.key.startswith("campaign_comment_"))).input("close")
    at.selectbox(key=next(w.key for w in at.selectbox if w.key.startswith("campaign_reason_"))).select("clearer")
    at.button(key="campaign_vote_B").click().run()
    assert not at.exception
    assert "Vote saved" in texts(at) and "model-0" in texts(at)  # names revealed after the vote
    p = progress(engine, cid)
    assert (p.votes, [(r.rater, r.votes, r.skips) for r in p.raters]) == (1, [("dora", 1, 1)])
    with engine.connect() as conn:
        row = conn.execute(select(ASG.c.comment, ASG.c.reason).where(ASG.c.status == "voted")).one()
    assert tuple(row) == ("close", "clearer")
    at.button(key="campaign_next").click().run()
    assert "Nothing left for you to rate" in texts(at)
