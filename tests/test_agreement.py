"""Agreement, consistency and position bias, each against a value worked out by hand.

The hand-worked numbers are in the comments next to each assertion, from the textbook
formulas (Cohen 1960, Fleiss 1971, Krippendorff 2011, Wilson 1927, the exact binomial),
so a wrong library call or a mis-built table shows up as a different number.
"""

from __future__ import annotations

import math

import pandas as pd
import pytest

from moa_core.analysis.agreement import (
    PEOPLE,
    agreement_report,
    first_labels,
    item_votes,
    judge_human_agreement,
    overall_agreement,
    position_bias,
    position_observations,
    rater_pairs,
    rater_summary,
)

# Ten pairs of answers (generation ids 10+i vs 20+i), rated by alice and bob. Labels are
# "first" (the lower id wins), "second", "tie":
#   item  1 2 3 4 5 6 7 8 9 10
#   alice f f f f s s s t t f
#   bob   f f f s s s f t s f
ALICE = ["first"] * 4 + ["second"] * 3 + ["tie"] * 2 + ["first"]
BOB = ["first"] * 3 + ["second"] * 3 + ["first", "tie", "second", "first"]
OUTCOME = {"first": "left", "second": "right", "tie": "tie", "both_bad": "both_bad"}


def vote(i: int, rater: str, label: str, t: float, flip: bool = False, judge: bool = False) -> dict:
    """A vote on item i; with ``flip`` the higher id was shown on the left."""
    lo, hi = 10 + i, 20 + i
    outcome = OUTCOME[label]
    if flip:
        lo, hi = hi, lo
        outcome = {"left": "right", "right": "left"}.get(outcome, outcome)
    return {
        "id": int(t * 10),
        "created_at": t,
        "rater": rater,
        "is_judge": judge,
        "left_generation_id": lo,
        "right_generation_id": hi,
        "outcome": outcome,
    }


def two_raters() -> pd.DataFrame:
    rows = [vote(i, "alice", lab, t=i) for i, lab in enumerate(ALICE)]
    # bob saw every other pair the other way round: the item orientation must undo that.
    rows += [vote(i, "bob", lab, t=100 + i, flip=i % 2 == 1) for i, lab in enumerate(BOB)]
    return pd.DataFrame(rows)


def test_item_orientation_undoes_the_sides():
    items = item_votes(two_raters())
    bob = items[items["rater"] == "bob"]
    assert bob["label"].tolist() == BOB
    assert items["item"].nunique() == 10


def test_items_by_question_join_different_answers_to_one_question():
    votes = pd.DataFrame(
        [
            # two battles of the same question and contenders, different answers, sides swapped
            {**vote(0, "ann", "first", t=1), "question": "Q1", "left": "m-a", "right": "m-b"},
            {**vote(1, "ben", "first", t=2, flip=True), "question": "Q1", "left": "m-b", "right": "m-a"},
            {**vote(2, "ann", "tie", t=3), "question": "Q2", "left": "m-a", "right": "m-b"},
        ]
    )
    by_answers = item_votes(votes)
    assert by_answers["item"].nunique() == 3
    by_question = item_votes(votes, by="question")
    assert by_question["item"].nunique() == 2
    # ben saw m-b on the left and chose the right side, m-a: both picked m-a, which sorts first.
    assert by_question["label"].tolist() == ["first", "first", "tie"]
    assert overall_agreement(by_question).items == 1
    with pytest.raises(ValueError, match="by must be"):
        item_votes(votes, by="rater")


def test_cohens_kappa_matches_the_hand_computation():
    pairs = rater_pairs(first_labels(item_votes(two_raters())))
    row = pairs.iloc[0]
    assert (row["rater_a"], row["rater_b"], row["items"]) == ("alice", "bob", 10)
    # p_o = 7/10; marginals alice (.5, .3, .2), bob (.5, .4, .1) over first/second/tie;
    # p_e = .25 + .12 + .02 = .39; kappa = (.7 - .39) / (1 - .39) = .31 / .61.
    assert row["agreement"] == pytest.approx(0.7)
    assert row["kappa"] == pytest.approx(0.31 / 0.61)
    assert row["kappa_low"] < row["kappa"] < row["kappa_high"]


def test_krippendorff_alpha_and_fleiss_kappa_two_raters():
    overall = overall_agreement(item_votes(two_raters()))
    assert (overall.items, overall.raters, overall.ratings) == (10, 2, 20)
    # Coincidence matrix (each item adds both ordered pairs): n_first = 10, n_second = 7,
    # n_tie = 3, n = 20; 6 disagreeing pairs. alpha = 1 - (n - 1) * 6 / (n² - Σ n_c²)
    # = 1 - 19 * 6 / (400 - 158) = 1 - 114 / 242.
    assert overall.alpha == pytest.approx(1 - 114 / 242)
    # Fleiss with 2 raters: P̄ = .7; p_j = (.5, .35, .15); P_e = .25 + .1225 + .0225 = .395;
    # kappa = (.7 - .395) / (1 - .395) = .305 / .605.
    assert overall.fleiss_kappa == pytest.approx(0.305 / 0.605)
    assert (overall.fleiss_items, overall.fleiss_raters) == (10, 2)
    assert overall.agreement == pytest.approx(0.7)


def test_fleiss_kappa_three_raters_and_alpha_with_missing_ratings():
    # item1 f f f, item2 f f s, item3 t t s, item4 s s s; item5 rated by one person only.
    labels = [("f", "f", "f"), ("f", "f", "s"), ("t", "t", "s"), ("s", "s", "s")]
    name = {"f": "first", "s": "second", "t": "tie"}
    rows = [
        vote(i, r, name[lab], t=10 * i + j)
        for i, labs in enumerate(labels)
        for j, (r, lab) in enumerate(zip("xyz", labs, strict=True))
    ]
    rows.append(vote(9, "x", "first", t=99))
    overall = overall_agreement(item_votes(pd.DataFrame(rows)))
    assert (overall.items, overall.raters, overall.ratings) == (4, 3, 12)
    # P_i = (Σ n_ij² - 3) / 6: 1, 1/3, 1/3, 1 -> P̄ = 2/3; p_j = (5, 5, 2) / 12;
    # P_e = (25 + 25 + 4) / 144 = .375; kappa = (2/3 - .375) / .625.
    assert overall.fleiss_kappa == pytest.approx((2 / 3 - 0.375) / 0.625)
    assert (overall.fleiss_items, overall.fleiss_raters) == (4, 3)
    # Krippendorff: each item with m = 3 adds 1/(m-1) per ordered pair. Disagreeing
    # ordered pairs: item2 4 (f-s ×2 each way), item3 4 -> Σ o_ck (c≠k) = 8 / 2 = 4;
    # n_c = (5, 5, 2), n = 12: alpha = 1 - (n - 1) * 4 / (144 - 54) = 1 - 44 / 90.
    assert overall.alpha == pytest.approx(1 - 44 / 90)


def test_undefined_statistics_are_nan_not_errors():
    same = pd.DataFrame([vote(i, r, "first", t=i * 10 + j) for i in range(3) for j, r in enumerate("ab")])
    overall = overall_agreement(item_votes(same))
    assert overall.agreement == 1.0 and math.isnan(overall.alpha) and math.isnan(overall.fleiss_kappa)
    assert math.isnan(rater_pairs(first_labels(item_votes(same))).iloc[0]["kappa"])
    empty = overall_agreement(item_votes(same.iloc[:0]))
    assert empty.items == 0 and math.isnan(empty.alpha)


def test_rater_consistency_on_repeated_items():
    rows = [vote(i, "alice", lab, t=i) for i, lab in enumerate(ALICE)]
    # alice sees items 0, 3 and 7 again: first -> first, first -> second, tie -> tie.
    rows += [vote(0, "alice", "first", t=50), vote(3, "alice", "second", t=51, flip=True)]
    rows += [vote(7, "alice", "tie", t=52)]
    votes = pd.DataFrame(rows)
    summary = rater_summary(votes).set_index("rater").loc["alice"]
    assert (summary["votes"], summary["repeated_items"], summary["repeat_votes"]) == (13, 3, 3)
    assert summary["self_agreement"] == pytest.approx(2 / 3)
    overall = overall_agreement(item_votes(votes))
    # first votes (f, f, t) against second votes (f, s, t): p_o = 2/3; marginals
    # (2/3, 0, 1/3) and (1/3, 1/3, 1/3): p_e = 2/9 + 1/9 = 1/3; kappa = (1/3) / (2/3).
    assert overall.retest_items == 3
    assert overall.retest_agreement == pytest.approx(2 / 3)
    assert overall.retest_kappa == pytest.approx(0.5)
    # the first vote is the one agreement uses (as the store counts people's votes):
    # item 3 stays "first" for alice.
    labels = first_labels(item_votes(votes))
    assert labels.set_index(["item", "rater"]).loc[("13-23", "alice"), "label"] == "first"


def test_rater_summary_counts_rates_and_left_interval():
    outcomes = ["left"] * 7 + ["right"] * 3 + ["tie", "both_bad"]
    votes = pd.DataFrame([{**vote(i, "carol", "first", t=i), "outcome": o} for i, o in enumerate(outcomes)])
    row = rater_summary(votes).iloc[0]
    assert (row["votes"], row["left"], row["right"], row["ties"], row["both_bad"]) == (12, 7, 3, 1, 1)
    assert row["tie_rate"] == pytest.approx(1 / 12) and row["both_bad_rate"] == pytest.approx(1 / 12)
    assert row["left_rate"] == pytest.approx(0.7)
    # Wilson, 7 of 10, z = 1.96: centre (0.7 + 1.9208/10) / 1.38416 = 0.644492,
    # half 1.96 * sqrt(0.021 + 0.009604) / 1.38416 = 0.247718.
    assert row["left_low"] == pytest.approx(0.396774, abs=1e-5)
    assert row["left_high"] == pytest.approx(0.892210, abs=1e-5)
    assert row["repeated_items"] == 0 and math.isnan(row["self_agreement"])


def test_position_bias_people_pooled_and_judges_from_both_orders():
    people = [{**vote(i, r, "first", t=i), "outcome": o} for i, (r, o) in enumerate(
        [("ann", "left")] * 4 + [("ben", "left")] * 3 + [("ann", "right")] * 2 + [("ben", "right"), ("ben", "tie")]
    )]  # fmt: skip
    judge = [
        {**vote(20, "judge:m", "first", t=20, judge=True), "verdicts": ["A", "B"]},  # first shown, then not
        {**vote(21, "judge:m", "first", t=21, judge=True), "verdicts": ["A", "A"]},  # first shown both times
        {**vote(22, "judge:m", "tie", t=22, judge=True), "verdicts": ["tie", "A"]},  # one decisive verdict
        {**vote(23, "judge:n", "first", t=23, judge=True), "verdicts": None},  # no verdicts: its side
    ]
    votes = pd.DataFrame(people + judge)
    obs = position_observations(votes)
    assert len(obs) == 10 + 5 + 1
    bias = position_bias(obs).set_index("rater")
    assert bias.index.tolist() == [PEOPLE, "judge:m", "judge:n"]
    p = bias.loc[PEOPLE]
    assert (p["decisive"], p["first_picks"]) == (10, 7) and p["first_rate"] == pytest.approx(0.7)
    assert p["ci_low"] == pytest.approx(0.396774, abs=1e-5)
    # Exact two-sided binomial: P(X >= 7) = (120 + 45 + 10 + 1) / 1024; doubled by symmetry.
    assert p["p_value"] == pytest.approx(2 * 176 / 1024)
    m = bias.loc["judge:m"]
    assert (m["decisive"], m["first_picks"]) == (5, 4)
    assert (bias.loc["judge:n", "decisive"], bias.loc["judge:n", "first_picks"]) == (1, 1)


def test_judge_human_agreement_against_people_baseline():
    # Items 0-3. people: ann (f, s, t, f), ben (f, s, s, -); judge (f, f, t, f).
    rows = [vote(i, "ann", lab, t=i) for i, lab in enumerate(["first", "second", "tie", "first"])]
    rows += [vote(i, "ben", lab, t=10 + i) for i, lab in enumerate(["first", "second", "second"])]
    rows += [vote(i, "judge:m", lab, t=20 + i, judge=True) for i, lab in enumerate(["first", "first", "tie", "first"])]
    table = judge_human_agreement(first_labels(item_votes(pd.DataFrame(rows)))).set_index("judge")
    j = table.loc["judge:m"]
    # Judge vs each person on shared items: ann (f-f, f-s, t-t, f-f), ben (f-f, f-s, t-s):
    # 7 comparisons, 4 agree. Table (judge rows, person cols) over f/s/t:
    # f: (3, 2, 0), t: (0, 1, 1). p_o = 4/7; judge marginals (5/7, 0, 2/7), people
    # (3/7, 3/7, 1/7): p_e = 15/49 + 2/49 = 17/49; kappa = (4/7 - 17/49) / (1 - 17/49) = 11/32.
    assert (j["items"], j["comparisons"]) == (4, 7)
    assert j["agreement"] == pytest.approx(4 / 7)
    assert j["kappa"] == pytest.approx(11 / 32)
    people = table.loc["people (with each other)"]
    assert (people["items"], people["comparisons"]) == (3, 3) and people["agreement"] == pytest.approx(2 / 3)


def test_agreement_report_bundles_everything():
    report = agreement_report(two_raters())
    assert report.overall.items == 10
    assert len(report.pairs) == 1 and set(report.raters["rater"]) == {"alice", "bob"}
    assert report.position["rater"].tolist() == [PEOPLE] and report.judge_human.empty
    with pytest.raises(ValueError, match="missing columns"):
        agreement_report(pd.DataFrame({"rater": ["x"]}))
