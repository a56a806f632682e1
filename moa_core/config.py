"""Typed MoA configuration: agents, layers, aggregator, template; JSON/YAML I/O; presets."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from moa_core import settings
from moa_core.inputs import MAX_DEPTH, MAX_INT_DIGITS, InputError, check_value, loads_json, printable
from moa_core.prompts import DEFAULT_AGGREGATOR_TEMPLATE, DRAFTS_PLACEHOLDER, PromptStyle
from moa_core.vocab import StageKind, digest

PRESETS_DIR = settings.PRESETS_DIR

# Parameters that would leak credentials if stored or shown; they are never accepted in
# `extra` (keys come from the environment or secrets.toml, never from a config file).
SECRET_PARAM_NAMES = frozenset({"api_key", "key", "token", "access_token", "secret", "password"})
MAX_NAME_LENGTH = 60


class ConfigError(ValueError):
    """A config that cannot be used; the message names the field and the problem."""


class AgentSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, description="litellm model string, e.g. local/qwen2.5-coder-0.5b")
    label: str | None = Field(default=None, description="display name; defaults to the model")
    system_prompt: str = ""
    temperature: float = Field(default=0.7, ge=0.0, le=2.0)
    max_tokens: int = Field(default=256, ge=1, le=32768)
    api_base: str | None = None
    api_key_env: str | None = Field(
        default=None, description="name of the environment variable holding this agent's key (never the key)"
    )
    context_window: int | None = Field(
        default=None, ge=256, description="input tokens this model accepts, when litellm does not know it"
    )
    extra: dict[str, Any] = Field(default_factory=dict, description="extra litellm parameters")
    prompt_style: PromptStyle | None = Field(
        default=None,
        description="'completion' prompts a base (non-instruction) model with a few-shot question/answer "
        "text instead of a chat template; unset: the local catalog's choice, else 'chat'",
    )

    @field_validator("model")
    @classmethod
    def _strip_model(cls, v: str) -> str:
        v = v.strip()
        if not v:
            raise ValueError("model must not be empty")
        return v

    @field_validator("extra")
    @classmethod
    def _no_secrets(cls, v: dict[str, Any]) -> dict[str, Any]:
        bad = sorted(k for k in v if k.lower() in SECRET_PARAM_NAMES)
        if bad:
            raise ValueError(
                f"{', '.join(bad)} may not be set in a config; put keys in the environment or .streamlit/secrets.toml"
            )
        return v

    @model_serializer(mode="wrap")
    def _omit_unset_prompt_style(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Left out while unset, so configs written before the field keep their stable_hash.
        data = handler(self)
        if data.get("prompt_style") is None:
            data.pop("prompt_style", None)
        return data

    @property
    def display_name(self) -> str:
        return self.label or self.model

    def public_params(self) -> dict[str, Any]:
        """Generation parameters safe to store and show."""
        params: dict[str, Any] = {"temperature": self.temperature, "max_tokens": self.max_tokens}
        if self.api_base:
            params["api_base"] = self.api_base
        params.update({k: v for k, v in self.extra.items() if k.lower() not in SECRET_PARAM_NAMES})
        return params


class DeploymentSpec(BaseModel):
    """One place that serves a Router group: a litellm model string, and where it is."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, description="litellm model string, e.g. openai/smollm2-135m")
    api_base: str | None = None
    api_key_env: str | None = Field(
        default=None, description="name of the environment variable holding this deployment's key (never the key)"
    )
    weight: int = Field(default=1, ge=1, le=1000, description="share of calls under the simple-shuffle strategy")
    name: str | None = Field(default=None, description="shown as the deployment that served a call")
    max_parallel_requests: int | None = Field(default=None, ge=1, description="calls this deployment takes at once")
    extra: dict[str, Any] = Field(default_factory=dict, description="extra litellm parameters")

    _strip_model = field_validator("model")(AgentSpec._strip_model.__func__)  # type: ignore[attr-defined]  # pydantic validators are classmethods; reusing one needs its function
    _no_secrets = field_validator("extra")(AgentSpec._no_secrets.__func__)  # type: ignore[attr-defined]  # pydantic validators are classmethods; reusing one needs its function

    @property
    def display_name(self) -> str:
        if self.name:
            return self.name
        if self.api_base:
            where = self.api_base.split("://", 1)[-1].split("/", 1)[0]
            return f"{self.model} @ {where}"
        return self.model


RoutingStrategy = Literal["simple-shuffle", "least-busy", "latency-based-routing"]
# Router fields left out of dumps (and so of stable_hash, stored configs and saved YAML)
# while they hold their defaults: a config without a Router keeps the hash it always had.
_ROUTER_DEFAULTS: dict[str, Any] = {"deployments": {}, "fallbacks": {}, "routing_strategy": "simple-shuffle"}


class LayerSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    proposers: list[AgentSpec] = Field(min_length=1, max_length=12)


class QuorumSpec(BaseModel):
    """Start the next stage once `k` answers of a parallel stage are in (and, with
    `grace_s`, that many seconds after the k-th, taking whatever else finished by then)."""

    model_config = ConfigDict(extra="forbid")

    k: int = Field(ge=1, le=12)
    grace_s: float = Field(default=0.0, ge=0, le=600)
    # cancel: stop the calls still running; show: let them stream on screen, marked "not used".
    stragglers: Literal["cancel", "show"] = "cancel"


class StageSpec(BaseModel):
    """One stage of a pipeline; every agent of a stage runs concurrently.

    propose: answer (first stage) or refine the previous stage's answers (later stages);
    review: critique the previous answers, anonymised and shuffled per reviewer, and rank
    them; synthesize: write the final answer from the answers (and, `with_reviews`, the
    reviews and the aggregate ranking); select: pick the best answer verbatim.
    """

    model_config = ConfigDict(extra="forbid")

    kind: StageKind
    agents: list[AgentSpec] = Field(min_length=1, max_length=12)
    quorum: QuorumSpec | None = None
    with_reviews: bool = Field(default=False, description="synthesize: also give the reviews and the ranking")
    include_own: bool = Field(
        default=False,
        description="review: count a reviewer's ranking of its own answer (same display name) in the aggregate",
    )

    @model_serializer(mode="wrap")
    def _omit_defaults(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Only what a stage sets is dumped, so adding an option later keeps old hashes.
        data = handler(self)
        for key, default in (("quorum", None), ("with_reviews", False), ("include_own", False)):
            if data.get(key, default) == default:
                data.pop(key, None)
        return data

    @property
    def parallel(self) -> bool:
        return self.kind in (StageKind.PROPOSE, StageKind.REVIEW)


def _check_stages(stages: list[StageSpec]) -> None:
    """The pipeline shapes the engine runs; a ValueError names the stage and the problem."""
    if stages[0].kind != StageKind.PROPOSE:
        raise ValueError("stages.0: the first stage must be 'propose' (someone has to answer first)")
    last = stages[-1]
    if last.kind not in (StageKind.SYNTHESIZE, StageKind.SELECT):
        raise ValueError(f"stages.{len(stages) - 1}: the last stage must be 'synthesize' or 'select'")
    for i, stage in enumerate(stages):
        where = f"stages.{i}"
        if stage.kind in (StageKind.SYNTHESIZE, StageKind.SELECT):
            if i != len(stages) - 1:
                raise ValueError(f"{where}: '{stage.kind}' writes the final answer, so it must be the last stage")
            if len(stage.agents) != 1:
                raise ValueError(f"{where}: '{stage.kind}' takes exactly one agent")
        if stage.kind == StageKind.REVIEW and stages[i - 1].kind != StageKind.PROPOSE:
            raise ValueError(f"{where}: a review stage reviews the answers of a propose stage right before it")
        if stage.with_reviews and (stage.kind != StageKind.SYNTHESIZE or stages[i - 1].kind != StageKind.REVIEW):
            raise ValueError(f"{where}: with_reviews needs a synthesize stage right after a review stage")
        if stage.quorum is not None:
            if not stage.parallel:
                raise ValueError(f"{where}: a quorum applies to propose and review stages")
            if stage.quorum.k > len(stage.agents):
                raise ValueError(
                    f"{where}: quorum k={stage.quorum.k} is more than the stage's {len(stage.agents)} agents"
                )


class MoAConfig(BaseModel):
    """A pipeline, written either as `stages` or (the original shape, still the default)
    as `layers` of proposers and one `aggregator`.

    With `stages`, `layers` and `aggregator` are derived (the propose stages, the last
    stage's agent) for code that only needs "who answers" and "who writes the final answer",
    and are left out of dumps; without `stages`, dumps and `stable_hash` are what they were
    before stages existed.
    """

    model_config = ConfigDict(extra="forbid")

    name: str = "custom"
    description: str = ""
    layers: list[LayerSpec] = Field(min_length=1, max_length=6)
    aggregator: AgentSpec
    stages: list[StageSpec] = Field(default_factory=list, max_length=8)
    aggregator_template: str = DEFAULT_AGGREGATOR_TEMPLATE
    baselines: list[AgentSpec] = Field(default_factory=list)
    timeout: float = Field(default=120.0, gt=0, le=3600, description="seconds per call")
    num_retries: int = Field(default=2, ge=0, le=10)
    deployments: dict[str, list[DeploymentSpec]] = Field(
        default_factory=dict,
        description="Router groups: an agent whose model is a group name is served by one of its deployments",
    )
    fallbacks: dict[str, list[str]] = Field(
        default_factory=dict,
        description="group -> models tried in order when every deployment of the group fails",
    )
    routing_strategy: RoutingStrategy = "simple-shuffle"

    @model_validator(mode="before")
    @classmethod
    def _derive_from_stages(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not data.get("stages"):
            return data
        if "layers" in data or "aggregator" in data:
            raise ValueError("give either 'stages' or 'layers' and 'aggregator', not both")
        stages = data["stages"]
        if not isinstance(stages, list):
            return data  # the field validator names the problem
        data = dict(data)
        proposers = [
            s.get("agents") if isinstance(s, dict) else getattr(s, "agents", None)
            for s in stages
            if (s.get("kind") if isinstance(s, dict) else getattr(s, "kind", None)) == StageKind.PROPOSE
        ]
        # A pipeline without a propose stage still gets layers, so _stages_runnable names the problem.
        first = stages[0].get("agents") if stages and isinstance(stages[0], dict) else None
        data["layers"] = [{"proposers": p} for p in proposers] or [{"proposers": first}]
        last = stages[-1]
        agents = last.get("agents") if isinstance(last, dict) else getattr(last, "agents", None)
        data["aggregator"] = agents[0] if isinstance(agents, list) and agents else None
        return data

    @model_validator(mode="after")
    def _stages_runnable(self) -> MoAConfig:
        if self.stages:
            _check_stages(self.stages)
        return self

    @field_validator("aggregator_template")
    @classmethod
    def _template_has_drafts(cls, v: str) -> str:
        if DRAFTS_PLACEHOLDER not in v:
            raise ValueError(f"the template must contain {DRAFTS_PLACEHOLDER} where the drafts go")
        return v

    @model_validator(mode="after")
    def _name_not_blank(self) -> MoAConfig:
        self.name = self.name.strip() or "custom"
        return self

    @model_validator(mode="after")
    def _router_consistent(self) -> MoAConfig:
        for group, deps in self.deployments.items():
            if not group.strip():
                raise ValueError("deployments: a group name must not be empty")
            if not deps:
                raise ValueError(f"deployments.{group}: list at least one deployment")
            names = [d.display_name for d in deps]
            if len(set(names)) != len(names):
                raise ValueError(f"deployments.{group}: two deployments have the same name; set `name` on each")
        for group, targets in self.fallbacks.items():
            if group not in self.deployments:
                raise ValueError(f"fallbacks.{group}: not a group listed under deployments")
            if not targets or any(not t.strip() for t in targets) or group in targets:
                raise ValueError(f"fallbacks.{group}: list other model names or groups to fall back to")
        for agent in self.all_agents():
            if agent.model in self.deployments and (agent.api_base or agent.api_key_env):
                raise ValueError(
                    f"agent {agent.display_name}: {agent.model} is a Router group; put api_base and "
                    "api_key_env on its deployments, not on the agent"
                )
        return self

    @model_serializer(mode="wrap")
    def _omit_default_router(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data = handler(self)
        for key, default in _ROUTER_DEFAULTS.items():
            if key in data and data[key] == default:
                del data[key]
        if data.get("stages"):
            data.pop("layers", None)
            data.pop("aggregator", None)
        else:
            data.pop("stages", None)
        return data

    def pipeline(self) -> list[StageSpec]:
        """The stages the engine runs: `stages`, or layers of proposers then the aggregator."""
        if self.stages:
            return list(self.stages)
        return [StageSpec(kind=StageKind.PROPOSE, agents=layer.proposers) for layer in self.layers] + [
            StageSpec(kind=StageKind.SYNTHESIZE, agents=[self.aggregator])
        ]

    def uses_router(self, agent: AgentSpec) -> bool:
        """Whether this agent's calls go through the litellm Router (its model names a group)."""
        return agent.model in self.deployments

    def all_agents(self) -> list[AgentSpec]:
        """Every agent of every stage, then the baselines."""
        return [*(a for stage in self.pipeline() for a in stage.agents), *self.baselines]

    def stable_hash(self) -> str:
        """Hash of what determines the outputs (name and description excluded)."""
        return digest(self.model_dump(mode="json", exclude={"name", "description"}))

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), indent=2)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


def format_validation_error(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown field"
        elif e["type"] == "missing":
            msg = "required field is missing"
        elif e["type"] == "value_error":
            msg = msg.removeprefix("Value error, ")
        lines.append(msg if not e["loc"] and e["type"] == "value_error" else f"{loc}: {msg}")
    # Field names and group names come from the file and may hold newlines.
    return printable("; ".join(lines))


def name_problem(name: str) -> str | None:
    """Why `name` cannot name a config (None when it can): the length and characters that
    saved-config names allow too (those also limit the characters, being file names)."""
    if len(name) > MAX_NAME_LENGTH:
        return f"at most {MAX_NAME_LENGTH} characters (this one has {len(name)})"
    # Line breaks, escape sequences and bidirectional overrides would make one name look
    # like another, or break the line it is shown on.
    bad = sorted({f"U+{ord(c):04X}" for c in name if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp")})
    if bad:
        return f"control characters are not allowed ({', '.join(bad)})"
    return None


def config_from_dict(data: Any) -> MoAConfig:
    """A config from parsed JSON/YAML (an imported file, a preset, the sidebar editor)."""
    if not isinstance(data, dict):
        raise ConfigError("config must be a mapping with at least 'layers' and 'aggregator'")
    try:
        check_value(data)
    except InputError as err:
        raise ConfigError(f"invalid config: {printable(str(err))}") from None
    try:
        config = MoAConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(f"invalid config: {format_validation_error(err)}") from None
    problem = name_problem(config.name)
    if problem:
        raise ConfigError(f"invalid config: name: {problem}")
    return config


def parse_data(text: str, fmt: str | None = None) -> Any:
    """JSON or YAML text (format guessed when not given) as plain JSON data (see
    `inputs.check_value`); anything else is a ConfigError with a one-line message."""
    fmt = (fmt or ("json" if text.lstrip().startswith("{") else "yaml")).lower()
    try:
        if fmt == "json":
            return loads_json(text)
        data = yaml.safe_load(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"JSON syntax error at line {err.lineno}, column {err.colno}: {err.msg}") from None
    except InputError as err:
        raise ConfigError(f"invalid config: {printable(str(err))}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).strip().splitlines()[0]
        raise ConfigError(f"YAML syntax error{where}: {printable(problem)}") from None
    except RecursionError:
        raise ConfigError(f"invalid config: nested more than {MAX_DEPTH} levels deep") from None
    except ValueError as err:
        # PyYAML's own conversions: an impossible date (2024-13-01), an int too long to convert.
        msg = str(err)
        if "integer string conversion" in msg:
            msg = f"a number with more than {MAX_INT_DIGITS:,} digits"
        raise ConfigError(f"YAML value error: {printable(msg)}") from None
    try:
        check_value(data)
    except InputError as err:
        raise ConfigError(f"invalid config: {printable(str(err))}") from None
    return data


def parse_config_text(text: str, fmt: str | None = None) -> MoAConfig:
    """Parse JSON or YAML text (format guessed when not given)."""
    return config_from_dict(parse_data(text, fmt))


def load_data_file(path: str | Path, what: str = "config file") -> Any:
    """A JSON (``.json``) or YAML file as plain JSON data; ConfigError naming the file otherwise."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{what} not found: {p}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{what} is not UTF-8 text: {p}") from None
    except OSError as err:
        raise ConfigError(f"cannot read {what} {p}: {err.strerror or type(err).__name__}") from None
    return parse_data(text, "json" if p.suffix.lower() == ".json" else "yaml")


def load_config(path: str | Path) -> MoAConfig:
    return config_from_dict(load_data_file(path))


def save_config(config: MoAConfig, path: str | Path) -> Path:
    p = Path(path)
    text = config.to_json() if p.suffix.lower() == ".json" else config.to_yaml()
    p.write_text(text, encoding="utf-8")
    return p


def list_presets(directory: Path = PRESETS_DIR) -> list[str]:
    return sorted(p.stem for p in directory.glob("*.yaml"))


def load_preset(name: str, directory: Path = PRESETS_DIR) -> MoAConfig:
    path = directory / f"{name}.yaml"
    if not path.exists():
        known = ", ".join(list_presets(directory)) or "none"
        raise ConfigError(f"unknown preset '{name}' (known: {known})")
    return load_config(path)


DEFAULT_PRESET = "local-moa"
