"""The two client paths (fast OpenAI-compatible streaming, litellm) against the same fake
server calls: the same results field by field, the same error messages, which agents each
path serves, and the engine's coalescing of deltas that arrive in one loop tick."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator

import pytest

from moa_core import settings
from moa_core.config import AgentSpec, DeploymentSpec, LayerSpec, MoAConfig
from moa_core.engine import collect, run_single
from moa_core.events import DraftDone, DraftStarted, TokenDelta
from moa_core.providers import errors, llm
from moa_core.providers.router import router_for
from tests.conftest import fake_agent

PATHS = ("fast", "litellm")


async def _run(monkeypatch, path: str, agent: AgentSpec, timeout: float = 10, retries: int = 0) -> list:
    monkeypatch.setenv("MOA_FAST_PATH", "1" if path == "fast" else "0")
    return await collect(run_single("Why is the sky blue?", agent, timeout=timeout, num_retries=retries))


def _call(events: list) -> tuple[DraftStarted, list[str], DraftDone]:
    started = next(e for e in events if isinstance(e, DraftStarted))
    deltas = [e.text for e in events if isinstance(e, TokenDelta)]
    done = next(e for e in events if isinstance(e, DraftDone))
    return started, deltas, done


@pytest.mark.parametrize(
    "model",
    [
        "openai/gpt-4o-mini",  # priced in litellm's map: the cost must match, not just be zero on both
        "openai/fake-long@tokens=40,delay=0.002,ttft=0.05",
        "openai/fake-quiet@tokens=12,usage=none",  # no usage chunk: both count with litellm's tokenizer
    ],
)
async def test_both_paths_give_the_same_result_field_by_field(fake_server, monkeypatch, model):
    agent = AgentSpec(model=model, api_base=fake_server.url, max_tokens=64, extra={"seed": 7})
    got = {}
    for path in PATHS:
        started, deltas, done = _call(await _run(monkeypatch, path, agent))
        assert started.params["client"] == path, "the call's record says which path served it"
        assert done.ok, done.error
        assert "".join(deltas) == done.text
        assert done.ttft is not None and 0 < done.ttft <= done.latency
        got[path] = done
    fast, slow = got["fast"], got["litellm"]
    assert fast.text == slow.text and fast.text
    assert fast.finish_reason == slow.finish_reason == "stop"
    assert fast.usage == slow.usage and fast.usage.completion_tokens > 0 and fast.usage.prompt_tokens > 0
    assert fast.cost == pytest.approx(slow.cost)
    assert fast.deployment == slow.deployment is None
    if model == "openai/gpt-4o-mini":
        assert fast.cost > 0
    # what the server was sent is the same request on both paths
    sent = [r for r in fake_server.requests if r["model"] == model.split("/", 1)[1]][-2:]
    keys = ("model", "messages", "temperature", "max_tokens", "stream", "seed")
    fast_sent, litellm_sent = ({k: r.get(k) for k in keys} for r in sent)
    assert fast_sent == litellm_sent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def killed_server() -> Iterator[str]:
    """A server that streams one chunk (chunked encoding, as llama.cpp's does) and is then
    killed: the connection is reset with the body unfinished."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
            body = (
                b'data: {"id":"x","object":"chat.completion.chunk","created":0,"model":"m",'
                b'"choices":[{"index":0,"delta":{"content":"Once upon"},"finish_reason":null}]}\n\n'
            )
            conn.sendall(f"{len(body):x}\r\n".encode() + body + b"\r\n")
            stop.wait(0.1)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    stop.set()
    sock.close()


EXPECTED_ERRORS = {
    "500": "InternalServerError: injected server error",
    "429": "RateLimitError: injected rate limit",
    "hang": errors.TIMED_OUT,
    "drop": errors.CONNECTION_LOST,
    "garbage": "APIError: malformed chunk in the stream (Expecting property name enclosed in double quotes: "
    "line 1 column 2 (char 1))",
    "refused": errors.CANNOT_CONNECT,
    "killed": errors.CONNECTION_LOST,
}


@pytest.mark.parametrize("fault", list(EXPECTED_ERRORS))
async def test_both_paths_give_the_same_error_messages(fake_server, killed_server, monkeypatch, fault):
    if fault == "refused":
        agent = AgentSpec(model="openai/fake-x", api_base=f"http://127.0.0.1:{_free_port()}/v1", max_tokens=16)
    elif fault == "killed":
        agent = AgentSpec(model="openai/fake-x", api_base=killed_server, max_tokens=16)
    else:
        agent = fake_agent(fake_server, f"err-{fault}", tokens=6, fail=fault)
    timeout = 1.0 if fault == "hang" else 10
    seen = {}
    for path in PATHS:
        _started, deltas, done = _call(await _run(monkeypatch, path, agent, timeout=timeout))
        assert not done.ok and done.finish_reason == "error"
        assert "".join(deltas) == done.text, "what streamed before the fault is kept"
        seen[path] = done.error
    assert seen["fast"] == seen["litellm"] == EXPECTED_ERRORS[fault]


@pytest.mark.parametrize("path", PATHS)
async def test_killed_mid_answer_keeps_the_partial_text(killed_server, monkeypatch, path):
    agent = AgentSpec(model="openai/fake-x", api_base=killed_server, max_tokens=16)
    _started, _deltas, done = _call(await _run(monkeypatch, path, agent))
    assert done.text == "Once upon" and done.error == errors.CONNECTION_LOST


@pytest.mark.parametrize("path", PATHS)
async def test_a_connection_lost_before_any_text_is_tried_again(fake_server, monkeypatch, path):
    """A busy server (or a stale pooled connection) can drop a request before answering; with
    retries left, the call is sent again and answers, on either path."""
    agent = fake_agent(fake_server, f"drop-{path}", fail="dropfirst", tokens=3)
    _started, _deltas, done = _call(await _run(monkeypatch, path, agent, retries=1))
    assert done.ok and done.text.endswith("w1 w2"), done.error
    assert fake_server.calls[agent.model.removeprefix("openai/")] == 2


async def test_same_tick_deltas_travel_as_one_token_delta(monkeypatch):
    """Deltas the provider hands over without the loop turning are one TokenDelta. The
    call's first batch goes out on the next tick; later ones wait up to DELTA_FLUSH_S for
    more, and what arrives after a flush starts the next TokenDelta."""
    from moa_core.engine import DELTA_FLUSH_S

    async def stream_chat(agent, messages, result, *args, **kwargs):
        for batch in (["The ", "sky ", "is "], ["blue", "."], ["!"]):
            for text in batch:
                result.text += text
                yield text
            await asyncio.sleep(DELTA_FLUSH_S * 3)
        result.finish_reason = "stop"

    monkeypatch.setattr(llm, "stream_chat", stream_chat)
    events = await collect(run_single("q", AgentSpec(model="openai/x"), timeout=10, num_retries=0))
    _started, deltas, done = _call(events)
    assert deltas == ["The sky is ", "blue.", "!"]
    assert done.ok and done.text == "The sky is blue.!"


def _routed_config() -> MoAConfig:
    agent = AgentSpec(model="group/x")
    return MoAConfig(
        deployments={"group/x": [DeploymentSpec(model="openai/x", api_base="http://127.0.0.1:9/v1")]},
        layers=[LayerSpec(proposers=[agent])],
        aggregator=agent,
    )


@pytest.mark.parametrize(
    ("agent", "env", "client"),
    [
        (AgentSpec(model="openai/x", api_base="http://127.0.0.1:9/v1"), {}, "fast"),
        (
            AgentSpec(model="openai/x", api_base="http://h/v1", extra={"seed": 1, "extra_headers": {"X": "1"}}),
            {},
            "fast",
        ),
        (AgentSpec(model="openai/gpt-4o-mini"), {"OPENAI_API_KEY": "sk-test-0123456789"}, "fast"),
        (AgentSpec(model="openai/gpt-4o-mini"), {"OPENAI_API_KEY": ""}, "litellm"),  # litellm words the missing key
        (AgentSpec(model="groq/llama-3.1-8b-instant"), {"GROQ_API_KEY": "gsk-test-0123456789"}, "fast"),
        (AgentSpec(model="ollama_chat/llama3.2"), {}, "fast"),
        (AgentSpec(model="openai/x", api_base="http://h/v1", extra={"mock_response": "hi"}), {}, "litellm"),
        (AgentSpec(model="openai/x", api_base="http://h/v1", prompt_style="completion"), {}, "litellm"),
        (AgentSpec(model="anthropic/claude-3-5-haiku-latest"), {"ANTHROPIC_API_KEY": "sk-ant-0123456789"}, "litellm"),
        (AgentSpec(model="local/smollm2-135m"), {}, "litellm"),
        (AgentSpec(model="openai/x", api_base="http://127.0.0.1:9/v1"), {"MOA_FAST_PATH": "0"}, "litellm"),
    ],
)
def test_which_agents_the_fast_path_serves(monkeypatch, agent, env, client):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert llm.client_for(agent) == client


def test_router_groups_stay_on_litellm():
    cfg = _routed_config()
    assert llm.client_for(cfg.aggregator, router_for(cfg)) == "litellm"


def test_a_bad_fast_path_setting_is_one_line(monkeypatch):
    monkeypatch.setenv("MOA_FAST_PATH", "maybe")
    with pytest.raises(settings.SettingsError, match=r"^MOA_FAST_PATH must be 1 or 0, got 'maybe'$"):
        settings.current()
