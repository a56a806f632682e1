"""providers.fit: drafts trimmed so an aggregator's prompt leaves room for its answer."""

from __future__ import annotations

import litellm

from moa_core.prompts import DEFAULT_AGGREGATOR_TEMPLATE, aggregator_messages
from moa_core.providers.fit import CONTEXT_MARGIN, fit_to_window

MODEL = "gpt-4o"


def tokens(text: str) -> int:
    return litellm.token_counter(model=MODEL, text=text)


def build(drafts: list[str]) -> list[dict]:
    return aggregator_messages("What is MoA?", drafts, DEFAULT_AGGREGATOR_TEMPLATE)


def test_drafts_that_fit_or_an_unknown_window_are_kept_whole() -> None:
    drafts = ["short", "word " * 300]
    fitted = fit_to_window(MODEL, 100_000, 256, drafts, build)
    assert fitted.drafts == drafts and not fitted.trimmed
    assert fitted.tokens_before == fitted.tokens_after == sum(tokens(d) for d in drafts)
    unknown = fit_to_window(MODEL, None, 256, drafts, build)
    assert unknown.drafts == drafts and not unknown.trimmed


def test_a_small_window_trims_the_long_drafts_so_the_answer_still_fits() -> None:
    drafts = ["short draft", "word " * 600, "other " * 600]
    window, answer = 1000, 200
    fitted = fit_to_window(MODEL, window, answer, drafts, build)
    assert fitted.trimmed and fitted.drafts[0] == drafts[0]
    assert fitted.tokens_after == sum(tokens(d) for d in fitted.drafts) < fitted.tokens_before
    prompt = "\n".join(m["content"] for m in build(fitted.drafts))
    # the whole prompt, the answer and the margin fit (draft separators may add a token or two)
    assert tokens(prompt) + answer + CONTEXT_MARGIN <= window + len(drafts)
