"""Draft diversity of a stored run, and where its final answer came from (Streamlit view).

`diversity_view(run_data, engine)` draws it inside an expander; the metrics come from
`evaluation.diversity.ensure_run_diversity` (computed once, stored in run.meta["diversity"]
when `engine` is given and the run has ended, read back from there afterwards). Model
text and draft names are shown through `md_escape`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import pandas as pd
import streamlit as st
from sqlalchemy.engine import Engine

from moa_core.analysis.diversity import fingerprint, run_diversity
from moa_core.analysis.diversity_charts import attribution_bar, similarity_heatmap
from moa_core.evaluation.diversity import ensure_run_diversity
from moa_core.ui.safe_text import md_escape

log = logging.getLogger(__name__)

PALETTE = ["blue", "violet", "orange", "green", "red", "gray"]


def badge(label: str, color: str) -> str:
    """A Streamlit markdown badge showing `label` (a draft name, say) as plain text."""
    return f":{color}-badge[{md_escape(label)}]"


def draft_color(i: int | None) -> str:
    return "gray" if i is None else PALETTE[i % (len(PALETTE) - 1)]


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{x:.0%}"


def _num(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f}"


@st.cache_data(max_entries=64, show_spinner=False)
def _cached(run_id: str, fingerprint_key: str, gens: list[dict[str, Any]]) -> dict[str, Any]:
    return run_diversity(gens)


def _compute(run_id: str, gens: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """run_diversity, cached per run and generations: a view without a store (or of a run
    not yet stored) does not recompute the embeddings on every rerun."""
    slim = [{k: g.get(k) for k in ("id", "role", "layer", "slot", "status", "text", "label", "model")} for g in gens]
    return _cached(run_id, fingerprint(gens), slim)


def _layer_section(layer: dict[str, Any], key: str) -> None:
    n = len(layer["names"])
    c = st.columns(3)
    c[0].metric(
        f"Layer {layer['layer'] + 1} diversity",
        _num(layer["diversity"]),
        help="1 − mean pairwise similarity of the drafts (embeddings when available): "
        "0 means the drafts say the same thing.",
    )
    c[1].metric("by embeddings", _num(layer["embedding_diversity"]))
    c[2].metric("lexical", _num(layer["lexical_diversity"]), help="rapidfuzz token_sort_ratio")
    if n >= 2:
        matrix = layer["embedding"] or layer["lexical"]
        which = "embedding cosine" if layer["embedding"] else "lexical"
        st.plotly_chart(
            similarity_heatmap(layer["names"], matrix, f"Pairwise similarity ({which})"),
            width="stretch",
            key=f"div-heat-{key}-{layer['layer']}",
        )


def aggregator_section(agg: dict[str, Any], key: str = "", *, sentences: bool = True) -> None:
    """ROUGE-L per draft, shares, and (optionally) each final sentence with its source."""
    table = pd.DataFrame(
        [
            {
                "draft": d["name"],
                "share of answer": d["share"],
                "supports": d["coverage"],
                "ROUGE-L P": d["rouge_l_precision"],
                "ROUGE-L R": d["rouge_l_recall"],
                "ROUGE-L F1": d["rouge_l_f1"],
                "only-here kept": d["kept"],
                "only-here dropped": d["dropped"],
            }
            for d in agg["drafts"]
        ]
    )
    st.plotly_chart(attribution_bar(agg), width="stretch", key=f"div-attr-{key}")
    st.dataframe(
        table,
        hide_index=True,
        width="stretch",
        column_config={
            "share of answer": st.column_config.ProgressColumn(
                format="percent", min_value=0, max_value=1, help="final-answer words whose best source is this draft"
            ),
            "supports": st.column_config.NumberColumn(
                format="percent", help="final-answer words this draft also states (overlapping)"
            ),
            "ROUGE-L P": st.column_config.NumberColumn(
                format="%.2f", help="share of the answer's words in order in the draft"
            ),
            "ROUGE-L R": st.column_config.NumberColumn(
                format="%.2f", help="share of the draft's words that reach the answer"
            ),
            "ROUGE-L F1": st.column_config.NumberColumn(format="%.2f"),
        },
    )
    st.caption(
        f"New (in no draft): {_pct(agg['new_share'])} · draft-only statements kept {agg['kept']}, "
        f"dropped {agg['dropped']} · sentences matched by {agg['similarity']} similarity"
    )
    if sentences and agg["sentences"]:
        names = [d["name"] for d in agg["drafts"]]
        lines = []
        for s in agg["sentences"]:
            src = s["source"]
            tag = badge(f"from {names[src]}", draft_color(src)) if src is not None else badge("new", "gray")
            lines.append(f"- {tag} {md_escape(s['text'], 400)}")
        st.markdown("\n".join(lines))


def diversity_view(
    run_data: dict[str, Any], engine: Engine | None = None, *, key: str = "", expanded: bool = False
) -> None:
    """Diversity of each proposer layer and the aggregator's overlap with its drafts."""
    run, gens = run_data["run"], run_data["generations"]
    if run.get("status") == "running" or not any(g["role"] == "proposer" and g.get("text") for g in gens):
        return
    with st.expander("Draft diversity and where the answer came from", expanded=expanded):
        try:
            d = ensure_run_diversity(engine, run_data, _compute)
        except Exception as exc:
            log.exception("diversity of run %s", run["id"])
            st.warning(f"Diversity could not be computed: {md_escape(str(exc))}")
            return
        if d["embedding_model"] is None:
            st.caption("The sentence-embedding model is not installed: lexical measures only.")
        for layer in d["layers"]:
            if len(layer["names"]) >= 2:
                _layer_section(layer, f"{key}{run['id']}")
        if d["aggregator"]:
            st.markdown("**Final answer against the drafts it read**")
            aggregator_section(d["aggregator"], f"{key}{run['id']}")


__all__ = [
    "aggregator_section",
    "badge",
    "diversity_view",
    "draft_color",
]
