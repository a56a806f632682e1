"""Shared fixtures: the fake OpenAI server, configs pointing at it, a temporary database."""

from __future__ import annotations

import os
import re

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import pytest

from moa_core.config import AgentSpec, LayerSpec, MoAConfig
from moa_core.providers import local
from tests.fake_openai import FakeOpenAI

pytest_plugins = ["tests.pg_support", "tests.browser_support"]


@pytest.fixture(scope="session")
def fake_server():
    with FakeOpenAI() as server:
        yield server


@pytest.fixture(params=["fast", "litellm"])
def client_path(request, monkeypatch) -> str:
    """Run the test once per client path: the fast OpenAI-compatible one, and litellm
    (forced with MOA_FAST_PATH=0)."""
    monkeypatch.setenv("MOA_FAST_PATH", "1" if request.param == "fast" else "0")
    return request.param


def fake_agent(server: FakeOpenAI, name: str, **opts: object) -> AgentSpec:
    suffix = ",".join(f"{k}={v}" for k, v in opts.items())
    model = f"openai/fake-{name}" + (f"@{suffix}" if suffix else "")
    return AgentSpec(model=model, api_base=server.url, max_tokens=64)


def fake_config(
    server: FakeOpenAI, proposers: list[AgentSpec], layers: int = 1, aggregator: AgentSpec | None = None, **kw: object
) -> MoAConfig:
    return MoAConfig(
        name="fake",
        layers=[LayerSpec(proposers=proposers) for _ in range(layers)],
        aggregator=aggregator or fake_agent(server, "agg"),
        num_retries=kw.pop("num_retries", 0),  # type: ignore[arg-type]
        timeout=kw.pop("timeout", 10),  # type: ignore[arg-type]
        **kw,  # type: ignore[arg-type]
    )


def md_text(markdown: str) -> str:
    """What a reader sees of markdown the pages escaped (moa_core.ui.safe_text): backslash
    escapes and the zero-width spaces that stop autolinks removed."""
    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", markdown).replace("\u200b", "")


LOCAL_SKIP_REASON = "bundled local models or llama-cpp-python not installed"
requires_local = pytest.mark.skipif(not local.available_local_models(), reason=LOCAL_SKIP_REASON)

# A test that needs one of these fixtures is a browser / PostgreSQL test, whether or not
# its module says so: `make test-fast` deselects by marker and must not start chromium.
BROWSER_FIXTURES = {"app_server", "browser", "page", "rel_app"}
POSTGRES_FIXTURES = {"pg_server", "pg_url"}
# pytest-timeout per group (seconds, setup included): a hung test fails with a stack
# instead of eating CI's budget. The ini `timeout` covers everything else.
GROUP_TIMEOUTS = {"browser": 600, "local_models": 600, "postgres": 300}


def _auto_markers(item: pytest.Item) -> None:
    fixtures = set(getattr(item, "fixturenames", ()))
    if fixtures & BROWSER_FIXTURES:
        item.add_marker(pytest.mark.browser)
    if fixtures & POSTGRES_FIXTURES:
        item.add_marker(pytest.mark.postgres)
    if any(m.kwargs.get("reason") == LOCAL_SKIP_REASON for m in item.iter_markers("skipif")):
        item.add_marker(pytest.mark.local_models)
    if item.get_closest_marker("timeout") is None:
        limits = [t for group, t in GROUP_TIMEOUTS.items() if item.get_closest_marker(group)]
        if limits:
            item.add_marker(pytest.mark.timeout(max(limits)))


def pytest_collection_modifyitems(config, items):
    """Browser tests last: sync Playwright keeps an event loop running in the main thread
    for the rest of the session, which would break every asyncio test collected after it."""
    for item in items:
        _auto_markers(item)
    items.sort(key=lambda item: item.get_closest_marker("browser") is not None)
