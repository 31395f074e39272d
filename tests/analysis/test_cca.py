"""CCA family: invariances, degeneracy and its warning, SVCCA, PWCCA vs a naive version, label-CCA."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from deepwide.analysis import (
    UnderdeterminedCCAWarning,
    canonical_correlations,
    cca_similarity,
    fit_cca,
    label_cca,
    pwcca,
    svcca,
)
from deepwide.analysis.cca import _fold_ids, keep_for_variance

SEEDS = [0, 1, 2]


def _views(seed: int, n: int = 400, dx: int = 10, dy: int = 6) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 4))
    x = z @ rng.normal(size=(4, dx)) + rng.normal(size=(n, dx))
    y = z @ rng.normal(size=(4, dy)) + rng.normal(size=(n, dy))
    return x, y


def _inv_sqrt(c: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(c)
    return (v / np.sqrt(w)) @ v.T


def naive_pwcca(x: np.ndarray, y: np.ndarray, weights_from: str) -> float:
    """PWCCA from the definition with covariance whitening (full-rank views, n > d)."""
    xc, yc = x - x.mean(0), y - y.mean(0)
    wx, wy = _inv_sqrt(xc.T @ xc), _inv_sqrt(yc.T @ yc)
    u, rho, vt = np.linalg.svd(wx @ (xc.T @ yc) @ wy)
    k = min(x.shape[1], y.shape[1])
    if weights_from == "x":
        h, z = xc @ (wx @ u[:, :k]), xc
    else:
        h, z = yc @ (wy @ vt[:k].T), yc
    h = h / np.linalg.norm(h, axis=0)
    alpha = np.abs(h.T @ z).sum(axis=1)
    return float(np.sum(alpha / alpha.sum() * rho[:k]))


@pytest.mark.parametrize("seed", SEEDS)
def test_cca_invariant_to_invertible_linear_maps(seed: int) -> None:
    rng = np.random.default_rng(seed)
    x, y = _views(seed)
    a = rng.normal(size=(10, 10)) @ np.diag(np.geomspace(1, 100, 10))
    b = rng.normal(size=(6, 6))
    ref = canonical_correlations(x, y)
    got = canonical_correlations(x @ a + 7.0, y @ b - 3.0)
    np.testing.assert_allclose(got, ref, atol=1e-9)
    assert svcca(x @ a, y @ b, variance=1.0) == pytest.approx(cca_similarity(x, y), abs=1e-9)
    assert 0.2 < ref.mean() < 0.95
    assert np.all(np.diff(ref) <= 1e-12)


@pytest.mark.parametrize("seed", SEEDS)
def test_cca_of_a_view_with_itself_is_one_and_symmetric(seed: int) -> None:
    x, y = _views(seed)
    assert cca_similarity(x, x) == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(
        canonical_correlations(x, y), canonical_correlations(y, x), atol=1e-12
    )


def test_covariance_cca_agrees_with_svd_cca() -> None:
    x, y = _views(7)
    np.testing.assert_allclose(fit_cca(x, y, reg=0.0).rho, canonical_correlations(x, y), atol=1e-9)


@pytest.mark.parametrize("seed", SEEDS)
def test_rho_is_one_once_width_reaches_n_and_it_warns(seed: int) -> None:
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=(20, 25)), rng.normal(size=(20, 30))  # independent!
    with pytest.warns(UnderdeterminedCCAWarning):
        rho = canonical_correlations(x, y)
    assert rho.shape == (19,)  # centring leaves rank n − 1
    np.testing.assert_allclose(rho, 1.0, atol=1e-9)


def test_warning_only_when_width_not_well_below_n() -> None:
    rng = np.random.default_rng(0)
    with pytest.warns(UnderdeterminedCCAWarning, match="40 samples for width 10"):
        canonical_correlations(rng.normal(size=(40, 10)), rng.normal(size=(40, 3)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        canonical_correlations(rng.normal(size=(100, 10)), rng.normal(size=(100, 3)))


def test_keep_for_variance() -> None:
    s = np.sqrt([50.0, 30.0, 19.0, 1.0])
    assert keep_for_variance(s, 0.99) == 3
    assert keep_for_variance(s, 0.8) == 2
    assert keep_for_variance(s, 0.81) == 3
    assert keep_for_variance(s, 1.0) == 4


@pytest.mark.parametrize("seed", SEEDS)
def test_svcca_drops_low_variance_noise_and_is_rotation_invariant(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 600
    z = rng.normal(size=(n, 3))
    x = np.hstack([z @ rng.normal(size=(3, 3)) * 10, 0.01 * rng.normal(size=(n, 5))])
    y = np.hstack([z @ rng.normal(size=(3, 3)) * 10, 0.01 * rng.normal(size=(n, 5))])
    assert svcca(x, y) == pytest.approx(1.0, abs=1e-3)  # the noise dims hold < 1 % of variance
    assert svcca(x, y, variance=1.0) < 0.6  # plain CCA counts the unrelated noise dims
    q, _ = np.linalg.qr(rng.normal(size=(8, 8)))
    assert svcca(3 * x @ q + 1, y) == pytest.approx(svcca(x, y), abs=1e-9)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("dims", [(12, 5), (5, 12)])
@pytest.mark.parametrize("weights_from", ["x", "y"])
def test_pwcca_matches_naive_in_both_view_orders(
    seed: int, dims: tuple[int, int], weights_from: str
) -> None:
    x, y = _views(seed, dx=dims[0], dy=dims[1])
    got = pwcca(x, y, weights_from=weights_from)
    assert got == pytest.approx(naive_pwcca(x, y, weights_from), abs=1e-9)
    swapped = "y" if weights_from == "x" else "x"
    assert pwcca(y, x, weights_from=swapped) == pytest.approx(got, abs=1e-9)
    assert 0.0 < got < 1.0


def test_pwcca_depends_on_the_weighting_view_and_is_basis_aware() -> None:
    x, y = _views(3, dx=12, dy=5)
    assert abs(pwcca(x, y, "x") - pwcca(x, y, "y")) > 1e-3
    rng = np.random.default_rng(0)
    perm = rng.permutation(12)
    assert pwcca(4 * x[:, perm] + 2, y) == pytest.approx(
        pwcca(x, y), abs=1e-9
    )  # neuron order, scale, shift
    with pytest.raises(ValueError, match="weights_from"):
        pwcca(x, y, weights_from="z")  # type: ignore[arg-type]


def test_torch_inputs() -> None:
    x, y = _views(1)
    assert svcca(torch.from_numpy(x), torch.from_numpy(y)) == pytest.approx(svcca(x, y), abs=1e-12)


# -- label CCA --------------------------------------------------------------------------------


def _labelled(
    seed: int, strength: float, n: int = 600, d: int = 12, classes: int = 6
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, size=n)
    means = rng.normal(size=(classes, d))
    return strength * means[labels] + rng.normal(size=(n, d)), labels


@pytest.mark.parametrize("seed", SEEDS)
def test_label_cca_finds_planted_signal_and_not_noise(seed: int) -> None:
    strong, labels = _labelled(seed, 2.0)
    weak, _ = _labelled(seed, 0.5)
    noise = np.random.default_rng(seed + 50).normal(size=strong.shape)
    s_strong = label_cca(strong, labels, seed=seed)
    s_weak = label_cca(weak, labels, seed=seed)
    s_noise = label_cca(noise, labels, seed=seed)
    assert s_strong > s_weak > s_noise + 0.1
    assert s_strong > 0.6
    assert abs(s_noise) < 0.1  # held out: no inflation from fitting
    assert label_cca(strong, labels.astype(str), seed=seed) == pytest.approx(s_strong, abs=1e-12)


def test_label_cca_is_reproducible_and_seed_dependent() -> None:
    x, labels = _labelled(0, 1.0)
    assert label_cca(x, labels, seed=3) == label_cca(x, labels, seed=3)
    assert label_cca(x, labels, seed=3) != label_cca(x, labels, seed=4)


def test_folds_keep_groups_together_and_stratify() -> None:
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(40), 7)
    codes = np.repeat(rng.integers(0, 4, size=40), 7)  # label constant within a group
    folds = _fold_ids(codes, groups, 5, np.random.default_rng(1))
    for g in range(40):
        assert np.unique(folds[groups == g]).size == 1
    for c in range(4):
        n_groups = np.unique(groups[codes == c]).size
        per_fold = np.bincount(folds[codes == c] // 1, minlength=5) / 7
        assert per_fold.max() - per_fold.min() <= 1 or n_groups < 5
    plain = _fold_ids(np.repeat(np.arange(3), 10), None, 5, np.random.default_rng(2))
    for c in range(3):
        np.testing.assert_array_equal(np.bincount(plain[c * 10 : (c + 1) * 10], minlength=5), 2)


def test_label_cca_with_groups_and_a_single_class() -> None:
    x, labels = _labelled(1, 2.0)
    groups = np.arange(600) // 10
    assert label_cca(x, labels, groups=groups) > 0.6
    with pytest.warns(RuntimeWarning, match="two classes"):
        assert np.isnan(label_cca(x, np.zeros(600)))
