"""Campaigns built on evaluations: answers are generated ahead by the evaluation runner
(bounded concurrency, progress, resumable), so raters never wait on a model; a campaign
can also reuse the answers an evaluation already stored."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine

from moa_core.evaluation.plan import EvalPlan
from moa_core.evaluation.records import current_answers, load_results
from moa_core.evaluation.runner import DEFAULT_CONCURRENCY, EvalProgress, EvalSummary, run_evaluation
from moa_core.store.campaigns import PairSpec, create_campaign


class CampaignSourceError(ValueError):
    """The evaluation has no stored answers to compare."""


def evaluation_pairs(engine: Engine, evaluation: str) -> list[PairSpec]:
    """Every pair of contenders on every question, over the evaluation's latest finished
    answers (a question answered by fewer than two contenders gives no pair)."""
    answers = current_answers(load_results(engine, evaluation).answers)
    answers = answers[answers["final_generation_id"].notna()]
    pairs: list[PairSpec] = []
    for qid, group in answers.sort_values(["question_id", "contender"]).groupby("question_id", sort=True):
        rows = group.to_dict("records")
        for a, b in itertools.combinations(rows, 2):
            category = a.get("category")
            pairs.append(
                PairSpec(
                    question_id=str(qid),
                    a_contender=str(a["contender"]),
                    b_contender=str(b["contender"]),
                    a_generation_id=int(a["final_generation_id"]),
                    b_generation_id=int(b["final_generation_id"]),
                    category=str(category) if isinstance(category, str) and category else None,
                )
            )
    return pairs


def campaign_from_evaluation(engine: Engine, evaluation: str, name: str | None = None, **options: Any) -> str:
    """A campaign over the answers evaluation ``evaluation`` stored; returns its id.
    ``options`` are `store.campaigns.create_campaign`'s (target_votes, selection, ...)."""
    pairs = evaluation_pairs(engine, evaluation)
    if not pairs:
        raise CampaignSourceError(
            f"evaluation {evaluation!r} has no question answered by two contenders: run or resume it first"
        )
    question_set = load_results(engine, evaluation).plan.get("question_set")
    return create_campaign(
        engine,
        name or evaluation,
        pairs,
        evaluation=evaluation,
        question_set=str(question_set) if question_set else None,
        **options,
    )


async def prepare_campaign(
    engine: Engine,
    plan: EvalPlan,
    name: str | None = None,
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    on_progress: Callable[[EvalProgress], None] | None = None,
    **options: Any,
) -> tuple[str, EvalSummary]:
    """Generate (or resume) the plan's answers through the evaluation runner, then open a
    campaign over them. A plan with a judge is judged too; raters do not need it."""
    summary = await run_evaluation(engine, plan, concurrency=concurrency, on_progress=on_progress)
    return campaign_from_evaluation(engine, plan.name, name, **options), summary


__all__ = ["CampaignSourceError", "campaign_from_evaluation", "evaluation_pairs", "prepare_campaign"]
