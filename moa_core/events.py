"""The typed events the engine emits: the contract between the engine and its consumers.

Every model call has a `CallRef` (run, role, layer, slot, model). `layer` is the index of
the pipeline stage the call belongs to; the role follows from the stage's kind (see
`moa_core.vocab`): `proposer`, `reviewer`, `aggregator` or `selector`; `baseline` is a single
model answering alone (layer -1), `judge` an LLM judge. Times are Unix seconds (`time.time()`), so
consumers in other processes can line them up.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from moa_core.vocab import FINAL_STAGE_ROLES, Role, RunStatus, StageKind, call_id


@dataclass(frozen=True)
class CallRef:
    run_id: str
    role: Role
    layer: int
    slot: int
    model: str
    label: str = ""

    @property
    def call_id(self) -> str:
        return call_id(self.role, self.layer, self.slot)

    @property
    def name(self) -> str:
        return self.label or self.model


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class RunStarted:
    run_id: str
    question: str
    history: list[dict[str, Any]]
    config: dict[str, Any]
    config_hash: str
    preset: str
    kind: str
    t: float


@dataclass(frozen=True)
class DraftStarted:
    ref: CallRef
    system_prompt: str
    params: dict[str, Any]
    t: float


@dataclass(frozen=True)
class TokenDelta:
    ref: CallRef
    text: str
    t: float


@dataclass(frozen=True)
class DraftDone:
    """End of one call: a finished text, or an error (the text may be partial)."""

    ref: CallRef
    text: str
    finish_reason: str | None
    usage: Usage
    cost: float
    started_at: float
    ended_at: float
    ttft: float | None
    error: str | None = None
    # Calls served through a litellm Router: which deployment answered (None otherwise).
    deployment: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def latency(self) -> float:
        return self.ended_at - self.started_at


@dataclass(frozen=True)
class ContextTrimmed:
    """Drafts were cut (by tokens) to fit the receiving agent's context window."""

    ref: CallRef
    context_window: int
    tokens_before: int
    tokens_after: int
    t: float


@dataclass(frozen=True)
class LayerDone:
    """A pipeline stage (a "layer" in the paper's words) has ended.

    `used`: the call ids whose output the next stage receives (with a quorum, the first k
    to finish); `cut`: the calls the quorum left out (cancelled, or streamed on as "not
    used"). `details`: what the stage decided beyond its texts, JSON-able — a review
    stage's per-reviewer orders and rankings and the aggregate ranking, a select stage's
    choice.
    """

    run_id: str
    layer: int
    ok: int
    failed: int
    t: float
    kind: StageKind = StageKind.PROPOSE
    used: tuple[str, ...] = ()
    cut: tuple[str, ...] = ()
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Totals:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    wall_time: float = 0.0
    calls: int = 0
    failed_calls: int = 0


@dataclass(frozen=True)
class RunDone:
    run_id: str
    status: RunStatus
    final_text: str
    totals: Totals
    t: float
    error: str | None = None


Event = RunStarted | DraftStarted | TokenDelta | DraftDone | ContextTrimmed | LayerDone | RunDone


def is_final(ev: Event) -> bool:
    """The last stage's own deltas/done (aggregator or selector): the run's 'final' call."""
    return isinstance(ev, (TokenDelta, DraftDone, DraftStarted)) and ev.ref.role in FINAL_STAGE_ROLES


def event_to_dict(ev: Event) -> dict[str, Any]:
    d = asdict(ev)
    d["type"] = type(ev).__name__
    return d


__all__ = [
    "CallRef",
    "ContextTrimmed",
    "DraftDone",
    "DraftStarted",
    "Event",
    "LayerDone",
    "Role",
    "RunDone",
    "RunStarted",
    "RunStatus",
    "TokenDelta",
    "Totals",
    "Usage",
    "event_to_dict",
    "is_final",
]
