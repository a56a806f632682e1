"""Stored answers for campaign tests and the campaign benchmark, written in bulk (no model calls)."""

from __future__ import annotations

import itertools
import time

from sqlalchemy import Engine, insert, select

from moa_core.store.campaigns import PairSpec
from moa_core.store.db import write_transaction
from moa_core.store.models import Generation, Run, table_of

RUN, GEN = table_of(Run), table_of(Generation)


def seed_answers(engine: Engine, questions: int, contenders: int, prefix: str = "q") -> list[PairSpec]:
    """One finished answer per (question, contender), and every pair of contenders per question."""
    t = time.time()
    runs, gens = [], []
    names = [f"model-{c}" for c in range(contenders)]
    for q in range(questions):
        for c, name in enumerate(names):
            rid = f"{prefix}{q}-{c}"
            runs.append(
                {"id": rid, "created_at": t, "kind": "eval", "question": f"Question {q}?", "history": [],
                 "config": {}, "status": "done", "preset": name, "question_set": "bench"}
            )  # fmt: skip
            gens.append(
                {"run_id": rid, "call_id": "final", "role": "baseline", "layer": 0, "slot": 0, "model": name,
                 "label": name, "params": {}, "text": f"Answer {q}.{c}", "started_at": t, "status": "done"}
            )  # fmt: skip
    with write_transaction(engine) as conn:
        for i in range(0, len(runs), 500):
            conn.execute(insert(RUN), runs[i : i + 500])
            conn.execute(insert(GEN), gens[i : i + 500])
        ids = {
            r: int(g) for r, g in conn.execute(select(GEN.c.run_id, GEN.c.id).where(GEN.c.run_id.like(f"{prefix}%")))
        }
    return [
        PairSpec(f"{prefix}{q}", names[a], names[b], ids[f"{prefix}{q}-{a}"], ids[f"{prefix}{q}-{b}"])
        for q in range(questions)
        for a, b in itertools.combinations(range(contenders), 2)
    ]
