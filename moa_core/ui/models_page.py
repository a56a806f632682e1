"""Which models and presets can be used now, and why not."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from moa_core.config import ConfigError, MoAConfig, list_presets, load_preset
from moa_core.providers.catalog import config_problems, discover


def models_page() -> None:
    st.title("Models")
    st.caption(
        "Local models run on this machine with no key and no network. Cloud providers appear "
        "once their key is in the environment or `.streamlit/secrets.toml`; keys are never shown or stored."
    )
    configs: list[MoAConfig] = []
    rows: list[dict[str, Any]] = []
    for name in list_presets():
        try:
            cfg = load_preset(name)
        except ConfigError as err:
            rows.append({"preset": name, "available": "no", "layers": None, "calls": None, "why not": str(err)})
            continue
        configs.append(cfg)
        problems = config_problems(cfg)
        rows.append(
            {
                "preset": name,
                "available": "no" if problems else "yes",
                "layers": len(cfg.layers),
                "calls": len(cfg.all_agents()),
                "why not": "; ".join(problems),
            }
        )
    models = discover(configs)
    st.subheader("Models")
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "model": m.model,
                    "provider": m.provider,
                    "available": "yes" if m.available else "no",
                    "title": m.title,
                    "note": m.note,
                }
                for m in models
            ]
        ),
        hide_index=True,
        width="stretch",
    )
    st.subheader("Presets")
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
