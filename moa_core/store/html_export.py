"""A stored run, or the leaderboard, as one self-contained HTML file to share (no server).

`run_html(get_run(...))` has the question, one row of columns per stage as the run ran it
(the rows and titles of `stage_layout`, as the app shows them), what each stage decided (a
quorum's used / not used marks, a review's de-anonymised ranking, a select's choice), the
final answer beside the baselines, per-call metrics, the call timeline (inline SVG),
ratings, comments and votes, and a Replay button that types each column again on the run's own clock. Every
text is in the HTML itself, so the page reads the same with scripts off; the script only
animates what is already there.
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import Engine

from moa_core.stage_layout import (
    CHOSEN_TAIL,
    LETTERS_TITLE,
    NO_RANKING,
    NOT_USED,
    RANKING_TITLE,
    SELECTOR_TEXT_TITLE,
    STATUS_NOTE,
    Row,
    StageResult,
    call_names,
    chosen_draft,
    generation_call_id,
    ranking_note,
    ranking_rows,
    reviewer_rows,
    selector_text,
    stage_columns,
    stage_marks,
    stored_stage_results,
)
from moa_core.store.db import StoreError
from moa_core.store.html_page import (
    document,
    esc,
    fmt_cost,
    fmt_seconds,
    interval_chart,
    markdown_html,
    table,
)
from moa_core.store.queries import get_run
from moa_core.vocab import FINAL_STAGE_ROLES, GenerationStatus, Role, RunStatus, StageKind, VoteOutcome

EXPORT_NOTE: dict[str, str] = {**STATUS_NOTE, GenerationStatus.STREAMING: "still streaming when exported"}
# Roles that run in a stage of their own (their layer is the stage's index).
STAGED_ROLES = (Role.PROPOSER, Role.REVIEWER)

# Types each column's text again, on the run's clock: a column starts at its first token
# and ends when its call ended (or follows `data-timing`, [seconds after start, characters
# so far] pairs, when the run recorded them). It only re-reveals text already on the page.
REPLAY_JS = """(function(){
var btn=document.getElementById('replay'),speed=document.getElementById('speed'),bar=document.getElementById('replay-bar');
bar.hidden=false;var cols=[].slice.call(document.querySelectorAll('[data-replay]')),timer=null,saved=null;
function restore(){if(timer){cancelAnimationFrame(timer);timer=null}if(saved){saved.forEach(function(s){s.el.innerHTML=s.html;s.el.classList.remove('typing')});saved=null}btn.textContent='Replay'}
function shown(c,t){var d=c.d;if(t<d.first)return 0;if(d.timing.length){var n=0;for(var i=0;i<d.timing.length;i++){if(d.timing[i][0]<=t)n=d.timing[i][1]}return Math.min(n,c.text.length)}
if(t>=d.end)return c.text.length;return Math.floor(c.text.length*(t-d.first)/Math.max(d.end-d.first,0.001))}
btn.onclick=function(){if(saved){restore();return}var rate=parseFloat(speed.value);if(!rate){return}
saved=cols.map(function(c){var el=c.querySelector('.out');var tm=[];try{tm=JSON.parse(c.getAttribute('data-timing')||'[]')}catch(e){}
return{el:el,html:el.innerHTML,text:el.textContent,d:{first:+c.getAttribute('data-first'),end:+c.getAttribute('data-end'),timing:tm}}});
var last=Math.max.apply(null,saved.map(function(s){return s.d.end}).concat([0]));
saved.forEach(function(s){s.el.textContent='';s.el.classList.add('typing')});btn.textContent='Stop';var t0=performance.now();
function step(now){var t=(now-t0)/1000*rate;saved.forEach(function(s){var n=shown(s,t);if(s.el.textContent.length!==n)s.el.textContent=s.text.slice(0,n)});
if(t>last){restore();return}timer=requestAnimationFrame(step)}timer=requestAnimationFrame(step)};
speed.onchange=function(){if(!parseFloat(speed.value))restore()};
})();"""


def _when(ts: float | None) -> str:
    return "–" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _name(g: dict[str, Any]) -> str:
    return str(g.get("label") or g.get("model") or "")


def _stars(score: int) -> str:
    return "★" * score + "☆" * (5 - score)


def _metrics(g: dict[str, Any]) -> str:
    via = f" · via {g['deployment']}" if g.get("deployment") else ""
    return (
        f"{g['model']} · {g['prompt_tokens']}→{g['completion_tokens']} tok · TTFT {fmt_seconds(g['ttft'])} · "
        f"{fmt_seconds(g['latency'])} · {fmt_cost(g['cost'])} · {g['status']}{via}"
    )


def _timing(g: dict[str, Any]) -> str:
    timing = g.get("timing")
    if not isinstance(timing, list):
        return ""
    pairs = [[float(p[0]), int(p[1])] for p in timing if isinstance(p, list | tuple) and len(p) >= 2]
    return f' data-timing="{esc(json.dumps(pairs))}"' if pairs else ""


def _column(g: dict[str, Any], ratings: list[dict[str, Any]], t0: float, title: str, mark: str | None) -> str:
    start = float(g["started_at"]) - t0
    end = float(g["ended_at"]) - t0 if g.get("ended_at") is not None else start + float(g.get("latency") or 0)
    first = start + float(g["ttft"]) if g.get("ttft") is not None else start
    parts = [
        f'<section class="col {esc(g["role"])}" data-replay data-first="{first:.3f}" data-end="{max(end, first):.3f}"'
        f"{_timing(g)}><h3>{esc(title)}</h3>",
    ]
    if mark:
        cut = mark == NOT_USED
        parts.append(f'<p class="mark {"cut" if cut else "used"}">{"✂️ " if cut else "✅ "}{esc(mark)}</p>')
    parts.append(f'<div class="out">{markdown_html(g["text"])}</div>')
    if g.get("error"):
        parts.append(f'<p class="err">{esc(g["error"])}</p>')
    elif g["status"] in EXPORT_NOTE:
        parts.append(f'<p class="warn">{esc(EXPORT_NOTE[g["status"]])}</p>')
    parts.append(f'<p class="meta">{esc(_metrics(g))}</p>')
    if ratings:
        items = "".join(
            f'<li><span class="stars" title="{r["score"]} of 5">{_stars(int(r["score"]))}</span> '
            f"{esc(r['rater'])}: {esc(r['comment']) if r['comment'] else '<i>no comment</i>'}</li>"
            for r in ratings
        )
        parts.append(f'<ul class="ratings">{items}</ul>')
    parts.append("</section>")
    return "".join(parts)


def timeline_svg(gens: list[dict[str, Any]]) -> str:
    """One bar per call from started_at to ended_at, a tick at its first token; failed calls red."""
    calls = [g for g in gens if g.get("started_at") is not None]
    if not calls:
        return ""
    t0 = min(float(g["started_at"]) for g in calls)

    def end_of(g: dict[str, Any]) -> float:
        if g.get("ended_at") is not None:
            return float(g["ended_at"]) - t0
        return float(g["started_at"]) - t0 + float(g.get("latency") or 0)

    span = max(max(end_of(g) for g in calls), 0.001)
    left, width, row_h, top = 260, 560, 22, 8
    height = top + row_h * len(calls) + 34

    def x(t: float) -> float:
        return left + t / span * width

    out = [
        '<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" '
        f'viewBox="0 0 {left + width + 60} {height}" width="{left + width + 60}" height="{height}">'
        "<title>Timeline of the calls</title>"
    ]
    ordered = sorted(calls, key=lambda g: (float(g["started_at"]), g["layer"], g["slot"]))
    for i, g in enumerate(ordered):
        y = top + i * row_h
        s, e = float(g["started_at"]) - t0, end_of(g)
        layer = f"L{g['layer'] + 1} " if g["role"] in STAGED_ROLES else ""
        name = f"{layer}{g['role']} · {_name(g)}"
        short = name if len(name) <= 38 else name[:37] + "…"
        cls = "failed" if g.get("error") else esc(g["role"])
        tip = f"{name}: {s:.2f}s → {e:.2f}s" + (f" · {g['error']}" if g.get("error") else "")
        out.append(f'<text x="{left - 8}" y="{y + 15}" class="name">{esc(short)}</text>')
        out.append(
            f'<rect x="{x(s):.1f}" y="{y + 3}" width="{max(x(e) - x(s), 2):.1f}" height="{row_h - 6}" '
            f'class="bar {cls}"><title>{esc(tip)}</title></rect>'
        )
        if g.get("ttft") is not None:
            fx = x(s + float(g["ttft"]))
            out.append(f'<line x1="{fx:.1f}" y1="{y + 2}" x2="{fx:.1f}" y2="{y + row_h - 2}" class="first"/>')
    axis_y = top + row_h * len(calls) + 4
    out.append(f'<line x1="{left}" y1="{axis_y}" x2="{left + width}" y2="{axis_y}" class="axis"/>')
    for k in range(5):
        t = span * k / 4
        out.append(f'<text x="{x(t):.1f}" y="{axis_y + 14}" class="tick">{t:.1f}s</text>')
    out.append(
        f'<text x="{left + width / 2}" y="{axis_y + 28}" class="tick">seconds since the first call '
        "(black tick: first token)</text></svg>"
    )
    return "".join(out)


def _calls_table(gens: list[dict[str, Any]]) -> str:
    headers = [
        "role",
        "layer",
        "name",
        "model",
        "tokens in",
        "tokens out",
        "TTFT",
        "latency",
        "cost",
        "status",
        "error",
    ]
    numeric = [False, True, False, False, True, True, True, True, True, False, False]
    rows = [
        [
            g["role"],
            g["layer"] + 1 if g["role"] in STAGED_ROLES else "–",
            _name(g),
            g["model"],
            g["prompt_tokens"],
            g["completion_tokens"],
            fmt_seconds(g["ttft"]),
            fmt_seconds(g["latency"]),
            fmt_cost(g["cost"]),
            g["status"],
            g.get("error") or "",
        ]
        for g in gens
    ]
    return table(headers, rows, numeric=numeric)


def _votes(votes: list[dict[str, Any]], gens: list[dict[str, Any]]) -> str:
    if not votes:
        return ""
    by_id = {g["id"]: _name(g) for g in gens}
    outcome = {
        VoteOutcome.LEFT: "left wins",
        VoteOutcome.RIGHT: "right wins",
        VoteOutcome.TIE: "tie",
        VoteOutcome.BOTH_BAD: "both bad",
    }
    rows = [
        [
            by_id.get(v["left_generation_id"], f"generation {v['left_generation_id']}"),
            by_id.get(v["right_generation_id"], f"generation {v['right_generation_id']}"),
            outcome.get(v["outcome"], v["outcome"]),
            "blind" if v.get("blind") else "open",
            v["rater"],
            _when(v["created_at"]),
        ]
        for v in votes
    ]
    return "<h2>Votes</h2>" + table(["left", "right", "outcome", "how", "rater", "when"], rows)


def _rows(data: dict[str, Any]) -> list[Row]:
    """The app's rows of stage columns; a judge's call (no stage) sits beside the final answer."""
    rows = stage_columns(data)
    judges = [
        (generation_call_id(g), f"Judge · {_name(g)}")
        for g in sorted(data["generations"], key=lambda g: g["slot"])
        if g["role"] == Role.JUDGE
    ]
    if not judges:
        return rows
    if rows and not rows[-1][1][0][0].startswith((Role.PROPOSER, Role.REVIEWER)):
        return [*rows[:-1], (rows[-1][0], rows[-1][1] + judges)]
    return [*rows, ("Judge", judges)]


def _ranking(result: StageResult, names: dict[str, str]) -> str:
    """A review stage's aggregate ranking, de-anonymised, and which letter each reviewer saw."""
    rows = ranking_rows(result.details, names)
    parts = [f"<h3>{esc(RANKING_TITLE)}</h3>"]
    if rows:
        keys = list(rows[0])
        parts.append(table(keys, [[r[k] for k in keys] for r in rows], numeric=[k != "model" for k in keys]))
    else:
        parts.append(f'<p class="note">{esc(NO_RANKING)}</p>')
    parts.append(f'<p class="note">{esc(ranking_note(result.details))}</p>')
    reviews = reviewer_rows(result.details, names)
    if reviews:
        keys = list(reviews[0])
        parts.append(f"<h3>{esc(LETTERS_TITLE)}</h3>" + table(keys, [[r[k] for k in keys] for r in reviews]))
    return '<div class="stage-result">' + "".join(parts) + "</div>"


def _stage_result(result: StageResult, names: dict[str, str]) -> str:
    if result.kind == StageKind.REVIEW:
        return _ranking(result, names)
    chosen = chosen_draft(result, names)
    if chosen is None:
        return ""
    name, how = chosen
    out = f'<p class="chosen"><b>Chosen draft:</b> {esc(name)}{esc(how)}{esc(CHOSEN_TAIL)}</p>'
    said = selector_text(result)
    if said is not None:
        out += f"<details><summary>{esc(SELECTOR_TEXT_TITLE)}</summary>{markdown_html(said)}</details>"
    return out


def _stages(data: dict[str, Any], ratings: dict[int, list[dict[str, Any]]], t0: float) -> str:
    """One row of columns per stage, in order, each followed by what that stage decided."""
    by_call = {generation_call_id(g): g for g in data["generations"]}
    rows = _rows(data)
    names = call_names(rows, data)
    results = stored_stage_results(data)
    call_marks = stage_marks(results)
    out: list[str] = []
    shown: set[int] = set()
    for title, calls in rows:
        out.append(f"<h2>{esc(title)}</h2>")
        columns = (_column(by_call[c], ratings[by_call[c]["id"]], t0, t, call_marks.get(c)) for c, t in calls)
        out.append('<div class="cols">' + "".join(columns) + "</div>")
        for layer in sorted({int(by_call[c]["layer"]) for c, _ in calls} - shown):
            shown.add(layer)
            if layer in results:
                out.append(_stage_result(results[layer], names))
    return "".join(out)


def run_html(data: dict[str, Any]) -> str:
    """`get_run`'s dict as one self-contained HTML page."""
    run, gens = data["run"], data["generations"]
    ratings: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r in data.get("ratings") or []:
        ratings[r["generation_id"]].append(r)
    starts = [float(g["started_at"]) for g in gens if g.get("started_at") is not None]
    t0 = min(starts) if starts else float(run["created_at"])
    body = [f"<h1>{esc(_title(run['question']))}</h1>"]
    for turn in run.get("history") or []:
        body.append(
            f'<p class="meta">{esc(turn.get("role", ""))}:</p>'
            f'<div class="question">{markdown_html(str(turn.get("content", "")))}</div>'
        )
    if run.get("history"):
        body.append('<p class="meta">question:</p>')
    body.append(f'<div class="question">{markdown_html(run["question"])}</div>')
    body.append(
        f'<p class="meta">{esc(run["status"])} · preset {esc(run["preset"] or "–")} · {esc(run["kind"])} · '
        f"{_when(run['created_at'])} · {run['prompt_tokens']}+{run['completion_tokens']} tokens · "
        f"{esc(fmt_cost(run['cost']))} · {esc(fmt_seconds(run['wall_time']))} wall · run {esc(run['id'])}</p>"
    )
    if run.get("error"):
        body.append(f'<p class="err">{esc(run["error"])}</p>')
    body.append(
        '<div class="controls" id="replay-bar" hidden><button id="replay" type="button">Replay</button> '
        '<select id="speed" aria-label="speed"><option value="1">1×</option><option value="2">2×</option>'
        '<option value="5">5×</option><option value="1e9">instant</option></select> '
        '<span class="note">types every column again on the run\'s own clock'
        + ("" if any(g.get("timing") for g in gens) else " (at an even rate from each call's first token to its end)")
        + "</span></div>"
    )
    body.append(_stages(data, ratings, t0))
    if run["status"] == RunStatus.RUNNING and not any(
        g["role"] in (*FINAL_STAGE_ROLES, Role.BASELINE, Role.JUDGE) for g in gens
    ):
        body.append('<p class="note">This run was still in progress when exported.</p>')
    if gens:
        body.append("<h2>Calls</h2>" + _calls_table(gens))
        body.append("<h2>Timeline of the calls</h2>" + timeline_svg(gens))
    body.append(_votes(data.get("votes") or [], gens))
    trims = (run.get("meta") or {}).get("context_trimmed")
    if trims:
        body.append(f'<p class="note">Drafts were trimmed to fit a context window {len(trims)} time(s).</p>')
    return document(f"MoA run · {_title(run['question'])}", "".join(body), REPLAY_JS)


def _title(question: str) -> str:
    flat = " ".join(str(question).split())
    return flat if len(flat) <= 120 else flat[:119] + "…"


def export_run_html(engine: Engine, run_id: str, out: str | Path) -> Path:
    """Write run `run_id` to `out` as HTML (whole or not at all); KeyError for an unknown run."""
    data = get_run(engine, run_id)
    if data is None:
        raise KeyError(run_id)
    path = Path(out)
    tmp = path.with_name(f".{path.name}.part")
    try:
        tmp.write_text(run_html(data), encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise StoreError(f"cannot write {path}: {exc.strerror or exc}") from exc
    return path


# -- leaderboard ---------------------------------------------------------------------------


def leaderboard_html(board: pd.DataFrame, votes: int, *, n_boot: int, scope: str = "") -> str:
    """`analysis.leaderboard`'s frame as a page: the table and an inline SVG of ratings with CIs."""
    names = [str(n) for n in board["contender"]]
    rows = [
        [
            int(r["rank"]),
            str(r["contender"]),
            f"{r['rating']:.0f}",
            f"{r['ci_low']:.0f} – {r['ci_high']:.0f}",
            int(r["battles"]),
            f"{100 * r['win_rate']:.0f}%",
            *(int(r[k]) for k in ("wins", "losses", "ties", "both_bad")),
        ]
        for r in board.to_dict("records")
    ]
    headers = ["rank", "contender", "rating", "95% CI", "battles", "win rate", "wins", "losses", "ties", "both bad"]
    numeric = [True, False, True, True, True, True, True, True, True, True]
    chart = interval_chart(
        names,
        board["rating"].astype(float).tolist(),
        board["ci_low"].astype(float).tolist(),
        board["ci_high"].astype(float).tolist(),
        label="rating (95% bootstrap CI)",
        reference=1000.0,
    )
    body = (
        "<h1>Leaderboard</h1>"
        f'<p class="meta">{esc(scope) + " · " if scope else ""}exported {_when(datetime.now(UTC).timestamp())}</p>'
        f"<p>Bradley–Terry ratings (Elo-like scale, mean 1000) from {votes:,} vote(s), 95% bootstrap confidence "
        f"intervals ({n_boot} resamples). Rank = 1 + the number of contenders whose whole interval lies above "
        "this one's. Ties and both-bad count as half a win each.</p>"
        + table(headers, rows, numeric=numeric)
        + "<h2>Ratings with 95% confidence intervals</h2>"
        + chart
    )
    return document("MoA Studio leaderboard", body)


__all__ = ["export_run_html", "leaderboard_html", "run_html", "timeline_svg"]
