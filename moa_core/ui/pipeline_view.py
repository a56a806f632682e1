"""What a pipeline's stages decided, drawn in Streamlit, live or stored: a review stage's
aggregate ranking (de-anonymised) and a select stage's choice.

The rows of columns, the marks and the ranking rows come from `stage_layout` (plain Python,
shared with the HTML export), so every page shows a stage the same way.
"""

from __future__ import annotations

from collections.abc import Mapping

import streamlit as st

from moa_core.stage_layout import (
    CHOSEN_TAIL,
    LETTERS_TITLE,
    NO_RANKING,
    RANKING_TITLE,
    SELECTOR_TEXT_TITLE,
    StageResult,
    chosen_draft,
    ranking_note,
    ranking_rows,
    reviewer_rows,
    selector_text,
)
from moa_core.ui.safe_text import md_escape, safe_markdown
from moa_core.vocab import StageKind


def chosen_line(result: StageResult, names: Mapping[str, str]) -> str | None:
    """A select stage's choice as one markdown line (names escaped)."""
    chosen = chosen_draft(result, names)
    if chosen is None:
        return None
    name, how = chosen
    return f"**Chosen draft:** {md_escape(name)}{md_escape(how)}{CHOSEN_TAIL}"


def _table(rows: list[dict[str, str]]) -> None:
    # st.table renders markdown in its cells: every cell is escaped to show as plain text.
    st.table([{k: md_escape(v) for k, v in r.items()} for r in rows], hide_index=True)


def show_stage_result(result: StageResult, names: Mapping[str, str]) -> None:
    """A review stage's aggregate ranking (and who saw which letter), or a select stage's choice."""
    if result.kind == StageKind.REVIEW:
        rows = ranking_rows(result.details, names)
        st.markdown(f"**{RANKING_TITLE}**")
        if rows:
            _table(rows)
        else:
            st.caption(NO_RANKING)
        st.caption(ranking_note(result.details))
        reviews = reviewer_rows(result.details, names)
        if reviews:
            with st.expander(LETTERS_TITLE):
                _table(reviews)
    line = chosen_line(result, names)
    if line:
        st.markdown(line)
    said = selector_text(result)
    if said is not None:
        with st.expander(SELECTOR_TEXT_TITLE):
            st.markdown(safe_markdown(said))


__all__ = ["chosen_line", "show_stage_result"]
