"""A stored run with a Replay control: it streams again into the live columns, as recorded.

The replay is the engine's own events (`moa_core.replay`) through the live columns of
`ui.streaming`: no model is called and no key is needed. Stop (or any other click) reruns
the page, which ends the replay and shows the stored run again.
"""

from __future__ import annotations

from typing import Any

import streamlit as st
from sqlalchemy.engine import Engine

from moa_core.replay import SPEEDS, timing_is_derived
from moa_core.ui.layout import run_async
from moa_core.ui.run_view import render_run
from moa_core.ui.streaming import stream_replay

DERIVED_NOTE = (
    "This run was recorded before timing was kept: its text streams at a uniform rate "
    "derived from each call's time to first token and latency."
)


def replayable_run(engine: Engine, data: dict[str, Any], *, rater: str = "", key: str = "") -> None:
    """`render_run`, below a Replay button and its speed (1×, 2×, 5×, instant)."""
    running = data["run"]["status"] == "running"
    bar = st.columns([1, 3], vertical_alignment="center")
    speed = bar[1].segmented_control(
        "Replay speed",
        list(SPEEDS),
        default="1×",
        key=f"replay_speed{key}",
        label_visibility="collapsed",
        help="Replay at the recorded pace, faster, or all at once.",
    )
    play = bar[0].button(
        "Replay",
        icon=":material/replay:",
        key=f"replay{key}",
        disabled=running,
        help="Stream this run again as it arrived: no model call, no key." if not running else "Still running.",
    )
    if not play:
        render_run(engine, data, rater=rater, key=key)
        return
    st.button(
        "Stop replay",
        icon=":material/stop_circle:",
        key=f"stop_replay{key}",
        help="End the replay and show the stored run.",
    )
    if timing_is_derived(data):
        st.caption(DERIVED_NOTE)
    run_async(stream_replay(data, SPEEDS[speed or "1×"]))
    st.caption("Replay finished. Stop replay shows the stored run with its ratings and timeline.")


__all__ = ["DERIVED_NOTE", "replayable_run"]
