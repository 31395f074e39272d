"""The SUPERB weighted-sum probe."""

from __future__ import annotations

import numpy as np

from deepwide.probing.weighted import fit_weighted_sum, layer_norms


def _layers(seed: int, informative: int, n: int = 600, layers: int = 4, d: int = 8):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    means = rng.normal(size=(3, d)) * 2
    x = rng.normal(size=(layers, n, d)).astype(np.float32)
    x[informative] += means[y]
    return x, y


def test_weight_goes_to_the_informative_layer() -> None:
    for seed, layer in ((0, 1), (1, 3)):
        x, y = _layers(seed, layer)
        res = fit_weighted_sum(x[:, :400], y[:400], 3, x_dev=x[:, 400:], y_dev=y[400:], steps=400, lr=2e-2, seed=seed)
        assert np.isclose(res.weights.sum(), 1.0)
        assert int(np.argmax(res.weights)) == layer
        acc = (res.logits(x[:, 400:]).argmax(1).numpy() == y[400:]).mean()
        assert acc > 0.8 and res.dev_accuracy == acc


def test_seeded_and_zero_initialised() -> None:
    x, y = _layers(2, 0)
    a = fit_weighted_sum(x, y, 3, steps=30, seed=5)
    b = fit_weighted_sum(x, y, 3, steps=30, seed=5)
    np.testing.assert_array_equal(a.weights, b.weights)
    untrained = fit_weighted_sum(x, y, 3, steps=0, seed=5)
    np.testing.assert_allclose(untrained.weights, 0.25)


def test_layer_norms() -> None:
    x = np.zeros((2, 3, 4), np.float32)
    x[0, :, 0] = 3.0
    x[1, :, :2] = 1.0
    np.testing.assert_allclose(layer_norms(x), [3.0, np.sqrt(2.0)])


def test_frozen_layer_weights_stay_uniform_and_the_head_still_learns() -> None:
    """``freeze_layer_weights`` (scripts/ws-probe-diagnosis.py) trains the head alone."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    x = rng.normal(size=(4, 300, 8)).astype(np.float32)
    x[2] += 2.0 * np.eye(3, 8, dtype=np.float32)[y]  # only layer 2 knows the class
    free = fit_weighted_sum(x, y, 3, steps=300, seed=0)
    frozen = fit_weighted_sum(x, y, 3, steps=300, seed=0, freeze_layer_weights=True)
    np.testing.assert_allclose(frozen.weights, np.full(4, 0.25), atol=1e-12)
    assert free.weights.argmax() == 2 and free.weights[2] > 0.3
    assert float((frozen.logits(x).argmax(1).numpy() == y).mean()) > 0.6
