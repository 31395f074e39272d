"""Probe statistics: utterance-bootstrap confidence intervals, equal error rate, macro-F1.

Pure functions on numpy arrays, float64 inside, seeded. Frame-level results are resampled by
*utterance*: a bootstrap replicate draws utterances with replacement and every frame of a drawn
utterance comes along (consecutive 20 ms frames are not independent samples). Pair metrics
(EER on a trial list) are resampled the same way: a trial counts ``m_a · m_b`` times when its
two utterances were drawn ``m_a`` and ``m_b`` times.
"""

from __future__ import annotations

import numpy as np

DEFAULT_BOOT = 1000


def _multiplicities(n_groups: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """``(n_boot, n_groups)`` draw counts of a with-replacement resample of the groups."""
    return rng.multinomial(n_groups, np.full(n_groups, 1.0 / n_groups), size=n_boot).astype(np.float64)


def bootstrap_mean_ci(
    values: np.ndarray,
    groups: np.ndarray,
    *,
    n_boot: int = DEFAULT_BOOT,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap interval of a sample mean (e.g. accuracy), resampling groups.

    Args:
        values: ``(n,)`` or ``(n, B)`` per-sample values (1.0/0.0 correctness for accuracy);
            ``B`` columns (layers) share the same resamples.
        groups: ``(n,)`` group (utterance) id of each sample.
        n_boot: replicates.
        level: coverage.
        seed: seed of the resampling.

    Returns:
        ``(low, high)``, each a float (1-D input) or ``(B,)`` array.
    """
    v = np.asarray(values, np.float64)
    squeeze = v.ndim == 1
    v = v[:, None] if squeeze else v
    if v.shape[0] == 0:
        nan = np.full(v.shape[1], np.nan)
        return (nan[0], nan[0]) if squeeze else (nan, nan)
    _, g = np.unique(np.asarray(groups), return_inverse=True)
    n_g = int(g.max()) + 1
    sums = np.zeros((n_g, v.shape[1]))
    np.add.at(sums, g, v)
    counts = np.bincount(g, minlength=n_g).astype(np.float64)
    lows, highs = bootstrap_ratio_ci(sums, counts, n_boot=n_boot, level=level, seed=seed)
    return (float(lows[0]), float(highs[0])) if squeeze else (lows, highs)


def bootstrap_ratio_ci(
    numerators: np.ndarray,
    denominators: np.ndarray,
    *,
    n_boot: int = DEFAULT_BOOT,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap interval of ``Σ numerators / Σ denominators``, resampling groups.

    An accuracy is (correct per utterance) / (samples per utterance); an error rate is (edits
    per utterance) / (reference length per utterance).

    Args:
        numerators: ``(G, B)`` per group (utterance); ``B`` columns (layers) share resamples.
        denominators: ``(G,)`` per group, positive in sum.
        n_boot, level, seed: replicates, coverage, seed of the resampling.

    Returns:
        ``(low (B,), high (B,))``.
    """
    num = np.asarray(numerators, np.float64)
    den = np.asarray(denominators, np.float64)
    if num.shape[0] == 0:
        nan = np.full(num.shape[1], np.nan)
        return nan, nan.copy()
    rng = np.random.default_rng(seed)
    stats = np.empty((0, num.shape[1]))
    for start in range(0, n_boot, 256):
        m = _multiplicities(num.shape[0], min(256, n_boot - start), rng)
        stats = np.vstack([stats, (m @ num) / (m @ den)[:, None]])
    alpha = (1.0 - level) / 2.0
    return np.quantile(stats, alpha, axis=0), np.quantile(stats, 1.0 - alpha, axis=0)


def equal_error_rate(scores: np.ndarray, targets: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Equal error rate of a verification score list (a rate: 0 = perfect, 0.5 = chance).

    The miss rate (targets scoring below a threshold) and the false-alarm rate (non-targets at or
    above it) are traced over all distinct thresholds; the EER is where the two piecewise-linear
    curves cross (linear interpolation between neighbouring thresholds).

    Args:
        scores: ``(n,)`` higher = more likely the same speaker.
        targets: ``(n,)`` bool, True for same-speaker trials.
        weights: ``(n,)`` non-negative trial weights (bootstrap multiplicities); default 1.

    Returns:
        EER in [0, 1]; NaN when either class has zero weight.
    """
    s = np.asarray(scores, np.float64)
    w = np.ones((1, s.size)) if weights is None else np.asarray(weights, np.float64)[None, :]
    return float(equal_error_rates(s, targets, w)[0])


def equal_error_rates(scores: np.ndarray, targets: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """:func:`equal_error_rate` for many weightings of one score list at once (vectorised).

    Args:
        scores: ``(n,)``; targets: ``(n,)`` bool.
        weights: ``(R, n)`` non-negative weights, one row per replicate.

    Returns:
        ``(R,)`` EERs (NaN for a row where either class has zero weight).
    """
    s = np.asarray(scores, np.float64)
    order = np.argsort(s, kind="mergesort")
    s, t = s[order], np.asarray(targets, bool)[order]
    w = np.asarray(weights, np.float64)[:, order]
    n = s.size
    cut = np.ones(n + 1, bool)  # position k: the k lowest scores are rejected
    cut[1:n] = s[1:] != s[:-1]  # thresholds only between distinct scores
    zero = np.zeros((w.shape[0], 1))
    cum_t = np.concatenate([zero, np.cumsum(w * t, axis=1)], axis=1)[:, cut]
    cum_n = np.concatenate([zero, np.cumsum(w * ~t, axis=1)], axis=1)[:, cut]
    tot_t, tot_n = cum_t[:, -1:], cum_n[:, -1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        miss = cum_t / tot_t
        fa = 1.0 - cum_n / tot_n
    diff = fa - miss  # decreasing from 1 to -1
    k = np.argmax(diff <= 0, axis=1)
    rows = np.arange(w.shape[0])
    km1 = np.maximum(k - 1, 0)
    d0, d1 = diff[rows, km1], diff[rows, k]
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(d0 != d1, d0 / (d0 - d1), 0.0)
    eer = np.where(k == 0, miss[rows, 0], miss[rows, km1] + frac * (miss[rows, k] - miss[rows, km1]))
    bad = (tot_t[:, 0] <= 0) | (tot_n[:, 0] <= 0)
    return np.where(bad, np.nan, eer)


def bootstrap_eer_ci(
    scores: np.ndarray,
    targets: np.ndarray,
    utt_a: np.ndarray,
    utt_b: np.ndarray,
    *,
    n_boot: int = DEFAULT_BOOT,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the EER, resampling utterances of the trial list.

    Args:
        scores, targets: ``(n_trials,)`` as for :func:`equal_error_rate`.
        utt_a, utt_b: ``(n_trials,)`` utterance ids of each trial's two sides.
        n_boot, level, seed: as for :func:`bootstrap_mean_ci`.

    Returns:
        ``(low, high)``.
    """
    _, inv = np.unique(np.concatenate([np.asarray(utt_a), np.asarray(utt_b)]), return_inverse=True)
    n_t = len(scores)
    ia, ib = inv[:n_t], inv[n_t:]
    n_u = int(inv.max()) + 1
    rng = np.random.default_rng(seed)
    m = _multiplicities(n_u, n_boot, rng)
    step = max(1, 4_000_000 // max(n_t, 1))  # bound the (replicates × trials) block
    eers = np.concatenate([equal_error_rates(scores, targets, mi[:, ia] * mi[:, ib]) for mi in np.split(m, range(step, n_boot, step))])
    eers = eers[np.isfinite(eers)]
    if eers.size == 0:
        return float("nan"), float("nan")
    alpha = (1.0 - level) / 2.0
    return float(np.quantile(eers, alpha)), float(np.quantile(eers, 1.0 - alpha))


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Macro-averaged F1 over the classes present in ``y_true`` or ``y_pred`` (a score, 1 = perfect)."""
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    if y_true.size == 0:
        return float("nan")
    labels = np.union1d(y_true, y_pred)
    t = np.searchsorted(labels, y_true)
    p = np.searchsorted(labels, y_pred)
    k = labels.size
    tp = np.bincount(t[t == p], minlength=k).astype(np.float64)
    denom = np.bincount(t, minlength=k) + np.bincount(p, minlength=k)  # = 2tp + fp + fn
    return float(np.mean(np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)))


def majority_accuracy(y_train: np.ndarray, y_test: np.ndarray) -> float:
    """Accuracy on test of always predicting the most frequent *training* class."""
    if len(y_train) == 0 or len(y_test) == 0:
        return float("nan")
    values, counts = np.unique(y_train, return_counts=True)
    return float(np.mean(np.asarray(y_test) == values[np.argmax(counts)]))
