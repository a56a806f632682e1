"""Who competes in an evaluation: MoA configs and single models, named once.

A contender's name is what the report, the stored votes and the leaderboard call it:
the config name for a MoA config (its aggregator generation is labelled with it), the
agent's label or model string for a single model. Names are unique within an
evaluation; :func:`unique_names` adds " #2", " #3" to repeats.

Contender specs (CLI ``--contender`` and :func:`resolve_contender`):

- a preset name (``local-moa``) or saved config name, or a path to a JSON/YAML config;
- ``<config>:aggregator`` - that config's aggregator model answering alone, with the
  aggregator's own parameters (the "does MoA beat its aggregator" baseline);
- ``<config>:baselines`` - the config's baseline agents, each alone;
- ``<config>:proposers`` - each distinct first-layer proposer alone;
- anything else that looks like a litellm model string (``provider/model`` or a model
  litellm knows) - that model alone with default parameters.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from moa_core.analysis.objective import Role as Shape
from moa_core.analysis.objective import pipeline_shape
from moa_core.config import (
    AgentSpec,
    ConfigError,
    LayerSpec,
    MoAConfig,
    list_presets,
    load_config,
    load_preset,
)
from moa_core.inputs import surrogate_problem, user_path
from moa_core.vocab import digest

Setting = Literal["alone", "aggregator"]
DEFAULT_TIMEOUT = 120.0
DEFAULT_RETRIES = 1
CONFIG_SUFFIXES = (".yaml", ".yml", ".json")
_SELECTORS = ("aggregator", "baselines", "proposers")


class ContenderError(ValueError):
    """A contender spec that cannot be resolved; the message says what was tried."""


@dataclass(frozen=True)
class Collab:
    """Marks a contender as part of the collaborativeness view."""

    model: str  # the model under study (display name)
    setting: Setting


@dataclass(frozen=True)
class Contender:
    """One competitor: exactly one of ``config`` (MoA) or ``agent`` (a single model)."""

    name: str
    config: MoAConfig | None = None
    agent: AgentSpec | None = None
    timeout: float = DEFAULT_TIMEOUT
    num_retries: int = DEFAULT_RETRIES
    collab: Collab | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if (self.config is None) == (self.agent is None):
            raise ValueError("a contender is either a MoA config or a single agent")
        if not self.name.strip():
            raise ValueError("a contender needs a name")

    @property
    def kind(self) -> Literal["moa", "single"]:
        return "moa" if self.config is not None else "single"

    @property
    def shape(self) -> Shape:
        """What the objective report calls it: a model alone, or a pipeline by its stages
        (see :func:`moa_core.analysis.objective.pipeline_shape`)."""
        if self.config is None:
            return "single"
        return pipeline_shape([str(s.kind) for s in self.config.pipeline()])

    def run_config(self) -> MoAConfig:
        """The MoA config as it runs: named after the contender, the final agent (the
        aggregator, or a pipeline's last stage) labelled with the contender's name (so votes
        on its answer carry that name), no baselines (an evaluation runs baselines as
        contenders of their own)."""
        cfg = self.config
        assert cfg is not None
        final = cfg.aggregator.model_copy(update={"label": self.name})
        update: dict[str, Any] = {"name": self.name, "aggregator": final, "baselines": []}
        if cfg.stages:
            update["stages"] = [*cfg.stages[:-1], cfg.stages[-1].model_copy(update={"agents": [final]})]
        return cfg.model_copy(update=update)

    def run_agent(self) -> AgentSpec:
        assert self.agent is not None
        return self.agent.model_copy(update={"label": self.name})

    def fingerprint(self) -> str:
        """Hash of everything that determines the answers; resume only reuses answers
        produced by the same fingerprint."""
        if self.config is not None:
            return f"moa-{self.run_config().stable_hash()}"
        payload = self.run_agent().model_dump(mode="json") | {"timeout": float(self.timeout)}
        return "single-" + digest(payload)

    def models(self) -> list[str]:
        if self.config is not None:
            return sorted({a.model for a in self.run_config().all_agents()})
        return [self.agent.model]  # type: ignore[union-attr]  # no config means an agent (checked at construction)

    def with_max_tokens(self, cap: int | None) -> Contender:
        """Every agent's max_tokens lowered to at most ``cap`` (for quick runs)."""
        if not cap:
            return self
        if self.agent is not None:
            return replace(self, agent=_cap(self.agent, cap))
        cfg = self.config
        assert cfg is not None
        layers = [LayerSpec(proposers=[_cap(a, cap) for a in layer.proposers]) for layer in cfg.layers]
        update: dict[str, Any] = {
            "layers": layers,
            "aggregator": _cap(cfg.aggregator, cap),
            "baselines": [_cap(a, cap) for a in cfg.baselines],
        }
        if cfg.stages:
            update["stages"] = [s.model_copy(update={"agents": [_cap(a, cap) for a in s.agents]}) for s in cfg.stages]
        return replace(self, config=cfg.model_copy(update=update))

    def describe(self) -> str:
        if self.config is not None:
            cfg = self.run_config()
            if cfg.stages:
                return " → ".join(f"{s.kind} {len(s.agents)}" for s in cfg.stages) + f" ({cfg.aggregator.model})"
            sizes = " → ".join(str(len(layer.proposers)) for layer in cfg.layers)
            return f"MoA {sizes} proposers → {cfg.aggregator.model}"
        return f"{self.agent.model} alone"  # type: ignore[union-attr]  # no config means an agent (checked at construction)


def _cap(agent: AgentSpec, cap: int) -> AgentSpec:
    return agent.model_copy(update={"max_tokens": min(agent.max_tokens, cap)})


def moa_contender(config: MoAConfig, name: str | None = None) -> Contender:
    return Contender(
        name=(name or config.name).strip(), config=config, timeout=config.timeout, num_retries=config.num_retries
    )


def single_contender(
    agent: AgentSpec, name: str | None = None, timeout: float = DEFAULT_TIMEOUT, num_retries: int = DEFAULT_RETRIES
) -> Contender:
    return Contender(name=(name or agent.display_name).strip(), agent=agent, timeout=timeout, num_retries=num_retries)


def aggregator_alone(config: MoAConfig) -> Contender:
    """The config's aggregator answering by itself, with the same parameters. Named
    after its model so it reads as "the model" next to the config's name."""
    return single_contender(
        config.aggregator.model_copy(update={"label": None}),
        config.aggregator.model,
        config.timeout,
        config.num_retries,
    )


def proposers_alone(config: MoAConfig) -> list[Contender]:
    """Each distinct first-layer proposer model answering by itself."""
    seen: dict[str, Contender] = {}
    for agent in config.layers[0].proposers:
        if agent.model not in seen:
            seen[agent.model] = single_contender(agent, agent.display_name, config.timeout, config.num_retries)
    return list(seen.values())


def collaborativeness_contenders(config: MoAConfig) -> list[Contender]:
    """The paper's first figure for ``config``: each distinct first-layer proposer model
    alone, and the same model as the aggregator over the *other* proposers' drafts.

    The first contender returned is ``config`` itself: the fixed opponent every other
    contender is judged against (use ``pairs="vs_first"``), so the "alone" and
    "aggregator" win rates of a model are directly comparable. Needs at least two
    distinct proposer models.
    """
    proposers: dict[str, AgentSpec] = {}
    for agent in config.layers[0].proposers:
        proposers.setdefault(agent.model, agent)
    if len(proposers) < 2:
        raise ContenderError("collaborativeness needs a config with at least two different proposer models")
    out = [moa_contender(config)]
    for agent in proposers.values():
        label = agent.display_name
        out.append(
            replace(
                single_contender(agent, f"{label} alone", config.timeout, config.num_retries),
                collab=Collab(label, "alone"),
            )
        )
    for model, agent in proposers.items():
        label = agent.display_name
        others = [a for m, a in proposers.items() if m != model]
        variant = config.model_copy(
            update={
                "name": f"{label} over others",
                "layers": [LayerSpec(proposers=others)],
                "aggregator": agent.model_copy(
                    update={"temperature": config.aggregator.temperature, "max_tokens": config.aggregator.max_tokens}
                ),
                "baselines": [],
            }
        )
        out.append(replace(moa_contender(variant), collab=Collab(label, "aggregator")))
    return unique_names(out)


def unique_names(contenders: Iterable[Contender]) -> list[Contender]:
    seen: dict[str, int] = {}
    out = []
    for c in contenders:
        n = seen.get(c.name, 0) + 1
        seen[c.name] = n
        out.append(c if n == 1 else replace(c, name=f"{c.name} #{n}"))
    return out


# ---------------------------------------------------------------- specs


def _load_named_config(ref: str) -> MoAConfig | None:
    """A preset, a saved config or a config file; None when ``ref`` is none of them."""
    if ref in list_presets():
        return load_preset(ref)
    path = user_path(ref)
    if path.suffix.lower() in CONFIG_SUFFIXES:
        if not path.exists():
            raise ContenderError(f"config file not found: {path}")
        try:
            return load_config(path)
        except ConfigError as err:
            raise ContenderError(f"{path}: {err}") from None
    from moa_core.saved_configs import SavedConfigError, list_saved, load_saved

    try:
        if ref in list_saved():
            return load_saved(ref)
    except (SavedConfigError, ConfigError) as err:
        raise ContenderError(f"saved config {ref!r}: {err}") from None
    return None


def looks_like_model(spec: str) -> bool:
    if "/" in spec and not spec.endswith("/") and " " not in spec:
        return True
    try:
        import litellm

        return spec in litellm.model_cost
    except Exception:
        return False


def resolve_contender(spec: str) -> list[Contender]:
    """One CLI contender spec -> one or more contenders (see the module docstring)."""
    spec = spec.strip()
    if not spec:
        raise ContenderError("empty contender")
    if problem := surrogate_problem(spec):
        raise ContenderError(f"contender {problem}")
    ref, sep, selector = spec.rpartition(":")
    if sep and selector in _SELECTORS and ref:
        config = _load_named_config(ref)
        if config is None:
            raise ContenderError(f"{spec!r}: {ref!r} is not a preset, saved config or config file")
        if selector == "aggregator":
            return [aggregator_alone(config)]
        if selector == "proposers":
            return proposers_alone(config)
        if not config.baselines:
            raise ContenderError(f"{spec!r}: the config {config.name!r} has no baselines")
        return [single_contender(a, a.display_name, config.timeout, config.num_retries) for a in config.baselines]
    config = _load_named_config(spec)
    if config is not None:
        return [moa_contender(config)]
    if looks_like_model(spec):
        return [single_contender(AgentSpec(model=spec))]
    presets = ", ".join(list_presets()) or "none"
    raise ContenderError(
        f"unknown contender {spec!r}: not a preset ({presets}), a saved config, a config file "
        "(.yaml/.json) or a model string like provider/model"
    )


def resolve_contenders(specs: Sequence[str], max_tokens: int | None = None) -> list[Contender]:
    out: list[Contender] = []
    for spec in specs:
        out.extend(resolve_contender(spec))
    return [c.with_max_tokens(max_tokens) for c in unique_names(out)]


# ---------------------------------------------------------------- storage form


def contender_to_dict(c: Contender) -> dict[str, Any]:
    d: dict[str, Any] = {"name": c.name, "kind": c.kind, "timeout": c.timeout, "num_retries": c.num_retries}
    if c.config is not None:
        d["config"] = c.config.model_dump(mode="json")
    else:
        d["agent"] = c.agent.model_dump(mode="json")  # type: ignore[union-attr]  # no config means an agent (checked at construction)
    if c.collab is not None:
        d["collab"] = {"model": c.collab.model, "setting": c.collab.setting}
    return d


def contender_from_dict(d: dict[str, Any]) -> Contender:
    collab = Collab(d["collab"]["model"], d["collab"]["setting"]) if d.get("collab") else None
    common = dict(
        name=d["name"],
        timeout=float(d.get("timeout", DEFAULT_TIMEOUT)),
        num_retries=int(d.get("num_retries", DEFAULT_RETRIES)),
        collab=collab,
    )
    if d.get("config") is not None:
        return Contender(config=MoAConfig.model_validate(d["config"]), **common)
    return Contender(agent=AgentSpec.model_validate(d["agent"]), **common)


__all__ = [
    "Collab",
    "Contender",
    "ContenderError",
    "aggregator_alone",
    "collaborativeness_contenders",
    "contender_from_dict",
    "contender_to_dict",
    "looks_like_model",
    "moa_contender",
    "proposers_alone",
    "resolve_contender",
    "resolve_contenders",
    "single_contender",
    "unique_names",
]
