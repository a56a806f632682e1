"""Every setting the app reads from the environment, typed, in one place.

Values are read at each call of `current()` (not at import), so tests and deployments can
change them without reloading modules. A value that cannot be used raises `SettingsError`
with one line naming the variable.

Paths: inside a source checkout (the directory holding `pyproject.toml` and `app.py` above
this package) the app keeps its files in `<checkout>/data/`; an installed wheel keeps them in
the per-user data directory (platformdirs), e.g. `~/.local/share/moa-studio` on Linux.
`MOA_DATA_DIR` overrides both. The README's settings table lists every variable read here
and elsewhere; tests/test_settings_docs.py keeps the two in step.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs

APP_NAME = "moa-studio"
PACKAGE_DIR = Path(__file__).resolve().parent
RESOURCES_DIR = PACKAGE_DIR / "resources"
PRESETS_DIR = RESOURCES_DIR / "presets"
QUESTIONS_DIR = RESOURCES_DIR / "questions"
MIGRATIONS_DIR = PACKAGE_DIR / "store" / "migrations"


class SettingsError(ValueError):
    """An environment variable holds a value the app cannot use; the message is one line."""


def checkout_root() -> Path | None:
    """The source checkout this package runs from, or None for an installed package."""
    root = PACKAGE_DIR.parent
    return root if (root / "pyproject.toml").is_file() and (root / "app.py").is_file() else None


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: str
    saved_configs_dir: Path
    model_cache_dir: Path
    secrets_file: Path
    local_n_ctx: int
    local_pool_size: int
    ollama_api_base: str | None
    run_lease_seconds: float
    fast_path: bool = True

    @property
    def default_sqlite_path(self) -> Path:
        return self.data_dir / "moa.db"


def _positive_int(name: str, raw: str | None, default: int) -> int:
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise SettingsError(f"{name} must be a positive whole number, got {raw[:40]!r}") from None
    if value < 1:
        raise SettingsError(f"{name} must be a positive whole number, got {value}")
    return value


def _seconds(name: str, raw: str | None, default: float, minimum: float) -> float:
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw.strip())
    except ValueError:
        value = math.nan
    if not minimum <= value < math.inf:
        raise SettingsError(f"{name} must be a number of seconds, at least {minimum:g}; got {raw[:40]!r}")
    return value


def _switch(name: str, raw: str | None, default: bool) -> bool:
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name} must be 1 or 0, got {raw[:40]!r}")


def _path(raw: str | None) -> Path | None:
    return Path(raw).expanduser() if raw else None


def default_data_dir() -> Path:
    root = checkout_root()
    return root / "data" if root else Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def current() -> Settings:
    # Each variable is read by its literal name: tests/test_settings_docs.py finds them so.
    data_dir = _path(os.environ.get("MOA_DATA_DIR")) or default_data_dir()
    root = checkout_root()
    return Settings(
        data_dir=data_dir,
        database_url=os.environ.get("DATABASE_URL") or f"sqlite:///{data_dir / 'moa.db'}",
        saved_configs_dir=_path(os.environ.get("MOA_SAVED_CONFIGS_DIR")) or data_dir / "configs",
        model_cache_dir=_path(os.environ.get("MOA_MODEL_CACHE"))
        or Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False)) / "models",
        # Streamlit reads secrets from the working directory's .streamlit/; a checkout uses its own.
        secrets_file=(root or Path.cwd()) / ".streamlit" / "secrets.toml",
        local_n_ctx=_positive_int("MOA_LOCAL_N_CTX", os.environ.get("MOA_LOCAL_N_CTX"), 4096),
        local_pool_size=_positive_int("MOA_LOCAL_POOL_SIZE", os.environ.get("MOA_LOCAL_POOL_SIZE"), 3),
        ollama_api_base=os.environ.get("OLLAMA_API_BASE") or None,
        # How long a run may go without a heartbeat before another process takes it for dead.
        run_lease_seconds=_seconds("MOA_RUN_LEASE_SECONDS", os.environ.get("MOA_RUN_LEASE_SECONDS"), 60, 1),
        # 0: every call goes through litellm (for a provider the fast path serves badly).
        fast_path=_switch("MOA_FAST_PATH", os.environ.get("MOA_FAST_PATH"), True),
    )
