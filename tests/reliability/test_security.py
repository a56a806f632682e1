"""Security outside the browser: keys never stored or exported, keys kept out of configs,
the server bound to loopback by default. (Hostile output in a real browser, keys in page
HTML and the app log, the live bind check and upload limits: test_browser_reliability.py.)
"""

from __future__ import annotations

import tomllib
import uuid
from pathlib import Path

import pytest

from moa_core.config import AgentSpec, ConfigError, LayerSpec, MoAConfig, config_from_dict
from moa_core.engine import run_moa
from moa_core.events import DraftDone
from moa_core.providers import llm
from moa_core.store import add_rating, add_vote, export_all
from moa_core.ui.config_editor import MAX_IMPORT_BYTES
from tests.reliability.conftest import (
    CUSTOM_KEY_ENV,
    FAKE_CUSTOM_KEY,
    FAKE_OPENAI_KEY,
    assert_store_matches_events,
    record,
    rows,
)

ROOT = Path(__file__).resolve().parents[2]
HEADER_KEY = "hdr-moarel-7a6b5c4d3e2f1a0b9c8d"


def find_secrets(blob: bytes, secrets: list[str]) -> list[str]:
    return [s for s in secrets if s.encode() in blob]


def store_bytes(engine, tmp_path: Path) -> dict[str, bytes]:
    """Everything the store holds, as bytes: the SQLite files and both export formats."""
    db = Path(engine.url.database)
    out = {p.name: p.read_bytes() for p in db.parent.glob(db.name + "*")}
    for fmt in ("csv", "jsonl"):
        for path in export_all(engine, tmp_path / f"export-{fmt}", fmt):
            out[f"{fmt}/{path.name}"] = path.read_bytes()
    return out


async def test_api_keys_never_reach_the_database_or_the_exports(
    fault_server, rel_db, tmp_path, monkeypatch, client_path
):
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_OPENAI_KEY)
    monkeypatch.setenv(CUSTOM_KEY_ENV, FAKE_CUSTOM_KEY)
    uid = uuid.uuid4().hex[:6]

    def agent(name: str, **kw) -> AgentSpec:
        fail = kw.pop("fail", None)
        return AgentSpec(
            model=f"openai/fake-{name}-{uid}" + (f"@fail={fail}" if fail else ""),
            label=name,
            api_base=fault_server.url,
            max_tokens=16,
            **kw,
        )

    cfg = MoAConfig(
        name="keys",
        timeout=10,
        num_retries=0,
        layers=[
            LayerSpec(
                proposers=[
                    agent("env-key"),
                    agent("custom-key", api_key_env=CUSTOM_KEY_ENV),
                    agent("erroring", fail="500"),
                ]
            )
        ],
        aggregator=agent("agg", extra={"extra_headers": {"Authorization": f"Bearer {HEADER_KEY}"}}),
        baselines=[agent("garbled", fail="garbage")],
    )
    assert {llm.client_for(x) for x in [*cfg.layers[0].proposers, cfg.aggregator, *cfg.baselines]} == {client_path}
    events = await record(rel_db, run_moa("Which keys do you see?", cfg))
    assert_store_matches_events(rel_db, events)
    assert events[-1].status == "done"
    # the keys really went out, to the provider only
    assert f"Bearer {FAKE_OPENAI_KEY}" in fault_server.auth and f"Bearer {FAKE_CUSTOM_KEY}" in fault_server.auth
    gens = [g[0] for g in rows(rel_db, "select id from generation order by id")]
    add_rating(rel_db, gens[0], 5, "nice", "alice")
    add_vote(rel_db, gens[0], gens[1], "left", "alice")
    found = {
        name: find_secrets(blob, [FAKE_OPENAI_KEY, FAKE_CUSTOM_KEY, HEADER_KEY])
        for name, blob in store_bytes(rel_db, tmp_path).items()
    }
    assert not any(found.values()), found
    assert any(name.startswith("csv/") for name in found) and any(name.startswith("jsonl/") for name in found)
    # what the page and the CLI are given (the events) carries no environment key either
    shown = repr([e for e in events])
    assert FAKE_OPENAI_KEY not in shown and FAKE_CUSTOM_KEY not in shown


async def test_a_key_echoed_in_a_provider_error_is_not_stored(key_stub, rel_db, tmp_path, monkeypatch, client_path):
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_OPENAI_KEY)
    monkeypatch.setenv(CUSTOM_KEY_ENV, FAKE_CUSTOM_KEY)
    a = AgentSpec(model="openai/gpt-4o-mini", label="a", api_base=key_stub.url, max_tokens=16)
    b = AgentSpec(
        model="openai/gpt-4o-mini", label="b", api_base=key_stub.url, max_tokens=16, api_key_env=CUSTOM_KEY_ENV
    )
    cfg = MoAConfig(name="echo", layers=[LayerSpec(proposers=[a, b])], aggregator=a, timeout=10, num_retries=0)
    assert {llm.client_for(x) for x in (a, b)} == {client_path}
    events = await record(rel_db, run_moa("q?", cfg))
    assert set(key_stub.seen) >= {FAKE_OPENAI_KEY, FAKE_CUSTOM_KEY}
    errors = [e.error for e in events if isinstance(e, DraftDone)]
    assert all(e and "Incorrect API key provided: ***" in e for e in errors), errors
    assert events[-1].status == "failed"
    found = {
        name: find_secrets(blob, [FAKE_OPENAI_KEY, FAKE_CUSTOM_KEY])
        for name, blob in store_bytes(rel_db, tmp_path).items()
    }
    assert not any(found.values()), found


@pytest.mark.parametrize("name", ["api_key", "API_KEY", "token", "password", "secret"])
def test_a_key_cannot_be_put_in_a_config(name):
    data = {
        "layers": [{"proposers": [{"model": "openai/x", "extra": {name: FAKE_OPENAI_KEY}}]}],
        "aggregator": {"model": "openai/x"},
    }
    with pytest.raises(ConfigError, match=rf"{name} may not be set in a config; put keys in the environment"):
        config_from_dict(data)


def test_server_binds_to_loopback_and_limits_uploads_by_default():
    conf = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert conf["server"]["address"] == "127.0.0.1"
    assert conf["server"]["maxUploadSize"] <= 2  # MB, every upload widget
    assert MAX_IMPORT_BYTES == 256 * 1024  # config imports, checked by the editor itself
    assert (
        not (ROOT / ".streamlit" / "secrets.toml").exists()
        or ".streamlit/secrets.toml" in (ROOT / ".gitignore").read_text()
    ), "a secrets file must never be committed"
