"""`moa serve-models`: bundled models behind llama-cpp-python's OpenAI-compatible server.

Unit tests (no process) for the server config and the config rewrite; integration tests
(`local_models`) start real servers with SmolLM2 135M (the smallest model, n_ctx 1024,
a few tokens per answer) and run MoA configs whose every call goes over HTTP.
"""

from __future__ import annotations

import random
import time
from contextlib import aclosing
from pathlib import Path

import pytest

from moa_core.config import AgentSpec, DeploymentSpec, LayerSpec, MoAConfig, load_config, load_preset
from moa_core.engine import run_moa
from moa_core.events import DraftDone, RunDone, TokenDelta
from moa_core.providers import local, servers
from moa_core.providers import router as routing
from moa_core.providers.errors import CONNECTION_LOST
from moa_core.providers.servers import ModelServer, ServerSet
from tests.conftest import requires_local

SMOL = "smollm2-135m"
N_CTX = 1024
requires_server = pytest.mark.skipif(
    not servers.server_available(), reason="llama-cpp-python[server] (fastapi, uvicorn, sse-starlette) not installed"
)


def fake_set(*specs: tuple[str, int, int]) -> ServerSet:
    return ServerSet([ModelServer(name, replica, port, n_ctx=N_CTX) for name, replica, port in specs])


# -- no process -------------------------------------------------------------------------------


@requires_local
def test_server_settings_one_model_no_interrupts():
    spec = local.LOCAL_MODELS[SMOL]
    s = servers.server_settings(spec, 8123, n_ctx=N_CTX)
    assert s["host"] == "127.0.0.1" and s["port"] == 8123
    # llama-cpp-python's default would end a streaming draft early when the next request arrives
    assert s["interrupt_requests"] is False
    (model,) = s["models"]
    assert model["model_alias"] == SMOL and model["n_ctx"] == N_CTX and Path(model["model"]).is_file()
    assert model["n_threads"] == 1 and "chat_format" not in model
    gemma = servers.server_settings(local.LOCAL_MODELS["gemma3-270m"], 8124)
    assert gemma["models"][0]["chat_format"] == "gemma"


def test_config_for_servers_direct_for_one_replica_router_for_two():
    cfg = load_preset("local-moa")
    one = servers.config_for_servers(cfg, fake_set((SMOL, 0, 8101), ("qwen2.5-coder-0.5b", 0, 8102)))
    smol = one.layers[0].proposers[1]
    assert (smol.model, smol.api_base, smol.context_window) == (
        "openai/smollm2-135m",
        "http://127.0.0.1:8101/v1",
        N_CTX,
    )
    assert one.aggregator.model == "openai/qwen2.5-coder-0.5b" and one.aggregator.api_base.endswith(":8102/v1")
    assert one.layers[0].proposers[2].model == "local/gemma3-270m"  # not served: stays in-process
    assert not one.deployments

    two = servers.config_for_servers(cfg, fake_set((SMOL, 0, 8101), (SMOL, 1, 8102)), fallback_to_local=True)
    smol = two.layers[0].proposers[1]
    assert smol.model == "server/smollm2-135m" and smol.api_base is None and two.uses_router(smol)
    assert [d.api_base for d in two.deployments["server/smollm2-135m"]] == [
        "http://127.0.0.1:8101/v1",
        "http://127.0.0.1:8102/v1",
    ]
    assert two.fallbacks == {"server/smollm2-135m": ["local/smollm2-135m"]}
    assert two.aggregator.model == "local/qwen2.5-coder-0.5b"

    keyed = servers.config_for_servers(
        cfg,
        fake_set((SMOL, 0, 8101), ("qwen2.5-coder-0.5b", 0, 8102), ("qwen2.5-coder-0.5b", 1, 8103)),
        api_key_env="MOA_SERVER_KEY",
    )
    assert keyed.layers[0].proposers[1].api_key_env == "MOA_SERVER_KEY"
    assert all(d.api_key_env == "MOA_SERVER_KEY" for d in keyed.deployments["server/qwen2.5-coder-0.5b"])
    assert keyed.aggregator.api_key_env is None and keyed.uses_router(keyed.aggregator)


def test_serve_models_rejects_unknown_models_and_bad_flags(capsys):
    assert servers.main(["no-such-model", "--once"]) == 2
    assert "not installed or unknown" in capsys.readouterr().err
    if local.available_local_models():
        assert servers.main([SMOL, "--preset", "local-moa", "--once"]) == 2
        assert "--write-config" in capsys.readouterr().err


def test_start_refuses_a_port_in_use():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        busy = s.getsockname()[1]
        with pytest.raises(servers.ServerError, match="already in use"):
            ModelServer(SMOL, 0, busy).start()


# -- real servers -----------------------------------------------------------------------------


def integration(fn):
    """Real model servers: marked local_models, skipped without the weights or the server extra."""
    for mark in (requires_server, requires_local, pytest.mark.local_models):
        fn = mark(fn)
    return fn


@pytest.fixture(scope="module")
def smol_servers(tmp_path_factory):
    """Three replicas of SmolLM2 on free ports (a few seconds to start): the first two serve,
    the third is the one the fault test kills."""
    with servers.serving([SMOL], replicas=3, port=0, n_ctx=N_CTX, workdir=tmp_path_factory.mktemp("servers")) as s:
        yield s


def http_agent(server: ModelServer, label: str, max_tokens: int = 12) -> AgentSpec:
    return AgentSpec(
        model=server.litellm_model,
        api_base=server.api_base,
        label=label,
        max_tokens=max_tokens,
        temperature=0.0,
        context_window=N_CTX,
    )


async def record(cfg: MoAConfig, db_url: str, question: str = "Name a primary color.", on_event=None) -> list:
    from moa_core.store.db import open_db
    from moa_core.store.recorder import Recorder

    events = []
    async with aclosing(Recorder(open_db(db_url)).record(run_moa(question, cfg))) as evs:
        async for ev in evs:
            events.append(ev)
            if on_event is not None:
                on_event(ev)
    return events


def rows(db_url: str, sql: str) -> list[tuple]:
    from sqlalchemy import text

    from moa_core.store.db import open_db

    with open_db(db_url).connect() as c:
        return [tuple(r) for r in c.execute(text(sql))]


@integration
async def test_moa_run_entirely_over_http_streams_and_records_usage(smol_servers, tmp_path):
    a, b, _ = smol_servers.servers
    cfg = MoAConfig(
        name="over-http",
        layers=[LayerSpec(proposers=[http_agent(a, "A"), http_agent(b, "B")])],
        aggregator=http_agent(a, "agg", 16),
        baselines=[http_agent(b, "solo")],
        num_retries=0,
        timeout=120,
    )
    db = f"sqlite:///{tmp_path / 'moa.db'}"
    events = await record(cfg, db)
    done = events[-1]
    assert isinstance(done, RunDone) and done.status == "done", done.error
    calls = [e for e in events if isinstance(e, DraftDone)]
    assert len(calls) == 4 and all(c.ok and c.text.strip() for c in calls), [(c.ref.call_id, c.error) for c in calls]
    for c in calls:  # streamed: several deltas, the first well before the call ended
        deltas = [e for e in events if isinstance(e, TokenDelta) and e.ref == c.ref]
        assert len(deltas) >= 2 and deltas[0].t < c.ended_at
        assert c.ttft is not None and c.usage.prompt_tokens > 0 and 0 < c.usage.completion_tokens <= 16
    gens = rows(db, "select role, status, prompt_tokens, completion_tokens, model from generation order by id")
    assert len(gens) == 4 and all(g[1] == "done" and g[2] > 0 and g[3] > 0 for g in gens), gens
    assert {g[4] for g in gens} == {"openai/smollm2-135m"}
    run = rows(db, "select status, prompt_tokens, completion_tokens from run")
    assert run[0][0] == "done" and run[0][1] == done.totals.prompt_tokens and run[0][2] == done.totals.completion_tokens


@integration
async def test_router_over_two_real_replicas_names_the_deployment(smol_servers):
    routing.clear_cache()
    random.seed(7)
    deployments = ServerSet(smol_servers.servers[:2]).deployments()
    cfg = MoAConfig(
        name="routed-http",
        deployments={k: [DeploymentSpec(**d) for d in v] for k, v in deployments.items()},
        layers=[
            LayerSpec(
                proposers=[
                    AgentSpec(
                        model="server/smollm2-135m", label=f"p{i}", max_tokens=8, temperature=0.0, context_window=N_CTX
                    )
                    for i in range(4)
                ]
            )
        ],
        aggregator=AgentSpec(model="server/smollm2-135m", label="agg", max_tokens=8, context_window=N_CTX),
        num_retries=1,
        timeout=120,
    )
    events = [e async for e in run_moa("Say yes.", cfg)]
    assert events[-1].status == "done", events[-1].error
    served = {d.deployment for d in events if isinstance(d, DraftDone)}
    names = {d["name"] for d in deployments["server/smollm2-135m"]}
    assert served <= names and len(served) == 2, served
    routing.clear_cache()


@integration
async def test_server_killed_mid_run_is_a_call_error_and_the_run_goes_on(smol_servers, tmp_path):
    """The fault path: a server SIGKILLed while it streams a draft. That draft ends with an
    error (its partial text kept), the other proposer and the aggregator on the surviving
    server finish, and the run is done with one failed call."""
    survivor, victim = smol_servers.servers[1:]
    assert victim.running
    cfg = MoAConfig(
        name="kill",
        layers=[LayerSpec(proposers=[http_agent(victim, "victim", 200), http_agent(survivor, "survivor", 8)])],
        aggregator=http_agent(survivor, "agg", 8),
        num_retries=0,
        timeout=120,
    )
    seen = {"victim": 0}

    def kill_after_first_tokens(ev) -> None:
        if isinstance(ev, TokenDelta) and ev.ref.label == "victim":
            seen["victim"] += 1
            if seen["victim"] == 2:
                victim.kill()

    db = f"sqlite:///{tmp_path / 'moa.db'}"
    t0 = time.monotonic()
    events = await record(cfg, db, "Write a long story about a lighthouse.", kill_after_first_tokens)
    assert time.monotonic() - t0 < 240
    assert not victim.running
    calls = {e.ref.label: e for e in events if isinstance(e, DraftDone)}
    assert not calls["victim"].ok and calls["victim"].finish_reason == "error"
    assert calls["victim"].error == CONNECTION_LOST  # one spelling, whichever client path noticed
    assert calls["victim"].text  # what streamed before the crash is kept
    assert calls["survivor"].ok and calls["agg"].ok
    done = events[-1]
    assert done.status == "done" and done.totals.failed_calls == 1
    stored = rows(db, "select label, status, error from generation order by id")
    assert stored[0][:2] == ("victim", "error") and stored[0][2]


@integration
def test_serve_models_command_writes_a_config_that_points_at_the_servers(tmp_path, capsys, monkeypatch):
    """With a key: the server only answers requests that carry it (its readiness check and
    warm-up request do), and the written config names the variable, never the key."""
    monkeypatch.setenv("MOA_TEST_SERVER_KEY", "sekrit-key")
    out = tmp_path / "over-servers.yaml"
    rc = servers.main(
        [
            SMOL,
            "--port",
            "0",
            "--n-ctx",
            str(N_CTX),
            "--preset",
            "local-moa",
            "--api-key-env",
            "MOA_TEST_SERVER_KEY",
            "--write-config",
            str(out),
            "--log-dir",
            str(tmp_path / "logs"),
            "--once",
        ]
    )
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "openai/smollm2-135m" in text and "api_base http://127.0.0.1:" in text and "deployments:" in text
    cfg = load_config(out)
    smol = cfg.layers[0].proposers[1]
    assert smol.model == "openai/smollm2-135m" and smol.api_base.startswith("http://127.0.0.1:")
    assert smol.api_key_env == "MOA_TEST_SERVER_KEY" and "sekrit-key" not in out.read_text() + text
    assert "stopping servers" in text
    assert list((tmp_path / "logs").glob("*.log"))
