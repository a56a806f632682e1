"""Every model call goes through here: litellm streaming with usage, cost, retries, timeout."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import moa_core  # noqa: F401  (sets LITELLM_LOCAL_MODEL_COST_MAP before litellm loads)
from moa_core.config import AgentSpec
from moa_core.providers import local
from moa_core.providers.secrets import load_secrets_into_env

_ready = False


def ensure_ready() -> None:
    """One-time litellm setup: quiet logs, the local provider, keys from secrets.toml."""
    global _ready
    if _ready:
        return
    import litellm

    litellm.suppress_debug_info = True
    litellm.drop_params = True  # providers that reject a parameter get the call without it
    litellm.telemetry = False
    local.register_with_litellm()
    load_secrets_into_env()
    _ready = True


@dataclass
class StreamResult:
    text: str = ""
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    first_token_at: float | None = None
    chunks: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def call_kwargs(agent: AgentSpec, messages: list[dict[str, Any]], timeout: float, num_retries: int) -> dict[str, Any]:
    kwargs: dict[str, Any] = dict(agent.extra)
    kwargs.update(
        model=agent.model,
        messages=messages,
        temperature=agent.temperature,
        max_tokens=agent.max_tokens,
        stream=True,
        stream_options={"include_usage": True},
        timeout=timeout,
        num_retries=num_retries,
    )
    if agent.api_base:
        kwargs["api_base"] = agent.api_base
    if agent.api_key_env:
        kwargs["api_key"] = os.environ.get(agent.api_key_env, "")
    elif agent.api_base and agent.model.startswith("openai/") and not os.environ.get("OPENAI_API_KEY"):
        # Self-hosted OpenAI-compatible servers (llama.cpp, vLLM, LM Studio) ignore the
        # key, but the OpenAI client refuses to send a request without one.
        kwargs["api_key"] = "no-key"
    return kwargs


def _estimate_cost(model: str, prompt_tokens: int, completion_tokens: int) -> float:
    import litellm

    try:
        prompt_cost, completion_cost = litellm.cost_per_token(
            model=model, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens
        )
        return float(prompt_cost + completion_cost)
    except Exception:  # noqa: BLE001 - unknown price: report 0 rather than fail the call
        return 0.0


async def stream_chat(
    agent: AgentSpec,
    messages: list[dict[str, Any]],
    result: StreamResult,
    timeout: float = 120.0,
    num_retries: int = 2,
) -> AsyncIterator[str]:
    """Yield text deltas; fill `result` with usage, cost and finish reason as they arrive.

    Errors propagate to the caller (the engine turns them into an error event).
    """
    ensure_ready()
    import litellm

    response = await litellm.acompletion(**call_kwargs(agent, messages, timeout, num_retries))
    try:
        async for chunk in response:
            result.chunks += 1
            usage = getattr(chunk, "usage", None)
            if usage:
                result.prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
                result.completion_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
            if not chunk.choices:
                continue
            choice = chunk.choices[0]
            if choice.finish_reason:
                result.finish_reason = choice.finish_reason
            text = getattr(choice.delta, "content", None) or ""
            if text:
                if result.first_token_at is None:
                    result.first_token_at = time.time()
                result.text += text
                yield text
    finally:
        close = getattr(response, "aclose", None)
        if close is not None:
            try:
                await close()
            except Exception:  # noqa: BLE001 - closing a broken stream must not mask its error
                pass
    if not result.completion_tokens and result.text:
        result.completion_tokens = count_tokens(agent.model, result.text)
    if not result.prompt_tokens:
        result.prompt_tokens = count_tokens(agent.model, "\n".join(str(m["content"]) for m in messages))
    result.cost = _estimate_cost(agent.model, result.prompt_tokens, result.completion_tokens)


def count_tokens(model: str, text: str) -> int:
    if model.startswith(f"{local.PROVIDER}/"):
        exact = local.count_tokens(model.split("/", 1)[1], text)
        if exact is not None:
            return exact
    import litellm

    try:
        return int(litellm.token_counter(model=model, text=text))
    except Exception:  # noqa: BLE001
        return max(1, len(text) // 4)


def context_window(model: str) -> int | None:
    """Input context size in tokens, when litellm knows it."""
    ensure_ready()
    import litellm

    try:
        info = litellm.get_model_info(model)
    except Exception:  # noqa: BLE001 - unknown model: no limit known
        return None
    return info.get("max_input_tokens") or info.get("max_tokens")


def trim_to_tokens(model: str, text: str, max_tokens: int) -> str:
    """Cut text to at most max_tokens tokens of the model's tokenizer (binary search on length,
    so it works with any tokenizer we can count with)."""
    if max_tokens <= 0:
        return ""
    if count_tokens(model, text) <= max_tokens:
        return text
    lo, hi = 0, len(text)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if count_tokens(model, text[:mid]) <= max_tokens:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo]
