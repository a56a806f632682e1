"""A stored run, shown as it ran: layers of drafts, the final answer beside the baselines."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

import pandas as pd
import streamlit as st
from sqlalchemy.engine import Engine

from moa_core.analysis.charts import run_timeline
from moa_core.providers import llm
from moa_core.stage_layout import (
    NOT_USED,
    STATUS_NOTE,
    call_names,
    generation_call_id,
    stage_columns,
    stage_marks,
    stored_stage_results,
)
from moa_core.ui.diversity_view import diversity_view
from moa_core.ui.layout import fmt_cost, fmt_seconds
from moa_core.ui.pipeline_view import show_stage_result
from moa_core.ui.rating import rating_widget
from moa_core.ui.safe_text import code_span, md_escape, safe_markdown
from moa_core.vocab import FINAL_STAGE_ROLES, Role

STOPPED = ("cancelled", "interrupted")
STATUS_ICON = {"done": "✅", "failed": "❌", "cancelled": "⏹️", "running": "⏳", "interrupted": "⚠️"}


def output_tokens(g: dict[str, Any]) -> tuple[int, bool]:
    """(completion tokens, counted from the text?): a call stopped mid-stream never got the
    provider's usage report, so its tokens are counted from the text it did produce."""
    if g["completion_tokens"] or not g.get("text") or g["status"] not in STOPPED:
        return int(g["completion_tokens"] or 0), False
    return llm.count_tokens(g["model"], g["text"]), True


def _tokens(prompt: int, completion: int, counted: bool) -> str:
    return f"{prompt or '–'}→≈{completion} tok" if counted else f"{prompt}→{completion} tok"


def gen_meta(g: dict[str, Any]) -> str:
    via = f" · via {md_escape(g['deployment'])}" if g.get("deployment") else ""
    return (
        f"{code_span(g['model'])} · {_tokens(g['prompt_tokens'], *output_tokens(g))} · "
        f"TTFT {fmt_seconds(g['ttft'])} · {fmt_seconds(g['latency'])} · {fmt_cost(g['cost'])}{via}"
    )


def busy_seconds(gens: list[dict[str, Any]]) -> float | None:
    """Wall time during which at least one of the calls was running (the union of their spans):
    a challenge's synthesis, written minutes after its drafts, does not count the minutes between."""
    spans = sorted((g["started_at"], g["ended_at"]) for g in gens if g.get("started_at") and g.get("ended_at"))
    if not spans:
        return None
    total, (start, end) = 0.0, spans[0]
    for s, e in spans[1:]:
        if s > end:
            total, start = total + end - start, s
        end = max(end, e)
    return total + end - start


def pipeline_meta(gens: list[dict[str, Any]], final: dict[str, Any]) -> str:
    """A MoA answer's cost is every call behind it: every proposer and reviewer of every stage
    and its own final call (not the baselines, nor a challenge's other synthesis attempts)."""
    calls = [g for g in gens if g["role"] in (Role.PROPOSER, Role.REVIEWER)] + [final]
    outs = [output_tokens(g) for g in calls]
    tokens = _tokens(sum(g["prompt_tokens"] or 0 for g in calls), sum(n for n, _ in outs), any(c for _, c in outs))
    cost = fmt_cost(sum(g["cost"] or 0.0 for g in calls))
    return f"Whole pipeline · {len(calls)} calls · {tokens} · {fmt_seconds(busy_seconds(calls))} wall · {cost}"


def metrics(g: dict[str, Any], pipeline: list[dict[str, Any]] | None = None) -> None:
    """A call's metrics; for a MoA answer (`pipeline`: its run's calls) the whole pipeline first."""
    if pipeline is None:
        st.caption(gen_meta(g))
        return
    st.caption(pipeline_meta(pipeline, g))
    st.caption("Final call · " + gen_meta(g))


def run_link(run_id: str) -> str:
    return f"/History?run={run_id}"


def call_body(g: dict[str, Any]) -> None:
    """A stored call's text and, when it did not finish normally, why: every stored column
    (History, the Daily challenge's drafts) shows a call the same way."""
    if g["text"]:
        st.markdown(safe_markdown(g["text"]))
    if g["error"]:
        st.error(md_escape(g["error"]))
    elif g["status"] in STATUS_NOTE:
        st.warning(STATUS_NOTE[g["status"]])


def _output(
    engine: Engine,
    g: dict[str, Any],
    ratings: list[dict[str, Any]],
    title: str,
    rate: bool,
    rater: str,
    pipeline: list[dict[str, Any]] | None = None,
    mark: str | None = None,
) -> None:
    st.markdown(f"**{md_escape(title)}**")
    if mark:
        st.caption(("✂️ " if mark == NOT_USED else "✅ ") + md_escape(mark))
    call_body(g)
    metrics(g, pipeline if g["role"] in FINAL_STAGE_ROLES else None)
    if rate:
        rating_widget(engine, g, ratings, rater)


def _call_name(g: dict[str, Any]) -> str:
    name = g["label"] or g["model"]
    if g["role"] == Role.PROPOSER:
        return f"Layer {g['layer'] + 1} · {name}"
    if g["role"] == Role.REVIEWER:
        return f"Layer {g['layer'] + 1} · review by {name}"
    if g["role"] == Role.AGGREGATOR:
        return f"Aggregator · {name}"
    if g["role"] == Role.SELECTOR:
        return f"Selector · {name}"
    return f"Alone · {name}"


def made_with(run: dict[str, Any], gens: list[dict[str, Any]]) -> None:
    """Every call's model, parameters and system prompt, and the aggregator prompt: a challenge
    run keeps the one the user wrote per synthesis attempt in run.meta."""
    rows = [
        {
            "call": _call_name(g),
            "model": g["model"],
            "temperature": (g.get("params") or {}).get("temperature"),
            "max tokens": (g.get("params") or {}).get("max_tokens"),
            # which client path served the call (fast OpenAI-compatible streaming or litellm); older runs: unknown
            "client": (g.get("params") or {}).get("client", ""),
            "system prompt": g.get("system_prompt") or "",
        }
        for g in gens
    ]
    if rows:
        st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
    attempts = ((run.get("meta") or {}).get("challenge") or {}).get("attempts") or []
    for a in attempts:
        st.markdown(
            f"**Aggregator prompt written for synthesis {int(a.get('slot', 0)) + 1}** · "
            f"{code_span(str(a.get('model', '')))} · temperature {md_escape(str(a.get('temperature')))} · "
            f"max tokens {md_escape(str(a.get('max_tokens')))}"
        )
        st.code(str(a.get("template", "")), language=None, wrap_lines=True)
    template = (run.get("config") or {}).get("aggregator_template")
    if template and not attempts and any(g["role"] == "aggregator" for g in gens):
        st.markdown("**Aggregator prompt template**")
        st.code(template, language=None, wrap_lines=True)


def render_run(engine: Engine, data: dict[str, Any], *, rater: str = "", rate: bool = True, key: str = "") -> None:
    run, gens = data["run"], data["generations"]
    ratings_by_gen: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r in data["ratings"]:
        ratings_by_gen[r["generation_id"]].append(r)
    when = datetime.fromtimestamp(run["created_at"]).strftime("%Y-%m-%d %H:%M:%S")
    st.markdown(
        f"{STATUS_ICON.get(run['status'], '')} **{run['status']}** · preset {code_span(run['preset'])} · {when} · "
        f"{run['prompt_tokens']}+{run['completion_tokens']} tokens · {fmt_cost(run['cost'])} · "
        f"{fmt_seconds(run['wall_time'])} wall · [link to this run]({run_link(run['id'])})"
    )
    if run["error"]:
        (st.warning if run["status"] == "interrupted" else st.error)(md_escape(run["error"]))
    # One row per stage as it ran (any pipeline), then what the stage decided below it.
    by_call = {generation_call_id(g): g for g in gens}
    rows = stage_columns(data)
    names = call_names(rows, data)
    results = stored_stage_results(data)
    call_marks = stage_marks(results)
    shown: set[int] = set()
    for title, calls in rows:
        st.markdown(f"##### {md_escape(title)}")
        for col, (cid, col_title) in zip(st.columns(len(calls), border=True), calls, strict=False):
            g = by_call[cid]
            with col:
                _output(engine, g, ratings_by_gen[g["id"]], col_title, rate, rater, gens, call_marks.get(cid))
        for layer in sorted({int(g["layer"]) for g in (by_call[c] for c, _ in calls)} - shown):
            shown.add(layer)
            if layer in results:
                show_stage_result(results[layer], names)
    if not any(g["role"] in (*FINAL_STAGE_ROLES, Role.BASELINE) for g in gens) and run["status"] == "running":
        st.info("This run is still in progress.")
    with st.expander("Timeline of the calls", expanded=False):
        frame = pd.DataFrame(gens)
        if not frame.empty:
            st.plotly_chart(run_timeline(frame), width="stretch", key=f"timeline-{key}{run['id']}")
    with st.expander("What this run was made with", expanded=False):
        made_with(run, gens)
    diversity_view(data, engine, key=key)
    trims = (run.get("meta") or {}).get("context_trimmed")
    if trims:
        st.caption(f"Drafts were trimmed to fit a context window {len(trims)} time(s).")
