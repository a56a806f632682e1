"""The evaluation runner end to end against a fake OpenAI server with a fake judge.

`EvalFake` extends the shared fake server: models named `fake-judge@...` answer like a
judge (their options pick the verdict), and the server counts requests in flight.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import threading
import time
from typing import Any

import pytest
from sqlalchemy import create_engine, func, select

from moa_core.config import AgentSpec
from moa_core.evaluation.contenders import moa_contender, single_contender
from moa_core.evaluation.judge import both_orders_messages
from moa_core.evaluation.judge_call import judge_agent, judge_fingerprint, judge_pair, rater_name
from moa_core.evaluation.questions import Question, QuestionSet
from moa_core.evaluation.records import eval_report, eval_runs, list_evaluations, load_results
from moa_core.evaluation.runner import EvalPlan, EvalPlanError, finished_items, plan_from_store, run_evaluation
from moa_core.providers import llm
from moa_core.store import Recorder, get_run, open_db, votes_df
from moa_core.store.models import Generation, Run, Vote
from tests.conftest import fake_agent, fake_config
from tests.fake_openai import FakeOpenAI, parse_options

_ANSWER = re.compile(r"\[Start of Assistant (A|B)'s answer\]\n(.*?)\n\[End of Assistant \1's answer\]", re.S)


class EvalFake(FakeOpenAI):
    """The shared fake server plus a judge. `fake-judge@verdict=longer` prefers the longer
    answer in either position (so a side wins in both orders), `verdict=first` always says
    A (position bias: ties after the swap), `verdict=garbage` writes no verdict at all.
    `delay=S` holds each judge reply for S seconds."""

    def __init__(self) -> None:
        super().__init__()
        self.in_flight = 0
        self.max_in_flight = 0
        self.judge_calls = 0
        self.gate = threading.Event()
        self.gate.set()

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.calls.clear()
            self.max_in_flight = 0
            self.judge_calls = 0

    def _handler(self) -> type:
        base = super()._handler()
        fake = self

        class Handler(base):  # type: ignore[misc, valid-type]
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                body = json.loads(raw or b"{}")
                with fake._lock:
                    fake.in_flight += 1
                    fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
                try:
                    fake.gate.wait(30)
                    if "fake-judge" in body.get("model", ""):
                        with fake._lock:
                            fake.requests.append(body)
                            fake.judge_calls += 1
                        self._judge(body)
                    else:
                        self.rfile = io.BytesIO(raw)
                        super().do_POST()
                finally:
                    with fake._lock:
                        fake.in_flight -= 1

            def _judge(self, body: dict[str, Any]) -> None:
                opts = parse_options(body["model"])
                answers = dict(_ANSWER.findall(body["messages"][-1]["content"]))
                a, b = answers.get("A", ""), answers.get("B", "")
                rule = opts.get("verdict", "longer")
                if rule == "garbage":
                    text = "Both answers have merits and flaws."
                else:
                    v = "A" if rule == "first" else ("A" if len(a) > len(b) else "B" if len(b) > len(a) else "tie")
                    text = f"One answer is more complete.\nVerdict: {v}"
                time.sleep(float(opts.get("delay", 0)))
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.close_connection = True
                self.end_headers()
                self._sse(self._chunk(body["model"], text, None))
                self._sse(self._chunk(body["model"], "", "stop"))
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()

        return Handler


@pytest.fixture(scope="module")
def server():
    with EvalFake() as s:
        yield s


@pytest.fixture
def engine(tmp_path):
    return open_db(f"sqlite:///{tmp_path / 'eval.db'}")


def questions(n: int = 4) -> QuestionSet:
    qs = [
        Question(
            id=f"q{i}",
            category="math" if i % 2 else "writing",
            turns=[f"Question number {i}?"],
            reference="m1d0 w1 w2" if i == 1 else None,
        )
        for i in range(1, n + 1)
    ]
    return QuestionSet(name="tiny", format="plain", questions=qs)


def judge(server: FakeOpenAI, verdict: str = "longer", **opts: object) -> AgentSpec:
    suffix = ",".join(f"{k}={v}" for k, v in {"verdict": verdict, **opts}.items())
    return judge_agent(f"openai/fake-judge@{suffix}", api_base=server.url, max_tokens=32)


def contenders(server: FakeOpenAI, delay: float = 0.0) -> list:
    opts = {"delay": delay} if delay else {}
    cfg = fake_config(
        server,
        [fake_agent(server, "p1", tokens=4, **opts), fake_agent(server, "p2", tokens=5, **opts)],
        aggregator=fake_agent(server, "agg", tokens=12, **opts),
    )
    cfg = cfg.model_copy(update={"name": "fake-moa"})
    return [
        moa_contender(cfg),
        single_contender(fake_agent(server, "solo", tokens=3, **opts), "solo", timeout=10, num_retries=0),
    ]


def plan(server: FakeOpenAI, n: int = 4, verdict: str = "longer", name: str = "t", **kw: Any) -> EvalPlan:
    return EvalPlan(
        name,
        questions(n),
        kw.pop("contenders", None) or contenders(server),
        kw.pop("judge", None) or judge(server, verdict),
        judge_timeout=10,
        judge_retries=0,
        **kw,
    )


def count(engine, table) -> int:
    with engine.connect() as c:
        return c.execute(select(func.count()).select_from(table)).scalar_one()


async def test_end_to_end_two_contenders_four_questions(server, engine):
    server.reset()
    seen = []
    summary = await run_evaluation(engine, plan(server), concurrency=2, on_progress=seen.append)
    assert (summary.answers_new, summary.answers_failed, summary.judgements_new) == (8, 0, 4)
    assert summary.votes == 4 and summary.unparseable == 0
    assert server.judge_calls == 8  # 4 pairs, both orders each
    # progress: counts rise to the total, the last report says done with no time left
    assert seen[0].done == 0 and seen[0].total == 12
    assert seen[-1].done == seen[-1].total == 12 and seen[-1].eta == 0
    assert [p.done for p in seen] == sorted(p.done for p in seen)
    assert "judgements 4/4" in seen[-1].summary()

    runs = eval_runs(engine, "t")
    assert {r["meta"]["eval_item"] for r in runs} == {"answer", "judge"}
    assert all(r["question_set"] == "tiny" and r["status"] == "done" for r in runs)
    with engine.connect() as c:
        kinds = c.execute(select(Run.__table__.c.kind).distinct()).scalars().all()
        roles = c.execute(select(Generation.__table__.c.role).where(Generation.__table__.c.role == "judge")).all()
    assert kinds == ["eval"] and len(roles) == 8

    # judge verdicts are votes named after the contenders, for the Analysis page
    votes = votes_df(engine, rater_kind="judges")
    assert len(votes) == 4
    assert set(votes["left_name"]) == {"fake-moa"} and set(votes["right_name"]) == {"solo"}
    assert set(votes["outcome"]) == {"left"} and set(votes["rater"]) == {f"judge:{judge(server).model}"}
    assert set(votes["kind"]) == {"eval"} and set(votes["question_set"]) == {"tiny"}
    assert votes_df(engine, rater_kind="people").empty

    rep = eval_report(engine, "t")
    overall = rep.pairwise[rep.pairwise["category"] == "(overall)"].iloc[0]
    assert (overall["contender_a"], overall["contender_b"]) == ("fake-moa", "solo")
    assert (overall["wins_a"], overall["n"]) == (4, 4)
    assert overall["win_rate_a"] == 1.0 and 0.4 < overall["ci_low"] < 1.0 and overall["ci_high"] == 1.0
    assert set(rep.pairwise["category"]) == {"(overall)", "math", "writing"}
    ref = rep.reference.set_index("contender")
    assert ref.loc["solo", "correct"] == 1 and ref.loc["fake-moa", "correct"] == 0 and ref.loc["solo", "n"] == 1
    costs = rep.costs.set_index("contender")
    assert costs.loc["fake-moa", "questions"] == 4 and costs.loc["fake-moa", "completion_tokens_per_question"] == 21
    assert costs.loc["solo", "completion_tokens_per_question"] == 3
    assert len(rep.per_question) == 8 and rep.per_question["latency"].notna().all()
    assert rep.unparseable == 0 and rep.judged == 4

    evals = list_evaluations(engine)
    assert evals.iloc[0]["name"] == "t" and evals.iloc[0]["answers"] == 8 and evals.iloc[0]["judgements"] == 4


async def test_rerun_skips_everything_finished(server, engine):
    await run_evaluation(engine, plan(server), concurrency=2)
    server.reset()
    summary = await run_evaluation(engine, plan(server), concurrency=2)
    assert (summary.answers_new, summary.judgements_new) == (0, 0)
    assert (summary.answers_resumed, summary.judgements_resumed) == (8, 4)
    assert server.requests == [] and count(engine, Vote.__table__) == 4
    assert finished_items(engine, plan(server)) == (8, 4)
    # more questions under the same name: only the new ones are answered and judged
    summary = await run_evaluation(engine, plan(server, n=6), concurrency=2)
    assert (summary.answers_new, summary.judgements_new, summary.answers_resumed) == (4, 2, 8)
    # a changed contender is a different contender: its answers are redone
    changed = contenders(server)
    changed[1] = single_contender(fake_agent(server, "solo", tokens=4), "solo", timeout=10, num_retries=0)
    summary = await run_evaluation(engine, plan(server, n=6, contenders=changed), concurrency=2)
    assert (summary.answers_new, summary.answers_resumed, summary.judgements_new) == (6, 6, 6)
    rep = eval_report(engine, "t")
    assert len(rep.results.answers) == 12 and rep.judged == 6


async def test_interrupted_evaluation_resumes_without_redoing(server, engine):
    server.reset()
    p = plan(server, contenders=contenders(server, delay=0.02))
    progress = []
    task = asyncio.create_task(run_evaluation(engine, p, concurrency=2, on_progress=progress.append, tick=0.05))
    while not progress or progress[-1].answers_done < 3:
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    runs = eval_runs(engine, "t")
    statuses = [r["status"] for r in runs]
    assert "running" not in statuses  # what was in flight ended as cancelled
    done_answers = {
        (r["meta"]["contender"], r["meta"]["question_id"])
        for r in runs
        if r["status"] == "done" and r["meta"]["eval_item"] == "answer"
    }
    done_judged = [r for r in runs if r["status"] == "done" and r["meta"]["eval_item"] == "judge"]
    assert 3 <= len(done_answers) < 8

    server.reset()
    summary = await run_evaluation(engine, p, concurrency=2)
    assert summary.answers_resumed == len(done_answers) and summary.answers_new == 8 - len(done_answers)
    assert summary.judgements_resumed == len(done_judged) and summary.judgements_new == 4 - len(done_judged)
    # the second run asked only for the missing answers: MoA = 3 calls, single = 1
    asked = sum(
        3 if c == "fake-moa" else 1
        for c in ("fake-moa", "solo")
        for q in ("q1", "q2", "q3", "q4")
        if (c, q) not in done_answers
    )
    assert len(server.requests) == asked + 2 * summary.judgements_new
    res = load_results(engine, "t")
    assert len(res.answers) == 8 and len(res.judgements) == 4
    assert count(engine, Vote.__table__) == 4  # no vote twice


async def test_killed_between_judgement_and_vote_repairs_the_vote(server, engine):
    await run_evaluation(engine, plan(server, n=1), concurrency=1)
    with engine.begin() as c:  # as if the process died right after the judgement ended
        c.execute(Vote.__table__.delete())
    raw = create_engine(str(engine.url))
    with raw.begin() as c:
        runs = c.execute(select(Run.__table__.c.id, Run.__table__.c.meta)).all()
    raw.dispose()
    from moa_core.store import annotate_run

    for run_id, meta in runs:
        if meta.get("eval_item") == "judge":
            annotate_run(engine, run_id, meta={"vote_id": None})
    server.reset()
    summary = await run_evaluation(engine, plan(server, n=1), concurrency=1)
    assert summary.judgements_new == 0 and summary.votes == 1 and server.requests == []
    assert count(engine, Vote.__table__) == 1
    await run_evaluation(engine, plan(server, n=1), concurrency=1)
    assert count(engine, Vote.__table__) == 1


async def test_unparseable_verdicts_are_kept_apart(server, engine):
    summary = await run_evaluation(engine, plan(server, verdict="garbage"), concurrency=2)
    assert summary.judgements_new == 4 and summary.unparseable == 4 and summary.votes == 0
    assert votes_df(engine).empty
    judged = [r for r in eval_runs(engine, "t") if r["meta"]["eval_item"] == "judge"]
    assert all(r["status"] == "done" and r["meta"]["outcome"] == "unparseable" for r in judged)
    assert all(r["meta"]["verdicts"] == ["unparseable", "unparseable"] for r in judged)
    rep = eval_report(engine, "t")
    assert rep.unparseable == 4
    overall = rep.pairwise[rep.pairwise["category"] == "(overall)"].iloc[0]
    assert overall["unparseable"] == 4 and overall["n"] == 0 and overall["ties"] == 0
    # unparseable is a finished judgement: not judged again
    server.reset()
    again = await run_evaluation(engine, plan(server, verdict="garbage"), concurrency=2)
    assert again.judgements_new == 0 and server.judge_calls == 0


async def test_position_bias_becomes_a_tie(server, engine):
    await run_evaluation(engine, plan(server, verdict="first"), concurrency=2)
    votes = votes_df(engine, rater_kind="judges")
    assert len(votes) == 4 and set(votes["outcome"]) == {"tie"}
    judged = [r["meta"]["verdicts"] for r in eval_runs(engine, "t") if r["meta"]["eval_item"] == "judge"]
    assert all(v == ["A", "A"] for v in judged)
    assert eval_report(engine, "t").same_position == 4


@pytest.mark.parametrize("limit", [1, 3])
async def test_concurrency_bound_is_respected(server, engine, limit, monkeypatch):
    from moa_core.providers import llm

    # Counted where the calls leave the process: the server's own count can lag by the
    # moment between its last write and its bookkeeping.
    calls = {"now": 0, "max": 0}
    real = llm.stream_chat

    async def counting(*args, **kwargs):
        calls["now"] += 1
        calls["max"] = max(calls["max"], calls["now"])
        try:
            async for delta in real(*args, **kwargs):
                yield delta
        finally:
            calls["now"] -= 1

    monkeypatch.setattr(llm, "stream_chat", counting)
    server.reset()
    singles = [
        single_contender(fake_agent(server, f"s{i}", tokens=3, delay=0.01), f"s{i}", timeout=10, num_retries=0)
        for i in range(3)
    ]
    p = plan(server, n=4, contenders=singles, judge=judge(server, delay=0.03))
    summary = await run_evaluation(engine, p, concurrency=limit)
    assert summary.answers_new == 12 and summary.judgements_new == 12
    # each item makes one call at a time, so calls in flight never exceed the bound...
    assert calls["max"] <= limit
    # ...and with room for several they do overlap, at the server too
    if limit > 1:
        assert calls["max"] > 1 and server.max_in_flight > 1


async def test_failed_answers_are_retried_and_block_their_judgements(server, engine):
    broken = single_contender(fake_agent(server, "down", fail=500), "down", timeout=5, num_retries=0)
    cs = [contenders(server)[1], broken]
    summary = await run_evaluation(engine, plan(server, n=2, contenders=cs), concurrency=2)
    assert summary.answers_new == 2 and summary.answers_failed == 2
    assert summary.judgements_blocked == 2 and summary.judgements_new == 0
    assert any("down" in e for e in summary.errors)
    server.reset()
    again = await run_evaluation(engine, plan(server, n=2, contenders=cs), concurrency=2)
    assert again.answers_resumed == 2 and again.answers_failed == 2  # failures are tried again


async def test_judge_failure_is_not_a_verdict(server, engine):
    bad_judge = judge_agent("openai/fake-broken@fail=500", api_base=server.url, max_tokens=16)
    summary = await run_evaluation(engine, plan(server, n=2, judge=bad_judge), concurrency=2)
    assert summary.judgements_failed == 2 and summary.judgements_new == 0 and summary.votes == 0
    judged = [r for r in eval_runs(engine, "t") if r["meta"]["eval_item"] == "judge"]
    assert all(r["status"] == "failed" and r["meta"]["outcome"] is None for r in judged)
    rep = eval_report(engine, "t")
    assert rep.judged == 0 and rep.results.failed_judgements == 2


async def test_progress_callback_error_stops_and_cleans_up(server, engine):
    class Stop(BaseException):
        pass

    def on_progress(p):
        if p.answers_done >= 1:
            raise Stop

    p = plan(server, contenders=contenders(server, delay=0.02))
    with pytest.raises(Stop):
        await run_evaluation(engine, p, concurrency=2, on_progress=on_progress, tick=0.05)
    assert all(r["status"] != "running" for r in eval_runs(engine, "t"))


async def test_plan_from_store_rebuilds_for_resume(server, engine, tmp_path):
    path = tmp_path / "qs.jsonl"
    path.write_text(
        "\n".join(json.dumps({"id": q.id, "question": q.text, "category": q.category}) for q in questions(3).questions)
    )
    from moa_core.evaluation.runner import load_questions

    qs, source = load_questions(str(path), limit=2)
    p = EvalPlan(
        "stored", qs, contenders(server), judge(server), judge_timeout=10, judge_retries=0, source=source, limit=2
    )
    await run_evaluation(engine, p, concurrency=2)
    again = plan_from_store(engine, "stored")
    assert [c.name for c in again.contenders] == ["fake-moa", "solo"]
    assert [c.fingerprint() for c in again.contenders] == [c.fingerprint() for c in p.contenders]
    assert len(again.questions) == 2 and again.judge == p.judge
    assert finished_items(engine, again) == (4, 2)
    bigger = plan_from_store(engine, "stored", limit=3)
    summary = await run_evaluation(engine, bigger, concurrency=2)
    assert (summary.answers_new, summary.judgements_new) == (2, 1)
    with pytest.raises(EvalPlanError, match="no stored evaluation"):
        plan_from_store(engine, "nope")


def test_plan_validation(server):
    with pytest.raises(EvalPlanError, match="unique"):
        EvalPlan("x", questions(), [contenders(server)[1], contenders(server)[1]])
    with pytest.raises(EvalPlanError, match="at least two"):
        EvalPlan("x", questions(), [contenders(server)[1]], judge(server))
    with pytest.raises(EvalPlanError, match="name"):
        EvalPlan("bad\nname", questions(), contenders(server))
    three = [*contenders(server), single_contender(fake_agent(server, "x"), "x")]
    assert len(EvalPlan("x", questions(), three, judge(server)).pair_list()) == 3
    vs_first = EvalPlan("x", questions(), three, judge(server), pairs="vs_first").pair_list()
    assert [(a.name, b.name) for a, b in vs_first] == [("fake-moa", "solo"), ("fake-moa", "x")]


async def test_runs_left_running_by_a_killed_process_are_closed_and_redone(server, engine):
    from moa_core.evaluation.runner import _answer_meta
    from moa_core.events import RunStarted
    from moa_core.store import Recorder, annotate_run

    p = plan(server, n=1)
    c, q = p.contenders[1], p.questions.questions[0]
    rec = Recorder(engine, question_set="tiny", tags=["eval", "eval:t"])
    rec.handle(RunStarted("ghost", q.text, [], {}, "", c.name, "eval", time.time() - 10))
    annotate_run(engine, "ghost", meta=_answer_meta(p, c, q))
    summary = await run_evaluation(engine, p, concurrency=2)  # too recent to be called abandoned
    assert summary.answers_new == 2
    assert [r["status"] for r in eval_runs(engine, "t") if r["id"] == "ghost"] == ["running"]
    await run_evaluation(engine, p, concurrency=2, abandoned_after=5)
    ghost = next(r for r in eval_runs(engine, "t") if r["id"] == "ghost")
    assert ghost["status"] == "cancelled" and "abandoned" in ghost["error"]


async def test_evaluation_and_resume_on_sqlite_and_postgres(server, db_url):
    engine = open_db(db_url)
    summary = await run_evaluation(engine, plan(server, n=2, name='naïve "quoted" eval'), concurrency=2)
    assert (summary.answers_new, summary.judgements_new, summary.votes) == (4, 2, 2)
    await run_evaluation(engine, plan(server, n=2, name="other"), concurrency=2)
    again = await run_evaluation(engine, plan(server, n=2, name='naïve "quoted" eval'), concurrency=2)
    assert (again.answers_new, again.answers_resumed, again.judgements_resumed) == (0, 4, 2)
    assert set(list_evaluations(engine)["name"]) == {'naïve "quoted" eval', "other"}
    assert eval_report(engine, "other").judged == 2


async def test_a_judgement_is_one_run_of_two_judge_calls(server, engine):
    """The judge's calls go through the engine; the stored run keeps the shape readers expect:
    one run of kind eval, two judge generations (slot = order), the judge prompt as system prompt."""
    server.reset()
    j = judge(server, "longer")
    result = await judge_pair(Recorder(engine), j, "Which is longer?", "short", "a much longer answer")
    assert result.ok and result.outcome == "right" and result.verdicts == ("B", "A")
    stored = get_run(engine, result.run_id)
    assert stored is not None
    run = stored["run"]
    assert (run["kind"], run["status"], run["preset"]) == ("eval", "done", rater_name(j))
    assert run["config_hash"] == f"judge-{judge_fingerprint(j)}" and run["config"] == {
        "judge": j.model_dump(mode="json")
    }
    assert run["final_text"] == "right" and run["error"] is None
    gens = stored["generations"]
    assert [(g["call_id"], g["role"], g["layer"], g["slot"]) for g in gens] == [
        ("judge-0-0", "judge", 0, 0),
        ("judge-0-1", "judge", 0, 1),
    ]
    ab, ba = both_orders_messages("Which is longer?", "short", "a much longer answer")
    assert [g["system_prompt"] for g in gens] == [ab[0]["content"], ba[0]["content"]]
    assert all(g["status"] == "done" and g["model"] == j.model and g["label"] == j.display_name for g in gens)
    assert all({k: v for k, v in g["params"].items() if k not in ("seed", "client")} == j.public_params() for g in gens)
    assert {g["params"]["client"] for g in gens} == {llm.client_for(j)}  # the path that served the judge
    assert [g["text"].strip().splitlines()[-1] for g in gens] == ["Verdict: B", "Verdict: A"]
    assert run["prompt_tokens"] == sum(g["prompt_tokens"] for g in gens) > 0
    # Streamed through the engine like any call: the Recorder kept each reply's token timing
    # (the hand-driven judge of before recorded only the finished text).
    assert all(g["timing"] and g["timing"][-1][1] == len(g["text"]) for g in gens)


async def test_a_pair_too_long_to_send_is_a_failed_judgement_not_a_crash(server, engine):
    server.reset()
    huge = "word " * 25_000  # the pair makes a prompt over the engine's input limit
    result = await judge_pair(Recorder(engine), judge(server), "Which?", huge, huge)
    assert not result.ok and result.error is not None and result.error.startswith("judge call 1 failed: ")
    assert "characters long" in result.error and server.judge_calls == 0
    stored = get_run(engine, result.run_id)
    assert stored is not None and stored["run"]["status"] == "failed" and stored["generations"] == []
