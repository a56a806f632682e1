"""Configs a user saved under a name: YAML files in <data dir>/configs/ (git-ignored in a checkout)."""

from __future__ import annotations

import re
from pathlib import Path

from moa_core import settings
from moa_core.config import MAX_NAME_LENGTH, MoAConfig, load_config, name_problem, save_config


def saved_dir() -> Path:
    """<data dir>/configs/, or MOA_SAVED_CONFIGS_DIR (read at each call, so tests and deployments can move it)."""
    return settings.current().saved_configs_dir


# Also a file name: fewer characters than an imported config's name may use.
_NAME = re.compile(rf"^[A-Za-z0-9][A-Za-z0-9 _.-]{{0,{MAX_NAME_LENGTH - 1}}}$")


class SavedConfigError(ValueError):
    pass


def _path(name: str, directory: Path) -> Path:
    name = name.strip()
    if name_problem(name) or not _NAME.fullmatch(name) or ".." in name:
        raise SavedConfigError(
            "Config names use letters, digits, spaces, '.', '_' and '-' "
            f"(1-{MAX_NAME_LENGTH} characters, starting with a letter or digit)."
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
