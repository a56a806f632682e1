"""Typed MoA configuration: agents, layers, aggregator, template; JSON/YAML I/O; presets."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from moa_core.prompts import DEFAULT_AGGREGATOR_TEMPLATE, DRAFTS_PLACEHOLDER

PRESETS_DIR = Path(__file__).resolve().parent.parent / "data" / "presets"

# Parameters that would leak credentials if stored or shown; they are never accepted in
# `extra` (keys come from the environment or secrets.toml, never from a config file).
SECRET_PARAM_NAMES = frozenset({"api_key", "key", "token", "access_token", "secret", "password"})


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
                f"{', '.join(bad)} may not be set in a config; put keys in the environment "
                "or .streamlit/secrets.toml"
            )
        return v

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

    def all_agents(self) -> list[AgentSpec]:
        agents = [a for layer in self.layers for a in layer.proposers]
        return agents + [self.aggregator] + list(self.baselines)

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
    return "; ".join(lines)


def config_from_dict(data: Any) -> MoAConfig:
    if not isinstance(data, dict):
        raise ConfigError("config must be a mapping with at least 'layers' and 'aggregator'")
    try:
        return MoAConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(f"invalid config: {format_validation_error(err)}") from None


def parse_config_text(text: str, fmt: str | None = None) -> MoAConfig:
    """Parse JSON or YAML text (format guessed when not given)."""
    fmt = (fmt or ("json" if text.lstrip().startswith("{") else "yaml")).lower()
    try:
        data = json.loads(text) if fmt == "json" else yaml.safe_load(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"JSON syntax error at line {err.lineno}, column {err.colno}: {err.msg}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err)
        raise ConfigError(f"YAML syntax error{where}: {problem}") from None
    return config_from_dict(data)


def load_config(path: str | Path) -> MoAConfig:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {p}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file is not UTF-8 text: {p}") from None
    fmt = "json" if p.suffix.lower() == ".json" else "yaml"
    return parse_config_text(text, fmt)


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
