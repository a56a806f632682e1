"""The Evaluate page: set up an evaluation, run or resume it with a progress bar, read
its report (judged win rates with intervals, reference check, "does it help?", cost,
collaborativeness).

Running happens in the script thread like the Playground's runs: the progress callback
updates the bar at least once a second, which is also where a Stop click (or leaving
the page) lands; the runner then cancels what is in flight and the finished items stay
stored for the next resume.
"""

from __future__ import annotations

from typing import Any

import streamlit as st
from streamlit.errors import StreamlitAPIException

from moa_core.analysis.objective import display_paired, display_table
from moa_core.config import ConfigError, list_presets, load_preset
from moa_core.evaluation.contenders import (
    Contender,
    ContenderError,
    collaborativeness_contenders,
    resolve_contender,
    unique_names,
)
from moa_core.evaluation.judge_call import DEFAULT_JUDGE_MAX_TOKENS, DEFAULT_JUDGE_MODEL, judge_agent
from moa_core.evaluation.questions import (
    QuestionSet,
    QuestionSetError,
    list_bundled_sets,
    load_bundled_set,
    load_question_set_text,
)
from moa_core.evaluation.records import EvalReport, eval_report, list_evaluations
from moa_core.evaluation.report import (
    collab_display,
    cost_display,
    format_duration,
    pairwise_display,
    reference_display,
)
from moa_core.evaluation.report_html import eval_report_html
from moa_core.evaluation.runner import (
    DEFAULT_CONCURRENCY,
    EvalPlan,
    EvalPlanError,
    EvalProgress,
    default_eval_name,
    finished_items,
    limit_questions,
    plan_from_store,
    run_evaluation,
)
from moa_core.providers.catalog import config_problems, discover, model_available
from moa_core.saved_configs import list_saved
from moa_core.store.db import StoreError
from moa_core.ui.config_editor import with_availability
from moa_core.ui.layout import csv_download, run_async, store
from moa_core.ui.run_view import run_link
from moa_core.ui.safe_text import code_span, md_escape, safe_markdown

WEAK_JUDGE = (
    "**A tiny local judge is weak evidence.** A 0.5B model often prefers whichever answer comes first, "
    "reads shallowly and can be swayed by length. Judging both orders turns its position bias into ties, "
    "but its wins are still only a hint: use a strong judge (a large hosted model) before concluding "
    "that one contender is better."
)
NO_JUDGE = "(no judge)"


# ---------------------------------------------------------------- set-up widgets


def _question_set() -> tuple[QuestionSet | None, dict[str, str] | None]:
    src = st.radio("Questions", ["Bundled set", "Upload JSONL"], horizontal=True, key="ev_qsrc")
    try:
        if src == "Bundled set":
            sets = list_bundled_sets()
            if not sets:
                st.warning("No bundled question set found in moa_core/resources/questions/.")
                return None, None
            name = st.selectbox("Question set", sets, key="ev_qset")
            return load_bundled_set(name), {"bundled": name}
        up = st.file_uploader(
            "Question set (.jsonl: MT-Bench, AlpacaEval or plain)", type=["jsonl", "json", "txt"], key="ev_upload"
        )
        if up is None:
            return None, None
        stem = up.name.rsplit(".", 1)[0] or "upload"
        return load_question_set_text(up.getvalue(), stem), None
    except QuestionSetError as err:
        st.error(md_escape(str(err)))
        return None, None


def _contender_options() -> tuple[list[str], dict[str, str]]:
    """Spec strings (as `moa eval --contender` takes them) and their labels."""
    labels: dict[str, str] = {}
    for name in list_presets():
        labels[name] = with_availability(f"preset:{name}", f"MoA · {name} (preset)")
        labels[f"{name}:aggregator"] = f"{name}'s aggregator alone"
    for name in list_saved():
        labels.setdefault(name, with_availability(f"saved:{name}", f"MoA · {name} (saved config)"))
        labels.setdefault(f"{name}:aggregator", f"{name}'s aggregator alone")
    for m in _models():
        labels.setdefault(m, f"{m} alone")
    return list(labels), labels


@st.cache_data(ttl=60, show_spinner=False)
def _models() -> list[str]:
    configs = []
    for name in list_presets():
        try:
            configs.append(load_preset(name))
        except ConfigError:
            continue
    return [m.model for m in discover(configs, include_unavailable=False) if m.provider != "server"]


def _contenders(specs: list[str], other: str, collab: bool, cap: int) -> tuple[list[Contender], str]:
    out: list[Contender] = []
    pairs = "all"
    if collab:
        first = next((resolve_contender(s)[0] for s in specs if resolve_contender(s)[0].config is not None), None)
        if first is None:
            raise ContenderError("the collaborativeness view needs a MoA config among the contenders")
        out += collaborativeness_contenders(first.config)  # type: ignore[arg-type]  # first.config is not None: the generator above filters on it
        specs = [s for s in specs if resolve_contender(s)[0].name != first.name]
        pairs = "vs_first"
    for spec in specs + ([other.strip()] if other.strip() else []):
        out += resolve_contender(spec)
    return [c.with_max_tokens(cap or None) for c in unique_names(out)], pairs


def _problems(contenders: list[Contender], judge_model: str | None) -> list[str]:
    out: list[str] = []
    for c in contenders:
        if c.config is not None:
            out += config_problems(c.config)
        else:
            ok, why = model_available(c.agent.model, c.agent.api_base)  # type: ignore[union-attr]  # a contender without a config always has an agent
            out += [] if ok else [why]
    if judge_model:
        ok, why = model_available(judge_model)
        out += [] if ok else [f"judge: {why}"]
    return list(dict.fromkeys(out))


def _setup(engine: Any) -> EvalPlan | None:
    """The set-up form; returns a plan when the user asked to run it."""
    qs, source = _question_set()
    if qs is None:
        return None
    cats = qs.categories()
    st.caption(
        f"{len(qs)} questions in {len(cats)} categories ({md_escape(', '.join(cats))}); "
        f"{sum(1 for q in qs.questions if q.reference)} have a reference answer."
    )
    c1, c2 = st.columns(2)
    limit = c1.number_input("Questions to use (the first N)", 1, len(qs), min(10, len(qs)), key="ev_limit")
    cap = c2.number_input(
        "Cap every contender's max tokens (0 = keep the configs')",
        0,
        4096,
        0,
        step=16,
        key="ev_cap",
        help="Small caps make local runs much faster; they change the contenders, "
        "so a capped run is a different evaluation from an uncapped one.",
    )
    specs, labels = _contender_options()
    defaults = [s for s in ("local-moa", "local-moa:aggregator") if s in labels]
    chosen = st.multiselect(
        "Contenders",
        specs,
        default=defaults,
        format_func=lambda s: labels.get(s, s),
        key="ev_contenders",
        help="MoA configs and single models. Every pair is judged.",
    )
    other = st.text_input(
        "Another model (litellm model string, optional)", key="ev_other", placeholder="e.g. openai/gpt-4o-mini"
    )
    collab = st.checkbox(
        "Collaborativeness view for the first MoA config",
        key="ev_collab",
        help="Adds each of its proposer models alone and as the aggregator of the other proposers' "
        "drafts; each is judged against the full config. Many more items: keep N small.",
    )
    j1, j2, j3 = st.columns([3, 1, 1])
    judges = [NO_JUDGE, *_models()]
    judge_default = judges.index(DEFAULT_JUDGE_MODEL) if DEFAULT_JUDGE_MODEL in judges else 0
    judge_model = j1.selectbox(
        "Judge",
        judges,
        index=judge_default,
        key="ev_judge",
        help="Compares each pair of answers twice, positions swapped; disagreement is a tie.",
    )
    judge_tokens = j2.number_input("Judge max tokens", 16, 2048, DEFAULT_JUDGE_MAX_TOKENS, step=16, key="ev_jtok")
    # Read back from session state when the run starts (also for "Resume this evaluation").
    j3.number_input(
        "Concurrency",
        1,
        16,
        DEFAULT_CONCURRENCY,
        key="ev_conc",
        help="Items (answers or judgements) in flight at once.",
    )
    judge = None if judge_model == NO_JUDGE else judge_agent(judge_model, max_tokens=int(judge_tokens))
    if judge is not None and judge.model.startswith("local/"):
        st.warning(WEAK_JUDGE, icon=":material/warning:")
    try:
        contenders, pairs = _contenders(chosen, other, collab, int(cap))
    except (ContenderError, ConfigError) as err:
        st.error(md_escape(str(err)))
        return None
    if not contenders:
        st.info("Pick at least one contender.")
        return None
    limited = limit_questions(qs, int(limit))
    name = st.text_input(
        "Evaluation name",
        key="ev_name",
        placeholder=default_eval_name(qs.name, contenders, judge),
        help="Running an evaluation with the same name again resumes it: finished answers and "
        "judgements are not redone.",
    ).strip() or default_eval_name(qs.name, contenders, judge)
    try:
        plan = EvalPlan(
            name,
            limited,
            contenders,
            judge,
            pairs,  # type: ignore[arg-type]  # the radio's options are exactly the PairMode literals
            source=source,
            limit=int(limit),
        )
    except EvalPlanError as err:
        st.error(md_escape(str(err)))
        return None
    n_pairs = len(plan.pair_list())
    a_done, j_done = finished_items(engine, plan)
    st.caption(
        f"{len(limited)} questions × {len(contenders)} contenders = {len(limited) * len(contenders)} answers"
        + (
            f"; {n_pairs} pair(s) × {len(limited)} = {n_pairs * len(limited)} judgements (2 judge calls each)"
            if judge
            else "; no judge"
        )
        + "."
    )
    if a_done or j_done:
        st.info(f"**{md_escape(name)}** already has {a_done} answer(s) and {j_done} judgement(s): running it resumes.")
    problems = _problems(contenders, judge.model if judge else None)
    if problems:
        st.error("Cannot run: " + md_escape("; ".join(problems)))
        return None
    if st.button(
        "Run evaluation" if not (a_done or j_done) else "Resume evaluation",
        type="primary",
        icon=":material/play_arrow:",
        key="ev_run",
    ):
        return plan
    return None


# ---------------------------------------------------------------- running


def _run(engine: Any, plan: EvalPlan, concurrency: int) -> None:
    st.markdown(f"#### Running · {md_escape(plan.name)}")
    bar = st.progress(0.0, text="Starting…")
    st.button(
        "Stop",
        icon=":material/stop_circle:",
        key="ev_stop",
        help="Stop now; finished answers and judgements are kept, and running it again resumes.",
    )

    def on_progress(p: EvalProgress) -> None:
        bar.progress(min(p.fraction, 1.0), text=md_escape(p.summary() + (f" · {p.last}" if p.last else "")))

    try:
        summary = run_async(run_evaluation(engine, plan, concurrency=concurrency, on_progress=on_progress))
    except StoreError as err:
        st.error(f"The evaluation could not be recorded: {md_escape(str(err))}")
        return
    st.session_state.ev_pick = plan.name
    st.session_state.ev_last_summary = (
        f"Finished **{md_escape(plan.name)}** in {format_duration(summary.elapsed)}: {summary.answers_new} new answer(s), "
        f"{summary.judgements_new} new judgement(s), {summary.answers_resumed + summary.judgements_resumed} "
        f"resumed, {summary.answers_failed + summary.judgements_failed} failed."
        + (f" First error: {md_escape(summary.errors[0])}" if summary.errors else "")
    )
    st.rerun()


# ---------------------------------------------------------------- results


def _pairwise(rep: EvalReport) -> None:
    st.markdown("##### Judged win rates")
    st.caption(
        f"Judge {code_span(str(rep.judge))}. Each pair judged in both orders; when the two verdicts disagree it is a "
        "tie (counted as half a win). Intervals are 95% Wilson intervals. Unparseable verdicts are kept "
        "out of the rates and counted apart."
    )
    if not rep.judged:
        st.info("No judged pairs yet.")
        return
    view = pairwise_display(rep.pairwise)
    view.insert(5, "win rate", rep.pairwise["win_rate_a"].to_numpy())
    st.dataframe(
        view,
        hide_index=True,
        width="stretch",
        column_config={
            "win rate": st.column_config.ProgressColumn("A win rate", min_value=0.0, max_value=1.0, format="percent"),
        },
    )
    csv_download(rep.pairwise, "win_rates", "ev_dl_pairwise")
    if rep.same_position:
        st.warning(
            f"Position bias: in {rep.same_position} of {rep.judged} judgement(s) the judge picked the same "
            "position (A or B) in both orders, whichever answer was there. Those count as ties, which pulls "
            "win rates towards 50%."
        )
    if rep.unparseable:
        st.warning(
            f"{rep.unparseable} judgement(s) had a verdict that could not be read. They are recorded as "
            "unparseable, not as ties, and left out of the win rates."
        )
    label = (
        f"The judge's votes (rater {md_escape(f'judge:{rep.judge}')}) also feed the leaderboard on the Analysis page"
    )
    try:
        st.page_link("pages/3_Analysis.py", label=label, icon=":material/leaderboard:")
    except StreamlitAPIException:  # the page run outside the app's navigation (tests, bare mode)
        st.caption(label + ".")


def _reference(rep: EvalReport) -> None:
    if rep.reference.empty:
        return
    st.markdown("##### Reference check")
    st.caption("Questions with a short reference answer: does the answer state it (normalised match, no judge)?")
    st.dataframe(reference_display(rep.reference), hide_index=True)


def _objective(rep: EvalReport) -> None:
    obj = rep.objective
    if obj is None:
        return
    st.markdown("##### Does it help?")
    st.caption(
        f"{obj.questions} question(s) with a reference, checked without a judge (numbers with units, "
        "multiple-choice letters, short text). Each proposer alone, the majority vote over their short "
        "answers, and every pipeline; 95% Wilson intervals. Then each combination against the best single "
        "model, question by question: wins, losses, ties and an exact sign test."
    )
    st.dataframe(display_table(obj.table), hide_index=True)
    csv_download(obj.table, "does_it_help", "ev_dl_objective")
    if not obj.paired.empty:
        st.dataframe(display_paired(obj.paired), hide_index=True)
    st.markdown(f"**{md_escape(obj.headline)}**")
    others = [line for line in obj.lines if line != obj.headline]
    if others:
        st.markdown("\n".join(f"- {md_escape(line)}" for line in others))
    for note in obj.notes:
        st.caption(md_escape(note))


def _costs(rep: EvalReport) -> None:
    if rep.costs.empty:
        return
    st.markdown("##### Cost, tokens and latency per question")
    st.dataframe(cost_display(rep.costs), hide_index=True)
    with st.expander("Every question"):
        st.dataframe(rep.per_question, hide_index=True, width="stretch")
        csv_download(rep.per_question, "per_question", "ev_dl_per_question")


def _collab(rep: EvalReport) -> None:
    if rep.collaborativeness.empty:
        return
    st.markdown("##### Collaborativeness")
    st.caption(
        "Each proposer model alone, and the same model aggregating the other proposers' drafts, both judged "
        "against the full config. A model is collaborative when it does better as the aggregator."
    )
    st.dataframe(collab_display(rep.collaborativeness), hide_index=True)


def _answers(rep: EvalReport) -> None:
    answers = rep.results.answers
    if answers.empty:
        return
    with st.expander("Answers and verdicts, question by question"):
        qids = list(dict.fromkeys(answers["question_id"]))
        qid = st.selectbox("Question", qids, key="ev_browse_q")
        rows = answers[answers["question_id"] == qid]
        st.markdown(f"**{md_escape(rows['question'].iloc[0])}**")
        ref = rows["reference"].iloc[0]
        if ref:
            st.caption(f"Reference: {md_escape(ref)}")
        cols = st.columns(min(len(rows), 4), border=True)
        for i, r in enumerate(rows.itertuples(index=False)):
            with cols[i % len(cols)]:
                st.markdown(f"**{md_escape(r.contender)}** · [run]({run_link(r.run_id)})")
                st.markdown(safe_markdown(r.final_text) or "_(empty)_")
        j = rep.results.judgements
        j = j[j["question_id"] == qid]
        for r in j.itertuples(index=False):
            st.caption(
                f"{md_escape(r.contender_a)} vs {md_escape(r.contender_b)}: verdicts {md_escape(str(r.verdict_ab))} "
                f"(A first) / {md_escape(str(r.verdict_ba))} (swapped) → **{md_escape(str(r.outcome))}** · "
                f"[judge run]({run_link(r.run_id)})"
            )


def _results(engine: Any) -> None:
    evals = list_evaluations(engine)
    if evals.empty:
        st.info("No evaluation yet.")
        return
    names = evals["name"].tolist()
    if st.session_state.get("ev_pick") not in names:
        st.session_state.pop("ev_pick", None)
    name = st.selectbox("Evaluation", names, key="ev_pick")
    row = evals[evals["name"] == name].iloc[0]
    rep = eval_report(engine, name)
    res = rep.results
    st.caption(
        f"Question set {code_span(str(row['question_set']))} · contenders: {md_escape(str(row['contenders']))} · "
        f"{len(res.answers)} answers · {rep.judged} judged pairs · "
        f"{res.failed_answers + res.failed_judgements} failed or stopped item(s)"
    )
    if rep.judge and str(rep.judge).startswith("local/"):
        st.warning(WEAK_JUDGE, icon=":material/warning:")
    _pairwise(rep)
    _reference(rep)
    _objective(rep)
    _costs(rep)
    _collab(rep)
    _answers(rep)
    st.download_button("Download report as HTML", eval_report_html(rep, str(row["question_set"])), "evaluation.html", "text/html", key="ev_html", on_click="ignore", icon=":material/download:")  # fmt: skip
    if st.button(
        "Resume this evaluation",
        key="ev_resume",
        icon=":material/replay:",
        help="Runs whatever is missing or failed, with the plan it was started with.",
    ):
        try:
            st.session_state.ev_pending = plan_from_store(engine, name)
        except (EvalPlanError, ContenderError) as err:
            st.error(md_escape(str(err)))
            return
        st.rerun()


def evaluate_page() -> None:
    engine = store()
    st.title("Evaluate")
    st.caption(
        "Does MoA beat its best proposer on your questions? Run a question set through MoA configs and "
        "single models, let a judge compare every pair in both orders, and read win rates with "
        "confidence intervals. Interrupted evaluations resume where they stopped."
    )
    if msg := st.session_state.pop("ev_last_summary", None):
        st.success(msg)
    with st.container(border=True):
        st.markdown("#### New evaluation")
        plan = _setup(engine)
    # The form is drawn before running so its widgets keep their values through the run.
    pending: EvalPlan | None = plan or st.session_state.pop("ev_pending", None)
    if pending is not None:
        _run(engine, pending, int(st.session_state.get("ev_conc", DEFAULT_CONCURRENCY)))
        return
    st.divider()
    st.markdown("#### Results")
    _results(engine)


__all__ = ["WEAK_JUDGE", "evaluate_page"]
