"""How much of its width a representation uses: effective rank and participation ratio.

Both are computed from the eigenvalues λ of the covariance of the centred features (the
squared singular values of the centred data, up to a factor):

- effective rank (Roy & Vetterli 2007): ``exp(−Σ p_i log p_i)`` with ``p = λ / Σλ``;
- participation ratio: ``(Σλ)² / Σλ²``.

Each lies in [1, rank]: k equal eigenvalues give exactly k. They are counts (larger = more
dimensions in use), not similarities. :class:`CovarianceAccumulator` streams row chunks with
float64 accumulators so a layer's spectrum needs memory independent of the number of rows.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from deepwide.analysis.cka import ArrayLike, as_float64

log = logging.getLogger(__name__)


def covariance_eigenvalues(x: ArrayLike) -> np.ndarray:
    """Eigenvalues of the sample covariance of ``x (n, d)``, descending, ``(min(n, d),)``."""
    xa = as_float64(x)
    n = xa.shape[0]
    if n < 2:
        raise ValueError(f"need at least 2 samples, got {n}")
    s = np.linalg.svd(xa - xa.mean(axis=0), compute_uv=False)
    return s**2 / (n - 1)


def _normalised(eigenvalues: ArrayLike) -> np.ndarray | None:
    lam = np.clip(np.asarray(eigenvalues, dtype=np.float64).ravel(), 0.0, None)
    total = lam.sum()
    if not total > 0:
        return None
    return lam / total


def effective_rank_from_eigenvalues(eigenvalues: ArrayLike) -> float:
    """``exp`` of the Shannon entropy of the normalised spectrum (tiny negatives clipped).

    Args:
        eigenvalues: ``(k,)`` non-negative eigenvalues.

    Returns:
        The effective rank, or NaN for an all-zero spectrum.
    """
    p = _normalised(eigenvalues)
    if p is None:
        return math.nan
    p = p[p > 0]
    return float(np.exp(-np.sum(p * np.log(p))))


def participation_ratio_from_eigenvalues(eigenvalues: ArrayLike) -> float:
    """``(Σλ)² / Σλ²`` of ``(k,)`` non-negative eigenvalues (NaN for an all-zero spectrum)."""
    p = _normalised(eigenvalues)
    if p is None:
        return math.nan
    return float(1.0 / np.sum(p * p))


def effective_rank(x: ArrayLike) -> float:
    """Effective rank of the covariance spectrum of ``x (n, d)`` (1 … min(n − 1, d))."""
    return effective_rank_from_eigenvalues(covariance_eigenvalues(x))


def participation_ratio(x: ArrayLike) -> float:
    """Participation ratio of the covariance spectrum of ``x (n, d)`` (1 … min(n − 1, d))."""
    return participation_ratio_from_eigenvalues(covariance_eigenvalues(x))


class CovarianceAccumulator:
    """Streaming covariance of one layer: Σx and Σxxᵀ in float64 after a first-chunk shift.

    Example:
        >>> acc = CovarianceAccumulator(768)
        >>> for chunk in chunks:          # (c, 768) each
        ...     acc.update(chunk)
        >>> effective_rank_from_eigenvalues(acc.eigenvalues())
    """

    def __init__(self, dim: int) -> None:
        self.dim = int(dim)
        self.n = 0
        self._shift: np.ndarray | None = None
        self._sum = np.zeros(self.dim)
        self._gram = np.zeros((self.dim, self.dim))

    def update(self, chunk: ArrayLike) -> None:
        """Accumulate ``chunk (c, dim)``."""
        x = as_float64(chunk)
        if x.shape[1] != self.dim:
            raise ValueError(f"expected width {self.dim}, got {x.shape[1]}")
        if x.shape[0] == 0:
            return
        if self._shift is None:
            self._shift = x.mean(axis=0)
        x = x - self._shift
        self._sum += x.sum(axis=0)
        self._gram += x.T @ x
        self.n += x.shape[0]

    def covariance(self) -> np.ndarray:
        """``(dim, dim)`` sample covariance (divided by n − 1)."""
        if self.n < 2:
            raise ValueError(f"need at least 2 rows, accumulated {self.n}")
        mu = self._sum / self.n
        return (self._gram - self.n * np.outer(mu, mu)) / (self.n - 1)

    def eigenvalues(self) -> np.ndarray:
        """Covariance eigenvalues, descending, ``(dim,)`` (tiny negatives clipped to 0)."""
        return np.clip(np.linalg.eigvalsh(self.covariance())[::-1], 0.0, None)
