"""Presentation view (`?present=1` on Playground, History and Arena): no sidebar or editors,
larger type, columns filling a 1920×1080 screen, and a stored run stepped stage by stage
(layer 1, layer 2, …, the final answer beside the baselines) with buttons or the arrow keys.

`st.set_page_config` cannot be called again from a page, so the look is one constant
stylesheet; the arrow keys are one constant script that clicks the step buttons. Neither
carries any text from a run: every answer is still written through `safe_markdown`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import streamlit as st

from moa_core.stage_layout import (
    KIND_OF_ROLE,
    baseline_title,
    call_names,
    column_title,
    generation_call_id,
    stage_columns,
    stored_stage_results,
)
from moa_core.ui.pipeline_view import show_stage_result
from moa_core.ui.run_view import metrics
from moa_core.ui.safe_text import md_escape, safe_markdown
from moa_core.vocab import FINAL_STAGE_ROLES, Role

PARAM = "present"
# What fits under the question and the step bar on a 1920×1080 screen; longer answers scroll.
ANSWER_HEIGHT = 600

STYLE = """<style>
[data-testid="stSidebar"], [data-testid="stSidebarCollapsedControl"], [data-testid="stExpandSidebarButton"],
[data-testid="stSidebarNav"], [data-testid="stHeader"] { display: none !important; }
html { font-size: 20px; }
[data-testid="stMainBlockContainer"] { max-width: 100% !important; padding: 1.2rem 2rem 1.5rem !important; }
</style>"""

# Left/Right (and PageUp/PageDown, what presentation clickers send) press the step buttons.
KEYS = """<script>
if (!window.__moaPresentKeys) {
  window.__moaPresentKeys = true;
  document.addEventListener('keydown', (e) => {
    const t = e.target;
    if (t && t.closest && t.closest('input, textarea, [contenteditable="true"]')) return;
    const key = {ArrowLeft: 'present_prev', PageUp: 'present_prev',
                 ArrowRight: 'present_next', PageDown: 'present_next'}[e.key];
    const button = key && document.querySelector('.st-key-' + key + ' button');
    if (button && !button.disabled) { e.preventDefault(); button.click(); }
  });
}
</script>"""


def present_mode() -> bool:
    """Whether this page is in the presentation view; draws its look and the way in or out."""
    if st.query_params.get(PARAM) != "1":
        st.sidebar.button(
            "Presentation view", key="present_enter", on_click=_enter, icon=":material/slideshow:", width="stretch"
        )
        return False
    st.html(STYLE)
    st.html(KEYS, unsafe_allow_javascript=True)
    return True


def exit_button() -> None:
    st.button("Exit presentation", key="present_exit", on_click=_exit, type="tertiary", icon=":material/close:")


def _enter() -> None:
    st.query_params[PARAM] = "1"


def _exit() -> None:
    del st.query_params[PARAM]


@dataclass(frozen=True)
class Stage:
    title: str
    calls: list[dict[str, Any]]


def stages(gens: list[dict[str, Any]]) -> list[Stage]:
    """A run in the order it happened: each stage (proposers, reviewers), then the final
    answer(s) beside the baselines."""
    by_call = {generation_call_id(g): g for g in gens}
    return [Stage(title, [by_call[cid] for cid, _ in calls]) for title, calls in stage_columns({"generations": gens})]


def _title(g: dict[str, Any]) -> str:
    name = g["label"] or g["model"]
    kind = KIND_OF_ROLE.get(g["role"])
    return column_title(kind, name) if kind else baseline_title(name) if g["role"] == Role.BASELINE else name


def _column(g: dict[str, Any], gens: list[dict[str, Any]]) -> None:
    st.markdown(f"#### {md_escape(_title(g))}")
    with st.container(height=ANSWER_HEIGHT, border=False):
        if g["text"]:
            st.markdown(safe_markdown(g["text"]))
        if g["error"]:
            st.error(md_escape(g["error"]))
        elif g["status"] in ("cancelled", "interrupted"):
            st.warning("stopped before it finished")
    metrics(g, gens if g["role"] in FINAL_STAGE_ROLES else None)


def _step(key: str, delta: int, last: int) -> None:
    st.session_state[key] = min(max(st.session_state.get(key, 0) + delta, 0), last)


def present_run(data: dict[str, Any], *, start_at_end: bool = False) -> None:
    """One stage of a stored run at a time, full width, with Previous / Next (and the arrow keys)."""
    run, gens = data["run"], data["generations"]
    steps = stages(gens)
    if not steps:
        st.info("This run has no answers yet." if run["status"] == "running" else "This run produced no answers.")
        return
    key = f"present_stage_{run['id']}"
    last = len(steps) - 1
    if key not in st.session_state:
        st.session_state[key] = last if start_at_end else 0
    at = min(st.session_state[key], last)
    nav = st.columns([1, 6, 1], vertical_alignment="center")
    nav[0].button(
        "Previous",
        key="present_prev",
        on_click=_step,
        args=(key, -1, last),
        disabled=at == 0,
        icon=":material/arrow_back:",
        width="stretch",
    )
    nav[1].markdown(
        f"**Stage {at + 1} of {len(steps)}** · {md_escape(steps[at].title)}"
        + ("" if run["status"] == "done" else f" · run {run['status']}"),
        text_alignment="center",
    )
    nav[2].button(
        "Next",
        key="present_next",
        on_click=_step,
        args=(key, 1, last),
        disabled=at == last,
        icon=":material/arrow_forward:",
        width="stretch",
    )
    row = steps[at].calls
    for col, g in zip(st.columns(len(row), border=True), row, strict=False):
        with col:
            _column(g, gens)
    result = stored_stage_results(data).get(int(row[0]["layer"]))
    if result is not None:
        show_stage_result(result, call_names(stage_columns(data), data))
