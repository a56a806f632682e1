"""Before a run: how many calls, tokens, how much money and time a config will take.

Pure arithmetic on the config; output lengths are taken at their max_tokens, so the
estimate is an upper bound for tokens and cost. Time is calibrated on how fast each model
has been in stored runs (`timings`, from moa_core.store.timings) when there are any: its
speed, its time to first token for a prompt that long, and how much of max_tokens its
answers use; models never run before fall back to the measured defaults below.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from moa_core.config import AgentSpec, MoAConfig
from moa_core.providers import local
from moa_core.store.timings import ModelTiming
from moa_core.vocab import STAGE_ROLE, StageKind

# Measured on the 2-core reference machine (README, benchmarks/local_throughput.py);
# remote providers are assumed to stream about this fast after a short wait.
LOCAL_TOKENS_PER_SECOND = {"qwen2.5-coder-0.5b": 58.0, "smollm2-135m": 155.0, "gemma3-270m": 110.0}
LOCAL_PROMPT_TOKENS_PER_SECOND = 300.0
REMOTE_TOKENS_PER_SECOND = 60.0
REMOTE_FIRST_TOKEN_SECONDS = 0.8
CHARS_PER_TOKEN = 4


@dataclass(frozen=True)
class Estimate:
    calls: int
    prompt_tokens: int
    completion_tokens: int
    cost: float | None  # None: a model's price is unknown
    seconds: float
    all_local: bool
    calibrated: bool = False  # some model's time came from its stored runs

    @property
    def cost_label(self) -> str:
        if self.all_local:
            return "free, local"
        if self.cost is None:
            return "unknown (a model has no known price)"
        return f"≤ ${self.cost:.4f}"


def _is_local(agent: AgentSpec) -> bool:
    return agent.model.startswith(f"{local.PROVIDER}/")


def _call_seconds(agent: AgentSpec, prompt_tokens: int, timing: ModelTiming | None = None) -> float:
    if timing is not None:
        return timing.first_token_seconds(prompt_tokens) + agent.max_tokens * timing.output_share / max(
            timing.tokens_per_second, 1e-3
        )
    if _is_local(agent):
        speed = LOCAL_TOKENS_PER_SECOND.get(agent.model.split("/", 1)[1], 60.0)
        return prompt_tokens / LOCAL_PROMPT_TOKENS_PER_SECOND + agent.max_tokens / speed
    return REMOTE_FIRST_TOKEN_SECONDS + agent.max_tokens / REMOTE_TOKENS_PER_SECOND


def _price(agent: AgentSpec, prompt_tokens: int, completion_tokens: int) -> float | None:
    if _is_local(agent):
        return 0.0
    import litellm

    try:
        p, c = litellm.cost_per_token(
            model=agent.model, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens
        )
    except Exception:
        return None
    return float(p + c)


def estimate(
    config: MoAConfig, question: str = "", history_chars: int = 0, timings: Mapping[str, ModelTiming] | None = None
) -> Estimate:
    """`timings`: stored speeds by model string (store.timings.model_timings), for the calibration."""
    timings = timings or {}
    q_tokens = max(1, (len(question) + history_chars) // CHARS_PER_TOKEN) + 20
    template_tokens = len(config.aggregator_template) // CHARS_PER_TOKEN
    calls = prompt = completion = 0
    cost: float | None = 0.0
    seconds = 0.0
    prev_outputs = 0  # tokens of the previous layer's drafts

    def add(agent: AgentSpec, prompt_tokens: int, role: str) -> float:
        nonlocal calls, prompt, completion, cost
        calls += 1
        prompt += prompt_tokens
        completion += agent.max_tokens
        price = _price(agent, prompt_tokens, agent.max_tokens)
        cost = None if cost is None or price is None else cost + price
        timing = timings.get(agent.model)
        return _call_seconds(agent, prompt_tokens, timing.for_role(role) if timing else None)

    reviews = 0  # tokens of a review stage's critiques (a chairman with_reviews reads them too)
    stages = config.pipeline()
    for k, stage in enumerate(stages[:-1]):
        role = STAGE_ROLE[stage.kind]
        per_prompt = q_tokens + (template_tokens + prev_outputs if k else 0)
        times = sorted(add(a, per_prompt + len(a.system_prompt) // CHARS_PER_TOKEN, role) for a in stage.agents)
        # With a quorum the next stage starts at the k-th answer.
        seconds += times[stage.quorum.k - 1] if stage.quorum else times[-1]
        outputs = sum(a.max_tokens for a in stage.agents)
        if stage.kind == StageKind.REVIEW:
            reviews = outputs
        else:
            prev_outputs = outputs
    last = stages[-1]
    extra = reviews if last.with_reviews else 0
    seconds += add(last.agents[0], q_tokens + template_tokens + prev_outputs + extra, STAGE_ROLE[last.kind])
    # Baselines run alongside the layers; they only lengthen the run if they are slower.
    base = [add(a, q_tokens, "baseline") for a in config.baselines]
    seconds = max([seconds, *base])
    all_local = all(_is_local(a) for a in config.all_agents())
    calibrated = any(a.model in timings for a in config.all_agents())
    return Estimate(calls, prompt, completion, cost, seconds, all_local, calibrated)
