"""Sentence alignment of drafts and attribution of a synthesized answer, on hand-made drafts."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import numpy as np
import pytest

from moa_core.analysis.alignment import (
    SentenceRef,
    Similarity,
    align_drafts,
    attribute,
    compare,
    conflict_reason,
    is_negated,
    lexical_similarity,
    numbers,
    rouge_l,
    split_sentences,
    words,
)

STOP = frozenset(["the", "a", "an", "it", "is", "was", "in", "of", "at", "to", "and", "by", "for", "on"])


def fake_embed(texts: Sequence[str]) -> np.ndarray:
    """Deterministic bag-of-words 'embedding': content words hashed into 512 dims.

    Digits are ignored (like a real sentence model, it sees '1887' and '1889' as near
    identical), so numeric contradictions look similar, as they do with MiniLM."""
    out = np.zeros((len(texts), 512), dtype=np.float32)
    for i, t in enumerate(texts):
        for w in re.findall(r"[a-z]+", t.lower()):
            if w not in STOP:
                out[i, int(hashlib.md5(w.encode()).hexdigest(), 16) % 512] += 1.0
        n = np.linalg.norm(out[i])
        out[i] = out[i] / n if n else out[i]
    return out


D1 = "The Eiffel Tower is in Paris. It was completed in 1889. It is made of wrought iron. Gustave Eiffel's company built it."
D2 = (
    "The Eiffel Tower stands in Paris.\n\nIt was completed in 1889.\n\n- It is made of wrought iron.\n"
    "- It is repainted every seven years."
)
D3 = (
    "The Eiffel Tower is in Paris. It was completed in 1887. **It is made of wrought iron.** "
    "It was the tallest structure in the world until 1930."
)
FINAL = (
    "The Eiffel Tower is in Paris. It was completed in 1889. It is repainted every seven years. "
    "It attracts millions of visitors."
)


# -- sentences and small measures ---------------------------------------------------------------


def test_split_sentences_handles_markdown_abbreviations_and_code() -> None:
    text = """# Heading is not a statement
**Bold line used as a heading**
Water boils at 100 °C at sea level. E.g. in Paris it does. Dr. Smith agrees! Is it? Yes.
- **Bold** item one
2. Numbered item, i.e. the second one.
> Quoted claim. And another.

```python
print("x. Y")
```
---
The value is 3.14 and J. Smith said so."""
    assert split_sentences(text) == [
        "Water boils at 100 °C at sea level.",
        "E.g. in Paris it does.",
        "Dr. Smith agrees!",
        "Is it?",
        "Yes.",
        "Bold item one",
        "Numbered item, i.e. the second one.",
        "Quoted claim.",
        "And another.",
        'print("x. Y")',
        "The value is 3.14 and J. Smith said so.",
    ]
    assert split_sentences("") == [] and split_sentences("  \n--- \n***") == []


def test_numbers_negation_and_conflicts() -> None:
    assert numbers("1,000 m, 3.50 kg, 7 and 100°C; H2O") == {"1000", "3.5", "7", "100"}
    assert is_negated("It isn't a metal.") and is_negated("Paris is not the capital.")
    assert not is_negated("Paris is the capital.") and not is_negated("It is not uncommon, no.")
    assert conflict_reason("It was completed in 1889.", "It was completed in 1887.").startswith("different numbers")
    assert conflict_reason("In 1889 it opened, 300 m tall.", "It opened in 1889.") is None  # omission, not conflict
    assert conflict_reason("Paris is the capital.", "Paris is not the capital.") == "one of them is negated"
    assert conflict_reason("Paris is the capital.", "The capital is Paris.") is None


def test_rouge_l_matches_rouge_score_reference_values() -> None:
    # Expected values computed with rouge-score 0.1.2: RougeScorer(["rougeL"]).score(reference, candidate).
    cases = [
        (
            "Water boils at 100 C at sea level. At higher altitude the boiling point is lower.",
            "Water boils at 100 degrees at sea level; the boiling point drops with altitude.",
            (0.625, 0.714286, 0.666667),
        ),
        ("The cat sat on the mat.", "The cat is on the mat.", (0.833333, 0.833333, 0.833333)),
        (
            "Paris is the capital of France, and Lyon is the second city.",
            "Lyon? Paris! France's capital is Paris.",
            (0.25, 0.428571, 0.315789),
        ),
        ("abc", "xyz", (0.0, 0.0, 0.0)),
    ]
    for cand, ref, (p, r, f) in cases:
        got = rouge_l(cand, ref)
        assert (got.precision, got.recall, got.f1) == pytest.approx((p, r, f), abs=1e-6)
    assert rouge_l("", "anything") == rouge_l("anything", "") == rouge_l("", "")
    assert words("Don't PANIC: 42!") == ["don", "t", "panic", "42"]


def test_lexical_similarity_bounds() -> None:
    assert lexical_similarity("Paris is the capital", "the capital is Paris") == 1.0
    assert lexical_similarity("abc def", "xyz uvw") < 0.3


# -- alignment ------------------------------------------------------------------------------------


def test_alignment_finds_shared_unique_and_contradictory_statements() -> None:
    al = align_drafts([D1, D2, D3], fake_embed)
    assert al.backend == "embedding"
    status = [[s.status for s in d] for d in al.drafts]
    assert status == [
        ["shared", "partial", "shared", "unique"],
        ["shared", "partial", "shared", "unique"],
        ["shared", "unique", "shared", "unique"],
    ]
    assert al.drafts[0][1].agrees_with == {1: 1}  # 1889 agrees with draft 2 only
    assert [s.text for s in al.unique()] == [
        "Gustave Eiffel's company built it.",
        "It is repainted every seven years.",
        "It was completed in 1887.",
        "It was the tallest structure in the world until 1930.",
    ]
    shared_texts = [{al.statement(r).text for r in g} for g in al.shared]
    assert len(al.shared) == 2
    assert "It is made of wrought iron." in shared_texts[1]
    assert {"The Eiffel Tower is in Paris.", "The Eiffel Tower stands in Paris."} == shared_texts[0]
    pairs = {(c.a, c.b) for c in al.contradictions}
    assert pairs == {(SentenceRef(0, 1), SentenceRef(2, 1)), (SentenceRef(1, 1), SentenceRef(2, 1))}
    assert all("1887" in c.reason and "1889" in c.reason for c in al.contradictions)
    assert al.drafts[2][1].contradicts == [SentenceRef(0, 1), SentenceRef(1, 1)]


def test_a_draft_stating_both_versions_is_not_a_contradiction() -> None:
    a = "The bridge opened in 1932."
    b = "The bridge opened in 1932. Some sources wrongly say the bridge opened in 1930."
    al = align_drafts([a, b], fake_embed)
    assert al.contradictions == []
    assert al.drafts[0][0].status == "shared"


def test_negation_contradiction() -> None:
    al = align_drafts(
        ["Glass is a liquid at room temperature.", "Glass is not a liquid at room temperature."], fake_embed
    )
    assert [c.reason for c in al.contradictions] == ["one of them is negated"]
    assert [s.status for d in al.drafts for s in d] == ["unique", "unique"]


def test_alignment_with_the_lexical_backend() -> None:
    al = align_drafts([D1, D2, D3])
    assert al.backend == "lexical"
    assert al.drafts[0][2].status == "shared"  # identical sentence in all three
    assert al.drafts[0][3].status == "unique"
    assert any(c.a == SentenceRef(0, 1) and c.b == SentenceRef(2, 1) for c in al.contradictions)


def test_single_or_empty_drafts() -> None:
    al = align_drafts(["Only one draft here.", ""], fake_embed)
    assert [s.status for s in al.drafts[0]] == ["unique"] and al.drafts[1] == [] and al.shared == []
    assert align_drafts([], fake_embed).drafts == []


# -- attribution and kept / dropped -----------------------------------------------------------


def test_attribution_traces_each_final_sentence() -> None:
    att = attribute(FINAL, [D1, D2, D3], fake_embed)
    src = [(s.text, s.source, s.source_index, s.supported_by) for s in att.sentences]
    assert src == [
        ("The Eiffel Tower is in Paris.", 0, 0, [0, 1, 2]),
        ("It was completed in 1889.", 0, 1, [0, 1]),  # draft 3's 1887 conflicts: not a source
        ("It is repainted every seven years.", 1, 3, [1]),
        ("It attracts millions of visitors.", None, None, []),
    ]
    # words: 6 + 5 + 6 + 5 = 22
    assert att.shares == pytest.approx([11 / 22, 6 / 22, 0.0])
    assert att.new_share == pytest.approx(5 / 22)
    assert att.coverage == pytest.approx([11 / 22, 17 / 22, 6 / 22])
    assert sum(att.shares) + att.new_share == pytest.approx(1.0)


def test_compare_lists_kept_and_dropped_draft_only_statements() -> None:
    sim = Similarity(fake_embed)
    cmp = compare(FINAL, [D1, D2, D3], similarity=sim)
    assert [(k.draft, k.text) for k in cmp.kept] == [(1, "It is repainted every seven years.")]
    assert cmp.kept[0].final_index == 2
    assert [(k.draft, k.text) for k in cmp.dropped] == [
        (0, "Gustave Eiffel's company built it."),
        (2, "It was completed in 1887."),
        (2, "It was the tallest structure in the world until 1930."),
    ]
    assert [o.side for o in cmp.contradictions] == ["a", "a"]  # the synthesis kept 1889
    d = cmp.to_dict()
    assert d["kept"] == 1 and d["dropped"] == 3


def test_identical_final_comes_entirely_from_drafts() -> None:
    att = attribute(D1, [D1, D1], fake_embed)
    assert att.new_share == 0.0 and att.shares == pytest.approx([1.0, 0.0])
    assert att.coverage == pytest.approx([1.0, 1.0])
    empty = attribute("", [D1], fake_embed)
    assert empty.sentences == [] and empty.new_share == 0.0
