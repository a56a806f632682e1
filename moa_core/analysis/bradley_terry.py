"""Bradley–Terry strengths from pairwise win counts, numpy only.

The model: P(i beats j) = 1 / (1 + exp(-(b_i - b_j))) with b the natural-log strengths.
Everything here works on a dense (K, K) matrix of (possibly fractional) wins, or on a
batch (B, K, K) of them, so that a whole bootstrap is fitted in one vectorised Newton
loop instead of B Python-level fits.

Regularisation: the log-likelihood is penalised by ``l2 / 2 * sum(b**2)``, i.e. a
Gaussian prior N(0, 1/l2) on each log-strength. Without it an undefeated (or winless)
contender has an infinite MLE and the fit diverges. The default ``l2 = 0.1`` is a prior
sd of ~3.2 nats (~550 rating points, wider than real arenas spread): it shrinks a
contender with n battles by roughly l2 / (n/4), i.e. under 1% from 40 battles on, yet
keeps perfect records finite (3-0 head to head gives a ~500 point gap, not infinity). Because the likelihood gradient sums to
zero over contenders, the penalised optimum has mean(b) == 0 exactly, which is also the
anchor used for ratings (mean rating == ELO_BASE). ``l2 = 0`` gives the plain MLE; the
translation freedom is then removed by centring, and the fit only converges when every
contender has at least a fractional win and loss on a connected comparison graph.
"""

from __future__ import annotations

import warnings
from typing import Any, cast

import numpy as np
from numpy.typing import NDArray

ELO_BASE = 1000.0
# 400 rating points per factor-of-10 in odds, as in chess Elo.
ELO_SCALE = 400.0 / np.log(10.0)
DEFAULT_L2 = 0.1

# Keeps a batched fit's working set (B * K * K float64s) around 64 MB.
_MAX_BATCH_CELLS = 8_000_000


def to_rating(log_strength: NDArray[np.float64]) -> NDArray[np.float64]:
    """Natural-log strengths (mean 0) -> Elo-like ratings (mean ELO_BASE)."""
    return ELO_BASE + ELO_SCALE * np.asarray(log_strength, dtype=float)


def win_matrix(
    left_idx: NDArray[np.intp],
    right_idx: NDArray[np.intp],
    left_score: NDArray[np.float64],
    counts: NDArray[np.floating[Any]] | NDArray[np.integer[Any]],
    k: int,
) -> NDArray[np.float64]:
    """Dense wins[i, j] from outcome cells; ``counts`` may be (n_cells,) or (B, n_cells).

    ``left_score`` is the share of a vote credited to the left contender (1, 0 or 0.5),
    the rest going to the right one.
    """
    counts = np.asarray(counts, dtype=float)
    batched = counts.ndim == 2
    c = counts if batched else counts[None, :]
    b = c.shape[0]
    flat = np.concatenate([left_idx * k + right_idx, right_idx * k + left_idx])
    weights = np.concatenate([c * left_score, c * (1.0 - left_score)], axis=1)
    # One bincount over the whole batch: offset each replicate into its own K*K block.
    idx = (np.arange(b)[:, None] * (k * k) + flat[None, :]).ravel()
    # numpy's stubs type bincount as intp always; with float weights it returns float64.
    w = cast("NDArray[np.float64]", np.bincount(idx, weights=weights.ravel(), minlength=b * k * k)).reshape(b, k, k)
    return w if batched else w[0]


def _log_sigmoid(x: NDArray[np.float64]) -> NDArray[np.float64]:
    return -np.logaddexp(0.0, -x)


def _objective(w: NDArray[np.float64], beta: NDArray[np.float64], l2: float) -> NDArray[np.float64]:
    diff = beta[:, :, None] - beta[:, None, :]
    return (w * _log_sigmoid(diff)).sum(axis=(1, 2)) - 0.5 * l2 * (beta**2).sum(axis=1)


def _newton(w: NDArray[np.float64], l2: float, tol: float, max_iter: int) -> tuple[NDArray[np.float64], bool]:
    b, k, _ = w.shape
    n = w + np.swapaxes(w, 1, 2)
    row_wins = w.sum(axis=2)
    beta = np.zeros((b, k))
    eye = np.eye(k)
    # Adding c * 11^T pins the one flat direction (a common shift of all strengths) so
    # the system is solvable even with l2 == 0; it leaves steps orthogonal to 1.
    gauge = np.ones((k, k))
    obj = _objective(w, beta, l2)
    for _ in range(max_iter):
        p = 0.5 * (1.0 + np.tanh(0.5 * (beta[:, :, None] - beta[:, None, :])))
        grad = row_wins - (n * p).sum(axis=2) - l2 * beta
        info = n * p * (1.0 - p)
        neg_hess = -info + eye * (info.sum(axis=2) + l2)[:, :, None]
        # Jitter keeps contenders with no battles (and l2 == 0) from making it singular.
        jitter = 1e-10 * (1.0 + neg_hess.max())
        step = np.linalg.solve(neg_hess + gauge + jitter * eye, grad[:, :, None])[:, :, 0]
        # Backtracking: Newton on a concave objective can still overshoot from far away
        # (e.g. an undefeated contender); halve per replicate until it stops going down.
        t = np.ones(b)
        for _ in range(40):
            cand = beta + t[:, None] * step
            cand_obj = _objective(w, cand, l2)
            worse = cand_obj < obj - 1e-12 * np.abs(obj)
            if not worse.any():
                break
            t = np.where(worse, 0.5 * t, t)
        delta = t[:, None] * step
        beta = cand - cand.mean(axis=1, keepdims=True)
        obj = _objective(w, beta, l2)
        if np.abs(delta).max() < tol:
            return beta, True
    return beta, False


def fit_log_strengths(
    wins: NDArray[np.float64],
    l2: float = DEFAULT_L2,
    tol: float = 1e-9,
    max_iter: int = 100,
) -> NDArray[np.float64]:
    """Penalised BT fit. ``wins`` is (K, K) or (B, K, K); returns (K,) or (B, K) log-strengths, mean 0."""
    if l2 < 0:
        raise ValueError("l2 must be >= 0")
    w = np.asarray(wins, dtype=float)
    batched = w.ndim == 3
    w3 = w if batched else w[None]
    b, k, _ = w3.shape
    if k == 0:
        out = np.zeros((b, 0))
        return out if batched else out[0]
    chunk = max(1, _MAX_BATCH_CELLS // (k * k))
    parts = []
    all_ok = True
    for start in range(0, b, chunk):
        beta, ok = _newton(w3[start : start + chunk], l2, tol, max_iter)
        parts.append(beta)
        all_ok &= ok
    if not all_ok:
        warnings.warn(
            "Bradley–Terry fit did not converge; with l2=0 some contender probably has "
            "no wins or no losses (its strength diverges).",
            RuntimeWarning,
            stacklevel=2,
        )
    out = np.concatenate(parts, axis=0)
    return out if batched else out[0]


def bootstrap_log_strengths(
    left_idx: NDArray[np.intp],
    right_idx: NDArray[np.intp],
    left_score: NDArray[np.float64],
    counts: NDArray[np.integer[Any]],
    k: int,
    n_boot: int,
    seed: int | None,
    l2: float = DEFAULT_L2,
) -> NDArray[np.float64]:
    """(n_boot, K) log-strengths refitted on multinomial resamples of the count cells.

    Drawing all votes at once from the cell proportions is the same distribution as
    resampling individual votes with replacement, but costs O(cells) not O(votes).
    """
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    if n_boot <= 0 or total == 0:
        return np.zeros((0, k))
    rng = np.random.default_rng(seed)
    resampled = rng.multinomial(total, counts / total, size=n_boot)
    wins = win_matrix(left_idx, right_idx, left_score, resampled, k)
    return fit_log_strengths(wins, l2=l2)
