"""Local throughput: the local-moa preset's three proposers generating at once vs one after another.

Run from the repo root: .venv/bin/python benchmarks/local_throughput.py [--max-tokens N] [--repeats R] [--direct]

Each proposer of moa_core/resources/presets/local-moa.yaml answers a fixed prompt with a fixed
max_tokens and temperature 0 (greedy, so both modes generate the same tokens). The
models are loaded and warmed up first, so load time is excluded. "sequential" runs the
three calls one after another, "concurrent" runs them at once (as a MoA layer does);
both report total completion tokens / wall time. Calls go through llm.stream_chat
(litellm -> the local provider -> llama-cpp), the same path the engine uses; --direct
calls moa_core.providers.local.stream_local instead, skipping litellm.

Each local instance generates on one thread (n_threads=1, see providers/local.py), so on
an otherwise idle machine with C cores the concurrent speedup is bounded by about
min(C, 3) and by the slowest model (the concurrent wall time is the longest call).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from moa_core.config import AgentSpec, load_preset  # noqa: E402
from moa_core.providers import llm, local  # noqa: E402

PROMPT = "Explain in detail why the sky is blue during the day and red at sunset."
TARGET = 1.5


async def one_call(agent: AgentSpec, direct: bool) -> tuple[int, float]:
    """(completion tokens, seconds) for one call."""
    messages = [{"role": "user", "content": PROMPT}]
    t0 = time.perf_counter()
    if direct:
        name = agent.model.split("/", 1)[1]
        params = {"temperature": agent.temperature, "max_tokens": agent.max_tokens}
        tokens = 0
        async for chunk in local.stream_local(name, messages, params):
            if (chunk["choices"][0].get("delta") or {}).get("content"):
                tokens += 1  # llama-cpp streams one token per chunk
        return tokens, time.perf_counter() - t0
    result = llm.StreamResult()
    async for _ in llm.stream_chat(agent, messages, result, timeout=600, num_retries=0):
        pass
    return result.completion_tokens, time.perf_counter() - t0


def _machine_busy() -> float:
    """CPU seconds all processes on the machine have spent busy (from /proc/stat; 0 if unavailable)."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except OSError:
        return 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


@dataclass
class Sample:
    wall: float
    per: list[tuple[int, float]]  # (tokens, seconds) per model
    own_cores: float  # CPU of this process / wall
    other_cores: float  # CPU of every other process on the machine / wall

    @property
    def tokens(self) -> int:
        return sum(t for t, _ in self.per)

    @property
    def rate(self) -> float:
        return self.tokens / self.wall


async def measure(mode: str, agents: list[AgentSpec], direct: bool) -> Sample:
    busy0, cpu0, t0 = _machine_busy(), time.process_time(), time.perf_counter()
    if mode == "sequential":
        per = [await one_call(a, direct) for a in agents]
    else:
        per = list(await asyncio.gather(*(one_call(a, direct) for a in agents)))
    wall = time.perf_counter() - t0
    own = time.process_time() - cpu0
    return Sample(wall, per, own / wall, max(0.0, (_machine_busy() - busy0 - own) / wall))


async def bench(max_tokens: int, repeats: int, direct: bool) -> None:
    preset = load_preset("local-moa")
    agents = [a.model_copy(update={"temperature": 0.0, "max_tokens": max_tokens}) for a in preset.layers[0].proposers]
    names = [a.model.split("/", 1)[1] for a in agents]
    missing = [n for n in names if n not in {s.name for s in local.available_local_models()}]
    if missing:
        sys.exit(f"local models not installed: {', '.join(missing)}")
    llm.ensure_ready()
    load_s = local.warm_up(names)
    warm_agents = [a.model_copy(update={"max_tokens": 8}) for a in agents]
    await measure("concurrent", warm_agents, direct)  # first generation of each instance, litellm setup
    await measure("sequential", warm_agents, direct)

    results: dict[str, list[Sample]] = {"sequential": [], "concurrent": []}
    for i in range(repeats):  # alternate the order so drifting background load hits both modes
        for mode in ("sequential", "concurrent") if i % 2 == 0 else ("concurrent", "sequential"):
            results[mode].append(await measure(mode, agents, direct))

    print(
        f"# Local throughput: local-moa proposers ({'stream_local direct' if direct else 'llm.stream_chat via litellm'})\n"
    )
    print(
        f"prompt: {PROMPT!r}; max_tokens {max_tokens}; temperature 0; {repeats} repeats per mode (alternating "
        f"order), median; models loaded + verified in {load_s:.1f}s before timing (excluded); "
        f"{os.cpu_count()} cores; n_threads=1 per instance\n"
    )
    print(
        "| mode | wall s | completion tokens | tokens/s (median) | tokens/s (best) | cores used by us | cores used by other processes |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    rate: dict[str, float] = {}
    best: dict[str, float] = {}
    for mode, runs in results.items():
        rate[mode] = statistics.median(r.rate for r in runs)
        best[mode] = max(r.rate for r in runs)
        print(
            f"| {mode} | {statistics.median(r.wall for r in runs):.2f} | {statistics.median(r.tokens for r in runs):.0f} | "
            f"{rate[mode]:.1f} | {best[mode]:.1f} | {statistics.median(r.own_cores for r in runs):.2f} | "
            f"{statistics.median(r.other_cores for r in runs):.2f} |"
        )
    speedup = rate["concurrent"] / rate["sequential"]
    print(
        f"\nspeedup (concurrent / sequential tokens/s): {speedup:.2f}x median, "
        f"{best['concurrent'] / best['sequential']:.2f}x best-of-{repeats} (target >= {TARGET}x) "
        f"-> {'OK' if speedup >= TARGET else 'BELOW TARGET'}"
    )
    other = statistics.median(r.other_cores for rs in results.values() for r in rs)
    if other > 0.3:
        print(
            f"warning: other processes kept {other:.2f} of {os.cpu_count()} cores busy during the runs; "
            "the concurrent mode needs the idle cores, so its speedup is understated"
        )
    print("\n| model | tokens | alone s | alone tok/s | concurrent s | concurrent tok/s |")
    print("|---|---:|---:|---:|---:|---:|")
    for j, name in enumerate(names):
        seq = [r.per[j] for r in results["sequential"]]
        con = [r.per[j] for r in results["concurrent"]]
        s_tok, s_t = statistics.median(t for t, _ in seq), statistics.median(x for _, x in seq)
        c_tok, c_t = statistics.median(t for t, _ in con), statistics.median(x for _, x in con)
        print(f"| {name} | {s_tok:.0f} | {s_t:.2f} | {s_tok / s_t:.1f} | {c_t:.2f} | {c_tok / c_t:.1f} |")
    tok_seq = sorted({r.tokens for r in results["sequential"]})
    tok_con = sorted({r.tokens for r in results["concurrent"]})
    if tok_seq != tok_con:
        print(f"\nnote: token counts differ between modes ({tok_seq} vs {tok_con}); tokens/s still compares fairly")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=4)
    ap.add_argument("--direct", action="store_true", help="call local.stream_local directly (no litellm)")
    args = ap.parse_args()
    asyncio.run(bench(args.max_tokens, args.repeats, args.direct))


if __name__ == "__main__":
    main()
