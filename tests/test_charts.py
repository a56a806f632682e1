"""Charts build from small and from empty frames, with the expected traces."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from moa_core.analysis import charts
from moa_core.analysis.leaderboard import battle_count_matrix, leaderboard, win_rate_matrix

VOTES = pd.DataFrame(
    {
        "left": ["a", "a", "b", "b", "c", "a"],
        "right": ["b", "b", "c", "c", "a", "c"],
        "outcome": ["left", "tie", "left", "both_bad", "right", "left"],
    }
)
RATINGS = pd.DataFrame({"contender": ["a", "a", "b", "b", "c"], "score": [7, 8, 5, 6, 9]})
COSTS = pd.DataFrame(
    {"contender": ["a", "b", "c", "d"], "rating": [1050, 990, 1010, 940], "cost": [0.02, 0.01, 0.03, 0.001],
     "latency": [3.0, 1.0, 3.5, 0.5]}
)  # fmt: skip
CALLS = pd.DataFrame(
    {
        "call_id": ["proposer-0-0", "proposer-0-1", "proposer-0-2", "aggregator-1-0"],
        "label": ["fast", "", None, "agg"],
        "model": ["m1", "m2", "m3", "m4"],
        "role": ["proposer", "proposer", "proposer", "aggregator"],
        "layer": [0, 0, 0, 1],
        "started_at": [1_700_000_000.0, 1_700_000_000.1, 1_700_000_000.1, 1_700_000_003.0],
        "ended_at": [1_700_000_002.0, 1_700_000_002.5, np.nan, 1_700_000_006.0],
        "ttft": [0.4, 0.8, None, 0.3],
        "error": [None, None, "timeout", None],
    }
)
EMPTY = pd.DataFrame()


def is_no_data(fig: go.Figure) -> bool:
    return len(fig.data) == 0 and any(a.text == charts.NO_DATA for a in fig.layout.annotations)


@pytest.mark.parametrize("kind, trace_type", [("forest", "scatter"), ("bar", "bar")])
def test_leaderboard_figure(kind, trace_type):
    board = leaderboard(VOTES, n_boot=20)
    fig = charts.leaderboard_figure(board, kind=kind)
    assert [t.type for t in fig.data] == [trace_type]
    assert len(fig.data[0].y) == 3
    assert list(fig.data[0].y)[-1] == board["contender"].iloc[0]  # best drawn at the top
    assert (np.asarray(fig.data[0].error_x.array) >= 0).all()
    fig.to_json()
    assert is_no_data(charts.leaderboard_figure(EMPTY, kind=kind))
    assert is_no_data(charts.leaderboard_figure(leaderboard(VOTES.iloc[:0]), kind=kind))


def test_win_rate_heatmap():
    fig = charts.win_rate_heatmap(win_rate_matrix(VOTES))
    assert [t.type for t in fig.data] == ["heatmap"]
    z = np.asarray(fig.data[0].z, dtype=float)
    assert z.shape == (3, 3) and np.isnan(np.diag(z)).all()
    assert fig.data[0].text[0][0] == ""
    fig.to_json()
    assert is_no_data(charts.win_rate_heatmap(win_rate_matrix(VOTES.iloc[:0])))
    assert is_no_data(charts.win_rate_heatmap(EMPTY))


def test_battle_count_heatmap():
    fig = charts.battle_count_heatmap(battle_count_matrix(VOTES))
    assert [t.type for t in fig.data] == ["heatmap"]
    assert np.asarray(fig.data[0].z).sum() == 2 * len(VOTES)
    fig.to_json()
    assert is_no_data(charts.battle_count_heatmap(battle_count_matrix(VOTES.iloc[:0])))


@pytest.mark.parametrize("kind", ["box", "violin"])
def test_score_distribution(kind):
    fig = charts.score_distribution(RATINGS, kind=kind)
    assert [t.type for t in fig.data] == [kind] * 3
    assert [t.name for t in fig.data] == ["c", "a", "b"]  # by median score
    fig.to_json()
    assert is_no_data(charts.score_distribution(RATINGS.iloc[:0], kind=kind))
    assert is_no_data(charts.score_distribution(EMPTY, kind=kind))


def test_quality_vs_cost_and_latency():
    fig = charts.quality_vs_cost(COSTS)
    assert [t.name for t in fig.data] == ["contenders", "Pareto frontier"]
    # d (cheapest), b (cheaper than a, c) and a (best) are Pareto-optimal; c is not.
    assert sorted(fig.data[1].x) == [0.001, 0.01, 0.02]
    lat = charts.quality_vs_latency(COSTS)
    assert len(lat.data) == 2 and sorted(lat.data[1].x) == [0.5, 1.0, 3.0]
    fig.to_json()
    assert is_no_data(charts.quality_vs_cost(COSTS.iloc[:0]))
    assert is_no_data(charts.quality_vs_latency(EMPTY))


def test_run_timeline():
    fig = charts.run_timeline(CALLS)
    assert [(t.type, t.name) for t in fig.data] == [
        ("bar", "proposer"), ("bar", "aggregator"), ("bar", "error"), ("scatter", "first token"),
    ]  # fmt: skip
    bars = [t for t in fig.data if t.type == "bar"]
    assert sum(len(t.y) for t in bars) == len(CALLS)  # one bar per call
    proposer = fig.data[0]
    assert list(proposer.base) == pytest.approx([0.0, 0.1])  # seconds since the run started
    assert list(proposer.x) == pytest.approx([2.0, 2.4])
    assert list(fig.data[3].x) == pytest.approx([0.4, 0.9, 3.3])  # start + ttft
    assert any("fast" in y for y in proposer.y) and any("m2" in y for y in proposer.y)  # label, else model
    fig.to_json()
    assert is_no_data(charts.run_timeline(CALLS.iloc[:0]))
    assert is_no_data(charts.run_timeline(EMPTY))


def test_run_timeline_accepts_datetimes_and_no_optional_columns():
    calls = CALLS.drop(columns=["ttft", "error", "label"]).assign(
        started_at=pd.to_datetime(CALLS["started_at"], unit="s"),
        ended_at=pd.to_datetime(CALLS["ended_at"], unit="s"),
    )
    fig = charts.run_timeline(calls)
    assert [t.name for t in fig.data] == ["proposer", "aggregator"]
    assert list(fig.data[1].base) == pytest.approx([3.0])
