"""Pairwise judge (prompt, verdict parsing, order-swap combination, reference check) and
the evaluation report built from its outcomes."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from moa_core.evaluation.judge import (
    both_orders_messages,
    combine_verdicts,
    judge_messages,
    normalize_answer,
    parse_verdict,
    reference_check,
)
from moa_core.evaluation.report import (
    OVERALL,
    Z95,
    collaborativeness,
    cost_display,
    cost_summary,
    format_duration,
    orient_pairs,
    pairwise_report,
    wilson_interval,
    win_rates,
)

# ---------------------------------------------------------------- prompt


def test_judge_messages_contain_both_answers_and_format() -> None:
    msgs = judge_messages("What is 2+2?", "It is 4.", "Five {maybe}.")
    assert [m["role"] for m in msgs] == ["system", "user"]
    system, user = msgs[0]["content"], msgs[1]["content"]
    assert "Verdict: A" in system and "Verdict: tie" in system
    assert "Reference" not in user and "reference" not in system.lower()
    assert user.index("What is 2+2?") < user.index("It is 4.") < user.index("Five {maybe}.")
    assert "[Start of Assistant A's answer]\nIt is 4.\n[End of Assistant A's answer]" in user
    assert user.rstrip().endswith("'Verdict: tie'.")


def test_judge_messages_with_reference() -> None:
    msgs = judge_messages("Capital of Peru?", "Lima", "Cusco", reference="Lima")
    assert "[Reference answer]\nLima" in msgs[1]["content"]
    assert "reference answer is given" in msgs[0]["content"]
    # A blank reference is no reference.
    assert "[Reference answer]" not in judge_messages("q", "a", "b", reference="  ")[1]["content"]


def test_both_orders_swaps_answers() -> None:
    ab, ba = both_orders_messages("q", "LEFT", "RIGHT")
    assert ab == judge_messages("q", "LEFT", "RIGHT")
    assert ba == judge_messages("q", "RIGHT", "LEFT")


# ---------------------------------------------------------------- parse_verdict


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # the requested format and its usual decorations
        ("Verdict: A", "A"),
        ("Verdict: B", "B"),
        ("Verdict: tie", "tie"),
        ("verdict: b.", "B"),
        ("VERDICT: A!", "A"),
        ("Verdict: **B**", "B"),
        ("**Verdict:** Assistant A", "A"),
        ("**Verdict: A**", "A"),
        ("Verdict - tie.", "tie"),
        ("Verdict: 'B'", "B"),
        ("Verdict: `A`", "A"),
        ("Verdict: Tie — both answers are correct.", "tie"),
        ("Final verdict: [[B]]", "B"),
        ("Verdict:\nA", "A"),
        ("My verdict is B.", "B"),
        ("The winner is clearly B", "B"),
        ("Verdict: Answer A", "A"),
        ("Verdict: equal", "tie"),
        ("Verdict: a tie", "tie"),
        # reasoning first, then the verdict line
        ("Both answers say 4, but A explains the steps.\nVerdict: A", "A"),
        ("A is better formatted, but B is more accurate.\nVerdict: B", "B"),
        ("Assistant A made an arithmetic error.\n\nVerdict: B", "B"),
        # MT-Bench style
        ("[[A]]", "A"),
        ("After careful thought: [[B]]", "B"),
        ("[[C]]", "tie"),
        ("[[tie]]", "tie"),
        # bare final line
        ("B", "B"),
        ("a", "A"),
        ("tie", "tie"),
        ("Tie.", "tie"),
        ("Equal.", "tie"),
        ("The second answer is more complete.\n\n**B**", "B"),
        ("Assistant A.", "A"),
        # prose
        ("Assistant A is better.", "A"),
        ("Overall, Assistant B's answer is better.", "B"),
        ("Response A is more accurate than response B.", "A"),
        ("I prefer Assistant B's answer.", "B"),
        ("I would choose A.", "A"),
        ("The better answer is A.", "A"),
        ("B is worse than A because it is wrong.", "A"),
        ("Answer A is less helpful.", "B"),
        ("Assistant A provides a better explanation.", "A"),
        ("B wins.", "B"),
        ("Both answers are equally good.", "tie"),
        ("Both responses are about the same.", "tie"),
        ("Neither answer is better than the other.", "tie"),
        ("Neither A nor B is better.", "tie"),
        ("It's a tie.", "tie"),
        ("There is no clear winner.", "tie"),
        # unreadable
        ("", "unparseable"),
        ("   \n ", "unparseable"),
        ("I cannot decide which one is better.", "unparseable"),
        ("Both answers have strengths and weaknesses.", "unparseable"),
        ("Verdict: unclear", "unparseable"),
        ("Verdict: a close call", "unparseable"),
        # conflicting signals are never a silent tie
        ("Verdict: A\nVerdict: B", "unparseable"),
        ("Verdict: A or B", "unparseable"),
        ("Verdict: A/B", "unparseable"),
        ("[[A]] ... on reflection [[B]]", "unparseable"),
        ("Verdict: A\n\nB", "unparseable"),
        ("Verdict: tie\n[[A]]", "unparseable"),
        # a judge that echoes the instructions has not decided
        ("End with:\nVerdict: A\nVerdict: B\nVerdict: tie", "unparseable"),
        ("Assistant A is better at style. Assistant B is better at facts.", "unparseable"),
        ("A is better. It's a tie.", "unparseable"),
    ],
)
def test_parse_verdict(text: str, expected: str) -> None:
    assert parse_verdict(text) == expected


def test_explicit_verdict_outranks_prose() -> None:
    # The prose praises A for something; the explicit line decides.
    text = "Assistant A is better formatted, yet its number is wrong.\nVerdict: B"
    assert parse_verdict(text) == "B"


def test_article_a_is_not_a_verdict() -> None:
    assert parse_verdict("This is a good question with a simple answer.") == "unparseable"


# ---------------------------------------------------------------- combine_verdicts


@pytest.mark.parametrize(
    ("v_ab", "v_ba", "outcome"),
    [
        ("A", "B", "left"),  # left first, then left second: consistent
        ("B", "A", "right"),
        ("tie", "tie", "tie"),
        ("A", "A", "tie"),  # always picks position A: position bias, not a preference
        ("B", "B", "tie"),
        ("A", "tie", "tie"),
        ("tie", "B", "tie"),
        ("tie", "A", "tie"),
        ("B", "tie", "tie"),
        ("A", "unparseable", "unparseable"),
        ("unparseable", "B", "unparseable"),
        ("tie", "unparseable", "unparseable"),
        ("unparseable", "unparseable", "unparseable"),
    ],
)
def test_combine_verdicts(v_ab: str, v_ba: str, outcome: str) -> None:
    assert combine_verdicts(v_ab, v_ba) == outcome  # type: ignore[arg-type]


def test_combine_verdicts_rejects_unknown() -> None:
    with pytest.raises(ValueError, match="unknown verdict"):
        combine_verdicts("left", "A")  # type: ignore[arg-type]


# ---------------------------------------------------------------- reference_check


@pytest.mark.parametrize(
    ("answer", "reference", "expected"),
    [
        ("Canberra", "Canberra", True),
        ("canberra.", "Canberra", True),
        ("**Canberra**", "Canberra", True),
        ("The capital of Australia is Canberra.", "Canberra", True),
        ("It's `def`.", "def", True),
        ("1,000", "1000", True),
        ("The total is 1000 people.", "1,000", True),
        ("$15.00", "15", True),
        ("3.50", "3.5", True),
        ("There are four cows.", "4", True),
        ("The Pacific Ocean", "the Pacific", True),
        ("  carbon   dioxide ", "Carbon Dioxide", True),
        ("x = -5", "-5", True),
        ("Thursday!", "thursday", True),
        ("Canberran", "Canberra", False),  # whole words only
        ("10", "1", False),
        ("100", "1000", False),
        ("Sydney", "Canberra", False),
        ("", "Canberra", False),
        ("Canberra", "", False),
        ("3-4", "-4", False),  # a range, not a negative number
        ("The answer is 5", "-5", False),
    ],
)
def test_reference_check(answer: str, reference: str, expected: bool) -> None:
    assert reference_check(answer, reference) is expected


def test_reference_check_long_answers_need_an_exact_match() -> None:
    long_answer = "Canberra " + "and some more words " * 20
    assert not reference_check(long_answer, "Canberra")
    assert reference_check(long_answer, "Canberra", max_words=200)


def test_normalize_answer() -> None:
    assert normalize_answer("The answer: 1,000.50 apples, an orange!") == [
        "answer",
        "1000.5",
        "apples",
        "orange",
    ]


# ---------------------------------------------------------------- report: Wilson


def test_wilson_against_hand_computation() -> None:
    # 8 successes in 10: the textbook 95% Wilson interval is (0.4902, 0.9433).
    lo, hi = wilson_interval(8, 10)
    assert lo == pytest.approx(0.4902, abs=1e-4) and hi == pytest.approx(0.9433, abs=1e-4)
    # Score 2.5 of 4 (2 wins, 1 tie, 1 loss), by hand with z = 1.959964, z^2 = 3.841459:
    #   denom  = 1 + z^2/n            = 1.960365
    #   centre = (0.625 + z^2/8)/denom = 1.105182 / 1.960365 = 0.563764
    #   half   = z*sqrt(0.625*0.375/4 + z^2/64)/denom = z*sqrt(0.118617)/denom = 0.344337
    lo, hi = wilson_interval(2.5, 4)
    assert lo == pytest.approx(0.563764 - 0.344337, abs=2e-6)
    assert hi == pytest.approx(0.563764 + 0.344337, abs=2e-6)
    # The bounds solve (p_hat - p)^2 = z^2 p (1 - p) / n.
    for bound in (lo, hi):
        assert (0.625 - bound) ** 2 == pytest.approx(Z95**2 * bound * (1 - bound) / 4)


def test_wilson_edges() -> None:
    assert all(math.isnan(x) for x in wilson_interval(0, 0))
    lo, hi = wilson_interval(0, 1)
    assert lo == 0.0 and hi == pytest.approx(Z95**2 / (1 + Z95**2))  # 0.793451
    lo, hi = wilson_interval(5, 5)
    assert hi == 1.0 and 0.5 < lo < 0.6


# ---------------------------------------------------------------- report: win rates


def outcomes_frame() -> pd.DataFrame:
    rows = [
        # X vs Y, math: X wins twice (once stored as Y-vs-X with outcome "right")
        ("q1", "math", "X", "Y", "left"),
        ("q2", "math", "Y", "X", "right"),
        ("q3", "math", "X", "Y", "right"),
        # X vs Y, writing: a tie and an unreadable judgement
        ("q4", "writing", "X", "Y", "tie"),
        ("q5", "writing", "Y", "X", "unparseable"),
        # X vs Z: only an unreadable judgement
        ("q1", "math", "X", "Z", "unparseable"),
    ]
    return pd.DataFrame(rows, columns=["question_id", "category", "contender_a", "contender_b", "outcome"])


def test_orient_pairs_flips_swapped_rows() -> None:
    df = orient_pairs(outcomes_frame())
    assert list(zip(df["contender_a"], df["contender_b"], df["outcome"], strict=True)) == [
        ("X", "Y", "left"),
        ("X", "Y", "left"),
        ("X", "Y", "right"),
        ("X", "Y", "tie"),
        ("X", "Y", "unparseable"),
        ("X", "Z", "unparseable"),
    ]


def test_win_rates_overall() -> None:
    wr = win_rates(outcomes_frame())
    xy = wr.iloc[0]
    assert (xy["contender_a"], xy["contender_b"]) == ("X", "Y")
    assert (xy["wins_a"], xy["wins_b"], xy["ties"], xy["unparseable"], xy["n"]) == (2, 1, 1, 1, 4)
    assert xy["win_rate_a"] == pytest.approx(0.625)  # (2 + 0.5) / 4
    assert xy["ci_low"] == pytest.approx(0.219427, abs=2e-6)
    assert xy["ci_high"] == pytest.approx(0.908101, abs=2e-6)
    xz = wr.iloc[1]
    assert (xz["n"], xz["unparseable"]) == (0, 1)
    assert math.isnan(xz["win_rate_a"]) and math.isnan(xz["ci_low"])


def test_pairwise_report_per_category() -> None:
    rep = pairwise_report(outcomes_frame())
    assert list(rep["category"]) == [OVERALL, OVERALL, "math", "math", "writing"]
    math_xy = rep[(rep["category"] == "math") & (rep["contender_b"] == "Y")].iloc[0]
    assert (math_xy["wins_a"], math_xy["wins_b"], math_xy["n"]) == (2, 1, 3)
    assert math_xy["win_rate_a"] == pytest.approx(2 / 3)
    lo, hi = wilson_interval(2, 3)
    assert (math_xy["ci_low"], math_xy["ci_high"]) == pytest.approx((lo, hi))
    writing = rep[rep["category"] == "writing"].iloc[0]
    assert (writing["ties"], writing["unparseable"], writing["n"], writing["win_rate_a"]) == (1, 1, 1, 0.5)


def test_report_validates_input() -> None:
    with pytest.raises(ValueError, match="missing column"):
        win_rates(outcomes_frame().drop(columns="category"))
    bad = outcomes_frame()
    bad.loc[0, "outcome"] = "A"
    with pytest.raises(ValueError, match="unknown outcome"):
        win_rates(bad)


# ---------------------------------------------------------------- report: cost


def test_cost_summary() -> None:
    gens = pd.DataFrame(
        [
            # moa: three calls on q1 (two proposers in parallel, then an aggregator), one on q2
            ("moa", "q1", 0.01, 100, 50, 2.0),
            ("moa", "q1", 0.01, 100, 50, 3.0),
            ("moa", "q1", 0.02, 300, 100, 4.0),
            ("moa", "q2", 0.02, 200, 100, 1.0),
            # solo: a local model with unknown price on q2
            ("solo", "q1", 0.01, 50, 20, 0.5),
            ("solo", "q2", None, 70, 40, 1.5),
        ],
        columns=["contender", "question_id", "cost", "prompt_tokens", "completion_tokens", "latency"],
    )
    s = cost_summary(gens).set_index("contender")
    moa = s.loc["moa"]
    assert (moa["questions"], moa["calls"]) == (2, 4)
    assert moa["total_cost"] == pytest.approx(0.06)
    assert moa["cost_per_question"] == pytest.approx(0.03)  # (0.04 + 0.02) / 2
    assert moa["prompt_tokens_per_question"] == pytest.approx(350)  # (500 + 200) / 2
    assert moa["completion_tokens_per_question"] == pytest.approx(150)  # (200 + 100) / 2
    assert moa["tokens_per_question"] == pytest.approx(500)
    assert moa["latency_mean"] == pytest.approx(2.5)  # max per question: (4 + 1) / 2
    solo = s.loc["solo"]
    # The unknown price is left out, not counted as free: 0.01 per question, not 0.005.
    assert solo["cost_per_question"] == pytest.approx(0.01)
    assert solo["total_cost"] == pytest.approx(0.01)
    assert solo["latency_median"] == pytest.approx(1.0)
    summed = cost_summary(gens, latency="sum").set_index("contender")
    assert summed.loc["moa", "latency_mean"] == pytest.approx(5.0)  # (9 + 1) / 2


def test_cost_display_is_one_table_for_page_html_and_cli() -> None:
    costs = pd.DataFrame(
        {
            "contender": ["moa", "solo"],
            "questions": [2, 2],
            "calls": [8, 2],
            "tokens_per_question": [500.4, 90.0],
            "cost_per_question": [0.03, 0.0],
            "latency_mean": [75.0, float("nan")],  # a contender whose latency is unknown
            "latency_median": [4.25, float("nan")],
        }
    )
    shown = cost_display(costs).set_index("contender")
    assert shown.loc["moa", "calls / question"] == 4.0 and shown.loc["moa", "cost / question"] == "$0.03000"
    assert (shown.loc["moa", "latency mean"], shown.loc["moa", "latency median"]) == ("1m 15s", "4.2s")
    assert shown.loc["solo", "cost / question"] == "free" and shown.loc["solo", "latency mean"] == "–"


def test_format_duration() -> None:
    assert [format_duration(x) for x in (None, float("nan"), -1.0, 4.3, 42.4, 3599.6, 3725.0)] == [
        "–", "–", "0.0s", "4.3s", "42s", "1h 00m", "1h 02m",
    ]  # fmt: skip


# ---------------------------------------------------------------- report: collaborativeness


def test_collaborativeness() -> None:
    rows = pd.DataFrame(
        [("m", "alone", f"q{i}", o) for i, o in enumerate(["right"] * 6 + ["left", "tie"])]
        + [("m", "aggregator", f"q{i}", o) for i, o in enumerate(["left"] * 7 + ["unparseable"])]
        + [("n", "alone", "q1", "left"), ("n", "aggregator", "q1", "right")],
        columns=["model", "setting", "question_id", "outcome"],
    ).assign(opponent="baseline")
    table = collaborativeness(rows).set_index("model")
    m = table.loc["m"]
    assert m["alone_n"] == 8 and m["alone_win_rate"] == pytest.approx(1.5 / 8)
    assert m["aggregator_n"] == 7 and m["aggregator_win_rate"] == pytest.approx(1.0)
    assert m["delta"] == pytest.approx(1 - 1.5 / 8)
    assert m["unparseable"] == 1
    assert (m["alone_ci_low"], m["alone_ci_high"]) == pytest.approx(wilson_interval(1.5, 8))
    assert m["clear_gain"]  # aggregator CI (0.646, 1] sits above alone CI [.., 0.53]
    n = table.loc["n"]
    assert n["delta"] == pytest.approx(-1.0) and not n["clear_gain"]


def test_collaborativeness_validates_input() -> None:
    base = pd.DataFrame(
        [("m", "alone", "q1", "left"), ("m", "aggregator", "q1", "left")],
        columns=["model", "setting", "question_id", "outcome"],
    )
    with pytest.raises(ValueError, match="unknown setting"):
        collaborativeness(base.assign(setting=["alone", "moa"]))
    with pytest.raises(ValueError, match="several opponents"):
        collaborativeness(base.assign(opponent=["gpt", "claude"]))
    with pytest.raises(ValueError, match="missing column"):
        collaborativeness(base.drop(columns="setting"))
