"""CKA: properties over seeds, published values, a naive Gram implementation, streaming."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from deepwide.analysis import (
    LinearCKAAccumulator,
    hsic_unbiased,
    linear_cka,
    minibatch_cka,
    rbf_cka,
)

SEEDS = [0, 1, 2]


def _views(seed: int, n: int = 120, dx: int = 12, dy: int = 9) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, dx))
    y = x[:, :dy] @ rng.normal(size=(dy, dy)) + 0.7 * rng.normal(size=(n, dy))
    return x, y


def _orthogonal(d: int, rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(d, d)))
    return q * np.sign(np.diag(r))


# -- naive implementations, written here from the definitions -----------------------------


def naive_cka(x: np.ndarray, y: np.ndarray, debiased: bool) -> float:
    """CKA through explicit n × n Grams: HSIC = tr(KHLH) or the unbiased U-statistic."""
    n = x.shape[0]
    k, l_ = x @ x.T, y @ y.T
    h = np.eye(n) - np.ones((n, n)) / n

    def hsic(a: np.ndarray, b: np.ndarray) -> float:
        if not debiased:
            return float(np.trace(a @ h @ b @ h))
        at, bt = a - np.diag(np.diag(a)), b - np.diag(np.diag(b))
        one = np.ones(n)
        return float(
            np.trace(at @ bt)
            + (one @ at @ one) * (one @ bt @ one) / ((n - 1) * (n - 2))
            - 2 / (n - 2) * (one @ at @ bt @ one)
        ) / (n * (n - 3))

    return hsic(k, l_) / np.sqrt(hsic(k, k) * hsic(l_, l_))


def brute_force_hsic_u(k: np.ndarray, l_: np.ndarray) -> float:
    """Unbiased HSIC as the U-statistic over ordered distinct quadruples (tiny n only)."""
    n = k.shape[0]
    total, count = 0.0, 0
    for i, j, q, r in itertools.permutations(range(n), 4):
        total += k[i, j] * l_[i, j] + k[i, j] * l_[q, r] - 2 * k[i, j] * l_[i, q]
        count += 1
    return total / count


# -- properties ---------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("debiased", [False, True])
def test_self_similarity_is_one_and_symmetric(seed: int, debiased: bool) -> None:
    x, y = _views(seed)
    assert linear_cka(x, x, debiased=debiased) == pytest.approx(1.0, abs=1e-12)
    assert linear_cka(x, y, debiased=debiased) == pytest.approx(
        linear_cka(y, x, debiased=debiased), abs=1e-12
    )
    assert linear_cka(x, y, debiased=debiased) < 0.99


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("debiased", [False, True])
def test_invariant_to_orthogonal_isotropic_scale_and_shift(seed: int, debiased: bool) -> None:
    rng = np.random.default_rng(100 + seed)
    x, y = _views(seed)
    ref = linear_cka(x, y, debiased=debiased)
    x2 = 3.7 * x @ _orthogonal(x.shape[1], rng) + rng.normal(size=x.shape[1]) * 50
    y2 = 0.02 * y @ _orthogonal(y.shape[1], rng) - 1e3
    assert linear_cka(x2, y2, debiased=debiased) == pytest.approx(ref, abs=1e-9)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("debiased", [False, True])
def test_not_invariant_to_general_invertible_map(seed: int, debiased: bool) -> None:
    rng = np.random.default_rng(200 + seed)
    x, y = _views(seed)
    a = rng.normal(size=(x.shape[1], x.shape[1])) @ np.diag(np.geomspace(1, 30, x.shape[1]))
    assert abs(np.linalg.det(a)) > 1e-6
    assert abs(linear_cka(x @ a, y, debiased=debiased) - linear_cka(x, y, debiased=debiased)) > 1e-2


def test_published_known_values() -> None:
    np.random.seed(1337)
    x = np.random.randn(100, 10)
    y = np.random.randn(100, 10) + x
    assert linear_cka(x, y) == pytest.approx(0.55761, abs=5e-6)
    assert linear_cka(x, y, debiased=True) == pytest.approx(0.51346, abs=5e-6)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("debiased", [False, True])
@pytest.mark.parametrize("shape", [(60, 7, 5), (20, 40, 30)])  # feature-space route and Gram route
def test_matches_naive_gram_implementation(
    seed: int, debiased: bool, shape: tuple[int, int, int]
) -> None:
    n, dx, dy = shape
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, dx)) + 5.0  # uncentred on purpose: unbiased HSIC is shift-invariant
    y = x[:, : min(dx, dy)] @ rng.normal(size=(min(dx, dy), dy)) + rng.normal(size=(n, dy))
    xc, yc = (x, y) if debiased else (x - x.mean(0), y - y.mean(0))
    assert linear_cka(x, y, debiased=debiased) == pytest.approx(
        naive_cka(xc, yc, debiased), abs=1e-10
    )


@pytest.mark.parametrize("seed", SEEDS)
def test_unbiased_hsic_formula_equals_u_statistic(seed: int) -> None:
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=(7, 3)), rng.normal(size=(7, 2))
    k, l_ = x @ x.T, y @ y.T
    assert hsic_unbiased(k, l_) == pytest.approx(brute_force_hsic_u(k, l_), rel=1e-10)


def test_debiasing_removes_dimensionality_bias() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(50, 1000)), rng.normal(size=(50, 1000))
    assert linear_cka(x, y) > 0.9  # the published pitfall: 0.95 at n=50, d=1000
    assert abs(linear_cka(x, y, debiased=True)) < 0.05


def test_torch_inputs_give_the_same_value() -> None:
    x, y = _views(3)
    got = linear_cka(torch.from_numpy(x).float(), torch.from_numpy(y).float(), debiased=True)
    assert isinstance(got, float)
    assert got == pytest.approx(linear_cka(x, y, debiased=True), abs=1e-5)


def test_mismatched_rows_raise() -> None:
    with pytest.raises(ValueError, match="same number of rows"):
        linear_cka(np.zeros((5, 2)), np.zeros((6, 2)))


# -- RBF and minibatch ---------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_rbf_cka_properties_and_limit(seed: int) -> None:
    rng = np.random.default_rng(seed)
    x, y = _views(seed, n=80)
    assert rbf_cka(x, x) == pytest.approx(1.0, abs=1e-12)
    assert rbf_cka(x, y) == pytest.approx(rbf_cka(y, x), abs=1e-12)
    # the median bandwidth scales with the data: invariant to rotation, isotropic scale, shift
    assert rbf_cka(5 * x @ _orthogonal(x.shape[1], rng) + 3, y) == pytest.approx(
        rbf_cka(x, y), abs=1e-9
    )
    lin = linear_cka(x, y)
    gaps = [abs(rbf_cka(x, y, threshold=t) - lin) for t in (0.5, 5.0, 50.0, 500.0)]
    assert gaps[-1] < 1e-4
    assert gaps[-1] < gaps[1] < gaps[0]


def test_rbf_debiased_matches_linear_debiased_in_the_limit() -> None:
    x, y = _views(4, n=60)
    assert rbf_cka(x, y, threshold=1e3, debiased=True) == pytest.approx(
        linear_cka(x, y, debiased=True), abs=1e-4
    )


@pytest.mark.parametrize("seed", SEEDS)
def test_one_batch_minibatch_cka_equals_debiased(seed: int) -> None:
    x, y = _views(seed)
    assert minibatch_cka([x], [y]) == pytest.approx(linear_cka(x, y, debiased=True), abs=1e-12)


def test_minibatch_cka_many_batches() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4000, 6))
    y = x @ rng.normal(size=(6, 6)) + rng.normal(size=(4000, 6))
    bx = np.array_split(x, 10)
    by = np.array_split(y, 10)
    # equal batches: the mean of unbiased HSICs estimates the same population CKA
    assert minibatch_cka(bx, by) == pytest.approx(linear_cka(x, y, debiased=True), abs=0.02)
    assert minibatch_cka(bx, bx) == pytest.approx(1.0, abs=1e-12)
    with pytest.warns(UserWarning, match="dropped 1 batch"):
        minibatch_cka(bx + [x[:3]], by + [y[:3]])


# -- streaming ------------------------------------------------------------------------------


def _layers(seed: int, n: int, dims: list[int], offset: float) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n, max(dims)))
    return [
        (base[:, :d] @ rng.normal(size=(d, d)) + rng.normal(size=(n, d))) * (1 + i)
        + offset * rng.normal(size=d)
        for i, d in enumerate(dims)
    ]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("chunk", [1, 37, 1000])
def test_streaming_grid_equals_in_memory(seed: int, chunk: int) -> None:
    n = 301
    a = _layers(seed, n, [8, 8, 5], offset=1e3)  # a large mean: the first-chunk shift matters
    b = _layers(seed + 10, n, [6, 11], offset=-300.0)
    b[0] = a[1][:, :6] + 0.3 * b[0] / 1e3  # one related pair
    acc = LinearCKAAccumulator([8, 8, 5], [6, 11])
    for s in range(0, n, chunk):
        acc.update([x[s : s + chunk] for x in a], [torch.from_numpy(y[s : s + chunk]) for y in b])
    assert acc.n == n
    for debiased in (False, True):
        expected = np.array([[linear_cka(x, y, debiased=debiased) for y in b] for x in a])
        np.testing.assert_allclose(acc.similarity(debiased=debiased), expected, atol=1e-9)
    assert acc.similarity(debiased=True)[1, 0] > 0.5


def test_streaming_float32_chunks_agree() -> None:
    a = _layers(5, 500, [16, 16], offset=10.0)
    acc = LinearCKAAccumulator([16, 16], [16, 16])
    for s in range(0, 500, 64):
        acc.update(
            [x[s : s + 64].astype(np.float32) for x in a],
            [x[s : s + 64].astype(np.float32) for x in a],
        )
    grid = acc.similarity(debiased=True)
    assert np.diag(grid) == pytest.approx([1.0, 1.0], abs=1e-9)
    assert grid[0, 1] == pytest.approx(grid[1, 0], abs=1e-12)
    assert grid[0, 1] == pytest.approx(
        linear_cka(a[0].astype(np.float32), a[1].astype(np.float32), debiased=True), abs=1e-9
    )


def test_accumulator_rejects_bad_chunks() -> None:
    acc = LinearCKAAccumulator([4, 4], [3])
    with pytest.raises(ValueError, match="expected 2 layers"):
        acc.update([np.zeros((5, 4))], [np.zeros((5, 3))])
    with pytest.raises(ValueError, match="expected width 3"):
        acc.update([np.zeros((5, 4))] * 2, [np.zeros((5, 4))])
    with pytest.raises(ValueError, match="need at least 4 rows"):
        acc.similarity(debiased=True)
