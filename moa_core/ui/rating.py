"""Rate one output 1-5 with an optional comment; saved at once, shown as saved."""

from __future__ import annotations

from typing import Any

import streamlit as st
from sqlalchemy.engine import Engine

from moa_core.store.db import StoreError
from moa_core.store.ratings import add_rating
from moa_core.ui.safe_text import md_escape

SCORES = [1, 2, 3, 4, 5]


def rating_widget(engine: Engine, gen: dict[str, Any], ratings: list[dict[str, Any]], rater: str) -> None:
    gid = gen["id"]
    for r in ratings:
        note = f" — {md_escape(r['comment'])}" if r["comment"] else ""
        st.caption(f"{'★' * r['score']}{'☆' * (5 - r['score'])} by {md_escape(r['rater'])}{note}")
    if gen["error"] and not gen["text"]:
        return
    with st.popover("Rate"):
        with st.form(key=f"rate-{gid}", clear_on_submit=True, border=False):
            score = st.radio(
                "Score", SCORES, index=None, horizontal=True, key=f"score-{gid}", format_func=lambda s: f"{s}★"
            )
            comment = st.text_input("Comment (optional)", key=f"comment-{gid}", max_chars=2000)
            submitted = st.form_submit_button("Save rating")
        if submitted:
            if not rater:
                st.error("Enter your name in the sidebar first, so the rating has a rater.")
            elif score is None:
                st.error("Pick a score from 1 to 5.")
            else:
                try:
                    add_rating(engine, gid, int(score), comment, rater)
                except (ValueError, StoreError) as err:
                    st.error(f"Not saved: {md_escape(str(err))}")
                else:
                    st.session_state[f"saved-{gid}"] = int(score)
                    st.rerun()
    if st.session_state.get(f"saved-{gid}"):
        st.success(f"Rating saved ({st.session_state[f'saved-{gid}']}★)", icon="✅")
