"""The pre-run estimate against the measured wall time of the bundled local presets.

Run from the repo root: .venv/bin/python benchmarks/estimate_accuracy.py [--runs 2] [--presets a,b]

A fresh SQLite file in a temporary directory; for each preset, `--runs` runs of the same
question, recorded as the app records them. Before each run the estimate is computed as the
Playground shows it: from the defaults before the first run, then calibrated on the runs
stored so far (moa_core.store.timings). Models are loaded before the first run, so load time
is left out, as in the app after its warm-up.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from moa_core.config import load_preset  # noqa: E402
from moa_core.engine import run_moa  # noqa: E402
from moa_core.estimate import estimate  # noqa: E402
from moa_core.events import RunDone  # noqa: E402
from moa_core.providers import llm, local  # noqa: E402
from moa_core.store import Recorder, open_db  # noqa: E402
from moa_core.store.timings import model_timings  # noqa: E402

QUESTION = "Why is the sky blue?"


async def one_run(engine, preset: str) -> tuple[float, str]:
    cfg = load_preset(preset)
    t0 = time.perf_counter()
    status = "?"
    async for ev in Recorder(engine).record(run_moa(QUESTION, cfg, kind="benchmark")):
        if isinstance(ev, RunDone):
            status = ev.status
    return time.perf_counter() - t0, status


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--presets", default="local-moa,moa-lite-local,same-model-varied")
    args = ap.parse_args()
    llm.ensure_ready()
    engine = open_db(f"sqlite:///{tempfile.mkdtemp()}/estimate.db")
    print("| preset | run | estimate basis | estimate s | measured s | estimate / measured |")
    print("|---|---:|---|---:|---:|---:|")
    for preset in args.presets.split(","):
        cfg = load_preset(preset)
        models = [a.model for a in cfg.all_agents()]
        # The stages as the CLI preloads them: the first layer runs beside the baselines.
        stages = [[a.model for a in cfg.layers[0].proposers] + [b.model for b in cfg.baselines]]
        stages += [[a.model for a in layer.proposers] for layer in cfg.layers[1:]] + [[cfg.aggregator.model]]
        local.preload(local.instances_needed(stages))
        for i in range(1, args.runs + 1):
            est = estimate(cfg, QUESTION, timings=model_timings(engine, models))
            wall, status = await one_run(engine, preset)
            basis = "stored runs" if est.calibrated else "defaults"
            print(
                f"| {preset} | {i} | {basis} | {est.seconds:.1f} | {wall:.1f}{'' if status == 'done' else ' ' + status}"
                f" | {est.seconds / wall:.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    asyncio.run(main())
