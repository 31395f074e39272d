"""Effective rank and participation ratio on data with known covariance spectra."""

from __future__ import annotations

import numpy as np
import pytest

from deepwide.analysis import (
    CovarianceAccumulator,
    covariance_eigenvalues,
    effective_rank,
    effective_rank_from_eigenvalues,
    participation_ratio,
    participation_ratio_from_eigenvalues,
)


def _with_spectrum(eigenvalues: list[float], n: int, d: int, seed: int) -> np.ndarray:
    """(n, d) data whose sample covariance has exactly the given non-zero eigenvalues."""
    rng = np.random.default_rng(seed)
    k = len(eigenvalues)
    # orthonormal columns orthogonal to the all-ones vector → centred, exact spectrum
    basis = np.linalg.qr(np.hstack([np.ones((n, 1)), rng.normal(size=(n, k))]))[0][:, 1:]
    rot = np.linalg.qr(rng.normal(size=(d, d)))[0][:k]
    return basis * np.sqrt(np.asarray(eigenvalues) * (n - 1)) @ rot + rng.normal(size=d)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("k", [1, 3, 10])
def test_k_equal_eigenvalues_give_k(seed: int, k: int) -> None:
    x = _with_spectrum([2.5] * k, n=200, d=16, seed=seed)
    assert effective_rank(x) == pytest.approx(k, rel=1e-9)
    assert participation_ratio(x) == pytest.approx(k, rel=1e-9)


@pytest.mark.parametrize("seed", [0, 1])
def test_known_unequal_spectrum(seed: int) -> None:
    lam = np.array([4.0, 2.0, 1.0, 1.0])
    x = _with_spectrum(list(lam), n=150, d=9, seed=seed)
    np.testing.assert_allclose(covariance_eigenvalues(x)[:4], lam, rtol=1e-9)
    p = lam / lam.sum()
    assert effective_rank(x) == pytest.approx(np.exp(-(p * np.log(p)).sum()), rel=1e-9)
    assert participation_ratio(x) == pytest.approx(64.0 / 22.0, rel=1e-9)
    assert 1.0 < participation_ratio(x) < effective_rank(x) < 4.0


def test_scale_invariant_and_all_zero_is_nan() -> None:
    x = _with_spectrum([3.0, 1.0], n=50, d=5, seed=0)
    assert effective_rank(7 * x) == pytest.approx(effective_rank(x), rel=1e-12)
    assert np.isnan(effective_rank_from_eigenvalues([0.0, 0.0]))
    assert np.isnan(participation_ratio_from_eigenvalues([0.0]))


@pytest.mark.parametrize("chunk", [1, 13, 500])
def test_streaming_covariance_equals_in_memory(chunk: int) -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(311, 6)) @ rng.normal(size=(6, 6)) + 1e4
    acc = CovarianceAccumulator(6)
    for s in range(0, 311, chunk):
        acc.update(x[s : s + chunk].astype(np.float32) if chunk == 13 else x[s : s + chunk])
    xs = x.astype(np.float32).astype(np.float64) if chunk == 13 else x
    np.testing.assert_allclose(acc.covariance(), np.cov(xs, rowvar=False), rtol=1e-9, atol=1e-9)
    lam = acc.eigenvalues()
    assert effective_rank_from_eigenvalues(lam) == pytest.approx(effective_rank(xs), rel=1e-8)
    assert participation_ratio_from_eigenvalues(lam) == pytest.approx(
        participation_ratio(xs), rel=1e-8
    )
