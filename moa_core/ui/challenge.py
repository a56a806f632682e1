"""Daily challenge: ask N times, see what the drafts disagree on, write your own aggregator.

Five steps on one page, each appearing when the one before is done:
1. a dense factual question; 2. N independent runs streaming side by side (model,
temperature, system prompt per run); 3. what differs: the drafts aligned sentence by
sentence; 4. your aggregator prompt, run on the drafts; 5. where the synthesis came from,
and ratings.

Everything is one stored run of kind "challenge" (events from `moa_core.challenge`): the
drafts are proposers (layer 0), each synthesis attempt an aggregator call (layer 1,
slot = attempt), recorded through the store's Recorder as the events arrive. The prompt you wrote is kept per attempt in
run.meta["challenge"] (the rendered prompt is also the aggregator call's system prompt).
Only the run id lives in session state; everything else is read back from the store, so
reruns (ratings, widget changes) lose nothing.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import streamlit as st
from sqlalchemy.engine import Engine

from moa_core.analysis.alignment import Alignment, align_drafts
from moa_core.analysis.diversity import aggregator_report, layer_diversity
from moa_core.analysis.embeddings import get_embedder
from moa_core.challenge import draft_events, synthesis_events, todays_suggestion
from moa_core.config import AgentSpec
from moa_core.engine import RunInputError, validate_question
from moa_core.evaluation.diversity import ensure_run_diversity
from moa_core.events import Event, RunDone, Totals
from moa_core.prompts import DEFAULT_AGGREGATOR_TEMPLATE, DRAFTS_PLACEHOLDER, QUESTION_PLACEHOLDER, render_template
from moa_core.providers.catalog import model_available
from moa_core.store.db import StoreError
from moa_core.store.queries import get_run
from moa_core.store.recorder import Recorder, annotate_run
from moa_core.ui.config_editor import model_choices
from moa_core.ui.diversity_view import aggregator_section, badge, draft_color
from moa_core.ui.layout import rater_name, run_async, store
from moa_core.ui.rating import rating_widget
from moa_core.ui.run_view import call_body, gen_meta, run_link
from moa_core.ui.safe_text import code_span, md_escape, safe_markdown
from moa_core.ui.streaming import LiveRun, layout_columns, show_events
from moa_core.vocab import Role, call_id

log = logging.getLogger(__name__)

STATE = "challenge"
MAX_RUNS = 6
DEFAULT_RUNS = 3
DEFAULT_TEMPERATURES = [0.7, 1.0, 1.2, 0.9, 1.1, 1.3]
STATUS_BADGE = {
    "shared": ("in every draft", "green"),
    "partial": ("in some drafts", "blue"),
    "unique": ("only here", "orange"),
}


# -- session state -------------------------------------------------------------------------


def _state() -> dict[str, Any]:
    return st.session_state.setdefault(STATE, {"run_id": None})


def _reset() -> None:
    for k in [k for k in st.session_state if str(k).startswith("chal_")]:
        del st.session_state[k]
    st.session_state[STATE] = {"run_id": None}


def _use_suggestion() -> None:
    st.session_state.chal_question = todays_suggestion()


def _reset_template() -> None:
    st.session_state.chal_template = DEFAULT_AGGREGATOR_TEMPLATE


# -- step 1 and 2 ------------------------------------------------------------------------------


def _step_question() -> str:
    st.subheader("1 · Your question")
    st.caption("Ask something factual and dense from a field you know well, so you can judge the details.")
    st.session_state.setdefault("chal_question", "")
    question = st.text_area(
        "Question", key="chal_question", height=90, max_chars=20_000, placeholder="e.g. " + todays_suggestion()
    )
    st.button(
        "Use today's suggestion", key="chal_suggest", on_click=_use_suggestion, help=f"Today: {todays_suggestion()}"
    )
    return question.strip()


def _step_setup(models: list[str]) -> list[AgentSpec]:
    st.subheader("2 · Ask it several times, independently")
    n = int(st.number_input("How many independent runs", 2, MAX_RUNS, DEFAULT_RUNS, key="chal_n"))
    agents = []
    for i, col in enumerate(st.columns(n, border=True)):
        with col:
            st.markdown(f"**Run {i + 1}**")
            key = f"chal_model_{i}"
            if st.session_state.get(key) not in models:
                st.session_state[key] = models[0]
            model = st.selectbox("Model", models, key=key)
            temp = st.slider(
                "Temperature", 0.0, 2.0, DEFAULT_TEMPERATURES[i % len(DEFAULT_TEMPERATURES)], 0.05, key=f"chal_temp_{i}"
            )
            max_tokens = int(st.number_input("Max tokens", 16, 4096, 256, step=16, key=f"chal_mt_{i}"))
            system = st.text_area(
                "System prompt",
                "",
                height=68,
                key=f"chal_sys_{i}",
                placeholder="optional, e.g. You are a careful domain expert.",
            )
            agents.append(
                AgentSpec(
                    model=model, label=f"Draft {i + 1}", temperature=temp, max_tokens=max_tokens, system_prompt=system
                )
            )
    return agents


async def _stream(engine: Engine, events: AsyncIterator[Event], live: LiveRun) -> RunDone | None:
    """Record the events and show each call's text streaming into its column.

    If the script stops mid-stream (Stop, rerun, closed tab), `aclosing` closes the events,
    which cancels the model calls; calls still streaming are then saved as cancelled with
    the text they had."""
    recorder = Recorder(engine)
    try:
        await show_events(live, None, recorder.record(events))
    finally:
        for run_id in recorder.open_runs():  # a synthesis has no RunStarted: record() does not close it
            try:
                recorder.close_unfinished(run_id)
            except StoreError:
                log.exception("could not close run %s", run_id)
    return live.result


def _run_drafts(engine: Engine, question: str, agents: list[AgentSpec]) -> None:
    run_id = uuid.uuid4().hex
    _state()["run_id"] = run_id  # set first: a Stop (rerun) mid-stream still finds the run
    st.button(
        "Stop",
        icon=":material/stop_circle:",
        key="chal_stop",
        help="Cancel the runs; what was produced so far is kept.",
    )
    live = layout_columns(
        [("", [(call_id(Role.PROPOSER, 0, i), f"Draft {i + 1} · {a.model}") for i, a in enumerate(agents)])]
    )
    try:
        run_async(_stream(engine, draft_events(run_id, question, agents), live))
    except StoreError as err:
        st.error(f"The challenge could not be recorded: {md_escape(str(err))}")
        return
    st.rerun()


def _drafts_of(data: dict[str, Any]) -> list[dict[str, Any]]:
    return sorted((g for g in data["generations"] if g["role"] == "proposer"), key=lambda g: g["slot"])


def _show_drafts(drafts: list[dict[str, Any]]) -> None:
    for g, col in zip(drafts, st.columns(len(drafts), border=True), strict=False):
        with col:
            temperature = md_escape(str(g["params"].get("temperature", "–")))
            st.markdown(f"**{md_escape(g['label'] or 'Draft')}** · {code_span(g['model'])} · T={temperature}")
            if g["system_prompt"]:
                st.caption("System prompt: " + md_escape(g["system_prompt"], 200))
            call_body(g)
            st.caption(gen_meta(g))


# -- step 3: what differs ----------------------------------------------------------------------


@st.cache_data(max_entries=32, show_spinner="Comparing the drafts…")
def _alignment(texts: tuple[str, ...]) -> tuple[Alignment, dict[str, Any]]:
    embed = get_embedder()
    ld = layer_diversity(list(texts), embed)
    return align_drafts(list(texts), embed), {
        "embedding": ld.embedding_diversity,
        "lexical": ld.lexical_diversity,
        "model": getattr(embed, "name", None),
    }


def _statement_line(st_: Any, names: list[str]) -> str:
    label, color = STATUS_BADGE[st_.status]
    if st_.status == "partial":
        label = "also in " + ", ".join(names[k] for k in sorted(st_.agrees_with))
    parts = [badge(label, color)]
    if st_.contradicts:
        parts.append(badge("conflicts with " + ", ".join(sorted({names[r.draft] for r in st_.contradicts})), "red"))
    text = md_escape(st_.text, 600)
    if st_.status == "unique":
        text = f"**{text}**"
    return "- " + " ".join(parts) + " " + text


def _step_differs(usable: list[dict[str, Any]]) -> Alignment:
    st.subheader("3 · What differs")
    names = [g["label"] or f"Draft {i + 1}" for i, g in enumerate(usable)]
    alignment, div = _alignment(tuple(g["text"] for g in usable))
    unique = alignment.unique()
    c = st.columns(4)
    c[0].metric("Statements in every draft", len(alignment.shared))
    c[1].metric("Statements only one draft makes", len(unique))
    c[2].metric("Possible contradictions", len(alignment.contradictions))
    c[3].metric(
        "Diversity",
        "–" if div["embedding"] is None else f"{div['embedding']:.2f}",
        help="1 − mean pairwise similarity of the drafts (sentence embeddings); "
        f"lexical: {div['lexical'] if div['lexical'] is not None else '–'}",
    )
    st.caption(
        "Each draft, sentence by sentence. "
        f"{badge('in every draft', 'green')} {badge('in some drafts', 'blue')} {badge('only here', 'orange')} "
        f"{badge('conflicts with', 'red')} — matched by "
        f"{'sentence-embedding' if alignment.backend == 'embedding' else 'lexical'} similarity ≥ "
        f"{alignment.thresholds.match:.2f}; a conflict is a similar sentence with different numbers or "
        "opposite negation (a heuristic: check it yourself)."
    )
    for _g, name, statements, col in zip(
        usable, names, alignment.drafts, st.columns(len(usable), border=True), strict=False
    ):
        with col:
            st.markdown(f"**{md_escape(name)}**")
            if statements:
                st.markdown("\n".join(_statement_line(s, names) for s in statements))
            else:
                st.caption("no statements found")
    if alignment.contradictions:
        with st.expander(f"Possible contradictions ({len(alignment.contradictions)})", expanded=True):
            for cx in alignment.contradictions:
                st.markdown(
                    f"- {badge(names[cx.a.draft], draft_color(cx.a.draft))} {md_escape(cx.text_a, 300)}  \n"
                    f"  {badge(names[cx.b.draft], draft_color(cx.b.draft))} {md_escape(cx.text_b, 300)}  \n"
                    f"  _{md_escape(cx.reason)}_"
                )
    return alignment


# -- step 4: your aggregator -------------------------------------------------------------------


def _attempts(data: dict[str, Any]) -> list[dict[str, Any]]:
    return list(((data["run"].get("meta") or {}).get("challenge") or {}).get("attempts") or [])


def _step_synthesize(engine: Engine, data: dict[str, Any], usable: list[dict[str, Any]], models: list[str]) -> None:
    st.subheader("4 · Write your aggregator prompt")
    st.caption(
        f"`{QUESTION_PLACEHOLDER}` is replaced by the question and `{DRAFTS_PLACEHOLDER}` by the drafts, "
        "numbered [1], [2], … The prompt goes to the model as its system message; the question follows "
        "as the user's message."
    )
    st.session_state.setdefault("chal_template", DEFAULT_AGGREGATOR_TEMPLATE)
    template = st.text_area("Aggregator prompt", key="chal_template", height=260)
    st.button("Reset to the default prompt", key="chal_tpl_reset", on_click=_reset_template)
    c = st.columns(3)
    if st.session_state.get("chal_agg_model") not in models:
        st.session_state.chal_agg_model = usable[0]["model"] if usable[0]["model"] in models else models[0]
    model = c[0].selectbox("Aggregator model", models, key="chal_agg_model")
    temp = c[1].slider("Temperature", 0.0, 2.0, 0.3, 0.05, key="chal_agg_temp")
    max_tokens = int(c[2].number_input("Max tokens", 16, 4096, 384, step=16, key="chal_agg_mt"))
    question = data["run"]["question"]
    drafts = [g["text"] for g in usable]
    with st.expander("What the aggregator will read", expanded=False):
        st.code(render_template(template, question, drafts), language=None, wrap_lines=True)
    if DRAFTS_PLACEHOLDER not in template:
        st.error(f"The prompt must contain {DRAFTS_PLACEHOLDER}, where the drafts go.")
        return
    if QUESTION_PLACEHOLDER not in template:
        st.info(f"No {QUESTION_PLACEHOLDER} in the prompt: the model still gets the question as the user's message.")
    agent = AgentSpec(model=model, label="Synthesis", temperature=temp, max_tokens=max_tokens)
    attempts = _attempts(data)
    label = "Run the synthesis" if not attempts else "Run the synthesis again"
    if not st.button(label, type="primary", key="chal_synth"):
        return
    ok, why = model_available(model)
    if not ok:
        st.error(md_escape(why))
        return
    slot = 1 + max((g["slot"] for g in data["generations"] if g["role"] == "aggregator"), default=-1)
    run = data["run"]
    base = Totals(
        run["prompt_tokens"],
        run["completion_tokens"],
        run["cost"],
        run["wall_time"] or 0.0,
        len(data["generations"]),
        sum(1 for g in data["generations"] if g["status"] == "error"),
    )
    attempt = {
        "slot": slot,
        "template": template,
        "model": model,
        "temperature": temp,
        "max_tokens": max_tokens,
        "at": time.time(),
    }
    try:
        annotate_run(engine, run["id"], meta={"challenge": {"attempts": [*attempts, attempt]}})
    except (StoreError, ValueError) as err:
        st.error(f"Not saved: {md_escape(str(err))}")
        return
    live = layout_columns([("", [(call_id(Role.AGGREGATOR, 1, slot), f"Synthesis {slot + 1} · {model}")])])
    try:
        run_async(_stream(engine, synthesis_events(run["id"], question, drafts, template, agent, slot, base), live))
    except StoreError as err:
        st.error(f"The synthesis could not be recorded: {md_escape(str(err))}")
        return
    st.session_state.pop("chal_pick", None)  # show the new attempt
    st.rerun()


# -- step 5: compare and rate ------------------------------------------------------------------


@st.cache_data(max_entries=32, show_spinner="Tracing the synthesis back to the drafts…")
def _report(final_text: str, texts: tuple[str, ...], names: tuple[str, ...]) -> dict[str, Any]:
    drafts = [{"text": t, "label": n, "id": None} for t, n in zip(texts, names, strict=False)]
    return aggregator_report({"text": final_text}, drafts, get_embedder())


def _step_compare(engine: Engine, data: dict[str, Any], usable: list[dict[str, Any]], rater: str) -> None:
    finals = sorted((g for g in data["generations"] if g["role"] == "aggregator"), key=lambda g: g["slot"])
    if not finals:
        return
    st.subheader("5 · Compare and rate")
    names = tuple(g["label"] or f"Draft {i + 1}" for i, g in enumerate(usable))
    pick = finals[-1]
    if len(finals) > 1:
        slots = [g["slot"] for g in finals]
        chosen = st.radio(
            "Synthesis",
            slots,
            index=len(slots) - 1,
            horizontal=True,
            key="chal_pick",
            format_func=lambda s: f"attempt {s + 1}",
        )
        pick = next(g for g in finals if g["slot"] == chosen)
    ratings: dict[int, list[dict[str, Any]]] = {}
    for r in data["ratings"]:
        ratings.setdefault(r["generation_id"], []).append(r)
    template = next((a["template"] for a in _attempts(data) if a.get("slot") == pick["slot"]), None)
    with st.container(border=True):
        st.markdown(f"**Synthesis {pick['slot'] + 1}** · {code_span(pick['model'])}")
        if pick["text"]:
            st.markdown(safe_markdown(pick["text"]))
        if pick["error"]:
            st.error(md_escape(pick["error"]))
        st.caption(gen_meta(pick))
        if template is not None and template != DEFAULT_AGGREGATOR_TEMPLATE:
            with st.expander("The prompt you wrote for it"):
                st.code(template, language=None, wrap_lines=True)
        rating_widget(engine, pick, ratings.get(pick["id"], []), rater)
    if pick["status"] != "done" or not pick["text"].strip():
        return
    report = _report(pick["text"], tuple(g["text"] for g in usable), names)
    st.markdown("**Where each sentence of the synthesis came from**")
    aggregator_section(report, key=f"chal{pick['id']}")
    kept = [u for u in report["unique"] if u["kept"]]
    dropped = [u for u in report["unique"] if not u["kept"]]
    c = st.columns(2)
    with c[0]:
        st.markdown(f"**Draft-only statements it kept ({len(kept)})**")
        st.markdown(
            "\n".join(
                f"- {badge(names[u['draft']], draft_color(u['draft']))} {md_escape(u['text'], 300)}" for u in kept
            )
            or "_none_"
        )
    with c[1]:
        st.markdown(f"**Draft-only statements it dropped ({len(dropped)})**")
        st.markdown(
            "\n".join(
                f"- {badge(names[u['draft']], draft_color(u['draft']))} {md_escape(u['text'], 300)}" for u in dropped
            )
            or "_none_"
        )
    if report["contradictions"]:
        st.markdown("**Contradictions: which side the synthesis took**")
        side = {"a": "the first", "b": "the second", "both": "both (!)", "neither": "neither"}
        st.markdown(
            "\n".join(
                f"- {badge(names[x['a']['draft']], draft_color(x['a']['draft']))} {md_escape(x['text_a'], 200)} / "
                f"{badge(names[x['b']['draft']], draft_color(x['b']['draft']))} {md_escape(x['text_b'], 200)} → "
                f"{side[x['final_agrees_with']]}"
                for x in report["contradictions"]
            )
        )
    st.markdown("**Rate the drafts**")
    for g, col in zip(usable, st.columns(len(usable), border=True), strict=False):
        with col:
            st.markdown(f"**{md_escape(g['label'] or 'Draft')}** · {code_span(g['model'])}")
            rating_widget(engine, g, ratings.get(g["id"], []), rater)


# -- the page ------------------------------------------------------------------------------------


def challenge_page() -> None:
    engine = store()
    rater = rater_name()
    state = _state()
    top = st.columns([5, 1])
    top[0].title("Daily challenge")
    if state["run_id"]:
        top[1].button("New challenge", key="chal_new_btn", on_click=_reset)
    st.caption(
        "Ask one question several times, look at what the answers disagree on, write the prompt that "
        "merges them, and see what your synthesis kept, dropped and made up."
    )
    models = model_choices()
    if not models:
        st.error("No model is available: install the local models (make install) or add a provider key.")
        return
    question = _step_question()
    agents = _step_setup(models)
    data = get_run(engine, state["run_id"]) if state["run_id"] else None
    label = "Run the drafts" if data is None else "Run the drafts again (starts a new challenge)"
    if st.button(label, type="primary", key="chal_run"):
        try:
            question = validate_question(question)
        except RunInputError as err:
            st.error(md_escape(str(err)))
            return
        problems = [why for a in agents for ok, why in [model_available(a.model)] if not ok]
        if problems:
            st.error(md_escape("; ".join(dict.fromkeys(problems))))
            return
        st.session_state.pop("chal_pick", None)
        _run_drafts(engine, question, agents)
        return
    if data is None:
        return
    drafts = _drafts_of(data)
    if data["run"]["question"] != question:
        st.caption("These drafts answer: " + md_escape(data["run"]["question"], 300))
    _show_drafts(drafts)
    usable = [g for g in drafts if g["status"] == "done" and (g["text"] or "").strip()]
    if len(usable) < 2:
        st.warning("At least two finished drafts are needed to compare them. Run the drafts again.")
        return
    _step_differs(usable)
    _step_synthesize(engine, data, usable, models)
    _step_compare(engine, data, usable, rater)
    data = get_run(engine, state["run_id"]) or data
    if any(g["role"] == "aggregator" for g in data["generations"]) and data["run"]["status"] != "running":
        ensure_run_diversity(engine, data)
        st.success(
            f"Saved as a challenge run, with the prompt you wrote. [Open it in History]({run_link(data['run']['id'])})",
            icon="💾",
        )


__all__ = ["challenge_page"]
