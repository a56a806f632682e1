"""Small statistics helpers shared by leaderboards and evaluation reports."""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy.stats import norm
from statsmodels.stats.proportion import proportion_confint


def wilson_interval(
    wins: ArrayLike, n: ArrayLike, z: float = 1.96
) -> tuple[float, float] | tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Wilson score interval for a proportion wins/n (scalars or arrays).

    Computed by statsmodels; preferred over the normal approximation because it stays inside [0, 1] and is
    sensible at 0/n and n/n, which small evaluation sets hit all the time. ``wins`` may
    be fractional (ties counted as half). n == 0 gives NaN bounds: there is no estimate.
    """
    w = np.asarray(wins, dtype=float)
    m = np.asarray(n, dtype=float)
    if np.any(m < 0) or np.any(w < 0) or np.any(w > m):
        raise ValueError("need 0 <= wins <= n")
    alpha = 2.0 * float(norm.sf(z))
    safe = np.where(m > 0, m, 1.0)  # statsmodels divides by n; n == 0 is masked to NaN below
    low, high = proportion_confint(w, safe, alpha=alpha, method="wilson")
    # At 0/n and n/n the bound is exactly 0 or 1; floating error would show as 2.8e-17.
    low = np.where(m > 0, np.where(w == 0, 0.0, np.clip(low, 0.0, 1.0)), np.nan)
    high = np.where(m > 0, np.where(w == m, 1.0, np.clip(high, 0.0, 1.0)), np.nan)
    if low.ndim == 0:
        return float(low), float(high)
    return low, high


def pareto_frontier(df: pd.DataFrame, x: str, y: str, x_lower_is_better: bool = True) -> pd.Series:
    """Boolean Series (aligned to df.index): True for rows no other row dominates.

    ``y`` is a quality (higher is better); ``x`` a cost or latency (lower is better unless
    ``x_lower_is_better=False``). Dominated means another row is at least as good on
    both and strictly better on one, so exact duplicates are all on the frontier. Rows
    with a missing x or y are never on it.
    """
    xs = pd.to_numeric(df[x], errors="coerce").to_numpy(dtype=float)
    ys = pd.to_numeric(df[y], errors="coerce").to_numpy(dtype=float)
    if not x_lower_is_better:
        xs = -xs
    on = np.zeros(len(df), dtype=bool)
    valid = np.flatnonzero(~(np.isnan(xs) | np.isnan(ys)))
    # Sweep best-x first (best y first within equal x): a row is on the frontier iff its
    # y beats every y seen so far, or it duplicates the last frontier row exactly.
    order = valid[np.lexsort((-ys[valid], xs[valid]))]
    best_y = -np.inf
    last: tuple[float, float] | None = None
    for i in order:
        if ys[i] > best_y or (ys[i] == best_y and last == (xs[i], ys[i])):
            on[i] = True
            best_y = ys[i]
            last = (xs[i], ys[i])
    return pd.Series(on, index=df.index, name="pareto")
