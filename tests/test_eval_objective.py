"""`moa eval` on a small set with references: the "does it help?" section, end to end.

Contenders answer through litellm's mock_response (a fixed text per agent), so which
questions each gets right is decided by the references below:

    q1 ref 4, q2 ref 4, q3 ref 7, q4 ref "4 km", q5 ref B
    P1 "4"            -> q1 q2            (2/5)
    P2 "7"            -> q3               (1/5)
    P3 "Answer: 4 km" -> q1 q2 q4         (3/5: a reference without unit ignores the answer's)
    MoA "(B), or 7"   -> q3 q5            (2/5)
    majority by hand: q1, q2 "4" (2 votes) right; q3 4 / 7 / 4 km and q4 4 / 7 / 4 km are
    three-way ties; on q5 nobody names a letter -> 2/5
    MoA vs P3 (the best proposer): wins q3 q5, losses q1 q2 q4 -> 2/3/0, p = 1.0
"""

from __future__ import annotations

import json

import yaml

from moa_core.cli import main
from moa_core.evaluation.records import eval_report
from moa_core.store import open_db


def _agent(label: str, text: str) -> dict[str, object]:
    return {"model": "openai/mock", "label": label, "max_tokens": 16, "extra": {"mock_response": text}}


def test_eval_prints_the_objective_report(tmp_path, capsys):
    cfg = {
        "name": "mock-moa",
        "layers": [{"proposers": [_agent("P1", "4"), _agent("P2", "7"), _agent("P3", "Answer: 4 km")]}],
        "aggregator": _agent("agg", "(B), or 7"),
        "timeout": 10,
        "num_retries": 0,
    }
    (tmp_path / "moa.yaml").write_text(yaml.safe_dump(cfg))
    refs = ["4", "4", "7", "4 km", "B"]
    qs = [{"id": f"q{i}", "question": f"Question {i}?", "reference": r} for i, r in enumerate(refs, 1)]
    (tmp_path / "qs.jsonl").write_text("\n".join(json.dumps(q) for q in qs))
    db = f"sqlite:///{tmp_path / 'eval.db'}"
    args = ["eval", "--questions", str(tmp_path / "qs.jsonl"), "--contender", str(tmp_path / "moa.yaml")]
    assert main([*args, "--database", db, "--name", "obj"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "Does it help? Right against the reference, 5 question(s)" in out
    for row in ("P1 (proposer) │ proposer alone │ 2/5", "P2 (proposer) │ proposer alone │ 1/5"):
        assert row in out
    assert "P3 (proposer) │ proposer alone │ 3/5 │ 60% (23–88%)" in out
    assert "majority vote │ majority vote │ 2/5" in out and "mock-moa │ MoA │ 2/5" in out
    assert "No evidence of a gain for mock-moa (MoA) over the best single proposer, P3 (proposer)" in out
    assert "2 wins, 3 losses, 0 ties over 5 questions, exact sign test p = 1.00" in out
    assert "Proposers alone: the first-stage drafts inside mock-moa's runs" in out

    rep = eval_report(open_db(db), "obj")
    assert rep.objective is not None and rep.objective.best == "P3 (proposer)"
    table = rep.objective.table.set_index("contender")
    assert table.loc["mock-moa", "correct"] == 2 and table.loc["majority vote", "correct"] == 2


def test_eval_without_references_has_no_objective_section(tmp_path, capsys):
    (tmp_path / "qs.jsonl").write_text(json.dumps({"id": "q1", "question": "Hello?"}))
    cfg = {"name": "m", "layers": [{"proposers": [_agent("P1", "hi")]}], "aggregator": _agent("a", "hi")}
    (tmp_path / "moa.yaml").write_text(yaml.safe_dump(cfg))
    db = f"sqlite:///{tmp_path / 'eval.db'}"
    args = ["eval", "--questions", str(tmp_path / "qs.jsonl"), "--contender", str(tmp_path / "moa.yaml")]
    assert main([*args, "--database", db]) == 0
    assert "Does it help?" not in capsys.readouterr().out
    assert eval_report(open_db(db), "qs: m").objective is None


# ---------------------------------------------------------------- pipelines: shape, select answers


def _stages_config(kinds: list[str]):
    from moa_core.config import MoAConfig

    stages = [
        {
            "kind": k,
            "agents": [_agent("P1", "x"), _agent("P2", "y")] if k in ("propose", "review") else [_agent("F", "z")],
        }
        for k in kinds
    ]
    return MoAConfig.model_validate({"name": "pipe", "stages": stages, "num_retries": 0})


def test_contender_shape_label_and_cap_for_stage_configs():
    from moa_core.config import AgentSpec
    from moa_core.evaluation.contenders import moa_contender, single_contender

    assert moa_contender(_stages_config(["propose", "select"])).shape == "select"
    council = moa_contender(_stages_config(["propose", "review", "synthesize"]), "my council")
    assert council.shape == "council"
    assert single_contender(AgentSpec(model="openai/x")).shape == "single"
    run = council.run_config()
    # The final stage's agent carries the contender's name, so the answer (and votes on it) are labelled with it.
    assert run.pipeline()[-1].agents[0].label == "my council" and run.aggregator.label == "my council"
    capped = council.with_max_tokens(8).run_config()
    assert {a.max_tokens for s in capped.pipeline() for a in s.agents} == {8}
    assert capped.stable_hash() != run.stable_hash()


def test_select_answers_are_checked_on_the_chosen_draft(tmp_path, monkeypatch):
    """A select pipeline's final text is the chosen draft; the selector's own text only names it.
    The engine's select stage is stood in for by a scripted event stream."""
    import asyncio
    import time

    from moa_core.evaluation import runner
    from moa_core.evaluation.contenders import moa_contender
    from moa_core.evaluation.questions import Question, QuestionSet
    from moa_core.events import CallRef, DraftDone, DraftStarted, LayerDone, RunDone, RunStarted, Totals, Usage
    from moa_core.vocab import Role, RunStatus, StageKind

    drafts = {"q1": ("It is 12 km.", "12 m"), "q2": ("(C)", "Answer: B")}  # the selector picks the second draft

    async def scripted(question, config, baselines=(), kind="eval", **_):
        run_id = f"run-{question[-3:-1]}"
        qid = "q1" if "1" in question else "q2"
        t = time.time()
        yield RunStarted(
            run_id, question, [], config.model_dump(mode="json"), config.stable_hash(), config.name, kind, t
        )
        for slot, text in enumerate(drafts[qid]):
            ref = CallRef(run_id, Role.PROPOSER, 0, slot, "openai/mock", f"P{slot + 1}")
            yield DraftStarted(ref, "", {}, t)
            yield DraftDone(ref, text, "stop", Usage(), 0.0, t, t, None)
        yield LayerDone(run_id, 0, 2, 0, t)
        sel = CallRef(run_id, Role.SELECTOR, 1, 0, "openai/mock", config.name)
        yield DraftStarted(sel, "", {}, t)
        yield DraftDone(sel, "CHOICE: Response B", "stop", Usage(), 0.0, t, t, None)
        yield LayerDone(run_id, 1, 1, 0, t, kind=StageKind.SELECT, details={"chosen": "proposer-0-1", "parsed": True})
        yield RunDone(run_id, RunStatus.DONE, drafts[qid][1], Totals(), t)

    monkeypatch.setattr(runner, "run_moa", scripted)
    qs = QuestionSet(
        name="s",
        format="plain",
        questions=[
            Question(id="q1", turns=["Question (1)?"], reference="12 m"),
            Question(id="q2", turns=["Question (2)?"], reference="B"),
        ],
    )
    engine = open_db(f"sqlite:///{tmp_path / 'eval.db'}")
    contender = moa_contender(_stages_config(["propose", "select"]), "ranker")
    summary = asyncio.run(runner.run_evaluation(engine, runner.EvalPlan("sel", qs, [contender], None)))
    assert summary.answers_new == 2 and not summary.errors
    rep = eval_report(engine, "sel")
    answers = rep.results.answers.set_index("question_id")
    assert list(answers["final_text"]) == ["12 m", "Answer: B"] and answers["reference_ok"].tolist() == [True, True]
    assert set(answers["shape"]) == {"select"}
    obj = rep.objective
    assert obj is not None
    table = obj.table.set_index("contender")
    assert table.loc["ranker", "role"] == "select" and table.loc["ranker", "correct"] == 2
    # Proposers alone come from the select pipeline's own drafts when there is no MoA: P1 0/2, P2 2/2.
    assert table.loc["P1 (proposer)", "correct"] == 0 and table.loc["P2 (proposer)", "correct"] == 2
    assert obj.best == "P2 (proposer)" and "no evidence either way" in obj.headline


def test_scored_rows_old_answers_and_repeated_labels():
    import pandas as pd

    from moa_core.evaluation.objective import proposer_source, scored_rows

    answers = pd.DataFrame(
        [
            # Stored before pipelines had stages: no shape, the kind says single or MoA.
            {"run_id": "r1", "contender": "solo", "contender_kind": "single", "shape": None, "question_id": "q1"}
            | {"final_text": "4", "reference": "4"},
            {"run_id": "r2", "contender": "moa", "contender_kind": "moa", "shape": None, "question_id": "q1"}
            | {"final_text": "5", "reference": "4"},
            {"run_id": "r3", "contender": "moa", "contender_kind": "moa", "shape": None, "question_id": "q2"}
            | {"final_text": "hi", "reference": None},  # no reference: not scored
        ]
    )
    drafts = pd.DataFrame(
        [
            {"run_id": "r2", "slot": 0, "name": "Qwen", "text": "four"},
            {"run_id": "r2", "slot": 1, "name": "Qwen", "text": "5"},
            {"run_id": "r9", "slot": 0, "name": "Qwen", "text": "4"},  # a run of another contender: ignored
        ]
    )
    assert proposer_source(answers) == "moa"
    rows = scored_rows(answers, drafts)
    got = {(r["contender"], r["role"], r["key"], r["correct"]) for r in rows.to_dict("records")}
    assert got == {
        ("solo", "single", "4", True),
        ("moa", "moa", "5", False),
        ("Qwen #1 (proposer)", "proposer", "4", True),
        ("Qwen #2 (proposer)", "proposer", "5", False),
    }
