"""The Arena page: two hidden contenders answer side by side; vote, then see who was who.

A battle lives in ``st.session_state`` (one per browser session, so several people can
battle at once). Both answers stream into columns "A" and "B" from one script run. The
vote buttons are drawn before streaming starts, so they work while the answers are
still coming: a click makes Streamlit rerun the script, which stops the running one at
its next screen update; the ``aclosing`` blocks then close both event streams, which
cancels the calls and records both runs as cancelled with their partial text. The vote
callback has already noted the choice in the session, so the new script run stores the
vote on the generations that exist and reveals the identities. A vote that cannot count
because neither answer had begun reveals nothing (as in Chatbot Arena, names only follow
a valid vote).
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import streamlit as st
from sqlalchemy.engine import Engine

from moa_core import arena
from moa_core.arena import CHOICE_LABELS, SIDES, ArenaError, Battle, Contender
from moa_core.config import list_presets
from moa_core.engine import RunInputError, run_moa, run_single, validate_question
from moa_core.evaluation.questions import QuestionSetError, list_bundled_sets, load_bundled_set
from moa_core.events import Event, RunDone
from moa_core.providers.catalog import config_problems, model_available
from moa_core.saved_configs import list_saved
from moa_core.store.db import StoreError
from moa_core.store.queries import get_run
from moa_core.store.ratings import DuplicateVoteError, add_vote
from moa_core.store.recorder import Recorder, annotate_run
from moa_core.streams import Idle, merge_streams
from moa_core.ui.blind_review import blind_review
from moa_core.ui.config_editor import model_choices, unavailable_reason, with_availability
from moa_core.ui.layout import rater_name, run_async, store
from moa_core.ui.present import exit_button, present_mode
from moa_core.ui.rating import rating_widget
from moa_core.ui.run_view import metrics
from moa_core.ui.safe_text import code_span, md_escape, safe_markdown
from moa_core.ui.streaming import LiveColumn, LiveRun
from moa_core.vocab import RunStatus

KEY = "arena_battle"
STOP_POLL_SECONDS = 0.1
HEARTBEAT_SECONDS = 1.0
TAKE_OVER_TIMEOUT = 60.0
MODES = ["Battle", "Blind review"]
_rng = random.SystemRandom()


# -- setup ------------------------------------------------------------------------------


def _label(key: str) -> str:
    return with_availability(key, arena.option_label(key))


def _problems(c: Contender) -> list[str]:
    if c.config is not None:
        return [f"{c.name}: {p}" for p in config_problems(c.config)]
    assert c.agent is not None
    ok, why = model_available(c.agent.model, c.agent.api_base)
    return [] if ok else [why]


def _draw_question() -> None:
    name = st.session_state.get("arena_qset")
    try:
        if not isinstance(name, str):  # the draw button is disabled when there is no set to pick
            raise ArenaError("Pick a question set.")
        qset = load_bundled_set(name)
        q = arena.draw_question(qset.questions, _rng)
    except (QuestionSetError, ArenaError) as err:
        st.session_state.arena_draw_error = str(err)
        return
    st.session_state.pop("arena_draw_error", None)
    st.session_state.arena_question = q.text
    st.session_state.arena_category = q.category
    st.session_state.arena_drawn = {"set": qset.name, "text": q.text}


def _question_set(question: str) -> str | None:
    """The set the question was drawn from, if it was drawn and not edited since."""
    drawn = st.session_state.get("arena_drawn")
    if drawn and drawn["text"].strip() == question.strip():
        return drawn["set"]
    return None


def _setup(rater: str) -> None:
    models = model_choices()
    options = arena.contender_options(models, list_presets(), list_saved())
    runnable = [k for k in arena.contender_options(models, list_presets(), []) if not unavailable_reason(k)]
    with st.container(border=True):
        how = st.radio("Contenders", ["Pick two", "Random pair"], horizontal=True, key="arena_how")
        if how == "Pick two":
            c = st.columns(2)
            first = c[0].selectbox(
                "Contender 1", options, index=0 if options else None, format_func=_label, key="arena_c1"
            )
            second = c[1].selectbox(
                "Contender 2",
                options,
                index=min(1, len(options) - 1) if options else None,
                format_func=_label,
                key="arena_c2",
            )
            pool: list[str] = []
        else:
            first = second = None
            pool = st.multiselect(
                "Random pair from",
                options,
                default=runnable,
                format_func=_label,
                key="arena_pool",
                help="Two different contenders are drawn from these.",
            )
        with st.expander("Single-model settings"):
            c = st.columns(2)
            max_tokens = int(
                c[0].number_input("Max tokens (single models)", 16, 8192, 256, step=16, key="arena_max_tokens")
            )
            temperature = c[1].slider("Temperature (single models)", 0.0, 2.0, 0.7, 0.05, key="arena_temperature")
            st.caption("MoA contenders keep their own config's settings.")
        qcols = st.columns([3, 1])
        sets = list_bundled_sets()
        with qcols[1]:
            st.selectbox("Question set", sets, key="arena_qset", disabled=not sets)
            st.button(
                "Draw a question",
                key="arena_draw",
                on_click=_draw_question,
                disabled=not sets,
                icon=":material/casino:",
                width="stretch",
            )
            st.text_input(
                "Category (optional)",
                key="arena_category",
                max_chars=arena.CATEGORY_MAX_CHARS,
                placeholder="e.g. coding",
                help="Stored with the vote, for the leaderboards per category on the Analysis page. "
                "A drawn question brings its set's category.",
            )
        with qcols[0]:
            st.text_area(
                "Question",
                key="arena_question",
                height=110,
                max_chars=100_000,
                placeholder="Ask something both contenders will answer…",
            )
        if st.session_state.get("arena_draw_error"):
            st.error(md_escape(st.session_state.arena_draw_error))
        # Refused before Start: a contender that cannot run here would only fail once the battle began.
        picked = [first, second] if how == "Pick two" else []
        blocked = [_label(k) for k in picked if k and unavailable_reason(k)]
        skipped = [k for k in pool if unavailable_reason(k)]
        pool = [k for k in pool if k not in skipped]
        start = st.button(
            "Start battle",
            type="primary",
            key="arena_start",
            disabled=not rater or bool(blocked),
            icon=":material/swords:",
        )
        if blocked:
            st.caption("Cannot start: " + md_escape("; ".join(blocked)) + ".")
        if skipped:
            st.caption(f"Left out of the draw, they cannot run here: {md_escape(', '.join(map(_label, skipped)))}.")
        if not rater:
            st.caption("Enter your name in the sidebar to start: every vote is saved with its rater.")
    if not start:
        return
    try:
        question = validate_question(st.session_state.get("arena_question", ""))
        key1, key2 = arena.random_pair(pool, _rng) if how == "Random pair" else (first, second)
        if not key1 or not key2:
            raise ArenaError("Pick two contenders.")
        c1, c2 = (arena.resolve_contender(k, max_tokens=max_tokens, temperature=temperature) for k in (key1, key2))
        problems = _problems(c1) + _problems(c2)
        if problems:
            raise ArenaError("This battle cannot run here: " + "; ".join(problems))
        battle = arena.new_battle(
            question,
            c1,
            c2,
            _rng,
            question_set=_question_set(question),
            category=st.session_state.get("arena_category"),
        )
    except (RunInputError, ArenaError) as err:
        st.error(md_escape(str(err)))
        return
    old = st.session_state.get(KEY)
    if old is not None:
        old.stop.set()  # a battle still streaming on a stopped script run winds down
    st.session_state[KEY] = battle


# -- the battle -------------------------------------------------------------------------


def _cast(battle_id: str, choice: str) -> None:
    """Vote-button callback: runs at the start of the rerun the click causes."""
    battle = st.session_state.get(KEY)
    if battle is not None and battle.id == battle_id and battle.open_for_votes and battle.choice is None:
        battle.choice = choice
        battle.stop.set()  # a vote stops both answers


def _new_battle() -> None:
    st.session_state.pop(KEY, None)


def _title(battle: Battle, side: str) -> str:
    if battle.revealed:
        return f"#### {side} · {code_span(battle.sides[side].name)}"
    return f"#### {side}"


def _layout(battle: Battle) -> dict[str, LiveColumn]:
    boxes = {}
    for side, col in zip(SIDES, st.columns(2, border=True), strict=False):
        with col:
            st.markdown(_title(battle, side))
            with st.container(key=f"arena_answer_{side}"):
                box = st.empty()
            boxes[side] = LiveColumn(side, box, st.empty())
    return boxes


def _vote_buttons(battle: Battle) -> None:
    disabled = not battle.open_for_votes
    icons = {
        "A": ":material/arrow_back:",
        "B": ":material/arrow_forward:",
        "tie": ":material/balance:",
        "both_bad": ":material/thumb_down:",
    }
    for col, (choice, label) in zip(st.columns(4), CHOICE_LABELS.items(), strict=False):
        # A disabled button loses its primary colour, so the counted vote's button stays
        # enabled to stay visibly chosen; clicking it again does nothing (`_cast` checks).
        chosen = battle.choice == choice and battle.status == "voted"
        col.button(
            label,
            key=f"arena_vote_{choice}",
            on_click=_cast,
            args=(battle.id, choice),
            disabled=disabled and not chosen,
            icon=":material/check_circle:" if chosen else icons[choice],
            help="Your vote" if chosen else None,
            width="stretch",
            type="primary" if battle.choice == choice else "secondary",
        )


def _annotate(engine: Engine, battle: Battle, meta: dict[str, Any]) -> None:
    for side in SIDES:
        with contextlib.suppress(ValueError, StoreError):  # a side that never started has no run to mark
            annotate_run(engine, battle.run_ids[side], meta={**meta, "arena_battle": battle.id, "arena_side": side})


def _mark_invalid(engine: Engine, battle: Battle, reason: str) -> None:
    _annotate(engine, battle, {"arena": "invalid", "arena_reason": reason})


def _settle(engine: Engine, battle: Battle, rater: str) -> None:
    """Store the vote the callback noted, or say why it cannot count."""
    assert battle.choice is not None
    try:
        states = {s: arena.side_state(get_run(engine, battle.run_ids[s])) for s in SIDES}
    except StoreError as err:
        battle.note, battle.choice = f"The vote could not be saved: {err}", None
        return
    verdict = arena.judge_vote(battle.choice, states)
    if not verdict.ok:
        battle.status = "invalid" if verdict.invalid else "void"
        battle.note = verdict.problem
        _mark_invalid(engine, battle, verdict.problem or "")
        return
    if not rater:
        battle.note, battle.choice = "Enter your name in the sidebar, then vote again.", None
        return
    try:
        assert verdict.left_id is not None and verdict.right_id is not None and verdict.outcome is not None
        battle.vote_id = add_vote(
            engine,
            verdict.left_id,
            verdict.right_id,
            verdict.outcome,
            rater,
            blind=True,
            question_set=battle.question_set,
        )
    except DuplicateVoteError as dup:
        # Only a second script run settling the same click gets here (a rerun racing the
        # stopped one): the first one's vote is this vote.
        battle.vote_id = dup.vote_id
    except (ValueError, StoreError) as err:
        battle.note, battle.choice = f"The vote could not be saved: {err}", None
        return
    battle.status, battle.note = "voted", None
    meta: dict[str, Any] = {"arena": "voted", "arena_vote_id": battle.vote_id}
    if battle.category:
        meta["category"] = battle.category
    _annotate(engine, battle, meta)


async def _stream_battle(engine: Engine, battle: Battle, boxes: dict[str, LiveColumn]) -> dict[str, RunDone]:
    """Run both contenders at once, recorded, streaming each final answer into its column.

    Returns each side's RunDone. A failed side stops the other one (the battle can no
    longer produce a vote), and so does `battle.stop` (a vote, a new battle). If the
    script itself is stopped (Streamlit raises at the next screen update), closing the
    merged streams still cancels both; their recorders mark the runs cancelled with their
    partial text. `battle.closed` is set once that is written.
    """
    recorder = Recorder(engine, question_set=battle.question_set)

    def events(side: str) -> AsyncIterator[Event]:
        c = battle.sides[side]
        if c.config is not None:
            run = run_moa(battle.question, c.config, baselines=[], kind="arena", run_id=battle.run_ids[side])
        else:
            assert c.agent is not None  # a contender without a config always has an agent
            run = run_single(battle.question, c.agent, kind="arena", run_id=battle.run_ids[side])
        return recorder.record(run)

    # Each side is a run of its own: only its final call has a column (the drafts stay hidden).
    lives = {s: LiveRun(columns={battle.sides[s].final_call: boxes[s]}) for s in SIDES}
    for col in boxes.values():
        col.blind = True
    results: dict[str, RunDone] = {}
    started = last_beat = time.monotonic()
    try:
        # `idle`: a stop request is seen even while no tokens arrive (MoA drafting).
        merged = merge_streams({s: events(s) for s in SIDES}, idle=STOP_POLL_SECONDS)
        async with aclosing(merged):
            async for got in merged:
                if battle.stop.is_set():
                    break
                if isinstance(got, Idle):
                    now = time.monotonic()
                    if now - last_beat >= HEARTBEAT_SECONDS:
                        # A screen update is also where Streamlit stops a script whose user has
                        # moved on (another page, a rerun): without tokens there would be none.
                        last_beat = now
                        for col in boxes.values():
                            if not col.text:
                                col.box.caption(f"waiting for the answer… {now - started:.0f}s")
                    continue
                side, ev = got
                lives[side].apply(ev)
                if isinstance(ev, RunDone):
                    results[side] = ev
                    if ev.status == RunStatus.FAILED:
                        break
    finally:
        battle.closed.set()
    return results


def _stream(engine: Engine, battle: Battle, boxes: dict[str, LiveColumn]) -> None:
    battle.status = "streaming"
    try:
        _stream_and_judge(engine, battle, boxes)
    finally:
        battle.closed.set()  # also when this script run is stopped before streaming began
    if battle.stop.is_set():
        return  # a newer script run (the vote, a new battle) has taken the battle over
    st.rerun()


def _stream_and_judge(engine: Engine, battle: Battle, boxes: dict[str, LiveColumn]) -> None:
    for col in boxes.values():
        col.box.caption("waiting for the answer…")
    results: dict[str, RunDone] = {}
    problem = None
    try:
        results = run_async(_stream_battle(engine, battle, boxes))
    except StoreError as err:
        problem = f"The battle could not be recorded: {err}"
    except Exception as err:
        problem = f"The battle stopped: {type(err).__name__}: {err}"
    if battle.stop.is_set():
        return  # the battle belongs to a newer script run now: leave its state alone
    failed = {s: ev.error or "failed" for s, ev in results.items() if ev.status == "failed"}
    if failed:
        battle.errors = failed
        problem = "; ".join(f"{s} failed: {e}" for s, e in failed.items())
    if problem:
        battle.status, battle.note = "invalid", problem
        _mark_invalid(engine, battle, problem)
    else:
        battle.status = "finished"


def _take_over(battle: Battle) -> None:
    """The last script run was stopped while streaming: wait until it has recorded both runs.

    With Streamlit's fast reruns the stopped run may still be unwinding on its own thread
    while this one starts, so the vote must not read the runs before they are closed.
    """
    battle.stop.set()
    if not battle.closed.is_set():
        with st.spinner("Stopping both answers…"):
            battle.closed.wait(TAKE_OVER_TIMEOUT)
    battle.status = "stopped"


def _fill(engine: Engine, battle: Battle, boxes: dict[str, LiveColumn], rater: str) -> None:
    """Show both answers as stored (finished, partial or failed)."""
    for side in SIDES:
        col = boxes[side]
        try:
            data = get_run(engine, battle.run_ids[side])
            state = arena.side_state(data)
        except StoreError as err:
            col.box.error(md_escape(str(err)))
            continue
        gen = state.generation
        if gen is not None and (gen.get("text") or "").strip():
            col.box.markdown(safe_markdown(gen["text"]))
        else:
            col.box.caption("(no answer)")
        with col.meta.container():
            error = battle.errors.get(side) or (state.problem if state.failed else None)
            if error:
                st.error(md_escape(error))
            elif gen is not None and gen["status"] == "cancelled":
                st.caption("stopped when the vote was cast" if battle.choice else "stopped before it finished")
            if battle.revealed and gen is not None:
                metrics(gen, data["generations"] if battle.sides[side].is_moa and data is not None else None)
                if rater and (gen.get("text") or "").strip():
                    rating_widget(engine, gen, [], rater)  # an absolute 1-5 score, beside the vote


def _outcome(battle: Battle) -> None:
    who = f"A was {code_span(battle.sides['A'].name)}, B was {code_span(battle.sides['B'].name)}."
    if battle.status == "voted":
        st.success(f"Vote saved: **{CHOICE_LABELS[battle.choice or '']}**. {who}", icon=":material/how_to_vote:")
    elif battle.status == "void":
        st.warning(
            f"The vote was not counted: there was nothing to compare yet ({md_escape(battle.note)}). "
            "Which contender was which stays hidden; start a new battle."
        )
    elif battle.status == "invalid":
        st.error(f"This battle is invalid and produces no vote: {md_escape(battle.note)}. {who}")
    elif battle.status == "stopped":
        st.info(
            "The answers stopped before they finished (the page reloaded). Vote on what is shown, "
            "or start a new battle."
        )
    elif battle.status == "finished":
        st.info("Both answers are complete. Which one is better?")
    if battle.note and battle.status not in ("void", "invalid"):
        st.warning(md_escape(battle.note))
    if battle.over:
        st.button("New battle", key="arena_new", on_click=_new_battle, icon=":material/refresh:")


def _battle(engine: Engine, battle: Battle, rater: str) -> None:
    if battle.status == "streaming":
        # Only a stopped script leaves this state behind: the vote (or another widget) stopped it.
        _take_over(battle)
    if battle.choice is not None and battle.open_for_votes:
        _settle(engine, battle, rater)
    st.markdown("##### Question")
    st.markdown(safe_markdown(battle.question))
    if battle.question_set:
        st.caption(f"from the question set {code_span(battle.question_set)}")
    _vote_buttons(battle)
    if battle.status == "new":
        st.caption("Vote whenever you like, even while the answers are still coming: voting stops both.")
        _stream(engine, battle, _layout(battle))
        return
    _outcome(battle)
    _fill(engine, battle, _layout(battle), rater)


def arena_page() -> None:
    engine = store()
    rater = rater_name()
    present = present_mode()
    if present:
        exit_button()
    else:
        st.title("Arena")
        st.caption(
            "Two contenders answer the same question as “A” and “B”; which is which stays hidden until you vote."
        )
        mode = st.segmented_control(
            "Mode", MODES, default=MODES[0], key="arena_mode", required=True, label_visibility="collapsed"
        )
        if mode == "Blind review":
            blind_review(engine, rater)
            return
    if not present or st.session_state.get(KEY) is None:  # presenting a battle: no set-up form
        _setup(rater)
    battle = st.session_state.get(KEY)
    if battle is not None:
        _battle(engine, battle, rater)
