"""Prompt construction as pure functions: the aggregate-and-synthesize template, and the
few-shot completion frame for base (non-instruction) models."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

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
) -> list[Message]:
    """Messages for an agent that synthesizes the previous layer's drafts.

    The rendered template goes in the system message, after the agent's own system
    prompt, and the conversation follows unchanged, so a multi-turn chat keeps its
    shape for every model.
    """
    synthesis = render_template(template, question, drafts)
    system = f"{system_prompt.strip()}\n\n{synthesis}" if system_prompt.strip() else synthesis
    return proposer_messages(question, history, system)


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
