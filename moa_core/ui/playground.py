"""The Playground: configure, ask (multi-turn), watch every draft stream, rate the outputs."""

from __future__ import annotations

import time
from typing import Any

import streamlit as st

from moa_core.config import MoAConfig
from moa_core.engine import RunInputError, validate_question
from moa_core.providers.catalog import config_problems
from moa_core.store.db import StoreError
from moa_core.store.queries import get_run
from moa_core.ui.config_editor import config_sidebar, config_summary
from moa_core.ui.layout import rater_name, run_async, store
from moa_core.ui.present import exit_button, present_mode, present_run
from moa_core.ui.replay_view import replayable_run
from moa_core.ui.run_view import run_link
from moa_core.ui.safe_text import md_escape, safe_markdown
from moa_core.ui.streaming import stream_run


def _conversation() -> list[dict[str, Any]]:
    return st.session_state.setdefault("conversation", [])


def chat_history(turns: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Messages that carry the conversation into the next question: finished turns only."""
    history: list[dict[str, str]] = []
    for t in turns:
        if t.get("status") == "done" and t.get("answer"):
            history += [{"role": "user", "content": t["question"]}, {"role": "assistant", "content": t["answer"]}]
    return history


STOP_SETTLE_SECONDS = 5.0


def _refresh_turn(engine: Any, turn: dict[str, Any]) -> dict[str, Any] | None:
    data = get_run(engine, turn["run_id"])
    # After Stop, Streamlit may start this rerun while the stopped script is still
    # unwinding (fast reruns): give it a moment to record the run as cancelled.
    deadline = time.monotonic() + STOP_SETTLE_SECONDS
    while (
        data is not None
        and turn.get("status") == "running"
        and data["run"]["status"] == "running"
        and time.monotonic() < deadline
    ):
        time.sleep(0.1)
        data = get_run(engine, turn["run_id"])
    if data is not None:
        turn["status"] = data["run"]["status"]
        turn["answer"] = data["run"].get("final_text") or ""
    return data


def _run(engine: Any, question: str, config: MoAConfig) -> None:
    turns = _conversation()
    history = chat_history(turns)
    with st.chat_message("user"):
        st.markdown(safe_markdown(question))
    st.button(
        "Stop", icon=":material/stop_circle:", key="stop_run", help="Cancel the run; what was produced so far is kept."
    )

    def started(run_id: str) -> None:
        turns.append({"question": question, "run_id": run_id, "status": "running", "answer": ""})
        st.session_state.current_run = run_id

    try:
        live = run_async(stream_run(engine, question, config, history, on_start=started))
    except StoreError as err:
        st.error(f"The run could not be recorded: {md_escape(str(err))}")
        return
    if live.run_id:
        _refresh_turn(engine, turns[-1])
    st.rerun()


def playground_page() -> None:
    engine = store()
    rater = rater_name()
    config = config_sidebar()
    present = present_mode()
    if not present:
        st.title("Playground")
    turns = _conversation()
    top = st.columns([4, 1])
    if present:
        with top[0]:
            exit_button()
    else:
        top[0].caption(
            "Several models answer in parallel; an aggregator reads every draft and writes one answer. "
            "Follow-up questions carry the conversation."
        )
    if turns and top[1].button("New conversation", key="new_conv"):
        turns.clear()
        st.session_state.pop("current_run", None)
        st.rerun()

    for turn in [] if present else turns[:-1]:
        with st.chat_message("user"):
            st.markdown(safe_markdown(turn["question"]))
        with st.chat_message("assistant"):
            st.markdown(safe_markdown(turn["answer"]) or f"_({turn['status']})_")
            st.caption(f"[open this run]({run_link(turn['run_id'])})")
    if turns:
        last = turns[-1]
        data = _refresh_turn(engine, last)
        with st.chat_message("user"):
            st.markdown(safe_markdown(last["question"]))
        if data is None:
            st.warning("This run was not found in the database.")
        else:
            if last["status"] == "cancelled":
                st.info("Run stopped. What was produced before the stop is kept and marked cancelled.")
            if present:
                present_run(data, start_at_end=True)
            else:
                replayable_run(engine, data, rater=rater)

    if config is not None:
        config_summary(config)
    # Refused before asking: the box is off while the config cannot run here (config_summary says why).
    blocked = config is None or bool(config_problems(config))
    # No max_chars: Streamlit's chat input silently drops any edit (a paste) that would go past
    # it, leaving the box empty; validate_question below names the limit instead.
    placeholder = "Fix the config in the sidebar first" if config is None else "This config cannot run here (see above)"
    question = st.chat_input(
        placeholder if blocked else "Ask a question…",
        key="question",
        disabled=blocked,
    )
    if not question:
        return
    try:
        question = validate_question(question)
    except RunInputError as err:
        st.error(md_escape(str(err)))
        return
    if config is None:
        st.error("Fix the config in the sidebar first.")
        return
    problems = config_problems(config)
    if problems:
        st.error("This config cannot run here: " + md_escape("; ".join(problems)))
        return
    _run(engine, question, config)
