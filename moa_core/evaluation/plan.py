"""What an evaluation is: a named question set × contenders × an optional judge.

:class:`EvalPlan` is the input of :func:`moa_core.evaluation.runner.run_evaluation`.
Its name is its identity: the runner resumes whatever a stored evaluation of that name
already finished. :func:`plan_from_store` rebuilds a stored plan to resume it by name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import Engine

from moa_core.config import AgentSpec, MoAConfig
from moa_core.evaluation.contenders import Collab, Contender, ContenderError
from moa_core.evaluation.questions import (
    Question,
    QuestionSet,
    QuestionSetError,
    list_bundled_sets,
    load_bundled_set,
    load_question_set,
)
from moa_core.evaluation.records import eval_runs
from moa_core.inputs import user_path
from moa_core.vocab import digest

PairMode = Literal["all", "vs_first"]
MAX_NAME = 120
_NAME_OK = re.compile(r"^[^\x00-\x1f\x7f]+$")


class EvalPlanError(ValueError):
    """An evaluation that cannot start as described; the message says why."""


def question_hash(q: Question) -> str:
    """What makes two questions the same item: the text asked and the reference."""
    return digest(f"{q.text}\x00{q.reference or ''}")


def default_eval_name(question_set: str, contenders: list[Contender], judge: AgentSpec | None) -> str:
    """A name derived from the inputs, so running the same command again resumes it."""
    name = f"{question_set}: {' vs '.join(c.name for c in contenders)}"
    name += f" (judge {judge.model})" if judge else " (no judge)"
    if len(name) > MAX_NAME:
        name = f"{name[: MAX_NAME - 10]}… {digest(name, 8)}"
    return name


@dataclass
class EvalPlan:
    """What to evaluate. ``source`` says where the questions came from, so a stored
    evaluation can be resumed by name: ``{"bundled": name}``, ``{"path": file}`` or
    None (an upload)."""

    name: str
    questions: QuestionSet
    contenders: list[Contender]
    judge: AgentSpec | None = None
    pairs: PairMode = "all"
    judge_timeout: float = 120.0
    judge_retries: int = 1
    source: dict[str, str] | None = None
    limit: int | None = None

    def __post_init__(self) -> None:
        self.name = (self.name or "").strip()
        if not self.name or len(self.name) > MAX_NAME or not _NAME_OK.match(self.name):
            raise EvalPlanError(f"an evaluation name is 1-{MAX_NAME} printable characters")
        if not self.contenders:
            raise EvalPlanError("an evaluation needs at least one contender")
        names = [c.name for c in self.contenders]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise EvalPlanError(f"contender names must be unique; repeated: {', '.join(dupes)}")
        if self.judge is not None and len(self.contenders) < 2:
            raise EvalPlanError("a judge compares contenders: give at least two")
        if self.pairs not in ("all", "vs_first"):
            raise EvalPlanError("pairs is 'all' or 'vs_first'")

    def pair_list(self) -> list[tuple[Contender, Contender]]:
        cs = self.contenders
        if self.judge is None:
            return []
        if self.pairs == "vs_first":
            return [(cs[0], c) for c in cs[1:]]
        return [(a, b) for i, a in enumerate(cs) for b in cs[i + 1 :]]

    def meta(self) -> dict[str, Any]:
        """Stored on every answer run: enough to resume by name."""
        return {
            "question_set": self.questions.name,
            "source": self.source,
            "limit": self.limit,
            "contenders": [c.name for c in self.contenders],
            "pairs": self.pairs,
            "judge": self.judge.model_dump(mode="json") if self.judge else None,
            "judge_timeout": self.judge_timeout,
            "judge_retries": self.judge_retries,
        }


def load_questions(ref: str, limit: int | None = None) -> tuple[QuestionSet, dict[str, str]]:
    """A bundled set by name, or a JSONL file; the first ``limit`` questions."""
    if ref in list_bundled_sets():
        qs, source = load_bundled_set(ref), {"bundled": ref}
    else:
        p = user_path(ref)
        qs, source = load_question_set(p), {"path": str(p.resolve())}
    return limit_questions(qs, limit), source


def limit_questions(qs: QuestionSet, limit: int | None) -> QuestionSet:
    if limit is None or limit >= len(qs):
        return qs
    if limit < 1:
        raise EvalPlanError("limit must be at least 1")
    return qs.model_copy(update={"questions": qs.questions[:limit]})


def plan_from_store(engine: Engine, name: str, *, limit: int | None = None) -> EvalPlan:
    """Rebuild a stored evaluation's plan to resume it by name.

    Contenders come from their latest stored answer run; questions are reloaded from
    where they came from (a bundled set or a file; uploads cannot be reloaded).
    """
    runs = eval_runs(engine, name, with_config=True)
    answers = [r for r in runs if r["meta"].get("eval_item") == "answer"]
    if not answers:
        raise EvalPlanError(f"no stored evaluation named {name!r}")
    meta = answers[-1]["meta"]
    p = meta.get("plan") or {}
    source = p.get("source") or {}
    try:
        if "bundled" in source:
            qs, _ = load_questions(source["bundled"])
        elif "path" in source:
            qs, _ = load_questions(source["path"])
        else:
            raise EvalPlanError(f"{name!r} used an uploaded question set; run it again with the file")
    except QuestionSetError as err:
        raise EvalPlanError(f"cannot reload the questions of {name!r}: {err}") from None
    latest: dict[str, dict[str, Any]] = {}
    for r in answers:
        latest[r["meta"].get("contender")] = r
    contenders = []
    for cname in p.get("contenders") or list(latest):
        stored = latest.get(cname)
        if stored is None:
            raise EvalPlanError(f"contender {cname!r} of {name!r} has no stored answer; run the full command again")
        contenders.append(_contender_from_run(stored))
    judge = AgentSpec.model_validate(p["judge"]) if p.get("judge") else None
    lim = limit if limit is not None else p.get("limit")
    return EvalPlan(
        name,
        limit_questions(qs, lim),
        contenders,
        judge,
        p.get("pairs", "all"),
        float(p.get("judge_timeout", 120.0)),
        int(p.get("judge_retries", 1)),
        source or None,
        lim,
    )


def _contender_from_run(r: dict[str, Any]) -> Contender:
    m, cfg = r["meta"], r.get("config") or {}
    collab = Collab(m["collab"]["model"], m["collab"]["setting"]) if m.get("collab") else None
    common: dict[str, Any] = dict(
        name=m["contender"],
        timeout=float(m.get("timeout", 120.0)),
        num_retries=int(m.get("num_retries", 1)),
        collab=collab,
    )
    try:
        if m.get("contender_kind") == "single":
            return Contender(agent=AgentSpec.model_validate(cfg["single"]), **common)
        return Contender(config=MoAConfig.model_validate(cfg), **common)
    except Exception as err:
        raise ContenderError(f"cannot rebuild contender {m['contender']!r}: {err}") from None


__all__ = [
    "MAX_NAME",
    "EvalPlan",
    "EvalPlanError",
    "PairMode",
    "default_eval_name",
    "limit_questions",
    "load_questions",
    "plan_from_store",
    "question_hash",
]
