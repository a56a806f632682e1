"""Shared page plumbing: the store, the rater's name, running coroutines from a script,
CSV downloads."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd
import streamlit as st
from sqlalchemy.engine import Engine

from moa_core import settings
from moa_core.csv_safe import frame_csv
from moa_core.store.db import StoreError, open_db
from moa_core.ui.safe_text import md_escape

T = TypeVar("T")

# Bundled, so the browser asks nothing of a font CDN (a `:material/...:` page icon is
# fetched from fonts.gstatic.com); Streamlit inlines an SVG file as a data: URL.
PAGE_ICON = str(Path(__file__).resolve().parent / "static" / "hub.svg")


@st.cache_resource(show_spinner=False)
def _store(url: str) -> Engine:
    return open_db(url or None)


def store() -> Engine:
    """The database engine, migrated; a clear message and a stop when it cannot open."""
    try:
        return _store(settings.current().database_url)
    except settings.SettingsError as err:
        st.error(f"A setting cannot be used: {md_escape(str(err))}")
        st.stop()
        raise  # unreachable: st.stop() raises
    except StoreError as err:
        st.error(f"The database cannot be used: {md_escape(str(err))}")
        st.info("Set DATABASE_URL to a reachable database, or check that data/ is writable.")
        st.stop()
        raise  # unreachable: st.stop() raises


def rater_name() -> str:
    """Who is rating: the logged-in identity when `st.login` is configured, else a name
    asked once in the sidebar and kept for the whole session."""
    user = getattr(st, "user", None)
    if user is not None and getattr(user, "is_logged_in", False):
        who = user.get("email") or user.get("name") or ""
        st.sidebar.caption(f"Rating as {md_escape(who)}")
        st.session_state.rater = who
        return who
    if "rater" not in st.session_state:
        st.session_state.rater = ""
    name = st.sidebar.text_input(
        "Your name (for ratings)",
        value=st.session_state.rater,
        key="rater_input",
        max_chars=80,
        placeholder="e.g. alice",
    )
    st.session_state.rater = name.strip()
    return st.session_state.rater


def csv_download(df: pd.DataFrame, name: str, key: str, index: bool = False) -> None:
    """A "Download CSV" button for `df`, written spreadsheet-safe. Every table's CSV goes
    through here: the tables' own toolbar export is switched off (client.disableDataExport
    in .streamlit/config.toml) because the browser writes it from the raw cells."""
    st.download_button(
        "Download CSV",
        frame_csv(df, index=index),
        file_name=f"{name}.csv",
        mime="text/csv",
        key=key,
        on_click="ignore",
        icon=":material/download:",
    )


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from the script thread (which has no running loop)."""
    return asyncio.run(coro)


def fmt_seconds(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f}s"


def fmt_cost(x: float | None) -> str:
    if x is None:
        return "–"
    return "free" if x == 0 else f"${x:.5f}"


@st.cache_resource(show_spinner=False)
def warm_local_models() -> bool:
    """Load and verify the bundled models in the background once per server process, so
    the first run does not wait for three model loads in a row."""
    import threading

    from moa_core.providers import local

    try:
        settings.current()
    except settings.SettingsError:
        return False  # every page says which setting is wrong (store())
    threading.Thread(target=local.warm_up, name="warm-local-models", daemon=True).start()
    return True
