"""Scores over cross-validation folds (SUPERB's ER: five leave-one-session-out folds).

A folded score is the mean over folds of each fold's test mean (SUPERB averages the fold
accuracies). Its interval resamples each fold's test utterances independently — a bootstrap
stratified by fold — and averages the folds' replicate means, so it is an interval over test
utterances of the same statistic; the spread over folds (their standard deviation) is reported
beside it, not folded into it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from deepwide.probing.stats import DEFAULT_BOOT


def fold_means(values: Sequence[np.ndarray]) -> np.ndarray:
    """``(K, B)`` each fold's mean of its ``(n_k, B)`` per-sample values (NaN for an empty fold)."""
    return np.stack([np.asarray(v, np.float64).mean(axis=0) if len(v) else
                     np.full(np.asarray(v).shape[1:], np.nan) for v in values])


def bootstrap_fold_mean_ci(
    values: Sequence[np.ndarray],
    groups: Sequence[np.ndarray],
    *,
    n_boot: int = DEFAULT_BOOT,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap interval of the mean over folds of the per-fold means.

    Each replicate draws, in every fold independently, that fold's test groups (utterances)
    with replacement, takes the fold's mean over the drawn samples, and averages the folds.

    Args:
        values: per fold, ``(n_k, B)`` per-sample values (1.0/0.0 correctness); the ``B``
            columns (layers) share the resamples.
        groups: per fold, ``(n_k,)`` group (utterance) id of each sample.
        n_boot, level, seed: replicates, coverage, seed of the resampling.

    Returns:
        ``(low (B,), high (B,))``; NaN when a fold has no samples.
    """
    rng = np.random.default_rng(seed)
    total: np.ndarray | None = None
    for v, g in zip(values, groups, strict=True):
        v = np.asarray(v, np.float64)
        v = v[:, None] if v.ndim == 1 else v
        if v.shape[0] == 0:
            nan = np.full(v.shape[1], np.nan)
            return nan, nan.copy()
        _, gi = np.unique(np.asarray(g), return_inverse=True)
        n_g = int(gi.max()) + 1
        sums = np.zeros((n_g, v.shape[1]))
        np.add.at(sums, gi, v)
        counts = np.bincount(gi, minlength=n_g).astype(np.float64)
        m = rng.multinomial(n_g, np.full(n_g, 1.0 / n_g), size=n_boot).astype(np.float64)
        rep = (m @ sums) / (m @ counts)[:, None]  # (n_boot, B)
        total = rep if total is None else total + rep
    if total is None:
        raise ValueError("no folds")
    stats = total / len(values)
    alpha = (1.0 - level) / 2.0
    return np.quantile(stats, alpha, axis=0), np.quantile(stats, 1.0 - alpha, axis=0)
