"""Self-contained HTML pages: the pieces every export shares (shell, tables, SVG charts, text).

A page exported here opens from disk with no server and loads nothing: styles are inline,
fonts are the system's, charts are inline SVG, the only script is the page's own. Its
Content-Security-Policy says so too (`default-src 'none'`, the script allowed by its hash),
so even a tag that slipped through could neither run nor fetch.

Untrusted text (model output, questions, names, comments, errors) reaches the page only
through `esc` (plain text) or `markdown_html` (markdown with raw HTML off, images shown as
links, and links kept only for http, https and mailto: the policy of ui/safe_text.py).
"""

from __future__ import annotations

import base64
import hashlib
import html
import math
import re
from collections.abc import Callable, Sequence
from typing import Any

from markdown_it import MarkdownIt
from markdown_it.rules_core import StateCore
from markdown_it.token import Token

ALLOWED_LINK = re.compile(r"(?i)(?:https?|mailto):")


def esc(value: object) -> str:
    """Any value as HTML text (attributes included); None is empty."""
    return "" if value is None else html.escape(str(value), quote=True)


class _LinkPolicyMarkdown(MarkdownIt):
    def validateLink(self, url: str) -> bool:
        # Called with the normalized (percent-encoded) URL: a scheme hidden behind entities,
        # escapes or control characters has already been decoded or encoded away.
        return ALLOWED_LINK.match(url) is not None


def _unlink_the_rest(state: StateCore) -> None:
    """A link markdown-it made without asking validateLink (`[a]()`: an empty destination,
    the page itself) goes back to the text it was written as."""
    for block in state.tokens:
        children = block.children or []
        for i, tok in enumerate(children):
            href = str(tok.attrGet("href") or "")
            if tok.type != "link_open" or ALLOWED_LINK.match(href):
                continue
            close = next(j for j in range(i + 1, len(children)) if children[j].type == "link_close")
            children[i] = Token("text", "", 0, content="[")
            children[close] = Token("text", "", 0, content=f"]({href})")


def _markdown() -> MarkdownIt:
    # commonmark without raw HTML; no linkify, no typographer. Images would fetch their URL
    # on open, so the image rule is off and `![alt](url)` reads as "!" and a link.
    md = _LinkPolicyMarkdown("commonmark", {"html": False}).disable("image")
    md.core.ruler.push("unlink_the_rest", _unlink_the_rest)
    return md


_MD = _markdown()


def markdown_html(text: str | None) -> str:
    """Untrusted markdown -> HTML whose only links are http, https or mailto."""
    body = _MD.render(text or "")
    # Links leave the page in a new tab and tell the site nothing about where they came from.
    return body.replace("<a href=", '<a rel="noopener noreferrer" target="_blank" href=')


def fmt_seconds(x: float | None) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.2f}s"


def fmt_cost(x: float | None) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return "free" if x == 0 else f"${x:.5f}"


def fmt_cell(value: Any) -> str:
    """A table cell as text: floats rounded, missing values as a dash."""
    if value is None:
        return "–"
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        return f"{value:.3f}".rstrip("0").rstrip(".") if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, numeric: Sequence[bool] | None = None) -> str:
    """An HTML table; every header and cell escaped."""
    num = list(numeric) if numeric is not None else [False] * len(headers)
    head = "".join(f"<th{' class=num' if n else ''}>{esc(h)}</th>" for h, n in zip(headers, num, strict=False))
    body = "".join(
        "<tr>"
        + "".join(
            f"<td{' class=num' if n else ''}>{esc(fmt_cell(c))}</td>"
            for c, n in zip(row, num + [False] * len(row), strict=False)
        )
        + "</tr>"
        for row in rows
    )
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def frame_table(df: Any) -> str:
    """A pandas DataFrame as an escaped HTML table (numeric columns right-aligned)."""
    numeric = [str(df[c].dtype).startswith(("int", "float", "Int", "Float")) for c in df.columns]
    rows = [[None if _missing(v) else v for v in row] for row in df.itertuples(index=False, name=None)]
    return table([str(c) for c in df.columns], rows, numeric=numeric)


def _missing(v: Any) -> bool:
    try:
        return bool(v is None or (v != v))  # NaN, NaT, pd.NA
    except (TypeError, ValueError):
        return False


# -- charts -----------------------------------------------------------------------------

SVG_NS = 'xmlns="http://www.w3.org/2000/svg"'  # a namespace name, never fetched


def interval_chart(
    names: Sequence[str],
    values: Sequence[float],
    lows: Sequence[float],
    highs: Sequence[float],
    *,
    label: str,
    fmt: Callable[[float], str] = lambda v: f"{v:.0f}",
    reference: float | None = None,
) -> str:
    """A horizontal forest plot: one row per name, a dot at its value, a line across its interval."""
    finite = [v for v in (*values, *lows, *highs) if v is not None and not math.isnan(v)]
    if not names or not finite:
        return ""
    lo, hi = min(finite), max(finite)
    if reference is not None:
        lo, hi = min(lo, reference), max(hi, reference)
    pad = (hi - lo) * 0.05 or 1.0
    lo, hi = lo - pad, hi + pad
    left, width, row_h, top = 230, 420, 26, 10
    height = top + row_h * len(names) + 34

    def x(v: float) -> float:
        return left + (v - lo) / (hi - lo) * width

    parts = [
        f'<svg {SVG_NS} class="chart" role="img" viewBox="0 0 {left + width + 70} {height}" '
        f'width="{left + width + 70}" height="{height}"><title>{esc(label)}</title>'
    ]
    axis_y = top + row_h * len(names) + 4
    parts.append(f'<line x1="{left}" y1="{axis_y}" x2="{left + width}" y2="{axis_y}" class="axis"/>')
    for t in (lo + pad, (lo + hi) / 2, hi - pad):
        parts.append(f'<text x="{x(t):.1f}" y="{axis_y + 14}" class="tick">{esc(fmt(t))}</text>')
    parts.append(f'<text x="{left + width / 2:.1f}" y="{axis_y + 28}" class="tick">{esc(label)}</text>')
    if reference is not None:
        parts.append(f'<line x1="{x(reference):.1f}" y1="{top}" x2="{x(reference):.1f}" y2="{axis_y}" class="ref"/>')
    for i, (name, v, a, b) in enumerate(zip(names, values, lows, highs, strict=False)):
        y = top + row_h * i + row_h / 2
        short = name if len(name) <= 34 else name[:33] + "…"
        parts.append(f'<text x="{left - 8}" y="{y + 4:.1f}" class="name">{esc(short)}<title>{esc(name)}</title></text>')
        if a is not None and b is not None and not (math.isnan(a) or math.isnan(b)):
            parts.append(f'<line x1="{x(a):.1f}" y1="{y:.1f}" x2="{x(b):.1f}" y2="{y:.1f}" class="ci"/>')
        if v is not None and not math.isnan(v):
            parts.append(f'<circle cx="{x(v):.1f}" cy="{y:.1f}" r="4.5" class="dot"/>')
            parts.append(f'<text x="{left + width + 8}" y="{y + 4:.1f}" class="val">{esc(fmt(v))}</text>')
    parts.append("</svg>")
    return "".join(parts)


# -- the page ---------------------------------------------------------------------------

CSS = """
:root{color-scheme:light dark;--fg:#1d2330;--muted:#5f6b7a;--bg:#fff;--card:#f6f7f9;--line:#d9dde3;
--accent:#3b6fd8;--ok:#2f9e58;--bad:#d64545;--agg:#8a4fd8;--base:#d88a1e}
@media (prefers-color-scheme:dark){:root{--fg:#e6e8ec;--muted:#9aa4b2;--bg:#14171c;--card:#1d2128;--line:#323843}}
*{box-sizing:border-box}
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:var(--fg);
background:var(--bg);margin:0 auto;max-width:1500px;padding:24px}
h1{font-size:1.5em;margin:.2em 0}h2{font-size:1.15em;margin:1.6em 0 .5em;border-bottom:1px solid var(--line)}
h3{font-size:1em;margin:0 0 .4em}
.meta,.note{color:var(--muted);font-size:.85em}
.cols{display:grid;grid-template-columns:repeat(auto-fit,minmax(280px,1fr));gap:12px}
.col{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:12px;min-width:0}
.col.aggregator{border-top:4px solid var(--agg)}.col.baseline{border-top:4px solid var(--base)}
.col.proposer{border-top:4px solid var(--accent)}
.col.reviewer{border-top:4px solid var(--muted)}.col.selector{border-top:4px solid var(--agg)}
.mark{font-size:.85em;margin:0 0 .4em}.mark.cut{color:var(--base)}.mark.used{color:var(--ok)}
.out{overflow-wrap:anywhere}.out pre{white-space:pre-wrap;background:rgba(127,127,127,.12);padding:8px;border-radius:6px}
.out.typing{white-space:pre-wrap}
.question{background:var(--card);border-left:4px solid var(--accent);padding:4px 14px;border-radius:4px}
.err{color:var(--bad)}.warn{color:var(--base)}
.scroll{overflow-x:auto}
table{border-collapse:collapse;font-size:.9em;margin:.4em 0}
th,td{border-bottom:1px solid var(--line);padding:4px 10px;text-align:left;vertical-align:top}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.ratings{list-style:none;padding:0;margin:.5em 0 0;font-size:.9em}.ratings li{margin:.2em 0}
.stars{color:#e0a100;letter-spacing:1px}
svg text{fill:var(--fg);font:12px system-ui,sans-serif}
svg .tick{text-anchor:middle;fill:var(--muted)}svg .name{text-anchor:end}
svg .axis{stroke:var(--muted)}svg .ci{stroke:var(--accent);stroke-width:3}svg .dot{fill:var(--accent)}
svg .ref{stroke:var(--muted);stroke-dasharray:4 3}
svg .bar.proposer{fill:var(--accent)}svg .bar.aggregator{fill:var(--agg)}svg .bar.baseline{fill:var(--base)}
svg .bar.judge,svg .bar.reviewer{fill:var(--muted)}svg .bar.selector{fill:var(--agg)}svg .bar.failed{fill:var(--bad)}svg .first{stroke:var(--fg);stroke-width:2}
.controls{margin:.8em 0}button,select{font:inherit;padding:4px 12px}
footer{margin-top:2em;color:var(--muted);font-size:.8em}
"""


def document(title: str, body: str, script: str = "") -> str:
    """A whole page: `body` is trusted HTML built from escaped parts; `script` is this module's own."""
    csp = "default-src 'none'; style-src 'unsafe-inline'"
    if script:
        digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")
        csp += f"; script-src 'sha256-{digest}'"
    tail = f"<script>{script}</script>" if script else ""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head>"
        f"<body>{body}<footer>Exported from MoA Studio. This file loads nothing from anywhere.</footer>{tail}"
        "</body></html>\n"
    )


__all__ = [
    "document",
    "esc",
    "fmt_cell",
    "fmt_cost",
    "fmt_seconds",
    "frame_table",
    "interval_chart",
    "markdown_html",
    "table",
]
