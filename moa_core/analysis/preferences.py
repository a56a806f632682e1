"""Pairwise preference datasets in the shape DPO trainers load: prompt, chosen, rejected.

One row per *pair of answers* (two generations), however many people voted on it, so a
trainer never sees the same comparison twice. Each rater counts once per pair, with
their first vote (as in ``agreement``). The pair's verdict is the outcome with strictly
the most votes: the left answer, the right one, a tie or both bad; with two outcomes
level it is ``split``. Pairs won by one answer become (chosen, rejected) rows; ties,
both-bad and split pairs are kept apart, since "neither" is not a preference.

Metadata beside each row: both contenders, the raters and vote counts, ``agreement``
(the share of votes that went with the verdict), category, campaigns, question set and
the vote and generation ids, so any row can be traced back to the database. For a
split pair ``agreement`` is the share of the largest outcome.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from moa_core.analysis.agreement import item_votes

PAIR_COLUMNS = [
    "prompt", "chosen", "rejected", "chosen_contender", "rejected_contender",
    "chosen_generation_id", "rejected_generation_id", "votes", "chosen_votes", "rejected_votes",
    "ties", "both_bad", "agreement", "raters", "category", "campaigns", "question_set", "vote_ids",
]  # fmt: skip
APART_COLUMNS = [
    "prompt", "response_a", "response_b", "contender_a", "contender_b", "generation_id_a", "generation_id_b",
    "verdict", "votes", "a_votes", "b_votes", "ties", "both_bad", "agreement", "raters", "category",
    "campaigns", "question_set", "vote_ids",
]  # fmt: skip
NEEDED = (
    "id", "rater", "outcome", "left_generation_id", "right_generation_id", "left", "right",
    "question", "left_text", "right_text",
)  # fmt: skip


@dataclass(frozen=True)
class PreferenceSets:
    pairs: pd.DataFrame  # PAIR_COLUMNS: one (chosen, rejected) row per decided pair
    apart: pd.DataFrame  # APART_COLUMNS: ties, both-bad and split pairs


def _first(values: pd.Series) -> object:
    present = values.dropna()
    return present.iloc[0] if len(present) else None


def preference_pairs(votes: pd.DataFrame) -> PreferenceSets:
    """Aggregate votes (one row each, as ``vote_details`` plus ``left_text``/``right_text``)
    into DPO rows and the pairs kept apart. ``category``, ``campaign``, ``question_set``
    and ``created_at`` are used when present."""
    missing = set(NEEDED) - set(votes.columns)
    if missing:
        raise ValueError(f"votes is missing columns: {sorted(missing)}")
    if votes.empty:
        return PreferenceSets(pd.DataFrame(columns=PAIR_COLUMNS), pd.DataFrame(columns=APART_COLUMNS))
    order = [c for c in ("created_at", "id") if c in votes.columns]
    v = votes.sort_values(order, kind="stable").reset_index(drop=True)
    items = item_votes(v)  # same order as v: it sorts by the same keys, stably
    v = v.assign(item=items["item"].to_numpy(), label=items["label"].to_numpy())
    v = v.drop_duplicates(["item", "rater"], keep="first")
    for col in ("category", "campaign", "question_set"):
        if col not in v.columns:
            v[col] = None

    # Each generation's text and contender, whichever side it was shown on.
    side = pd.concat(
        [
            v[["left_generation_id", "left_text", "left"]].set_axis(["gid", "text", "contender"], axis=1),
            v[["right_generation_id", "right_text", "right"]].set_axis(["gid", "text", "contender"], axis=1),
        ]
    ).drop_duplicates("gid")
    text = dict(zip(side["gid"], side["text"], strict=True))
    contender = dict(zip(side["gid"], side["contender"], strict=True))

    pair_rows: list[dict[str, object]] = []
    apart_rows: list[dict[str, object]] = []
    for item, g in v.groupby("item", sort=False):
        lo, hi = (int(x) for x in str(item).split("-"))
        counts = g["label"].value_counts()
        n = {lab: int(counts.get(lab, 0)) for lab in ("first", "second", "tie", "both_bad")}
        top = max(n.values())
        leaders = [lab for lab, c in n.items() if c == top]
        verdict = leaders[0] if len(leaders) == 1 else "split"
        common = {
            "prompt": _first(g["question"]),
            "votes": len(g),
            "ties": n["tie"],
            "both_bad": n["both_bad"],
            "agreement": top / len(g),
            "raters": sorted(g["rater"].astype(str).unique().tolist()),
            "category": _first(g["category"]),
            "campaigns": sorted({str(c) for c in g["campaign"].dropna()}),
            "question_set": _first(g["question_set"]),
            "vote_ids": sorted(int(i) for i in g["id"]),
        }
        if verdict in ("first", "second"):
            win, lose = (lo, hi) if verdict == "first" else (hi, lo)
            pair_rows.append(
                {
                    **common,
                    "chosen": text[win],
                    "rejected": text[lose],
                    "chosen_contender": contender[win],
                    "rejected_contender": contender[lose],
                    "chosen_generation_id": win,
                    "rejected_generation_id": lose,
                    "chosen_votes": n[verdict],
                    "rejected_votes": n["second" if verdict == "first" else "first"],
                }
            )
        else:
            apart_rows.append(
                {
                    **common,
                    "response_a": text[lo],
                    "response_b": text[hi],
                    "contender_a": contender[lo],
                    "contender_b": contender[hi],
                    "generation_id_a": lo,
                    "generation_id_b": hi,
                    "verdict": verdict,
                    "a_votes": n["first"],
                    "b_votes": n["second"],
                }
            )
    pairs = pd.DataFrame(pair_rows, columns=PAIR_COLUMNS)
    apart = pd.DataFrame(apart_rows, columns=APART_COLUMNS)
    tallies = ["votes", "ties", "both_bad"]
    pairs = pairs.astype(
        dict.fromkeys(
            ["chosen_generation_id", "rejected_generation_id", "chosen_votes", "rejected_votes", *tallies], "int64"
        )
    )
    apart = apart.astype(dict.fromkeys(["generation_id_a", "generation_id_b", "a_votes", "b_votes", *tallies], "int64"))
    return PreferenceSets(pairs, apart)


__all__ = ["APART_COLUMNS", "PAIR_COLUMNS", "PreferenceSets", "preference_pairs"]
