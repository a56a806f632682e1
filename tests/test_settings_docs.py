"""Every environment variable and `.streamlit/secrets.toml` key the code reads is in a
settings table, and every documented one is read: README.md's "Settings" table for the
app, tests/README.md's for the test suite and benchmarks."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from moa_core.providers import catalog, secrets

ROOT = Path(__file__).resolve().parent.parent
APP_CODE = [*sorted((ROOT / "moa_core").rglob("*.py")), *sorted((ROOT / "pages").glob("*.py")), ROOT / "app.py"]
TEST_CODE = [*sorted((ROOT / "tests").rglob("*.py")), *sorted((ROOT / "benchmarks").glob("*.py"))]
# Variables other programs define and the code only passes on or sets for its children.
NOT_SETTINGS = {"PYTHONUNBUFFERED", "PATH", "HOME"}


def _is_environ(node: ast.AST) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "environ"


def env_names(paths: list[Path]) -> dict[str, str]:
    """Names read from the environment as string literals -> first file that reads it:
    os.environ.get/setdefault/pop(...), os.getenv(...), os.environ[...], "X" in os.environ."""
    found: dict[str, str] = {}
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            name = None
            if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
                f = node.func
                if (
                    isinstance(f, ast.Attribute) and _is_environ(f.value) and f.attr in ("get", "setdefault", "pop")
                ) or (isinstance(f, ast.Attribute) and f.attr == "getenv"):
                    name = node.args[0].value
            elif isinstance(node, ast.Subscript) and _is_environ(node.value) and isinstance(node.slice, ast.Constant):
                name = node.slice.value
            elif (
                isinstance(node, ast.Compare)
                and isinstance(node.left, ast.Constant)
                and any(_is_environ(c) for c in node.comparators)
            ):
                name = node.left.value
            if isinstance(name, str) and name not in NOT_SETTINGS:
                found.setdefault(name, str(path.relative_to(ROOT)))
    return found


def documented(markdown: Path, heading: str) -> set[str]:
    """First-column `NAME`s of the table under `## heading` (up to the next `## `)."""
    text = markdown.read_text(encoding="utf-8")
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    section = text[start : end if end != -1 else None]
    return set(re.findall(r"^\|\s*`([A-Za-z_<][A-Za-z0-9_*<>]*)`", section, re.M))


def app_env_names() -> dict[str, str]:
    """Literal reads, plus the provider keys catalog.py looks up by name from its table."""
    read = env_names(APP_CODE)
    for names, _models in catalog.PROVIDERS.values():
        read.update({n: "moa_core/providers/catalog.py" for n in names if n not in read})
    return read


def test_every_app_setting_is_documented_and_every_documented_one_is_read() -> None:
    read = app_env_names()
    docs = documented(ROOT / "README.md", "Settings")
    env_docs = {d for d in docs if "<" not in d}
    missing = {n: where for n, where in read.items() if n not in env_docs}
    assert not missing, f"read by the code but not in README.md's Settings table: {missing}"
    stale = env_docs - set(read)
    assert not stale, f"in README.md's Settings table but read nowhere: {stale}"


def test_secrets_toml_keys_are_documented() -> None:
    """secrets.toml: provider settings are copied by suffix; the table names each pattern."""
    docs = documented(ROOT / "README.md", "Settings")
    patterns = {d for d in docs if d.startswith("<PROVIDER>")}
    assert patterns == {f"<PROVIDER>{suffix}" for suffix in secrets._SUFFIXES}, patterns


def test_every_test_setting_is_documented_and_read() -> None:
    app = set(app_env_names())
    read = {n: w for n, w in env_names(TEST_CODE).items() if n not in app}
    docs = documented(ROOT / "tests" / "README.md", "Settings")
    missing = {n: where for n, where in read.items() if n not in docs}
    assert not missing, f"read by tests/benchmarks but not in tests/README.md's Settings table: {missing}"
    stale = docs - set(read)
    assert not stale, f"in tests/README.md's Settings table but read nowhere: {stale}"


def test_the_scanner_finds_each_way_of_reading(tmp_path: Path) -> None:
    code = tmp_path / "m.py"
    code.write_text(
        "import os\nos.environ.get('A')\nos.getenv('B')\nos.environ['C']\nos.environ.setdefault('D', '1')\n"
        "'E' in os.environ\nos.environ.pop('F', None)\n"
    )
    global ROOT
    old, ROOT = ROOT, tmp_path
    try:
        assert set(env_names([code])) == set("ABCDEF")
    finally:
        ROOT = old


def test_a_bad_setting_is_one_line_and_exit_2_in_the_cli(monkeypatch) -> None:
    import subprocess
    import sys

    env = {**__import__("os").environ, "MOA_LOCAL_POOL_SIZE": "lots"}
    out = subprocess.run(
        [sys.executable, "-m", "moa_core.cli", "ask", "q", "--no-save"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2, out.stderr
    assert out.stderr == "moa: MOA_LOCAL_POOL_SIZE must be a positive whole number, got 'lots'\n"


def test_a_bad_setting_is_one_message_on_a_page(monkeypatch, tmp_path) -> None:
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("MOA_RUN_LEASE_SECONDS", "soon")
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'x.db'}")
    at = AppTest.from_file(str(ROOT / "pages" / "6_History.py"), default_timeout=60).run()
    assert not at.exception
    from moa_core.ui.safe_text import md_escape

    message = "MOA_RUN_LEASE_SECONDS must be a number of seconds, at least 1; got 'soon'"
    assert [e.value for e in at.error] == [f"A setting cannot be used: {md_escape(message)}"]
