"""Which models can be used right now: local weights, providers with keys, Ollama, servers."""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass

from moa_core import settings
from moa_core.config import MoAConfig
from moa_core.providers import local
from moa_core.providers.secrets import read_secret_names

# A short, curated list per provider: any other litellm model string can still be typed.
PROVIDERS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # provider prefix: (env vars that enable it, suggested models)
    "openai": (("OPENAI_API_KEY",), ("openai/gpt-4o", "openai/gpt-4o-mini", "openai/gpt-4.1-mini")),
    "anthropic": (
        ("ANTHROPIC_API_KEY",),
        ("anthropic/claude-3-5-sonnet-20241022", "anthropic/claude-3-5-haiku-20241022"),
    ),
    "together_ai": (
        ("TOGETHERAI_API_KEY", "TOGETHER_API_KEY"),
        ("together_ai/Qwen/Qwen2.5-72B-Instruct-Turbo", "together_ai/meta-llama/Llama-3.3-70B-Instruct-Turbo"),
    ),
    "groq": (("GROQ_API_KEY",), ("groq/llama-3.3-70b-versatile", "groq/llama-3.1-8b-instant")),
    "gemini": (("GEMINI_API_KEY",), ("gemini/gemini-1.5-flash", "gemini/gemini-1.5-pro")),
    "mistral": (("MISTRAL_API_KEY",), ("mistral/mistral-small-latest", "mistral/mistral-large-latest")),
}


@dataclass(frozen=True)
class ModelInfo:
    model: str
    provider: str
    available: bool
    title: str = ""
    note: str = ""

    @property
    def is_local(self) -> bool:
        return self.provider == local.PROVIDER


def _has_key(names: Iterable[str], secrets: dict[str, str]) -> bool:
    return any(os.environ.get(n) or secrets.get(n) for n in names)


def provider_of(model: str) -> str:
    return model.split("/", 1)[0] if "/" in model else "openai"


def local_models() -> list[ModelInfo]:
    ready = {s.name for s in local.available_local_models()}
    return [
        ModelInfo(
            s.litellm_model,
            local.PROVIDER,
            s.name in ready,
            s.title,
            s.note if s.name in ready else "weights or llama-cpp-python not installed",
        )
        for s in sorted(local.LOCAL_MODELS.values(), key=lambda s: -s.quality)
    ]


def ollama_models(base: str | None = None, timeout: float = 0.5) -> list[ModelInfo]:
    base = base or settings.current().ollama_api_base
    if not base:
        return []
    try:
        with urllib.request.urlopen(f"{base.rstrip('/')}/api/tags", timeout=timeout) as resp:
            tags = json.load(resp).get("models", [])
    except (OSError, ValueError):
        return []
    return [
        ModelInfo(f"ollama_chat/{t['name']}", "ollama", True, t["name"], f"Ollama at {base}")
        for t in tags
        if "name" in t
    ]


def server_models(configs: Iterable[MoAConfig]) -> list[ModelInfo]:
    """Models on OpenAI-compatible servers that configs name with an api_base."""
    seen: dict[str, ModelInfo] = {}
    for cfg in configs:
        for agent in cfg.all_agents():
            if agent.api_base and agent.model not in seen:
                seen[agent.model] = ModelInfo(
                    agent.model, "server", True, agent.display_name, f"server at {agent.api_base}"
                )
    return list(seen.values())


def discover(configs: Iterable[MoAConfig] = (), include_unavailable: bool = True) -> list[ModelInfo]:
    secrets = read_secret_names()
    found = local_models()
    for prefix, (keys, models) in PROVIDERS.items():
        ok = _has_key(keys, secrets)
        note = "" if ok else f"set {keys[0]} to use"
        found += [ModelInfo(m, prefix, ok, m.split("/", 1)[1], note) for m in models]
    found += ollama_models()
    found += server_models(configs)
    return [m for m in found if include_unavailable or m.available]


def model_available(model: str, api_base: str | None = None) -> tuple[bool, str]:
    """Whether a call to `model` can be attempted, and why not."""
    if api_base:
        return True, ""
    provider = provider_of(model)
    if provider == local.PROVIDER:
        name = model.split("/", 1)[1]
        if name not in local.LOCAL_MODELS:
            return False, f"unknown local model {model}"
        ok = any(s.name == name for s in local.available_local_models())
        return ok, "" if ok else f"{model}: weights or llama-cpp-python not installed"
    if provider in PROVIDERS:
        keys = PROVIDERS[provider][0]
        ok = _has_key(keys, read_secret_names())
        return ok, "" if ok else f"{model}: set {keys[0]} in the environment or .streamlit/secrets.toml"
    return True, ""  # other litellm providers: let the call say what is missing


def config_problems(config: MoAConfig) -> list[str]:
    """Reasons the config cannot run as is (missing keys, missing local weights)."""
    problems = []
    for agent in config.all_agents():
        if "mock_response" in agent.extra:  # litellm answers it offline, no key needed
            continue
        if config.uses_router(agent):  # a Router group: its deployments are what gets called
            targets = [(d.model, d.api_base) for d in config.deployments[agent.model]]
        else:
            targets = [(agent.model, agent.api_base)]
        for model, api_base in targets:
            ok, why = model_available(model, api_base)
            if not ok and why not in problems:
                problems.append(why)
    return problems


def short_reason(problems: Iterable[str]) -> str:
    """A picker's few words for why something cannot run here ("" when it can)."""
    problems = list(problems)
    if not problems:
        return ""
    if any(" set " in p for p in problems):
        return "no key"
    if any("not installed" in p for p in problems):
        return "not installed"
    return "cannot run here"
