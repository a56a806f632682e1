"""The app's words, spelled once: roles, stage kinds, statuses, vote outcomes, call ids, digests.

Every module that stores, compares or shows one of these imports it from here (the DB
CHECK constraints too), so a new role or status is one edit. They are `StrEnum`s: each
member *is* its string, so stored rows, JSON and old code comparing with plain strings
keep working.
"""

from __future__ import annotations

import hashlib
import json
from enum import StrEnum
from typing import Any


class Role(StrEnum):
    """What a model call is for. Stage kinds map onto roles one to one (`STAGE_ROLE`)."""

    PROPOSER = "proposer"  # a `propose` stage: answers (later stages: refines the drafts before it)
    REVIEWER = "reviewer"  # a `review` stage: critiques the anonymised answers and ranks them
    AGGREGATOR = "aggregator"  # a `synthesize` stage: the final answer written from the drafts
    SELECTOR = "selector"  # a `select` stage: picks the best draft, which becomes the final answer
    BASELINE = "baseline"  # one model answering alone, beside the pipeline
    JUDGE = "judge"  # an LLM judge comparing or scoring answers


class StageKind(StrEnum):
    PROPOSE = "propose"
    REVIEW = "review"
    SYNTHESIZE = "synthesize"
    SELECT = "select"


STAGE_ROLE: dict[StageKind, Role] = {
    StageKind.PROPOSE: Role.PROPOSER,
    StageKind.REVIEW: Role.REVIEWER,
    StageKind.SYNTHESIZE: Role.AGGREGATOR,
    StageKind.SELECT: Role.SELECTOR,
}
# Roles whose call writes a run's final answer (the pipeline's last stage).
FINAL_STAGE_ROLES = (Role.AGGREGATOR, Role.SELECTOR)


class RunStatus(StrEnum):
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    # The process recording the run stopped (killed, crashed) before it ended it; set by the
    # lease sweep (store/lease.py), with the drafts it finished and the partial text.
    INTERRUPTED = "interrupted"


class GenerationStatus(StrEnum):
    STREAMING = "streaming"
    DONE = "done"
    ERROR = "error"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"


class VoteOutcome(StrEnum):
    LEFT = "left"
    RIGHT = "right"
    TIE = "tie"
    BOTH_BAD = "both_bad"


def values(enum: type[StrEnum]) -> tuple[str, ...]:
    """The plain strings of an enum, in declaration order (for CHECK constraints and menus)."""
    return tuple(m.value for m in enum)


def call_id(role: str, layer: int, slot: int) -> str:
    """The id of a call within its run: unique per (role, layer, slot), stable across replays."""
    return f"{role}-{layer}-{slot}"


def digest(obj: Any, length: int = 16) -> str:
    """A short stable hash of JSON-able data (or of a string, hashed as is).

    Dicts are hashed with sorted keys and compact separators, so equal data gives an equal
    digest whatever the key order; the hex is cut to `length` characters.
    """
    blob = obj if isinstance(obj, str) else json.dumps(obj, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:length]


def letters(n: int) -> list[str]:
    """The anonymous labels of n answers shown side by side ("Response A", "Response B", ...).

    Here, not in prompts or analysis, because both write and read them. One letter each keeps
    a reviewer's ranking easy to parse; past 26 answers there is no honest label, so refuse.
    """
    if not 0 <= n <= 26:
        raise ValueError(f"can label 0 to 26 answers, not {n}")
    return [chr(ord("A") + i) for i in range(n)]
