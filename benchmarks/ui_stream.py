"""Playground in a real browser against the engine alone: first token on screen, wall time.

Run from the repo root: .venv/bin/python benchmarks/ui_stream.py [--configs fake,local] [--repeats 3]

For each config it starts the app (`streamlit run`, its own SQLite file, see
tests/browser_support.start_app), opens it in Debian's chromium (never a Playwright
browser download), imports the config through the sidebar uploader and asks a question
in a fresh browser session per repeat. A MutationObserver in the page stamps, per column
title, `Date.now()` (the same wall clock as Python's `time.time()` on this machine) when
the column first shows "thinking…", first shows model output (the text or the "▌"
streaming cursor), and first shows the finished text; and when "link to this run"
appears (the run is rendered from the database after the run's own rerun). The
submit time is Python's `time.time()` just before Enter is pressed in the chat input.

After each browser run the app's database gives every call's `started_at` and `ttft`
(seconds after started_at, as the engine measured them in the app process):

  * UI delay  = visible first token - (started_at + ttft): engine has the token -> screen;
  * submit->visible vs TTFT: what the issue's target is about, for the calls that start
    with the run (first-layer proposers, baselines): submit->visible <= TTFT + 0.3 s.
    A later call (the aggregator) cannot show a token before the drafts are done, so
    for it the target is read as UI delay <= 0.3 s.

The same config then runs through the engine alone in this process,
`asyncio.run(collect(run_moa(...)))`, alternating with the browser runs so that the
load of other work on the machine falls on both alike; target: browser wall time
(submit -> "link to this run" visible) <= 1.05 x engine-alone wall time.

Configs:
  fake         tests/fake_openai.FakeOpenAI in a child process, fixed TTFT and token
               pace per model: isolates the UI's overhead from model-speed noise.
  local        moa_core/resources/presets/local-moa.yaml with the preset's own settings (bundled
               llama.cpp models; sampling varies, so token counts differ run to run).
  local-greedy the same preset at temperature 0, so browser and engine runs generate
               the same tokens and wall times compare like for like.

A warm-up run of each kind (browser and engine) comes first and is not counted.

Diagnosis (on by default, --no-trace turns it off): a sitecustomize.py written to a temp
dir and put on the app's PYTHONPATH stamps where the app's script thread spends the run
(page script start, stream_run returned, asyncio.run returned, st.rerun, render_run,
Streamlit's post-script gc.collect, each column's first flush); an init script in the
page stamps websocket messages, long tasks and lazily loaded JS chunks. Together they
split the browser's wall time into steps (the "Where the browser's wall time goes"
table). --app-env NAME=VALUE tries a Streamlit option without touching the project
(e.g. STREAMLIT_RUNNER_POST_SCRIPT_GC=false; with the trace on, MOA_UI_BENCH_FLUSH_SECONDS=0.25
sets moa_core.ui.streaming.FLUSH_SECONDS in the app process); --reuse-session keeps one browser session
per config, so the page has the app's JS chunks cached (a returning user).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from moa_core.config import MoAConfig, config_from_dict  # noqa: E402
from moa_core.engine import collect, run_moa  # noqa: E402
from moa_core.events import DraftDone, RunDone  # noqa: E402
from tests.browser_support import start_app  # noqa: E402

CHROMIUM = os.environ.get("MOA_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
QUESTION = "Why is the sky blue? Answer in two sentences."
FIRST_TOKEN_SLACK = 0.3  # s: first token <= TTFT + 0.3 s
WALL_RATIO = 1.05  # browser wall <= 1.05 x engine alone
RUN_TIMEOUT_MS = 300_000

# Stamps, per column title, when the column first shows "thinking…", model output, the final
# text (no cursor); and when "link to this run" appears and then the script goes idle.
WATCH_JS = r"""(titles) => {
  const now = () => Date.now() / 1000;
  const S = window.__ui = {thinking: {}, first: {}, final: {}, firstText: {}, link: null, idle: null,
                           keydown: null, mutations: 0, states: [], longtasks: [],
                           resources: []};
  try {
    new PerformanceObserver(list => { for (const e of list.getEntries())
      S.longtasks.push([(performance.timeOrigin + e.startTime) / 1000, e.duration / 1000]); })
      .observe({type: 'longtask'});
    new PerformanceObserver(list => { for (const e of list.getEntries())
      S.resources.push([(performance.timeOrigin + e.startTime) / 1000,
                        (performance.timeOrigin + e.responseEnd) / 1000, e.name.split('/').pop()]); })
      .observe({type: 'resource'});
  } catch (e) {}
  if (window.__ws) window.__ws.link = null;
  const app = document.querySelector('[data-testid="stApp"]');
  const PLACE = new Set(['', 'waiting…', 'thinking…']);
  document.addEventListener('keydown', e => { if (e.key === 'Enter' && S.keydown === null) S.keydown = now(); }, true);
  const scan = () => {
    const t = now();
    S.mutations++;
    if (S.domAfterLinkMsg === undefined && window.__ws && window.__ws.link !== null) S.domAfterLinkMsg = t;
    const state = app.getAttribute('data-test-script-state');
    if (!S.states.length || S.states[S.states.length - 1][1] !== state) S.states.push([t, state]);
    const main = document.querySelector('[data-testid="stMainBlockContainer"]');
    if (!main) return;
    for (const col of main.querySelectorAll('[data-testid="stColumn"]')) {
      const strong = col.querySelector('strong');
      if (!strong) continue;
      const title = strong.textContent.trim();
      if (!titles.includes(title)) continue;
      const all = col.textContent;
      const i = all.indexOf(strong.textContent);
      const rest = (all.slice(0, i) + all.slice(i + strong.textContent.length)).trim();
      if (rest === 'thinking…' && !(title in S.thinking)) S.thinking[title] = t;
      if (PLACE.has(rest)) continue;
      if (!(title in S.first)) S.first[title] = t;
      if (!(title in S.firstText) && rest.replace('▌', '').trim()) S.firstText[title] = t;
      if (!(title in S.final) && !rest.includes('▌')) S.final[title] = t;
    }
    if (S.link === null && main.textContent.includes('link to this run')) S.link = t;
    if (S.link !== null && S.idle === null && state === 'notRunning') S.idle = t;
  };
  if (window.__uiObserver) window.__uiObserver.disconnect();
  window.__uiObserver = new MutationObserver(scan);
  window.__uiObserver.observe(document.body, {subtree: true, childList: true, characterData: true,
                                              attributes: true, attributeFilter: ['data-test-script-state']});
  scan();
}"""


# Loaded into the app's process only (a sitecustomize.py on its PYTHONPATH, written to a temp
# dir): stamps with time.time() where the script thread spends the run, one JSON line each.
# The wrappers add a few microseconds per stamp; nothing in the project changes.
TRACE_SITECUSTOMIZE = r"""
import json, os, sys, time
sys.path.insert(0, os.environ["MOA_UI_TRACE_ROOT"])
_out = open(os.environ["MOA_UI_TRACE"], "a", buffering=1)

def _stamp(what, **kw):
    _out.write(json.dumps({"t": time.time(), "what": what, **kw}) + "\n")

import streamlit as st
import moa_core.ui.playground as pg
import moa_core.ui.streaming as stream

if os.environ.get("MOA_UI_BENCH_FLUSH_SECONDS"):  # experiment: another screen-update interval
    stream.FLUSH_SECONDS = float(os.environ["MOA_UI_BENCH_FLUSH_SECONDS"])

def _wrap(mod, name):
    fn = getattr(mod, name)
    def wrapper(*a, **kw):
        _stamp(name + ":start")
        try:
            return fn(*a, **kw)
        finally:
            _stamp(name + ":end")
    setattr(mod, name, wrapper)

for _name in ("playground_page", "config_sidebar", "render_run", "_refresh_turn", "config_summary", "run_async"):
    _wrap(pg, _name)

_stream_run = pg.stream_run
async def _traced_stream_run(*a, **kw):
    try:
        return await _stream_run(*a, **kw)
    finally:
        _stamp("stream_run:returned")
pg.stream_run = _traced_stream_run

_rerun = st.rerun
def _traced_rerun(*a, **kw):
    _stamp("st.rerun")
    return _rerun(*a, **kw)
st.rerun = _traced_rerun

_flush = stream.LiveColumn.flush
def _traced_flush(self, final=False):
    if not self.flushes or final:
        _stamp("flush", title=self.title, final=final)
    return _flush(self, final)
stream.LiveColumn.flush = _traced_flush

import gc
_collect = gc.collect
def _traced_collect(*a, **kw):
    _stamp("gc.collect:start")
    try:
        return _collect(*a, **kw)
    finally:
        _stamp("gc.collect:end")
gc.collect = _traced_collect
"""


# Installed before the app's own code (an init script): stamps every websocket message that
# reaches the page, and the first one that carries "link to this run" (the rerun's render).
WS_JS = r"""(() => {
  const Orig = window.WebSocket;
  const dec = new TextDecoder();
  window.__ws = {n: 0, last: null, link: null};
  function Wrapped(...args) {
    const ws = new Orig(...args);
    ws.addEventListener('message', e => {
      const t = Date.now() / 1000;
      window.__ws.n++; window.__ws.last = t;
      if (window.__ws.link === null && window.__ui && e.data instanceof ArrayBuffer
          && dec.decode(e.data).includes('link to this run')) window.__ws.link = t;
    });
    return ws;
  }
  Wrapped.prototype = Orig.prototype;
  Object.assign(Wrapped, {CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3});
  window.WebSocket = Wrapped;
})()"""


# -- configs -----------------------------------------------------------------------------


def fake_config(server_url: str) -> dict[str, Any]:
    """Different TTFTs per column, so each column's first token is timed on its own."""

    def agent(name: str, label: str, ttft: float, tokens: int = 40, delay: float = 0.02) -> dict[str, Any]:
        return {
            "model": f"openai/fake-{name}@tokens={tokens},delay={delay},ttft={ttft}",
            "label": label,
            "api_base": server_url,
            "max_tokens": 256,
            "temperature": 0.0,
        }

    return {
        "name": "ui-bench-fake",
        "layers": [{"proposers": [agent("a", "Fake A", 0.3), agent("b", "Fake B", 0.5), agent("c", "Fake C", 0.8)]}],
        "aggregator": agent("agg", "Fake agg", 0.3, tokens=60),
        "baselines": [agent("solo", "Fake solo", 0.2)],
        "timeout": 30,
        "num_retries": 0,
    }


def local_config(greedy: bool) -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "moa_core" / "resources" / "presets" / "local-moa.yaml").read_text())
    if greedy:
        data["name"] = "local-moa-greedy"
        for a in [
            *(p for layer in data["layers"] for p in layer["proposers"]),
            data["aggregator"],
            *data.get("baselines", []),
        ]:
            a["temperature"] = 0.0
    return data


def titles_of(config: MoAConfig) -> list[str]:
    titles = [a.display_name for layer in config.layers for a in layer.proposers]
    titles.append(f"MoA · {config.aggregator.display_name}")
    titles += [f"Alone · {b.display_name}" for b in config.baselines]
    return titles


def title_of_gen(role: str, label: str) -> str:
    return {"aggregator": f"MoA · {label}", "baseline": f"Alone · {label}"}.get(role, label)


class ChildFakeServer:
    """FakeOpenAI in its own process: its threads compete neither with the app nor with the
    in-process engine run for a GIL (a real provider does not share either interpreter)."""

    def __init__(self) -> None:
        code = (
            "import sys\nfrom tests.fake_openai import FakeOpenAI\n"
            "s = FakeOpenAI().__enter__()\nprint(s.url, flush=True)\nsys.stdin.read()\n"
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=10)


# -- one browser run, one engine run -----------------------------------------------------


@dataclass
class CallTiming:
    title: str
    role: str
    layer: int
    started_at: float
    ttft: float
    ended_at: float
    tokens: int
    starts_with_run: bool

    @property
    def token_at(self) -> float:
        return self.started_at + self.ttft


@dataclass
class BrowserRun:
    submit: float
    keydown: float | None
    created_at: float
    engine_wall: float  # run.wall_time as the engine in the app measured it
    link: float
    idle: float
    calls: dict[str, CallTiming]
    ui: dict[str, Any]  # the page's stamps (see WATCH_JS)
    cpu: dict[str, float]  # CPU seconds from submit until the run was done on the page
    trace: list[dict[str, Any]] = field(default_factory=list)  # the app process's stamps, when traced

    @property
    def wall(self) -> float:
        return self.link - self.submit

    @property
    def run_done(self) -> float:
        return self.created_at + self.engine_wall

    @property
    def tokens(self) -> int:
        return sum(c.tokens for c in self.calls.values())

    def stamp(self, what: str, after: float | None = None, title: str | None = None) -> float | None:
        """Time of the first trace stamp `what` at or after `after` (default: the submit)."""
        after = self.submit if after is None else after
        for ev in self.trace:
            if ev["what"] == what and ev["t"] >= after and (title is None or ev.get("title") == title):
                return ev["t"]
        return None


@dataclass
class EngineRun:
    wall: float
    first_token: dict[str, float]  # title -> seconds from the call of run_moa to the first token
    teardown: float  # RunDone -> asyncio.run returned
    tokens: int
    cpu: float  # CPU seconds of this process during the run


_TICKS = os.sysconf("SC_CLK_TCK")


def _proc_stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, user+system CPU seconds) of a process, from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICKS


def cpu_seconds(app_pid: int) -> dict[str, float]:
    """CPU used so far by the app's process and by this process's chromium processes
    (children of Playwright's driver, itself a child of this process)."""
    procs = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit() and (st := _proc_stat(int(d.name))) is not None:
            procs[int(d.name)] = st
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    mine, todo = [], list(children.get(os.getpid(), []))
    while todo:
        pid = todo.pop()
        mine.append(pid)
        todo += children.get(pid, [])
    chromium = sum(procs[p][1] for p in mine if "chrom" in _comm(p))
    return {"app": procs.get(app_pid, (0, 0.0))[1], "chromium": chromium, "self": procs.get(os.getpid(), (0, 0.0))[1]}


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def db_rows(db_path: Path, sql: str, args: tuple = ()) -> list[tuple]:
    import sqlite3

    con = sqlite3.connect(db_path)
    try:
        return con.execute(sql, args).fetchall()
    finally:
        con.close()


def wait_script_done(page, timeout: float = 120_000) -> None:
    """Until the script run is over: stApp's data-test-script-state is 'notRunning' for 300 ms.

    (tests.browser_support.wait_idle looks for the status widget, which Streamlit shows only
    after a delay, so it can return before a short script run has even drawn the page.)"""
    page.evaluate("window.__quietSince = null")
    page.wait_for_function(
        """() => { const s = document.querySelector('[data-testid="stApp"]')?.getAttribute('data-test-script-state');
                   if (s !== 'notRunning') { window.__quietSince = null; return false; }
                   window.__quietSince = window.__quietSince || Date.now();
                   return Date.now() - window.__quietSince >= 300; }""",
        timeout=timeout,
        polling=50,
    )


def open_app(page, server) -> None:
    page.goto(server.url)
    wait_script_done(page)
    page.get_by_test_id("stChatInputTextArea").wait_for()


def import_config(page, workdir: Path, data: dict[str, Any]) -> None:
    path = workdir / f"{data['name']}.yaml"
    path.write_text(yaml.safe_dump(data))
    sidebar = page.get_by_test_id("stSidebar")
    sidebar.get_by_text("Import / export / save").click()
    sidebar.locator("input[type=file]").set_input_files(str(path))
    page.get_by_test_id("stMainBlockContainer").get_by_text(data["name"]).first.wait_for(timeout=120_000)
    wait_script_done(page)


def read_trace(path: Path | None, start: float, end: float) -> list[dict[str, Any]]:
    if path is None or not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            ev = json.loads(line)
        except ValueError:
            continue  # a line being written
        if start - 0.01 <= ev["t"] <= end + 5:
            out.append(ev)
    return sorted(out, key=lambda e: e["t"])


class Session:
    """A browser session on the app with the config imported: a fresh one per run (a new user,
    nothing cached in the page), or one kept for all runs ("New conversation" between runs)."""

    def __init__(self, browser, server, workdir: Path, data: dict[str, Any], reuse: bool) -> None:
        self.browser, self.server, self.workdir, self.data, self.reuse = browser, server, workdir, data, reuse
        self.ctx = None
        self.page = None

    def page_for_run(self):
        if self.page is not None and self.reuse:
            new_conv = self.page.get_by_role("button", name="New conversation")
            if new_conv.count():
                new_conv.click()
                wait_script_done(self.page)
                self.page.wait_for_function(
                    "() => !document.querySelector('[data-testid=\"stMainBlockContainer\"]')"
                    ".textContent.includes('link to this run')"
                )
            return self.page
        self.close()
        self.ctx = self.browser.new_context(viewport={"width": 1400, "height": 1000})
        self.ctx.add_init_script(WS_JS)
        self.page = self.ctx.new_page()
        self.page.set_default_timeout(60_000)
        open_app(self.page, self.server)
        import_config(self.page, self.workdir, self.data)
        return self.page

    def after_run(self) -> None:
        if not self.reuse:
            self.close()

    def close(self) -> None:
        if self.ctx is not None:
            self.ctx.close()
        self.ctx = self.page = None


def browser_run(session: Session, config: MoAConfig, trace: Path | None) -> BrowserRun:
    server = session.server
    page = session.page_for_run()
    try:
        page.evaluate(WATCH_JS, titles_of(config))
        box = page.get_by_test_id("stChatInputTextArea")
        box.fill(QUESTION)
        cpu0 = cpu_seconds(server.proc.pid)
        submit = time.time()
        box.press("Enter")
        page.wait_for_function("() => window.__ui.idle !== null", timeout=RUN_TIMEOUT_MS, polling=50)
        cpu1 = cpu_seconds(server.proc.pid)
        ui = page.evaluate("({...window.__ui, wsLink: window.__ws.link})")
    finally:
        session.after_run()
    runs = db_rows(
        server.db_path,
        "select id, created_at, wall_time, status from run where created_at >= ? order by created_at",
        (submit - 1,),
    )
    assert len(runs) == 1 and runs[0][3] == "done", runs
    run_id, created_at, wall_time, _ = runs[0]
    calls = {}
    for role, layer, label, started, ttft, ended, tokens, status in db_rows(
        server.db_path,
        "select role, layer, label, started_at, ttft, ended_at, completion_tokens, status "
        "from generation where run_id = ?",
        (run_id,),
    ):
        assert status == "done" and ttft is not None, (label, status)
        title = title_of_gen(role, label)
        calls[title] = CallTiming(
            title,
            role,
            layer,
            started,
            ttft,
            ended,
            tokens,
            starts_with_run=role == "baseline" or (role == "proposer" and layer == 0),
        )
    missing = [t for t in calls if t not in ui["first"]]
    assert not missing, f"no visible first token seen for {missing}"
    return BrowserRun(
        submit,
        ui["keydown"],
        created_at,
        wall_time,
        ui["link"],
        ui["idle"],
        calls,
        ui,
        {k: cpu1[k] - cpu0[k] for k in cpu0},
        read_trace(trace, submit, ui["idle"]),
    )


_ENGINE_THREAD = ThreadPoolExecutor(max_workers=1, thread_name_prefix="engine")


def _engine_alone(config: MoAConfig) -> tuple[float, float, list]:
    t0 = time.time()
    events = asyncio.run(collect(run_moa(QUESTION, config, kind="bench")))
    return t0, time.time(), events


def engine_run(config: MoAConfig) -> EngineRun:
    """asyncio.run(collect(run_moa(...))) in this process, on a thread of its own: Playwright's
    sync API keeps an event loop running on the main thread, where asyncio.run refuses to start.
    The main thread only waits meanwhile."""
    c0 = cpu_seconds(-1)["self"]
    t0, t1, events = _ENGINE_THREAD.submit(_engine_alone, config).result()
    cpu = cpu_seconds(-1)["self"] - c0
    done = events[-1]
    assert isinstance(done, RunDone) and done.status == "done", done
    first, tokens = {}, 0
    for ev in events:
        if isinstance(ev, DraftDone):
            assert ev.ok and ev.ttft is not None, ev.error
            first[title_of_gen(ev.ref.role, ev.ref.label)] = ev.started_at + ev.ttft - t0
            tokens += ev.usage.completion_tokens
    return EngineRun(t1 - t0, first, t1 - done.t, tokens, cpu)


# -- report ------------------------------------------------------------------------------


def med(xs) -> float:
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else float("nan")


def diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def fmt(x: float, signed: bool = False) -> str:
    if x != x:  # nan
        return "–"
    return f"{x:+.3f}" if signed else f"{x:.3f}"


def first_token_table(config: MoAConfig, browser: list[BrowserRun], engine: list[EngineRun]) -> bool:
    print("### First token visible, per column\n")
    print(
        "| column | TTFT s (engine, in app) | submit→visible s | submit→visible − TTFT s | "
        "token→visible (UI delay) s | of which token→flush s | of which flush→visible s | "
        '"thinking…" visible − call start s | engine alone: start→first token s | target | met |'
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|")
    ok_all = True
    for title in titles_of(config):
        ttft = med(r.calls[title].ttft for r in browser)
        vis = med(r.ui["first"][title] - r.submit for r in browser)
        over = med(r.ui["first"][title] - r.submit - r.calls[title].ttft for r in browser)
        delay = med(r.ui["first"][title] - r.calls[title].token_at for r in browser)
        to_flush = med(diff(r.stamp("flush", title=title), r.calls[title].token_at) for r in browser)
        from_flush = med(diff(r.ui["first"][title], r.stamp("flush", title=title)) for r in browser)
        think = med(diff(r.ui["thinking"].get(title), r.calls[title].started_at) for r in browser)
        alone = med(e.first_token[title] for e in engine)
        if browser[0].calls[title].starts_with_run:
            target, ok = f"submit→visible ≤ TTFT + {FIRST_TOKEN_SLACK}", over <= FIRST_TOKEN_SLACK
        else:
            target, ok = f"UI delay ≤ {FIRST_TOKEN_SLACK} (starts after the drafts)", delay <= FIRST_TOKEN_SLACK
        ok_all &= ok
        print(
            f"| {title} | {fmt(ttft)} | {fmt(vis)} | {fmt(over, True)} | {fmt(delay, True)} | "
            f"{fmt(to_flush, True)} | {fmt(from_flush, True)} | {fmt(think, True)} | {fmt(alone)} | "
            f"{target} | {'yes' if ok else 'NO'} |"
        )
    return ok_all


def wall_table(browser: list[BrowserRun], engine: list[EngineRun]) -> bool:
    print("\n### Whole run: browser against the engine alone\n")
    print(
        "| repeat | browser wall s (submit→link visible) | engine alone wall s | browser / engine alone | "
        "submit→run start s | engine in app s (run.wall_time) | engine RunDone→link visible s | "
        "tokens browser / engine | CPU s browser run: app process / chromium | CPU s engine alone |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    rows = []
    for i, (b, e) in enumerate(zip(browser, engine, strict=False), 1):
        row = (b.wall, e.wall, b.wall / e.wall, b.created_at - b.submit, b.engine_wall, b.link - b.run_done)
        rows.append(row)
        print(
            f"| {i} | " + " | ".join(fmt(x) for x in row) + f" | {b.tokens} / {e.tokens} | "
            f"{b.cpu['app']:.2f} / {b.cpu['chromium']:.2f} | {e.cpu:.2f} |"
        )
    meds = [med(col) for col in zip(*rows, strict=False)]
    ratio = med(b.wall for b in browser) / med(e.wall for e in engine)
    print(
        "| median | " + " | ".join(fmt(x) for x in meds) + f" | {med(b.tokens for b in browser):.0f} / "
        f"{med(e.tokens for e in engine):.0f} | {med(b.cpu['app'] for b in browser):.2f} / "
        f"{med(b.cpu['chromium'] for b in browser):.2f} | {med(e.cpu for e in engine):.2f} |"
    )
    ok = ratio <= WALL_RATIO
    print(
        f"\nmedian browser wall / median engine-alone wall = **{ratio:.3f}** (target ≤ {WALL_RATIO}) → "
        f"{'met' if ok else 'NOT MET'}. Engine alone: RunDone → asyncio.run returned "
        f"{med(e.teardown for e in engine) * 1000:.0f} ms (inside its wall time)."
    )
    return ok


def breakdown_table(browser: list[BrowserRun], engine: list[EngineRun]) -> None:
    """Browser wall = the steps below, end to end (from the app process's trace stamps)."""
    if not browser[0].trace:
        return
    rows: list[tuple[str, list[float | None]]] = []

    def add(label: str, f) -> None:
        rows.append((label, [f(b) for b in browser]))

    def rerun_start(b: BrowserRun) -> float | None:
        return b.stamp("playground_page:start", after=b.stamp("st.rerun"))

    add(
        "submit → script run starts (websocket, Streamlit starts the rerun)",
        lambda b: diff(b.stamp("playground_page:start"), b.submit),
    )
    add(
        "script start → run created (sidebar editor, page, checks, layout of the columns)",
        lambda b: diff(b.created_at, b.stamp("playground_page:start")),
    )
    add("engine run in the app (run.wall_time)", lambda b: b.engine_wall)
    add(
        "  of which more than the engine alone (median engine alone subtracted)",
        lambda b: b.engine_wall - med(e.wall - e.teardown for e in engine),
    )
    add(
        "RunDone → stream_run returned (recorder's last write, progress cleared)",
        lambda b: diff(b.stamp("stream_run:returned"), b.run_done),
    )
    add(
        "stream_run returned → asyncio.run returned (event-loop teardown)",
        lambda b: diff(b.stamp("run_async:end"), b.stamp("stream_run:returned")),
    )
    add(
        "asyncio.run returned → st.rerun() (reload of the run from the DB)",
        lambda b: diff(b.stamp("st.rerun"), b.stamp("run_async:end")),
    )
    add("st.rerun() → script starts again", lambda b: diff(rerun_start(b), b.stamp("st.rerun")))
    add(
        "  of which gc.collect() (Streamlit's runner.postScriptGC)",
        lambda b: (
            diff(
                b.stamp("gc.collect:end", after=b.stamp("st.rerun")),
                b.stamp("gc.collect:start", after=b.stamp("st.rerun")),
            )
            if (b.stamp("gc.collect:start", after=b.stamp("st.rerun")) or 1e18) < (rerun_start(b) or 0)
            else 0.0
        ),
    )
    add(
        "rerun: script start → render_run starts (sidebar editor, title, summary…)",
        lambda b: diff(b.stamp("render_run:start", after=rerun_start(b)), rerun_start(b)),
    )
    add(
        "render_run starts → the message with the link reaches the page",
        lambda b: diff(b.ui.get("wsLink"), b.stamp("render_run:start", after=rerun_start(b))),
    )
    add(
        "that message reaches the page → 'link to this run' visible (frontend)",
        lambda b: diff(b.link, b.ui.get("wsLink")),
    )
    add("**browser wall (sum)**", lambda b: b.wall)
    add(
        "for reference: the sidebar editor alone, in the rerun",
        lambda b: diff(
            b.stamp("config_sidebar:end", after=rerun_start(b)), b.stamp("config_sidebar:start", after=rerun_start(b))
        ),
    )
    add(
        "for reference: render_run, start → end (ratings, timeline chart)",
        lambda b: diff(
            b.stamp("render_run:end", after=rerun_start(b)), b.stamp("render_run:start", after=rerun_start(b))
        ),
    )
    add("for reference: 'link' visible → script idle in the browser", lambda b: b.idle - b.link)
    print("\n### Where the browser's wall time goes (app-process trace stamps; medians, s)\n")
    print("| step | " + " | ".join(f"run {i}" for i in range(1, len(browser) + 1)) + " | median |")
    print("|---|" + "---:|" * (len(browser) + 1))
    for label, vals in rows:
        print(
            f"| {label} | "
            + " | ".join(fmt(v if v is not None else float("nan")) for v in vals)
            + f" | {fmt(med(vals))} |"
        )


def timeline(b: BrowserRun) -> None:
    marks = [(t - b.submit, f"page: script {state}") for t, state in b.ui["states"]]
    for start, dur in b.ui.get("longtasks", []):
        marks.append((start - b.submit, f"page: long task in the page's main thread, {dur * 1000:.0f} ms"))
    for start, end, name in b.ui.get("resources", []):
        marks.append((start - b.submit, f"page: loads {name} (until {end - b.submit:.3f})"))
    if b.ui.get("wsLink"):
        marks.append((b.ui["wsLink"] - b.submit, "page: websocket message with the link arrives"))
    if b.ui.get("domAfterLinkMsg"):
        marks.append((b.ui["domAfterLinkMsg"] - b.submit, "page: first DOM change after that message"))
    marks += [
        (b.created_at - b.submit, "run created"),
        (b.run_done - b.submit, "engine RunDone"),
        (b.link - b.submit, "page: 'link to this run' visible"),
    ]
    marks += [
        (
            ev["t"] - b.submit,
            "app: "
            + ev["what"]
            + (f" {ev['title']}" + (" final" if ev.get("final") else "") if ev["what"] == "flush" else ""),
        )
        for ev in b.trace
        if ev["what"] != "flush" or ev.get("final")
    ]
    for title, c in b.calls.items():
        if title in b.ui["final"]:
            marks.append(
                (
                    b.ui["final"][title] - b.submit,
                    f"page: {title} final text ({(b.ui['final'][title] - c.ended_at) * 1000:+.0f} ms after "
                    "its call ended)",
                )
            )
    print("\n<details><summary>Timeline of the last browser run (s after submit)</summary>\n")
    for t, what in sorted(marks):
        print(f"    {t:7.3f}  {what}")
    print("\n</details>")


def report(
    name: str, config: MoAConfig, browser: list[BrowserRun], engine: list[EngineRun], loads: list[float]
) -> tuple[bool, bool]:
    print(f"\n## {name}\n")
    print(
        f"{len(browser)} browser runs and {len(engine)} engine-alone runs, alternating, after one warm-up "
        f"of each; medians. Load average (1 min) during the runs: {min(loads):.2f}–{max(loads):.2f} "
        f"on {os.cpu_count()} cores.\n"
    )
    first_ok = first_token_table(config, browser, engine)
    wall_ok = wall_table(browser, engine)
    breakdown_table(browser, engine)
    timeline(browser[-1])
    keyd = [b.keydown - b.submit for b in browser if b.keydown]
    print(
        f"\nEnter reached the page {med(keyd) * 1000:.1f} ms after the Python submit stamp (median); "
        f"the page's observer ran {med(b.ui['mutations'] for b in browser):.0f} times per run. "
        f"First tokens → {'met' if first_ok else 'NOT MET'}; wall time → {'met' if wall_ok else 'NOT MET'}."
    )
    return first_ok, wall_ok


# -- main --------------------------------------------------------------------------------


def trace_env(workroot: Path) -> tuple[dict[str, str], Path]:
    site = workroot / "trace-site"
    site.mkdir(parents=True, exist_ok=True)
    (site / "sitecustomize.py").write_text(TRACE_SITECUSTOMIZE)
    log = workroot / "app-trace.jsonl"
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": path, "MOA_UI_TRACE": str(log), "MOA_UI_TRACE_ROOT": str(ROOT)}, log


def bench_config(
    kind: str, browser, repeats: int, workroot: Path, trace: bool, app_env: dict[str, str], reuse: bool
) -> tuple[bool, bool]:
    fake = ChildFakeServer() if kind == "fake" else None
    server = None
    try:
        data = fake_config(fake.url) if fake else local_config(greedy=kind == "local-greedy")
        config = config_from_dict(data)
        workdir = workroot / kind
        workdir.mkdir(parents=True, exist_ok=True)
        env, log = trace_env(workdir) if trace else ({}, None)
        server = start_app(workdir, {**env, **app_env})
        session = Session(browser, server, workdir, data, reuse)
        loads = [os.getloadavg()[0]]
        print(f"[{kind}] warm-up …", file=sys.stderr, flush=True)
        browser_run(session, config, log)
        engine_run(config)
        b_runs, e_runs = [], []
        for i in range(repeats):
            loads.append(os.getloadavg()[0])
            b_runs.append(browser_run(session, config, log))
            loads.append(os.getloadavg()[0])
            e_runs.append(engine_run(config))
            print(
                f"[{kind}] repeat {i + 1}: browser {b_runs[-1].wall:.2f}s, engine {e_runs[-1].wall:.2f}s, "
                f"load {loads[-1]:.2f}",
                file=sys.stderr,
                flush=True,
            )
        loads.append(os.getloadavg()[0])
        if trace and not b_runs[0].trace:
            print(f"[{kind}] the app's trace is empty; log:\n{server.log_text()[-2000:]}", file=sys.stderr)
        session.close()
        return report(kind, config, b_runs, e_runs, loads)
    finally:
        if server is not None:
            server.stop()
        if fake is not None:
            fake.close()


def clock_check(browser) -> float:
    """Date.now() in the page against time.time() here: the offset must be far below the figures."""
    page = browser.new_page()
    try:
        offsets = []
        for _ in range(5):
            t0 = time.time()
            js = page.evaluate("Date.now() / 1000")
            t1 = time.time()
            offsets.append(js - (t0 + t1) / 2)
        return statistics.median(offsets)
    finally:
        page.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", default="fake,local", help="comma-separated: fake, local, local-greedy")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--no-trace",
        action="store_true",
        help="do not load the timing stamps into the app process (no breakdown table)",
    )
    ap.add_argument(
        "--app-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for the app, e.g. a Streamlit option to try: "
        "STREAMLIT_RUNNER_POST_SCRIPT_GC=false (repeatable)",
    )
    ap.add_argument(
        "--reuse-session",
        action="store_true",
        help="one browser session for all runs of a config (New conversation between runs) "
        "instead of a fresh session per run: the page has the app's code cached",
    )
    args = ap.parse_args()
    app_env = dict(kv.split("=", 1) for kv in args.app_env)
    kinds = [k.strip() for k in args.configs.split(",") if k.strip()]
    bad = [k for k in kinds if k not in ("fake", "local", "local-greedy")]
    if bad:
        ap.error(f"unknown config(s): {', '.join(bad)}")
    if not Path(CHROMIUM).exists():
        sys.exit(f"Debian chromium not found at {CHROMIUM} (apt-get install chromium; never `playwright install`)")
    from playwright.sync_api import sync_playwright

    verdicts = {}
    with tempfile.TemporaryDirectory(prefix="ui-bench-") as tmp, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            offset = clock_check(browser)
            print(
                f"# Playground in the browser vs the engine alone\n\nquestion: {QUESTION!r}; {os.cpu_count()} "
                f"cores; load average at start {os.getloadavg()[0]:.2f}; page clock − Python clock "
                f"{offset * 1000:+.1f} ms; app trace {'off' if args.no_trace else 'on'}; extra app environment: "
                f"{' '.join(args.app_env) or 'none'}; "
                f"{'one browser session per config' if args.reuse_session else 'a fresh browser session per run'}"
            )
            for kind in kinds:
                verdicts[kind] = bench_config(
                    kind, browser, args.repeats, Path(tmp), not args.no_trace, app_env, args.reuse_session
                )
        finally:
            browser.close()
    print("\n## Summary\n\n| config | first token ≤ TTFT + 0.3 s | browser wall ≤ 1.05 × engine alone |\n|---|---|---|")
    for kind, (first_ok, wall_ok) in verdicts.items():
        print(f"| {kind} | {'met' if first_ok else 'NOT MET'} | {'met' if wall_ok else 'NOT MET'} |")


if __name__ == "__main__":
    main()
