"""Peer review of anonymised answers: who saw which letter, what each reviewer ranked, the aggregate.

A reviewer sees the answers as "Response A, B, C…" in an order shuffled for it alone, so a
letter means a different answer to each reviewer; `Review.order` maps letters back to answers.
Reviewer output is untrusted model text: the parsers read only the last ranking (or choice)
the model wrote, accept the usual markdown and spelling variants, and answer None rather than
guess when a ranking is incomplete, repeats a letter or names a letter that was not shown.
"""

from __future__ import annotations

import random
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from moa_core.vocab import letters

__all__ = ["RankRow", "Review", "aggregate", "letters", "parse_choice", "parse_ranking", "shuffled_order"]


@dataclass(frozen=True)
class Review:
    """One reviewer's view: `order[letter]` is the answer shown under that letter, `ranking`
    the letters best first (None: unparsed), `own` the answer the reviewer itself wrote."""

    order: list[int]
    ranking: list[int] | None
    own: int | None = None


@dataclass(frozen=True)
class RankRow:
    """An answer's standing over the reviewers that ranked it (`votes` of them); mean_rank is
    1-based and None when nobody ranked it; Borda gives len(list)-1-position per ranking."""

    answer: int
    mean_rank: float | None
    borda: float
    votes: int


def shuffled_order(n: int, seed: int, reviewer_slot: int) -> list[int]:
    """The answers in the order one reviewer sees them (index = letter).

    Seeded from the run's seed and the reviewer's slot, so the order is reproducible from what
    is stored and differs between reviewers (position bias does not favour one answer for all).
    A string seed is hashed by `random` itself, not by `hash()`, so it survives PYTHONHASHSEED.
    """
    order = list(range(n))
    random.Random(f"review-order:{seed}:{reviewer_slot}").shuffle(order)
    return order


# ------------------------------------------------------------------------------ parsing

# Markdown emphasis, code and heading marks carry no meaning around a label; dropping them
# lets "**Response B**", "`B`" and "### FINAL RANKING" read like their plain forms.
_MARKUP = re.compile(r"[*_`~#]")
_BLOCKQUOTE = re.compile(r"^ ?>+ ?", re.M)
# Runs of spaces become one, so no pattern below can backtrack over a long blank run.
_SPACES = re.compile(r"[^\S\n]+")
_HEADER = re.compile(r"final ?ranking ?[:\-–—]?", re.I)
_CHOICE = re.compile(r"\bchoice\b ?[:\-–—=]?", re.I)
_WORD = r"(?:response|answer|candidate) ?[:#]? ?"
# One label at the start of a line, after an optional "1." / "(1)" / "1st:" / "-" marker.
_ENTRY = re.compile(
    r"(?:(?P<bullet>[-+•·])|\(? ?(?:rank ?)?(?P<num>[0-9]{1,3})(?:st|nd|rd|th)? ?(?:[.):\-–—]| ))? ?"
    rf"(?P<word>{_WORD})?[\[(]? ?(?P<letter>[A-Za-z]) ?[\])]?(?![A-Za-z0-9])(?P<rest>.*)",
    re.I,
)
# Any label within a line, for one-line rankings ("C > A > B").
_REF = re.compile(rf"(?<![A-Za-z0-9])(?P<word>{_WORD})?[\[(]? ?(?P<letter>[A-Za-z]) ?[\])]?(?![A-Za-z0-9])", re.I)
# What may stand between labels in a one-line ranking. No "<": it would reverse the order.
_INLINE_GLUE = re.compile(r"[ ,;>→.:|/0-9()\[\]\-–—]*")
# A second label right after a choice ("B or C", "Response B / Response C"); a bare letter
# counts only in capitals so "B, a clear winner" is still a choice.
_AMBIGUOUS_TAIL = re.compile(
    r"(?:,|/|&|\+|\b(?i:or|and)\b) ?(?:(?i:response|answer|candidate) ?[:#]? ?[\[(]? ?[A-Za-z]|[\[(]? ?[A-Z])"
    r" ?[\])]?(?![A-Za-z0-9])"
)


@dataclass(frozen=True)
class _Entry:
    num: int | None
    letter: str
    has_word: bool
    rest: str


def _normalise(text: str) -> str:
    # NFKC folds fullwidth and mathematical letters/digits onto ASCII; lookalikes from other
    # scripts (Cyrillic А, Greek Β) stay what they are and are not read as labels.
    text = unicodedata.normalize("NFKC", text)
    text = _MARKUP.sub("", _SPACES.sub(" ", text))
    return _BLOCKQUOTE.sub("", text)


def _entry(line: str, strict: bool = True) -> _Entry | None:
    """The label a line starts with, or None.

    A bare letter must look like a label, not a word: uppercase, or lowercase alone on its
    line; when `strict`, an uppercase one must also be followed by punctuation or nothing, so
    "1. A thorough answer" is prose and not a vote for A.
    """
    m = _ENTRY.fullmatch(line.strip())
    if m is None:
        return None
    letter, rest = m["letter"], m["rest"].strip()
    if not m["word"]:
        if letter.islower() and any(c.isalpha() for c in rest):
            return None
        if strict and rest and rest[0].isalnum():
            return None
    num = int(m["num"]) if m["num"] else None
    return _Entry(num, letter.upper(), bool(m["word"]), rest)


def _inline(text: str) -> list[str] | None:
    """Labels of a one-line ranking ("C > A > B", "Response C, Response A"), or None when the
    line holds anything else."""
    found: list[str] = []
    for m in _REF.finditer(text):
        found.append(m["letter"].upper())
        if len(found) > 26:
            return None  # more labels than can be shown: no ranking, whatever the rest says
    if not found or _INLINE_GLUE.fullmatch(_REF.sub(" ", text)) is None:
        return None
    return found


def _block(lines: list[str]) -> list[_Entry]:
    """The entries right after a header: one line "C > A > B", or one label per line. A few
    intro lines may come first, blank lines may separate entries, and the first other line
    after them ends the block."""
    entries: list[_Entry] = []
    intro = 0
    for line in lines:
        if not line.strip():
            continue
        if not entries:
            labels = _inline(line)
            if labels is not None and len(labels) > 1:
                return [_Entry(None, lab, False, "") for lab in labels]
        e = _entry(line)
        if e is not None:
            entries.append(e)
        elif entries or intro >= 2:
            break
        else:
            intro += 1
    return entries


def _last_run(lines: list[str]) -> list[_Entry]:
    """The last run of numbered "Response X" lines that a line mentioning a ranking
    introduces ("My ranking:", "Ranking, best first:"); blank lines do not break a run.
    Without such a line a numbered list is as likely a critique in letter order as a
    ranking, and a guess would be a made-up vote."""
    last: list[_Entry] = []
    run: list[_Entry] = []
    introduced = False
    for line in lines:
        if not line.strip():
            continue
        e = _entry(line)
        if e is not None and e.num is not None and e.has_word:
            if introduced:
                run.append(e)
                last = run
        else:
            run = []
            introduced = "rank" in line.lower()
    return last


def _ordered(entries: list[_Entry]) -> list[str] | None:
    nums = [e.num for e in entries if e.num is not None]
    if not nums:
        return [e.letter for e in entries]
    if sorted(nums) != list(range(1, len(entries) + 1)):
        return None  # numbering that is partial, skips or repeats a place gives no clear order
    return [e.letter for e in sorted(entries, key=lambda e: e.num or 0)]


def _indices(labels: list[str] | None, n: int) -> list[int] | None:
    if not labels:
        return None
    shown = letters(min(n, 26))
    if any(lab not in shown for lab in labels):
        return None
    idx = [shown.index(lab) for lab in labels]
    return idx if sorted(idx) == list(range(n)) else None


def _last_marker(pattern: re.Pattern[str], text: str) -> re.Match[str] | None:
    """The last marker written as one: in capitals as the prompt asks, or opening its line.
    Only when there is none does a mention inside prose count ("this final ranking reflects…"
    after the real block must not hide it)."""
    last = last_marker = None
    line_start = searched = 0
    for m in pattern.finditer(text):
        last = m
        newline = text.rfind("\n", searched, m.start())  # each stretch searched once: linear
        searched = m.start()
        if newline >= 0:
            line_start = newline + 1
        # Spaces are collapsed by then, so at most one can come before a line's first word.
        opens_line = m.start() - line_start <= 1 and text[line_start : m.start()] in ("", " ")
        if opens_line or m.group(0).isupper():
            last_marker = m
    return last_marker or last


def parse_ranking(text: str, n: int) -> list[int] | None:
    """Letter indices best first from a reviewer's text, or None (unparsed).

    Reads the last "FINAL RANKING" block (one line "C > A > B" or numbered/bulleted lines);
    without one, the last run of numbered "Response X" lines right after a line that
    mentions a ranking. The ranking must name each of
    the n letters exactly once.
    """
    if n <= 0:
        return None
    text = _normalise(text)
    header = _last_marker(_HEADER, text)
    if header is not None:
        return _indices(_ordered(_block(text[header.end() :].split("\n"))), n)
    return _indices(_ordered(_last_run(text.split("\n"))), n)


def parse_choice(text: str, n: int) -> int | None:
    """The letter index a selector chose ("CHOICE: Response B"; the last one counts), or None
    when there is no choice, it names a letter not shown, or it names two."""
    if n <= 0:
        return None
    text = _normalise(text)
    marker = _last_marker(_CHOICE, text)
    if marker is None:
        return None
    rest = text[marker.end() :].lstrip(" ")
    line = next((ln for ln in rest.split("\n") if ln.strip()), "")
    e = _entry(line, strict=False)
    if e is None or _AMBIGUOUS_TAIL.match(e.rest):
        return None  # no label, or "Response A or Response B"
    shown = letters(min(n, 26))
    return shown.index(e.letter) if e.letter in shown else None


# ------------------------------------------------------------------------------ aggregate


def aggregate(reviews: Sequence[Review], n_answers: int, include_own: bool) -> list[RankRow]:
    """Every answer's mean rank, Borda points and votes over the parsed rankings, best first.

    Unparsed reviews count for nothing. Without `include_own`, a reviewer's own answer is taken
    out of its ranking and the rest re-ranked, so self-preference neither helps its answer nor
    pushes the others down. Order: mean rank, answers nobody ranked last, then answer index.
    """
    ranks: list[list[int]] = [[] for _ in range(n_answers)]
    borda = [0.0] * n_answers
    for review in reviews:
        if review.ranking is None:
            continue
        if sorted(review.order) != list(range(n_answers)) or sorted(review.ranking) != list(range(len(review.order))):
            raise ValueError(f"review does not cover the {n_answers} answers: {review}")
        ranked = [review.order[letter] for letter in review.ranking]
        if not include_own and review.own is not None:
            ranked = [a for a in ranked if a != review.own]
        for pos, answer in enumerate(ranked):
            ranks[answer].append(pos + 1)
            borda[answer] += len(ranked) - 1 - pos
    rows = [
        RankRow(a, sum(ranks[a]) / len(ranks[a]) if ranks[a] else None, borda[a], len(ranks[a]))
        for a in range(n_answers)
    ]
    return sorted(rows, key=lambda r: (r.mean_rank is None, r.mean_rank or 0.0, r.answer))
