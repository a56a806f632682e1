"""The repository's own standards, checked on every `make test`: ruff (lint + format),
mypy over moa_core, the import layering (import-linter, contracts in pyproject.toml), and
pages that stay thin. Each check shells out to the tool CI would run, so a failure here
reads exactly like the tool's own output."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    path = BIN / name
    if not path.exists():
        found = shutil.which(name)
        if found is None:
            pytest.fail(f"{name} is not installed: `make install-test` installs it")
        return found
    return str(path)


def run(*argv: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=850)


def test_ruff_lint() -> None:
    out = run(tool("ruff"), "check", ".")
    assert out.returncode == 0, out.stdout + out.stderr


def test_ruff_format() -> None:
    out = run(tool("ruff"), "format", "--check", ".")
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.timeout(900)  # a fresh clone has no mypy cache: the first run checks every stub
def test_mypy_moa_core() -> None:
    out = run(tool("mypy"), "moa_core")
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr


def test_import_layers() -> None:
    out = run(tool("lint-imports"))
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr


PAGE_IMPORTS = ("moa_core.ui", "streamlit", "__future__")


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
    return names


def test_pages_are_thin() -> None:
    """pages/*.py and app.py import only moa_core.ui (and streamlit); `import moa_core`
    alone is allowed in app.py, for the package's offline settings."""
    bad = []
    for path in [*sorted((ROOT / "pages").glob("*.py")), ROOT / "app.py"]:
        for name in _imports(path):
            if name == "moa_core" and path.name == "app.py":
                continue
            if not any(name == p or name.startswith(p + ".") for p in PAGE_IMPORTS):
                bad.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not bad, bad


# ---- the checks catch what they claim to (each on a throw-away copy of one rule's input)


def test_layering_check_catches_an_upward_import(tmp_path: Path) -> None:
    pkg = tmp_path / "moa_core"
    shutil.copytree(ROOT / "moa_core", pkg, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    config = pkg / "config.py"
    config.write_text(config.read_text() + "\nfrom moa_core import engine  # an upward import\n")
    out = run(tool("lint-imports"), cwd=tmp_path)
    assert out.returncode != 0 and "moa_core.config is not allowed to import moa_core.engine" in out.stdout


def test_streamlit_check_catches_streamlit_below_ui(tmp_path: Path) -> None:
    pkg = tmp_path / "moa_core"
    shutil.copytree(ROOT / "moa_core", pkg, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    (pkg / "engine.py").write_text((pkg / "engine.py").read_text() + "\nimport streamlit\n")
    out = run(tool("lint-imports"), cwd=tmp_path)
    assert out.returncode != 0 and "moa_core.engine is not allowed to import streamlit" in out.stdout


@pytest.mark.timeout(600)
def test_mypy_and_ruff_catch_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        textwrap.dedent(
            """
            import os
            def f(x: int) -> str:
                return x
            """
        )
    )
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    assert run(tool("ruff"), "check", "bad.py", cwd=tmp_path).returncode != 0  # unused import
    assert run(tool("ruff"), "format", "--check", "bad.py", cwd=tmp_path).returncode != 0
    out = run(tool("mypy"), "bad.py", cwd=tmp_path)
    assert out.returncode != 0 and "Incompatible return value type" in out.stdout


def test_readme_layers_match_the_contract() -> None:
    import re
    import tomllib

    contract = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"][0]
    layers = [sorted(m.strip().removeprefix("moa_core.") for m in layer.split(":")) for layer in contract["layers"]]
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme[readme.index("<!-- layers -->") : readme.index("<!-- /layers -->")]
    listed = [sorted(re.findall(r"`([a-z_]+)`", line)) for line in block.splitlines() if re.match(r"\d+\.", line)]
    assert listed == layers


def test_every_type_ignore_names_its_code_and_says_why() -> None:
    import re

    bare = []
    for path in sorted((ROOT / "moa_core").rglob("*.py")):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if "type: ignore" in line and not re.search(r"# type: ignore\[[a-z-, ]+\]\s+#\s*\S", line):
                bare.append(f"{path.relative_to(ROOT)}:{n}")
    assert not bare, bare
