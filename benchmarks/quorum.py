"""Quorum: MoA wall time with the next stage starting after k = 4 of 5 answers vs all 5.

Run from the repo root: .venv/bin/python benchmarks/quorum.py [--runs 30] [--seed 13]

The fake OpenAI server (tests/fake_openai.py, in a child process) answers each call in a
duration drawn from a lognormal distribution (median 1 s, sigma 0.6) with a seeded RNG:
every run draws six durations, five proposers and the aggregator, and runs the same
durations twice, once with `quorum: {k: 4}` on the propose stage (the straggler is
cancelled) and once waiting for all five. The two are run alternately so machine load
hits both alike. Reports the median and p90 wall time of each and the cut.
See benchmarks/README.md for results.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from benchmarks.overhead import _ChildServer, _machine_busy  # noqa: E402
from moa_core.config import AgentSpec, MoAConfig, QuorumSpec, StageSpec  # noqa: E402
from moa_core.engine import collect, run_moa  # noqa: E402
from moa_core.events import RunDone  # noqa: E402
from moa_core.providers import llm  # noqa: E402
from moa_core.vocab import StageKind  # noqa: E402

PROPOSERS = 5
K = 4
MEDIAN_S = 1.0
SIGMA = 0.6
TOKENS = 5
DELAY = 0.02
TARGET_P90, TARGET_MEDIAN = 0.25, 0.10


def agent(url: str, name: str, seconds: float) -> AgentSpec:
    """A fake call that takes `seconds`: TOKENS tokens DELAY apart, the first after the rest."""
    ttft = max(seconds - (TOKENS - 1) * DELAY, 0.0)
    return AgentSpec(model=f"openai/fake-{name}@tokens={TOKENS},delay={DELAY},ttft={ttft:.3f}", api_base=url)


def config(url: str, run: int, durations: list[float], k: int | None) -> MoAConfig:
    props = [agent(url, f"r{run}p{i}", d) for i, d in enumerate(durations[:PROPOSERS])]
    quorum = QuorumSpec(k=k) if k is not None else None
    return MoAConfig(
        name=f"quorum-{k or 'all'}",
        stages=[
            StageSpec(kind=StageKind.PROPOSE, agents=props, quorum=quorum),
            StageSpec(kind=StageKind.SYNTHESIZE, agents=[agent(url, f"r{run}agg", durations[PROPOSERS])]),
        ],
        num_retries=0,
        timeout=60,
    )


async def one(url: str, run: int, durations: list[float], k: int | None) -> float:
    t0 = time.perf_counter()
    events = await collect(run_moa("q", config(url, run, durations, k)))
    wall = time.perf_counter() - t0
    done = events[-1]
    assert isinstance(done, RunDone) and done.status == "done", done
    return wall


def p90(xs: list[float]) -> float:
    return statistics.quantiles(xs, n=10, method="inclusive")[8]


async def main(runs: int, seed: int) -> None:
    rng = random.Random(seed)
    walls: dict[str, list[float]] = {"all": [], "k": []}
    ideal: dict[str, list[float]] = {"all": [], "k": []}
    busy0, own0, t0 = _machine_busy(), time.process_time(), time.perf_counter()
    with _ChildServer() as server:
        llm.ensure_ready()
        await one(server.url, -1, [0.05] * (PROPOSERS + 1), None)  # warm-up: imports, connections
        for run in range(runs):
            durations = [rng.lognormvariate(math.log(MEDIAN_S), SIGMA) for _ in range(PROPOSERS + 1)]
            props = sorted(durations[:PROPOSERS])
            ideal["all"].append(props[-1] + durations[-1])
            ideal["k"].append(props[K - 1] + durations[-1])
            order = [("all", None), ("k", K)] if run % 2 == 0 else [("k", K), ("all", None)]
            for name, k in order:
                walls[name].append(await one(server.url, run, durations, k))
    elapsed = time.perf_counter() - t0
    others = max(_machine_busy() - busy0 - (time.process_time() - own0), 0.0)
    print(f"{runs} runs, {PROPOSERS} proposers + aggregator, lognormal call time (median {MEDIAN_S} s, sigma {SIGMA})")
    print(f"{'':14}{'median s':>10}{'p90 s':>10}{'ideal med':>11}{'ideal p90':>11}")
    for name, label in (("all", "all 5"), ("k", f"quorum k={K}")):
        w, i = walls[name], ideal[name]
        print(f"{label:14}{statistics.median(w):10.2f}{p90(w):10.2f}{statistics.median(i):11.2f}{p90(i):11.2f}")
    med_cut = 1 - statistics.median(walls["k"]) / statistics.median(walls["all"])
    p90_cut = 1 - p90(walls["k"]) / p90(walls["all"])
    print(f"cut: median {med_cut:.0%} (target >= {TARGET_MEDIAN:.0%}), p90 {p90_cut:.0%} (target >= {TARGET_P90:.0%})")
    print(f"machine: other processes used {others / elapsed:.2f} CPU cores on average over {elapsed:.0f} s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args()
    asyncio.run(main(args.runs, args.seed))
