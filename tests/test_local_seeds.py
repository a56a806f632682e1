"""Sampling seeds with a real local model: concurrent calls differ, a stored seed reproduces.

llama-cpp derives a call's seed from its instance's previous one, starting from a fixed
default, so without a seed per call every fresh instance of a model writes the same text
for the same prompt; and an instance that reuses the cached prefix of its last call
evaluates the prompt differently, so a seed alone did not reproduce a call. SmolLM2 (the
fastest bundled model), 16 tokens per call.
"""

from __future__ import annotations

import asyncio
from contextlib import aclosing
from pathlib import Path

import pytest

from moa_core.config import AgentSpec, LayerSpec, MoAConfig
from moa_core.engine import run_moa, run_single
from moa_core.providers import llm, local
from moa_core.store import Recorder, get_run, open_db
from tests.conftest import requires_local

pytestmark = [pytest.mark.local_models, requires_local]

MODEL = "local/smollm2-135m"
N = 3
QUESTION = "Write one sentence about the sea."


def smol(**kw: object) -> AgentSpec:
    return AgentSpec(model=MODEL, temperature=0.9, max_tokens=16, **kw)  # type: ignore[arg-type]


async def recorded(engine, events) -> str:
    async with aclosing(Recorder(engine).record(events)) as evs:
        return [ev async for ev in evs][0].run_id  # noqa: RUF015 (async generator: no next())


async def test_concurrent_calls_differ_and_a_stored_seed_reproduces_one(tmp_path: Path):
    llm.ensure_ready()
    local.preload({MODEL.split("/", 1)[1]: N})  # N instances: the N proposers really run at once
    engine = open_db(f"sqlite:///{tmp_path / 'seeds.db'}")
    cfg = MoAConfig(name="seeds", layers=[LayerSpec(proposers=[smol() for _ in range(N)])], aggregator=smol())
    run = get_run(engine, await recorded(engine, run_moa(QUESTION, cfg)))
    assert run is not None and run["run"]["status"] == "done", run and run["run"]
    drafts = [g for g in run["generations"] if g["role"] == "proposer"]
    texts = [g["text"] for g in drafts]
    assert len(drafts) == N and all(t.strip() for t in texts)
    assert len(set(texts)) == N, texts
    seeds = [g["params"]["seed"] for g in drafts]
    assert len(set(seeds)) == N

    # Replaying the calls with their stored seeds, again all at once, writes exactly the
    # same texts: each instance's cache still holds a prompt from the first round, which
    # must not change what it writes. run_single sends what a first-layer proposer got.
    async def replay(draft: dict) -> dict:
        again = get_run(
            engine, await recorded(engine, run_single(QUESTION, smol(extra={"seed": draft["params"]["seed"]})))
        )
        assert again is not None
        return again["generations"][0]

    replays = await asyncio.gather(*(replay(d) for d in drafts))
    assert [g["params"]["seed"] for g in replays] == seeds
    assert [g["text"] for g in replays] == texts
