"""Plotly figures for leaderboards, pairwise matrices, score spreads, Pareto plots and run timelines.

Every function takes plain DataFrames and returns a go.Figure, so the same figures serve
Streamlit pages, notebooks and exported reports. Empty input yields a figure carrying a
"no data" annotation instead of raising, because pages render before any votes exist.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from moa_core.analysis.stats import pareto_frontier
from moa_core.vocab import Role

NO_DATA = "no data"
_ERROR_COLOR = "#d62728"
_ROLE_COLORS: dict[str, str] = {
    Role.PROPOSER: "#1f77b4",
    Role.AGGREGATOR: "#2ca02c",
    Role.BASELINE: "#9467bd",
    Role.JUDGE: "#ff7f0e",
}


def empty_figure(title: str = "", message: str = NO_DATA) -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text=message, x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False, font={"size": 16})
    fig.update_layout(title=title, xaxis={"visible": False}, yaxis={"visible": False})
    return fig


def _missing(df: pd.DataFrame | None, columns: list[str]) -> bool:
    return df is None or df.empty or not set(columns) <= set(df.columns)


def leaderboard_figure(
    board: pd.DataFrame, kind: Literal["forest", "bar"] = "forest", title: str = "Leaderboard"
) -> go.Figure:
    """Ratings with 95% CI error bars from ``leaderboard()`` output, best at the top."""
    if _missing(board, ["contender", "rating", "ci_low", "ci_high"]):
        return empty_figure(title)
    b = board.sort_values("rating", ascending=True)  # plotly draws the first row at the bottom
    error_x = {
        "type": "data",
        "symmetric": False,
        "array": (b["ci_high"] - b["rating"]).to_numpy(),
        "arrayminus": (b["rating"] - b["ci_low"]).to_numpy(),
    }
    hover = "%{y}: %{x:.0f} [%{customdata[0]:.0f}, %{customdata[1]:.0f}]<extra></extra>"
    common = dict(
        x=b["rating"], y=b["contender"], orientation="h", error_x=error_x,
        customdata=b[["ci_low", "ci_high"]].to_numpy(), hovertemplate=hover, name="rating",
    )  # fmt: skip
    if kind == "bar":
        # Bars need a baseline below every CI, else the bar length misleads about ratios.
        base = float(np.floor(b["ci_low"].min() / 50.0) * 50.0 - 50.0)
        trace = go.Bar(**{**common, "x": b["rating"] - base}, base=base)
    else:
        common.pop("orientation")
        trace = go.Scatter(**common, mode="markers", marker={"size": 10})
    fig = go.Figure(trace)
    fig.update_layout(title=title, xaxis_title="rating", yaxis_title=None, showlegend=False)
    return fig


def _matrix_heatmap(
    matrix: pd.DataFrame, title: str, text: np.ndarray, colorscale: str, zmid: float | None, **kw: object
) -> go.Figure:
    if matrix is None or matrix.empty:
        return empty_figure(title)
    fig = go.Figure(
        go.Heatmap(
            z=matrix.to_numpy(dtype=float),
            x=[str(c) for c in matrix.columns],
            y=[str(i) for i in matrix.index],
            text=text,
            texttemplate="%{text}",
            colorscale=colorscale,
            zmid=zmid,
            **kw,
        )
    )
    # Row contender reads top-down in the matrix's own order, like a table.
    fig.update_layout(title=title, xaxis_title="opponent", yaxis_title="contender", yaxis_autorange="reversed")
    return fig


def win_rate_heatmap(matrix: pd.DataFrame, title: str = "Win rate (row vs column)") -> go.Figure:
    """Heatmap of ``win_rate_matrix()``; blank cells where a pair never met."""
    z = matrix.to_numpy(dtype=float) if matrix is not None else np.empty((0, 0))
    text = np.where(np.isnan(z), "", np.char.mod("%.0f%%", np.nan_to_num(z) * 100))
    return _matrix_heatmap(
        matrix, title, text, "RdBu", 0.5, zmin=0.0, zmax=1.0,
        hovertemplate="%{y} vs %{x}: %{z:.1%}<extra></extra>",
    )  # fmt: skip


def battle_count_heatmap(matrix: pd.DataFrame, title: str = "Battles per pair") -> go.Figure:
    """Heatmap of ``battle_count_matrix()``."""
    z = matrix.to_numpy(dtype=float) if matrix is not None else np.empty((0, 0))
    text = np.char.mod("%d", z.astype(np.int64))
    return _matrix_heatmap(matrix, title, text, "Blues", None, hovertemplate="%{y} vs %{x}: %{z:d}<extra></extra>")


def score_distribution(
    ratings: pd.DataFrame,
    kind: Literal["box", "violin"] = "box",
    contender: str = "contender",
    score: str = "score",
    title: str = "Score distribution",
) -> go.Figure:
    """One box (or violin) per contender from long-form rows (contender, score)."""
    if _missing(ratings, [contender, score]):
        return empty_figure(title)
    df = ratings[[contender, score]].dropna()
    if df.empty:
        return empty_figure(title)
    # Order by median so the visual ranking matches the numbers.
    order = df.groupby(contender)[score].median().sort_values(ascending=False).index
    fig = go.Figure()
    for name in order:
        s = df.loc[df[contender] == name, score]
        if kind == "violin":
            fig.add_trace(go.Violin(y=s, name=str(name), box_visible=True, meanline_visible=True, points="all"))
        else:
            fig.add_trace(go.Box(y=s, name=str(name), boxmean=True, boxpoints="all"))
    fig.update_layout(title=title, yaxis_title=score, showlegend=False)
    return fig


def pareto_scatter(
    df: pd.DataFrame,
    x: str,
    y: str,
    label: str = "contender",
    x_lower_is_better: bool = True,
    title: str = "",
    log_x: bool = False,
) -> go.Figure:
    """All points plus a step line through the Pareto-optimal ones (2 traces)."""
    if _missing(df, [x, y]):
        return empty_figure(title)
    d = df.copy()
    d[x] = pd.to_numeric(d[x], errors="coerce")
    d[y] = pd.to_numeric(d[y], errors="coerce")
    d = d.dropna(subset=[x, y])
    if d.empty:
        return empty_figure(title)
    names = d[label].astype(str) if label in d.columns else pd.Series(d.index.astype(str), index=d.index)
    on = pareto_frontier(d, x, y, x_lower_is_better=x_lower_is_better)
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=d[x],
            y=d[y],
            mode="markers+text",
            text=names,
            textposition="top center",
            name="contenders",
            marker={"size": 10, "color": np.where(on, "#2ca02c", "#7f7f7f")},
        )
    )
    front = d.loc[on].sort_values(x)
    # hv steps: between two frontier points the best reachable quality is the worse one's,
    # so a staircase (not a straight segment) is the honest frontier.
    shape = "hv" if x_lower_is_better else "vh"
    fig.add_trace(
        go.Scatter(x=front[x], y=front[y], mode="lines", line={"shape": shape, "dash": "dash"}, name="Pareto frontier")
    )
    fig.update_layout(title=title, xaxis_title=x, yaxis_title=y, xaxis_type="log" if log_x else None)
    return fig


def quality_vs_cost(
    df: pd.DataFrame, quality: str = "rating", cost: str = "cost", label: str = "contender", log_x: bool = False
) -> go.Figure:
    """Quality against cost (lower cost is better) with the Pareto frontier."""
    return pareto_scatter(df, cost, quality, label, True, "Quality vs cost", log_x)


def quality_vs_latency(
    df: pd.DataFrame, quality: str = "rating", latency: str = "latency", label: str = "contender"
) -> go.Figure:
    """Quality against latency (lower is better) with the Pareto frontier."""
    return pareto_scatter(df, latency, quality, label, True, "Quality vs latency")


def _seconds(s: pd.Series) -> pd.Series:
    """Unix seconds (the engine's convention) or datetimes -> float seconds."""
    if pd.api.types.is_numeric_dtype(s):
        return s.astype(float)
    t = pd.to_datetime(s, utc=True, errors="coerce")
    return (t - pd.Timestamp(0, tz="UTC")).dt.total_seconds()


def run_timeline(calls: pd.DataFrame, title: str = "Run timeline") -> go.Figure:
    """Gantt-like view of one run: a bar per call from started_at to ended_at.

    Columns: call_id, label or model, role, layer, started_at, ended_at, ttft (seconds
    after started_at, may be missing), error (None/empty when the call succeeded). The x
    axis is seconds since the run's first call started. Traces: one bar trace per role
    of successful calls, one for failed calls (if any), one for first-token markers (if
    any ttft is known).
    """
    if _missing(calls, ["call_id", "role", "started_at", "ended_at"]):
        return empty_figure(title)
    d = calls.copy()
    start = _seconds(d["started_at"])
    end = _seconds(d["ended_at"])
    t0 = start.min()
    d["_start"] = start - t0
    # A call that never finished (crash, cancel) still gets a visible sliver.
    d["_dur"] = (end - start).fillna(0.0).clip(lower=0.0)
    d["_ttft"] = pd.to_numeric(d["ttft"], errors="coerce") if "ttft" in d.columns else np.nan
    err = d["error"] if "error" in d.columns else pd.Series(None, index=d.index)
    d["_failed"] = err.notna() & (err.astype(str).str.len() > 0)
    name = d["label"] if "label" in d.columns else d.get("model", pd.Series("", index=d.index))
    if "model" in d.columns:
        name = name.where(name.notna() & (name.astype(str) != ""), d["model"])
    layer = (
        pd.to_numeric(d["layer"], errors="coerce").astype("Int64").astype(str).replace("<NA>", "?")
        if "layer" in d.columns
        else "?"
    )
    d["_row"] = (
        "L"
        + layer
        + " "
        + d["role"].astype(str)
        + " · "
        + name.fillna("").astype(str)
        + " ("
        + d["call_id"].astype(str)
        + ")"
    )
    d = d.sort_values(["_start", "_row"]).dropna(subset=["_start"])
    if d.empty:
        return empty_figure(title)
    order = list(dict.fromkeys(d["_row"]))

    def bar(rows: pd.DataFrame, trace_name: str, color: str) -> go.Bar:
        return go.Bar(
            y=rows["_row"], x=rows["_dur"], base=rows["_start"], orientation="h", name=trace_name,
            marker={"color": color}, customdata=np.stack([rows["_start"], rows["_dur"]], axis=1),
            hovertemplate="%{y}<br>start %{customdata[0]:.2f}s, took %{customdata[1]:.2f}s<extra>" + trace_name + "</extra>",
        )  # fmt: skip

    fig = go.Figure()
    ok = d.loc[~d["_failed"]]
    for role in dict.fromkeys(ok["role"]):
        fig.add_trace(bar(ok.loc[ok["role"] == role], str(role), _ROLE_COLORS.get(str(role), "#7f7f7f")))
    failed = d.loc[d["_failed"]]
    if not failed.empty:
        fig.add_trace(bar(failed, "error", _ERROR_COLOR))
    ft = d.dropna(subset=["_ttft"])
    if not ft.empty:
        fig.add_trace(
            go.Scatter(
                x=ft["_start"] + ft["_ttft"],
                y=ft["_row"],
                mode="markers",
                name="first token",
                marker={"symbol": "line-ns-open", "size": 14, "color": "black"},
                hovertemplate="%{y}<br>first token at %{x:.2f}s<extra></extra>",
            )
        )
    fig.update_layout(
        title=title, barmode="overlay", xaxis_title="seconds since run start",
        yaxis={"categoryorder": "array", "categoryarray": order[::-1], "title": None},
    )  # fmt: skip
    return fig


__all__ = [
    "NO_DATA",
    "battle_count_heatmap",
    "empty_figure",
    "leaderboard_figure",
    "pareto_scatter",
    "quality_vs_cost",
    "quality_vs_latency",
    "run_timeline",
    "score_distribution",
    "win_rate_heatmap",
]
