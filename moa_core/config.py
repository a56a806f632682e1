"""Typed MoA configuration: agents, layers, aggregator, template; JSON/YAML I/O; presets."""

from __future__ import annotations

import hashlib
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


class MoAConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = "custom"
    description: str = ""
    layers: list[LayerSpec] = Field(min_length=1, max_length=6)
    aggregator: AgentSpec
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
        return data

    def uses_router(self, agent: AgentSpec) -> bool:
        """Whether this agent's calls go through the litellm Router (its model names a group)."""
        return agent.model in self.deployments

    def all_agents(self) -> list[AgentSpec]:
        agents = [a for layer in self.layers for a in layer.proposers]
        return [*agents, self.aggregator, *list(self.baselines)]

    def stable_hash(self) -> str:
        """Hash of what determines the outputs (name and description excluded)."""
        payload = self.model_dump(mode="json", exclude={"name", "description"})
        blob = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

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
        lines.append(f"{loc}: {msg}")
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
