"""An evaluation report as one self-contained HTML file: the tables of the Evaluate page,
win rates as an inline SVG chart with their intervals, and every answer and verdict."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from moa_core.analysis.objective import display_paired, display_table
from moa_core.evaluation.records import EvalReport
from moa_core.evaluation.report import OVERALL, collab_display, cost_display, pairwise_display, pct, reference_display
from moa_core.store.html_page import document, esc, frame_table, interval_chart, markdown_html


def _pairwise(rep: EvalReport) -> str:
    out = [
        "<h2>Judged win rates</h2>",
        f'<p class="note">Judge {esc(rep.judge or "none")}. Each pair judged in both orders; when the two verdicts '
        "disagree it is a tie (half a win). Intervals are 95% Wilson intervals. Unparseable verdicts are "
        "kept out of the rates and counted apart.</p>",
    ]
    if not rep.judged or rep.pairwise.empty:
        return "".join([*out, "<p>No judged pairs yet.</p>"])
    out.append(frame_table(pairwise_display(rep.pairwise)))
    overall = rep.pairwise[rep.pairwise["category"] == OVERALL]
    out.append(
        interval_chart(
            [f"{a} vs {b}" for a, b in zip(overall["contender_a"], overall["contender_b"], strict=True)],
            overall["win_rate_a"].astype(float).tolist(),
            overall["ci_low"].astype(float).tolist(),
            overall["ci_high"].astype(float).tolist(),
            label="A's win rate (95% CI), all categories",
            fmt=pct,
            reference=0.5,
        )
    )
    if rep.same_position:
        out.append(
            f'<p class="warn">Position bias: in {rep.same_position} of {rep.judged} judgement(s) the judge picked '
            "the same position in both orders; those count as ties.</p>"
        )
    if rep.unparseable:
        out.append(f'<p class="warn">{rep.unparseable} judgement(s) had a verdict that could not be read.</p>')
    return "".join(out)


def _table(title: str, data: pd.DataFrame, display: Callable[[pd.DataFrame], pd.DataFrame]) -> str:
    """A titled table of `display(data)`; nothing when there is no data."""
    return "" if data.empty else f"<h2>{esc(title)}</h2>" + frame_table(display(data))


def _objective(rep: EvalReport) -> str:
    obj = rep.objective
    if obj is None:
        return ""
    out = [
        "<h2>Does it help?</h2>",
        f'<p class="note">{obj.questions} question(s) with a reference, checked without a judge; 95% Wilson '
        "intervals; each combination against the best single model with an exact sign test.</p>",
        frame_table(display_table(obj.table)),
    ]
    if not obj.paired.empty:
        out.append(frame_table(display_paired(obj.paired)))
    out.append(f"<p><b>{esc(obj.headline)}</b></p>")
    out += [f"<p>{esc(line)}</p>" for line in obj.lines if line != obj.headline]
    out += [f'<p class="note">{esc(note)}</p>' for note in obj.notes]
    return "".join(out)


def _answers(rep: EvalReport) -> str:
    answers = rep.results.answers
    if answers.empty:
        return ""
    judgements = rep.results.judgements
    out = ["<h2>Answers and verdicts, question by question</h2>"]
    for qid, rows in answers.groupby("question_id", sort=False):
        first = rows.iloc[0]
        out.append(
            f'<h3>{esc(qid)} · {esc(first["category"])}</h3><div class="question">{markdown_html(first["question"])}</div>'
        )
        if first["reference"]:
            out.append(f'<p class="meta">Reference: {esc(first["reference"])}</p>')
        cols = "".join(
            f'<section class="col"><h3>{esc(r["contender"])}</h3>'
            f'<div class="out">{markdown_html(r["final_text"] or "")}</div></section>'
            for r in rows.to_dict("records")
        )
        out.append(f'<div class="cols">{cols}</div>')
        if not judgements.empty:
            for j in judgements[judgements["question_id"] == qid].itertuples(index=False):
                out.append(
                    f'<p class="meta">{esc(j.contender_a)} vs {esc(j.contender_b)}: verdicts {esc(j.verdict_ab)} '
                    f"(A first) / {esc(j.verdict_ba)} (swapped) → <b>{esc(j.outcome)}</b></p>"
                )
    return "".join(out)


def eval_report_html(rep: EvalReport, question_set: str = "") -> str:
    """`records.eval_report`'s result as one self-contained HTML page."""
    res = rep.results
    head = (
        f"<h1>Evaluation · {esc(res.name)}</h1>"
        f'<p class="meta">question set {esc(question_set or "–")} · contenders: {esc(", ".join(rep.contenders))} · '
        f"{len(res.answers)} answers · {rep.judged} judged pairs · "
        f"{res.failed_answers + res.failed_judgements} failed or stopped item(s)</p>"
    )
    body = "".join(
        [
            head,
            _pairwise(rep),
            _table("Reference check", rep.reference, reference_display),
            _objective(rep),
            _table("Cost, tokens and latency per question", rep.costs, cost_display),
            _table("Collaborativeness", rep.collaborativeness, collab_display),
            _answers(rep),
        ]
    )
    return document(f"MoA evaluation · {res.name}", body)


__all__ = ["eval_report_html"]
