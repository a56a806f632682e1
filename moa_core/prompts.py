"""Prompt construction as pure functions: the aggregate-and-synthesize template."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

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
