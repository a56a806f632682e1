"""Batch evaluation: a question set × contenders, then an optional pairwise judge.

Work items are answers (one contender, one question: a run of kind ``eval``) and
judgements (one pair of contenders on one question, judged in both orders: a run with
two ``judge`` generations, plus a vote ``judge:<model>`` when the verdict is readable).
At most ``concurrency`` items are in flight at once. The bound is a task pool rather
than a semaphore: an item is only created when a slot is free, which also lets a
judgement whose answers just finished jump ahead of the remaining answers, so a stopped
evaluation leaves complete pairs behind. A MoA answer's proposers still run in parallel
inside its one item.

Resume is by name: :func:`run_evaluation` first looks up what the evaluation already
finished (see :mod:`moa_core.evaluation.records`) and only runs the rest. Stopping it
(task cancelled, Ctrl-C, a Streamlit stop raised from the progress callback, the
process killed) loses at most the items in flight: their runs end as ``cancelled`` (or
stay ``running`` after a kill, until :func:`close_abandoned` ends them) and are redone
next time.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine

from moa_core.engine import RunInputError, run_moa, run_single
from moa_core.evaluation.contenders import Contender
from moa_core.evaluation.judge import reference_check
from moa_core.evaluation.judge_call import Judgement, judge_fingerprint, judge_pair, rater_name
from moa_core.evaluation.plan import (
    EvalPlan,
    EvalPlanError,
    default_eval_name,
    limit_questions,
    load_questions,
    plan_from_store,
    question_hash,
)
from moa_core.evaluation.questions import Question
from moa_core.evaluation.records import (
    EVAL_TAG,
    FINAL_ROLES,
    AnswerRecord,
    eval_runs,
    eval_tag,
    final_generation_ids,
    runs_with_votes,
)
from moa_core.evaluation.report import format_duration
from moa_core.events import DraftDone, RunDone, RunStarted
from moa_core.store.ratings import DuplicateVoteError, add_vote
from moa_core.store.recorder import Recorder, annotate_run
from moa_core.vocab import Role, RunStatus, VoteOutcome

DEFAULT_CONCURRENCY = 2


# ---------------------------------------------------------------- progress


@dataclass(frozen=True)
class EvalProgress:
    answers_total: int
    answers_done: int
    judgements_total: int
    judgements_done: int
    resumed: int
    failed: int
    unparseable: int
    in_flight: int
    elapsed: float
    eta: float | None
    last: str = ""

    @property
    def total(self) -> int:
        return self.answers_total + self.judgements_total

    @property
    def done(self) -> int:
        return self.answers_done + self.judgements_done

    @property
    def fraction(self) -> float:
        return 1.0 if self.total == 0 else self.done / self.total

    def summary(self) -> str:
        parts = [f"{self.done}/{self.total} items", f"answers {self.answers_done}/{self.answers_total}"]
        if self.judgements_total:
            parts.append(f"judgements {self.judgements_done}/{self.judgements_total}")
        if self.resumed:
            parts.append(f"{self.resumed} resumed")
        if self.failed:
            parts.append(f"{self.failed} failed")
        if self.unparseable:
            parts.append(f"{self.unparseable} unparseable")
        parts.append(f"ETA {format_duration(self.eta)}" if self.eta is not None else "ETA –")
        return " · ".join(parts)


@dataclass
class EvalSummary:
    name: str
    answers_new: int = 0
    answers_resumed: int = 0
    answers_failed: int = 0
    judgements_new: int = 0
    judgements_resumed: int = 0
    judgements_failed: int = 0
    judgements_blocked: int = 0
    unparseable: int = 0
    votes: int = 0
    elapsed: float = 0.0
    errors: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- items


@dataclass(frozen=True)
class _Answer:
    contender: Contender
    question: Question


@dataclass(frozen=True)
class _Judge:
    question: Question
    a: Contender
    b: Contender

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.question.id, self.a.name, self.b.name)


def _answer_meta(plan: EvalPlan, c: Contender, q: Question) -> dict[str, Any]:
    return {
        "eval": plan.name,
        "eval_item": "answer",
        "question_id": q.id,
        "category": q.category,
        "question_hash": question_hash(q),
        "contender": c.name,
        "contender_kind": c.kind,
        "shape": c.shape,
        "contender_hash": c.fingerprint(),
        "contender_index": plan.contenders.index(c),
        "timeout": c.timeout,
        "num_retries": c.num_retries,
        "collab": {"model": c.collab.model, "setting": c.collab.setting} if c.collab else None,
        "reference": q.reference,
        "plan": plan.meta(),
    }


def _recorder(engine: Engine, plan: EvalPlan) -> Recorder:
    return Recorder(engine, question_set=plan.questions.name, tags=[EVAL_TAG, eval_tag(plan.name)])


async def _run_answer(engine: Engine, plan: EvalPlan, item: _Answer) -> tuple[AnswerRecord | None, str | None]:
    """One contender answering one question; (record, None) or (None, error)."""
    c, q = item.contender, item.question
    meta = _answer_meta(plan, c, q)
    try:
        if c.config is not None:
            events = run_moa(q.text, c.run_config(), baselines=[], kind="eval")
        else:
            events = run_single(q.text, c.run_agent(), kind="eval", timeout=c.timeout, num_retries=c.num_retries)
    except RunInputError as err:
        return None, f"{c.name} on {q.id}: {err}"
    run_id: str | None = None
    final: DraftDone | None = None
    end: RunDone | None = None
    async with aclosing(_recorder(engine, plan).record(events)) as stream:
        async for ev in stream:
            if isinstance(ev, RunStarted):
                run_id = ev.run_id
                annotate_run(engine, run_id, meta=meta)
            elif isinstance(ev, DraftDone) and ev.ref.role in FINAL_ROLES and ev.ok:
                final = ev
                # Before RunDone marks the run finished: a finished run always has these.
                gen = final_generation_ids(engine, [ev.ref.run_id]).get(ev.ref.run_id)
                extra: dict[str, Any] = {"final_generation_id": gen}
                # A selector's own text only names its choice; its answer (the chosen draft)
                # arrives with RunDone, so that check waits (load_results redoes a missed one).
                if q.reference and ev.ref.role != Role.SELECTOR:
                    extra["reference_ok"] = reference_check(ev.text, q.reference)
                annotate_run(engine, ev.ref.run_id, meta=extra)
            elif isinstance(ev, RunDone):
                end = ev
                if final is not None and final.ref.role == Role.SELECTOR and q.reference and ev.status == "done":
                    annotate_run(engine, ev.run_id, meta={"reference_ok": reference_check(ev.final_text, q.reference)})
    if end is None or run_id is None:
        return None, f"{c.name} on {q.id}: the run did not finish"
    if end.status != RunStatus.DONE or final is None:
        return None, f"{c.name} on {q.id}: {end.error or end.status}"
    gen_id = final_generation_ids(engine, [run_id]).get(run_id)
    if gen_id is None:
        return None, f"{c.name} on {q.id}: the final answer was not stored"
    return AnswerRecord(run_id, gen_id, end.final_text or final.text, c.name, q.id), None


async def _run_judge(engine: Engine, plan: EvalPlan, item: _Judge, a: AnswerRecord, b: AnswerRecord) -> Judgement:
    assert plan.judge is not None
    judge = plan.judge
    q = item.question
    meta = {
        "eval": plan.name,
        "eval_item": "judge",
        "question_id": q.id,
        "category": q.category,
        "question_hash": question_hash(q),
        "pair": [item.a.name, item.b.name],
        "answers": [a.run_id, b.run_id],
        "judge": judge.model,
        "judge_hash": judge_fingerprint(judge),
    }

    def started(run_id: str) -> None:
        annotate_run(engine, run_id, meta=meta)

    def finished(j: Judgement) -> None:
        annotate_run(
            engine,
            j.run_id,
            meta={"verdicts": list(j.verdicts), "outcome": None if j.error else j.outcome, "error": j.error},
        )

    j = await judge_pair(
        _recorder(engine, plan),
        judge,
        q.text,
        a.text,
        b.text,
        reference=q.reference,
        timeout=plan.judge_timeout,
        num_retries=plan.judge_retries,
        on_started=started,
        on_result=finished,
    )
    if j.ok and j.outcome != "unparseable":
        _add_judge_vote(engine, plan, j.run_id, a.generation_id, b.generation_id, j.outcome)
    return j


def _add_judge_vote(engine: Engine, plan: EvalPlan, run_id: str, left: int, right: int, outcome: str) -> int:
    assert plan.judge is not None
    try:
        vote_id = add_vote(
            engine,
            left,
            right,
            outcome,
            rater_name(plan.judge),
            blind=True,
            question_set=plan.questions.name,
            run_id=run_id,
        )
    except DuplicateVoteError as dup:  # this judgement's vote is already saved (one per run)
        vote_id = dup.vote_id
    annotate_run(engine, run_id, meta={"vote_id": vote_id})
    return vote_id


# ---------------------------------------------------------------- resume


@dataclass
class _Finished:
    answers: dict[tuple[str, str], AnswerRecord]
    judged: dict[tuple[str, str, str], str | None]  # key -> outcome
    votes_repaired: int = 0


def _scan(engine: Engine, plan: EvalPlan, repair: bool = True) -> _Finished:
    """What this plan already has: finished answers and judgements of those answers.
    With ``repair``, a finished judgement whose vote was never saved gets it now."""
    runs = [r for r in eval_runs(engine, plan.name) if r["status"] == RunStatus.DONE]
    by_name = {c.name: c for c in plan.contenders}
    qhash = {q.id: question_hash(q) for q in plan.questions.questions}
    answers: dict[tuple[str, str], dict[str, Any]] = {}
    for r in runs:  # oldest first: the latest finished answer wins
        m = r["meta"]
        c = by_name.get(m.get("contender"))
        qid = str(m.get("question_id"))
        if (
            m.get("eval_item") != "answer"
            or c is None
            or qhash.get(qid) != m.get("question_hash")
            or m.get("contender_hash") != c.fingerprint()
        ):
            continue
        answers[(c.name, qid)] = r
    missing = [r["id"] for r in answers.values() if not r["meta"].get("final_generation_id")]
    gen_ids = final_generation_ids(engine, missing)
    records: dict[tuple[str, str], AnswerRecord] = {}
    for key, r in answers.items():
        gid = r["meta"].get("final_generation_id") or gen_ids.get(r["id"])
        if gid:
            records[key] = AnswerRecord(r["id"], int(gid), r["final_text"] or "", key[0], key[1])
    judged: dict[tuple[str, str, str], str | None] = {}
    need_vote: list[tuple[dict[str, Any], AnswerRecord, AnswerRecord]] = []
    if plan.judge is not None:
        jhash = judge_fingerprint(plan.judge)
        for r in runs:
            m = r["meta"]
            if m.get("eval_item") != "judge" or m.get("judge_hash") != jhash or "outcome" not in m:
                continue
            a_name, b_name = (m.get("pair") or [None, None])[:2]
            qid = str(m.get("question_id"))
            ra, rb = records.get((a_name, qid)), records.get((b_name, qid))
            if ra is None or rb is None or [ra.run_id, rb.run_id] != m.get("answers"):
                continue
            judged[(qid, a_name, b_name)] = m.get("outcome")
            if m.get("outcome") in (VoteOutcome.LEFT, VoteOutcome.RIGHT, VoteOutcome.TIE) and not m.get("vote_id"):
                need_vote.append((r, ra, rb))
    repaired = 0
    if need_vote and repair:
        # Killed between "judgement done" and "vote saved": save the vote now, once.
        have = runs_with_votes(engine, [r["id"] for r, _, _ in need_vote])
        for r, ra, rb in need_vote:
            if r["id"] in have:
                annotate_run(engine, r["id"], meta={"vote_id": have[r["id"]]})
            else:
                _add_judge_vote(engine, plan, r["id"], ra.generation_id, rb.generation_id, r["meta"]["outcome"])
                repaired += 1
    return _Finished(records, judged, repaired)


def close_abandoned(engine: Engine, name: str, older_than: float) -> int:
    """Mark runs of evaluation ``name`` still ``running`` after ``older_than`` seconds as
    cancelled: their process was killed before it could close them. Returns how many."""
    cutoff = time.time() - older_than
    closer = Recorder(engine)
    n = 0
    for r in eval_runs(engine, name):
        if r["status"] == RunStatus.RUNNING and r["created_at"] < cutoff:
            n += closer.close_unfinished(
                r["id"], RunStatus.CANCELLED, "abandoned: the evaluation stopped without closing it"
            )
    return n


def finished_items(engine: Engine, plan: EvalPlan) -> tuple[int, int]:
    """(answers, judgements) of ``plan`` already finished: what a resume would skip."""
    f = _scan(engine, plan, repair=False)
    return len(f.answers), len(f.judged)


# ---------------------------------------------------------------- the loop


async def run_evaluation(
    engine: Engine,
    plan: EvalPlan,
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    on_progress: Callable[[EvalProgress], None] | None = None,
    tick: float = 1.0,
    abandoned_after: float = 6 * 3600.0,
) -> EvalSummary:
    """Run what ``plan`` has not finished yet; return what this call did.

    ``on_progress`` is called after every finished item and at least every ``tick``
    seconds (so a UI can refresh its ETA and notice a stop request). Whatever it
    raises stops the evaluation: items in flight are cancelled (their runs end
    ``cancelled``) and the exception propagates. Database errors propagate the same way.
    Runs of this evaluation left ``running`` for more than ``abandoned_after`` seconds
    (a killed process) are closed as cancelled first; they are redone like any
    unfinished item.

    Only the first turn of a multi-turn (MT-Bench) question is asked.
    """
    if concurrency < 1:
        raise EvalPlanError("concurrency must be at least 1")
    t0 = time.monotonic()
    summary = EvalSummary(plan.name)
    close_abandoned(engine, plan.name, abandoned_after)
    fin = _scan(engine, plan)
    summary.votes += fin.votes_repaired
    answers = dict(fin.answers)
    questions = plan.questions.questions
    todo_answers = deque(_Answer(c, q) for q in questions for c in plan.contenders if (c.name, q.id) not in answers)
    summary.answers_resumed = len(questions) * len(plan.contenders) - len(todo_answers)
    judges = [_Judge(q, a, b) for q in questions for a, b in plan.pair_list()]
    waiting = [j for j in judges if j.key not in fin.judged]
    summary.judgements_resumed = len(judges) - len(waiting)
    ready: deque[_Judge] = deque()
    failed_answers: set[tuple[str, str]] = set()
    durations: dict[str, list[float]] = {"answer": [], "judge": []}
    running: dict[asyncio.Task[Any], tuple[Any, float]] = {}
    last = ""

    def promote() -> None:
        nonlocal waiting
        still = []
        for j in waiting:
            ka, kb = (j.a.name, j.question.id), (j.b.name, j.question.id)
            if ka in answers and kb in answers:
                ready.append(j)
            elif ka in failed_answers or kb in failed_answers:
                summary.judgements_blocked += 1
            else:
                still.append(j)
        waiting = still

    def progress() -> EvalProgress:
        a_done = summary.answers_resumed + summary.answers_new + summary.answers_failed
        j_done = (
            summary.judgements_resumed + summary.judgements_new + summary.judgements_failed + summary.judgements_blocked
        )
        a_left, j_left = len(questions) * len(plan.contenders) - a_done, len(judges) - j_done
        avg_a = sum(durations["answer"]) / len(durations["answer"]) if durations["answer"] else None
        avg_j = sum(durations["judge"]) / len(durations["judge"]) if durations["judge"] else None
        eta: float | None = None
        # A phase with nothing finished yet borrows the other phase's average.
        per_a = avg_a if avg_a is not None else avg_j
        per_j = avg_j if avg_j is not None else avg_a
        if a_left + j_left == 0:
            eta = 0.0
        elif per_a is not None and per_j is not None:
            work = a_left * per_a + j_left * per_j
            eta = work / max(1, min(concurrency, a_left + j_left))
        return EvalProgress(
            len(questions) * len(plan.contenders),
            a_done,
            len(judges),
            j_done,
            summary.answers_resumed + summary.judgements_resumed,
            summary.answers_failed + summary.judgements_failed,
            summary.unparseable,
            len(running),
            time.monotonic() - t0,
            eta,
            last,
        )

    def report() -> None:
        if on_progress is not None:
            on_progress(progress())

    promote()
    report()
    try:
        while todo_answers or ready or running:
            while len(running) < concurrency and (ready or todo_answers):
                if ready:
                    j = ready.popleft()
                    coro: Any = _run_judge(
                        engine, plan, j, answers[(j.a.name, j.question.id)], answers[(j.b.name, j.question.id)]
                    )
                    item: Any = j
                else:
                    item = todo_answers.popleft()
                    coro = _run_answer(engine, plan, item)
                running[asyncio.create_task(coro)] = (item, time.monotonic())
            done, _ = await asyncio.wait(running, timeout=tick, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                item, started = running.pop(task)
                result = task.result()  # a bug or a database error stops the evaluation
                if isinstance(item, _Answer):
                    durations["answer"].append(time.monotonic() - started)
                    record, error = result
                    key = (item.contender.name, item.question.id)
                    if record is not None:
                        answers[key] = record
                        summary.answers_new += 1
                        last = f"{item.contender.name} answered {item.question.id}"
                    else:
                        failed_answers.add(key)
                        summary.answers_failed += 1
                        summary.errors.append(error or "answer failed")
                        last = f"failed: {error}"
                else:
                    durations["judge"].append(time.monotonic() - started)
                    verdict: Judgement = result
                    if verdict.ok:
                        summary.judgements_new += 1
                        summary.unparseable += verdict.outcome == "unparseable"
                        summary.votes += verdict.outcome != "unparseable"
                        last = f"judged {item.a.name} vs {item.b.name} on {item.question.id}: {verdict.outcome}"
                    else:
                        summary.judgements_failed += 1
                        summary.errors.append(
                            f"judging {item.a.name} vs {item.b.name} on {item.question.id}: {verdict.error}"
                        )
                        last = f"judge failed: {verdict.error}"
            if done:
                promote()
            report()
    finally:
        for task in running:
            task.cancel()
        if running:
            await asyncio.gather(*running, return_exceptions=True)
        summary.elapsed = time.monotonic() - t0
    return summary


# Re-exported: the plan is this module's input, and callers import both from here.
__all__ = [
    "DEFAULT_CONCURRENCY",
    "EvalPlan",
    "EvalPlanError",
    "EvalProgress",
    "EvalSummary",
    "close_abandoned",
    "default_eval_name",
    "finished_items",
    "format_duration",
    "limit_questions",
    "load_questions",
    "plan_from_store",
    "question_hash",
    "run_evaluation",
]
