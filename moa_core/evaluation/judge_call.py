"""The judge's model calls: one pair of answers judged in both orders, recorded as a run.

A judgement is a run of kind ``eval`` with two generations of role ``judge``: slot 0
saw the left contender as answer A, slot 1 saw it as answer B. The calls go through
:func:`moa_core.providers.llm.stream_chat` like every other model call, one after the
other (so one judgement never holds more than one model call in flight).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from moa_core.config import AgentSpec
from moa_core.engine import draft_done, short_error
from moa_core.evaluation.judge import (
    JUDGE_SYSTEM_PROMPT,
    Outcome,
    Verdict,
    both_orders_messages,
    combine_verdicts,
    parse_verdict,
)
from moa_core.events import CallRef, DraftDone, DraftStarted, RunDone, RunStarted, Totals
from moa_core.providers import llm
from moa_core.store.recorder import Recorder
from moa_core.vocab import Role, RunStatus

JUDGE_LABEL = "judge"
DEFAULT_JUDGE_MODEL = "local/qwen2.5-coder-0.5b"
# Temperature 0: the same pair should get the same verdict if judged again. Enough
# tokens for three short sentences and the verdict line.
DEFAULT_JUDGE_MAX_TOKENS = 256


def judge_agent(model: str = DEFAULT_JUDGE_MODEL, **overrides: Any) -> AgentSpec:
    """A judge with deterministic defaults (temperature 0, 256 tokens)."""
    params: dict[str, Any] = {
        "model": model,
        "label": JUDGE_LABEL,
        "temperature": 0.0,
        "max_tokens": DEFAULT_JUDGE_MAX_TOKENS,
    }
    params.update({k: v for k, v in overrides.items() if v is not None})
    return AgentSpec(**params)


def judge_fingerprint(judge: AgentSpec) -> str:
    """Identity of a judge for resuming: model, parameters and the prompt version."""
    payload = judge.model_dump(mode="json", exclude={"label"}) | {"prompt": JUDGE_SYSTEM_PROMPT}
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def rater_name(judge: AgentSpec) -> str:
    return f"judge:{judge.model}"


@dataclass(frozen=True)
class Judgement:
    run_id: str
    verdicts: tuple[Verdict, Verdict]
    outcome: Outcome
    error: str | None = None
    cost: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


async def _one_call(
    ref: CallRef, agent: AgentSpec, messages: list[dict[str, Any]], timeout: float, num_retries: int, recorder: Recorder
) -> DraftDone:
    started = time.time()
    agent = llm.with_call_seed(agent)
    params = {**agent.public_params(), "client": llm.client_for(agent)}
    recorder.handle(DraftStarted(ref, messages[0]["content"], params, started))
    result = llm.StreamResult()
    error: str | None = None
    try:
        async with asyncio.timeout(timeout * (num_retries + 1)):
            async for _ in llm.stream_chat(agent, messages, result, timeout, num_retries):
                pass
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        error = short_error(exc, agent.api_key_env)
    if error is None and not result.text.strip():
        error = "empty answer"
    done = draft_done(ref, result, started, result.finish_reason if error is None else "error", error)
    recorder.handle(done)
    return done


async def judge_pair(
    recorder: Recorder,
    judge: AgentSpec,
    question: str,
    left: str,
    right: str,
    *,
    reference: str | None = None,
    timeout: float = 120.0,
    num_retries: int = 1,
    run_id: str | None = None,
    on_started: Callable[[str], None] | None = None,
    on_result: Callable[[Judgement], None] | None = None,
) -> Judgement:
    """Judge ``left`` against ``right`` in both orders; record the run through ``recorder``.

    ``on_started(run_id)`` runs right after the run row exists and ``on_result`` just
    before the run is marked ended (both attach meta, so a run marked ``done`` always
    carries its verdicts). A call that fails makes the judgement fail (``error`` set,
    run status ``failed``); a reply that cannot be read is a finished judgement whose
    verdict is ``unparseable``. Cancelling (or any exception) closes the run as
    cancelled before it propagates.
    """
    run_id = run_id or uuid.uuid4().hex
    msgs_ab, msgs_ba = both_orders_messages(question, left, right, reference)
    started = time.time()
    config = {"judge": judge.model_dump(mode="json")}
    recorder.handle(
        RunStarted(
            run_id, question, [], config, f"judge-{judge_fingerprint(judge)}", rater_name(judge), "eval", started
        )
    )
    try:
        if on_started is not None:
            on_started(run_id)
        dones: list[DraftDone] = []
        for slot, msgs in enumerate((msgs_ab, msgs_ba)):
            ref = CallRef(run_id, Role.JUDGE, 0, slot, judge.model, judge.display_name)
            done = await _one_call(ref, judge, msgs, timeout, num_retries, recorder)
            dones.append(done)
            if not done.ok:
                break
        totals = Totals(
            sum(d.usage.prompt_tokens for d in dones),
            sum(d.usage.completion_tokens for d in dones),
            sum(d.cost for d in dones),
            time.time() - started,
            len(dones),
            sum(not d.ok for d in dones),
        )
        failed = next((d for d in dones if not d.ok), None)
        if failed is not None:
            error = f"judge call {failed.ref.slot + 1} failed: {failed.error}"
            result = Judgement(run_id, ("unparseable", "unparseable"), "unparseable", error, totals.cost)
        else:
            v_ab, v_ba = parse_verdict(dones[0].text), parse_verdict(dones[1].text)
            result = Judgement(run_id, (v_ab, v_ba), combine_verdicts(v_ab, v_ba), None, totals.cost)
        if on_result is not None:
            on_result(result)
        recorder.handle(
            RunDone(
                run_id,
                RunStatus.DONE if result.ok else RunStatus.FAILED,
                "" if result.error else result.outcome,
                totals,
                time.time(),
                result.error,
            )
        )
    except BaseException:
        with contextlib.suppress(Exception):
            recorder.close_unfinished(run_id, "cancelled")
        raise
    return result


__all__ = [
    "DEFAULT_JUDGE_MAX_TOKENS",
    "DEFAULT_JUDGE_MODEL",
    "JUDGE_LABEL",
    "Judgement",
    "judge_agent",
    "judge_fingerprint",
    "judge_pair",
    "rater_name",
]
