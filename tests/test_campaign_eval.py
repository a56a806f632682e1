"""A campaign's answers come from the evaluation runner, ahead of voting."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from moa_core.evaluation.campaign import CampaignSourceError, campaign_from_evaluation, prepare_campaign
from moa_core.evaluation.contenders import single_contender
from moa_core.evaluation.questions import Question, QuestionSet
from moa_core.evaluation.runner import EvalPlan
from moa_core.store import open_db
from moa_core.store.campaigns import PAIR, claim_next, get_campaign, pair_texts, progress
from moa_core.store.models import Run, table_of
from tests.conftest import fake_agent
from tests.fake_openai import FakeOpenAI

RUN = table_of(Run)


@pytest.fixture(scope="module")
def server():
    with FakeOpenAI() as s:
        yield s


def _plan(server: FakeOpenAI) -> EvalPlan:
    qs = QuestionSet(
        name="tiny",
        format="plain",
        questions=[Question(id=f"q{i}", category="math", turns=[f"Question {i}?"]) for i in range(3)],
    )
    contenders = [
        single_contender(fake_agent(server, name, tokens=n), name, timeout=10, num_retries=0)
        for n, name in ((3, "solo-a"), (4, "solo-b"), (5, "solo-c"))
    ]
    return EvalPlan(name="camp-eval", questions=qs, contenders=contenders)


async def test_answers_are_generated_ahead_and_reused_on_resume(server, tmp_path) -> None:
    engine = open_db(f"sqlite:///{tmp_path / 'moa.db'}")
    cid, summary = await prepare_campaign(engine, _plan(server), "first", target_votes=2, concurrency=2)
    assert summary.answers_new == 9
    camp = get_campaign(engine, cid)
    assert camp is not None and (camp.evaluation, camp.question_set, camp.target_votes) == ("camp-eval", "tiny", 2)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).where(PAIR.c.campaign_id == cid)).scalar_one() == 9  # 3 q x 3 pairs
        runs = conn.execute(select(func.count()).select_from(RUN)).scalar_one()
    # A second campaign on the same plan resumes: no model is asked again.
    cid2, again = await prepare_campaign(engine, _plan(server), "second")
    assert again.answers_new == 0 and again.answers_resumed == 9 and cid2 != cid
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(RUN)).scalar_one() == runs
    a = claim_next(engine, cid, "alice")
    assert a is not None
    question, left, right = pair_texts(engine, a)
    assert question.startswith("Question ") and left and right and left != right
    assert progress(engine, cid).contenders == 3


def test_an_evaluation_without_answers_is_refused(tmp_path) -> None:
    engine = open_db(f"sqlite:///{tmp_path / 'moa.db'}")
    with pytest.raises(CampaignSourceError, match="no question answered by two contenders"):
        campaign_from_evaluation(engine, "nothing-here")


async def test_cli_opens_and_lists_a_campaign(server, tmp_path, capsys, monkeypatch) -> None:
    from moa_core.cli import main

    monkeypatch.setenv("COLUMNS", "200")  # a wide table: no folded cells
    url = f"sqlite:///{tmp_path / 'moa.db'}"
    engine = open_db(url)
    from moa_core.evaluation.runner import run_evaluation

    await run_evaluation(engine, _plan(server))
    assert main(["campaign", "--from-eval", "camp-eval", "--name", "[b]x", "--target", "2", "--database", url]) == 0
    cid, link = capsys.readouterr().out.strip().split("\t")
    assert link == f"/Campaign?c={cid}"
    assert main(["campaign", "--database", url]) == 0
    listed = capsys.readouterr().out
    assert cid in listed and "[b]x" in listed and "0/9" in listed
    assert main(["campaign", "--from-eval", "nope", "--database", url]) == 2
    assert "no question answered" in capsys.readouterr().err
    assert main(["campaign", "--from-eval", "camp-eval", "--target", "0", "--database", url]) == 2
