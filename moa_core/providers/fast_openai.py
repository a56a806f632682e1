"""The fast path: OpenAI-compatible chat streaming straight over httpx + httpx-sse.

litellm streams through the openai SDK (a pydantic object per chunk) and its own stream
wrapper: about 0.37 ms of CPU per chunk, most of a core at 6 streams x 500 tokens/s. Here a
chunk costs one SSE line parse and one `json.loads`. Which agents are served here is decided
by `target_for` (rule in the README, "Client paths"); everything else stays on litellm,
which also keeps the price map, token counting and the Router.

Retries follow the openai SDK litellm uses underneath: up to `num_retries` more attempts on
408/409/429/5xx, timeouts and connection failures, never once text has streamed; the wait is
the provider's Retry-After (when at most 60 s), else 0.5 s doubling up to 8 s with jitter.
`timeout` bounds each connect, read and write, as the SDK's does.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import os
import random
import time
import weakref
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
from httpx_sse import EventSource

from moa_core import settings
from moa_core.config import AgentSpec
from moa_core.providers.errors import ProviderHTTPError, StreamCutError

if TYPE_CHECKING:
    from moa_core.providers.llm import StreamResult

# litellm provider -> (default API base, key variables in order). Only providers whose chat
# endpoint is plain OpenAI (no request or response translation in litellm).
PROVIDERS: dict[str, tuple[str | None, tuple[str, ...]]] = {
    "openai": ("https://api.openai.com/v1", ("OPENAI_API_KEY",)),
    "groq": ("https://api.groq.com/openai/v1", ("GROQ_API_KEY",)),
    "together_ai": ("https://api.together.xyz/v1", ("TOGETHERAI_API_KEY", "TOGETHER_API_KEY")),
    "hosted_vllm": (None, ()),  # vLLM: needs its api_base
    "ollama_chat": (None, ()),  # Ollama's OpenAI endpoint, <base>/v1
}
# Config `extra` keys sent as they are: OpenAI chat parameters. Any other key (litellm-only
# options such as mock_response, or provider-specific ones) keeps the agent on litellm.
PASS_THROUGH = frozenset(
    {
        "seed",
        "top_p",
        "stop",
        "presence_penalty",
        "frequency_penalty",
        "logit_bias",
        "logprobs",
        "top_logprobs",
        "user",
        "response_format",
    }
)
RETRY_STATUSES = frozenset({408, 409, 429})
MAX_RETRY_AFTER = 60.0


@dataclass(frozen=True)
class Target:
    """Where and how one agent's calls go on the fast path."""

    url: str
    model: str  # the name the server knows the model by
    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] = field(default_factory=dict)  # extra request fields


def enabled() -> bool:
    return settings.current().fast_path


def target_for(agent: AgentSpec, completion: bool) -> Target | None:
    """The fast-path target serving `agent`, or None when litellm must serve it.

    Served here: chat calls (not the text-completion frame of a base model) to a provider in
    PROVIDERS, whose `extra` holds only OpenAI chat parameters (plus extra_headers /
    extra_body), with a key when the provider is hosted. Router groups never reach here.
    """
    if completion or not enabled():
        return None
    provider, _, name = agent.model.partition("/")
    if provider not in PROVIDERS or not name:
        return None
    extra = dict(agent.extra)
    headers = {str(k): str(v) for k, v in (extra.pop("extra_headers", None) or {}).items()}
    body = dict(extra.pop("extra_body", None) or {})
    if set(extra) - PASS_THROUGH:
        return None
    body.update(extra)
    default_base, key_names = PROVIDERS[provider]
    base = agent.api_base
    if provider == "openai" and not base:
        base = os.environ.get("OPENAI_API_BASE") or os.environ.get("OPENAI_BASE_URL") or default_base
    elif provider == "ollama_chat":
        base = (base or settings.current().ollama_api_base or "http://localhost:11434").rstrip("/") + "/v1"
    base = base or default_base
    if not base:
        return None
    if agent.api_key_env:
        key: str | None = os.environ.get(agent.api_key_env) or None
    else:
        key = next((os.environ[n] for n in key_names if os.environ.get(n)), None)
    if key is None and provider in ("openai", "groq", "together_ai") and not agent.api_base:
        return None  # a hosted API without a key: litellm says so in its own words
    if key and not any(h.lower() == "authorization" for h in headers):
        headers["Authorization"] = f"Bearer {key}"
    elif not key and provider == "openai" and "authorization" not in {h.lower() for h in headers}:
        headers["Authorization"] = "Bearer no-key"  # as litellm sends to keyless api_base servers
    return Target(base.rstrip("/") + "/chat/completions", name, headers, body)


_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = weakref.WeakKeyDictionary()


def _client() -> httpx.AsyncClient:
    """One connection pool per event loop (a pool cannot outlive or cross its loop)."""
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None or client.is_closed:
        client = httpx.AsyncClient(limits=httpx.Limits(max_connections=200, max_keepalive_connections=50))
        _clients[loop] = client
    return client


def _error_message(raw: bytes) -> str:
    text = raw.decode("utf-8", "replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        return text.splitlines()[0][:500] if text else ""
    err = data.get("error", data) if isinstance(data, dict) else data
    if isinstance(err, dict):
        return str(err.get("message") or err.get("detail") or json.dumps(err))[:500]
    return str(err)[:500]


def _retry_after(headers: httpx.Headers) -> float | None:
    ms = headers.get("retry-after-ms")
    raw = headers.get("retry-after")
    try:
        if ms is not None:
            value = float(ms) / 1000
        elif raw is not None:
            value = float(raw)
        else:
            return None
    except ValueError:
        when = email.utils.parsedate_to_datetime(raw) if raw else None
        if when is None:
            return None
        value = when.timestamp() - time.time()
    return value if 0 <= value <= MAX_RETRY_AFTER else None


def _backoff(attempt: int, exc: BaseException) -> float:
    after = getattr(exc, "retry_after", None)
    if after is not None:
        return float(after)
    return min(0.5 * 2**attempt, 8.0) * (1 - 0.25 * random.random())


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, ProviderHTTPError):
        return exc.status_code in RETRY_STATUSES or exc.status_code >= 500
    # A connection lost before any text (e.g. a pooled keep-alive connection the server had
    # closed, or a busy server dropping it) is safe to try again, as the openai SDK does;
    # `stream` never retries once text has streamed.
    return isinstance(exc, (httpx.TransportError, StreamCutError))


async def stream(
    target: Target,
    messages: list[dict[str, Any]],
    agent: AgentSpec,
    result: StreamResult,
    timeout: float,
    num_retries: int,
) -> AsyncGenerator[str, None]:
    """Yield text deltas of one chat call; fill `result` with usage and finish reason."""
    body: dict[str, Any] = {
        "model": target.model,
        "messages": messages,
        "temperature": agent.temperature,
        "max_tokens": agent.max_tokens,
        **target.body,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    payload = json.dumps(body).encode()
    headers = {"Content-Type": "application/json", "Accept": "text/event-stream", **target.headers}
    for attempt in range(num_retries + 1):
        try:
            async for text in _attempt(target.url, payload, headers, timeout, result):
                yield text
            return
        except Exception as exc:
            if result.text or attempt == num_retries or not _retryable(exc):
                raise
            await asyncio.sleep(_backoff(attempt, exc))


async def _attempt(
    url: str, payload: bytes, headers: dict[str, str], timeout: float, result: StreamResult
) -> AsyncGenerator[str, None]:
    loads = json.loads
    async with _client().stream("POST", url, content=payload, headers=headers, timeout=timeout) as resp:
        if resp.status_code >= 400:
            raw = await resp.aread()
            raise ProviderHTTPError(resp.status_code, _error_message(raw), _retry_after(resp.headers))
        async for sse in EventSource(resp).aiter_sse():
            data = sse.data
            if data == "[DONE]":
                break
            if not data:
                continue
            chunk = loads(data)
            result.chunks += 1
            if "error" in chunk and not chunk.get("choices"):  # an error reported mid-stream
                raise ProviderHTTPError(500, _error_message(data.encode()))
            usage = chunk.get("usage")
            if usage:
                result.prompt_tokens = int(usage.get("prompt_tokens") or 0)
                result.completion_tokens = int(usage.get("completion_tokens") or 0)
            choices = chunk.get("choices")
            if not choices:
                continue
            choice = choices[0]
            finish = choice.get("finish_reason")
            if finish:
                result.finish_reason = finish
            delta = choice.get("delta")
            text = delta.get("content") if delta else None
            if text:
                if result.first_token_at is None:
                    result.first_token_at = time.time()
                result.text += text
                yield text
    if result.finish_reason is None:  # the body ended without the provider finishing: cut mid-answer
        raise StreamCutError()
