"""Prompts for the review, select and with-reviews synthesize stages, and the promise that
old callers of aggregator_messages get byte-for-byte the messages they always got."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from moa_core.prompts import (
    COMPLETION_EXAMPLES,
    DEFAULT_AGGREGATOR_TEMPLATE,
    aggregator_messages,
    completion_prompt,
    review_for_chairman,
    review_messages,
    select_messages,
)

Build = Callable[..., list[dict[str, Any]]]
HISTORY = [{"role": "user", "content": "Capital of France?"}, {"role": "assistant", "content": "Paris"}]


def test_old_aggregator_callers_get_the_same_bytes() -> None:
    template = "Q={question}\n{drafts}"
    old = aggregator_messages("And of Italy?", [" Rome ", "Milan {x}"], template, HISTORY, " be brief ")
    assert old == [
        {"role": "system", "content": "be brief\n\nQ=And of Italy?\n[1] Rome\n\n[2] Milan {x}"},
        *HISTORY,
        {"role": "user", "content": "And of Italy?"},
    ]
    empty = aggregator_messages("And of Italy?", [" Rome ", "Milan {x}"], template, HISTORY, " be brief ", (), ())
    assert empty == old
    default = aggregator_messages("Q?", ["d"], DEFAULT_AGGREGATOR_TEMPLATE)
    assert default == [
        {
            "role": "system",
            "content": DEFAULT_AGGREGATOR_TEMPLATE.replace("{question}", "Q?").replace("{drafts}", "[1] d"),
        },
        {"role": "user", "content": "Q?"},
    ]
    assert default[0]["content"].endswith("Candidate answers:\n[1] d")


def test_chairman_gets_reviews_and_ranking_after_the_template() -> None:
    msgs = aggregator_messages(
        "Q?",
        ["first", "second"],
        "{question}\n{drafts}",
        HISTORY,
        reviews=["  Review one text. ", "Review two text."],
        ranking=["[2] mean rank 1.0", "[1] mean rank 2.0"],
    )
    system = msgs[0]["content"]
    assert system.startswith("Q?\n[1] first\n\n[2] second\n\n")
    assert system.index("Review 1: Review one text.") < system.index("Review 2: Review two text.")
    assert system.index("Review 2:") < system.index("1. [2] mean rank 1.0\n2. [1] mean rank 2.0")
    assert system.endswith("2. [1] mean rank 2.0")
    assert msgs[1:] == [*HISTORY, {"role": "user", "content": "Q?"}]
    only_ranking = aggregator_messages("Q?", ["a"], "{drafts}", ranking=["[1] mean rank 1.0"])[0]["content"]
    assert "Review 1" not in only_ranking and only_ranking.endswith("1. [1] mean rank 1.0")
    only_reviews = aggregator_messages("Q?", ["a"], "{drafts}", reviews=["fine"])[0]["content"]
    assert only_reviews.endswith("Review 1: fine") and "best first" not in only_reviews


def test_review_for_chairman_keys_the_letters_to_draft_numbers() -> None:
    keyed = review_for_chairman(" C is best.\nFINAL RANKING: C > A > B ", [2, 0, 1])
    assert keyed == "(Response A = [3], Response B = [1], Response C = [2])\nC is best.\nFINAL RANKING: C > A > B"


def test_review_messages_label_answers_in_the_given_order() -> None:
    msgs = review_messages("What is 2+2? {drafts}", [" four ", "5", "4 {labels}"], HISTORY, "Be strict.")
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user"]
    assert msgs[0]["content"] == "Be strict." and msgs[1:3] == HISTORY
    task = msgs[-1]["content"]
    assert "Response A, Response B and Response C" in task
    assert "What is 2+2? {drafts}" in task  # untrusted braces are text, not placeholders
    assert task.endswith("Response A:\nfour\n\nResponse B:\n5\n\nResponse C:\n4 {labels}")
    assert "FINAL RANKING:\n1. Response <letter of the best>\n2. Response <letter of the next>\n3. Response" in task
    assert "Response D" not in task


def test_select_messages_ask_for_one_choice_line() -> None:
    msgs = select_messages("Q?", ["x", "y"])
    assert [m["role"] for m in msgs] == ["user"]
    task = msgs[0]["content"]
    assert 'one line "CHOICE: Response <letter>"' in task and "Response A and Response B" in task
    assert task.endswith("Response A:\nx\n\nResponse B:\ny")
    assert select_messages("Q?", ["only"])[0]["content"].count("Response A") >= 2


@pytest.mark.parametrize("build", [review_messages, select_messages])
def test_review_prompts_fit_the_completion_frame(build: Build) -> None:
    text = completion_prompt(build("Capital of Italy?", ["Rome", "Milan"], system_prompt="Judge fairly."))
    assert text.startswith("Judge fairly.\n") and text.endswith("Response B:\nMilan\nAnswer:")
    # The task names its question without "Question:", which would open a new example (and stop).
    assert text.count("\nQuestion:") == len(COMPLETION_EXAMPLES) + 1


@pytest.mark.parametrize("build", [review_messages, select_messages])
def test_no_answers_or_too_many_is_refused(build: Build) -> None:
    with pytest.raises(ValueError):
        build("Q?", [])
    with pytest.raises(ValueError):
        build("Q?", ["x"] * 27)
    assert "Response Z:" in build("Q?", ["x"] * 26)[-1]["content"]
