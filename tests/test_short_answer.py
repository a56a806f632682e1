"""Numbers with units and multiple-choice letters in the reference check (table-driven)."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from moa_core.evaluation.judge import answer_key, reference_check
from moa_core.evaluation.short_answer import (
    canon_unit,
    quantities,
    reference_choice,
    reference_quantity,
    stated_choice,
    stated_quantity,
)

LONG = "Let me think about this carefully. " * 12  # 72 tokens: past the 50-token limit


@pytest.mark.parametrize(
    ("answer", "reference", "expected"),
    [
        # thousands separators, decimals, signs
        ("It is 12,000 people.", "12000", True),
        ("12_000", "12,000", True),
        ("1,234,567", "1234567", True),
        ("1.000", "1000", False),  # a decimal point, not a separator
        ("1,5", "1.5", False),  # "1" and "5"
        ("2.50", "2.5", True),
        ("-4", "4", False),
        ("\u22125 degrees", "-5 degrees", True),  # Unicode minus
        ("3-4", "-4", False),  # a range
        ("120", "12", False),
        ("12.5", "12", False),
        ("v12", "12", False),  # part of a word
        # fractions and mixed numbers
        ("3/4", "0.75", True),
        ("0.75 of the cake", "3/4", True),
        ("1 1/2 cups", "1.5", True),
        ("1/3", "0.33", False),  # values compare exactly
        ("3/4/2020", "3/4", False),  # a date
        ("1/0", "0", False),
        # number words stay as before
        ("There are four cows.", "4", True),
        ("twelve", "12", True),
        # units: must match when the reference has one, any common spelling, no conversion
        ("12 kilometres", "12 km", True),
        ("12km", "12 km", True),
        ("12 Kilometers.", "12 km", True),
        ("12", "12 km", False),
        ("12 m", "12 km", False),
        ("12,000 m", "12 km", False),  # not converted, on purpose
        ("It is 150 km away", "150 kilometres", True),
        ("60 km per hour", "60 km/h", True),
        ("60 kph", "60 km/h", True),
        ("60 km", "60 km/h", False),
        ("25 percent", "25%", True),
        ("25", "25%", False),
        ("100 degrees Celsius", "100 °C", True),
        ("100 °F", "100 °C", False),
        ("It costs $15.", "15 dollars", True),
        ("15 USD", "$15", True),
        ("15 euros", "$15", False),
        ("4 cows", "4 cows", True),
        ("four cows", "4 cow", True),
        ("4 boxes", "4 box", True),
        ("4 horses", "4 cows", False),
        ("The price is $15.00", "15", True),  # a reference without unit ignores the answer's
        # long answers need an explicit statement
        (LONG + "Answer: 42", "42", True),
        (LONG + "so 42", "42", False),
        (LONG + "The final answer is 42 km.", "42 km", True),
        (LONG + "Answer: 42 m", "42 km", False),
        # multiple choice
        ("B", "B", True),
        ("b", "B", True),
        ("(B)", "B", True),
        ("B)", "B", True),
        ("B. Paris", "B", True),
        ("**B**", "B", True),
        ("Answer: B", "B", True),
        ("The answer is (B).", "B", True),
        ("The correct option is B because Paris is the capital.", "B", True),
        ("answer: b", "B", True),
        ("I think B is right.", "B", True),
        ("Bob knows.", "B", False),  # a B inside a word
        ("Vitamin B12", "B", False),
        ("A", "A", True),
        ("(A)", "A", True),
        ("A good choice is C.", "A", False),  # the article is not a letter
        ("A good choice is C.", "C", True),
        ("I would pick D", "I", False),  # the pronoun is not a letter
        ("(A) is wrong, (B) is right", "B", False),  # two letters, nothing explicit
        ("(A) is wrong, so the answer is (B)", "B", True),
        ("The answer is a tricky one: (C)", "C", True),
        ("Answer: A. No wait, answer: C", "C", True),  # the last statement wins
        ("The answer is B. " + LONG, "B", True),
        (LONG + " B", "B", False),  # long, nothing explicit
        ("", "B", False),
        ("B", "(B)", True),
        ("B", "B)", True),
    ],
)
def test_reference_check_numbers_units_letters(answer: str, reference: str, expected: bool) -> None:
    assert reference_check(answer, reference) is expected


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("150 km", (Fraction(150), "km")),
        ("3/4", (Fraction(3, 4), None)),
        ("$15", (Fraction(15), "dollar")),
        ("-2.5 °C", (Fraction(-5, 2), "°c")),
        ("12,000.", (Fraction(12000), None)),
        ("Apollo 11", None),
        ("1 and 2", None),
        ("Canberra", None),
        ("3/4/2020", None),
    ],
)
def test_reference_quantity(reference: str, expected: tuple[Fraction, str | None] | None) -> None:
    q = reference_quantity(reference)
    assert (None if q is None else (q.value, q.unit)) == expected


@pytest.mark.parametrize(
    ("reference", "expected"),
    [("B", "B"), ("(C)", "C"), ("D)", "D"), (" J. ", "J"), ("K", None), ("b", None), ("Au", None), ("BB", None)],
)
def test_reference_choice(reference: str, expected: str | None) -> None:
    assert reference_choice(reference) == expected


@pytest.mark.parametrize(
    ("unit", "canon"),
    [("Kilometres", "km"), ("metres", "m"), ("km per hour", "km/h"), ("mph", "mi/h"), ("cows", "cow"), ("%", "%")],
)
def test_canon_unit(unit: str, canon: str) -> None:
    assert canon_unit(unit) == canon


def test_quantities_reads_every_number_in_order() -> None:
    qs = quantities("From 3 km to 1,500 m takes 1 1/2 hours, costs $4 and is 50% done.")
    assert [(q.value, q.unit) for q in qs] == [
        (3, "km"),
        (1500, "m"),
        (Fraction(3, 2), "h"),
        (4, "dollar"),
        (50, "%"),
    ]


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("3 cows and 4 hens; the answer is 4 hens.", "4 hen"),
        ("I counted 3, then 7", "7"),
        ("answer:\n12", "12"),  # the statement's line has no number: fall back to the last one
        ("no number here", None),
    ],
)
def test_stated_quantity(answer: str, expected: str | None) -> None:
    q = stated_quantity(answer)
    assert (None if q is None else q.key()) == expected


def test_stated_choice_long_answers_only_read_explicit_statements() -> None:
    assert stated_choice("B", short=False) is None
    assert stated_choice("Option C.", short=False) == "C"


@pytest.mark.parametrize(
    ("answer", "reference", "key"),
    [
        ("It is 4 cows, from 10 heads.", "4", "4"),  # correct: the reference's form, not the last number
        ("10 heads give 6", "4", "6"),
        ("Sydney.", "Canberra", "sydney"),
        ("The capital is Canberra", "Canberra", "canberra"),
        ("(C)", "B", "C"),
        ("no idea", "B", None),
        ("12 m", "12 km", "12 m"),
        ("", "Canberra", None),
    ],
)
def test_answer_key(answer: str, reference: str, key: str | None) -> None:
    assert answer_key(answer, reference) == key


# ---------------------------------------------------------------- the bundled short-answer set


def test_bundled_short_answer_set_is_checkable() -> None:
    import re

    from moa_core.evaluation.questions import load_bundled_set

    qs = load_bundled_set("short-answer-48")
    assert len(qs) >= 40 and all(q.reference for q in qs.questions)
    assert {"arithmetic", "facts", "units", "multiple-choice"} <= set(qs.categories())
    for q in qs.questions:
        ref = q.reference or ""
        assert reference_check(ref, ref) and reference_check(f"The answer is {ref}.", ref), q.id
        if q.category == "multiple-choice":
            # The reference is one of the letters the question offers, and the check reads it as a letter.
            assert reference_choice(ref) in re.findall(r"\(([A-J])\)", q.text), q.id
            assert not reference_check("(A) (B) (C) (D)", ref), q.id
    choices = [q.reference for q in qs.questions if q.category == "multiple-choice"]
    # No letter is the answer much more often than the others, so "always B" scores no better than chance.
    assert max(choices.count(x) for x in set(choices)) <= len(choices) // 4 + 1


def test_huge_numbers_are_not_read_as_answers() -> None:
    huge = "9" * 5001
    assert not reference_check(huge, huge[:-1]) and reference_quantity(huge) is None
    assert answer_key(f"it is {huge}", "4") is None


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.text(alphabet=st.sampled_from("0123456789 ,./-()ABCabc%$kmh:\nanswer"), max_size=60), st.text(max_size=12))
def test_answer_key_and_check_always_answer(answer: str, reference: str) -> None:
    key = answer_key(answer, reference)
    assert key is None or isinstance(key, str)
    assert reference_check(answer, reference) in (True, False)
    assert stated_choice(answer) in (None, *"ABCDEFGHIJ")
