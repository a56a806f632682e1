"""Contender specs, the collaborativeness variants, and report helpers of an evaluation."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import yaml

from moa_core.config import load_preset
from moa_core.evaluation import report
from moa_core.evaluation.contenders import (
    ContenderError,
    collaborativeness_contenders,
    contender_from_dict,
    contender_to_dict,
    moa_contender,
    resolve_contender,
    resolve_contenders,
)
from moa_core.evaluation.records import eval_report
from moa_core.evaluation.runner import EvalPlan, default_eval_name, format_duration, run_evaluation
from moa_core.store import open_db, votes_df
from tests.conftest import fake_agent, fake_config
from tests.test_eval_runner import EvalFake, judge, questions


@pytest.fixture(scope="module")
def server():
    with EvalFake() as s:
        yield s


def test_specs_resolve_to_contenders(tmp_path):
    moa = resolve_contender("local-moa")
    assert len(moa) == 1 and moa[0].kind == "moa" and moa[0].name == "local-moa"
    cfg = moa[0].run_config()
    assert cfg.aggregator.label == "local-moa" and cfg.baselines == [] and cfg.name == "local-moa"
    agg = resolve_contender("local-moa:aggregator")[0]
    preset = load_preset("local-moa")
    assert agg.kind == "single" and agg.name == preset.aggregator.model
    assert agg.agent.max_tokens == preset.aggregator.max_tokens
    assert agg.agent.temperature == preset.aggregator.temperature
    assert agg.run_agent().label == agg.name
    assert [c.name for c in resolve_contender("local-moa:baselines")] == [b.display_name for b in preset.baselines]
    assert len(resolve_contender("local-moa:proposers")) == 3
    assert resolve_contender("openai/gpt-4o-mini")[0].agent.model == "openai/gpt-4o-mini"
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(preset.model_copy(update={"name": "mine"}).model_dump(mode="json")))
    assert resolve_contender(str(path))[0].name == "mine"
    assert resolve_contender(f"{path}:aggregator")[0].kind == "single"
    for bad, msg in (
        ("no-such-thing", "unknown contender"),
        ("nope:aggregator", "not a preset"),
        (str(tmp_path / "missing.yaml"), "not found"),
        ("", "empty"),
    ):
        with pytest.raises(ContenderError, match=msg):
            resolve_contender(bad)


def test_names_are_unique_and_caps_apply():
    cs = resolve_contenders(["local-moa", "local-moa", "local-moa:aggregator"], max_tokens=32)
    assert [c.name for c in cs] == ["local-moa", "local-moa #2", "local/qwen2.5-coder-0.5b"]
    assert all(a.max_tokens <= 32 for c in cs if c.config for a in c.config.all_agents())
    assert cs[2].agent.max_tokens == 32
    assert cs[0].fingerprint() != resolve_contender("local-moa")[0].fingerprint()  # a cap is another contender


def test_contender_round_trip_and_fingerprint():
    for c in collaborativeness_contenders(load_preset("local-moa")):
        again = contender_from_dict(contender_to_dict(c))
        assert again.fingerprint() == c.fingerprint() and again.name == c.name and again.collab == c.collab


def test_collaborativeness_variants():
    cfg = load_preset("local-moa")
    cs = collaborativeness_contenders(cfg)
    assert cs[0].name == "local-moa" and cs[0].collab is None
    alone = [c for c in cs if c.collab and c.collab.setting == "alone"]
    agg = [c for c in cs if c.collab and c.collab.setting == "aggregator"]
    assert len(alone) == len(agg) == 3
    for c in agg:
        rc = c.run_config()
        models = [a.model for a in rc.layers[0].proposers]
        assert rc.aggregator.model not in models and len(models) == 2  # the model aggregates the *others*
    first_only = cfg.layers[0].model_copy(update={"proposers": cfg.layers[0].proposers[:1]})
    one_model = cfg.model_copy(update={"layers": [first_only]})
    with pytest.raises(ContenderError, match="two different proposer models"):
        collaborativeness_contenders(one_model)


async def test_collaborativeness_evaluation_end_to_end(server, tmp_path):
    engine = open_db(f"sqlite:///{tmp_path / 'c.db'}")
    cfg = fake_config(
        server,
        [fake_agent(server, "p1", tokens=4), fake_agent(server, "p2", tokens=30)],
        aggregator=fake_agent(server, "agg", tokens=10),
    ).model_copy(update={"name": "cfg"})
    cs = collaborativeness_contenders(cfg)
    plan = EvalPlan("collab", questions(3), cs, judge(server), pairs="vs_first", judge_timeout=10, judge_retries=0)
    summary = await run_evaluation(engine, plan, concurrency=3)
    assert summary.answers_new == 15 and summary.judgements_new == 12
    rep = eval_report(engine, "collab")
    c = rep.collaborativeness.set_index("model")
    assert set(c.index) == {"openai/fake-p1@tokens=4", "openai/fake-p2@tokens=30"}
    assert (c["alone_n"] == 3).all() and (c["aggregator_n"] == 3).all()
    # the fake judge prefers length: p2 (30 tokens) beats the config's 10 either way, p1 (4) never does
    assert c.loc["openai/fake-p2@tokens=30", "alone_win_rate"] == 1.0
    assert c.loc["openai/fake-p1@tokens=4", "aggregator_win_rate"] == 0.0
    assert len(votes_df(engine, rater_kind="judges")) == 12


def test_report_helpers():
    j = pd.DataFrame({"verdict_ab": ["A", "B", "A", "unparseable"], "verdict_ba": ["A", "A", "B", "A"]})
    assert report.position_bias(j) == 1
    answers = pd.DataFrame(
        {
            "contender": ["x", "x", "y"],
            "reference": ["4", None, "4"],
            "reference_ok": [True, None, False],
            "question_id": ["a", "b", "a"],
        }
    )
    ref = report.reference_summary(answers).set_index("contender")
    assert ref.loc["x", "n"] == 1 and ref.loc["x", "correct"] == 1 and ref.loc["y", "accuracy"] == 0
    lo, hi = report.wilson_interval(1, 1)
    assert 0.2 < lo < 0.21 and hi == 1.0
    assert all(math.isnan(x) for x in report.wilson_interval(0, 0))
    shown = report.pairwise_display(
        pd.DataFrame(
            [
                {
                    "category": "(overall)",
                    "contender_a": "a",
                    "contender_b": "b",
                    "wins_a": 3,
                    "wins_b": 1,
                    "ties": 0,
                    "unparseable": 2,
                    "n": 4,
                    "win_rate_a": 0.75,
                    "ci_low": 0.3,
                    "ci_high": 0.95,
                }
            ]
        )
    )
    assert shown.iloc[0]["A/B/tie"] == "3/1/0" and shown.iloc[0]["A win rate (95% CI)"] == "75% (30%–95%)"


def test_names_and_durations():
    cs = [moa_contender(load_preset("local-moa"))]
    assert default_eval_name("set", cs, None) == "set: local-moa (no judge)"
    long = default_eval_name("set", cs * 1, None).ljust(200, "x")
    assert len(default_eval_name(long, cs, None)) <= 120
    assert format_duration(None) == "–" and format_duration(3.24) == "3.2s" and format_duration(75) == "1m 15s"
    assert format_duration(7300) == "2h 01m"
