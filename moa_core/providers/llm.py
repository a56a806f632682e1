"""Every model call goes through here: streaming with usage, cost, retries, timeout.

`stream_chat` picks the client path: the fast path (fast_openai, for OpenAI-compatible chat
APIs) or litellm (everything else, and every call when MOA_FAST_PATH=0). Both fill the same
response object, `StreamResult`; the engine turns it into the call's DraftDone.
"""

from __future__ import annotations

import contextlib
import functools
import os
import random
import time
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from typing import Any

import moa_core  # noqa: F401  (sets LITELLM_LOCAL_MODEL_COST_MAP before litellm loads)
from moa_core.config import AgentSpec
from moa_core.prompts import completion_prompt, completion_stop
from moa_core.providers import fast_openai, local
from moa_core.providers.errors import StreamCutError
from moa_core.providers.secrets import load_secrets_into_env

_ready = False
SEED_PARAM = "seed"
# Seeds fit a signed 32-bit int: llama.cpp takes uint32, some OpenAI-compatible servers int32.
SEED_LIMIT = 2**31
_seed_rng = random.SystemRandom()


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


def _cut_short(response: Any, agent: AgentSpec) -> bool:
    """True when the provider never sent a finish reason: the connection ended mid-answer.

    litellm ends every stream with a chunk carrying finish_reason (it makes up "stop"
    when the provider sent none), so what we iterate cannot tell. Its `chunks` list keeps
    the provider's own chunks, the finish one only if the provider sent it (the Router's
    wrapper shares that list). Mock responses never send one; after a Router fallback the
    serving stream is not visible here: both are given the benefit of the doubt.
    """
    if "mock_response" in agent.extra or getattr(response, "fallback_headers_adopted", False):
        return False
    chunks = getattr(response, "chunks", None)
    if not isinstance(chunks, list):
        return False
    return not any(getattr(c, "choices", None) and c.choices[0].finish_reason for c in chunks)


FAST = "fast"
LITELLM = "litellm"


@dataclass
class StreamResult:
    """One provider call's response: the text so far, usage, cost, finish reason, when the
    first token came, and which deployment and client path served it."""

    text: str = ""
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    first_token_at: float | None = None
    chunks: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    # Router calls: the deployment that served the call, and its litellm model string.
    deployment: str | None = None
    served_model: str | None = None
    client: str = LITELLM  # FAST | LITELLM

    def ttft(self, started: float) -> float | None:
        return None if self.first_token_at is None else self.first_token_at - started


def client_for(agent: AgentSpec, router: Any = None) -> str:
    """The client path that will serve `agent` (Router groups always stay on litellm)."""
    if router is not None and agent.model in router.groups:
        return LITELLM
    return FAST if fast_openai.target_for(agent, uses_completion(agent)) is not None else LITELLM


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
    if agent.prompt_style and _is_local(agent.model):
        kwargs["prompt_style"] = agent.prompt_style  # the local handler reads it; the catalog decides otherwise
    if agent.api_base:
        kwargs["api_base"] = agent.api_base
    if agent.api_key_env:
        kwargs["api_key"] = os.environ.get(agent.api_key_env, "")
    elif agent.api_base and agent.model.startswith("openai/") and not os.environ.get("OPENAI_API_KEY"):
        # Self-hosted OpenAI-compatible servers (llama.cpp, vLLM, LM Studio) ignore the
        # key, but the OpenAI client refuses to send a request without one.
        kwargs["api_key"] = "no-key"
    return kwargs


def _is_local(model: str) -> bool:
    return model.startswith(f"{local.PROVIDER}/")


def uses_completion(agent: AgentSpec) -> bool:
    """Whether this agent's calls go through litellm's text-completion API with a few-shot
    frame: a non-local model the config marks as a base model. Local models get the frame
    inside their own provider."""
    return agent.prompt_style == "completion" and not _is_local(agent.model)


def completion_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Chat-call arguments turned into a text-completion call's: the messages become the frame."""
    out = dict(kwargs)
    out["prompt"] = completion_prompt(out.pop("messages"))
    out["stop"] = completion_stop(out.get("stop"))
    return out


@functools.lru_cache(maxsize=256)
def accepts_seed(model: str) -> bool:
    """Whether a call to `model` honours an OpenAI-style `seed`: the bundled local models,
    and the providers litellm lists it for (OpenAI and compatible servers, among others).
    Elsewhere litellm would drop it (`drop_params`), and a stored seed would promise a
    reproduction that cannot happen."""
    if _is_local(model):
        return True
    import litellm

    try:
        _, provider, _, _ = litellm.get_llm_provider(model)
        supported = litellm.get_supported_openai_params(model=model, custom_llm_provider=provider)
    except Exception:
        return False
    return SEED_PARAM in (supported or [])


def with_call_seed(agent: AgentSpec, served_by: Sequence[str] | None = None) -> AgentSpec:
    """The agent for one call, with a sampling seed drawn for this call alone.

    Without one, llama-cpp derives every call's seed from a fixed default, so two
    instances asked the same thing at the same temperature write the same text. The seed
    lands in `extra`, hence in the parameters stored with the generation: putting it in
    the agent's config reproduces the call. A seed the config sets is kept. `served_by`:
    the models that may serve the call (a Router group's deployments); all must take it.
    """
    if agent.extra.get(SEED_PARAM) is not None:
        return agent
    if not all(accepts_seed(m) for m in (served_by or [agent.model])):
        return agent
    return agent.model_copy(update={"extra": {**agent.extra, SEED_PARAM: _seed_rng.randrange(SEED_LIMIT)}})


def _estimate_cost(model: str, prompt_tokens: int, completion_tokens: int) -> float:
    import litellm

    try:
        prompt_cost, completion_cost = litellm.cost_per_token(
            model=model, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens
        )
        return float(prompt_cost + completion_cost)
    except Exception:
        return 0.0


def router_kwargs(agent: AgentSpec, messages: list[dict[str, Any]], timeout: float) -> dict[str, Any]:
    """Arguments of a Router call: where and with which key come from the group's deployments,
    retries and fallbacks from the Router."""
    kwargs = call_kwargs(agent, messages, timeout, 0)
    for k in ("api_base", "api_key", "num_retries"):
        kwargs.pop(k, None)
    return kwargs


async def stream_chat(
    agent: AgentSpec,
    messages: list[dict[str, Any]],
    result: StreamResult,
    timeout: float = 120.0,
    num_retries: int = 2,
    router: Any = None,
) -> AsyncGenerator[str, None]:
    """Yield text deltas; fill `result` with usage, cost and finish reason as they arrive.

    The fast path serves agents `fast_openai.target_for` accepts; litellm the rest.
    `router` (a `router.MoARouter`) serves agents whose model names one of its groups;
    `result.deployment` then tells which deployment answered.
    Errors propagate to the caller (the engine turns them into an error event).
    """
    ensure_ready()
    completion = uses_completion(agent)
    if router is None or agent.model not in router.groups:
        target = fast_openai.target_for(agent, completion)
        if target is not None:
            result.client = FAST
            async for text in fast_openai.stream(target, messages, agent, result, timeout, num_retries):
                yield text
            _finish(result, agent.model, messages, completion)
            return
        router = None
    async for text in _stream_litellm(agent, messages, result, timeout, num_retries, router, completion):
        yield text
    _finish(result, result.served_model or agent.model, messages, completion)


async def _stream_litellm(
    agent: AgentSpec,
    messages: list[dict[str, Any]],
    result: StreamResult,
    timeout: float,
    num_retries: int,
    router: Any,
    completion: bool,
) -> AsyncGenerator[str, None]:
    import litellm

    result.client = LITELLM
    if router is not None:
        kwargs = router_kwargs(agent, messages, timeout)
        if completion:
            response = await router.router.atext_completion(**completion_kwargs(kwargs))
        else:
            response = await router.router.acompletion(**kwargs)
        result.deployment, result.served_model = router.served_by(response, agent.model)
    else:
        kwargs = call_kwargs(agent, messages, timeout, num_retries)
        if completion:
            response = await litellm.atext_completion(**completion_kwargs(kwargs))
        else:
            response = await litellm.acompletion(**kwargs)
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
            text = (getattr(choice, "text", None) if completion else getattr(choice.delta, "content", None)) or ""
            if text:
                if result.first_token_at is None:
                    result.first_token_at = time.time()
                result.text += text
                yield text
    finally:
        close = getattr(response, "aclose", None)
        if close is not None:
            with contextlib.suppress(Exception):
                await close()
    if _cut_short(response, agent):
        raise StreamCutError()
    if router is not None:  # a mid-stream fallback switches deployments
        label, served = router.served_by(response, agent.model)
        if label:
            result.deployment, result.served_model = label, served


def _finish(result: StreamResult, model: str, messages: list[dict[str, Any]], completion: bool) -> None:
    """What both paths do once the stream ended well: usage the provider did not send is
    counted, finish reasons take litellm's names, cost comes from litellm's price map."""
    if result.client == FAST and result.finish_reason:
        from litellm.litellm_core_utils.core_helpers import map_finish_reason

        result.finish_reason = map_finish_reason(result.finish_reason)
    if not result.completion_tokens and result.text:
        result.completion_tokens = count_tokens(model, result.text)
    if not result.prompt_tokens:
        if completion or _is_local(model):
            sent = completion_prompt(messages) if completion else "\n".join(str(m["content"]) for m in messages)
            result.prompt_tokens = count_tokens(model, sent)
        else:  # litellm's count for chat messages (role overhead included), as its stream wrapper reports it
            result.prompt_tokens = count_message_tokens(model, messages)
    result.cost = _estimate_cost(model, result.prompt_tokens, result.completion_tokens)


def count_tokens(model: str, text: str) -> int:
    if model.startswith(f"{local.PROVIDER}/"):
        exact = local.count_tokens(model.split("/", 1)[1], text)
        if exact is not None:
            return exact
    import litellm

    try:
        return int(litellm.token_counter(model=model, text=text))
    except Exception:
        return max(1, len(text) // 4)


def count_message_tokens(model: str, messages: list[dict[str, Any]]) -> int:
    import litellm

    try:
        return int(litellm.token_counter(model=model, messages=messages))
    except Exception:
        return count_tokens(model, "\n".join(str(m["content"]) for m in messages))


def context_window(model: str) -> int | None:
    """Input context size in tokens, when litellm knows it."""
    ensure_ready()
    import litellm

    try:
        info = litellm.get_model_info(model)
    except Exception:
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
