"""Blind review: stored runs replayed without names (the MoA answer against a baseline).

The queue is built once per session and rater from finished playground runs the rater
has not voted on yet, shuffled, each pair on random sides. A vote is saved at once
(blind, with the run), then the names are revealed. The same rater reviewing in a second
tab has a queue of its own: the database refuses a second vote on a pair, and that tab
says so without revealing the names.
"""

from __future__ import annotations

import random
from typing import Any

import streamlit as st
from sqlalchemy.engine import Engine

from moa_core import arena
from moa_core.arena import CHOICE_LABELS, CHOICES, SIDES
from moa_core.store.analysis_queries import review_candidates, voted_pairs
from moa_core.store.db import StoreError
from moa_core.store.ratings import DuplicateVoteError, add_vote
from moa_core.ui.rating import rating_widget
from moa_core.ui.safe_text import code_span, md_escape, safe_markdown

KEY = "arena_review"
_rng = random.SystemRandom()


def _build(engine: Engine, rater: str) -> dict[str, Any]:
    pairs = arena.blind_review_pairs(review_candidates(engine), _rng, voted_pairs(engine, rater))
    return {
        "rater": rater,
        "pairs": pairs,
        "pos": 0,
        "choice": None,
        "vote_id": None,
        "error": None,
        "votes": 0,
        "already": False,
    }


def _cast(choice: str, pos: int) -> None:
    state = st.session_state.get(KEY)
    if state is not None and state["pos"] == pos and state["vote_id"] is None and not state["already"]:
        state["choice"] = choice


def _next() -> None:
    state = st.session_state.get(KEY)
    if state is not None:
        state.update(pos=state["pos"] + 1, choice=None, vote_id=None, error=None, already=False)


def _reload() -> None:
    st.session_state.pop(KEY, None)


def _save(engine: Engine, state: dict[str, Any], pair: arena.ReviewPair, rater: str) -> None:
    try:
        state["vote_id"] = add_vote(
            engine, pair.left_id, pair.right_id, CHOICES[state["choice"]], rater, blind=True, run_id=pair.run_id
        )
        state["votes"] += 1
    except DuplicateVoteError:
        state["already"], state["choice"] = True, None
    except (ValueError, StoreError) as err:
        state["error"], state["choice"] = f"The vote could not be saved: {err}", None


def blind_review(engine: Engine, rater: str) -> None:
    st.caption(
        "Answers stored from the Playground, replayed without names: the MoA answer against a model that "
        "answered the same question alone. Vote, then see who was who."
    )
    if not rater:
        st.info("Enter your name in the sidebar to review: every vote is saved with its rater.")
        return
    state = st.session_state.get(KEY)
    if state is None or state["rater"] != rater:
        try:
            state = st.session_state[KEY] = _build(engine, rater)
        except StoreError as err:
            st.error(f"Stored runs cannot be read: {md_escape(str(err))}")
            return
    pairs: list[arena.ReviewPair] = state["pairs"]
    if state["pos"] >= len(pairs):
        done = f" You reviewed {state['votes']} pair(s) in this session." if state["votes"] else ""
        st.info(
            "Nothing left to review: no finished playground run with a baseline that you have not voted on "
            f"yet.{done} Run questions in the Playground (with single-model baselines), then reload."
        )
        st.button("Reload", key="review_reload", on_click=_reload, icon=":material/refresh:")
        return
    pos = state["pos"]
    pair = pairs[pos]
    if state["choice"] is not None and state["vote_id"] is None:
        _save(engine, state, pair, rater)
    voted = state["vote_id"] is not None
    closed = voted or state["already"]
    st.caption(f"Pair {pos + 1} of {len(pairs)}")
    st.markdown("##### Question")
    st.markdown(safe_markdown(pair.question))
    for side, col in zip(SIDES, st.columns(2, border=True), strict=False):
        with col:
            st.markdown(f"#### {side}" + (f" · {code_span(pair.names[side])}" if voted else ""))
            with st.container(key=f"review_answer_{side}"):
                st.markdown(safe_markdown(pair.texts[side]))
            if voted:
                gen_id = pair.left_id if side == "A" else pair.right_id
                rating_widget(engine, {"id": gen_id, "error": None, "text": pair.texts[side]}, [], rater)
    for col, (choice, label) in zip(st.columns(4), CHOICE_LABELS.items(), strict=False):
        col.button(
            label,
            key=f"review_vote_{choice}",
            on_click=_cast,
            args=(choice, pos),
            disabled=closed,
            width="stretch",
            type="primary" if state["choice"] == choice else "secondary",
        )
    if state["error"]:
        st.error(md_escape(state["error"]))
    if state["already"]:
        st.warning(
            "You have already voted on this pair (in another tab or window): only your first vote counts.",
            icon=":material/how_to_vote:",
        )
    if voted:
        st.success(
            f"Vote saved: **{CHOICE_LABELS[state['choice']]}**. "
            f"A was {code_span(pair.names['A'])}, B was {code_span(pair.names['B'])}."
        )
    if closed:
        st.button("Next pair", key="review_next", on_click=_next, type="primary", icon=":material/skip_next:")
