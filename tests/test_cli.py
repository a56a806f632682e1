"""The `moa` command line: listing models, input errors (exit 2, one line), real runs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from moa_core import cli
from moa_core.events import DraftDone
from moa_core.providers import local
from tests.conftest import requires_local

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def wide_console(monkeypatch):
    # rich wraps at 80 columns when not on a terminal; wide output keeps names and texts on one line
    monkeypatch.setenv("COLUMNS", "240")
    monkeypatch.delenv("OLLAMA_API_BASE", raising=False)


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def words(text: str) -> list[str]:
    return re.findall(r"[A-Za-z]{3,}", text)


def contains_run(haystack: list[str], needle: list[str]) -> bool:
    n = len(needle)
    return any(haystack[i : i + n] == needle for i in range(len(haystack) - n + 1))


def test_models_lists_the_local_models(capsys):
    code, out, _ = run_cli(capsys, "models")
    assert code == 0
    available = {s.name for s in local.available_local_models()}
    for spec in local.LOCAL_MODELS.values():
        line = next((ln for ln in out.splitlines() if spec.litellm_model in ln), None)
        assert line is not None, f"{spec.litellm_model} missing from:\n{out}"
        assert ("yes" if spec.name in available else "no") in line


def test_models_available_only_hides_unusable(capsys, monkeypatch):
    for var in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GROQ_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr("moa_core.providers.catalog.read_secret_names", lambda: {})
    code, out, _ = run_cli(capsys, "models", "--available")
    assert code == 0
    assert "openai/gpt-4o-mini" not in out
    for spec in local.available_local_models():
        assert spec.litellm_model in out


def test_ask_with_unknown_preset_exits_2_with_one_line(capsys):
    code, _out, err = run_cli(capsys, "ask", "Why is the sky blue?", "--preset", "no-such-preset", "--no-save")
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("moa: "), err
    assert "unknown preset 'no-such-preset'" in err and "local-moa" in err  # names the known ones


def test_ask_exit_code_through_the_real_entry_point():
    proc = subprocess.run(
        [sys.executable, "-m", "moa_core.cli", "ask", "q", "--preset", "no-such-preset", "--no-save"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and "unknown preset" in proc.stderr


def fake_config_file(path: Path, server, proposers: int = 2, **agg_opts: object) -> Path:
    def model(name: str, **opts: object) -> dict:
        suffix = ",".join(f"{k}={v}" for k, v in opts.items())
        return {
            "model": f"openai/fake-{name}" + (f"@{suffix}" if suffix else ""),
            "api_base": server.url,
            "label": name,
            "max_tokens": 32,
        }

    cfg = {
        "name": "cli-fake",
        "layers": [{"proposers": [model(f"cli-p{i}", tokens=4) for i in range(proposers)]}],
        "aggregator": model("cli-agg", **agg_opts),
        "timeout": 10,
        "num_retries": 0,
    }
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


def test_ask_empty_question_exits_2(capsys, tmp_path, fake_server):
    cfg = fake_config_file(tmp_path / "fake.yaml", fake_server)
    before = len(fake_server.requests)
    code, _, err = run_cli(capsys, "ask", "", "--config", str(cfg), "--no-save")
    assert code == 2
    assert err.count("\n") == 1 and "empty" in err, err
    assert len(fake_server.requests) == before, "no call should be made"


def test_ask_empty_question_with_the_default_preset_exits_2(capsys):
    code, _, err = run_cli(capsys, "ask", "   ", "--no-save")
    assert code == 2 and err.count("\n") == 1, err


def test_ask_yaml_syntax_error_names_the_line(capsys, tmp_path):
    bad = tmp_path / "broken.yaml"
    bad.write_text(
        "name: broken\nlayers:\n  - proposers:\n      - model: openai/x\n     label: misplaced\n"
        "aggregator:\n  model: openai/y\n",
        encoding="utf-8",
    )
    code, _, err = run_cli(capsys, "ask", "Why is the sky blue?", "--config", str(bad), "--no-save")
    assert code == 2
    assert err.count("\n") == 1, err
    assert "YAML syntax error" in err and "line 5" in err, err


def test_ask_invalid_config_exits_2_naming_the_field(capsys, tmp_path):
    bad = tmp_path / "invalid.yaml"
    bad.write_text(
        "layers:\n  - proposers:\n      - model: openai/x\n        temprature: 0.3\naggregator:\n  model: openai/y\n"
    )
    code, _, err = run_cli(capsys, "ask", "q", "--config", str(bad), "--no-save")
    assert code == 2 and err.count("\n") == 1 and "temprature" in err and "unknown field" in err, err


def test_ask_missing_config_file_exits_2(capsys, tmp_path):
    code, _, err = run_cli(capsys, "ask", "q", "--config", str(tmp_path / "nope.yaml"), "--no-save")
    assert code == 2 and "not found" in err and err.count("\n") == 1


def test_ask_with_fake_server_prints_the_final_answer(capsys, tmp_path, fake_server):
    cfg = fake_config_file(tmp_path / "fake.yaml", fake_server, tokens=6)
    code, out, err = run_cli(capsys, "ask", "Why is the sky blue?", "--config", str(cfg), "--no-save")
    assert code == 0, err
    # the fake server's answer: m<messages>d<drafts> w1 w2 ...; the aggregator saw 2 drafts
    assert "m2d2 w1 w2 w3 w4 w5" in out, out
    assert "cli-p0" in out and "cli-p1" in out and "cli-agg" in out
    assert re.search(r"run \w{8} done: 3 calls", out), out


def test_ask_failing_aggregator_exits_1(capsys, tmp_path, fake_server):
    cfg = fake_config_file(tmp_path / "fake.yaml", fake_server, fail=500)
    code, out, _ = run_cli(capsys, "ask", "Why is the sky blue?", "--config", str(cfg), "--no-save")
    assert code == 1
    assert "aggregator" in out and "failed" in out


@pytest.mark.local_models
@requires_local
def test_ask_with_local_models_shows_every_draft(capsys, tmp_path, monkeypatch):
    models = ["local/qwen2.5-coder-0.5b", "local/smollm2-135m", "local/gemma3-270m"]
    cfg = {
        "name": "cli-local",
        "layers": [
            {
                "proposers": [
                    {"model": m, "label": f"draft-{i}", "temperature": 0.0, "max_tokens": 16}
                    for i, m in enumerate(models)
                ]
            }
        ],
        "aggregator": {"model": "local/smollm2-135m", "label": "final-agg", "temperature": 0.0, "max_tokens": 16},
        "timeout": 120,
        "num_retries": 0,
    }
    path = tmp_path / "local.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")

    seen: list[DraftDone] = []
    real_run_moa = cli.run_moa

    async def recording_run_moa(*args, **kwargs):
        async for ev in real_run_moa(*args, **kwargs):
            if isinstance(ev, DraftDone):
                seen.append(ev)
            yield ev

    monkeypatch.setattr(cli, "run_moa", recording_run_moa)
    code, out, err = run_cli(capsys, "ask", "Why is the sky blue?", "--config", str(path), "--no-save")
    assert code == 0, err + out
    assert len(seen) == 4 and all(d.ok for d in seen), [(d.ref.name, d.error) for d in seen]
    out_words = words(out)
    for d in seen:
        label = d.ref.name
        assert re.search(rf"(proposer|aggregator) · {label}", out), f"no panel for {label}"
        # the panel shows the draft (rendered as Markdown, so compare the words, not the bytes)
        first = words(d.text)[:4]
        if first:
            assert contains_run(out_words, first), f"{label}: {first} not in output"
    assert re.search(r"run \w{8} done: 4 calls", out), out
