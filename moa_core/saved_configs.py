"""Configs a user saved under a name: YAML files in data/configs/ (git-ignored)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from moa_core.config import MoAConfig, load_config, save_config

DEFAULT_DIR = Path(__file__).resolve().parent.parent / "data" / "configs"


def saved_dir() -> Path:
    """data/configs/, or MOA_SAVED_CONFIGS_DIR (read at each call, so tests and deployments can move it)."""
    return Path(os.environ.get("MOA_SAVED_CONFIGS_DIR") or DEFAULT_DIR)


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.-]{0,59}$")


class SavedConfigError(ValueError):
    pass


def _path(name: str, directory: Path) -> Path:
    name = name.strip()
    if not _NAME.fullmatch(name) or ".." in name:
        raise SavedConfigError(
            "Config names use letters, digits, spaces, '.', '_' and '-' (1-60 characters, starting with a letter or digit)."
        )
    return directory / f"{name}.yaml"


def list_saved(directory: Path | None = None) -> list[str]:
    directory = directory or saved_dir()
    return sorted(p.stem for p in directory.glob("*.yaml")) if directory.exists() else []


def save_config_named(config: MoAConfig, name: str, directory: Path | None = None) -> str:
    directory = directory or saved_dir()
    path = _path(name, directory)
    directory.mkdir(parents=True, exist_ok=True)
    named = config.model_copy(update={"name": name.strip()})
    try:
        save_config(named, path)
    except OSError as err:
        raise SavedConfigError(f"cannot save {path.name}: {err.strerror}") from None
    return path.stem


def load_saved(name: str, directory: Path | None = None) -> MoAConfig:
    directory = directory or saved_dir()
    path = _path(name, directory)
    if not path.exists():
        raise SavedConfigError(f"no saved config named {name.strip()!r}")
    return load_config(path)
