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
