"""How a pipeline's run is laid out on any page (live, replayed, stored, or exported as HTML):
one row of columns per stage with the same titles everywhere, and what each stage decided
beyond its texts (quorum marks, a review's de-anonymised ranking, a select's choice).

Plain Python with no drawing, so the Streamlit views (`ui/`) and the one-file HTML export
(`store/html_export.py`) show a run the same way from one description.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from moa_core.config import AgentSpec, MoAConfig
from moa_core.events import LayerDone
from moa_core.vocab import STAGE_ROLE, GenerationStatus, Role, StageKind, call_id

# What a call that did not finish normally is marked with, under its text.
STATUS_NOTE: dict[str, str] = {
    GenerationStatus.CANCELLED: "stopped before it finished",
    GenerationStatus.INTERRUPTED: (
        "cut off: the server process stopped while this was streaming; above is what had arrived"
    ),
}

# (stage title, [(call id, column title), ...]): one row of columns.
Row = tuple[str, list[tuple[str, str]]]
KIND_OF_ROLE: dict[str, StageKind] = {str(role): kind for kind, role in STAGE_ROLE.items()}


def stage_title(kind: StageKind, index: int, n: int, quorum_k: int | None = None) -> str:
    """A stage row's heading; a propose stage keeps the name old runs were shown with."""
    if kind == StageKind.PROPOSE:
        title = f"Layer {index + 1} · {n} proposer{'s' if n != 1 else ''}"
    elif kind == StageKind.REVIEW:
        title = f"Layer {index + 1} · peer review by {n} reviewers (answers anonymised)"
    elif kind == StageKind.SELECT:
        title = "Selected answer and single models"
    else:
        title = "Aggregated answer and single models"
    return title + (f" · quorum {quorum_k} of {n}" if quorum_k else "")


def column_title(kind: StageKind, name: str) -> str:
    if kind == StageKind.REVIEW:
        return f"Review by {name}"
    if kind == StageKind.SYNTHESIZE:
        return f"MoA · {name}"
    if kind == StageKind.SELECT:
        return f"Selector · {name}"
    return name


def baseline_title(name: str) -> str:
    return f"Alone · {name}"


def _rows(
    stages: Sequence[tuple[int, StageKind, Sequence[tuple[int, str]], int | None]], baselines: Sequence[tuple[int, str]]
) -> list[Row]:
    """(index, kind, [(slot, name)], quorum k) per stage -> rows; the baselines join the final row."""
    rows: list[Row] = []
    for i, kind, agents, k in stages:
        role = STAGE_ROLE[kind]
        calls = [(call_id(role, i, slot), column_title(kind, name)) for slot, name in agents]
        rows.append((stage_title(kind, i, len(agents), k), calls))
    extra = [(call_id(Role.BASELINE, -1, slot), baseline_title(name)) for slot, name in baselines]
    if stages and stages[-1][1] in (StageKind.SYNTHESIZE, StageKind.SELECT):
        rows[-1] = (rows[-1][0], rows[-1][1] + extra)
    elif extra:  # a run that ended before its final stage
        rows.append(("Single models", extra))
    return rows


def pipeline_columns(config: MoAConfig, baselines: Sequence[AgentSpec]) -> list[Row]:
    """The live columns of a run of `config`: one row per stage, the baselines beside the final answer."""
    stages = [
        (i, s.kind, list(enumerate(a.display_name for a in s.agents)), s.quorum.k if s.quorum else None)
        for i, s in enumerate(config.pipeline())
    ]
    return _rows(stages, list(enumerate(a.display_name for a in baselines)))


def _stored_quorums(stored: Mapping[str, Any]) -> dict[int, int]:
    stages = ((stored.get("run") or {}).get("config") or {}).get("stages") or []
    out = {}
    for i, s in enumerate(stages):
        k = (s.get("quorum") or {}).get("k") if isinstance(s, dict) else None
        if isinstance(k, int):
            out[i] = k
    return out


def generation_call_id(g: Mapping[str, Any]) -> str:
    """The column id of a stored generation, as `stage_columns` names it: a single model's call
    is in no stage (layer -1), whatever layer an older or hand-made row says."""
    layer = -1 if g["role"] == Role.BASELINE else int(g["layer"])
    return call_id(g["role"], layer, int(g["slot"]))


def stage_columns(stored: Mapping[str, Any]) -> list[Row]:
    """The live columns of a stored run, from its generations (role and layer say the stage),
    so any pipeline shows as it ran: the same rows `pipeline_columns` gives its config. Roles
    that are no stage (a judge) are left out."""
    by_layer: dict[int, tuple[StageKind, list[tuple[int, str]]]] = {}
    baselines: list[tuple[int, str]] = []
    for g in sorted(stored["generations"], key=lambda g: (g["layer"], g["slot"])):
        name = g.get("label") or g.get("model") or ""
        if g["role"] == Role.BASELINE:
            baselines.append((int(g["slot"]), name))
        elif g["role"] in KIND_OF_ROLE:
            by_layer.setdefault(int(g["layer"]), (KIND_OF_ROLE[g["role"]], []))[1].append((int(g["slot"]), name))
    quorums = _stored_quorums(stored)
    stages = [(i, kind, agents, quorums.get(i)) for i, (kind, agents) in sorted(by_layer.items())]
    return _rows(stages, baselines)


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
            names[generation_call_id(g)] = g.get("label") or g.get("model") or ""
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


def stage_marks(results: Mapping[int, StageResult]) -> dict[str, str]:
    """Every call's mark from the stages that decided about it; a later stage's wins (a draft
    the quorum used and the selector then chose is shown as chosen)."""
    out: dict[str, str] = {}
    for layer in sorted(results):
        out.update(marks(results[layer]))
    return out


def unparsed_reviews(details: Mapping[str, Any]) -> int:
    return sum(1 for rv in details.get("reviews") or [] if rv.get("ranking") is None)


RANKING_TITLE = "Aggregate ranking by the reviewers"
NO_RANKING = "No reviewer's ranking could be read, so there is no aggregate ranking."
LETTERS_TITLE = "Which model each reviewer saw as which letter"


def ranking_note(details: Mapping[str, Any]) -> str:
    """What the ranking table's columns mean (and how many rankings were not counted)."""
    unparsed = unparsed_reviews(details)
    note = f" {unparsed} ranking(s) could not be read and are not counted." if unparsed else ""
    return (
        "Mean rank: 1 is best. Borda: points for each place (more is better). Votes: reviewers whose "
        "ranking counted for that answer (a reviewer's ranking of its own answer is excluded unless "
        f"include_own).{note}"
    )


def chosen_draft(result: StageResult, names: Mapping[str, str]) -> tuple[str, str] | None:
    """A select stage's choice: (the chosen draft's name, a note when the choice was a fallback)."""
    chosen = result.details.get("chosen")
    if result.kind != StageKind.SELECT or not isinstance(chosen, str):
        return None
    how = "" if result.details.get("parsed", True) else " (the selector's choice could not be read: fallback)"
    return names.get(chosen, chosen), how


CHOSEN_TAIL = ", returned verbatim as the answer."
SELECTOR_TEXT_TITLE = "What the selector wrote"


def selector_text(result: StageResult) -> str | None:
    """A select stage's own reply (its call's stored text is the chosen draft), if kept."""
    text = result.details.get("selector_text") if result.kind == StageKind.SELECT else None
    return text if isinstance(text, str) else None


__all__ = [
    "CHOSEN",
    "CHOSEN_TAIL",
    "KIND_OF_ROLE",
    "LETTERS_TITLE",
    "NOT_USED",
    "NO_RANKING",
    "RANKING_TITLE",
    "SELECTOR_TEXT_TITLE",
    "STATUS_NOTE",
    "USED",
    "Row",
    "StageResult",
    "baseline_title",
    "call_names",
    "chosen_draft",
    "column_title",
    "generation_call_id",
    "marks",
    "pipeline_columns",
    "ranking_note",
    "ranking_rows",
    "reviewer_rows",
    "selector_text",
    "stage_columns",
    "stage_marks",
    "stage_title",
    "stored_stage_results",
    "unparsed_reviews",
]
