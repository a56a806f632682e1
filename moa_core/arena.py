"""Arena logic without Streamlit: contenders, random pairs, hidden A/B sides, votes.

A contender is either one model answering alone (an ``AgentSpec``) or a MoA config (a
preset or a saved config) whose final answer is what gets compared. Contenders are
picked by key: ``model:<litellm model>``, ``preset:<name>`` or ``saved:<name>``.

A battle puts two contenders on hidden sides "A" and "B" (a coin flip decides which is
A). A vote is stored with A's final generation on the left and B's on the right, so
"A is better" is outcome ``left``. Blind review pairs a stored MoA answer with a
baseline of the same run, again on random sides.
"""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from moa_core.analysis.contenders import MOA_PREFIX, contender_name
from moa_core.config import AgentSpec, ConfigError, MoAConfig, load_preset
from moa_core.saved_configs import load_saved
from moa_core.vocab import STAGE_ROLE, GenerationStatus, Role, RunStatus, VoteOutcome, call_id

SIDES = ("A", "B")
# What each vote button means for the stored vote (A is stored on the left).
CHOICES: dict[str, VoteOutcome] = {
    "A": VoteOutcome.LEFT,
    "B": VoteOutcome.RIGHT,
    "tie": VoteOutcome.TIE,
    "both_bad": VoteOutcome.BOTH_BAD,
}
CHOICE_LABELS: dict[str, str] = {"A": "A is better", "B": "B is better", "tie": "Tie", "both_bad": "Both are bad"}
KINDS = ("model", "preset", "saved")


class ArenaError(ValueError):
    """A battle that cannot be set up; the message is meant for the user."""


@dataclass(frozen=True)
class Contender:
    key: str
    agent: AgentSpec | None = None
    config: MoAConfig | None = None

    @property
    def is_moa(self) -> bool:
        return self.config is not None

    @property
    def name(self) -> str:
        """The name the leaderboard uses (`analysis.contenders`)."""
        if self.config is not None:
            return contender_name(Role.AGGREGATOR, None, None, self.config.name)
        assert self.agent is not None
        return contender_name(Role.BASELINE, self.agent.label, self.agent.model, None)

    @property
    def final_call(self) -> str:
        """The call id of the call whose text is this contender's answer."""
        if self.config is None:
            return call_id(Role.BASELINE, -1, 0)  # engine.run_single's one call
        stages = self.config.pipeline()
        return call_id(STAGE_ROLE[stages[-1].kind], len(stages) - 1, 0)


def contender_key(kind: str, ref: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"contender kind must be one of {KINDS}, got {kind!r}")
    return f"{kind}:{ref}"


def split_key(key: str) -> tuple[str, str]:
    kind, sep, ref = key.partition(":")
    if not sep or kind not in KINDS or not ref:
        raise ArenaError(f"not a contender: {key!r}")
    return kind, ref


def option_label(key: str) -> str:
    """How a contender key reads in a picker."""
    kind, ref = split_key(key)
    return {"model": ref, "preset": f"MoA preset · {ref}", "saved": f"MoA saved · {ref}"}[kind]


def contender_options(models: Iterable[str], presets: Iterable[str], saved: Iterable[str]) -> list[str]:
    """Picker keys: single models first, then presets, then saved configs (no duplicates)."""
    keys = [contender_key("model", m) for m in models]
    keys += [contender_key("preset", p) for p in presets]
    keys += [contender_key("saved", s) for s in saved]
    return list(dict.fromkeys(keys))


def resolve_contender(
    key: str,
    *,
    max_tokens: int = 256,
    temperature: float = 0.7,
    presets: Callable[[str], MoAConfig] = load_preset,
    saved: Callable[[str], MoAConfig] = load_saved,
) -> Contender:
    """Build the contender for a picker key. Single models get `max_tokens` and `temperature`."""
    kind, ref = split_key(key)
    if kind == "model":
        try:
            agent = AgentSpec(model=ref, max_tokens=max_tokens, temperature=temperature)
        except ValueError as err:
            raise ArenaError(f"{ref}: {err}") from None
        return Contender(key, agent=agent)
    try:
        config = presets(ref) if kind == "preset" else saved(ref)
    except (ConfigError, ValueError) as err:
        raise ArenaError(str(err)) from None
    return Contender(key, config=config)


def random_pair(pool: Sequence[str], rng: random.Random) -> tuple[str, str]:
    """Two different keys drawn uniformly from `pool` (duplicates in the pool count once)."""
    distinct = list(dict.fromkeys(pool))
    if len(distinct) < 2:
        raise ArenaError("Pick at least two contenders for a random pair.")
    first, second = rng.sample(distinct, 2)
    return first, second


def assign_sides(first: Contender, second: Contender, rng: random.Random) -> dict[str, Contender]:
    """{"A": ..., "B": ...}: a fair coin decides which contender is A."""
    if rng.random() < 0.5:
        first, second = second, first
    return {"A": first, "B": second}


def draw_question(questions: Sequence[Any], rng: random.Random) -> Any:
    if not questions:
        raise ArenaError("This question set is empty.")
    return rng.choice(list(questions))


@dataclass
class Battle:
    """One battle as kept in a browser session (mutable: it moves through its states).

    status: new -> streaming -> finished | stopped (streaming interrupted: a vote or any
    other rerun) -> voted | void (a vote came too early to compare) | invalid (a
    contender failed).
    """

    question: str
    sides: dict[str, Contender]
    question_set: str | None = None
    # The question's category (drawn with it from a set, or typed): stored with the vote's
    # runs, it feeds the per-category leaderboards.
    category: str | None = None
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    run_ids: dict[str, str] = field(default_factory=lambda: {s: uuid.uuid4().hex for s in SIDES})
    status: str = "new"
    choice: str | None = None
    vote_id: int | None = None
    errors: dict[str, str] = field(default_factory=dict)
    note: str | None = None
    # Streaming runs in one script run and the vote is handled in the next one, possibly
    # on another thread while the first is still unwinding: `stop` asks the streaming
    # side to wind down, `closed` says both runs are closed and recorded.
    stop: threading.Event = field(default_factory=threading.Event, repr=False, compare=False)
    closed: threading.Event = field(default_factory=threading.Event, repr=False, compare=False)

    @property
    def over(self) -> bool:
        return self.status in ("voted", "void", "invalid")

    @property
    def revealed(self) -> bool:
        """Names are shown after a counted vote, or when a contender failed (the error is
        what the user needs, and it names the model anyway); never after a void vote, or
        voting at once on every battle would show who is who without counting anything."""
        return self.status in ("voted", "invalid")

    @property
    def open_for_votes(self) -> bool:
        return self.vote_id is None and self.status in ("new", "streaming", "finished", "stopped")


CATEGORY_MAX_CHARS = 60


def clean_category(text: str | None) -> str | None:
    """A typed category as one line of at most CATEGORY_MAX_CHARS; None when blank."""
    one = " ".join(str(text or "").split())[:CATEGORY_MAX_CHARS]
    return one or None


def new_battle(
    question: str,
    first: Contender,
    second: Contender,
    rng: random.Random,
    question_set: str | None = None,
    category: str | None = None,
) -> Battle:
    if first.name == second.name:
        raise ArenaError(f"Both contenders are {first.name}: pick two different ones.")
    return Battle(
        question=question,
        sides=assign_sides(first, second, rng),
        question_set=question_set,
        category=clean_category(category),
    )


def final_generation(generations: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The generation holding a run's answer: the aggregator's, else the first baseline's."""
    aggs = [g for g in generations if g["role"] == Role.AGGREGATOR]
    if aggs:
        return max(aggs, key=lambda g: (g["layer"], g["id"]))
    bases = sorted((g for g in generations if g["role"] == Role.BASELINE), key=lambda g: (g["slot"], g["id"]))
    return bases[0] if bases else None


@dataclass(frozen=True)
class SideState:
    generation: dict[str, Any] | None
    problem: str | None = None
    failed: bool = False


def side_state(run_data: dict[str, Any] | None) -> SideState:
    """What one side of a battle has to offer a vote, from ``get_run`` data.

    ``failed`` means the contender broke (the battle is invalid); a ``problem`` without
    ``failed`` means there is nothing to compare yet (vote cast before the answer began).
    """
    if run_data is None:
        return SideState(None, "had not started yet")
    run = run_data["run"]
    gen = final_generation(run_data["generations"])
    if run["status"] == RunStatus.FAILED:
        return SideState(gen, run.get("error") or "failed", True)
    if gen is None:
        return SideState(None, "had not started its answer yet")
    if gen["status"] == GenerationStatus.ERROR:
        return SideState(gen, gen.get("error") or "failed", True)
    if not (gen.get("text") or "").strip():
        return SideState(gen, "had not written anything yet")
    return SideState(gen)


@dataclass(frozen=True)
class Verdict:
    """A vote ready to store (left_id/right_id/outcome), or why it cannot be."""

    left_id: int | None = None
    right_id: int | None = None
    outcome: str | None = None
    problem: str | None = None
    invalid: bool = False

    @property
    def ok(self) -> bool:
        return self.problem is None


def judge_vote(choice: str, states: dict[str, SideState]) -> Verdict:
    """Turn a vote-button choice and both sides' states into a storable vote."""
    if choice not in CHOICES:
        raise ValueError(f"choice must be one of {', '.join(CHOICES)}, got {choice!r}")
    failed = [f"{s} failed: {states[s].problem}" for s in SIDES if states[s].failed]
    if failed:
        return Verdict(problem="; ".join(failed), invalid=True)
    early = [f"{s} {states[s].problem}" for s in SIDES if states[s].problem]
    if early:
        return Verdict(problem="; ".join(early))
    a, b = states["A"].generation, states["B"].generation
    assert a is not None and b is not None
    return Verdict(left_id=int(a["id"]), right_id=int(b["id"]), outcome=CHOICES[choice])


@dataclass(frozen=True)
class ReviewPair:
    """One blind-review item: two answers of one run, A shown on the left."""

    run_id: str
    question: str
    left_id: int
    right_id: int
    left_name: str
    right_name: str
    left_text: str
    right_text: str

    @property
    def names(self) -> dict[str, str]:
        return {"A": self.left_name, "B": self.right_name}

    @property
    def texts(self) -> dict[str, str]:
        return {"A": self.left_text, "B": self.right_text}


def blind_review_pairs(
    candidates: pd.DataFrame, rng: random.Random, voted: set[frozenset[int]] | None = None
) -> list[ReviewPair]:
    """The MoA answer against each baseline of the same run, in random order and sides.

    `candidates` has one row per finished generation (columns id, run_id, role, text,
    question and ``contender``, as from ``review_candidates``). Pairs in `voted` (already
    judged by this rater) and pairs with an empty answer are left out.
    """
    voted = voted or set()
    pairs: list[ReviewPair] = []
    if candidates.empty:
        return pairs
    usable = candidates[candidates["text"].fillna("").str.strip().astype(bool)]
    for run_id, gens in usable.groupby("run_id", sort=True):
        finals = gens[gens["role"] == Role.AGGREGATOR]
        bases = gens[gens["role"] == Role.BASELINE].sort_values("id")
        if finals.empty or bases.empty:
            continue
        moa = finals.sort_values("id").iloc[-1]
        for _, base in bases.iterrows():
            ids = frozenset((int(moa["id"]), int(base["id"])))
            if ids in voted or moa["contender"] == base["contender"]:
                continue
            a, b = (moa, base) if rng.random() < 0.5 else (base, moa)
            pairs.append(
                ReviewPair(
                    str(run_id),
                    str(moa["question"]),
                    int(a["id"]),
                    int(b["id"]),
                    str(a["contender"]),
                    str(b["contender"]),
                    str(a["text"]),
                    str(b["text"]),
                )
            )
    rng.shuffle(pairs)
    return pairs


__all__ = [
    "CATEGORY_MAX_CHARS",
    "CHOICES",
    "CHOICE_LABELS",
    "MOA_PREFIX",
    "SIDES",
    "ArenaError",
    "Battle",
    "Contender",
    "ReviewPair",
    "SideState",
    "Verdict",
    "assign_sides",
    "blind_review_pairs",
    "clean_category",
    "contender_key",
    "contender_options",
    "draw_question",
    "final_generation",
    "judge_vote",
    "new_battle",
    "option_label",
    "random_pair",
    "resolve_contender",
    "side_state",
    "split_key",
]
