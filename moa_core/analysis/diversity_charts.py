"""Plotly figures for draft diversity (kept apart so `diversity` does not import plotly)."""

from __future__ import annotations

from typing import Any

import pandas as pd
import plotly.graph_objects as go


def similarity_heatmap(names: list[str], matrix: list[list[float]], title: str = "") -> go.Figure:
    """Pairwise draft similarity, annotated with the values (0..1)."""
    fig = go.Figure(
        go.Heatmap(
            z=matrix,
            x=names,
            y=names,
            zmin=0,
            zmax=1,
            colorscale="Blues",
            text=[[f"{v:.2f}" for v in row] for row in matrix],
            texttemplate="%{text}",
            hovertemplate="%{y} ↔ %{x}: %{z:.3f}<extra></extra>",
            showscale=False,
        )
    )
    fig.update_layout(
        title=title,
        height=120 + 60 * len(names),
        margin=dict(l=10, r=10, t=40 if title else 10, b=10),
        yaxis={"autorange": "reversed"},
    )
    return fig


def attribution_bar(aggregator: dict[str, Any], title: str = "Where the final answer came from") -> go.Figure:
    """One stacked bar: the final answer's words by source draft, and new."""
    fig = go.Figure()
    for d in aggregator["drafts"]:
        fig.add_bar(
            x=[d["share"]],
            y=["final answer"],
            orientation="h",
            name=d["name"],
            hovertemplate=f"{d['name']}: %{{x:.0%}}<extra></extra>",
        )
    fig.add_bar(
        x=[aggregator["new_share"]],
        y=["final answer"],
        orientation="h",
        name="new",
        marker_color="#bbbbbb",
        hovertemplate="new: %{x:.0%}<extra></extra>",
    )
    fig.update_layout(
        barmode="stack",
        title=title,
        height=170,
        xaxis={"tickformat": ".0%", "range": [0, 1]},
        margin=dict(l=10, r=10, t=40, b=10),
        legend={"orientation": "h"},
    )
    return fig


def diversity_quality_figure(
    frame: pd.DataFrame,
    y: str = "final_score",
    title: str = "Draft diversity against the rated quality of the final answer",
) -> go.Figure:
    """Scatter of `diversity_quality_frame` output: diversity on x, a score column on y."""
    data = frame.dropna(subset=["diversity", y]) if not frame.empty else frame
    fig = go.Figure()
    if data.empty:
        fig.add_annotation(
            text="no rated runs with diversity yet",
            x=0.5,
            y=0.5,
            xref="paper",
            yref="paper",
            showarrow=False,
            font={"size": 16},
        )
        fig.update_layout(title=title, xaxis={"visible": False}, yaxis={"visible": False})
        return fig
    for kind, part in data.groupby("kind", dropna=False):
        fig.add_scatter(
            x=part["diversity"],
            y=part[y],
            mode="markers",
            name=str(kind),
            customdata=part[["run_id"]].to_numpy(),
            hovertemplate="diversity %{x:.3f}<br>" + y + " %{y:.2f}<br>run %{customdata[0]}<extra></extra>",
        )
    fig.update_layout(title=title, xaxis_title="draft diversity (1 − mean pairwise similarity)", yaxis_title=y)
    return fig


__all__ = ["attribution_bar", "diversity_quality_figure", "similarity_heatmap"]
