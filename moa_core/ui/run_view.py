"""A stored run, shown as it ran: layers of drafts, the final answer beside the baselines."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

import pandas as pd
import streamlit as st
from sqlalchemy.engine import Engine

from moa_core.analysis.charts import run_timeline
from moa_core.ui.diversity_view import diversity_view
from moa_core.ui.layout import fmt_cost, fmt_seconds
from moa_core.ui.rating import rating_widget
from moa_core.ui.safe_text import code_span, md_escape, safe_markdown

STATUS_ICON = {"done": "✅", "failed": "❌", "cancelled": "⏹️", "running": "⏳", "interrupted": "⚠️"}


def gen_meta(g: dict[str, Any]) -> str:
    via = f" · via {md_escape(g['deployment'])}" if g.get("deployment") else ""
    return (
        f"{code_span(g['model'])} · {g['prompt_tokens']}→{g['completion_tokens']} tok · "
        f"TTFT {fmt_seconds(g['ttft'])} · {fmt_seconds(g['latency'])} · {fmt_cost(g['cost'])}{via}"
    )


def run_link(run_id: str) -> str:
    return f"/History?run={run_id}"


def _output(
    engine: Engine, g: dict[str, Any], ratings: list[dict[str, Any]], title: str, rate: bool, rater: str
) -> None:
    st.markdown(f"**{md_escape(title)}**")
    if g["text"]:
        st.markdown(safe_markdown(g["text"]))
    if g["error"]:
        st.error(md_escape(g["error"]))
    elif g["status"] == "cancelled":
        st.warning("stopped before it finished")
    elif g["status"] == "interrupted":
        st.warning("cut off: the server process stopped while this was streaming; above is what had arrived")
    st.caption(gen_meta(g))
    if rate:
        rating_widget(engine, g, ratings, rater)


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
    proposers: dict[int, list[dict[str, Any]]] = defaultdict(list)
    finals, baselines = [], []
    for g in gens:
        if g["role"] == "proposer":
            proposers[g["layer"]].append(g)
        elif g["role"] == "aggregator":
            finals.append(g)
        elif g["role"] == "baseline":
            baselines.append(g)
    for layer in sorted(proposers):
        row = sorted(proposers[layer], key=lambda g: g["slot"])
        st.markdown(f"##### Layer {layer + 1} · {len(row)} proposers")
        for col, g in zip(st.columns(len(row), border=True), row, strict=False):
            with col:
                _output(engine, g, ratings_by_gen[g["id"]], g["label"] or g["model"], rate, rater)
    if finals or baselines:
        st.markdown("##### Aggregated answer and single models")
        row = finals + sorted(baselines, key=lambda g: g["slot"])
        for col, g in zip(st.columns(len(row), border=True), row, strict=False):
            with col:
                prefix = "MoA · " if g["role"] == "aggregator" else "Alone · "
                _output(engine, g, ratings_by_gen[g["id"]], prefix + (g["label"] or g["model"]), rate, rater)
    elif run["status"] == "running":
        st.info("This run is still in progress.")
    with st.expander("Timeline of the calls", expanded=False):
        frame = pd.DataFrame(gens)
        if not frame.empty:
            st.plotly_chart(run_timeline(frame), width="stretch", key=f"timeline-{key}{run['id']}")
    diversity_view(data, engine, key=key)
    trims = (run.get("meta") or {}).get("context_trimmed")
    if trims:
        st.caption(f"Drafts were trimmed to fit a context window {len(trims)} time(s).")
