"""History: past runs with search and filters; `?run=<id>` opens one exactly as it ran."""

from __future__ import annotations

import pandas as pd
import streamlit as st
from sqlalchemy.engine import Engine

from moa_core.store.html_export import run_html
from moa_core.store.queries import filter_options, get_run, runs_df
from moa_core.ui.layout import csv_download, rater_name, store
from moa_core.ui.present import exit_button, present_mode, present_run
from moa_core.ui.replay_view import replayable_run
from moa_core.ui.run_view import STATUS_ICON, run_link
from moa_core.ui.safe_text import md_escape, safe_markdown

PAGE_SIZE = 200


def _open_run(engine: Engine, run_id: str, rater: str, present: bool = False) -> None:
    data = get_run(engine, run_id)
    if not present and st.button("← All runs", key="back_to_runs"):
        st.query_params.clear()
        st.rerun()
    if data is None:
        st.error(f"No run with id {md_escape(repr(run_id))}.")
        return
    run = data["run"]
    st.subheader(md_escape(run["question"], 200))
    if present:
        present_run(data)
        return
    for turn in run.get("history") or []:
        with st.chat_message(turn["role"]):
            st.markdown(safe_markdown(turn["content"]))
    with st.chat_message("user"):
        st.markdown(safe_markdown(run["question"]))
    st.download_button("Download as HTML", run_html(data), f"moa-run-{run['id']}.html", "text/html", key="run_html", on_click="ignore", icon=":material/download:")  # fmt: skip
    replayable_run(engine, data, rater=rater)


def history_page() -> None:
    engine = store()
    rater = rater_name()
    present = present_mode()
    if present:
        exit_button()
    else:
        st.title("History")
    run_id = st.query_params.get("run")
    if run_id:
        _open_run(engine, run_id, rater, present)
        return
    opts = filter_options(engine)
    c = st.columns([3, 2, 2, 2])
    search = c[0].text_input("Search questions and answers", key="hist_search")
    presets = c[1].multiselect("Preset", opts["presets"], key="hist_presets")
    models = c[2].multiselect("Model", opts["models"], key="hist_models")
    kinds = c[3].multiselect("Kind", opts["kinds"], key="hist_kinds")
    df = runs_df(
        engine, search=search or None, preset=presets or None, model=models or None, kind=kinds or None, limit=PAGE_SIZE
    )
    if df.empty:
        st.info(
            "No runs yet. Ask something in the Playground."
            if not (search or presets or models or kinds)
            else "No run matches these filters."
        )
        return
    view = pd.DataFrame(
        {
            "open": [run_link(i) for i in df["id"]],
            "when": pd.to_datetime(df["created_at"], unit="s").dt.strftime("%Y-%m-%d %H:%M"),
            "question": df["question"].str.slice(0, 120),
            "preset": df["preset"],
            "kind": df["kind"],
            "status": [f"{STATUS_ICON.get(s, '')} {s}".strip() for s in df["status"]],
            "tokens": df["prompt_tokens"] + df["completion_tokens"],
            # All-NULL (runs still going, crashed or stopped) comes back as object dtype,
            # which has no round().
            "wall s": pd.to_numeric(df["wall_time"], errors="coerce").round(1),
        }
    )
    st.caption(f"{len(df)} run(s){' (newest ' + str(PAGE_SIZE) + ')' if len(df) == PAGE_SIZE else ''}")
    interrupted = int((df["status"] == "interrupted").sum())
    if interrupted:
        st.warning(
            f"{interrupted} run(s) interrupted: their server process stopped mid-run. The drafts they "
            "finished and the text streamed so far are kept; open one to see it.",
            icon=STATUS_ICON["interrupted"],
        )
    st.dataframe(
        view,
        hide_index=True,
        width="stretch",
        column_config={"open": st.column_config.LinkColumn("open", display_text="open")},
    )
    # The table as shown, with run ids instead of links, questions in full, plain statuses.
    full = view.drop(columns="open").assign(question=df["question"], status=df["status"], **{"run id": df["id"]})
    csv_download(full, "runs", "hist_dl")
    labels = {rid: f"{w} · {q[:80]}" for rid, w, q in zip(df["id"], view["when"], df["question"], strict=False)}
    pick = st.selectbox(
        "Open a run",
        list(labels),
        format_func=lambda rid: labels[rid],
        index=None,
        key="hist_pick",
        placeholder="choose a run…",
    )
    if pick:
        st.query_params["run"] = pick
        st.rerun()
