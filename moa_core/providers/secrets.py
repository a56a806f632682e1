"""Provider keys from `.streamlit/secrets.toml`, copied into the environment for litellm.

Only names that look like provider settings are copied, and never over a value already
in the environment. Keys are never logged, stored or returned to callers.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterable
from pathlib import Path

from moa_core import settings

_SUFFIXES = ("_API_KEY", "_API_BASE", "_API_VERSION", "_BASE_URL")
# Environment variables whose values are credentials (OPENAI_API_KEY, HF_TOKEN, ...).
_SECRET_ENV_SUFFIXES = ("_KEY", "_TOKEN", "_SECRET", "_PASSWORD")
_MIN_SECRET_LEN = 8  # shorter values are too likely to occur in ordinary text


def read_secret_names(path: Path | None = None) -> dict[str, str]:
    path = path or settings.current().secrets_file
    if not path.exists():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError):
        return {}
    return {k.upper(): str(v) for k, v in data.items() if isinstance(v, str) and k.upper().endswith(_SUFFIXES)}


def load_secrets_into_env(path: Path | None = None) -> list[str]:
    """Returns the names (not values) of the settings it copied."""
    copied = []
    for name, value in read_secret_names(path).items():
        if value and not os.environ.get(name):
            os.environ[name] = value
            copied.append(name)
    return copied


def redact_secrets(text: str, names: Iterable[str | None] = ()) -> str:
    """`text` with the value of every credential-like environment variable, and of the
    variables named in `names` (an agent's `api_key_env`), replaced by ***.

    Provider errors can quote the key they were sent (a proxy echoing the request);
    such messages are stored, logged and shown, so they pass through here first.
    """
    wanted = {n for n in os.environ if n.upper().endswith(_SECRET_ENV_SUFFIXES)} | {n for n in names if n}
    for value in sorted({os.environ.get(n) or "" for n in wanted}, key=len, reverse=True):
        if len(value) >= _MIN_SECRET_LEN:
            text = text.replace(value, "***")
    return text
