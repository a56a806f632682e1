"""How fast each model has been in stored calls: what the pre-run estimate calibrates on."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import Engine, select

from moa_core.store.models import Generation, table_of
from moa_core.store.queries import read_rows
from moa_core.vocab import GenerationStatus

GEN = table_of(Generation)
RECENT_CALLS = 30  # per model: recent enough to follow a change of machine or load


@dataclass(frozen=True)
class ModelTiming:
    """One model's recent finished calls, summarised.

    The first token takes `first_token_base + first_token_per_prompt_token × prompt tokens`
    seconds (a least-squares line over the calls; a flat median when their prompts are all
    alike); then tokens arrive at `tokens_per_second`; an answer uses `output_share` of its
    max_tokens. All measured as the calls ran, so the contention of a MoA layer (three
    models on two cores) is in them; that differs by role (a proposer shares the cores,
    the aggregator has them to itself), hence `roles`: the same summary per role.
    """

    calls: int
    tokens_per_second: float
    first_token_base: float
    first_token_per_prompt_token: float
    output_share: float
    roles: Mapping[str, ModelTiming] = field(default_factory=dict, compare=False)

    def for_role(self, role: str) -> ModelTiming:
        return self.roles.get(role, self)

    def first_token_seconds(self, prompt_tokens: int) -> float:
        return self.first_token_base + self.first_token_per_prompt_token * prompt_tokens


def _line(points: list[tuple[float, float]]) -> tuple[float, float]:
    """(intercept, slope) of y on x, both kept >= 0; a flat median when x does not vary."""
    xs = [x for x, _ in points]
    ys = [y for _, y in points]
    x_mean, y_mean = statistics.fmean(xs), statistics.fmean(ys)
    var = sum((x - x_mean) ** 2 for x in xs)
    if var <= 0 or max(xs) - min(xs) < 0.25 * max(xs):
        return statistics.median(ys), 0.0
    slope = max(0.0, sum((x - x_mean) * (y - y_mean) for x, y in points) / var)
    return max(0.0, y_mean - slope * x_mean), slope


def summarise(rows: Sequence[dict[str, Any]]) -> ModelTiming | None:
    """A timing from one model's calls (prompt_tokens, completion_tokens, ttft, latency, params)."""
    speeds, ttfts, shares = [], [], []
    for r in rows:
        ttft, latency, done = r["ttft"], r["latency"], r["completion_tokens"]
        if ttft is None or latency is None or done <= 1 or latency <= ttft:
            continue
        # The first token arrives at ttft; the other done-1 in the time after it.
        speeds.append((done - 1) / (latency - ttft))
        ttfts.append((float(r["prompt_tokens"]), float(ttft)))
        max_tokens = (r["params"] or {}).get("max_tokens")
        if isinstance(max_tokens, int) and max_tokens > 0:
            shares.append(min(1.0, done / max_tokens))
    if not speeds:
        return None
    base, per_token = _line(ttfts)
    share = statistics.median(shares) if shares else 1.0
    return ModelTiming(len(speeds), statistics.median(speeds), base, per_token, share)


def model_timings(engine: Engine, models: Sequence[str], recent: int = RECENT_CALLS) -> dict[str, ModelTiming]:
    """Timings of the given models from their last `recent` finished calls each; models
    without any are left out (the estimate then uses its defaults)."""
    out: dict[str, ModelTiming] = {}
    for model in sorted(set(models)):
        rows = read_rows(
            engine,
            select(GEN.c.role, GEN.c.prompt_tokens, GEN.c.completion_tokens, GEN.c.ttft, GEN.c.latency, GEN.c.params)
            .where(GEN.c.model == model, GEN.c.status == GenerationStatus.DONE, GEN.c.ttft.is_not(None))
            .order_by(GEN.c.started_at.desc())
            .limit(recent),
        )
        timing = summarise(rows)
        if timing is None:
            continue
        roles = {role: summarise([r for r in rows if r["role"] == role]) for role in {r["role"] for r in rows}}
        out[model] = replace(timing, roles={k: v for k, v in roles.items() if v is not None})
    return out
