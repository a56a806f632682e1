"""Reading a short answer the way a reference states it: numbers (with units) and
multiple-choice letters. Pure functions; :func:`moa_core.evaluation.judge.reference_check`
dispatches here when the reference is a number or a letter.

What is supported, on purpose and no more:

- Numbers: thousands separators (``12,000``, ``12_000``), decimals, negatives (a minus
  only at the start of a token: ``3-4`` is a range), fractions ``3/4`` and mixed numbers
  ``1 1/2`` (a date such as ``3/4/2020`` is not a number), number words zero..twenty.
  Values compare exactly (``0.75`` = ``3/4`` = ``.75`` is not written, ``0.33`` ≠ ``1/3``).
- Units: when the reference has one, the answer's number must carry the same unit,
  spelled any common way (``km``, ``kilometre``, ``kilometers``; ``%``, ``percent``;
  ``$``/``dollars``; ``km/h``, ``km per hour``, ``kph``; unknown words match up to a
  plural ``s``). Units are *not* converted: ``12 km`` does not match ``12,000 m``,
  because on a unit-conversion question the answer that merely restates the question's
  quantity would then pass.
- Letters: a reference that is a single letter A–J (``B``, ``(B)``, ``B)``) is a
  multiple-choice answer. The answer's letter is read from, in order of trust,
  "Answer: B" / "the answer is (B)" / "option B" (the last such statement wins), then
  "(B)", "B)" or "B." at the start of a line, or an answer that is just the letter (all
  must agree), then a lone capital letter other than A and I (all must agree: "A" and
  "I" are words). A "B" inside a word never counts; several different letters with no
  explicit statement read as no answer.
- Length: a short answer (at most ``max_words`` tokens) passes if any number it states
  matches; a longer one only through an explicit "answer ..." statement.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from fractions import Fraction

NUMBER_WORDS = {
    w: str(i)
    for i, w in enumerate(
        [
            "zero",
            "one",
            "two",
            "three",
            "four",
            "five",
            "six",
            "seven",
            "eight",
            "nine",
            "ten",
            "eleven",
            "twelve",
            "thirteen",
            "fourteen",
            "fifteen",
            "sixteen",
            "seventeen",
            "eighteen",
            "nineteen",
            "twenty",
        ]
    )
}
_WORD_NUMBER = re.compile(rf"\b({'|'.join(NUMBER_WORDS)})\b")
THOUSANDS = re.compile(r"(?<=\d)[,_](?=\d{3}(?!\d))")
_CURRENCY = {"$": "dollar", "€": "euro", "£": "gbp", "¥": "yen"}
_NUMBER = (
    r"(?P<sign>(?<![\w./-])-)?(?<![\w./])"
    r"(?:(?P<whole>\d+)\s+(?P<n1>\d+)/(?P<d1>\d+)|(?P<n2>\d+)/(?P<d2>\d+)|(?P<int>\d+)(?:\.(?P<frac>\d+))?)"
    r"(?![\d/]|\.\d)"
)
_UNIT = (
    r"(?:\s*(?P<unit>%|°\s?[cf]\b|degrees?\s+(?:celsius|centigrade|fahrenheit|c|f)\b"
    r"|[^\W\d_]+(?:(?:\s*/\s*|\s+per\s+)[^\W\d_]+)?))?"
)
_MENTION = re.compile(rf"(?:(?P<cur>[$€£¥])\s*)?{_NUMBER}{_UNIT}")
_ANSWER_WORD = re.compile(r"\b(?:final\s+)?answer\b[^\d\n$€£¥-]{0,30}")

_UNIT_ALIASES: dict[str, tuple[str, ...]] = {
    "km": ("kilometre", "kilometer", "kms"),
    "m": ("metre", "meter", "mtr"),
    "cm": ("centimetre", "centimeter"),
    "mm": ("millimetre", "millimeter"),
    "mi": ("mile",),
    "ft": ("foot", "feet"),
    "inch": ("inche", '"'),
    "kg": ("kilogram", "kilo", "kilogramme", "kgs"),
    "g": ("gram", "gramme", "gr"),
    "mg": ("milligram",),
    "t": ("tonne", "ton"),
    "lb": ("pound", "lbs"),
    "l": ("litre", "liter", "ltr"),
    "ml": ("millilitre", "milliliter"),
    "s": ("second", "sec", "secs"),
    "min": ("minute", "mins"),
    "h": ("hour", "hr", "hrs"),
    "day": (),
    "week": ("wk",),
    "year": ("yr", "yrs"),
    "%": ("percent", "pct", "per cent"),
    "°c": ("celsius", "centigrade", "degree celsius", "degree centigrade", "degree c", "° c"),
    "°f": ("fahrenheit", "degree fahrenheit", "degree f", "° f"),
    "dollar": ("usd", "buck"),
    "euro": ("eur",),
    "km/h": ("kph", "kmh"),
    "mi/h": ("mph",),
}
_ALIAS = {alias: canon for canon, aliases in _UNIT_ALIASES.items() for alias in (canon, *aliases)}


def _singular(word: str) -> str:
    if len(word) <= 2 or word.endswith("ss"):
        return word
    if word.endswith(("ches", "shes", "xes", "sses", "zes")):
        return word[:-2]
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    return word[:-1] if word.endswith("s") else word


def canon_unit(unit: str | None) -> str | None:
    """One spelling per unit: "Kilometres" -> "km", "km per hour" -> "km/h", "cows" -> "cow"."""
    if unit is None:
        return None
    u = " ".join(unit.lower().split())
    if not u:
        return None
    if u in _ALIAS:
        return _ALIAS[u]
    if (s := _singular(u)) in _ALIAS:
        return _ALIAS[s]
    # "degrees celsius" and other two-word spellings: singular first word.
    first, _, rest = u.partition(" ")
    if rest and f"{_singular(first)} {rest}" in _ALIAS:
        return _ALIAS[f"{_singular(first)} {rest}"]
    parts = re.split(r"\s*/\s*|\s+per\s+", u)
    if len(parts) == 2:
        return "/".join(canon_unit(p) or p for p in parts)
    return s


@dataclass(frozen=True)
class Quantity:
    """A number an answer states, with the unit right after (or the currency right before) it."""

    value: Fraction
    unit: str | None
    start: int = 0

    def key(self) -> str:
        return f"{self.value} {self.unit}" if self.unit else str(self.value)


def prepare(text: str) -> str:
    """NFKC, lower case, Unicode minus as "-", thousands separators and markdown emphasis
    dropped, number words zero..twenty as digits."""
    t = unicodedata.normalize("NFKC", text).lower().replace("\u2212", "-")
    t = re.sub(r"[*_`]+(?=\w|$)|(?<=\w)[*_`]+", "", THOUSANDS.sub("", t))
    return _WORD_NUMBER.sub(lambda m: NUMBER_WORDS[m.group(1)], t)


MAX_DIGITS = 100  # longer digit runs are not short answers (and int() refuses past 4,300 digits)


def _value(m: re.Match[str]) -> Fraction | None:
    g = m.groupdict()
    if any(v is not None and len(v) > MAX_DIGITS for k, v in g.items() if k not in ("sign", "cur", "unit")):
        return None
    if g["int"] is not None:
        v = Fraction(int(g["int"])) + (Fraction(int(g["frac"]), 10 ** len(g["frac"])) if g["frac"] else 0)
    else:
        num, den = (g["n1"], g["d1"]) if g["n1"] is not None else (g["n2"], g["d2"])
        if int(den) == 0:
            return None
        v = Fraction(int(num), int(den)) + (int(g["whole"]) if g["whole"] else 0)
    return -v if g["sign"] else v


def quantities(text: str, *, prepared: bool = False) -> list[Quantity]:
    """Every number ``text`` states, in order, with its unit (canonical) if one follows."""
    t = text if prepared else prepare(text)
    out = []
    for m in _MENTION.finditer(t):
        v = _value(m)
        if v is None:
            continue
        unit = _CURRENCY[m.group("cur")] if m.group("cur") else canon_unit(m.group("unit"))
        out.append(Quantity(v, unit, m.start()))
    return out


def reference_quantity(reference: str) -> Quantity | None:
    """The reference as a number (with unit) when that is all it is: "150 km", "3/4", "$15"."""
    t = prepare(reference).strip().rstrip(".").strip()
    m = _MENTION.fullmatch(t)
    if m is None:
        return None
    qs = quantities(t, prepared=True)
    return qs[0] if len(qs) == 1 else None


def _matches(q: Quantity, ref: Quantity) -> bool:
    return q.value == ref.value and (ref.unit is None or q.unit == ref.unit)


def stated_quantity(answer: str) -> Quantity | None:
    """The number an answer gives as its answer: the first after its last "answer ..."
    statement on the same line, else the last number it states."""
    t = prepare(answer)
    qs = quantities(t, prepared=True)
    explicit = _explicit_quantity(t, qs)
    return explicit if explicit is not None else (qs[-1] if qs else None)


def _explicit_quantity(t: str, qs: list[Quantity]) -> Quantity | None:
    marks = list(_ANSWER_WORD.finditer(t))
    if not marks:
        return None
    end = marks[-1].end()
    line_end = t.find("\n", end)
    line_end = len(t) if line_end < 0 else line_end
    return next((q for q in qs if end <= q.start < line_end), None)


def number_check(answer: str, reference: Quantity, short: bool) -> bool:
    """A short answer passes if any number it states is the reference (same unit when the
    reference has one); a long one only if its explicit "answer ..." number is."""
    t = prepare(answer)
    qs = quantities(t, prepared=True)
    if short:
        return any(_matches(q, reference) for q in qs)
    q = _explicit_quantity(t, qs)
    return q is not None and _matches(q, reference)


# ---------------------------------------------------------------- multiple choice

CHOICE_LETTERS = "ABCDEFGHIJ"
_REF_CHOICE = re.compile(r"\(?([A-J])\)?[.)]?")
_DECOR = re.compile(r"[*_`#]+")
_KEYWORD = re.compile(
    r"(?i:\b(?:final\s+|correct\s+)?(?:answer|option|choice)\b)(?:\s+(?i:is|would\s+be|:))?\s*[:=\-–]?\s*"
    r"(?:\(([A-Ja-j])\)|([A-J])(?![\w'’])|([a-j])(?=\s*(?:$|[).:,;!])))"
)
_PAREN = re.compile(r"\(([A-Ja-j])\)")
_LINE_START = re.compile(r"(?m)^[ \t>\-]*([A-J])[).:](?=\s|$)")
_ALONE = re.compile(r"\s*\(?([A-Ja-j])\)?[.!]?\s*")
_LONE_CAPITAL = re.compile(r"(?<![\w'’\-/])([B-HJ])(?![\w'’\-/])")


def reference_choice(reference: str) -> str | None:
    """The letter when the reference is a multiple-choice answer ("B", "(B)", "B)")."""
    m = _REF_CHOICE.fullmatch(unicodedata.normalize("NFKC", reference).strip())
    return m.group(1) if m else None


def _one(letters: list[str]) -> str | None:
    distinct = {x.upper() for x in letters}
    return distinct.pop() if len(distinct) == 1 else None


def stated_choice(answer: str, short: bool = True) -> str | None:
    """The letter an answer picks, or None (nothing, or several with nothing explicit)."""
    t = _DECOR.sub("", unicodedata.normalize("NFKC", answer))
    explicit = [next(g for g in m.groups() if g) for m in _KEYWORD.finditer(t)]
    if explicit:
        return explicit[-1].upper()
    if not short:
        return None
    if m := _ALONE.fullmatch(t):
        return m.group(1).upper()
    marked = [m.group(1) for m in _PAREN.finditer(t)] + [m.group(1) for m in _LINE_START.finditer(t)]
    if marked:
        return _one(marked)
    return _one([m.group(1) for m in _LONE_CAPITAL.finditer(t)])


__all__ = [
    "CHOICE_LETTERS",
    "NUMBER_WORDS",
    "THOUSANDS",
    "Quantity",
    "canon_unit",
    "number_check",
    "prepare",
    "quantities",
    "reference_choice",
    "reference_quantity",
    "stated_choice",
    "stated_quantity",
]
