"""What a pipeline's stages decided, on a page, live or stored: quorum marks (used / not
used), a review stage's aggregate ranking (de-anonymised) and a select stage's choice.

The rows of columns themselves come from `replay.pipeline_columns` (a config) and
`replay.stage_columns` (a stored run), so a stored run shows the shape it ran with.
Everything that is not drawing (marks, the ranking rows) is plain Python, unit-tested on its own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import streamlit as st

from moa_core.config import MoAConfig
from moa_core.events import LayerDone
from moa_core.replay import Row
from moa_core.ui.safe_text import md_escape
from moa_core.vocab import STAGE_ROLE, StageKind, call_id

NOT_USED = "not used · the quorum was reached without it"
USED = "used"
CHOSEN = "chosen: this draft is the final answer"


@dataclass(frozen=True)
class StageResult:
    """What a stage decided beyond its texts (a `LayerDone`, live or stored)."""

    layer: int
    kind: StageKind
    used: tuple[str, ...] = ()
    cut: tuple[str, ...] = ()
    details: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_event(cls, ev: LayerDone) -> StageResult:
        return cls(ev.layer, StageKind(ev.kind), tuple(ev.used), tuple(ev.cut), dict(ev.details or {}))


def stored_stage_results(data: Mapping[str, Any]) -> dict[int, StageResult]:
    """A stored run's stage results (`get_run(...)["stages"]`: the LayerDone fields, one row
    per stage). A run stored before stages were kept has none: its columns still show,
    without ranking or marks."""
    out: dict[int, StageResult] = {}
    for row in data.get("stages") or []:
        try:
            result = StageResult(
                int(row["layer"]),
                StageKind(row["kind"]),
                tuple(row.get("used") or ()),
                tuple(row.get("cut") or ()),
                dict(row.get("details") or {}),
            )
        except (KeyError, TypeError, ValueError):
            continue  # a row this version cannot read is left out, not an error on the page
        out[result.layer] = result
    return out


def call_names(rows: Sequence[Row], stored_or_config: MoAConfig | Mapping[str, Any]) -> dict[str, str]:
    """call id -> the agent's display name (the column title without its prefix)."""
    names: dict[str, str] = {}
    if isinstance(stored_or_config, MoAConfig):
        for i, stage in enumerate(stored_or_config.pipeline()):
            for slot, a in enumerate(stage.agents):
                names[call_id(STAGE_ROLE[stage.kind], i, slot)] = a.display_name
    else:
        for g in stored_or_config["generations"]:
            names[call_id(g["role"], int(g["layer"]), int(g["slot"]))] = g.get("label") or g.get("model") or ""
    for _, calls in rows:
        for cid, title in calls:
            names.setdefault(cid, title)
    return names


# -- what a stage decided ----------------------------------------------------------------


def marks(result: StageResult) -> dict[str, str]:
    """Column marks for a finished stage: with a quorum, which drafts were used and which cut;
    for select, which draft was chosen."""
    out: dict[str, str] = {}
    if result.cut:
        out.update({c: USED for c in result.used})
        out.update({c: NOT_USED for c in result.cut})
    chosen = result.details.get("chosen") if result.kind == StageKind.SELECT else None
    if isinstance(chosen, str):
        out[chosen] = CHOSEN
    return out


def _letter(i: int) -> str:
    return chr(ord("A") + i) if i < 26 else f"#{i + 1}"


def _num(x: Any, digits: int = 2) -> str:
    return "–" if x is None else f"{float(x):.{digits}f}"


def ranking_rows(details: Mapping[str, Any], names: Mapping[str, str]) -> list[dict[str, str]]:
    """A review stage's aggregate ranking, best first, with model names (plain strings)."""
    rows = []
    for place, r in enumerate(details.get("aggregate") or [], start=1):
        cid = str(r.get("call_id", ""))
        rows.append(
            {
                "place": str(place),
                "model": str(r.get("name") or names.get(cid) or cid),
                "mean rank": _num(r.get("mean_rank")),
                "Borda": _num(r.get("borda"), 1),
                "votes": str(int(r.get("votes") or 0)),
            }
        )
    return rows


def reviewer_rows(details: Mapping[str, Any], names: Mapping[str, str]) -> list[dict[str, str]]:
    """Per reviewer: which model each letter was (its own shuffled order) and its ranking."""
    rows = []
    for rv in details.get("reviews") or []:
        order = [str(c) for c in rv.get("order") or []]
        letter = {c: _letter(i) for i, c in enumerate(order)}
        ranking = rv.get("ranking")
        own = rv.get("own")
        rows.append(
            {
                "reviewer": names.get(str(rv.get("reviewer")), str(rv.get("reviewer"))),
                "letters": "; ".join(f"{letter[c]} = {names.get(c, c)}" for c in order),
                "ranking, best first": (
                    "unparsed (not counted)"
                    if ranking is None
                    else " > ".join(f"{letter.get(str(c), '?')} ({names.get(str(c), str(c))})" for c in ranking)
                ),
                "own answer": names.get(str(own), str(own)) if own else "–",
            }
        )
    return rows


def chosen_line(result: StageResult, names: Mapping[str, str]) -> str | None:
    """A select stage's choice as one markdown line (names escaped)."""
    chosen = result.details.get("chosen")
    if result.kind != StageKind.SELECT or not isinstance(chosen, str):
        return None
    how = "" if result.details.get("parsed", True) else " (the selector's choice could not be read: fallback)"
    return f"**Chosen draft:** {md_escape(names.get(chosen, chosen))}{md_escape(how)}, returned verbatim as the answer."


def _table(rows: list[dict[str, str]]) -> None:
    # st.table renders markdown in its cells: every cell is escaped to show as plain text.
    st.table([{k: md_escape(v) for k, v in r.items()} for r in rows], hide_index=True)


def show_stage_result(result: StageResult, names: Mapping[str, str]) -> None:
    """A review stage's aggregate ranking (and who saw which letter), or a select stage's choice."""
    if result.kind == StageKind.REVIEW:
        rows = ranking_rows(result.details, names)
        st.markdown("**Aggregate ranking by the reviewers**")
        if rows:
            _table(rows)
        else:
            st.caption("No reviewer's ranking could be read, so there is no aggregate ranking.")
        unparsed = sum(1 for rv in result.details.get("reviews") or [] if rv.get("ranking") is None)
        note = f" {unparsed} ranking(s) could not be read and are not counted." if unparsed else ""
        st.caption(
            "Mean rank: 1 is best. Borda: points for each place (more is better). Votes: reviewers whose "
            "ranking counted for that answer (a reviewer's ranking of its own answer is excluded unless "
            f"include_own).{note}"
        )
        reviews = reviewer_rows(result.details, names)
        if reviews:
            with st.expander("Which model each reviewer saw as which letter"):
                _table(reviews)
    line = chosen_line(result, names)
    if line:
        st.markdown(line)


__all__ = [
    "CHOSEN",
    "NOT_USED",
    "USED",
    "StageResult",
    "call_names",
    "chosen_line",
    "marks",
    "ranking_rows",
    "reviewer_rows",
    "show_stage_result",
    "stored_stage_results",
]
