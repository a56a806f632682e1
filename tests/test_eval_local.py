"""The evaluation loop with the bundled local models: contenders and judge all offline."""

from __future__ import annotations

import pytest

from moa_core.config import load_preset
from moa_core.evaluation.contenders import aggregator_alone, moa_contender
from moa_core.evaluation.judge_call import judge_agent
from moa_core.evaluation.questions import load_bundled_set
from moa_core.evaluation.records import eval_report, eval_runs
from moa_core.evaluation.runner import EvalPlan, limit_questions, run_evaluation
from moa_core.store import open_db, votes_df
from tests.conftest import requires_local

pytestmark = [pytest.mark.local_models, requires_local]


async def test_local_moa_against_its_aggregator_judged_locally(tmp_path):
    engine = open_db(f"sqlite:///{tmp_path / 'local.db'}")
    cfg = load_preset("local-moa")
    contenders = [c.with_max_tokens(24) for c in (moa_contender(cfg), aggregator_alone(cfg))]
    qs = limit_questions(load_bundled_set("moa-studio-30"), 2)
    plan = EvalPlan(
        "local",
        qs,
        contenders,
        judge_agent("local/qwen2.5-coder-0.5b", max_tokens=48),
        source={"bundled": "moa-studio-30"},
        limit=2,
    )
    summary = await run_evaluation(engine, plan, concurrency=2)
    assert summary.answers_new == 4 and summary.answers_failed == 0, summary.errors
    assert summary.judgements_new == 2 and summary.judgements_failed == 0, summary.errors
    runs = eval_runs(engine, "local")
    assert all(r["status"] == "done" for r in runs)
    judged = [r["meta"] for r in runs if r["meta"]["eval_item"] == "judge"]
    assert all(m["outcome"] in ("left", "right", "tie", "unparseable") for m in judged)
    parseable = sum(m["outcome"] != "unparseable" for m in judged)
    votes = votes_df(engine, rater_kind="judges")
    assert len(votes) == parseable == summary.votes
    assert set(votes["left_name"]) <= {"local-moa"} and set(votes["rater"]) <= {"judge:local/qwen2.5-coder-0.5b"}
    rep = eval_report(engine, "local")
    assert len(rep.results.answers) == 4 and rep.judged == 2
    assert set(rep.reference["contender"]) == {"local-moa", "local/qwen2.5-coder-0.5b"}  # both questions have one
    # again: everything is finished, nothing runs
    again = await run_evaluation(engine, plan, concurrency=2)
    assert (again.answers_new, again.judgements_new, again.answers_resumed, again.judgements_resumed) == (0, 0, 4, 2)
