"""The "does it help?" report: majority vote, Wilson intervals, sign test, wording (hand-worked)."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from moa_core.analysis.objective import (
    accuracy_table,
    display_paired,
    display_table,
    majority_rows,
    objective_report,
    paired,
    pipeline_shape,
    wilson,
)

QS = [f"q{i}" for i in range(1, 11)]


def _rows(contender: str, role: str, keys: list[str | None]) -> list[dict[str, object]]:
    return [
        {"question_id": q, "contender": contender, "role": role, "key": k, "correct": k == "r"}
        for q, k in zip(QS, keys, strict=True)
    ]


def scored() -> pd.DataFrame:
    """Three proposers and a MoA on ten questions whose reference key is "r".

    P1 right on q1-q6 (6/10), P2 on q1-q4 (4/10), P3 on q1, q2, q7 (3/10); MoA wrong only on q2 (9/10).
    Majority by hand: q1-q4 r (right); q5, q6 y beats r (wrong); q7 x/y/r tie; q8 y; q9, q10 x/y tie
    with P3 abstaining -> right on 4/10.
    """
    rows = (
        _rows("P1", "proposer", ["r"] * 6 + ["x"] * 4)
        + _rows("P2", "proposer", ["r"] * 4 + ["y"] * 6)
        + _rows("P3", "proposer", ["r", "r", "y", "y", "y", "y", "r", "y", None, None])
        + _rows("MoA", "moa", ["r", "z"] + ["r"] * 8)
    )
    return pd.DataFrame(rows)


def test_majority_vote_by_hand() -> None:
    m = majority_rows(scored())
    assert list(m["correct"]) == [True, True, True, True, False, False, False, False, False, False]
    assert list(m["key"]) == ["r", "r", "r", "r", "y", "y", None, "y", None, None]


def test_majority_needs_two_proposers_and_a_clear_winner() -> None:
    one = pd.DataFrame(_rows("P1", "proposer", ["r"] * 10))
    assert majority_rows(one).empty
    two = pd.DataFrame(_rows("P1", "proposer", ["r"] * 10) + _rows("P2", "proposer", ["x"] * 10))
    assert not majority_rows(two)["correct"].any()  # 1 vs 1 every time: no majority, counted wrong
    abstain = pd.DataFrame(_rows("P1", "proposer", [None] * 10) + _rows("P2", "proposer", ["r"] * 10))
    assert majority_rows(abstain)["correct"].all()  # an answer that states nothing does not vote


def test_wilson_against_hand_computation() -> None:
    # 6 of 10, z = 1.959964, z^2 = 3.841459: denom = 1.384146, centre = 0.792073/1.384146 = 0.572247,
    # half = 1.959964 * sqrt(0.024 + 0.009604)/1.384146 = 0.259573 -> (0.3127, 0.8318).
    lo, hi = wilson(6, 10)
    assert lo == pytest.approx(0.3127, abs=1e-4) and hi == pytest.approx(0.8318, abs=1e-4)
    assert wilson(0, 5)[0] == 0.0 and wilson(5, 5)[1] == pytest.approx(1.0)
    assert all(math.isnan(x) for x in wilson(0, 0))


def test_accuracy_table_orders_by_role() -> None:
    t = accuracy_table(pd.concat([scored(), majority_rows(scored())]))
    assert list(t["contender"]) == ["P1", "P2", "P3", "majority vote", "MoA"]
    assert list(t["correct"]) == [6, 4, 3, 4, 9] and set(t["n"]) == {10}
    assert t.loc[0, "accuracy"] == pytest.approx(0.6)


def test_paired_sign_test_by_hand() -> None:
    # MoA vs P1: MoA right and P1 wrong on q7-q10 (4 wins), the reverse on q2 (1 loss), 5 ties.
    # Two-sided exact sign test: 2 * P(X >= 4 | n=5, 1/2) = 2 * (5 + 1)/32 = 0.375.
    c = paired(scored(), "MoA", "P1")
    assert (c.n, c.wins, c.losses, c.ties) == (10, 4, 1, 5)
    assert c.p_value == pytest.approx(0.375)


def test_report_says_no_evidence_when_p_is_large() -> None:
    rep = objective_report(scored())
    assert rep.best == "P1" and rep.questions == 10
    assert list(rep.paired["contender"]) == ["majority vote", "MoA"]
    assert rep.headline.startswith("No evidence of a gain for MoA over the best single proposer, P1")
    assert "4 wins, 1 loss, 5 ties" in rep.headline and "p = 0.38" in rep.headline
    assert "could well be chance" in rep.headline
    # Majority vs P1: 0 wins, 2 losses (q5, q6): p = 2 * (1/4) = 0.5, and it leans the wrong way.
    majority = rep.lines[0]
    assert (
        "0 wins, 2 losses, 8 ties" in majority
        and majority.startswith("No evidence of a gain for majority vote over")
        and "p = 0.50" in majority
        and "if anything it did worse" in majority
    )
    assert any("picked as the best single proposer after seeing" in n for n in rep.notes)
    assert display_table(rep.table)["accuracy (95% CI)"].iloc[0] == "60% (31–83%)"
    assert list(display_paired(rep.paired)["wins/losses/ties"]) == ["0/2/8", "4/1/5"]


def test_report_says_gain_only_when_the_sign_test_is_small() -> None:
    qs = [f"q{i}" for i in range(12)]
    rows = [{"question_id": q, "contender": "P", "role": "proposer", "key": "x", "correct": False} for q in qs]
    rows += [{"question_id": q, "contender": "M", "role": "moa", "key": "r", "correct": True} for q in qs[:10]]
    rows += [{"question_id": q, "contender": "M", "role": "moa", "key": "x", "correct": False} for q in qs[10:]]
    rep = objective_report(pd.DataFrame(rows))
    # 10 wins, 0 losses: p = 2 / 2^10 = 0.00195.
    assert rep.paired.loc[0, "p_value"] == pytest.approx(2 / 1024)
    assert rep.headline.startswith("M (MoA) beat the best single proposer, P") and "p = 0.002" in rep.headline
    flipped = pd.DataFrame(rows).assign(role=lambda d: d["role"].map({"proposer": "moa", "moa": "proposer"}))
    worse = objective_report(flipped)
    assert "did worse than the best single proposer, M" in worse.headline


def test_report_edge_cases() -> None:
    same = pd.DataFrame(_rows("P", "proposer", ["r"] * 5 + ["x"] * 5) + _rows("M", "moa", ["r"] * 5 + ["y"] * 5))
    assert "right on exactly the same questions (10): no evidence either way" in objective_report(same).headline
    only_moa = pd.DataFrame(_rows("M", "council", ["r"] * 10))
    assert "nothing to compare" in objective_report(only_moa).headline
    only_singles = pd.DataFrame(_rows("S", "single", ["r"] * 10))
    assert "only single models" in objective_report(only_singles).headline
    empty = pd.DataFrame(columns=["question_id", "contender", "role", "key", "correct"])
    assert objective_report(empty).empty
    singles_vs_select = pd.DataFrame(_rows("S", "single", ["r"] * 3 + ["x"] * 7) + _rows("R", "select", ["r"] * 10))
    assert "beat the best single model, S (7 wins, 0 losses, 3 ties" in objective_report(singles_vs_select).headline
    with pytest.raises(ValueError, match="unknown role"):
        objective_report(pd.DataFrame(_rows("S", "wizard", ["r"] * 10)))


@pytest.mark.parametrize(
    ("kinds", "shape"),
    [
        (["propose", "synthesize"], "moa"),
        (["propose", "propose", "synthesize"], "moa"),
        (["propose", "review", "synthesize"], "council"),
        (["propose", "select"], "select"),
        (["propose", "review", "select"], "select"),
    ],
)
def test_pipeline_shape(kinds: list[str], shape: str) -> None:
    assert pipeline_shape(kinds) == shape
