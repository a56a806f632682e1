"""Bradley–Terry strengths from pairwise outcomes, numpy only, optionally with covariates.

The model: P(i beats j) = 1 / (1 + exp(-(b_i - b_j + g·z))) with b the natural-log
strengths and z an optional vector of covariates of the battle (e.g. how much longer i's
answer was than j's; "style control" as in Chatbot Arena). Without covariates it is the
plain BT model.

One fitter does both: a batched Newton loop over *cells*, i.e. (i, j[, z]) groups of
battles with a (possibly fractional) count ``n`` and the wins of i among them, ``y``.
A dense (K, K) win matrix is just the cells of every pair; a bootstrap is a batch
(B, cells) of resampled counts, fitted in one vectorised loop instead of B Python-level
fits.

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
Covariate coefficients ``g`` are not penalised by default: they are few and every battle
informs them.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
from numpy.typing import NDArray

ELO_BASE = 1000.0
# 400 rating points per factor-of-10 in odds, as in chess Elo.
ELO_SCALE = 400.0 / np.log(10.0)
DEFAULT_L2 = 0.1

# Keeps a batched fit's working set (B * (K * K + cells * (1 + P + P * P)) float64s) around 64 MB.
_MAX_BATCH_CELLS = 8_000_000


def to_rating(log_strength: NDArray[np.float64]) -> NDArray[np.float64]:
    """Natural-log strengths (mean 0) -> Elo-like ratings (mean ELO_BASE)."""
    return ELO_BASE + ELO_SCALE * np.asarray(log_strength, dtype=float)


def weighted_bincount(idx: NDArray[np.intp], weights: NDArray[np.float64], minlength: int) -> NDArray[np.float64]:
    """``np.bincount`` with float weights, typed: numpy's stubs say intp whatever the weights."""
    return cast("NDArray[np.float64]", np.bincount(idx, weights=weights, minlength=minlength))


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
    cf = np.asarray(counts, dtype=float)
    batched = cf.ndim == 2
    c = cf if batched else cf[None, :]
    b = c.shape[0]
    flat = np.concatenate([left_idx * k + right_idx, right_idx * k + left_idx])
    weights = np.concatenate([c * left_score, c * (1.0 - left_score)], axis=1)
    # One bincount over the whole batch: offset each replicate into its own K*K block.
    idx = (np.arange(b)[:, None] * (k * k) + flat[None, :]).ravel()
    w = weighted_bincount(idx, weights.ravel(), b * k * k).reshape(b, k, k)
    return w if batched else w[0]


def _log_sigmoid(x: NDArray[np.float64]) -> NDArray[np.float64]:
    return -np.logaddexp(0.0, -x)


def _batched_bincount(idx: NDArray[np.intp], weights: NDArray[np.float64], size: int) -> NDArray[np.float64]:
    """bincount of each row of ``weights`` (B, C) over the shared ``idx`` (C,) -> (B, size)."""
    b = weights.shape[0]
    flat = (np.arange(b)[:, None] * size + idx[None, :]).ravel()
    return weighted_bincount(flat, weights.ravel(), b * size).reshape(b, size)


@dataclass(frozen=True)
class _Design:
    """Cells of battles: i = ``left``, j = ``right``, covariates ``z`` (C, P)."""

    left: NDArray[np.intp]
    right: NDArray[np.intp]
    z: NDArray[np.float64]
    k: int

    def eta(self, theta: NDArray[np.float64]) -> NDArray[np.float64]:
        beta, gamma = theta[:, : self.k], theta[:, self.k :]
        x = beta[:, self.left] - beta[:, self.right]
        return x + gamma @ self.z.T if self.z.shape[1] else x


def _loglik(x: NDArray[np.float64], n: NDArray[np.float64], y: NDArray[np.float64]) -> NDArray[np.float64]:
    # y log σ(x) + (n - y) log σ(-x), with log σ(-x) = log σ(x) - x: one logaddexp, not two.
    return (n * _log_sigmoid(x) - (n - y) * x).sum(axis=1)


def _newton(
    d: _Design, n: NDArray[np.float64], y: NDArray[np.float64], ridge: NDArray[np.float64], tol: float, max_iter: int
) -> tuple[NDArray[np.float64], bool]:
    k, p_cov = d.k, d.z.shape[1]
    b = n.shape[0]
    dim = k + p_cov
    theta = np.zeros((b, dim))
    eye = np.eye(dim)
    # Adding c * 11^T on the strength block pins the one flat direction (a common shift of
    # all strengths) so the system is solvable even with l2 == 0; it leaves steps orthogonal to 1.
    gauge = np.zeros((dim, dim))
    gauge[:k, :k] = 1.0
    zz = (d.z[:, :, None] * d.z[:, None, :]).reshape(len(d.z), p_cov * p_cov)
    x = d.eta(theta)
    obj = _loglik(x, n, y)
    for _ in range(max_iter):
        p = 0.5 * (1.0 + np.tanh(0.5 * x))
        resid = y - n * p
        w = n * p * (1.0 - p)
        grad = np.empty((b, dim))
        grad[:, :k] = _batched_bincount(d.left, resid, k) - _batched_bincount(d.right, resid, k)
        grad[:, k:] = resid @ d.z
        grad -= ridge * theta
        # Negative Hessian = X^T W X (+ ridge), X the signed incidence of strengths and z.
        info = _batched_bincount(d.left * k + d.right, w, k * k).reshape(b, k, k)
        info = info + np.swapaxes(info, 1, 2)
        neg_hess = np.empty((b, dim, dim))
        neg_hess[:, :k, :k] = -info + np.eye(k) * info.sum(axis=2)[:, :, None]
        for c in range(p_cov):
            wz = w * d.z[:, c]
            cross = _batched_bincount(d.left, wz, k) - _batched_bincount(d.right, wz, k)
            neg_hess[:, :k, k + c] = cross
            neg_hess[:, k + c, :k] = cross
        neg_hess[:, k:, k:] = (w @ zz).reshape(b, p_cov, p_cov)
        neg_hess += np.diag(ridge)
        # Jitter keeps contenders with no battles (and l2 == 0) from making it singular.
        jitter = 1e-10 * (1.0 + neg_hess.max())
        step = np.linalg.solve(neg_hess + gauge + jitter * eye, grad[:, :, None])[:, :, 0]
        # Backtracking: Newton on a concave objective can still overshoot from far away
        # (e.g. an undefeated contender); halve per replicate until it stops going down.
        t = np.ones(b)
        for _ in range(40):
            cand = theta + t[:, None] * step
            cand_x = d.eta(cand)
            cand_ll = _loglik(cand_x, n, y)
            cand_obj = cand_ll - 0.5 * (ridge * cand**2).sum(axis=1)
            worse = cand_obj < obj - 1e-12 * np.abs(obj)
            if not worse.any():
                break
            t = np.where(worse, 0.5 * t, t)
        delta = t[:, None] * step
        theta, x = cand, cand_x
        # Centring changes no difference of strengths, so the likelihood (and x) stay put.
        theta[:, :k] -= theta[:, :k].mean(axis=1, keepdims=True)
        obj = cand_ll - 0.5 * (ridge * theta**2).sum(axis=1)
        if np.abs(delta).max() < tol:
            return theta, True
    return theta, False


def fit_cells(
    left_idx: NDArray[np.intp],
    right_idx: NDArray[np.intp],
    n: NDArray[np.float64],
    y: NDArray[np.float64],
    k: int,
    covariates: NDArray[np.float64] | None = None,
    l2: float = DEFAULT_L2,
    tol: float = 1e-9,
    max_iter: int = 100,
    covariate_l2: float = 0.0,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Penalised BT fit on cells: ``n`` battles of left vs right, ``y`` of them won by left.

    ``n`` and ``y`` are (C,) or a batch (B, C); ``covariates`` is (C, P) or None. Returns
    (log-strengths (K,) or (B, K), mean 0; covariate coefficients (P,) or (B, P)).
    ``covariate_l2`` is the ridge on the covariate coefficients (default none).
    """
    if l2 < 0 or covariate_l2 < 0:
        raise ValueError("l2 must be >= 0")
    n_arr, y_arr = np.asarray(n, dtype=float), np.asarray(y, dtype=float)
    batched = n_arr.ndim == 2
    n2, y2 = (n_arr, y_arr) if batched else (n_arr[None], y_arr[None])
    z = np.zeros((len(left_idx), 0)) if covariates is None else np.asarray(covariates, dtype=float)
    z = z.reshape(len(left_idx), -1)
    b, p_cov = n2.shape[0], z.shape[1]
    if k == 0:
        beta_out, gamma_out = np.zeros((b, 0)), np.zeros((b, p_cov))
        return (beta_out, gamma_out) if batched else (beta_out[0], gamma_out[0])
    d = _Design(np.asarray(left_idx, np.intp), np.asarray(right_idx, np.intp), z, k)
    ridge = np.concatenate([np.full(k, float(l2)), np.full(p_cov, float(covariate_l2))])
    per_replicate = k * k + len(z) * (4 + p_cov + p_cov * p_cov)
    chunk = max(1, _MAX_BATCH_CELLS // per_replicate)
    parts = []
    all_ok = True
    for start in range(0, b, chunk):
        theta, ok = _newton(d, n2[start : start + chunk], y2[start : start + chunk], ridge, tol, max_iter)
        parts.append(theta)
        all_ok &= ok
    if not all_ok:
        warnings.warn(
            "Bradley–Terry fit did not converge; with l2=0 some contender probably has "
            "no wins or no losses (its strength diverges).",
            RuntimeWarning,
            stacklevel=3,
        )
    out = np.concatenate(parts, axis=0)
    beta, gamma = out[:, :k], out[:, k:]
    return (beta, gamma) if batched else (beta[0], gamma[0])


def fit_log_strengths(
    wins: NDArray[np.float64],
    l2: float = DEFAULT_L2,
    tol: float = 1e-9,
    max_iter: int = 100,
) -> NDArray[np.float64]:
    """Penalised BT fit. ``wins`` is (K, K) or (B, K, K); returns (K,) or (B, K) log-strengths, mean 0."""
    w = np.asarray(wins, dtype=float)
    batched = w.ndim == 3
    w3 = w if batched else w[None]
    k = w3.shape[1]
    # Every unordered pair is one cell: i < j, y = wins of i over j.
    i, j = np.triu_indices(k, 1)
    beta, _ = fit_cells(i, j, w3[:, i, j] + w3[:, j, i], w3[:, i, j], k, l2=l2, tol=tol, max_iter=max_iter)
    return beta if batched else beta[0]


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
    resampled = resample_counts(counts, n_boot, seed)
    if resampled is None:
        return np.zeros((0, k))
    wins = win_matrix(left_idx, right_idx, left_score, resampled, k)
    return fit_log_strengths(wins, l2=l2)


def resample_counts(counts: NDArray[np.integer[Any]], n_boot: int, seed: int | None) -> NDArray[np.int64] | None:
    """(n_boot, cells) multinomial resamples of integer ``counts``; None when there is nothing to draw."""
    c = np.asarray(counts, dtype=np.int64)
    total = int(c.sum())
    if n_boot <= 0 or total == 0:
        return None
    rng = np.random.default_rng(seed)
    return rng.multinomial(total, c / total, size=n_boot)
