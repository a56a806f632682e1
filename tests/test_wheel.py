"""The package as a user installs it: build the wheel, install it into a throw-away venv
(its dependencies borrowed from the test venv through a .pth line, so nothing is
downloaded), and run `moa` from a directory outside the checkout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Building and installing the wheel is part of each module's first test.
pytestmark = pytest.mark.timeout(600)

CONFIG = """
name: wheel-check
layers:
  - proposers:
      - {model: openai/mock-a, label: A, extra: {mock_response: "Blue light scatters more."}}
      - {model: openai/mock-b, label: B, extra: {mock_response: "Rayleigh scattering."}}
aggregator: {model: openai/mock-agg, label: final, extra: {mock_response: "Rayleigh scattering of blue light."}}
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("wheel")
    dist = tmp / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    wheel = next(dist.glob("moa_studio-*.whl"))
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    site = next((venv / "lib").glob("python3*/site-packages"))
    # Only the dependencies: .pth files inside that directory (our editable install) are not processed.
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--prefix", str(venv), str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    work = tmp / "elsewhere"
    work.mkdir()
    return {"wheel": wheel, "python": venv / "bin" / "python", "work": work, "home": tmp / "home"}


def moa(installed: dict[str, Path], *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MOA_", "DATABASE_URL", "PYTHON"))}
    env.update(HOME=str(installed["home"]), XDG_DATA_HOME="", XDG_CACHE_HOME="")
    # Model weights: the user's cache is the test machine's, so the assembled Qwen is reused.
    env["MOA_MODEL_CACHE"] = str(Path.home() / ".cache" / "moa-studio" / "models")
    return subprocess.run(
        [str(installed["python"]), "-m", "moa_core.cli", *args],
        cwd=installed["work"],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_wheel_ships_presets_questions_and_migrations(installed: dict[str, Path]) -> None:
    names = zipfile.ZipFile(installed["wheel"]).namelist()
    assert "moa_core/resources/presets/local-moa.yaml" in names
    assert "moa_core/resources/questions/moa-studio-30.jsonl" in names
    assert "moa_core/store/migrations/script.py.mako" in names
    assert any(n.startswith("moa_core/store/migrations/versions/0001") for n in names)
    assert not any(n.startswith(("tests/", "benchmarks/", "pages/", "data/")) for n in names)


def test_installed_package_is_not_the_checkout(installed: dict[str, Path]) -> None:
    out = subprocess.run(
        [
            str(installed["python"]),
            "-c",
            "import moa_core, moa_core.settings as s; print(moa_core.__file__, s.checkout_root(), s.current().data_dir)",
        ],
        cwd=installed["work"],
        env={"HOME": str(installed["home"]), "PATH": os.environ.get("PATH", "")},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert not out[0].startswith(str(ROOT)) and out[1] == "None"
    assert out[2] == str(installed["home"] / ".local" / "share" / "moa-studio")


def test_moa_models_from_the_wheel(installed: dict[str, Path]) -> None:
    out = moa(installed, "models")
    assert out.returncode == 0, out.stderr
    assert "local/smollm2-135m" in out.stdout


def test_moa_ask_no_save_json_from_stdin(installed: dict[str, Path]) -> None:
    cfg = installed["work"] / "mock.yaml"
    cfg.write_text(CONFIG)
    out = moa(installed, "ask", "-", "--config", "mock.yaml", "--no-save", "--json", stdin="Why is the sky blue?\n")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["status"] == "done" and doc["final_text"] == "Rayleigh scattering of blue light."
    assert doc["question"] == "Why is the sky blue?\n"
    # calls are listed as they finish, so in either order
    assert sorted(c["label"] for c in doc["calls"] if c["role"] == "proposer") == ["A", "B"]
    assert all(c["ok"] for c in doc["calls"])
    # --no-save: no database was created in the per-user data directory
    assert not (installed["home"] / ".local" / "share" / "moa-studio" / "moa.db").exists()
