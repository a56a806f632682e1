"""Draft diversity and where the final answer came from, for any stored run (pure).

- Pairwise similarity of the drafts of each proposer layer, two ways:
  *embedding*: cosine of the drafts' vectors, a draft's vector being the normalised mean
  of its sentences' all-MiniLM-L6-v2 embeddings (so long drafts are covered whole, past
  the model's 256-token window); *lexical*: rapidfuzz `token_sort_ratio` (0..1).
  A layer's diversity is 1 − the mean similarity of its distinct pairs: ≈ 0 for
  identical drafts, higher the more they differ.
- Aggregator-to-draft overlap: ROUGE-L of the final answer against each draft it read
  (the last proposer layer), as the MoA paper's analysis compared the aggregator with
  its proposers; plus the sentence attribution of `alignment.compare` (share of the
  final answer traceable to each proposer, draft-only statements kept or dropped).

`run_diversity(gens)` takes the generation dicts of `store.get_run` and returns a
JSON-ready dict meant for `run.meta["diversity"]`. `diversity_quality_frame` joins
stored diversity with ratings for the Analysis page.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from rapidfuzz import fuzz, process, utils

from moa_core.analysis.alignment import EmbedFn, Similarity, compare, dot_rows, rouge_l, split_sentences
from moa_core.vocab import GenerationStatus, Role, digest

DIVERSITY_VERSION = 1
LEXICAL_MEASURE = "rapidfuzz token_sort_ratio"
OVERLAP_MEASURE = "ROUGE-L (longest common word subsequence, rapidfuzz LCSseq)"
_DEFAULT = object()


# -- layer similarity ------------------------------------------------------------------------


def lexical_matrix(drafts: Sequence[str]) -> np.ndarray:
    """Pairwise lexical similarity (0..1, diagonal 1)."""
    if not drafts:
        return np.zeros((0, 0))
    m = (
        np.asarray(
            process.cdist(
                list(drafts),
                list(drafts),
                scorer=fuzz.token_sort_ratio,
                processor=utils.default_process,
                dtype=np.float32,
            ),
            dtype=np.float64,
        )
        / 100.0
    )
    np.fill_diagonal(m, 1.0)
    return m


def draft_vectors(drafts: Sequence[str], embed: EmbedFn) -> np.ndarray:
    """One unit vector per draft: the normalised mean of its sentence embeddings."""
    sents = [split_sentences(d) or [d.strip() or " "] for d in drafts]
    flat = [s for ss in sents for s in ss]
    vecs = np.asarray(embed(flat), dtype=np.float64) if flat else np.zeros((0, 1))
    vecs = vecs / np.clip(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12, None)
    out, start = [], 0
    for ss in sents:
        mean = vecs[start : start + len(ss)].mean(axis=0)
        out.append(mean / max(float(np.linalg.norm(mean)), 1e-12))
        start += len(ss)
    return np.stack(out) if out else np.zeros((0, 1))


def embedding_matrix(drafts: Sequence[str], embed: EmbedFn) -> np.ndarray:
    """Pairwise cosine similarity of the draft vectors (diagonal 1)."""
    if not drafts:
        return np.zeros((0, 0))
    v = draft_vectors(drafts, embed)
    m = np.clip(dot_rows(v, v), -1.0, 1.0)
    np.fill_diagonal(m, 1.0)
    return m


def mean_pairwise(m: np.ndarray) -> float | None:
    """Mean of the off-diagonal entries (None with fewer than two drafts)."""
    n = m.shape[0]
    if n < 2:
        return None
    return float((m.sum() - np.trace(m)) / (n * (n - 1)))


def diversity(m: np.ndarray) -> float | None:
    """1 − mean pairwise similarity."""
    mean = mean_pairwise(m)
    return None if mean is None else 1.0 - mean


@dataclass
class LayerDiversity:
    layer: int
    names: list[str]
    gen_ids: list[int | None]
    lexical: list[list[float]]
    embedding: list[list[float]] | None
    lexical_diversity: float | None
    embedding_diversity: float | None

    @property
    def diversity(self) -> float | None:
        """The embedding diversity when there is one, else the lexical one."""
        return self.embedding_diversity if self.embedding_diversity is not None else self.lexical_diversity


def _r(m: np.ndarray) -> list[list[float]]:
    return [[round(float(x), 4) for x in row] for row in m]


def layer_diversity(
    drafts: Sequence[str],
    embed: EmbedFn | None = None,
    *,
    layer: int = 0,
    names: Sequence[str] | None = None,
    gen_ids: Sequence[int | None] | None = None,
) -> LayerDiversity:
    lex = lexical_matrix(drafts)
    emb = embedding_matrix(drafts, embed) if embed is not None else None
    return LayerDiversity(
        layer,
        list(names or [f"Draft {i + 1}" for i in range(len(drafts))]),
        list(gen_ids or [None] * len(drafts)),
        _r(lex),
        None if emb is None else _r(emb),
        _round(diversity(lex)),
        None if emb is None else _round(diversity(emb)),
    )


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


# -- a stored run ----------------------------------------------------------------------------


def _usable(g: dict[str, Any]) -> bool:
    return g.get("status") == GenerationStatus.DONE and bool((g.get("text") or "").strip())


def _names(gens: Sequence[dict[str, Any]]) -> list[str]:
    """Display names: labels (or models), numbered when two drafts would share a name."""
    base = [g.get("label") or g.get("model") or "draft" for g in gens]
    return base if len(set(base)) == len(base) else [f"{i + 1} · {b}" for i, b in enumerate(base)]


def fingerprint(gens: Sequence[dict[str, Any]]) -> str:
    """Changes when the generations the metrics are computed from change."""
    rows = sorted(
        (g.get("role"), g.get("layer"), g.get("slot"), g.get("status"), len(g.get("text") or ""))
        for g in gens
        if g.get("role") in (Role.PROPOSER, Role.AGGREGATOR)
    )
    # Spaced separators: the bytes stored fingerprints were made from.
    return digest(json.dumps(rows, default=str))


def _default_embedder() -> EmbedFn | None:
    from moa_core.analysis.embeddings import get_embedder

    return get_embedder()


def run_diversity(gens: Sequence[dict[str, Any]], embed: EmbedFn | object | None = _DEFAULT) -> dict[str, Any]:
    """Diversity of every proposer layer and the aggregator's overlap with what it read.

    `gens`: generation dicts (role, layer, slot, status, text, label, model, id), e.g.
    `store.get_run(...)["generations"]`. Only finished drafts with text count. `embed`:
    an embedding function; default the bundled all-MiniLM-L6-v2 (lexical only when it is
    not installed); None for lexical only. Returns a JSON-ready dict.
    """
    fn: EmbedFn | None = _default_embedder() if embed is _DEFAULT else embed  # type: ignore[assignment]  # _DEFAULT is a sentinel object, not an EmbedFn
    props = sorted(
        (g for g in gens if g.get("role") == Role.PROPOSER and _usable(g)), key=lambda g: (g["layer"], g["slot"])
    )
    by_layer: dict[int, list[dict[str, Any]]] = {}
    for g in props:
        by_layer.setdefault(int(g["layer"]), []).append(g)
    layers = []
    for k in sorted(by_layer):
        row = by_layer[k]
        ld = layer_diversity(
            [g["text"] for g in row], fn, layer=k, names=_names(row), gen_ids=[g.get("id") for g in row]
        )
        layers.append({**asdict(ld), "diversity": ld.diversity})
    finals = sorted(
        (g for g in gens if g.get("role") == Role.AGGREGATOR and _usable(g)), key=lambda g: g.get("slot", 0)
    )
    aggregator = None
    if finals and by_layer:
        aggregator = aggregator_report(finals[-1], by_layer[max(by_layer)], fn)
    first = layers[0] if layers else None
    return {
        "version": DIVERSITY_VERSION,
        "fingerprint": fingerprint(gens),
        "embedding_model": getattr(fn, "name", "custom") if fn is not None else None,
        "lexical_measure": LEXICAL_MEASURE,
        "overlap_measure": OVERLAP_MEASURE,
        "layers": layers,
        "diversity": first["diversity"] if first else None,
        "embedding_diversity": first["embedding_diversity"] if first else None,
        "lexical_diversity": first["lexical_diversity"] if first else None,
        "aggregator": aggregator,
    }


def aggregator_report(final: dict[str, Any], drafts: Sequence[dict[str, Any]], embed: EmbedFn | None) -> dict[str, Any]:
    """ROUGE-L of the final answer against each draft, attribution, kept/dropped statements."""
    texts = [d["text"] for d in drafts]
    names = _names(drafts)
    sim = Similarity(embed)
    cmp = compare(final["text"], texts, similarity=sim)
    att = cmp.attribution
    rows = []
    for i, (d, name) in enumerate(zip(drafts, names, strict=False)):
        r = rouge_l(final["text"], d["text"])
        rows.append(
            {
                "index": i,
                "name": name,
                "gen_id": d.get("id"),
                "rouge_l_precision": round(r.precision, 4),
                "rouge_l_recall": round(r.recall, 4),
                "rouge_l_f1": round(r.f1, 4),
                "share": round(att.shares[i], 4),
                "coverage": round(att.coverage[i], 4),
                "kept": sum(1 for u in cmp.unique if u.draft == i and u.kept),
                "dropped": sum(1 for u in cmp.unique if u.draft == i and not u.kept),
            }
        )
    return {
        "gen_id": final.get("id"),
        "name": final.get("label") or final.get("model"),
        "similarity": sim.kind,
        "drafts": rows,
        "new_share": round(att.new_share, 4),
        "sentences": [
            {"text": s.text, "source": s.source, "similarity": s.similarity, "supported_by": s.supported_by}
            for s in att.sentences
        ],
        "kept": len(cmp.kept),
        "dropped": len(cmp.dropped),
        "unique": [
            {"draft": u.draft, "text": u.text, "kept": u.kept, "final_index": u.final_index, "similarity": u.similarity}
            for u in cmp.unique
        ],
        "contradictions": [
            {
                "a": asdict(o.contradiction.a),
                "b": asdict(o.contradiction.b),
                "text_a": o.contradiction.text_a,
                "text_b": o.contradiction.text_b,
                "reason": o.contradiction.reason,
                "final_agrees_with": o.side,
            }
            for o in cmp.contradictions
        ],
    }


def stored_diversity(run: dict[str, Any], gens: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The diversity stored in run.meta, if it is current for these generations."""
    d = (run.get("meta") or {}).get("diversity")
    if isinstance(d, dict) and d.get("version") == DIVERSITY_VERSION and d.get("fingerprint") == fingerprint(gens):
        return d
    return None


# -- diversity against quality ----------------------------------------------------------------

QUALITY_COLUMNS = [
    "run_id",
    "kind",
    "preset",
    "created_at",
    "diversity",
    "embedding_diversity",
    "lexical_diversity",
    "n_drafts",
    "final_score",
    "mean_draft_score",
    "best_draft_score",
    "gain_over_best_draft",
    "n_ratings",
]


def diversity_quality_frame(runs: pd.DataFrame, ratings: pd.DataFrame) -> pd.DataFrame:
    """One row per run with stored diversity, beside its rated quality.

    `runs`: `store.runs_df(...)` (needs id, meta; kind, preset, created_at when present).
    `ratings`: `store.ratings_df(...)` (run_id, role, generation_id, score).
    `final_score` is the mean rating of the aggregator's answer; `best_draft_score` the
    best mean rating among the run's proposer drafts; `gain_over_best_draft` their
    difference (NaN where either is unrated). Plot `diversity` against `final_score`.
    """
    rows = []
    for _, run in runs.iterrows() if not runs.empty else []:
        meta = run.get("meta")
        d = meta.get("diversity") if isinstance(meta, dict) else None
        if not isinstance(d, dict) or d.get("diversity") is None:
            continue
        layers = d.get("layers") or []
        rows.append(
            {
                "run_id": run["id"],
                "kind": run.get("kind"),
                "preset": run.get("preset"),
                "created_at": run.get("created_at"),
                "diversity": d.get("diversity"),
                "embedding_diversity": d.get("embedding_diversity"),
                "lexical_diversity": d.get("lexical_diversity"),
                "n_drafts": len(layers[0]["names"]) if layers else 0,
            }
        )
    frame = pd.DataFrame(rows, columns=QUALITY_COLUMNS[:8])
    scores: dict[str, Mapping[Any, float]] = {
        "final_score": {},
        "mean_draft_score": {},
        "best_draft_score": {},
        "n_ratings": {},
    }
    if not ratings.empty and not frame.empty:
        r = ratings[ratings["run_id"].isin(frame["run_id"])]
        agg = r[r["role"] == Role.AGGREGATOR].groupby("run_id")["score"].mean()
        drafts = r[r["role"] == Role.PROPOSER].groupby(["run_id", "generation_id"])["score"].mean()
        scores["final_score"] = agg.to_dict()
        if not drafts.empty:
            scores["mean_draft_score"] = drafts.groupby(level=0).mean().to_dict()
            scores["best_draft_score"] = drafts.groupby(level=0).max().to_dict()
        scores["n_ratings"] = r.groupby("run_id")["score"].size().to_dict()
    for col, values in scores.items():
        frame[col] = frame["run_id"].map(values).astype("float64") if not frame.empty else pd.Series(dtype="float64")
    frame["n_ratings"] = frame["n_ratings"].fillna(0).astype("int64")
    frame["gain_over_best_draft"] = frame["final_score"] - frame["best_draft_score"]
    return frame[QUALITY_COLUMNS]


__all__ = [
    "DIVERSITY_VERSION",
    "QUALITY_COLUMNS",
    "LayerDiversity",
    "aggregator_report",
    "diversity",
    "diversity_quality_frame",
    "draft_vectors",
    "embedding_matrix",
    "fingerprint",
    "layer_diversity",
    "lexical_matrix",
    "mean_pairwise",
    "run_diversity",
    "stored_diversity",
]
