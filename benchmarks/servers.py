"""Model servers and the litellm Router: replicas on a 2-core machine, and what the Router costs.

Run from the repo root: .venv/bin/python benchmarks/servers.py [--repeats 3] [--max-tokens 64]
                        [--parts replicas,overhead] [--calls 40]

Part 1, replicas. The bundled models of the local-moa preset are served by
`moa serve-models`-style llama-cpp-python servers (one process per model and replica,
n_threads=1 each, as in-process). Each case sends the proposer calls of `--runs` MoA
runs at once (temperature 0, fixed max_tokens, a prompt that fills it) and reports
completion tokens / wall time:

  * in-process     `local/<name>` (pool of Llama instances in this process): the reference
  * 1 replica      every call of a model to its one server (a one-slot server: calls queue)
  * 2 replicas     Router group per model over two servers, simple-shuffle (random pick)
  * 2 pinned       calls of a model split evenly over its two servers by hand: the best any
                   balancer could do, to tell routing luck from hardware limits

With --runs 1 each proposer has a server of its own even with one replica (the three
proposers are three different models), so replicas cannot help; with --runs 2 two calls
hit each model, and a second replica lets them run side by side instead of queueing, if
the cores allow: on 2 cores, 6 generating threads share 2 cores.

Part 2, Router overhead. One fake OpenAI server (tests/fake_openai.py) in a child
process answers 8 tokens at once; `--calls` sequential calls through llm.stream_chat,
direct (litellm.acompletion with api_base) vs through a Router group with two
deployments on that server, then bursts of 8 concurrent calls. Medians and p90 in ms.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from moa_core.config import AgentSpec, DeploymentSpec, LayerSpec, MoAConfig, load_preset  # noqa: E402
from moa_core.providers import llm, local, servers  # noqa: E402
from moa_core.providers import router as routing  # noqa: E402

PROMPT = "Explain in detail why the sky is blue during the day and red at sunset."
N_CTX = 2048


def _machine_busy() -> float:
    """CPU seconds all processes on the machine have spent busy (from /proc/stat; 0 if unavailable)."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except OSError:
        return 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _children_cpu() -> float:
    t = os.times()
    return t.children_user + t.children_system


async def _call(agent: AgentSpec, router: routing.MoARouter | None = None) -> tuple[int, float, str | None]:
    """(tokens, seconds, deployment). Tokens are the streamed text deltas: llama.cpp sends one
    token per delta on both paths, while usage counts differ (exact in-process, estimated by
    litellm over HTTP, since llama-cpp-python's server sends no usage in streams)."""
    result = llm.StreamResult()
    t0 = time.perf_counter()
    kw = {"router": router} if router is not None else {}
    deltas = 0
    async for _ in llm.stream_chat(agent, [{"role": "user", "content": PROMPT}], result, 600, 0, **kw):
        deltas += 1
    return deltas, time.perf_counter() - t0, result.deployment


async def _burst(agents: Sequence[AgentSpec], router: routing.MoARouter | None = None) -> tuple[int, float, list]:
    t0 = time.perf_counter()
    res = await asyncio.gather(*(_call(a, router) for a in agents))
    return sum(r[0] for r in res), time.perf_counter() - t0, [r[2] for r in res]


def _proposers(max_tokens: int) -> list[AgentSpec]:
    return [
        a.model_copy(update={"temperature": 0.0, "max_tokens": max_tokens})
        for a in load_preset("local-moa").layers[0].proposers
    ]


async def bench_replicas(repeats: int, max_tokens: int, runs_list: Sequence[int]) -> None:
    props = _proposers(max_tokens)
    names = [a.model.split("/", 1)[1] for a in props]
    missing = [n for n in names if n not in {s.name for s in local.available_local_models()}]
    if missing or not servers.server_available():
        print(f"skipped: needs the bundled models ({', '.join(missing) or 'ok'}) and llama-cpp-python[server]\n")
        return
    print(f"## Replicas: local-moa proposers ({', '.join(names)}), max_tokens {max_tokens}, temperature 0\n")
    t_start = time.perf_counter()
    with servers.serving(names, replicas=2, port=0, n_ctx=N_CTX) as two:
        by_model = two.by_model()
        first = {n: reps[0] for n, reps in by_model.items()}
        cases: dict[str, object] = {}

        def direct(agent: AgentSpec, srv: servers.ModelServer) -> AgentSpec:
            return agent.model_copy(update={"model": srv.litellm_model, "api_base": srv.api_base})

        group_cfg = MoAConfig(
            layers=[
                LayerSpec(
                    proposers=[
                        a.model_copy(update={"model": servers.group_name(n)})
                        for a, n in zip(props, names, strict=False)
                    ]
                )
            ],
            aggregator=props[0],
            num_retries=0,
            timeout=600,
            deployments={g: [DeploymentSpec(**d) for d in deps] for g, deps in two.deployments().items()},
        )
        router = routing.router_for(group_cfg)
        llm.ensure_ready()
        # warm-up: every server, the in-process pools, litellm's clients
        await _burst([direct(a, s) for a, n in zip(props, names, strict=False) for s in by_model[n]])
        local.warm_up(names)
        await _burst(props)

        print("| runs at once | calls | case | tokens | wall s (median) | tok/s | calls per replica |")
        print("|---:|---:|---|---:|---:|---:|---|")
        for runs in runs_list:
            cases = {
                "in-process local/": lambda runs=runs: _burst(props * runs),
                "1 replica": lambda runs=runs: _burst(
                    [direct(a, first[n]) for a, n in zip(props, names, strict=False)] * runs
                ),
                "2 replicas (Router)": lambda runs=runs: _burst(
                    [a.model_copy(update={"model": servers.group_name(n)}) for a, n in zip(props, names, strict=False)]
                    * runs,
                    router,
                ),
                "2 pinned": lambda runs=runs: _burst(
                    [direct(a, by_model[n][i % 2]) for i in range(runs) for a, n in zip(props, names, strict=False)]
                ),
            }
            if runs == 1:
                del cases["2 pinned"]  # one call per model: nothing to split, same as "1 replica"
            for label, make in cases.items():
                samples = []
                spread: list[str | None] = []
                for _ in range(repeats):
                    tokens, wall, deps = await make()  # type: ignore[operator]
                    samples.append((tokens, wall))
                    spread += deps
                tokens = int(statistics.median(s[0] for s in samples))
                wall = statistics.median(s[1] for s in samples)
                split = ""
                if any(spread):
                    counts: dict[str, int] = {}
                    for d in spread:
                        key = (d or "?").split(" ")[1] if d else "?"
                        counts[key] = counts.get(key, 0) + 1
                    split = " / ".join(f"{k}: {v}" for k, v in sorted(counts.items())) + f" (over {repeats} repeats)"
                elif label == "2 pinned":
                    split = "even by construction"
                print(f"| {runs} | {3 * runs} | {label} | {tokens} | {wall:.2f} | {tokens / wall:.1f} | {split} |")
    print(f"\n(part 1 took {time.perf_counter() - t_start:.0f} s)\n")


class _ChildFake:
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


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


async def bench_overhead(calls: int) -> None:
    print(
        f"## Router overhead on the fake server (8 tokens, no delay), {calls} sequential calls, then 10 bursts of 8\n"
    )
    fake = _ChildFake()
    try:
        model = "openai/fake-bench@tokens=8"
        direct = AgentSpec(model=model, api_base=fake.url, max_tokens=16)
        cfg = MoAConfig(
            layers=[LayerSpec(proposers=[AgentSpec(model="pool", max_tokens=16)])],
            aggregator=AgentSpec(model="pool", max_tokens=16),
            num_retries=0,
            timeout=30,
            deployments={
                "pool": [
                    DeploymentSpec(model=model, api_base=fake.url, name="one"),
                    DeploymentSpec(model=model, api_base=fake.url + "/", name="two"),
                ]
            },
        )
        router = routing.router_for(cfg)
        routed = AgentSpec(model="pool", max_tokens=16)
        llm.ensure_ready()
        for _ in range(5):  # warm-up
            await _call(direct)
            await _call(routed, router)
        seq: dict[str, list[float]] = {"direct": [], "Router": []}
        for i in range(calls):  # interleaved, so drift on a busy machine hits both alike
            order = [("direct", direct, None), ("Router", routed, router)]
            if i % 2:
                order.reverse()
            for label, agent, r in order:
                seq[label].append((await _call(agent, r))[1])
        bursts: dict[str, list[float]] = {"direct": [], "Router": []}
        for _ in range(10):
            bursts["direct"].append((await _burst([direct] * 8))[1])
            bursts["Router"].append((await _burst([routed] * 8, router))[1])
        print("| path | sequential call median ms | p90 ms | burst of 8 median ms | p90 ms |")
        print("|---|---:|---:|---:|---:|")
        for label in ("direct", "Router"):
            s, b = seq[label], bursts[label]
            print(
                f"| {label} | {statistics.median(s) * 1000:.1f} | {_pct(s, 0.9) * 1000:.1f} | "
                f"{statistics.median(b) * 1000:.1f} | {_pct(b, 0.9) * 1000:.1f} |"
            )
        d = (statistics.median(seq["Router"]) - statistics.median(seq["direct"])) * 1000
        db = (statistics.median(bursts["Router"]) - statistics.median(bursts["direct"])) * 1000
        print(f"\nRouter minus direct: {d:+.1f} ms per sequential call, {db:+.1f} ms per burst of 8\n")
    finally:
        fake.close()


async def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--runs", default="1,2", help="MoA runs whose proposers go at once (comma-separated)")
    p.add_argument("--calls", type=int, default=40)
    p.add_argument("--parts", default="replicas,overhead")
    args = p.parse_args(argv)
    random.seed(1)
    parts = set(args.parts.split(","))
    busy0, own0, kids0, t0 = _machine_busy(), time.process_time(), _children_cpu(), time.perf_counter()
    print(f"# Model servers and Router ({os.cpu_count()} cores)\n")
    if "replicas" in parts:
        await bench_replicas(args.repeats, args.max_tokens, [int(x) for x in args.runs.split(",")])
    if "overhead" in parts:
        await bench_overhead(args.calls)
    wall = time.perf_counter() - t0
    mine = (time.process_time() - own0) + (_children_cpu() - kids0)
    other = max(0.0, _machine_busy() - busy0 - mine) / wall
    print(
        f"other processes kept about {other:.2f} of {os.cpu_count()} cores busy while this ran "
        "(servers started here count as this benchmark's own)"
    )
    routing.clear_cache()


if __name__ == "__main__":
    asyncio.run(main())
