"""What a vote compares, by name: the one naming rule of the Arena and the leaderboards.

A single model answering alone is named by its label or model string; the final answer of
a pipeline run (its last stage's generation: the aggregator's, or a selector's, whose text is
the draft it chose) is named after the config, ``"MoA · <config name>"``,
because the aggregator's own model says little about the pipeline that wrote the answer.
The Arena names its contenders with `contender_name` and the store's queries name stored
generations with `contender_names` (the same rule over a frame), so votes and
leaderboards agree.
"""

from __future__ import annotations

import pandas as pd

from moa_core.vocab import FINAL_STAGE_ROLES

MOA_PREFIX = "MoA · "


def contender_name(role: str | None, label: str | None, model: str | None, preset: str | None) -> str:
    """The contender a stored generation stands for (see the module docstring)."""
    if role in FINAL_STAGE_ROLES and preset:
        return f"{MOA_PREFIX}{preset}"
    return label or model or "?"


def contender_names(df: pd.DataFrame, prefix: str = "") -> pd.Series:
    """Vectorised ``contender_name`` over columns ``{prefix}role``, ``label``, ``model``, ``preset``."""
    if df.empty:
        return pd.Series([], index=df.index, dtype="object")
    role, label, model, preset = (df[f"{prefix}{c}"] for c in ("role", "label", "model", "preset"))
    single = label.where(label.fillna("").astype(bool), model).fillna("?")
    moa = MOA_PREFIX + preset.fillna("").astype(str)
    is_moa = role.isin(list(FINAL_STAGE_ROLES)) & preset.fillna("").astype(bool)
    return moa.where(is_moa, single).astype("object")


__all__ = ["MOA_PREFIX", "contender_name", "contender_names"]
