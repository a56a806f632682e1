"""Browser tests: the real app served by `streamlit run` on a free port, Debian's chromium.

Fixtures (registered as a pytest plugin from conftest):
  app_server  -> AppServer(url, db_url, db_path): one app per test module, own SQLite file
  browser     -> a Playwright Browser on /usr/bin/chromium (session scope)
  page        -> a fresh page (new context) per test, 1400x1000
Helpers: ask(page, question), wait_run_done(page), new_app(tmp_path, env) for extra servers.
Every test (autouse) fails when the log of an app started here gained a traceback while it
ran: nothing may be raised in the background, not even after a Stop or a vote.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("MOA_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
RUN_TIMEOUT_MS = 240_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class AppServer:
    url: str
    db_url: str
    db_path: Path
    proc: subprocess.Popen
    log: Path
    checked: int = field(default=0, repr=False)  # how much of the log the traceback check has read
    stopped: bool = field(default=False, repr=False)
    unreported: str = field(default="", repr=False)  # a traceback read by stop(), for the check

    def stop(self) -> None:
        # What it logged up to now is checked; what it prints while shutting down is not.
        self.unreported, self.stopped = self.new_traceback(), True
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def new_traceback(self) -> str:
        """The log written since the last call, from a traceback on ("" when it has none)."""
        text = self.log_text()
        lines, self.checked = text[self.checked :].splitlines(), len(text)
        at = next((i for i, line in enumerate(lines) if "Traceback" in line), None)
        return "" if at is None else "\n".join(lines[max(0, at - 1) : at + 40])


_STARTED: list[AppServer] = []


def start_app(workdir: Path, env: dict[str, str] | None = None, db_url: str | None = None) -> AppServer:
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    db_path = workdir / "moa.db"
    db_url = db_url or f"sqlite:///{db_path}"
    log = workdir / f"streamlit-{port}.log"
    full_env = {
        **os.environ,
        "DATABASE_URL": db_url,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "HF_HUB_OFFLINE": "1",
        "MOA_SAVED_CONFIGS_DIR": str(workdir / "configs"),
        **(env or {}),
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            str(ROOT / "app.py"),
            "--server.port",
            str(port),
            "--server.headless",
            "true",
            "--server.fileWatcherType",
            "none",
            "--browser.gatherUsageStats",
            "false",
        ],
        cwd=ROOT,
        env=full_env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited early:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=1) as r:
                if r.status == 200:
                    server = AppServer(url, db_url, db_path, proc, log)
                    _STARTED.append(server)
                    return server
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError(f"streamlit did not start on {url}:\n{log.read_text()}")


def _chromium_missing() -> bool:
    return not (Path(CHROMIUM).exists() or shutil.which("chromium"))


@pytest.fixture(autouse=True)
def no_traceback_in_app_logs():
    """Fails the test when an app server's log gained a traceback during it (its start-up
    output counts towards the first test that uses it; a module's server stopped after its
    last test is reported by the next one, naming its log)."""
    yield
    found = []
    for s in _STARTED:
        tb = s.unreported or ("" if s.stopped else s.new_traceback())
        s.unreported = ""
        if tb:
            found.append(f"{s.log}:\n{tb}")
    if found:
        pytest.fail("the app logged a traceback:\n" + "\n\n".join(found), pytrace=False)


@pytest.fixture(scope="module")
def app_server(tmp_path_factory):
    server = start_app(tmp_path_factory.mktemp("app"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def browser():
    if _chromium_missing():
        pytest.skip("Debian chromium is not installed (make test installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = ctx.new_page()
    pg.set_default_timeout(60_000)
    yield pg
    ctx.close()


def open_app(page, server: AppServer, path: str = "/") -> None:
    page.goto(server.url + path)
    page.get_by_test_id("stApp").wait_for()
    page.wait_for_selector("[data-testid='stAppViewContainer']")
    wait_idle(page)


# Settled = the script is not running, no status widget, and its run state has not changed
# for QUIET_MS since the later of the call and the last change. A MutationObserver keeps the
# time of the last change, so the wait ends as soon as the app has settled, not after a
# fixed sleep; the quiet window covers the gap between a click and the rerun it starts.
QUIET_MS = 250
IDLE_JS = """([since, quiet]) => {
  const app = document.querySelector('[data-testid="stApp"]');
  if (!app) return false;
  let w = window.__moaIdle;
  if (!w || w.app !== app) {
    w = window.__moaIdle = {app, last: performance.now(), state: app.getAttribute('data-test-script-state')};
    new MutationObserver(() => {
      const s = app.getAttribute('data-test-script-state');
      if (s !== w.state) { w.state = s; w.last = performance.now(); }
    }).observe(app, {attributes: true, attributeFilter: ['data-test-script-state']});
  }
  return w.state === 'notRunning' && !document.querySelector('[data-testid="stStatusWidget"]')
      && performance.now() - Math.max(w.last, since) >= quiet;
}"""


def wait_idle(page, timeout: float = 60_000) -> None:
    """Until the script has finished its run and stayed finished for QUIET_MS (see IDLE_JS)."""
    since = page.evaluate("performance.now()")
    page.wait_for_function(IDLE_JS, arg=[since, QUIET_MS], timeout=timeout, polling=50)


def ask(page, question: str) -> None:
    box = page.get_by_test_id("stChatInputTextArea")
    box.fill(question)
    box.press("Enter")


def wait_run_done(page, timeout: int = RUN_TIMEOUT_MS) -> None:
    page.get_by_text("link to this run").last.wait_for(timeout=timeout)
    wait_idle(page)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On a failed browser test, keep a screenshot in test-artifacts/ for the CI log reader."""
    outcome = yield
    report = outcome.get_result()
    pg = item.funcargs.get("page") if hasattr(item, "funcargs") else None
    if report.when == "call" and report.failed and pg is not None:
        out = ROOT / "test-artifacts"
        out.mkdir(exist_ok=True)
        with contextlib.suppress(Exception):
            pg.screenshot(path=str(out / f"{item.name}.png"), full_page=True)
