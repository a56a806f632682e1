"""The Evaluate page with Streamlit's AppTest: set up, run and resume an evaluation of a
saved config against the fake server, then read the report. The judged flow with the
bundled local models is in tests/test_eval_local.py and tests/test_browser_evaluate.py.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from moa_core.config import save_config
from moa_core.evaluation.records import eval_report, eval_runs, load_results
from moa_core.evaluation.report_html import eval_report_html
from moa_core.evaluation.runner import run_evaluation
from moa_core.store import open_db
from moa_core.ui import layout
from tests.conftest import fake_agent, fake_config, md_text
from tests.html_export_support import assert_inert
from tests.test_eval_runner import EvalFake, plan

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def server():
    with EvalFake() as s:
        yield s


@pytest.fixture
def db_url(tmp_path, monkeypatch, server):
    url = f"sqlite:///{tmp_path / 'moa.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    configs = tmp_path / "configs"
    configs.mkdir()
    monkeypatch.setenv("MOA_SAVED_CONFIGS_DIR", str(configs))
    cfg = fake_config(
        server,
        [fake_agent(server, "p1", tokens=4), fake_agent(server, "p2", tokens=5)],
        aggregator=fake_agent(server, "agg", tokens=12),
    )
    save_config(cfg.model_copy(update={"name": "fakecfg"}), configs / "fakecfg.yaml")
    layout._store.clear()
    yield url
    layout._store.clear()


def page(name: str = "4_Evaluate.py") -> AppTest:
    return AppTest.from_file(str(ROOT / "pages" / name), default_timeout=120)


def texts(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption]
    parts += [x.value for kind in ("info", "success", "warning", "error") for x in getattr(at, kind)]
    return "\n".join(md_text(str(p)) for p in parts)


def test_empty_page_offers_the_bundled_set_and_warns_about_a_local_judge(db_url):
    at = page().run()
    assert not at.exception
    assert at.selectbox(key="ev_qset").value == "moa-studio-30"
    assert "No evaluation yet." in texts(at)
    local_judges = [o for o in at.selectbox(key="ev_judge").options if o.startswith("local/")]
    assert local_judges, "the bundled models are offered as judges"
    at.selectbox(key="ev_judge").set_value(local_judges[0]).run()
    assert "tiny local judge is weak evidence" in texts(at)
    at.selectbox(key="ev_judge").set_value("(no judge)").run()
    assert "tiny local judge is weak evidence" not in texts(at)


def test_run_from_the_page_then_resume(db_url):
    at = page().run()
    at.number_input(key="ev_limit").set_value(2)
    at.multiselect(key="ev_contenders").set_value(["fakecfg", "fakecfg:aggregator"])
    at.selectbox(key="ev_judge").set_value("(no judge)")
    at.text_input(key="ev_name").set_value("page-eval")
    at.run()
    assert not at.exception
    assert "2 questions × 2 contenders = 4 answers; no judge." in texts(at)
    at.button(key="ev_run").click().run()
    assert not at.exception, at.exception
    out = texts(at)
    assert "Finished **page-eval**" in out and "4 new answer(s)" in out
    engine = open_db(db_url)
    runs = eval_runs(engine, "page-eval")
    assert len(runs) == 4 and all(r["status"] == "done" and r["question_set"] == "moa-studio-30" for r in runs)
    assert at.selectbox(key="ev_pick").value == "page-eval"
    assert "Cost, tokens and latency per question" in out
    # the same set-up again: the page says it resumes, and nothing is redone
    assert "already has 4 answer(s) and 0 judgement(s)" in out
    assert at.button(key="ev_run").label == "Resume evaluation"
    at.number_input(key="ev_limit").set_value(3).run()
    at.button(key="ev_run").click().run()
    assert not at.exception
    assert "2 new answer(s)" in texts(at) and "4 resumed" in texts(at)
    assert len(eval_runs(engine, "page-eval")) == 6


def test_report_of_a_judged_evaluation(db_url, server):
    engine = open_db(db_url)
    asyncio.run(run_evaluation(engine, plan(server, name="judged"), concurrency=2))
    at = page().run()
    assert not at.exception
    out = texts(at)
    assert "Judged win rates" in out and "judge:openai/fake-judge" in out
    table = at.dataframe[0].value
    overall = table[table["category"] == "(overall)"].iloc[0]
    assert (overall["A"], overall["B"], overall["A/B/tie"]) == ("fake-moa", "solo", "4/0/0")
    assert overall["A win rate (95% CI)"].startswith("100% (")
    assert "Reference check" in out
    assert "Download report as HTML" in [b.proto.label for b in at.get("download_button")]
    report = eval_report_html(eval_report(engine, "judged"), "qs")
    assert_inert(report, None)
    assert "Judged win rates" in report and "4/0/0" in report
    # the Analysis page counts the judge's votes
    analysis = page("3_Analysis.py").run()
    assert not analysis.exception
    board = analysis.dataframe[0].value
    names = " ".join(map(str, board["contender"]))
    assert "fake-moa" in names and "solo" in names
    assert load_results(engine, "judged").judgements["outcome"].eq("left").all()


def test_does_it_help_section(db_url):
    """Proposers, majority and MoA scored against references, with the paired comparison in words.

    Mock answers (litellm mock_response): P1 "4", P2 "7", P3 "Answer: 4 km", the aggregator "(B), or 7";
    references 4, 4, 7, "4 km", B. By hand: P1 2/5, P2 1/5, P3 3/5, majority 2/5, MoA 2/5; MoA vs P3 wins 2
    (q3, q5), loses 3, p = 1.0. The config's name is hostile markdown: it must reach the page as text.
    """
    from moa_core.config import MoAConfig
    from moa_core.evaluation.contenders import moa_contender
    from moa_core.evaluation.questions import Question, QuestionSet
    from moa_core.evaluation.runner import EvalPlan

    def agent(label: str, text: str) -> dict[str, object]:
        return {"model": "openai/mock", "label": label, "max_tokens": 16, "extra": {"mock_response": text}}

    name = "**bold** [x](javascript:alert(1))"
    cfg = MoAConfig.model_validate(
        {
            "name": name,
            "layers": [{"proposers": [agent("P1", "4"), agent("P2", "7"), agent("P3", "Answer: 4 km")]}],
            "aggregator": agent("agg", "(B), or 7"),
            "num_retries": 0,
        }
    )
    refs = ["4", "4", "7", "4 km", "B"]
    qs = QuestionSet(
        name="refs",
        format="plain",
        questions=[Question(id=f"q{i}", turns=[f"Question {i}?"], reference=r) for i, r in enumerate(refs, 1)],
    )
    engine = open_db(db_url)
    asyncio.run(run_evaluation(engine, EvalPlan("objective", qs, [moa_contender(cfg)], None), concurrency=2))
    at = page().run()
    assert not at.exception
    out = texts(at)
    assert "Does it help?" in out and "5 question(s) with a reference" in out
    tables = [d.value for d in at.dataframe]
    acc = next(t for t in tables if "accuracy (95% CI)" in t.columns).set_index("contender")
    assert (
        acc.loc["P3 (proposer)", "right"] == "3/5" and acc.loc["P3 (proposer)", "accuracy (95% CI)"] == "60% (23–88%)"
    )
    assert acc.loc["majority vote", "right"] == "2/5" and acc.loc[name, "right"] == "2/5"
    assert acc.loc[name, "kind"] == "MoA"
    paired = next(t for t in tables if "wins/losses/ties" in t.columns).set_index("contender")
    assert paired.loc[name, "wins/losses/ties"] == "2/3/0" and paired.loc[name, "sign test"] == "p = 1.00"
    headline = f"No evidence of a gain for {name} (MoA) over the best single proposer, P3 (proposer)"
    assert headline in out
    # Escaped: no bold, no link made from the contender's name.
    raw = "\n".join(m.value for m in at.markdown)
    assert "**bold**" not in raw and "](javascript:" not in raw
    html = eval_report_html(eval_report(engine, "objective"), "refs")
    assert_inert(html, None)
    assert "Does it help?" in html and "2/3/0" in html and "No evidence of a gain" in html
