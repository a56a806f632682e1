"""Engine overhead: MoA wall time against the ideal critical path, on the fake server.

Run from the repo root: .venv/bin/python benchmarks/overhead.py [--repeats N] [--modes child,inproc,stub] [--profile]

Every call of the fake OpenAI server (tests/fake_openai.py) streams TOKENS tokens, the
first after TTFT seconds and the rest DELAY apart, so each call takes a fixed time.
The best a MoA run can do is `layers` proposer calls one after another (the proposers
of a layer run at once) and then the aggregator:

    ideal = (layers + 1) x call time

Two units of "call time" are reported:
  * nominal: the server's own sleeps, TTFT + (TOKENS - 1) x DELAY. The ratio against it
    includes the fixed cost of one HTTP + litellm call.
  * measured: the median wall time of one streamed call alone, through the same code
    path the engine uses (llm.stream_chat). The ratio against it isolates what the
    engine and running calls concurrently add.

Alongside the ratios, every run is broken down from its own events: how much the
calls stretched when run together (latency of the slowest call of each layer vs the
single-call time) and how long the engine took between one layer's last DraftDone and
the next layer's first DraftStarted (the "gaps").

Modes (--modes, default all three):
  child   litellm -> HTTP -> the fake server in a child process (like a real provider)
  inproc  the same server on threads of this process (shares the GIL)
  stub    llm.stream_chat replaced by asyncio.sleep with the same timing: the engine alone
--profile prints where the event loop's CPU goes, by package, for the 6x3 config.

--fast-streams: the issue-17 rows instead. Fast providers: every call streams FAST_TOKENS
tokens at --rates tokens/s (default 500 and 1000), fake server in a child process; 3 and 6
proposers x 1 and 2 proposer layers + the aggregator; ratio = wall / ideal critical path
(ideal = (layers + 1) x the server's nominal call time), medians of --repeats (default 3).
One row per client path: the openai SDK and `litellm.acompletion(stream=True)` with bare
`asyncio.gather` per stage (no engine), then the engine (`run_moa`) on the fast path and on
litellm (MOA_FAST_PATH=0), each with the Recorder writing to SQLite. Also reported: CPU of
the event-loop thread per streamed chunk, end to end (provider -> event -> recorder).
See benchmarks/README.md for results and their reading.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from moa_core.config import AgentSpec, LayerSpec, MoAConfig  # noqa: E402
from moa_core.engine import collect, run_moa  # noqa: E402
from moa_core.events import DraftDone, DraftStarted, RunDone, RunStarted  # noqa: E402
from moa_core.providers import llm  # noqa: E402
from tests.fake_openai import FakeOpenAI  # noqa: E402

TOKENS = 20
DELAY = 0.02
TTFT = 0.12
NOMINAL = TTFT + (TOKENS - 1) * DELAY  # 0.50 s
CONFIGS = [(4, 2), (4, 3), (6, 2), (6, 3)]
TARGET = 1.03


def agent(server, name: str) -> AgentSpec:
    model = f"openai/fake-{name}@tokens={TOKENS},delay={DELAY},ttft={TTFT}"
    return AgentSpec(model=model, api_base=server.url, max_tokens=64, temperature=0.0)


def config(server, proposers: int, layers: int) -> MoAConfig:
    return MoAConfig(
        name=f"bench-{proposers}x{layers}",
        layers=[LayerSpec(proposers=[agent(server, f"p{k}-{i}") for i in range(proposers)]) for k in range(layers)],
        aggregator=agent(server, "agg"),
        num_retries=0,
        timeout=30,
    )


class _ChildServer:
    """tests.fake_openai.FakeOpenAI in a child process: its threads do not compete for our GIL
    (a real provider does not share the client's interpreter either)."""

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
        if not self.url.startswith("http"):
            self.proc.kill()
            raise RuntimeError("the fake server did not start in the child process")

    def __enter__(self) -> _ChildServer:
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()  # the child exits when its stdin closes
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


async def _stub_stream_chat(
    agent: AgentSpec, messages: list, result: llm.StreamResult, timeout: float = 120.0, num_retries: int = 2
):
    """Same timing as the fake server, with no HTTP and no litellm: what is left is the engine."""
    await asyncio.sleep(TTFT)
    for i in range(TOKENS):
        if i:
            await asyncio.sleep(DELAY)
        text = (" " if i else "") + f"w{i}"
        if result.first_token_at is None:
            result.first_token_at = time.time()
        result.text += text
        yield text
    result.finish_reason, result.prompt_tokens, result.completion_tokens = "stop", 10 * len(messages), TOKENS


@contextlib.contextmanager
def server_for(mode: str):
    if mode == "child":
        with _ChildServer() as server:
            yield server
    elif mode == "inproc":
        with FakeOpenAI() as server:
            yield server
    else:  # "stub": the engine alone
        saved = llm.stream_chat
        llm.stream_chat = _stub_stream_chat  # the engine calls llm.stream_chat through the module
        try:
            yield SimpleNamespace(url="http://unused.invalid/v1")
        finally:
            llm.stream_chat = saved


async def single_call(server) -> float:
    a = agent(server, "single")
    msgs = [{"role": "user", "content": "Why is the sky blue?"}]
    t0 = time.perf_counter()
    result = llm.StreamResult()
    async for _ in llm.stream_chat(a, msgs, result, timeout=30, num_retries=0):
        pass
    elapsed = time.perf_counter() - t0
    assert result.completion_tokens == TOKENS, result
    return elapsed


async def one_run(server, proposers: int, layers: int) -> dict[str, float]:
    cfg = config(server, proposers, layers)
    c0 = time.thread_time()
    t0 = time.perf_counter()
    events = await collect(run_moa("Why is the sky blue?", cfg, kind="bench"))
    wall = time.perf_counter() - t0
    cpu = time.thread_time() - c0
    done = events[-1]
    assert isinstance(done, RunDone) and done.status == "done", done
    started = next(e for e in events if isinstance(e, RunStarted)).t
    dones = [e for e in events if isinstance(e, DraftDone)]
    assert all(d.ok for d in dones), [d.error for d in dones if not d.ok]
    # stages: the layers, then the aggregator (layer index `layers`)
    stage_calls: list[list[DraftDone]] = [[d for d in dones if d.ref.layer == k] for k in range(layers + 1)]
    starts = [min(e.t for e in events if isinstance(e, DraftStarted) and e.ref.layer == k) for k in range(layers + 1)]
    ends = [max(d.ended_at for d in calls) for calls in stage_calls]
    slowest = [max(d.latency for d in calls) for calls in stage_calls]
    gaps = [starts[0] - started] + [starts[k] - ends[k - 1] for k in range(1, layers + 1)]
    return {
        "wall": wall,
        "loop_cpu": cpu,  # CPU of the event-loop thread during the run
        "stage_slowest": sum(slowest),  # time inside calls on the critical path
        "gaps": sum(gaps) + (done.t - ends[-1]),  # engine time between stages and after the aggregator
    }


MODES = {
    "child": "litellm -> HTTP -> fake server in a child process",
    "inproc": "litellm -> HTTP -> fake server on threads of this process (shares the GIL)",
    "stub": "engine only: llm.stream_chat replaced by asyncio.sleep with the same timing",
}


def _machine_busy() -> float:
    """CPU seconds all processes on the machine have spent busy (from /proc/stat; 0 if unavailable)."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except OSError:
        return 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


async def bench_mode(mode: str, repeats: int) -> float:
    busy0, own0, t0 = _machine_busy(), time.process_time(), time.perf_counter()
    with server_for(mode) as server:
        llm.ensure_ready()
        for _ in range(3):  # warm-up: imports, HTTP clients, litellm caches
            await single_call(server)
        await one_run(server, 4, 1)
        c0 = time.thread_time()
        singles = [await single_call(server) for _ in range(9)]
        single_cpu = (time.thread_time() - c0) / len(singles)
        unit = statistics.median(singles)
        print(f"## {mode}: {MODES[mode]}\n")
        print(
            f"single call alone: nominal {NOMINAL:.3f}s, measured median {unit:.3f}s "
            f"(min {min(singles):.3f}, max {max(singles):.3f}); fixed per-call cost "
            f"{(unit - NOMINAL) * 1000:.0f} ms wall, {single_cpu * 1000:.1f} ms CPU on the event loop\n"
        )
        print(
            "| proposers | layers | ideal s (nominal) | ideal s (measured call) | measured s | ratio vs nominal "
            "| ratio vs measured call | calls stretched s | engine gaps s | loop CPU ms/call |"
        )
        print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        worst = 0.0
        for p, n in CONFIGS:
            runs = [await one_run(server, p, n) for _ in range(repeats)]
            med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            ideal_nom, ideal_meas = (n + 1) * NOMINAL, (n + 1) * unit
            ratio = med["wall"] / ideal_meas
            worst = max(worst, ratio)
            print(
                f"| {p} | {n} | {ideal_nom:.3f} | {ideal_meas:.3f} | {med['wall']:.3f} | "
                f"{med['wall'] / ideal_nom:.3f} | {ratio:.3f} | {med['stage_slowest'] - ideal_meas:+.3f} | "
                f"{med['gaps']:.3f} | {med['loop_cpu'] * 1000 / (p * n + 1):.1f} |"
            )
        print(
            f"\nworst ratio vs measured single call: {worst:.3f} (target <= {TARGET}) "
            f"-> {'OK' if worst <= TARGET else 'ABOVE TARGET'}"
        )
    wall = time.perf_counter() - t0
    other = max(0.0, _machine_busy() - busy0 - (time.process_time() - own0)) / wall
    print(
        f"other processes on the machine kept {other:.2f} of {os.cpu_count()} cores busy during this mode"
        f"{' (includes the child server)' if mode == 'child' else ''}\n"
    )
    return worst


async def bench(modes: list[str], repeats: int) -> None:
    print(
        f"# MoA engine overhead\n\nfake calls: {TOKENS} tokens, ttft {TTFT}s, delay {DELAY}s "
        f"(nominal {NOMINAL:.2f}s per call); {repeats} repeats per config, medians; "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start\n"
    )
    for mode in modes:
        await bench_mode(mode, repeats)
    print(
        "ideal = (layers + 1) x call time. 'calls stretched' = sum over stages of the slowest call's latency "
        "minus the single-call time (what running the calls concurrently on one event loop costs); "
        "'engine gaps' = RunStarted to the first call + each stage's last DraftDone to the next stage's first "
        "DraftStarted + the aggregator's DraftDone to RunDone; 'loop CPU' = CPU time of the event-loop "
        "thread per call."
    )


def _category(filename: str, name: str) -> str:
    if filename == "~":
        return "builtin " + name.split(" of ")[0].strip("<>")[:40]
    for key in (
        "moa_core/engine",
        "moa_core/providers",
        "litellm",
        "openai",
        "httpx",
        "httpcore",
        "aiohttp",
        "pydantic",
        "asyncio",
    ):
        if key in filename:
            return key
    return "other (" + filename.rsplit("/", 1)[-1] + ")"


async def profile(mode: str, proposers: int, layers: int, runs: int) -> None:
    """Where the event loop's time goes, by package (main thread only; epoll idle excluded)."""
    import collections
    import cProfile
    import pstats

    with server_for(mode) as server:
        llm.ensure_ready()
        await one_run(server, proposers, layers)
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(runs):
            await one_run(server, proposers, layers)
        prof.disable()
    stats = pstats.Stats(prof)
    by_cat: collections.Counter[str] = collections.Counter()
    for (filename, _line, name), (_cc, _nc, tottime, _ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        if "poll" in name and "epoll" in name:
            continue
        by_cat[_category(filename, name)] += tottime
    calls = runs * (proposers * layers + 1)
    total = sum(by_cat.values())
    print(
        f"event-loop busy time ({mode}, {proposers}x{layers}, {runs} runs, {calls} calls, under cProfile): "
        f"{total:.3f}s = {total / calls * 1000:.1f} ms per call\n"
    )
    print("| where | ms per call | share |\n|---|---:|---:|")
    for cat, t in by_cat.most_common(15):
        print(f"| {cat} | {t / calls * 1000:.2f} | {t / total:.0%} |")
    print()
    stats.sort_stats("cumulative").print_stats(30)


FAST_TOKENS = 500
FAST_SHAPES = [(3, 1), (6, 1), (3, 2), (6, 2)]
QUESTION = [{"role": "user", "content": "Why is the sky blue?"}]


def _fast_model(name: str, rate: int) -> str:
    delay = 1.0 / rate
    return f"fake-{name}@tokens={FAST_TOKENS},delay={delay:.6f},ttft={delay:.6f}"


async def _bare_stages(call, proposers: int, layers: int, rate: int) -> int:
    """Bare gathers, no engine: each stage's calls at once, then the aggregator. Returns chunks."""
    chunks = 0
    for k in range(layers):
        got = await asyncio.gather(*(call(_fast_model(f"b{k}-{i}", rate)) for i in range(proposers)))
        chunks += sum(got)
    return chunks + await call(_fast_model("bagg", rate))


def _openai_call(url: str):
    import openai

    client = openai.AsyncOpenAI(base_url=url, api_key="no-key", max_retries=0)

    async def call(model: str) -> int:
        stream = await client.chat.completions.create(model=model, messages=QUESTION, stream=True, max_tokens=1000)
        n = 0
        async for chunk in stream:
            n += 1
            _ = chunk.choices[0].delta.content if chunk.choices else None
        return n

    return call


def _litellm_call(url: str):
    import litellm

    async def call(model: str) -> int:
        resp = await litellm.acompletion(
            model=f"openai/{model}", messages=QUESTION, stream=True, api_base=url, api_key="no-key", max_tokens=1000
        )
        n = 0
        async for chunk in resp:
            n += 1
            _ = chunk.choices[0].delta.content if chunk.choices else None
        return n

    return call


async def _engine_run(url: str, proposers: int, layers: int, rate: int, db_url: str) -> int:
    from contextlib import aclosing

    from moa_core.store import open_db
    from moa_core.store.recorder import Recorder

    def ag(name: str) -> AgentSpec:
        return AgentSpec(model=f"openai/{_fast_model(name, rate)}", api_base=url, max_tokens=1000, temperature=0.0)

    cfg = MoAConfig(
        name=f"fast-{proposers}x{layers}",
        layers=[LayerSpec(proposers=[ag(f"e{k}-{i}") for i in range(proposers)]) for k in range(layers)],
        aggregator=ag("eagg"),
        num_retries=0,
        timeout=60,
    )
    last = None
    async with aclosing(Recorder(open_db(db_url)).record(run_moa("Why is the sky blue?", cfg, kind="bench"))) as evs:
        async for ev in evs:
            last = ev
    assert isinstance(last, RunDone) and last.status == "done", last
    return last.totals.completion_tokens


async def _fast_row(label: str, run, proposers: int, layers: int, rate: int, repeats: int) -> str:
    nominal = (layers + 1) * FAST_TOKENS / rate
    walls, cpus, chunks = [], [], []
    for _ in range(repeats):
        c0, t0 = time.thread_time(), time.perf_counter()
        n = await run()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.thread_time() - c0)
        chunks.append(n)
    wall, cpu, n = statistics.median(walls), statistics.median(cpus), statistics.median(chunks)
    return (
        f"| {label} | {proposers} | {layers} | {nominal:.3f} | {wall:.3f} | {wall / nominal:.3f} | "
        f"{cpu * 1000 / max(n, 1):.3f} |"
    )


async def bench_fast(rates: list[int], repeats: int, db_dir: Path) -> None:
    print(
        f"# Fast providers (issue 17)\n\n{FAST_TOKENS} tokens per call, fake server in a child process; "
        f"{repeats} repeats, medians; {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start\n"
    )
    busy0, own0, t0 = _machine_busy(), time.process_time(), time.perf_counter()
    with _ChildServer() as server:
        llm.ensure_ready()
        bare = {"openai SDK, bare gather": _openai_call(server.url), "litellm, bare gather": _litellm_call(server.url)}
        for call in bare.values():  # warm-up: imports, clients
            await call(_fast_model("warm", 2000))
        for path, switch in (("fast", "1"), ("litellm", "0")):
            os.environ["MOA_FAST_PATH"] = switch
            await _engine_run(server.url, 2, 1, 2000, f"sqlite:///{db_dir / f'bench-{path}.db'}")
        for rate in rates:
            print(f"## {rate} tokens/s per stream\n")
            print("| client path | proposers | layers | ideal s | wall s | ratio | loop CPU ms/chunk |")
            print("|---|---:|---:|---:|---:|---:|---:|")
            for p, n in FAST_SHAPES:
                for label, call in bare.items():
                    run = lambda c=call, p=p, n=n, r=rate: _bare_stages(c, p, n, r)  # noqa: E731
                    print(await _fast_row(label, run, p, n, rate, repeats))
                for path, switch in (("fast", "1"), ("litellm", "0")):
                    os.environ["MOA_FAST_PATH"] = switch
                    db = f"sqlite:///{db_dir / f'bench-{path}.db'}"
                    print(
                        await _fast_row(
                            f"engine + recorder (SQLite), {path} path",
                            lambda db=db, p=p, n=n, r=rate: _engine_run(server.url, p, n, r, db),
                            p,
                            n,
                            rate,
                            repeats,
                        ),
                        flush=True,
                    )
            print()
        os.environ.pop("MOA_FAST_PATH", None)
    wall = time.perf_counter() - t0
    other = max(0.0, _machine_busy() - busy0 - (time.process_time() - own0)) / wall
    print(
        f"other processes (the child server included) kept {other:.2f} of {os.cpu_count()} cores busy; "
        f"load average {os.getloadavg()[0]:.2f} at the end\n\n"
        "ideal = (layers + 1) x tokens / rate (the server's own pace). 'loop CPU ms/chunk' = CPU of the "
        "event-loop thread over the run / chunks streamed (bare rows: SSE chunks received; engine rows: "
        "completion tokens, one chunk each), everything on that thread included: HTTP, parsing, engine, "
        "Recorder writes."
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument(
        "--modes",
        default="child,inproc,stub",
        help="comma-separated: " + "; ".join(f"{k} = {v}" for k, v in MODES.items()),
    )
    ap.add_argument("--profile", action="store_true", help="cProfile the 6x3 config instead (main thread only)")
    ap.add_argument("--fast-streams", action="store_true", help="the fast-provider rows (issue 17) instead")
    ap.add_argument("--rates", default="500,1000", help="--fast-streams: tokens/s per stream, comma-separated")
    args = ap.parse_args()
    if args.fast_streams:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            from moa_core.store import open_db

            for path in ("fast", "litellm"):
                open_db(f"sqlite:///{Path(tmp) / f'bench-{path}.db'}")  # migrated before the clock starts
            repeats = 3 if args.repeats == 5 else args.repeats
            asyncio.run(bench_fast([int(r) for r in args.rates.split(",")], repeats, Path(tmp)))
        return
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        ap.error(f"unknown mode(s): {', '.join(unknown)}")
    if args.profile:
        asyncio.run(profile(modes[0], 6, 3, 3))
    else:
        asyncio.run(bench(modes, args.repeats))


if __name__ == "__main__":
    main()
