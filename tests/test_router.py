"""litellm Router across replicas, on fake OpenAI-compatible servers: config, spread, retry on
another deployment, a replica killed mid-run, fallback to a backup model, which deployment served."""

from __future__ import annotations

import random
import subprocess
import sys
from collections import Counter

import pytest
import yaml

from moa_core.config import AgentSpec, ConfigError, DeploymentSpec, LayerSpec, MoAConfig, config_from_dict, load_preset
from moa_core.engine import collect, run_moa, run_single
from moa_core.events import DraftDone, RunDone, event_to_dict
from moa_core.providers import llm
from moa_core.providers import router as routing
from tests.browser_support import ROOT
from tests.fake_openai import FakeOpenAI

MODEL = "openai/fake-r@tokens=6"


class ChildFake:
    """tests.fake_openai.FakeOpenAI in a child process, so a test can SIGKILL it like a crashed server."""

    def __init__(self) -> None:
        code = (
            "import sys\nfrom tests.fake_openai import FakeOpenAI\n"
            "s = FakeOpenAI().__enter__()\nprint(s.url, flush=True)\nsys.stdin.read()\n"
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()
        assert self.url.startswith("http://127.0.0.1:"), self.url

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def close(self) -> None:
        self.kill()
        for f in (self.proc.stdin, self.proc.stdout):
            if f is not None:
                f.close()


@pytest.fixture
def replicas():
    with FakeOpenAI() as a, FakeOpenAI() as b:
        yield a, b


@pytest.fixture(autouse=True)
def fresh_routers():
    """Routers are cached per process (cooldowns carry over); each test starts clean, and a
    fixed seed makes simple-shuffle's picks repeatable."""
    state = random.getstate()
    random.seed(20240611)
    routing.clear_cache()
    yield
    routing.clear_cache()
    random.setstate(state)


def group_config(
    deployments: dict[str, list[DeploymentSpec]], proposers: int = 4, layers: int = 1, group: str = "pool", **kw: object
) -> MoAConfig:
    return MoAConfig(
        name="routed",
        layers=[
            LayerSpec(proposers=[AgentSpec(model=group, label=f"p{k}{i}", max_tokens=16) for i in range(proposers)])
            for k in range(layers)
        ],
        aggregator=AgentSpec(model=group, label="agg", max_tokens=16),
        deployments=deployments,
        num_retries=kw.pop("num_retries", 2),  # type: ignore[arg-type]
        timeout=kw.pop("timeout", 20),  # type: ignore[arg-type]
        **kw,  # type: ignore[arg-type]
    )


def dones(events: list) -> list[DraftDone]:
    return [e for e in events if isinstance(e, DraftDone)]


def run_done(events: list) -> RunDone:
    assert isinstance(events[-1], RunDone)
    return events[-1]


# -- the config -------------------------------------------------------------------------------


def test_config_without_router_dumps_as_before():
    """No Router: the new fields stay out of dumps, so config hashes and saved YAML do not change."""
    cfg = load_preset("local-moa")
    dumped = cfg.model_dump(mode="json")
    assert not {"deployments", "fallbacks", "routing_strategy"} & set(dumped)
    assert "deployments" not in cfg.to_yaml()
    assert MoAConfig.model_validate(dumped).stable_hash() == cfg.stable_hash()


def test_config_with_router_round_trips_and_changes_the_hash():
    text = """
name: team
deployments:
  server/smollm2-135m:
    - {model: openai/smollm2-135m, api_base: "http://127.0.0.1:8101/v1"}
    - {model: openai/smollm2-135m, api_base: "http://127.0.0.1:8102/v1", weight: 2, name: second}
fallbacks:
  server/smollm2-135m: [local/smollm2-135m]
layers:
  - proposers: [{model: server/smollm2-135m}, {model: local/gemma3-270m}]
aggregator: {model: server/smollm2-135m}
"""
    cfg = config_from_dict(yaml.safe_load(text))
    assert cfg.uses_router(cfg.aggregator) and not cfg.uses_router(cfg.layers[0].proposers[1])
    deps = cfg.deployments["server/smollm2-135m"]
    assert [d.display_name for d in deps] == ["openai/smollm2-135m @ 127.0.0.1:8101", "second"]
    again = config_from_dict(yaml.safe_load(cfg.to_yaml()))
    assert again == cfg and again.stable_hash() == cfg.stable_hash()
    plain = cfg.model_copy(update={"deployments": {}, "fallbacks": {}})
    assert plain.stable_hash() != cfg.stable_hash()


@pytest.mark.parametrize(
    "patch, message",
    [
        ({"fallbacks": {"nope": ["x"]}}, "fallbacks.nope: not a group"),
        ({"fallbacks": {"pool": []}}, "fallbacks.pool"),
        ({"fallbacks": {"pool": ["pool"]}}, "fallbacks.pool"),
        ({"deployments": {"pool": []}}, "deployments.pool: list at least one"),
        (
            {
                "deployments": {
                    "pool": [
                        {"model": "openai/a", "api_base": "http://h:1/v1"},
                        {"model": "openai/a", "api_base": "http://h:1/v1"},
                    ]
                }
            },
            "same name",
        ),
        ({"deployments": {"pool": [{"model": "openai/a", "extra": {"api_key": "sk-123"}}]}}, "api_key may not be set"),
        ({"aggregator": {"model": "pool", "api_base": "http://h:1/v1"}}, "is a Router group"),
        ({"routing_strategy": "round-robin"}, "routing_strategy"),
    ],
)
def test_router_config_errors_name_the_field(patch, message):
    data = {
        "layers": [{"proposers": [{"model": "pool"}]}],
        "aggregator": {"model": "pool"},
        "deployments": {"pool": [{"model": "openai/a", "api_base": "http://h:1/v1"}]},
    }
    data.update(patch)
    with pytest.raises(ConfigError, match=message):
        config_from_dict(data)


def test_model_list_keys_and_plain_fallbacks(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("TEAM_KEY", "sk-team-secret")
    cfg = group_config(
        {
            "pool": [
                DeploymentSpec(model="openai/a", api_base="http://h:1/v1"),
                DeploymentSpec(
                    model="openai/a",
                    api_base="http://h:2/v1",
                    api_key_env="TEAM_KEY",
                    weight=3,
                    max_parallel_requests=2,
                ),
            ]
        },
        fallbacks={"pool": ["local/smollm2-135m"]},
    )
    models = routing.model_list(cfg)
    assert [m["model_name"] for m in models] == ["pool", "pool", "local/smollm2-135m"]
    assert models[0]["litellm_params"]["api_key"] == "no-key"  # a self-hosted server without a key
    assert models[1]["litellm_params"]["api_key"] == "sk-team-secret"
    assert models[1]["litellm_params"]["weight"] == 3 and models[1]["litellm_params"]["max_parallel_requests"] == 2
    assert models[2]["litellm_params"] == {"model": "local/smollm2-135m"}
    assert len({m["model_info"]["id"] for m in models}) == 3
    # the key is read from the environment when the Router is built, and never kept in a config dump
    assert "sk-team-secret" not in cfg.to_json()


def test_routers_are_cached_per_setup_and_retired_callbacks_leave(monkeypatch):
    import litellm

    cfg = group_config({"pool": [DeploymentSpec(model="openai/a", api_base="http://h:1/v1")]})
    r1 = routing.router_for(cfg)
    assert r1 is not None and routing.router_for(cfg.model_copy(update={"name": "other"})) is r1
    assert routing.router_for(cfg.model_copy(update={"num_retries": 0})) is not r1
    assert (
        routing.router_for(
            MoAConfig(layers=[LayerSpec(proposers=[AgentSpec(model="x")])], aggregator=AgentSpec(model="x"))
        )
        is None
    )
    before = len(litellm._async_failure_callback)
    monkeypatch.setattr(routing, "_CACHE_SIZE", 1)
    for port in (3, 4, 5):
        routing.router_for(group_config({"pool": [DeploymentSpec(model="openai/a", api_base=f"http://h:{port}/v1")]}))
    assert len(litellm._async_failure_callback) <= before


# -- calls through the Router -----------------------------------------------------------------


async def test_concurrent_proposers_spread_across_replicas(replicas):
    a, b = replicas
    cfg = group_config(
        {
            "pool": [
                DeploymentSpec(model=MODEL, api_base=a.url, name="A"),
                DeploymentSpec(model=MODEL, api_base=b.url, name="B"),
            ]
        },
        proposers=8,
    )
    events = await collect(run_moa("Why is the sky blue?", cfg))
    assert run_done(events).status == "done"
    served = Counter(d.deployment for d in dones(events))
    per_server = {"A": sum(a.calls.values()), "B": sum(b.calls.values())}
    assert per_server["A"] >= 1 and per_server["B"] >= 1, per_server
    assert served == per_server, (served, per_server)  # each call names the replica that answered it
    assert all(d.ok and d.usage.completion_tokens == 6 for d in dones(events))
    assert event_to_dict(dones(events)[0])["deployment"] in ("A", "B")


async def test_failed_deployment_is_retried_on_another(replicas):
    a, b = replicas
    cfg = group_config(
        {
            "pool": [
                DeploymentSpec(model="openai/fake-broken@fail=500", api_base=a.url, name="broken"),
                DeploymentSpec(model=MODEL, api_base=b.url, name="good"),
            ]
        },
        proposers=6,
    )
    events = await collect(run_moa("q?", cfg))
    assert run_done(events).status == "done"
    assert all(d.ok and d.deployment == "good" for d in dones(events)), [(d.deployment, d.error) for d in dones(events)]
    assert sum(a.calls.values()) >= 1  # some calls went there first, then were retried elsewhere
    assert sum(b.calls.values()) == 7


async def test_replica_killed_mid_run_calls_succeed_on_the_other(monkeypatch):
    """Two layers; one replica is SIGKILLed as the second layer starts (just before its first
    call leaves). Every later call succeeds on the surviving replica: the Router retries
    there and cools the dead one down. (A call in flight on a server that dies is the real
    server test's part: tests/test_servers.py.)"""
    dead = ChildFake()
    real_stream_chat = llm.stream_chat

    def stream_chat(agent, messages, *args, **kwargs):
        if messages[0]["role"] == "system" and dead.proc.poll() is None:  # the first call that carries drafts
            dead.kill()
        return real_stream_chat(agent, messages, *args, **kwargs)

    monkeypatch.setattr(llm, "stream_chat", stream_chat)
    try:
        with FakeOpenAI() as alive:
            cfg = group_config(
                {
                    "pool": [
                        DeploymentSpec(model=MODEL, api_base=dead.url, name="doomed"),
                        DeploymentSpec(model=MODEL, api_base=alive.url, name="survivor"),
                    ]
                },
                proposers=4,
                layers=2,
            )
            events = await collect(run_moa("q?", cfg))
            assert dead.proc.poll() is not None
            assert run_done(events).status == "done", run_done(events).error
            first = [d for d in dones(events) if d.ref.layer == 0]
            later = [d for d in dones(events) if d.ref.layer > 0]
            assert any(d.deployment == "doomed" for d in first), [d.deployment for d in first]
            assert len(later) == 5 and all(d.ok and d.deployment == "survivor" for d in later), [
                (d.ref.call_id, d.deployment, d.error) for d in later
            ]
            assert run_done(events).totals.failed_calls == 0
            assert sum(alive.calls.values()) == sum(d.deployment == "survivor" for d in dones(events))
    finally:
        dead.close()


async def test_all_deployments_fail_falls_back_to_backup_model(replicas):
    a, b = replicas
    broken = "openai/fake-r@fail=500"
    cfg = group_config(
        {
            "pool": [
                DeploymentSpec(model=broken, api_base=a.url, name="A"),
                DeploymentSpec(model=broken, api_base=b.url, name="B"),
            ],
            "backup": [DeploymentSpec(model="openai/fake-backup", api_base=b.url, name="backup")],
        },
        proposers=3,
        fallbacks={"pool": ["backup"]},
        num_retries=1,
    )
    events = await collect(run_moa("q?", cfg))
    assert run_done(events).status == "done"
    assert all(d.ok and d.deployment == "backup (fallback for pool)" for d in dones(events))
    assert b.calls["fake-backup"] == 4
    assert sum(a.calls.values()) + b.calls[broken.split("/", 1)[1]] >= 2  # both replicas were tried first


async def test_no_fallback_all_deployments_fail_is_a_clear_error(replicas):
    a, b = replicas
    broken = "openai/fake-r@fail=500"
    cfg = group_config(
        {
            "pool": [
                DeploymentSpec(model=broken, api_base=a.url, name="A"),
                DeploymentSpec(model=broken, api_base=b.url, name="B"),
            ]
        },
        proposers=2,
        num_retries=1,
    )
    events = await collect(run_moa("q?", cfg))
    done = run_done(events)
    assert done.status == "failed" and "Every proposer of layer 1 failed" in (done.error or "")
    assert all(not d.ok and "injected server error" in (d.error or "") for d in dones(events))
    assert all(d.deployment is None for d in dones(events))


async def test_direct_calls_have_no_deployment_and_single_runs_can_route(replicas):
    a, b = replicas
    direct = MoAConfig(
        layers=[LayerSpec(proposers=[AgentSpec(model=MODEL, api_base=a.url, max_tokens=8)])],
        aggregator=AgentSpec(model=MODEL, api_base=a.url, max_tokens=8),
        num_retries=0,
        timeout=20,
    )
    events = await collect(run_moa("q?", direct))
    assert run_done(events).status == "done" and all(d.deployment is None for d in dones(events))

    cfg = group_config({"pool": [DeploymentSpec(model=MODEL, api_base=b.url, name="B")]})
    events = await collect(run_single("q?", AgentSpec(model="pool", max_tokens=8), routing=cfg, num_retries=0))
    assert run_done(events).status == "done"
    assert [d.deployment for d in dones(events)] == ["B"]
