"""Does combining models help? Accuracy against references, with honest wording. Pure.

Input: one row per (question, contender) that answered a question with a reference:
``question_id``, ``contender``, ``role``, ``key`` (what the answer says in the
reference's terms, None if nothing; see ``evaluation.judge.answer_key``) and ``correct``.
Roles: ``proposer`` (a pipeline's first-stage agent answering alone), ``single`` (a
model contender), ``majority`` (derived here), ``select``, ``moa`` and ``council``
(pipelines, told apart by :func:`pipeline_shape`).

- Majority vote: per question, the most common key among the proposers' answers (no
  extra model call). Answers that state nothing abstain; a tie for first place, or no
  vote at all, is no majority and counts as wrong. It is correct when the winning key is
  the key of a correct answer.
- Accuracy per contender: correct / answered with a 95% Wilson interval
  (``statsmodels`` ``proportion_confint``).
- Paired comparison of every combining contender (MoA, council, select, majority)
  against the best single proposer (highest accuracy; ``single`` contenders when no
  pipeline's proposers were read), on the questions both answered: wins (it right, the
  proposer wrong), losses, ties, and the exact two-sided sign test on wins vs losses
  (``scipy.stats.binomtest``; ties carry no information about which is better).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import pandas as pd
from scipy.stats import binomtest

from moa_core.analysis.stats import wilson_interval

Role = Literal["proposer", "majority", "single", "select", "moa", "council"]
ROLES: tuple[Role, ...] = ("proposer", "majority", "single", "select", "moa", "council")
COMBINED: tuple[Role, ...] = ("moa", "council", "select", "majority")
ROLE_LABELS: dict[str, str] = {
    "proposer": "proposer alone",
    "majority": "majority vote",
    "single": "model alone",
    "select": "select (ranker)",
    "moa": "MoA",
    "council": "council",
}
SCORED_COLUMNS = ("question_id", "contender", "role", "key", "correct")
TABLE_COLUMNS = ("contender", "role", "n", "correct", "accuracy", "ci_low", "ci_high")
PAIRED_COLUMNS = ("contender", "role", "versus", "n", "wins", "losses", "ties", "p_value")
MAJORITY = "majority vote"
ALPHA = 0.05


def pipeline_shape(kinds: Sequence[str]) -> Role:
    """A pipeline's role in the report from its stage kinds: its last stage ``select`` ->
    select; else a ``review`` stage -> council; else MoA."""
    if kinds and kinds[-1] == "select":
        return "select"
    return "council" if "review" in kinds else "moa"


def majority_rows(scored: pd.DataFrame, name: str = MAJORITY) -> pd.DataFrame:
    """One ``majority`` row per question the proposers answered (needs two proposers)."""
    props = scored[scored["role"] == "proposer"]
    rows = []
    if props["contender"].nunique() >= 2:
        for qid, g in props.groupby("question_id", sort=False):
            votes = Counter(k for k in g["key"] if isinstance(k, str) and k)
            top = votes.most_common(2)
            winner = top[0][0] if top and (len(top) == 1 or top[0][1] > top[1][1]) else None
            right = {k for k, ok in zip(g["key"], g["correct"], strict=True) if ok}
            rows.append(
                {"question_id": qid, "contender": name, "role": "majority", "key": winner, "correct": winner in right}
            )
    out = pd.DataFrame(rows, columns=list(SCORED_COLUMNS))
    out["key"] = out["key"].astype(object).where(out["key"].notna(), None)  # "no majority" stays None, not NaN
    return out


def wilson(correct: int, n: int) -> tuple[float, float]:
    """95% Wilson interval for correct / n; (nan, nan) when n == 0."""
    lo, hi = wilson_interval(correct, n)
    return (float(lo), float(hi))


def accuracy_table(scored: pd.DataFrame) -> pd.DataFrame:
    """One row per contender, ordered by role (:data:`ROLES`) then first appearance."""
    rows = []
    for (contender, role), g in scored.groupby(["contender", "role"], sort=False):
        n, k = len(g), int(g["correct"].astype(bool).sum())
        lo, hi = wilson(k, n)
        rows.append(
            {
                "contender": contender,
                "role": role,
                "n": n,
                "correct": k,
                "accuracy": k / n if n else math.nan,
                "ci_low": lo,
                "ci_high": hi,
            }
        )
    table = pd.DataFrame(rows, columns=list(TABLE_COLUMNS))
    order = {r: i for i, r in enumerate(ROLES)}
    return table.sort_values("role", key=lambda s: s.map(order), kind="stable").reset_index(drop=True)


def best_single(table: pd.DataFrame) -> str | None:
    """The proposer with the highest accuracy (``single`` contenders when there are no
    proposers); the first listed wins a tie. None when there is neither."""
    for role in ("proposer", "single"):
        pool = table[(table["role"] == role) & (table["n"] > 0)]
        if not pool.empty:
            # First listed among the most accurate (idxmax returns the first maximum).
            return str(pool["contender"].iloc[int(pool["accuracy"].to_numpy().argmax())])
    return None


@dataclass(frozen=True)
class Paired:
    contender: str
    role: str
    versus: str
    n: int
    wins: int
    losses: int
    ties: int
    p_value: float


def paired(scored: pd.DataFrame, a: str, b: str) -> Paired:
    """``a`` against ``b`` on the questions both answered: a right and b wrong is a win."""
    sa = scored[scored["contender"] == a].drop_duplicates("question_id").set_index("question_id")["correct"]
    sb = scored[scored["contender"] == b].drop_duplicates("question_id").set_index("question_id")["correct"]
    both = sa.index.intersection(sb.index)
    ra, rb = sa.loc[both].astype(bool), sb.loc[both].astype(bool)
    wins, losses = int((ra & ~rb).sum()), int((~ra & rb).sum())
    p = float(binomtest(wins, wins + losses, 0.5).pvalue) if wins + losses else 1.0
    role = str(scored.loc[scored["contender"] == a, "role"].iloc[0]) if (scored["contender"] == a).any() else ""
    return Paired(a, role, b, len(both), wins, losses, len(both) - wins - losses, p)


def format_p(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}" if p < 0.01 else f"p = {p:.2f}"


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def verdict(c: Paired, best_label: str = "best single proposer") -> str:
    """What the paired comparison says, in words chosen by the numbers."""
    label = ROLE_LABELS.get(c.role, c.role)
    who = c.contender if c.contender == label else f"{c.contender} ({label})"
    counts = (
        f"{_count(c.wins, 'win', 'wins')}, {_count(c.losses, 'loss', 'losses')}, {_count(c.ties, 'tie', 'ties')} "
        f"over {_count(c.n, 'question', 'questions')}, exact sign test {format_p(c.p_value)}"
    )
    if c.n == 0:
        return f"{who} and {c.versus} answered no question in common: nothing to compare."
    if c.wins + c.losses == 0:
        return f"{who} and {c.versus} were right on exactly the same questions ({c.n}): no evidence either way."
    if c.p_value < ALPHA and c.wins > c.losses:
        return f"{who} beat the {best_label}, {c.versus} ({counts}): a gain this consistent is unlikely to be chance."
    if c.p_value < ALPHA:
        return f"{who} did worse than the {best_label}, {c.versus} ({counts}): unlikely to be chance."
    lean = (
        "if anything it did worse"
        if c.losses > c.wins
        else "the difference could well be chance"
        if c.wins > c.losses
        else "they split evenly"
    )
    return f"No evidence of a gain for {who} over the {best_label}, {c.versus} ({counts}): {lean}."


@dataclass
class ObjectiveReport:
    """The "does it help?" table: accuracy per contender and the paired comparisons."""

    table: pd.DataFrame  # TABLE_COLUMNS
    paired: pd.DataFrame  # PAIRED_COLUMNS, one row per combining contender vs ``best``
    best: str | None
    questions: int
    headline: str
    lines: list[str] = field(default_factory=list)  # one verdict per paired row
    notes: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return self.table.empty


def objective_report(scored: pd.DataFrame) -> ObjectiveReport:
    """Majority rows added, then :func:`accuracy_table`, :func:`paired` for every combining
    contender against :func:`best_single`, and the words for each."""
    missing = [c for c in SCORED_COLUMNS if c not in scored.columns]
    if missing:
        raise ValueError(f"scored rows are missing column(s): {', '.join(missing)}")
    bad = sorted(set(scored["role"].astype(str)) - set(ROLES))
    if bad:
        raise ValueError(f"unknown role(s) {bad}; expected one of {', '.join(ROLES)}")
    rows = scored[scored["role"] != "majority"]
    full = pd.concat([rows, majority_rows(rows)], ignore_index=True) if not rows.empty else rows
    table = accuracy_table(full)
    best = best_single(table)
    comparisons = []
    if best is not None:
        for r in table.itertuples(index=False):
            if r.role in COMBINED:
                comparisons.append(paired(full, str(r.contender), best))
    paired_df = pd.DataFrame([vars(c) for c in comparisons], columns=list(PAIRED_COLUMNS))
    pool_role = str(table.loc[table["contender"] == best, "role"].iloc[0]) if best is not None else ""
    label = "best single proposer" if pool_role == "proposer" else "best single model"
    lines = [verdict(c, label) for c in comparisons]
    # The headline is MoA's comparison when there is one, else the first pipeline's, else the majority's.
    ranked = sorted(zip(comparisons, lines, strict=True), key=lambda cl: COMBINED.index(cl[0].role))
    if table.empty:
        headline = "No answers to questions with a reference yet."
    elif best is None:
        headline = "No single model answered alone, so there is nothing to compare the combinations with."
    elif not comparisons:
        headline = "No MoA, council, select or majority contender: only single models, nothing combined to compare."
    else:
        headline = ranked[0][1]
    notes = []
    if best is not None and (table["role"] == pool_role).sum() > 1:
        notes.append(f"{best} was picked as the {label} after seeing these results, which flatters it a little.")
    if (full["role"] == "majority").any():
        notes.append(
            "Majority vote: the most common short answer among the proposers; a tie for first place counts as wrong."
        )
    return ObjectiveReport(table, paired_df, best, int(full["question_id"].nunique()), headline, lines, notes)


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def display_table(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`accuracy_table` as text columns: contender, kind, right, accuracy (95% CI)."""
    rows = []
    for r in table.to_dict("records"):
        n, k = int(r["n"]), int(r["correct"])
        acc, lo, hi = float(r["accuracy"]), float(r["ci_low"]), float(r["ci_high"])
        rows.append(
            {
                "contender": str(r["contender"]),
                "kind": ROLE_LABELS.get(str(r["role"]), str(r["role"])),
                "right": f"{k}/{n}",
                "accuracy (95% CI)": f"{_pct(acc)} ({100 * lo:.0f}–{_pct(hi)})" if n else "–",
            }
        )
    return pd.DataFrame(rows, columns=["contender", "kind", "right", "accuracy (95% CI)"])


def display_paired(paired_df: pd.DataFrame) -> pd.DataFrame:
    """:func:`paired` rows as text columns: contender, versus, wins/losses/ties, sign test."""
    rows = [
        {
            "contender": str(r["contender"]),
            "versus": str(r["versus"]),
            "wins/losses/ties": f"{int(r['wins'])}/{int(r['losses'])}/{int(r['ties'])}",
            "sign test": format_p(float(r["p_value"])),
        }
        for r in paired_df.to_dict("records")
    ]
    return pd.DataFrame(rows, columns=["contender", "versus", "wins/losses/ties", "sign test"])


__all__ = [
    "COMBINED",
    "MAJORITY",
    "PAIRED_COLUMNS",
    "ROLES",
    "ROLE_LABELS",
    "SCORED_COLUMNS",
    "TABLE_COLUMNS",
    "ObjectiveReport",
    "Paired",
    "accuracy_table",
    "best_single",
    "display_paired",
    "display_table",
    "format_p",
    "majority_rows",
    "objective_report",
    "paired",
    "pipeline_shape",
    "verdict",
    "wilson",
]
