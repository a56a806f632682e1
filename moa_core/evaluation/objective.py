"""An evaluation's answers as scored rows for the "does it help?" report. Pure pandas.

Every contender's final answer to a question with a reference is one row, its role the
contender's shape (``single``, ``moa``, ``council``, ``select``). The proposers alone
come for free: a pipeline's first stage *is* each proposer answering the question by
itself, so their drafts are read from one pipeline's runs (the first MoA contender, else
the first council, else the first select) and scored like any answer, under the name
"<label> (proposer)". Those are exactly the drafts that pipeline combined, which makes
"MoA vs its best proposer" a comparison on the same drafts.
"""

from __future__ import annotations

import pandas as pd

from moa_core.analysis.objective import SCORED_COLUMNS, ObjectiveReport, objective_report
from moa_core.evaluation.judge import answer_key, reference_check

SHAPES = ("single", "moa", "council", "select")
PROPOSER_SOURCES = ("moa", "council", "select")
DRAFT_COLUMNS = ("run_id", "slot", "name", "text")


def _with_reference(answers: pd.DataFrame) -> pd.DataFrame:
    if answers.empty or "reference" not in answers.columns:
        return answers.iloc[0:0]
    return answers[answers["reference"].fillna("").astype(str).str.strip().astype(bool)]


def shapes(answers: pd.DataFrame) -> pd.Series:
    """Each answer's shape: stored with the answer, or (answers from before pipelines
    had stages) ``single`` / ``moa`` from its contender kind."""
    stored = answers["shape"] if "shape" in answers.columns else pd.Series(None, index=answers.index, dtype=object)
    fallback = answers["contender_kind"].map(lambda k: "single" if k == "single" else "moa")
    return stored.where(stored.isin(SHAPES), fallback)


def proposer_source(answers: pd.DataFrame) -> str | None:
    """The contender whose first-stage drafts stand for "each proposer alone"."""
    refd = _with_reference(answers)
    if refd.empty:
        return None
    sh = shapes(refd)
    for shape in PROPOSER_SOURCES:
        names = refd.loc[sh == shape, "contender"]
        if not names.empty:
            return str(names.iloc[0])
    return None


def _draft_names(drafts: pd.DataFrame) -> dict[int, str]:
    """slot -> "<label> (proposer)"; a label used by several slots gets "#<slot+1>"."""
    first = drafts.sort_values("slot", kind="stable").drop_duplicates("slot")
    labels = dict(zip(first["slot"].astype(int), first["name"].astype(str), strict=True))
    repeated = {lab for lab in labels.values() if list(labels.values()).count(lab) > 1}
    return {s: f"{lab} #{s + 1} (proposer)" if lab in repeated else f"{lab} (proposer)" for s, lab in labels.items()}


def scored_rows(answers: pd.DataFrame, drafts: pd.DataFrame | None = None) -> pd.DataFrame:
    """:data:`SCORED_COLUMNS` rows for every answer to a question with a reference, plus
    the proposers' drafts (:data:`DRAFT_COLUMNS`, one row per done first-stage draft of
    :func:`proposer_source`'s runs). Keys and correctness are recomputed from the text, so
    both follow the same rule."""
    refd = _with_reference(answers)
    rows = []
    for r, shape in zip(refd.to_dict("records"), shapes(refd), strict=True):
        text, ref = str(r["final_text"] or ""), str(r["reference"])
        rows.append(
            {
                "question_id": str(r["question_id"]),
                "contender": str(r["contender"]),
                "role": shape,
                "key": answer_key(text, ref),
                "correct": reference_check(text, ref),
            }
        )
    if drafts is not None and not drafts.empty:
        by_run = {str(r["run_id"]): r for r in refd.to_dict("records")}
        names = _draft_names(drafts)
        for d in drafts.to_dict("records"):
            run = by_run.get(str(d["run_id"]))
            if run is None:
                continue
            text, ref = str(d["text"] or ""), str(run["reference"])
            rows.append(
                {
                    "question_id": str(run["question_id"]),
                    "contender": names[int(d["slot"])],
                    "role": "proposer",
                    "key": answer_key(text, ref),
                    "correct": reference_check(text, ref),
                }
            )
    out = pd.DataFrame(rows, columns=list(SCORED_COLUMNS))
    out["key"] = out["key"].astype(object).where(out["key"].notna(), None)
    return out


def build_objective(answers: pd.DataFrame, drafts: pd.DataFrame | None = None) -> ObjectiveReport | None:
    """The report, or None when no question of the evaluation has a reference."""
    scored = scored_rows(answers, drafts)
    if scored.empty:
        return None
    report = objective_report(scored)
    source = proposer_source(answers)
    if source is not None and drafts is not None and not drafts.empty:
        report.notes.insert(
            0,
            f"Proposers alone: the first-stage drafts inside {source}'s runs (each proposer answered the question "
            "by itself there; no extra calls).",
        )
    return report


__all__ = ["DRAFT_COLUMNS", "SHAPES", "build_objective", "proposer_source", "scored_rows", "shapes"]
