"""Prompt construction as pure functions: the aggregate-and-synthesize template, and the
few-shot completion frame for base (non-instruction) models."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from moa_core.vocab import letters

DRAFTS_PLACEHOLDER = "{drafts}"
QUESTION_PLACEHOLDER = "{question}"

DEFAULT_AGGREGATOR_TEMPLATE = """You are given several candidate answers to the user's latest question, written independently by different assistants.
Read them critically: some may contain mistakes, gaps or unsupported claims.
Write one answer of your own that keeps what is correct and useful in them, fixes or drops what is wrong, and is clear and well organised.
Do not mention the candidates or compare them; just answer the user.

Question: {question}

Candidate answers:
{drafts}"""

Message = dict[str, Any]


def format_drafts(drafts: Sequence[str]) -> str:
    return "\n\n".join(f"[{i}] {d.strip()}" for i, d in enumerate(drafts, start=1))


def render_template(template: str, question: str, drafts: Sequence[str]) -> str:
    # str.replace, not str.format: user templates and drafts may contain braces.
    return template.replace(QUESTION_PLACEHOLDER, question).replace(DRAFTS_PLACEHOLDER, format_drafts(drafts))


def proposer_messages(question: str, history: Sequence[Message] = (), system_prompt: str = "") -> list[Message]:
    """Messages for an agent that answers the question on its own."""
    messages: list[Message] = []
    if system_prompt.strip():
        messages.append({"role": "system", "content": system_prompt})
    messages.extend({"role": m["role"], "content": m["content"]} for m in history)
    messages.append({"role": "user", "content": question})
    return messages


def aggregator_messages(
    question: str,
    drafts: Sequence[str],
    template: str,
    history: Sequence[Message] = (),
    system_prompt: str = "",
    reviews: Sequence[str] = (),
    ranking: Sequence[str] = (),
) -> list[Message]:
    """Messages for an agent that synthesizes the previous layer's drafts.

    The rendered template goes in the system message, after the agent's own system
    prompt, and the conversation follows unchanged, so a multi-turn chat keeps its
    shape for every model. A chairman after a review stage also gets the reviews and
    the aggregate ranking, after the template: `reviews` already keyed to the drafts' [1],
    [2]… numbers (`review_for_chairman`), `ranking` one line per draft best first, such as
    "[2] mean rank 1.5 over 3 reviewers" (numbered here). Without them the text is as before.
    """
    synthesis = render_template(template, question, drafts) + _review_sections(reviews, ranking)
    system = f"{system_prompt.strip()}\n\n{synthesis}" if system_prompt.strip() else synthesis
    return proposer_messages(question, history, system)


# ---------------------------------------------------------------- peer review and selection

# llm-council's stage 2, shortened: anonymous labels so a reviewer cannot favour a model by
# name, a brief critique first (ranking without reading is what small models do otherwise),
# and a fixed closing block that analysis.review_ranking.parse_ranking reads.
REVIEW_INSTRUCTIONS = """You are reviewing answers to the question below, written by different assistants. They are anonymised as {labels}.
First write a short critique of each response: what it gets right and what it gets wrong.
Then end your reply with a line "FINAL RANKING:" followed by every response, best first, one per line, numbered, and nothing after it. For example:
FINAL RANKING:
{example}"""

SELECT_INSTRUCTIONS = """You are choosing the best of several answers to the question below, written by different assistants. They are anonymised as {labels}.
Judge which response is the most correct, complete and useful. You may explain briefly.
End your reply with one line "CHOICE: Response <letter>", with the letter of the best response, and nothing after it."""


def format_responses(answers: Sequence[str]) -> str:
    """The answers under their anonymous labels, in the order given."""
    return "\n\n".join(f"Response {lab}:\n{a.strip()}" for lab, a in zip(letters(len(answers)), answers, strict=True))


def _task(instructions: str, question: str, answers: Sequence[str]) -> str:
    # Not "Question:": in a completion frame that word starts a new example (and is a stop).
    return f"{instructions}\n\nThe question: {question}\n\n{format_responses(answers)}"


def _labels(n: int) -> str:
    if n == 0:
        raise ValueError("there are no answers to show")
    names = [f"Response {lab}" for lab in letters(n)]
    return names[0] if n == 1 else ", ".join(names[:-1]) + f" and {names[-1]}"


def review_messages(
    question: str, answers: Sequence[str], history: Sequence[Message] = (), system_prompt: str = ""
) -> list[Message]:
    """Messages for a reviewer: critique the answers (given in this reviewer's shuffled order,
    labelled Response A, B…) and end with a "FINAL RANKING:" block.

    The task is the last user turn, not a system message: the question is what a model
    answers, and here the question is the review. Earlier turns stay as context.
    """
    n = len(answers)
    # Placeholders, not real letters: a model that copies the example verbatim then gives an
    # unparsed ranking instead of a fake vote.
    places = ["best", *["next"] * (n - 2), "worst"] if n > 1 else ["only"]
    example = "\n".join(f"{i}. Response <letter of the {p}>" for i, p in enumerate(places, start=1))
    instructions = REVIEW_INSTRUCTIONS.replace("{labels}", _labels(n)).replace("{example}", example)
    return proposer_messages(_task(instructions, question, answers), history, system_prompt)


def select_messages(
    question: str, answers: Sequence[str], history: Sequence[Message] = (), system_prompt: str = ""
) -> list[Message]:
    """Messages for a selector: pick the best answer, naming it in a closing "CHOICE:" line."""
    instructions = SELECT_INSTRUCTIONS.replace("{labels}", _labels(len(answers)))
    return proposer_messages(_task(instructions, question, answers), history, system_prompt)


def review_for_chairman(review: str, order: Sequence[int]) -> str:
    """A reviewer's text with its letter key, so a chairman who sees the drafts as [1], [2]…
    can tell which draft each "Response X" was (the letters differ between reviewers)."""
    key = ", ".join(f"Response {lab} = [{answer + 1}]" for lab, answer in zip(letters(len(order)), order, strict=True))
    return f"({key})\n{review.strip()}"


def _review_sections(reviews: Sequence[str], ranking: Sequence[str]) -> str:
    out = ""
    if reviews:
        body = "\n\n".join(f"Review {i}: {r.strip()}" for i, r in enumerate(reviews, start=1))
        out += (
            "\n\nThe candidate answers were reviewed by other assistants."
            f" Weigh these critiques; they may be wrong too:\n{body}"
        )
    if ranking:
        body = "\n".join(f"{i}. {r.strip()}" for i, r in enumerate(ranking, start=1))
        out += f"\n\nThe reviewers' aggregate ranking of the candidate answers, best first:\n{body}"
    return out


# ---------------------------------------------------------------- completion-style prompts

# How a model is prompted: "chat" sends the messages through the model's chat template;
# "completion" sends one plain text (a few-shot question/answer frame) that a base model,
# never trained on a chat template, continues with an answer instead of echoing the question.
PromptStyle = Literal["chat", "completion"]
PROMPT_STYLES: tuple[PromptStyle, ...] = ("chat", "completion")

COMPLETION_PREAMBLE = "Answer each question briefly and correctly."
# Two tiny worked examples: enough for a 270M base model to pick up the format (a short
# answer on the line after "Answer:"), short enough to cost little prompt time.
COMPLETION_EXAMPLES: tuple[tuple[str, str], ...] = (
    ("What is the largest ocean on Earth?", "The Pacific Ocean."),
    ("How many legs does a spider have?", "8"),
)
# A base model goes on to write the next "Question:" itself; that, or a run of blank
# lines, ends the answer.
COMPLETION_STOP: tuple[str, ...] = ("\nQuestion:", "\n\n\n")


def completion_prompt(messages: Sequence[Message]) -> str:
    """One few-shot text for a completion-style model, built from chat messages.

    System messages become the preamble (the default instruction when there is none),
    earlier user/assistant turns become answered questions after the worked examples,
    and the last user message is the open "Question: ...\\nAnswer:".
    """
    system = "\n\n".join(str(m["content"]).strip() for m in messages if m["role"] == "system").strip()
    lines = [system or COMPLETION_PREAMBLE, ""]
    for q, a in COMPLETION_EXAMPLES:
        lines += [f"Question: {q}", f"Answer: {a}", ""]
    pending: str | None = None
    for m in messages:
        content = str(m["content"]).strip()
        if m["role"] == "user":
            if pending is not None:  # two user turns in a row: the first had no answer
                lines += [f"Question: {pending}", "Answer:", ""]
            pending = content
        elif m["role"] == "assistant":
            lines += [f"Question: {pending or ''}", f"Answer: {content}", ""]
            pending = None
    lines += [f"Question: {pending or ''}", "Answer:"]
    return "\n".join(lines)


def completion_stop(stop: str | Sequence[str] | None = None) -> list[str]:
    """The frame's stop sequences, plus the caller's own."""
    extra = [stop] if isinstance(stop, str) else list(stop or [])
    return [*COMPLETION_STOP, *(s for s in extra if s not in COMPLETION_STOP)]
