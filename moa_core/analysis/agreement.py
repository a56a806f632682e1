"""Agreement between raters, their consistency, and position bias, from pairwise votes.

An *item* is what two votes must share to be compared. By default (``by="answers"``) it
is one pair of answers (two generation ids), whatever side each was shown on; with
``by="question"`` it is one question put to one pair of contenders, whichever answers
they gave (more items are doubly rated, but answer-to-answer variation then counts as
disagreement). Votes on an item are compared in one orientation (the lower generation id,
or the contender name that sorts first, is ``first``), so the labels are ``first``,
``second``, ``tie`` and ``both_bad``: four nominal categories. For agreement between
raters each rater counts once per item, with their first vote, as the store counts votes
(one per pair and person; a judge re-run on the same pair adds a vote); later votes of
the same rater on the item feed the rater's consistency instead.

The statistics come from maintained libraries: Cohen's and Fleiss' kappa from
``statsmodels.stats.inter_rater``, Krippendorff's alpha from ``krippendorff``, the exact
binomial test from ``scipy.stats``; the Wilson interval is ``stats.wilson_interval``.

Position bias is measured on decisive choices only (ties and both-bad say nothing about a
side). For people, the left answer is the one shown first (Arena's A); sides are random,
so an unbiased rater picks it half of the time. A judge that saw a pair in both orders
(``verdicts``: the verdict with the left answer shown first, then with it shown second)
contributes each readable verdict; there, too, 50 % is unbiased.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import krippendorff
import numpy as np
import pandas as pd
from scipy.stats import binomtest
from statsmodels.stats.inter_rater import cohens_kappa, fleiss_kappa

from moa_core.analysis.stats import wilson_interval

LABELS: tuple[str, ...] = ("first", "second", "tie", "both_bad")
PEOPLE = "people"
PAIR_COLUMNS = ["rater_a", "rater_b", "items", "agreement", "kappa", "kappa_low", "kappa_high"]
RATER_COLUMNS = [
    "rater", "votes", "left", "right", "ties", "both_bad", "tie_rate", "both_bad_rate",
    "left_rate", "left_low", "left_high", "repeated_items", "repeat_votes", "self_agreement",
]  # fmt: skip
POSITION_COLUMNS = ["rater", "decisive", "first_picks", "first_rate", "ci_low", "ci_high", "p_value"]
JUDGE_HUMAN_COLUMNS = ["judge", "items", "comparisons", "agreement", "kappa", "kappa_low", "kappa_high"]


def _judges(votes: pd.DataFrame) -> np.ndarray:
    """The ``is_judge`` column (the store sets it from the rater name), all False without it."""
    if "is_judge" not in votes.columns:
        return np.zeros(len(votes), dtype=bool)
    return votes["is_judge"].fillna(False).astype(bool).to_numpy()


ITEM_KINDS = ("answers", "question")


def item_votes(votes: pd.DataFrame, by: str = "answers") -> pd.DataFrame:
    """Votes in item orientation: ``item``, ``rater``, ``is_judge``, ``label``, ``order``.

    Needs ``outcome``, ``rater`` and ``left_generation_id`` / ``right_generation_id``
    (``by="answers"``) or ``question``, ``left`` and ``right`` contender names
    (``by="question"``); ``created_at`` and ``id``, when present, order a rater's repeated
    votes; ``is_judge`` (default False) marks judges.
    """
    if by not in ITEM_KINDS:
        raise ValueError(f"by must be one of {', '.join(ITEM_KINDS)}, got {by!r}")
    keys = ["left_generation_id", "right_generation_id"] if by == "answers" else ["question", "left", "right"]
    missing = {"outcome", "rater", *keys} - set(votes.columns)
    if missing:
        raise ValueError(f"votes is missing columns: {sorted(missing)}")
    if votes.empty:
        return pd.DataFrame(
            {
                "item": pd.Series(dtype=object),
                "rater": pd.Series(dtype=object),
                "is_judge": pd.Series(dtype=bool),
                "label": pd.Series(dtype=object),
                "order": pd.Series(dtype="int64"),
            }
        )
    sort_keys = [c for c in ("created_at", "id") if c in votes.columns]
    v = votes.sort_values(sort_keys, kind="stable") if sort_keys else votes
    if by == "answers":
        a = v["left_generation_id"].astype("int64").to_numpy()
        b = v["right_generation_id"].astype("int64").to_numpy()
        flipped = a > b
        lo, hi = np.minimum(a, b), np.maximum(a, b)
        item = [f"{x}-{y}" for x, y in zip(lo, hi, strict=True)]
    else:
        a_name = v["left"].astype(str).to_numpy()
        b_name = v["right"].astype(str).to_numpy()
        flipped = a_name > b_name
        lo_name, hi_name = np.where(flipped, b_name, a_name), np.where(flipped, a_name, b_name)
        # The question text itself is the key: two runs of one question share it exactly.
        item = [f"{q}\x00{x}\x00{y}" for q, x, y in zip(v["question"].astype(str), lo_name, hi_name, strict=True)]
    outcome = v["outcome"].astype(str).to_numpy()
    label = np.select(
        [outcome == "left", outcome == "right", outcome == "tie", outcome == "both_bad"],
        [
            np.where(flipped, "second", "first"),
            np.where(flipped, "first", "second"),
            np.full(len(v), "tie"),
            np.full(len(v), "both_bad"),
        ],
        default="",
    )
    if (label == "").any():
        bad = sorted(set(outcome[label == ""]))
        raise ValueError(f"unknown outcomes {bad}; expected left, right, tie or both_bad")
    return pd.DataFrame(
        {
            "item": item,
            "rater": v["rater"].astype(str).to_numpy(),
            "is_judge": _judges(v),
            "label": label,
            "order": np.arange(len(v), dtype=np.int64),
        }
    )


def first_labels(items: pd.DataFrame) -> pd.DataFrame:
    """One row per (item, rater): the rater's first label on that item."""
    return items.drop_duplicates(["item", "rater"], keep="first").reset_index(drop=True)


def _table(a: Sequence[str], b: Sequence[str]) -> np.ndarray:
    """4x4 contingency table of two aligned label sequences."""
    pos = {lab: i for i, lab in enumerate(LABELS)}
    t = np.zeros((len(LABELS), len(LABELS)))
    np.add.at(t, ([pos[x] for x in a], [pos[y] for y in b]), 1.0)
    return t


def _kappa(table: np.ndarray) -> tuple[float, float, float]:
    """Cohen's kappa with its 95% interval, NaN where chance agreement is already perfect."""
    n = table.sum()
    if n == 0:
        return (float("nan"),) * 3
    expected = (table.sum(axis=0) * table.sum(axis=1)).sum() / n**2
    if np.isclose(expected, 1.0):
        return (float("nan"),) * 3
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = cohens_kappa(table, return_results=True)
    return float(res.kappa), float(res.kappa_low), float(res.kappa_upp)


def _pairs(labels: pd.DataFrame, left_mask: pd.Series, right_mask: pd.Series) -> pd.DataFrame:
    """Every (left rater, right rater) pair of labels on a shared item, distinct raters."""
    merged = labels[left_mask].merge(labels[right_mask], on="item", suffixes=("_a", "_b"))
    return merged[merged["rater_a"] != merged["rater_b"]]


def _same_kind_pairs(labels: pd.DataFrame) -> pd.DataFrame:
    """Pairs of distinct people, and of distinct judges, on shared items (each pair once);
    a judge against a person is ``judge_human_agreement``'s business."""
    judge = labels["is_judge"].astype(bool)
    pairs = pd.concat([_pairs(labels, ~judge, ~judge), _pairs(labels, judge, judge)], ignore_index=True)
    return pairs[pairs["rater_a"] < pairs["rater_b"]]


def rater_pairs(labels: pd.DataFrame, min_items: int = 1) -> pd.DataFrame:
    """Cohen's kappa for every pair of people (and of judges) with at least ``min_items``
    items in common."""
    pairs = _same_kind_pairs(labels)
    rows = []
    for (ra, rb), g in pairs.groupby(["rater_a", "rater_b"], sort=True):
        if len(g) < min_items:
            continue
        kappa, low, high = _kappa(_table(g["label_a"].tolist(), g["label_b"].tolist()))
        rows.append([ra, rb, len(g), float((g["label_a"] == g["label_b"]).mean()), kappa, low, high])
    return pd.DataFrame(rows, columns=PAIR_COLUMNS)


@dataclass(frozen=True)
class OverallAgreement:
    """Agreement over every item rated by two or more people (judges when there are none).

    Krippendorff's alpha (nominal) takes any number of raters per item; Fleiss' kappa
    needs the same number on every item, so it is computed on the items that have the
    most common number (``fleiss_raters`` raters each, ``fleiss_items`` items). The
    test-retest kappa compares each rater's first and second vote on the same item.
    ``agreement`` is the raw share of agreeing pairs of raters on an item. Where every
    rating has the same label, alpha and kappa are 0/0 and reported as NaN.
    """

    items: int
    raters: int
    ratings: int
    agreement: float
    alpha: float
    fleiss_kappa: float
    fleiss_items: int
    fleiss_raters: int
    retest_items: int
    retest_agreement: float
    retest_kappa: float


def overall_agreement(items: pd.DataFrame) -> OverallAgreement:
    labels = first_labels(items)
    # Among people; among judges when there are no people (judges vs people: judge_human_agreement).
    judge = labels["is_judge"].astype(bool)
    labels = labels[~judge] if (~judge).any() else labels
    per_item = labels.groupby("item")["rater"].transform("size")
    multi = labels[per_item >= 2]
    alpha = float("nan")
    fleiss, fleiss_items, fleiss_raters = float("nan"), 0, 0
    if not multi.empty:
        codes = multi["label"].map({lab: i for i, lab in enumerate(LABELS)}).astype(float)
        data = multi.assign(code=codes).pivot(index="rater", columns="item", values="code").to_numpy(dtype=float)
        # With one value throughout, alpha is 0/0 (krippendorff raises): leave it NaN.
        if len(np.unique(data[~np.isnan(data)])) > 1:
            alpha = float(krippendorff.alpha(reliability_data=data, level_of_measurement="nominal"))
        counts = multi.groupby("item")["rater"].size()
        by_count = counts.value_counts().sort_index(ascending=False)
        fleiss_raters = int(by_count.index[int(np.argmax(by_count.to_numpy()))])
        chosen = counts.index[counts == fleiss_raters]
        sub = multi[multi["item"].isin(chosen)]
        table = pd.crosstab(sub["item"], pd.Categorical(sub["label"], categories=list(LABELS)), dropna=False)
        fleiss_items = len(table)
        with np.errstate(invalid="ignore", divide="ignore"):
            fleiss = float(fleiss_kappa(table.to_numpy(dtype=float), method="fleiss"))
    pairs = _same_kind_pairs(labels)
    agreement = float((pairs["label_a"] == pairs["label_b"]).mean()) if len(pairs) else float("nan")
    first, second = _first_two(items)
    retest_items = len(first)
    retest_agreement = float((np.array(first) == np.array(second)).mean()) if retest_items else float("nan")
    retest_kappa = _kappa(_table(first, second))[0] if retest_items else float("nan")
    return OverallAgreement(
        items=int(multi["item"].nunique()),
        raters=int(multi["rater"].nunique()),
        ratings=len(multi),
        agreement=agreement,
        alpha=alpha,
        fleiss_kappa=fleiss,
        fleiss_items=fleiss_items,
        fleiss_raters=fleiss_raters,
        retest_items=retest_items,
        retest_agreement=retest_agreement,
        retest_kappa=retest_kappa,
    )


def _first_two(items: pd.DataFrame) -> tuple[list[str], list[str]]:
    """Each rater's first and second label on every item they voted on more than once."""
    nth = items.groupby(["item", "rater"]).cumcount()
    first = items[nth == 0].set_index(["item", "rater"])["label"]
    second = items[nth == 1].set_index(["item", "rater"])["label"]
    both = first.to_frame("a").join(second.to_frame("b"), how="inner")
    return both["a"].tolist(), both["b"].tolist()


def rater_summary(votes: pd.DataFrame, items: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per rater: votes by outcome, tie and both-bad rates, left-side rate of decisive votes
    (95% Wilson interval), and consistency: of their repeat votes on an item, the share
    that repeat their first vote on it. ``items`` is ``item_votes(votes)`` (by answers
    unless given)."""
    items = item_votes(votes) if items is None else items
    if votes.empty:
        return pd.DataFrame(columns=RATER_COLUMNS)
    counts = pd.crosstab(votes["rater"].astype(str), votes["outcome"].astype(str))
    counts = counts.reindex(columns=["left", "right", "tie", "both_bad"], fill_value=0)
    out = counts.rename(columns={"tie": "ties"})
    out.insert(0, "votes", counts.sum(axis=1))
    out["tie_rate"] = out["ties"] / out["votes"]
    out["both_bad_rate"] = out["both_bad"] / out["votes"]
    decisive = out["left"] + out["right"]
    out["left_rate"] = (out["left"] / decisive).where(decisive > 0)
    low, high = wilson_interval(out["left"].to_numpy(), decisive.to_numpy())
    out["left_low"], out["left_high"] = low, high
    nth = items.groupby(["item", "rater"]).cumcount()
    firsts = items[nth == 0].set_index(["item", "rater"])["label"]
    repeats = items[nth > 0].join(firsts.rename("first"), on=["item", "rater"])
    by_rater = repeats.assign(same=repeats["label"] == repeats["first"]).groupby("rater")
    out["repeated_items"] = by_rater["item"].nunique().reindex(out.index).fillna(0).astype(int)
    out["repeat_votes"] = by_rater.size().reindex(out.index).fillna(0).astype(int)
    out["self_agreement"] = by_rater["same"].mean().reindex(out.index)
    return out.rename_axis("rater").reset_index()[RATER_COLUMNS]


def position_observations(votes: pd.DataFrame) -> pd.DataFrame:
    """Decisive choices as (``rater``, ``first``): did the rater pick the answer shown first?

    People are pooled under ``PEOPLE``; each judge (``is_judge``) is its own rater. A judge vote with
    two stored ``verdicts`` (A/B/tie from each order; "A" = the answer shown first) gives
    one observation per decisive verdict; one without gives its vote's side, like people.
    """
    if votes.empty:
        return pd.DataFrame({"rater": pd.Series(dtype=object), "first": pd.Series(dtype=bool)})
    judge = _judges(votes)
    verdicts = votes["verdicts"] if "verdicts" in votes.columns else pd.Series(None, index=votes.index)
    raters: list[str] = []
    firsts: list[bool] = []
    for rater, outcome, j, vs in zip(votes["rater"], votes["outcome"], judge, verdicts, strict=True):
        group = str(rater) if j else PEOPLE
        pair = _verdict_pair(vs) if j else None
        if pair is not None:
            for verdict in pair:
                if verdict in ("A", "B"):
                    raters.append(group)
                    firsts.append(verdict == "A")
        elif outcome in ("left", "right"):
            raters.append(group)
            firsts.append(outcome == "left")
    return pd.DataFrame({"rater": raters, "first": firsts})


def _verdict_pair(value: Any) -> tuple[str, str] | None:
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return str(value[0]), str(value[1])
    return None


def position_bias(observations: pd.DataFrame) -> pd.DataFrame:
    """Per rater group: share of decisive choices that went to the first-shown answer, its
    95% Wilson interval and the two-sided exact binomial p-value against 50 %."""
    rows = []
    for rater, g in observations.groupby("rater", sort=False):
        n, k = len(g), int(g["first"].sum())
        low, high = wilson_interval(k, n)
        rows.append([rater, n, k, k / n, low, high, float(binomtest(k, n, 0.5).pvalue)])
    out = pd.DataFrame(rows, columns=POSITION_COLUMNS)
    # People first, then judges by name.
    judges_last = out["rater"] != PEOPLE
    return (
        out.assign(_j=judges_last).sort_values(["_j", "rater"], kind="stable").drop(columns="_j").reset_index(drop=True)
    )


def judge_human_agreement(labels: pd.DataFrame) -> pd.DataFrame:
    """Per judge: its label against each person's on the items both rated, pooled.

    When there is a judge, a last row, ``people (with each other)``, pools every pair of
    distinct people on a shared item: what a judge would need to match to be as good as
    another person.
    """
    judge = labels["is_judge"].astype(bool)
    rows = []
    pairs = _pairs(labels, judge, ~judge)
    for name, g in pairs.groupby("rater_a", sort=True):
        kappa, low, high = _kappa(_table(g["label_a"].tolist(), g["label_b"].tolist()))
        agree = float((g["label_a"] == g["label_b"]).mean())
        rows.append([name, g["item"].nunique(), len(g), agree, kappa, low, high])
    people = _pairs(labels, ~judge, ~judge)
    people = people[people["rater_a"] < people["rater_b"]]
    if rows and len(people):
        kappa, low, high = _kappa(_table(people["label_a"].tolist(), people["label_b"].tolist()))
        agree = float((people["label_a"] == people["label_b"]).mean())
        rows.append(["people (with each other)", people["item"].nunique(), len(people), agree, kappa, low, high])
    return pd.DataFrame(rows, columns=JUDGE_HUMAN_COLUMNS)


@dataclass(frozen=True)
class AgreementReport:
    overall: OverallAgreement
    pairs: pd.DataFrame
    raters: pd.DataFrame
    position: pd.DataFrame
    judge_human: pd.DataFrame


def agreement_report(votes: pd.DataFrame, by: str = "answers") -> AgreementReport:
    """Everything above from one frame of votes (see :func:`item_votes` and
    :func:`position_observations` for the columns); ``by`` is what makes an item."""
    items = item_votes(votes, by)
    labels = first_labels(items)
    return AgreementReport(
        overall=overall_agreement(items),
        pairs=rater_pairs(labels),
        raters=rater_summary(votes, items),
        position=position_bias(position_observations(votes)),
        judge_human=judge_human_agreement(labels),
    )


__all__ = [
    "ITEM_KINDS",
    "JUDGE_HUMAN_COLUMNS",
    "LABELS",
    "PAIR_COLUMNS",
    "PEOPLE",
    "POSITION_COLUMNS",
    "RATER_COLUMNS",
    "AgreementReport",
    "OverallAgreement",
    "agreement_report",
    "first_labels",
    "item_votes",
    "judge_human_agreement",
    "overall_agreement",
    "position_bias",
    "position_observations",
    "rater_pairs",
    "rater_summary",
]
