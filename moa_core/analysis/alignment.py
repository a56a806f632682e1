"""Drafts aligned sentence by sentence, and where a synthesized answer came from (pure).

Sentences are compared by a *similarity backend*: cosine of sentence embeddings when an
embedding function is given (`moa_core.analysis.embeddings.get_embedder()` in the app,
a deterministic fake in tests), otherwise a lexical score (rapidfuzz `token_sort_ratio`).
Each backend has its own thresholds (`Thresholds`).

Definitions (every one is a heuristic, and is shown to the user as such):

- Two sentences of different drafts *agree* when their similarity is at least
  `match` and they do not *conflict*.
- They *conflict* when they are about the same thing (similarity at least
  `contradiction`) but (a) each states a number the other does not ("boils at 100 °C" /
  "boils at 90 °C"), or (b) exactly one of them is negated ("is a metal" / "is not a
  metal"; cues: not, no, never, none, cannot, without, -n't...). Spelled-out numbers,
  antonyms and units are not understood. A conflicting pair is reported as a
  contradiction only when it is the other draft's closest statement, so a draft that
  also states the agreeing version does not count as contradicting.
- A sentence is *shared* when every other draft has a sentence agreeing with it,
  *unique* when no other draft does, *partial* otherwise.
- A sentence of the final answer *comes from* the draft holding its most similar
  agreeing sentence, when that similarity reaches `match`; otherwise it is *new*.
- A draft-only (unique) statement is *kept* when some final sentence agrees with it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
from rapidfuzz import fuzz, process, utils
from rapidfuzz.distance import LCSseq

EmbedFn = Callable[[Sequence[str]], np.ndarray]

# -- sentences ----------------------------------------------------------------------------

ABBREVIATIONS = frozenset(
    [
        "e.g",
        "i.e",
        "etc",
        "vs",
        "cf",
        "al",
        "approx",
        "ca",
        "dr",
        "mr",
        "mrs",
        "ms",
        "prof",
        "st",
        "no",
        "fig",
        "figs",
        "eq",
        "eqs",
        "vol",
        "pp",
        "jr",
        "sr",
        "inc",
        "ltd",
        "co",
        "corp",
        "dept",
        "est",
        "min",
        "max",
        "avg",
        "approx",
        "resp",
        "incl",
        "excl",
        "u.s",
        "u.k",
        "jan",
        "feb",
        "mar",
        "apr",
        "jun",
        "jul",
        "aug",
        "sep",
        "sept",
        "oct",
        "nov",
        "dec",
    ]
)
_FENCE = re.compile(r"^\s*(```|~~~)")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+")
_PREFIX = re.compile(r"^\s*(?:>\s*)*(?:[-*+•]\s+|\d{1,3}[.)]\s+|[a-zA-Z][.)]\s+)?")
_BREAK = re.compile(r"([.!?…]+)([\"'”’)\]]*)\s+")
# A short line that is bold as a whole, without closing punctuation, is a heading in disguise.
_PSEUDO_HEADING = re.compile(r"^\s*(?:[-*+]\s+)?(\*\*|__)(?=\S)(?:(?!\1)[^.!?])*?(?<=\S)\1\s*:?\s*$")
_EMPHASIS = re.compile(r"(\*\*|__|`)")
_WORD = re.compile(r"[^\W_]+")


def _clean(line: str) -> str:
    line = _PREFIX.sub("", line, count=1)
    line = _EMPHASIS.sub("", line)
    line = line.strip().strip("|").strip()
    return re.sub(r"\s+", " ", line)


def _split_line(line: str) -> list[str]:
    out, start = [], 0
    for m in _BREAK.finditer(line):
        end = m.end()
        rest = line[end:]
        if not rest or not (rest[0].isupper() or rest[0].isdigit() or rest[0] in "\"'“‘(["):
            continue
        if m.group(1) == ".":
            before = line[start : m.start()].split()
            word = before[-1].lower().rstrip(".") if before else ""
            if word in ABBREVIATIONS or (len(word) == 1 and word.isalpha()):
                continue  # "e.g. Paris", "J. Smith"
        out.append(line[start : m.end(2)].strip())
        start = end
    out.append(line[start:].strip())
    return [s for s in out if s]


def split_sentences(text: str) -> list[str]:
    """The statements of a markdown answer, in order.

    List markers, quote markers and emphasis are removed; headings (and short lines that
    are bold as a whole, used as headings) are left out: they are not statements; a fenced code block is kept as one unit; a line is split after
    . ! ? when the next word starts with a capital or a digit, except after common
    abbreviations and initials. Fragments without a letter or digit are dropped.
    """
    sentences: list[str] = []
    code: list[str] | None = None
    for raw in (text or "").replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if _FENCE.match(raw):
            if code is None:
                code = []
            else:
                if any(c.strip() for c in code):
                    sentences.append("\n".join(code).strip("\n"))
                code = None
            continue
        if code is not None:
            code.append(raw)
            continue
        if _HEADING.match(raw) or re.fullmatch(r"\s*([-*_=]\s*){3,}", raw):
            continue
        if _PSEUDO_HEADING.match(raw):
            continue
        line = _clean(raw)
        if line:
            sentences.extend(_split_line(line))
    if code is not None and any(c.strip() for c in code):
        sentences.append("\n".join(code).strip("\n"))
    return [s for s in sentences if _WORD.search(s)]


def words(text: str) -> list[str]:
    """Lower-cased alphanumeric tokens (for ASCII text, the tokens of rouge-score)."""
    return _WORD.findall(text.lower())


# -- lexical measures (rapidfuzz) ------------------------------------------------------------


def lexical_similarity(a: str, b: str) -> float:
    """0..1: rapidfuzz token_sort_ratio (word order ignored, fuzzy at the character level)."""
    return float(fuzz.token_sort_ratio(a, b, processor=utils.default_process)) / 100.0


@dataclass(frozen=True)
class RougeL:
    precision: float
    recall: float
    f1: float


def rouge_l(candidate: str, reference: str) -> RougeL:
    """Sentence-level ROUGE-L of `candidate` against `reference` (longest common word
    subsequence, by rapidfuzz's LCSseq; same tokens and F-measure as rouge-score's
    `rougeL` without stemming). Precision: share of the candidate's words in the common
    subsequence; recall: share of the reference's."""
    c, r = words(candidate), words(reference)
    if not c or not r:
        return RougeL(0.0, 0.0, 0.0)
    lcs = LCSseq.similarity(c, r)
    p, rec = lcs / len(c), lcs / len(r)
    return RougeL(p, rec, 0.0 if lcs == 0 else 2 * p * rec / (p + rec))


# -- conflicts -------------------------------------------------------------------------------

NEGATIONS = frozenset(
    ["not", "no", "never", "none", "nobody", "nothing", "neither", "nor", "cannot", "without", "nowhere"]
)
_NUMBER = re.compile(r"(?<![\w.,])(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")
_NEG_WORD = re.compile(r"[a-z]+(?:['’][a-z]+)?")


@lru_cache(maxsize=4096)
def numbers(text: str) -> frozenset[str]:
    """Numbers written with digits, unsigned, normalised (1,000 -> 1000; 3.50 -> 3.5).
    Digits glued to a letter before them (the 2 of H2O) are skipped."""
    out = set()
    for m in _NUMBER.finditer(text):
        raw = m.group(0).replace(",", "")
        value = float(raw)
        out.add(f"{value:.15g}")
    return frozenset(out)


@lru_cache(maxsize=4096)
def is_negated(text: str) -> bool:
    """An odd number of negation cues (so 'not uncommon'-style double negatives are not handled)."""
    count = 0
    for w in _NEG_WORD.findall(text.lower()):
        if w in NEGATIONS or w.endswith("n't") or w.endswith("n’t"):
            count += 1
    return count % 2 == 1


def conflict_reason(a: str, b: str) -> str | None:
    """Why two similar sentences may contradict each other, or None."""
    na, nb = numbers(a), numbers(b)
    if na - nb and nb - na:
        return f"different numbers ({', '.join(sorted(na - nb))} vs {', '.join(sorted(nb - na))})"
    if is_negated(a) != is_negated(b):
        return "one of them is negated"
    return None


# -- similarity backends ----------------------------------------------------------------------


@dataclass(frozen=True)
class Thresholds:
    match: float  # agree / come from / kept
    contradiction: float  # similar enough for a conflict to count


EMBEDDING_THRESHOLDS = Thresholds(match=0.7, contradiction=0.75)
LEXICAL_THRESHOLDS = Thresholds(match=0.8, contradiction=0.85)


def dot_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b.T. Small products skip BLAS: a multithreaded BLAS call on a 40x40 result can
    cost 100x the arithmetic on a busy machine (thread wake-ups), einsum's loop does not."""
    if a.shape[0] * b.shape[0] <= 20_000:
        return np.einsum("ij,kj->ik", a, b)
    return a @ b.T


class Similarity:
    """Sentence-by-sentence similarity matrices from an embedding function, or lexical."""

    def __init__(self, embed: EmbedFn | None = None, thresholds: Thresholds | None = None) -> None:
        self.embed = embed
        self.kind = "embedding" if embed is not None else "lexical"
        self.thresholds = thresholds or (EMBEDDING_THRESHOLDS if embed is not None else LEXICAL_THRESHOLDS)
        self._vectors: dict[str, np.ndarray] = {}
        self._stacks: dict[tuple[str, ...], np.ndarray] = {}

    def vectors(self, texts: Sequence[str]) -> np.ndarray:
        assert self.embed is not None
        missing = list(dict.fromkeys(t for t in texts if t not in self._vectors))
        if missing:
            vecs = np.asarray(self.embed(missing), dtype=np.float32)
            norms = np.linalg.norm(vecs, axis=1, keepdims=True)
            vecs = vecs / np.clip(norms, 1e-12, None)
            self._vectors.update(zip(missing, vecs, strict=False))
        if not texts:
            return np.zeros((0, 1), dtype=np.float32)
        key = tuple(texts)
        if key not in self._stacks:
            self._stacks[key] = np.stack([self._vectors[t] for t in texts])
        return self._stacks[key]

    def matrix(self, a: Sequence[str], b: Sequence[str]) -> np.ndarray:
        if not a or not b:
            return np.zeros((len(a), len(b)), dtype=np.float64)
        if self.embed is not None:
            return np.clip(dot_rows(self.vectors(a), self.vectors(b)), -1.0, 1.0).astype(np.float64)
        scores = process.cdist(
            list(a), list(b), scorer=fuzz.token_sort_ratio, processor=utils.default_process, dtype=np.float32
        )
        return np.asarray(scores, dtype=np.float64) / 100.0


# -- alignment of drafts ----------------------------------------------------------------------


@dataclass(frozen=True)
class SentenceRef:
    draft: int
    index: int


@dataclass
class Statement:
    draft: int
    index: int
    text: str
    status: str = "unique"  # shared | partial | unique (all: one draft only)
    agrees_with: dict[int, int] = field(default_factory=dict)  # other draft -> its agreeing sentence
    contradicts: list[SentenceRef] = field(default_factory=list)


@dataclass(frozen=True)
class Contradiction:
    a: SentenceRef
    b: SentenceRef
    text_a: str
    text_b: str
    similarity: float
    reason: str


@dataclass
class Alignment:
    drafts: list[list[Statement]]
    shared: list[list[SentenceRef]]  # groups of agreeing sentences that span every draft
    contradictions: list[Contradiction]
    backend: str
    thresholds: Thresholds

    def unique(self) -> list[Statement]:
        return [s for d in self.drafts for s in d if s.status == "unique"]

    def statement(self, ref: SentenceRef) -> Statement:
        return self.drafts[ref.draft][ref.index]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _best_agreeing(
    sims: np.ndarray, texts_a: Sequence[str], texts_b: Sequence[str], i: int
) -> tuple[int | None, float, int | None, float, str | None]:
    """For sentence i of A: (best agreeing j, its sim, best conflicting j, its sim, reason)."""
    best_j, best = None, -1.0
    conf_j, conf, reason = None, -1.0, None
    for j in np.argsort(-sims[i]):
        s = float(sims[i, j])
        why = conflict_reason(texts_a[i], texts_b[j])
        if why is None:
            if best_j is None:
                best_j, best = int(j), s
        elif conf_j is None:
            conf_j, conf, reason = int(j), s, why
        if best_j is not None and conf_j is not None:
            break
    return best_j, best, conf_j, conf, reason


def align_drafts(
    drafts: Sequence[str],
    embed: EmbedFn | None = None,
    *,
    thresholds: Thresholds | None = None,
    similarity: Similarity | None = None,
) -> Alignment:
    """Align the drafts' sentences: shared, partial, unique statements and contradictions."""
    sim = similarity or Similarity(embed, thresholds)
    th = sim.thresholds
    sents = [split_sentences(d) for d in drafts]
    out = [[Statement(k, i, s) for i, s in enumerate(ss)] for k, ss in enumerate(sents)]
    n = len(drafts)
    parent: dict[tuple[int, int], tuple[int, int]] = {}

    def find(x: tuple[int, int]) -> tuple[int, int]:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    contradictions: dict[tuple[SentenceRef, SentenceRef], Contradiction] = {}
    for a in range(n):
        for b in range(n):
            if a == b or not sents[a] or not sents[b]:
                continue
            m = sim.matrix(sents[a], sents[b])
            for i in range(len(sents[a])):
                j, s, cj, cs, why = _best_agreeing(m, sents[a], sents[b], i)
                if j is not None and s >= th.match:
                    out[a][i].agrees_with[b] = j
                    parent[find((a, i))] = find((b, j))
                if cj is not None and why and cs >= th.contradiction and cs > s:
                    ra, rb = SentenceRef(a, i), SentenceRef(b, cj)
                    key = (ra, rb) if (a, i) < (b, cj) else (rb, ra)
                    if key not in contradictions:
                        first, second = key
                        contradictions[key] = Contradiction(
                            first,
                            second,
                            sents[first.draft][first.index],
                            sents[second.draft][second.index],
                            round(cs, 4),
                            why,
                        )
    for c in contradictions.values():
        out[c.a.draft][c.a.index].contradicts.append(c.b)
        out[c.b.draft][c.b.index].contradicts.append(c.a)
    for d in out:
        for st in d:
            k = len(st.agrees_with)
            st.status = "unique" if k == 0 else ("shared" if k == n - 1 else "partial")
    groups: dict[tuple[int, int], list[SentenceRef]] = {}
    for d in out:
        for st in d:
            groups.setdefault(find((st.draft, st.index)), []).append(SentenceRef(st.draft, st.index))
    shared = [
        sorted(g, key=lambda r: (r.draft, r.index)) for g in groups.values() if n > 1 and len({r.draft for r in g}) == n
    ]
    shared.sort(key=lambda g: (g[0].draft, g[0].index))
    return Alignment(out, shared, sorted(contradictions.values(), key=lambda c: (c.a.draft, c.a.index)), sim.kind, th)


# -- the synthesized answer against the drafts ------------------------------------------------


@dataclass
class SentenceSource:
    index: int
    text: str
    source: int | None  # draft index, or None: new
    source_index: int | None
    similarity: float
    supported_by: list[int] = field(default_factory=list)  # every draft with an agreeing sentence


@dataclass
class Attribution:
    sentences: list[SentenceSource]
    shares: list[float]  # per draft: share of the final answer's words whose best source it is
    new_share: float  # share of words from sentences no draft supports
    coverage: list[float]  # per draft: share of words supported by it (overlapping)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def attribute(
    final: str,
    drafts: Sequence[str],
    embed: EmbedFn | None = None,
    *,
    thresholds: Thresholds | None = None,
    similarity: Similarity | None = None,
) -> Attribution:
    """For each sentence of `final`, the draft it came from (or new); word shares per draft."""
    sim = similarity or Similarity(embed, thresholds)
    th = sim.thresholds
    fs = split_sentences(final)
    ds = [split_sentences(d) for d in drafts]
    mats = [sim.matrix(fs, d) for d in ds]
    out: list[SentenceSource] = []
    for i, text in enumerate(fs):
        best: tuple[float, int | None, int | None] = (-1.0, None, None)
        support = []
        for k, m in enumerate(mats):
            if not ds[k]:
                continue
            j, s, *_ = _best_agreeing(m, fs, ds[k], i)
            if j is not None and s >= th.match:
                support.append(k)
            if j is not None and s > best[0]:
                best = (s, k, j)
        ok = best[0] >= th.match
        out.append(
            SentenceSource(
                i, text, best[1] if ok else None, best[2] if ok else None, round(max(best[0], 0.0), 4), support
            )
        )
    weights = [max(len(words(s.text)), 1) for s in out]
    total = float(sum(weights)) or 1.0
    shares = [sum(w for s, w in zip(out, weights, strict=False) if s.source == k) / total for k in range(len(drafts))]
    coverage = [
        sum(w for s, w in zip(out, weights, strict=False) if k in s.supported_by) / total for k in range(len(drafts))
    ]
    new = sum(w for s, w in zip(out, weights, strict=False) if s.source is None) / total if out else 0.0
    return Attribution(out, shares, new, coverage)


@dataclass(frozen=True)
class KeptStatement:
    draft: int
    index: int
    text: str
    kept: bool
    final_index: int | None  # the final sentence that agrees with it
    similarity: float


@dataclass(frozen=True)
class ContradictionOutcome:
    contradiction: Contradiction
    side: str  # "a", "b", "both", "neither": which version the final answer agrees with


@dataclass
class Comparison:
    attribution: Attribution
    unique: list[KeptStatement]  # every draft-only statement, kept or dropped
    contradictions: list[ContradictionOutcome]

    @property
    def kept(self) -> list[KeptStatement]:
        return [u for u in self.unique if u.kept]

    @property
    def dropped(self) -> list[KeptStatement]:
        return [u for u in self.unique if not u.kept]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["kept"], d["dropped"] = len(self.kept), len(self.dropped)
        return d


def _agreeing_final(sim: Similarity, fs: list[str], texts: list[str]) -> list[tuple[int | None, float]]:
    """For each text: the final sentence agreeing with it (or None) and the similarity."""
    if not fs or not texts:
        return [(None, 0.0)] * len(texts)
    m = sim.matrix(texts, fs)
    out: list[tuple[int | None, float]] = []
    for i in range(len(texts)):
        j, s, *_ = _best_agreeing(m, texts, fs, i)
        out.append((j, s) if j is not None and s >= sim.thresholds.match else (None, max(s, 0.0)))
    return out


def compare(
    final: str,
    drafts: Sequence[str],
    embed: EmbedFn | None = None,
    *,
    alignment: Alignment | None = None,
    thresholds: Thresholds | None = None,
    similarity: Similarity | None = None,
) -> Comparison:
    """Where the final answer came from, which draft-only statements it kept or dropped,
    and which side of each contradiction it took."""
    sim = similarity or Similarity(embed, thresholds)
    alignment = alignment or align_drafts(drafts, similarity=sim)
    fs = split_sentences(final)
    only = alignment.unique()
    unique = [
        KeptStatement(st.draft, st.index, st.text, j is not None, j, round(s, 4))
        for st, (j, s) in zip(only, _agreeing_final(sim, fs, [st.text for st in only]), strict=False)
    ]
    outcomes = []
    sides = _agreeing_final(sim, fs, [t for c in alignment.contradictions for t in (c.text_a, c.text_b)])
    for k, c in enumerate(alignment.contradictions):
        a, b = sides[2 * k][0] is not None, sides[2 * k + 1][0] is not None
        outcomes.append(ContradictionOutcome(c, "both" if a and b else "a" if a else "b" if b else "neither"))
    return Comparison(attribute(final, drafts, similarity=sim), unique, outcomes)


__all__ = [
    "EMBEDDING_THRESHOLDS",
    "LEXICAL_THRESHOLDS",
    "Alignment",
    "Attribution",
    "Comparison",
    "Contradiction",
    "ContradictionOutcome",
    "EmbedFn",
    "KeptStatement",
    "RougeL",
    "SentenceRef",
    "SentenceSource",
    "Similarity",
    "Statement",
    "Thresholds",
    "align_drafts",
    "attribute",
    "compare",
    "conflict_reason",
    "dot_rows",
    "is_negated",
    "lexical_similarity",
    "numbers",
    "rouge_l",
    "split_sentences",
    "words",
]
