"""Config validation, presets, secrets and model discovery."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

from moa_core.config import (
    AgentSpec,
    ConfigError,
    list_presets,
    load_config,
    load_preset,
    parse_config_text,
    save_config,
)
from moa_core.prompts import aggregator_messages, render_template
from moa_core.providers import catalog, secrets

GOOD = """
name: t
layers:
  - proposers:
      - model: local/smollm2-135m
aggregator:
  model: local/qwen2.5-coder-0.5b
"""


def test_yaml_syntax_error_names_line():
    with pytest.raises(ConfigError, match=r"YAML syntax error at line 4, column 6"):
        parse_config_text("name: x\nlayers:\n  - proposers: [\n  bad", "yaml")


def test_json_syntax_error_names_line():
    with pytest.raises(ConfigError, match=r"JSON syntax error at line 2"):
        parse_config_text('{"name": "x",\n  "layers": [,]}', "json")


def test_schema_error_names_field():
    with pytest.raises(ConfigError, match=r"layers\.0\.proposers\.0\.temprature: unknown field"):
        parse_config_text(GOOD.replace("model: local/smollm2-135m", "model: local/smollm2-135m\n        temprature: 1"))
    with pytest.raises(ConfigError, match=r"aggregator: required field is missing"):
        parse_config_text("layers:\n  - proposers:\n      - model: a\n")


def test_out_of_range_temperature():
    with pytest.raises(ConfigError, match=r"layers\.0\.proposers\.0\.temperature: .*less than or equal to 2"):
        parse_config_text(
            GOOD.replace("model: local/smollm2-135m", "model: local/smollm2-135m\n        temperature: 7")
        )


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("x" * 61, "name: at most 60 characters (this one has 61)"),
        ("two\nlines", "name: control characters are not allowed (U+000A)"),
        ("bell\x07 and esc\x1b[31m", "name: control characters are not allowed (U+0007, U+001B)"),
        ("evil\u202eexe.txt", "name: control characters are not allowed (U+202E)"),
        ("zero\u200bwidth", "name: control characters are not allowed (U+200B)"),
    ],
)
def test_imported_config_names_are_checked_like_saved_names(name, why):
    """Length and characters, as for a saved config's name, in JSON and YAML alike."""
    data = {"name": name, "layers": [{"proposers": [{"model": "a"}]}], "aggregator": {"model": "b"}}
    with pytest.raises(ConfigError, match="^" + re.escape("invalid config: " + why) + "$"):
        parse_config_text(json.dumps(data), "json")
    with pytest.raises(ConfigError, match="^" + re.escape("invalid config: " + why) + "$"):
        parse_config_text(yaml.safe_dump(data), "yaml")


def test_a_config_name_may_hold_markdown_it_is_shown_as_text():
    name = "[cfg](data:text/html,x) `<b>` **b**"
    data = {"name": name, "layers": [{"proposers": [{"model": "a"}]}], "aggregator": {"model": "b"}}
    assert parse_config_text(json.dumps(data), "json").name == name
    assert parse_config_text(json.dumps({**data, "name": " " + "x" * 60 + " "}), "json").name == "x" * 60


def test_keys_are_refused_in_config():
    with pytest.raises(ConfigError, match="api_key may not be set"):
        parse_config_text(
            GOOD.replace("model: local/smollm2-135m", "model: local/smollm2-135m\n        extra: {api_key: sk-x}")
        )


def test_template_must_have_drafts_placeholder():
    with pytest.raises(ConfigError, match=r"aggregator_template: .*\{drafts\}"):
        parse_config_text(GOOD + "aggregator_template: no placeholder\n")


def test_not_a_mapping_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="mapping"):
        parse_config_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(bad)


def test_save_and_load_round_trip(tmp_path):
    cfg = parse_config_text(GOOD)
    for suffix in (".json", ".yaml"):
        path = save_config(cfg, tmp_path / f"c{suffix}")
        assert load_config(path) == cfg


def test_stable_hash_ignores_name_but_not_parameters():
    a = parse_config_text(GOOD)
    assert a.model_copy(update={"name": "other"}).stable_hash() == a.stable_hash()
    b = parse_config_text(GOOD.replace("local/qwen2.5-coder-0.5b", "local/smollm2-135m"))
    assert b.stable_hash() != a.stable_hash()


def test_bundled_presets_load():
    names = list_presets()
    assert {"local-moa", "moa-lite-local", "same-model-varied", "cloud-example"} <= set(names)
    assert len(load_preset("moa-lite-local").layers) == 2
    with pytest.raises(ConfigError, match="unknown preset"):
        load_preset("nope")


def test_cloud_preset_unavailable_without_keys(monkeypatch, tmp_path):
    for names, _ in catalog.PROVIDERS.values():
        for n in names:
            monkeypatch.delenv(n, raising=False)
    monkeypatch.setattr(catalog, "read_secret_names", lambda: {})
    problems = catalog.config_problems(load_preset("cloud-example"))
    assert any("OPENAI_API_KEY" in p for p in problems) and any("GROQ_API_KEY" in p for p in problems)
    monkeypatch.setenv("GROQ_API_KEY", "gsk-test")
    assert not any("GROQ_API_KEY" in p for p in catalog.config_problems(load_preset("cloud-example")))


def test_local_preset_available_here():
    if not catalog.local.available_local_models():
        pytest.skip("local models not installed")
    assert catalog.config_problems(load_preset("local-moa")) == []


def test_secrets_toml_copies_names_not_over_env(tmp_path, monkeypatch):
    f = tmp_path / "secrets.toml"
    f.write_text('OPENAI_API_KEY = "sk-from-file"\nGROQ_API_KEY = "gsk-file"\nother = "x"\n')
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    monkeypatch.delenv("GROQ_API_KEY", raising=False)
    copied = secrets.load_secrets_into_env(f)
    assert copied == ["GROQ_API_KEY"]
    import os

    assert os.environ["OPENAI_API_KEY"] == "sk-env" and os.environ["GROQ_API_KEY"] == "gsk-file"
    f.write_text("not = [toml")
    assert secrets.read_secret_names(f) == {}


def test_ollama_discovery(monkeypatch):
    class H(BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({"models": [{"name": "llama3.2:1b"}]}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{srv.server_address[1]}"
        assert [m.model for m in catalog.ollama_models(base)] == ["ollama_chat/llama3.2:1b"]
    finally:
        srv.shutdown()
    assert catalog.ollama_models("http://127.0.0.1:9") == []  # nothing listening: silently none


def test_discover_lists_servers_named_in_configs():
    cfg = parse_config_text(GOOD)
    cfg.layers[0].proposers.append(AgentSpec(model="openai/my-model", api_base="http://127.0.0.1:8000/v1"))
    found = {m.model: m for m in catalog.discover([cfg])}
    assert found["openai/my-model"].available and found["openai/my-model"].provider == "server"
    assert "local/qwen2.5-coder-0.5b" in found


def test_template_rendering_keeps_braces_and_numbers_drafts():
    out = render_template("Q={question}\n{drafts}", "what is {x}?", ["a {b}", "c"])
    assert out == "Q=what is {x}?\n[1] a {b}\n\n[2] c"
    msgs = aggregator_messages(
        "q", ["d1"], "{drafts}", [{"role": "user", "content": "h"}, {"role": "assistant", "content": "a"}], "be nice"
    )
    assert msgs[0]["role"] == "system" and msgs[0]["content"].startswith("be nice") and "[1] d1" in msgs[0]["content"]
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user"]
