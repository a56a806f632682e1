"""THROWAWAY STUB (h3engine): stands in for h4rank's review_ranking until it lands on main.

Names and shapes follow design13.md; the real module replaces this file.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Review:
    order: list[int]
    ranking: list[int] | None
    own: int | None = None


@dataclass(frozen=True)
class RankRow:
    answer: int
    mean_rank: float | None
    borda: float
    votes: int


def letters(n: int) -> list[str]:
    return [chr(ord("A") + i) for i in range(n)]


def shuffled_order(n: int, seed: int, reviewer_slot: int) -> list[int]:
    order = list(range(n))
    random.Random(seed * 1000 + reviewer_slot).shuffle(order)
    return order


def parse_ranking(text: str, n: int) -> list[int] | None:
    block = text.rsplit("FINAL RANKING:", 1)[-1]
    found = [ord(m) - ord("A") for m in re.findall(r"Response ([A-Z])", block)]
    if sorted(found) != list(range(n)):
        return None
    return found


def parse_choice(text: str, n: int) -> int | None:
    m = re.search(r"CHOICE:\s*Response ([A-Z])", text)
    if not m:
        return None
    i = ord(m.group(1)) - ord("A")
    return i if i < n else None


def aggregate(rankings: Sequence[Review], n_answers: int, include_own: bool) -> list[RankRow]:
    ranks: list[list[int]] = [[] for _ in range(n_answers)]
    for r in rankings:
        if r.ranking is None:
            continue
        for pos, letter in enumerate(r.ranking):
            answer = r.order[letter]
            if answer == r.own and not include_own:
                continue
            ranks[answer].append(pos + 1)
    rows = [
        RankRow(a, sum(rs) / len(rs) if rs else None, float(sum(n_answers - p for p in rs)), len(rs))
        for a, rs in enumerate(ranks)
    ]
    return sorted(rows, key=lambda r: (r.mean_rank is None, r.mean_rank or 0, -r.borda, r.answer))
