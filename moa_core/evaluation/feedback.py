"""Votes and ratings as the Analysis page, ``moa analyze`` and the dataset exports read them.

The store gives one row per vote (``vote_details``) or rating (``rating_details``); this
module adds what needs more than the database: a category for every vote (the one its
run stored, else the question's own category in the bundled question set it was drawn
from, else ``UNCATEGORISED``), the answers' texts and their style features, and the
export of preference pairs and rated responses as JSON Lines or Parquet.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Unpack

import pandas as pd
from sqlalchemy import Engine

from moa_core.analysis.preferences import preference_pairs
from moa_core.analysis.style_control import STYLE_FEATURES, style_frame
from moa_core.evaluation.questions import QuestionSetError, list_bundled_sets, load_bundled_set
from moa_core.store.analysis_queries import generation_texts, rating_details, vote_details
from moa_core.store.export import write_dataset
from moa_core.store.queries import Many, VoteFilters

UNCATEGORISED = "uncategorised"
# moa export --format NAME: (dataset, file format).
EXPORT_FORMATS: dict[str, tuple[str, str]] = {
    "dpo-jsonl": ("preferences", "jsonl"),
    "dpo-parquet": ("preferences", "parquet"),
    "ratings-jsonl": ("ratings", "jsonl"),
    "ratings-parquet": ("ratings", "parquet"),
}
PAIRS_FILE = "preference_pairs"
APART_FILE = "preference_ties"
RATINGS_FILE = "rated_responses"
RATED_RESPONSE_COLUMNS = [
    "prompt", "response", "score", "rater", "contender", "generation_id", "rating_id", "comment",
    "category", "campaign", "question_set", "created_at",
]  # fmt: skip


@lru_cache(maxsize=16)
def _bundled(name: str) -> dict[str, str]:
    try:
        qset = load_bundled_set(name)
    except (QuestionSetError, OSError):
        return {}
    return {q.text.strip(): q.category for q in qset.questions}


def question_categories(question_sets: Iterable[str | None]) -> dict[tuple[str, str], str]:
    """(set name, question text) -> category, for the bundled sets among ``question_sets``."""
    bundled = set(list_bundled_sets())
    out: dict[tuple[str, str], str] = {}
    for name in {s for s in question_sets if s}:
        if name in bundled:
            out.update({(name, text): cat for text, cat in _bundled(name).items()})
    return out


def fill_categories(df: pd.DataFrame, set_column: str = "question_set") -> pd.DataFrame:
    """``category`` where the run stored none: the question's category in the bundled set
    named in ``set_column``, else UNCATEGORISED."""
    if df.empty:
        return df
    sets = df[set_column]
    lookup = question_categories(sets.dropna().unique())
    found = [
        cat if isinstance(cat, str) and cat else lookup.get((qs, str(q or "").strip()), UNCATEGORISED)
        for cat, qs, q in zip(df["category"], sets, df["question"], strict=True)
    ]
    return df.assign(category=found)


def load_votes(
    engine: Engine, texts: bool = False, style: bool = False, **filters: Unpack[VoteFilters]
) -> pd.DataFrame:
    """``vote_details`` (same filters) with every category filled in and ``question_set`` the
    vote's, else its run's; with ``texts``, ``left_text`` and ``right_text``; with ``style``,
    ``left_<f>`` / ``right_<f>`` for each style feature."""
    votes = vote_details(engine, **filters)
    if not votes.empty:
        votes["question_set"] = votes["question_set"].fillna(votes["run_question_set"])
    votes = fill_categories(votes)
    if not (texts or style):
        return votes
    ids = pd.concat([votes["left_generation_id"], votes["right_generation_id"]]).unique().tolist()
    gens = generation_texts(engine, ids).set_index("id")
    feats = style_frame(gens["text"]) if style else None
    for side in ("left", "right"):
        gid = votes[f"{side}_generation_id"]
        if texts:
            votes[f"{side}_text"] = gid.map(gens["text"]).fillna("").to_numpy()
        if feats is not None:
            for f in STYLE_FEATURES:
                votes[f"{side}_{f}"] = gid.map(feats[f]).fillna(0).astype("int64").to_numpy()
    return votes


def export_preferences(
    engine: Engine,
    out_dir: str | Path,
    fmt: str = "jsonl",
    rater_kind: str = "all",
    question_set: Many = None,
    apart: bool = False,
) -> list[Path]:
    """Write ``preference_pairs.<fmt>`` (prompt, chosen, rejected + metadata; see
    ``analysis.preferences``) and, with ``apart``, ``preference_ties.<fmt>`` for the
    tie, both-bad and split pairs. Returns the paths written."""
    votes = load_votes(engine, rater_kind=rater_kind, question_set=question_set, texts=True)
    sets = preference_pairs(votes)
    out = Path(out_dir)
    paths = [write_dataset(sets.pairs, out / f"{PAIRS_FILE}.{fmt}", fmt)]
    if apart:
        paths.append(write_dataset(sets.apart, out / f"{APART_FILE}.{fmt}", fmt))
    return paths


def rated_responses(engine: Engine, rater_kind: str = "all", question_set: Many = None) -> pd.DataFrame:
    """One row per 1–5 rating: (prompt, response, score, rater) and its metadata."""
    df = rating_details(engine, rater_kind=rater_kind, question_set=question_set)
    if df.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in RATED_RESPONSE_COLUMNS})
    df = fill_categories(df)
    out = df.rename(columns={"question": "prompt", "id": "rating_id"})
    out["score"] = out["score"].astype("int64")
    return out[RATED_RESPONSE_COLUMNS].reset_index(drop=True)


def export_ratings(
    engine: Engine, out_dir: str | Path, fmt: str = "jsonl", rater_kind: str = "all", question_set: Many = None
) -> list[Path]:
    """Write ``rated_responses.<fmt>``; returns its path in a list."""
    df = rated_responses(engine, rater_kind=rater_kind, question_set=question_set)
    return [write_dataset(df, Path(out_dir) / f"{RATINGS_FILE}.{fmt}", fmt)]


def export_dataset(
    engine: Engine,
    out_dir: str | Path,
    name: str,
    rater_kind: str = "all",
    question_set: Many = None,
    apart: bool = False,
) -> list[Path]:
    """``moa export --format NAME`` for the names in EXPORT_FORMATS."""
    if name not in EXPORT_FORMATS:
        raise ValueError(f"format must be one of {', '.join(EXPORT_FORMATS)}, got {name!r}")
    dataset, fmt = EXPORT_FORMATS[name]
    if dataset == "preferences":
        return export_preferences(engine, out_dir, fmt, rater_kind, question_set, apart)
    return export_ratings(engine, out_dir, fmt, rater_kind, question_set)


__all__ = [
    "APART_FILE",
    "EXPORT_FORMATS",
    "PAIRS_FILE",
    "RATED_RESPONSE_COLUMNS",
    "RATINGS_FILE",
    "UNCATEGORISED",
    "export_dataset",
    "export_preferences",
    "export_ratings",
    "fill_categories",
    "load_votes",
    "question_categories",
    "rated_responses",
]
