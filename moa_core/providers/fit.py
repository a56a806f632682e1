"""Drafts trimmed to fit a model's context window, fairly: the rule every aggregator prompt uses.

An aggregator (or a reviewer, a selector, the challenge's synthesis) reads several drafts
inside one prompt. When they do not fit its input window, `fit_to_window` trims them with
`fit_drafts` so the whole prompt leaves room for the answer, and says how many draft
tokens there were before and after (the engine reports that as `ContextTrimmed`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from moa_core.providers import llm

# Tokens kept free beside the prompt and the answer: token counts of a chat template are
# estimates (role markers, separators), so a prompt exactly at the limit could still not fit.
CONTEXT_MARGIN = 64

Messages = list[dict[str, Any]]


def fit_drafts(model: str, drafts: list[str], budget: int) -> list[str]:
    """Trim drafts so their total tokens fit the budget, sharing it fairly.

    Short drafts keep all their tokens; the rest split what is left equally
    (water-filling), so one long draft cannot crowd the others out.
    """
    sizes = [llm.count_tokens(model, d) for d in drafts]
    if sum(sizes) <= budget:
        return list(drafts)
    allowance = [0] * len(drafts)
    remaining, pending = max(budget, 0), sorted(range(len(drafts)), key=lambda i: sizes[i])
    while pending:
        share = remaining // len(pending)
        i = pending[0]
        if sizes[i] <= share:
            allowance[i] = sizes[i]
            remaining -= sizes[i]
            pending.pop(0)
        else:
            for j in pending:
                allowance[j] = share
            break
    return [d if allowance[i] >= sizes[i] else llm.trim_to_tokens(model, d, allowance[i]) for i, d in enumerate(drafts)]


@dataclass(frozen=True)
class Fitted:
    drafts: list[str]
    tokens_before: int
    tokens_after: int

    @property
    def trimmed(self) -> bool:
        return self.tokens_after < self.tokens_before


def fit_to_window(
    model: str, window: int | None, max_tokens: int, drafts: list[str], build: Callable[[list[str]], Messages]
) -> Fitted:
    """The drafts, trimmed if `build(drafts)` (the messages around them) would not leave
    `max_tokens` for the answer in a `window`-token context. With no window known nothing
    is counted (counting is not free on every call): the drafts come back whole, 0 tokens."""
    if window is None:
        return Fitted(list(drafts), 0, 0)
    before = sum(llm.count_tokens(model, d) for d in drafts)
    fixed = build([""] * len(drafts))
    budget = window - max_tokens - llm.count_tokens(model, "\n".join(m["content"] for m in fixed)) - CONTEXT_MARGIN
    if before <= budget:
        return Fitted(list(drafts), before, before)
    trimmed = fit_drafts(model, drafts, budget)
    return Fitted(trimmed, before, sum(llm.count_tokens(model, d) for d in trimmed))


__all__ = ["CONTEXT_MARGIN", "Fitted", "fit_drafts", "fit_to_window"]
