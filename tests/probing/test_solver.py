"""The batched multi-penalty solver against scikit-learn and against itself."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from deepwide.probing.solver import fit_softmax_path, sklearn_c, standardise


def _problem(seed: int, n: int = 400, d: int = 10, k: int = 4, layers: int = 3, noise: float = 1.5):
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(k, d))
    y = rng.integers(0, k, size=n)
    mix = rng.normal(size=(d, d)) * 0.5 + np.eye(d)  # correlated features
    xs = [((means[y] * (0.5 + i) + noise * rng.normal(size=(n, d))) @ mix + 2.0) for i in range(layers)]
    return np.stack(xs).astype(np.float32), y


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("penalty", [1e-1, 1e-3])
def test_matches_sklearn_at_same_penalty(seed: int, penalty: float) -> None:
    x, y = _problem(seed)
    xt = torch.from_numpy(x.copy())
    standardise(xt)
    path = fit_softmax_path(xt, torch.from_numpy(y), 4, [penalty], tol=1e-5, max_iter=2000)
    probs = torch.softmax(path.logits(xt), dim=2).numpy()
    for layer in range(x.shape[0]):
        xl = xt[layer].double().numpy()
        ref = LogisticRegression(C=sklearn_c(penalty, len(y)), tol=1e-10, max_iter=10_000).fit(xl, y)
        np.testing.assert_allclose(probs[layer], ref.predict_proba(xl), atol=2e-3)
        acc = (probs[layer].argmax(1) == y).mean()
        assert abs(acc - ref.score(xl, y)) <= 0.005
        np.testing.assert_allclose(path.coef[layer].numpy(), ref.coef_.T, atol=5e-3 * max(1, np.abs(ref.coef_).max()))
    assert path.converged.all()


def test_batched_equals_single_layers_and_path_equals_cold_start() -> None:
    x, y = _problem(5)
    xt = torch.from_numpy(x.copy())
    standardise(xt)
    grid = [1.0, 1e-1, 1e-3]
    batched = fit_softmax_path(xt, torch.from_numpy(y), 4, grid, tol=1e-5, max_iter=2000)
    p_batched = torch.softmax(batched.logits(xt), dim=2)
    for layer in range(x.shape[0]):
        single = fit_softmax_path(xt[layer : layer + 1], torch.from_numpy(y), 4, [1e-3], tol=1e-5, max_iter=2000,
                                  precondition=False, keep_history=False)
        p_single = torch.softmax(single.logits(xt[layer : layer + 1]), dim=2)
        np.testing.assert_allclose(p_batched[layer].numpy(), p_single[0].numpy(), atol=2e-3)


def test_dev_selection_picks_best_dev_penalty() -> None:
    x, y = _problem(7, n=600)
    xt = torch.from_numpy(x[:, :400].copy())
    xd = torch.from_numpy(x[:, 400:].copy())
    standardise(xt, xd)
    grid = [10.0, 1.0, 1e-2, 1e-4]
    path = fit_softmax_path(xt, torch.from_numpy(y[:400]), 4, grid, x_dev=xd, y_dev=torch.from_numpy(y[400:]))
    assert np.array_equal(path.penalties, np.sort(grid)[::-1])
    # the chosen index is the first maximum of dev accuracy (ties → the stronger penalty)
    assert np.array_equal(path.best_index, np.argmax(path.dev_accuracy, axis=1))
    dev_pred = path.logits(xd).argmax(2).numpy()
    np.testing.assert_allclose((dev_pred == y[400:]).mean(1), path.dev_accuracy.max(1))


def test_variants_reach_the_same_optimum() -> None:
    x, y = _problem(11, d=20, k=6)
    xt = torch.from_numpy(x.copy())
    standardise(xt)
    grid = [1e-1, 1e-2, 1e-3]
    ref = fit_softmax_path(xt, torch.from_numpy(y), 6, grid, tol=1e-5, max_iter=3000, precondition=False, keep_history=False)
    fast = fit_softmax_path(xt, torch.from_numpy(y), 6, grid, tol=1e-5, max_iter=3000)
    np.testing.assert_allclose(
        torch.softmax(fast.logits(xt), 2).numpy(), torch.softmax(ref.logits(xt), 2).numpy(), atol=2e-3
    )
    assert fast.stats.evaluations < ref.stats.evaluations  # the design does less work


def test_single_class_and_bad_input() -> None:
    x = torch.randn(2, 30, 4)
    path = fit_softmax_path(x, torch.zeros(30, dtype=torch.int64), 1, [1e-2])
    assert path.logits(x).shape == (2, 30, 1)
    with pytest.raises(ValueError, match="layers, samples, features"):
        fit_softmax_path(x[0], torch.zeros(30, dtype=torch.int64), 2)
    with pytest.raises(ValueError, match="positive"):
        fit_softmax_path(x, torch.zeros(30, dtype=torch.int64), 2, [0.0])


def test_standardise_uses_training_statistics() -> None:
    rng = np.random.default_rng(0)
    tr = torch.from_numpy((rng.normal(size=(2, 500, 3)) * 5 + 7).astype(np.float32))
    te = torch.from_numpy((rng.normal(size=(2, 100, 3)) * 5 + 7).astype(np.float32))
    te_raw = te.clone()
    mean, std = standardise(tr, te)
    np.testing.assert_allclose(tr.mean(1).numpy(), 0, atol=1e-4)
    np.testing.assert_allclose(tr.std(1, unbiased=False).numpy(), 1, atol=1e-4)
    np.testing.assert_allclose(te.numpy(), ((te_raw - mean) / std).numpy(), atol=1e-5)


def test_unreachable_tolerance_stops_on_stall_not_max_iter() -> None:
    x, y = _problem(3)
    xt = torch.from_numpy(x.copy())
    standardise(xt)
    path = fit_softmax_path(xt, torch.from_numpy(y), 4, [1e-2], tol=1e-12, max_iter=5000)
    assert not path.converged.any()  # float32 cannot reach 1e-12
    assert path.stats.iterations < 1000
    ok = fit_softmax_path(xt, torch.from_numpy(y), 4, [1e-2], tol=1e-4)
    np.testing.assert_allclose(path.coef.numpy(), ok.coef.numpy(), atol=1e-2 * float(ok.coef.abs().max()))


def test_max_iter_is_counted() -> None:
    x, y = _problem(4)
    xt = torch.from_numpy(x.copy())
    standardise(xt)
    short = fit_softmax_path(xt, torch.from_numpy(y), 4, [1e-3, 1e-4], tol=1e-6, max_iter=3)
    assert short.stats.max_iter_hits == 6 and not short.converged.any()
    assert short.chosen_max_iter.sum() == 3  # one chosen penalty per layer
    full = fit_softmax_path(xt, torch.from_numpy(y), 4, [1e-1], tol=1e-4)
    assert full.stats.max_iter_hits == 0 and full.converged.all()


def test_max_iter_counts_each_fit_once_through_sweep_and_refinement() -> None:
    """Sweep fits stop at max_iter and the dev candidates stop there again when refined: the
    count is of (layer, penalty) fits — 7 of these 9 (two strong-penalty sweep fits reach the
    sweep tolerance in 4 iterations); the old per-run count said 11 — and the chosen fit of
    every layer is flagged."""
    x, y = _problem(4)
    xt, xd = torch.from_numpy(x[:, :300].copy()), torch.from_numpy(x[:, 300:].copy())
    standardise(xt, xd)
    yt, yd = torch.from_numpy(y[:300]), torch.from_numpy(y[300:])
    grid = [1e-1, 1e-2, 1e-3]
    short = fit_softmax_path(xt, yt, 4, grid, x_dev=xd, y_dev=yd, tol=1e-7, max_iter=4)
    nb = xt.shape[0]
    assert short.stats.max_iter_hits == 7 <= nb * len(grid)
    assert short.chosen_max_iter.shape == (nb,) and short.chosen_max_iter.all()
    ok = fit_softmax_path(xt, yt, 4, grid, x_dev=xd, y_dev=yd, tol=1e-4, max_iter=500)
    assert ok.stats.max_iter_hits == 0 and not ok.chosen_max_iter.any()
    assert ok.converged[np.arange(nb), ok.best_index].all()


@pytest.mark.parametrize("seed", [0, 1])
def test_coarse_path_with_refinement_equals_exhaustive_search(seed: int) -> None:
    x, y = _problem(seed, n=1200, d=16, k=5)
    xt = torch.from_numpy(x[:, :800].copy())
    xd = torch.from_numpy(x[:, 800:].copy())
    standardise(xt, xd)
    grid = [1.0, 1e-1, 1e-2, 1e-3, 1e-4]
    args = (xt, torch.from_numpy(y[:800]), 5, grid)
    kw = dict(x_dev=xd, y_dev=torch.from_numpy(y[800:]), tol=1e-4)
    fast = fit_softmax_path(*args, **kw)  # sweep at 1e-3, candidates refined to 1e-4
    exhaustive = fit_softmax_path(*args, path_tol=1e-4, **kw)  # every penalty at 1e-4
    assert np.array_equal(fast.best_index, exhaustive.best_index)
    # both chosen fits meet tol = 1e-4 (scikit-learn's default): near-separable layers are flat
    # there, so compare predictions rather than probabilities
    agree = (fast.logits(xd).argmax(2) == exhaustive.logits(xd).argmax(2)).float().mean(1)
    assert float(agree.min()) >= 0.99
    assert fast.converged[np.arange(3), fast.best_index].all()  # the reported fits meet tol
    assert fast.stats.evaluations < exhaustive.stats.evaluations
