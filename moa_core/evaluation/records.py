"""What an evaluation has stored: its runs, found by name, read back as DataFrames.

An evaluation owns no table of its own. Every answer and every judgement is a run of
kind ``eval`` tagged ``eval:<name>``, whose ``meta`` says what it is:

- answer runs:   ``{"eval", "eval_item": "answer", "question_id", "category",
  "question_hash", "contender", "contender_kind", "contender_hash", "collab",
  "reference", "reference_ok", "final_generation_id", "plan"}``
- judgement runs: ``{"eval", "eval_item": "judge", "question_id", "category",
  "question_hash", "pair": [a, b], "answers": [run_a, run_b], "judge", "judge_hash",
  "verdicts": [v_ab, v_ba], "outcome", "vote_id"}``

Resuming is a lookup here: an item is finished when a run of the same identity
(contender fingerprint and question hash; for judgements also the judge and the two
answer runs) ended ``done``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
from sqlalchemy import Engine, String, cast, select

from moa_core.analysis.objective import ObjectiveReport
from moa_core.evaluation import report as rep
from moa_core.evaluation.judge import reference_check
from moa_core.evaluation.objective import build_objective, proposer_source
from moa_core.store.models import Generation, Run, Vote, table_of
from moa_core.store.queries import read_rows
from moa_core.vocab import GenerationStatus, Role, RunStatus

RUN, GEN, VOTE = table_of(Run), table_of(Generation), table_of(Vote)
EVAL_TAG = "eval"
KIND = "eval"
# The call that writes an answer's final text: a pipeline's last stage, or a model alone.
FINAL_ROLES = (Role.AGGREGATOR, Role.SELECTOR, Role.BASELINE)

ANSWER_COLUMNS = [
    "run_id",
    "created_at",
    "status",
    "contender",
    "contender_kind",
    "contender_hash",
    "shape",
    "question_id",
    "category",
    "question",
    "final_text",
    "final_generation_id",
    "reference",
    "reference_ok",
    "cost",
    "prompt_tokens",
    "completion_tokens",
    "wall_time",
    "collab_model",
    "collab_setting",
]
JUDGEMENT_COLUMNS = [
    "run_id",
    "created_at",
    "status",
    "question_id",
    "category",
    "contender_a",
    "contender_b",
    "answer_a",
    "answer_b",
    "judge",
    "verdict_ab",
    "verdict_ba",
    "outcome",
    "vote_id",
    "cost",
]


def eval_tag(name: str) -> str:
    return f"{EVAL_TAG}:{name}"


def eval_runs(engine: Engine, name: str | None = None, *, with_config: bool = False) -> list[dict[str, Any]]:
    """Every run of evaluation ``name`` (all evaluations when None), oldest first."""
    cols = [
        RUN.c.id,
        RUN.c.created_at,
        RUN.c.status,
        RUN.c.question,
        RUN.c.question_set,
        RUN.c.preset,
        RUN.c.final_text,
        RUN.c.cost,
        RUN.c.prompt_tokens,
        RUN.c.completion_tokens,
        RUN.c.wall_time,
        RUN.c.tags,
        RUN.c.meta,
        RUN.c.error,
    ]
    if with_config:
        cols.append(RUN.c.config)
    stmt = select(*cols).where(RUN.c.kind == KIND).order_by(RUN.c.created_at, RUN.c.id)
    # A coarse filter in SQL (JSON stored as text on SQLite and PostgreSQL alike), the
    # exact one on the parsed meta below.
    # Names with quotes, backslashes or non-ASCII letters are escaped inside the JSON
    # text, so for those only the common prefix is matched in SQL.
    needle = f'"{EVAL_TAG}:'
    if name is not None and name.isascii() and not set(name) & {'"', "\\"}:
        needle = f'"{eval_tag(name)}"'
    stmt = stmt.where(cast(RUN.c.tags, String).contains(needle, autoescape=True))
    out = []
    for row in read_rows(engine, stmt):
        meta = row.get("meta") or {}
        if not isinstance(meta, dict) or "eval" not in meta:
            continue
        if name is not None and meta.get("eval") != name:
            continue
        out.append(row)
    return out


def final_generation_ids(engine: Engine, run_ids: Sequence[str]) -> dict[str, int]:
    """run id -> id of its final answer's generation (aggregator or single model)."""
    if not run_ids:
        return {}
    stmt = (
        select(GEN.c.run_id, GEN.c.id)
        .where(GEN.c.run_id.in_(list(run_ids)), GEN.c.role.in_(FINAL_ROLES), GEN.c.status == GenerationStatus.DONE)
        .order_by(GEN.c.id)
    )
    return {r["run_id"]: int(r["id"]) for r in read_rows(engine, stmt)}


def proposer_drafts(engine: Engine, run_ids: Sequence[str]) -> pd.DataFrame:
    """The finished first-stage drafts of these runs: run_id, slot, name (label or model), text."""
    cols = ["run_id", "slot", "name", "text"]
    if not run_ids:
        return pd.DataFrame(columns=cols)
    stmt = (
        select(GEN.c.run_id, GEN.c.slot, GEN.c.label, GEN.c.model, GEN.c.text)
        .where(
            GEN.c.run_id.in_(list(run_ids)),
            GEN.c.role == Role.PROPOSER,
            GEN.c.layer == 0,
            GEN.c.status == GenerationStatus.DONE,
        )
        .order_by(GEN.c.id)
    )
    rows = [{**r, "name": r["label"] or r["model"]} for r in read_rows(engine, stmt)]
    return pd.DataFrame(rows, columns=cols)


def runs_with_votes(engine: Engine, run_ids: Sequence[str]) -> dict[str, int]:
    """run id -> id of a vote recorded for it (judgement runs)."""
    if not run_ids:
        return {}
    stmt = select(VOTE.c.run_id, VOTE.c.id).where(VOTE.c.run_id.in_(list(run_ids)))
    return {r["run_id"]: int(r["id"]) for r in read_rows(engine, stmt)}


@dataclass(frozen=True)
class AnswerRecord:
    """A finished answer: what a judgement needs."""

    run_id: str
    generation_id: int
    text: str
    contender: str
    question_id: str


def _answer_row(row: dict[str, Any]) -> dict[str, Any]:
    m = row["meta"]
    collab = m.get("collab") or {}
    return {
        "run_id": row["id"],
        "created_at": row["created_at"],
        "status": row["status"],
        "contender": m.get("contender"),
        "contender_kind": m.get("contender_kind"),
        "contender_hash": m.get("contender_hash"),
        "shape": m.get("shape"),
        "question_id": str(m.get("question_id")),
        "category": m.get("category") or "general",
        "question": row["question"],
        "final_text": row["final_text"] or "",
        "final_generation_id": m.get("final_generation_id"),
        "reference": m.get("reference"),
        "reference_ok": m.get("reference_ok"),
        "cost": row["cost"],
        "prompt_tokens": row["prompt_tokens"],
        "completion_tokens": row["completion_tokens"],
        "wall_time": row["wall_time"],
        "collab_model": collab.get("model"),
        "collab_setting": collab.get("setting"),
    }


def _judgement_row(row: dict[str, Any]) -> dict[str, Any]:
    m = row["meta"]
    pair = m.get("pair") or [None, None]
    answers = m.get("answers") or [None, None]
    verdicts = [*list(m.get("verdicts") or []), None, None]
    return {
        "run_id": row["id"],
        "created_at": row["created_at"],
        "status": row["status"],
        "question_id": str(m.get("question_id")),
        "category": m.get("category") or "general",
        "contender_a": pair[0],
        "contender_b": pair[1],
        "answer_a": answers[0],
        "answer_b": answers[1],
        "judge": m.get("judge"),
        "verdict_ab": verdicts[0],
        "verdict_ba": verdicts[1],
        "outcome": m.get("outcome"),
        "vote_id": m.get("vote_id"),
        "cost": row["cost"],
    }


def answers_df(engine: Engine, name: str, runs: list[dict[str, Any]] | None = None) -> pd.DataFrame:
    """Every answer run of the evaluation (all statuses), oldest first."""
    runs = eval_runs(engine, name) if runs is None else runs
    rows = [_answer_row(r) for r in runs if r["meta"].get("eval_item") == "answer"]
    return pd.DataFrame(rows, columns=ANSWER_COLUMNS)


def judgements_df(engine: Engine, name: str, runs: list[dict[str, Any]] | None = None) -> pd.DataFrame:
    """Every judgement run of the evaluation (all statuses), oldest first."""
    runs = eval_runs(engine, name) if runs is None else runs
    rows = [_judgement_row(r) for r in runs if r["meta"].get("eval_item") == "judge"]
    return pd.DataFrame(rows, columns=JUDGEMENT_COLUMNS)


@dataclass
class EvalResults:
    """The current state of an evaluation: for every (contender, question) its latest
    finished answer; for every judged pair its latest judgement of those answers."""

    name: str
    answers: pd.DataFrame
    judgements: pd.DataFrame
    plan: dict[str, Any]
    failed_answers: int = 0
    failed_judgements: int = 0

    @property
    def empty(self) -> bool:
        return self.answers.empty


def current_answers(answers: pd.DataFrame) -> pd.DataFrame:
    done = answers[answers["status"] == RunStatus.DONE]
    return done.sort_values("created_at", kind="stable").drop_duplicates(["contender", "question_id"], keep="last")


def load_results(engine: Engine, name: str, judge: str | None = None) -> EvalResults:
    """Everything the report needs about evaluation ``name``.

    ``judge`` picks one judge model's verdicts when several judged the same evaluation
    (default: the judge of the latest plan, else the latest judge seen).
    """
    runs = eval_runs(engine, name)
    all_answers = answers_df(engine, name, runs)
    answers = current_answers(all_answers).reset_index(drop=True)
    if not answers.empty:
        # reference_ok is stored as the answer finishes; recompute where a run lacks it.
        answers["reference"] = answers["reference"].astype("object").where(answers["reference"].notna(), None)
        answers["reference_ok"] = [
            None if not ref else bool(ok) if isinstance(ok, bool) else reference_check(str(text or ""), ref)
            for ok, ref, text in zip(answers["reference_ok"], answers["reference"], answers["final_text"], strict=True)
        ]
    plan: dict[str, Any] = {}
    for r in runs:
        if r["meta"].get("eval_item") == "answer" and r["meta"].get("plan"):
            plan = r["meta"]["plan"]
    all_j = judgements_df(engine, name, runs)
    if judge is None:
        judge = (plan.get("judge") or {}).get("model") if plan.get("judge") else None
        if judge is None and not all_j.empty:
            judge = all_j["judge"].dropna().iloc[-1] if all_j["judge"].notna().any() else None
    current_ids = set(answers["run_id"])
    j = all_j[
        (all_j["status"] == RunStatus.DONE)
        & (all_j["judge"] == judge)
        & all_j["answer_a"].isin(current_ids)
        & all_j["answer_b"].isin(current_ids)
    ]
    j = (
        j.sort_values("created_at", kind="stable")
        .drop_duplicates(["question_id", "contender_a", "contender_b"], keep="last")
        .reset_index(drop=True)
    )
    failed_a = int((all_answers["status"] != RunStatus.DONE).sum()) if not all_answers.empty else 0
    failed_j = int((all_j["status"] != RunStatus.DONE).sum()) if not all_j.empty else 0
    return EvalResults(name, answers, j, plan, failed_a, failed_j)


@dataclass
class EvalReport:
    """Everything the Evaluate page and ``moa eval`` show about one evaluation."""

    results: EvalResults
    judge: str | None
    pairwise: pd.DataFrame  # report.pairwise_report: overall then per category
    reference: pd.DataFrame  # report.reference_summary
    costs: pd.DataFrame  # report.cost_summary, per contender
    per_question: pd.DataFrame  # report.per_question
    collaborativeness: pd.DataFrame  # report.collaborativeness (empty unless marked contenders)
    judged: int = 0
    unparseable: int = 0
    same_position: int = 0  # judgements where the judge picked the same slot in both orders
    objective: ObjectiveReport | None = None  # "does it help?": None when no question has a reference

    @property
    def contenders(self) -> list[str]:
        return list(dict.fromkeys(self.results.answers["contender"]))


def _cost_rows(engine: Engine, answers: pd.DataFrame) -> pd.DataFrame:
    """One row per model call of the current answers, each carrying its run's
    end-to-end latency (so cost_summary's per-question latency is exact)."""
    ids = answers["run_id"].tolist()
    stmt = select(GEN.c.run_id, GEN.c.cost, GEN.c.prompt_tokens, GEN.c.completion_tokens).where(GEN.c.run_id.in_(ids))
    gens = pd.DataFrame(read_rows(engine, stmt), columns=["run_id", "cost", "prompt_tokens", "completion_tokens"])
    runs = answers.loc[:, ["run_id", "contender", "question_id", "wall_time"]].rename(columns={"wall_time": "latency"})
    return gens.merge(runs, on="run_id", how="inner")


def eval_report(engine: Engine, name: str, judge: str | None = None) -> EvalReport:
    res = load_results(engine, name, judge)
    outcomes = rep.judged_outcomes(res.judgements)
    judge_used = (
        res.judgements["judge"].iloc[0]
        if not res.judgements.empty
        else ((res.plan.get("judge") or {}).get("model") if res.plan.get("judge") else judge)
    )
    pairwise = (
        rep.pairwise_report(outcomes)
        if not outcomes.empty
        else pd.DataFrame(
            columns=[
                "category",
                "contender_a",
                "contender_b",
                "wins_a",
                "wins_b",
                "ties",
                "unparseable",
                "n",
                "win_rate_a",
                "ci_low",
                "ci_high",
            ]
        )
    )
    costs = (
        rep.cost_summary(_cost_rows(engine, res.answers), latency="max") if not res.answers.empty else pd.DataFrame()
    )
    collab_rows = rep.collaborativeness_rows(res.judgements, res.answers)
    collab = rep.collaborativeness(collab_rows) if not collab_rows.empty else pd.DataFrame()
    source = proposer_source(res.answers)
    source_runs = res.answers.loc[res.answers["contender"] == source, "run_id"].tolist() if source else []
    objective = build_objective(res.answers, proposer_drafts(engine, source_runs))
    return EvalReport(
        res,
        judge_used,
        pairwise,
        rep.reference_summary(res.answers),
        costs,
        rep.per_question(res.answers),
        collab,
        len(outcomes),
        int((outcomes["outcome"] == "unparseable").sum()) if not outcomes.empty else 0,
        rep.position_bias(res.judgements),
        objective,
    )


def list_evaluations(engine: Engine) -> pd.DataFrame:
    """One row per evaluation, newest first: name, question_set, contenders, judge,
    answers (finished), judgements (finished), started, last (Unix seconds)."""
    rows: dict[str, dict[str, Any]] = {}
    for r in eval_runs(engine):
        m = r["meta"]
        e = rows.setdefault(
            m["eval"],
            {
                "name": m["eval"],
                "question_set": r["question_set"],
                "contenders": [],
                "judge": None,
                "answers": 0,
                "judgements": 0,
                "started": r["created_at"],
                "last": r["created_at"],
            },
        )
        e["last"] = max(e["last"], r["created_at"])
        if m.get("eval_item") == "answer":
            if m.get("contender") not in e["contenders"]:
                e["contenders"].append(m.get("contender"))
            e["answers"] += r["status"] == RunStatus.DONE
            plan = m.get("plan") or {}
            e["judge"] = (plan.get("judge") or {}).get("model") or e["judge"]
        elif m.get("eval_item") == "judge":
            e["judgements"] += r["status"] == RunStatus.DONE
    df = pd.DataFrame(
        list(rows.values()),
        columns=["name", "question_set", "contenders", "judge", "answers", "judgements", "started", "last"],
    )
    if not df.empty:
        df["contenders"] = df["contenders"].map(lambda c: ", ".join(str(x) for x in c))
        df = df.sort_values("last", ascending=False, kind="stable").reset_index(drop=True)
    return df


__all__ = [
    "ANSWER_COLUMNS",
    "JUDGEMENT_COLUMNS",
    "AnswerRecord",
    "EvalReport",
    "EvalResults",
    "answers_df",
    "current_answers",
    "eval_report",
    "eval_runs",
    "eval_tag",
    "final_generation_ids",
    "judgements_df",
    "list_evaluations",
    "load_results",
    "proposer_drafts",
    "runs_with_votes",
]
