"""litellm Router built from a MoA config's `deployments` and `fallbacks`.

A config names Router groups; an agent whose `model` is a group name is served by one
of the group's deployments (replicas of a model server, or several providers of one
model). litellm's Router picks the deployment, retries a failed call on another one
(a deployment that fails is cooled down for COOLDOWN_SECONDS), and when every
deployment of a group fails it tries the group's `fallbacks` in order: other groups,
or plain litellm model strings (those get a one-deployment group of their own).

    deployments:
      server/smollm2-135m:
        - {model: openai/smollm2-135m, api_base: http://127.0.0.1:8101/v1}
        - {model: openai/smollm2-135m, api_base: http://127.0.0.1:8102/v1}
    fallbacks:
      server/smollm2-135m: [local/smollm2-135m]

Routers are cached per routing setup (deployments, fallbacks, strategy, retries,
timeout, the keys' fingerprints), so cooldowns and in-flight counts carry over from
one run to the next in a process. Each app replica has its own Routers: cooldowns are
not shared between replicas (litellm can share them through Redis; not used here).

Routing strategy: `simple-shuffle` (litellm's default: random, weighted by `weight`)
spreads a burst of concurrent proposer calls. `least-busy` counts a call as in flight
only once litellm is about to send it, well after the deployment was chosen, so calls
that start together all see zero in flight and pick the same deployment; it suits
steady traffic, not MoA's bursts. `latency-based-routing` prefers the fastest deployment.
"""

from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from moa_core.config import DeploymentSpec, MoAConfig
from moa_core.vocab import digest

# Seconds a deployment that failed stays out of the rotation (litellm's default is 5).
COOLDOWN_SECONDS = 30.0
_CACHE_SIZE = 16
_SEP = " :: "  # group and deployment name, in a deployment id


@dataclass
class MoARouter:
    """A litellm Router and what is needed to say which deployment served a call."""

    router: Any
    groups: frozenset[str]
    labels: dict[str, str]  # deployment id -> display name
    models: dict[str, str]  # deployment id -> litellm model string (for cost)

    def served_by(self, response: Any, group: str) -> tuple[str | None, str | None]:
        """(display name, litellm model) of the deployment behind a Router response."""
        hidden = getattr(response, "_hidden_params", None) or {}
        dep_id = hidden.get("model_id")
        if dep_id is None:
            return None, None
        dep_id = str(dep_id)
        label = self.labels.get(dep_id, dep_id)
        served_group = dep_id.split(_SEP, 1)[0] if _SEP in dep_id else group
        if served_group != group:
            label = f"{label} (fallback for {group})"
        return label, self.models.get(dep_id)


def deployment_id(group: str, dep: DeploymentSpec) -> str:
    return f"{group}{_SEP}{dep.display_name}"


def _api_key(dep: DeploymentSpec) -> str | None:
    if dep.api_key_env:
        return os.environ.get(dep.api_key_env, "")
    if dep.api_base and dep.model.startswith("openai/") and not os.environ.get("OPENAI_API_KEY"):
        return "no-key"  # self-hosted OpenAI-compatible servers ignore it; the client insists on one
    return None


def _litellm_params(dep: DeploymentSpec) -> dict[str, Any]:
    params: dict[str, Any] = dict(dep.extra)
    params["model"] = dep.model
    if dep.api_base:
        params["api_base"] = dep.api_base
    key = _api_key(dep)
    if key is not None:
        params["api_key"] = key
    if dep.weight != 1:
        params["weight"] = dep.weight
    if dep.max_parallel_requests:
        params["max_parallel_requests"] = dep.max_parallel_requests
    return params


def model_list(config: MoAConfig) -> list[dict[str, Any]]:
    """litellm Router `model_list`: one entry per deployment, plus plain fallback models."""
    out: list[dict[str, Any]] = []
    for group, deps in config.deployments.items():
        for dep in deps:
            out.append(
                {
                    "model_name": group,
                    "litellm_params": _litellm_params(dep),
                    "model_info": {"id": deployment_id(group, dep)},
                }
            )
    for targets in config.fallbacks.values():
        for target in targets:
            if target not in config.deployments and not any(m["model_name"] == target for m in out):
                dep = DeploymentSpec(model=target)
                out.append(
                    {
                        "model_name": target,
                        "litellm_params": _litellm_params(dep),
                        "model_info": {"id": deployment_id(target, dep)},
                    }
                )
    return out


def _fingerprint(config: MoAConfig, models: list[dict[str, Any]]) -> str:
    def scrub(params: dict[str, Any]) -> dict[str, Any]:
        p = dict(params)
        if "api_key" in p:  # never kept in the clear, even in memory keys
            p["api_key"] = digest(str(p["api_key"]), 12)
        return p

    blob = json.dumps(
        {
            "models": [{**m, "litellm_params": scrub(m["litellm_params"])} for m in models],
            "fallbacks": config.fallbacks,
            "strategy": config.routing_strategy,
            "retries": config.num_retries,
            "timeout": config.timeout,
        },
        sort_keys=True,
        default=str,
    )
    return digest(blob, 64)


_routers: OrderedDict[str, MoARouter] = OrderedDict()
_lock = threading.Lock()


def build_router(config: MoAConfig) -> MoARouter:
    """A new litellm Router for the config's groups (prefer `router_for`, which caches)."""
    import litellm

    models = model_list(config)
    router = litellm.Router(
        model_list=models,
        fallbacks=[{g: list(t)} for g, t in config.fallbacks.items()],
        routing_strategy=config.routing_strategy,
        num_retries=config.num_retries,
        timeout=config.timeout,
        # A deployment that failed once is skipped for COOLDOWN_SECONDS, so the retry
        # goes to another one at once instead of waiting out a backoff.
        allowed_fails=0,
        cooldown_time=COOLDOWN_SECONDS,
        retry_after=0,
        set_verbose=False,
    )
    labels = {m["model_info"]["id"]: m["model_info"]["id"].split(_SEP, 1)[1] for m in models}
    return MoARouter(
        router,
        frozenset(config.deployments),
        labels,
        {m["model_info"]["id"]: m["litellm_params"]["model"] for m in models},
    )


def router_for(config: MoAConfig) -> MoARouter | None:
    """The cached Router for this config's routing setup; None when it lists no deployments."""
    if not config.deployments:
        return None
    key = _fingerprint(config, model_list(config))
    with _lock:
        found = _routers.get(key)
        if found is not None:
            _routers.move_to_end(key)
            return found
    built = build_router(config)
    with _lock:
        found = _routers.setdefault(key, built)
        _routers.move_to_end(key)
        evicted = [_routers.popitem(last=False)[1] for _ in range(max(0, len(_routers) - _CACHE_SIZE))]
    for old in evicted:
        _retire(old.router)
    return found


def _retire(router: Any) -> None:
    """Take a dropped Router's callbacks out of litellm's global lists (every Router adds
    its own; left there, each later call would run the callbacks of every Router ever built)."""
    import litellm

    owned = {
        id(x)
        for x in (
            getattr(router, "leastbusy_logger", None),
            getattr(router, "lowesttpm_logger", None),
            getattr(router, "lowesttpm_logger_v2", None),
            getattr(router, "lowestlatency_logger", None),
        )
        if x is not None
    }

    def mine(cb: Any) -> bool:
        return getattr(cb, "__self__", None) is router or id(cb) in owned

    for name in (
        "callbacks",
        "input_callback",
        "success_callback",
        "failure_callback",
        "_async_success_callback",
        "_async_failure_callback",
        "service_callback",
    ):
        cbs = getattr(litellm, name, None)
        if isinstance(cbs, list):
            cbs[:] = [cb for cb in cbs if not mine(cb)]


def clear_cache() -> None:
    """Forget every cached Router and its callbacks (tests)."""
    with _lock:
        dropped = list(_routers.values())
        _routers.clear()
    for r in dropped:
        _retire(r.router)
