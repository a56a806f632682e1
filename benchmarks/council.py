"""Council on local models: wall time of `council-local` against `local-moa`.

Run from the repo root: .venv/bin/python benchmarks/council.py [--questions short-answer-48] [--count 5]

The first `--count` questions of a bundled question set, each run once through each preset
by the engine (`run_moa`, nothing recorded), with the presets' own max_tokens and without
their baselines (pass `--baselines` to run them too, as the Playground does). The two
presets take turns going first, so a change in machine load hits both alike. Models are
loaded before timing, as in the app after its warm-up. Prints one row per run, then the
median and total wall time per preset, the calls per run, and how busy the rest of the
machine was (load average and /proc/stat). See benchmarks/README.md for results.
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

from benchmarks.overhead import _machine_busy  # noqa: E402
from moa_core.config import MoAConfig, load_preset  # noqa: E402
from moa_core.engine import collect, run_moa  # noqa: E402
from moa_core.evaluation.plan import load_questions  # noqa: E402
from moa_core.events import RunDone  # noqa: E402
from moa_core.providers import llm, local  # noqa: E402

PRESETS = ("local-moa", "council-local")


@dataclass
class Row:
    preset: str
    question: int
    wall: float
    calls: int
    failed: int
    completion_tokens: int
    status: str


def loadavg() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def preload(cfg: MoAConfig, baselines: bool) -> None:
    stages = [[a.model for a in stage.agents] for stage in cfg.pipeline()]
    if baselines:
        stages[0] += [b.model for b in cfg.baselines]
    local.preload(local.instances_needed(stages))


async def one(preset: str, cfg: MoAConfig, qi: int, question: str, baselines: bool) -> Row:
    t0 = time.perf_counter()
    events = await collect(run_moa(question, cfg, baselines=None if baselines else [], kind="benchmark"))
    wall = time.perf_counter() - t0
    done = events[-1]
    assert isinstance(done, RunDone), done
    t = done.totals
    return Row(preset, qi, wall, t.calls, t.failed_calls, t.completion_tokens, str(done.status))


async def main(questions: str, count: int, baselines: bool) -> None:
    qs, _ = load_questions(questions, count)
    configs = {p: load_preset(p) for p in PRESETS}
    llm.ensure_ready()
    for cfg in configs.values():
        preload(cfg, baselines)
    print(f"load average before: {loadavg()}")
    rows: list[Row] = []
    busy0, own0, t0 = _machine_busy(), time.process_time(), time.perf_counter()
    print("| question | preset | wall s | calls | failed | completion tokens | status | load avg (1/5/15 min) |")
    print("|---:|---|---:|---:|---:|---:|---|---|")
    for qi, q in enumerate(qs.questions, 1):
        order = PRESETS if qi % 2 else PRESETS[::-1]
        for preset in order:
            r = await one(preset, configs[preset], qi, q.text, baselines)
            rows.append(r)
            print(
                f"| {qi} | {preset} | {r.wall:.1f} | {r.calls} | {r.failed} | {r.completion_tokens} | {r.status} "
                f"| {loadavg()} |",
                flush=True,
            )
    elapsed = time.perf_counter() - t0
    others = max(_machine_busy() - busy0 - (time.process_time() - own0), 0.0)
    print()
    print(f"{len(qs.questions)} question(s) from {questions}, {'with' if baselines else 'without'} baselines")
    print("| preset | runs | median wall s | total wall s | calls per run | failed calls |")
    print("|---|---:|---:|---:|---:|---:|")
    med: dict[str, float] = {}
    for preset in PRESETS:
        mine = [r for r in rows if r.preset == preset]
        walls = [r.wall for r in mine]
        med[preset] = statistics.median(walls)
        calls = sorted({r.calls for r in mine})
        print(
            f"| {preset} | {len(mine)} | {med[preset]:.1f} | {sum(walls):.1f} "
            f"| {'/'.join(map(str, calls))} | {sum(r.failed for r in mine)} |"
        )
    print(f"council-local / local-moa, median wall: {med['council-local'] / med['local-moa']:.2f}x")
    print(f"load average after: {loadavg()}")
    print(f"machine: other processes used {others / elapsed:.2f} CPU cores on average over {elapsed:.0f} s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", default="short-answer-48", help="a bundled question set or a JSONL file")
    parser.add_argument("--count", type=int, default=5, help="the first N questions")
    parser.add_argument("--baselines", action="store_true", help="run each preset's baselines too")
    args = parser.parse_args()
    asyncio.run(main(args.questions, args.count, args.baselines))
