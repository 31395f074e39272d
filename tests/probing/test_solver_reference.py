"""The solver against a converged scikit-learn search when features outnumber samples (#18).

Utterance-level tasks on a small corpus have fewer training samples than dimensions (here 140
utterances × 256 dims, 20 classes, 20 dev): weak penalties nearly separate the training set,
where a max-gradient test alone stops far from the optimum, and 20 dev samples make one dev
sample worth 0.05 accuracy, where float32 rounding used to drop a penalty from the candidates.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from deepwide.probing.solver import DEFAULT_PENALTIES, fit_softmax_path, sklearn_c, standardise

GAP_TOL = 1e-3  # the solver's default relative objective gap for the fits it can choose


def _utterance_problem(seed: int, layers: int = 3, k: int = 20, d: int = 256,
                       signal: tuple[float, ...] = (0.22, 0.27, 0.32)):
    """Pooled features of a speaker task: 7 train, 1 dev, 2 test utterances per class."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    mix = q * (0.3 + 3.0 * np.exp(-np.arange(d) / 24.0))  # anisotropic, correlated dimensions
    ys = [np.repeat(np.arange(k), c) for c in (7, 1, 2)]
    per_layer = []
    for layer in range(layers):
        centres = rng.normal(size=(k, d))
        per_layer.append([(signal[layer] * centres[y] + rng.normal(size=(len(y), d))) @ mix + 1.5 for y in ys])
    xs = [torch.from_numpy(np.stack([p[s] for p in per_layer]).astype(np.float32)) for s in range(3)]
    standardise(*xs)
    return xs, ys


def _objective(x: np.ndarray, y: np.ndarray, coef: np.ndarray, intercept: np.ndarray, lam: float) -> float:
    """Our objective in float64: mean NLL + λ/2·||W||² (coef ``(d, K)``)."""
    z = x @ coef + intercept
    z = z - z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-logp[np.arange(len(y)), y].mean() + 0.5 * lam * (coef**2).sum())


def _sklearn_search(xs, ys, lams):
    """The protocol by hand, converged: per layer and penalty, lbfgs in float64 at tol 1e-10
    (warm-started along the path), exact dev hit counts, first best (ties → stronger penalty).

    Returns:
        ``hits (B, P)``, ``test accuracy (B, P)``, ``objective f* on our scale (B, P)``.
    """
    xt, xd, xe = (x.double().numpy() for x in xs)
    yt, yd, ye = ys
    nb, n = xt.shape[0], len(yt)
    hits, test, fstar = np.zeros((nb, len(lams)), np.int64), np.zeros((nb, len(lams))), np.zeros((nb, len(lams)))
    for b in range(nb):
        clf = LogisticRegression(tol=1e-10, max_iter=20_000, warm_start=True)
        for p, lam in enumerate(lams):
            clf.set_params(C=sklearn_c(lam, n))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                clf.fit(xt[b], yt)
            hits[b, p] = int((clf.predict(xd[b]) == yd).sum())
            test[b, p] = (clf.predict(xe[b]) == ye).mean()
            # sklearn's objective is ours times C·n; compute ours from its coefficients
            fstar[b, p] = _objective(xt[b], yt, clf.coef_.T, clf.intercept_, lam)
    return hits, test, fstar


@pytest.fixture(scope="module", params=[10, 21])
def case(request: pytest.FixtureRequest):
    xs, ys = _utterance_problem(request.param)
    lams = np.array(DEFAULT_PENALTIES)
    path = fit_softmax_path(xs[0], torch.from_numpy(ys[0]), 20, lams, x_dev=xs[1], y_dev=torch.from_numpy(ys[1]))
    return xs, ys, lams, path, _sklearn_search(xs, ys, lams)


def test_same_choice_and_test_accuracy_as_converged_sklearn(case) -> None:
    """Seed 10 failed before through unconverged weak-penalty fits, seed 21 through the float32
    margin (it passed with refine_margin=0.0501)."""
    xs, ys, lams, path, (hits, test, _) = case
    assert xs[0].shape[1] < xs[0].shape[2]  # n < d
    best = np.argmax(hits, axis=1)
    assert np.array_equal(path.best_index, best), (path.dev_hits, hits)
    acc = (path.logits(xs[2]).argmax(2).numpy() == ys[2][None]).mean(1)
    np.testing.assert_array_equal(acc, test[np.arange(len(best)), best])


def test_every_choosable_fit_is_within_the_gap_of_the_optimum(case) -> None:
    """Every refined fit (the choice is made among them) is within GAP_TOL of scikit-learn's
    converged objective, and the reported bound holds for every fit, refined or swept."""
    xs, ys, lams, path, (hits, _, fstar) = case
    refined = path.converged
    best = path.best_index
    assert refined[np.arange(len(best)), best].all()
    # every penalty within one dev sample of the best refined count was refined
    top = np.where(refined, path.dev_hits, -1).max(1)
    assert refined[path.dev_hits >= top[:, None] - 1].all()
    rel = (path.objective - fstar) / fstar
    assert np.all(rel[refined] <= GAP_TOL), rel
    assert np.all(rel >= -1e-6)  # nothing below the optimum (float64 objective)
    assert np.all(path.objective - fstar <= path.gap_bound + 1e-6 * fstar)  # the certificate
    # the chosen fits' own coefficients give that objective
    for b in range(len(best)):
        f = _objective(xs[0][b].double().numpy(), ys[0], path.coef[b].double().numpy(),
                       path.intercept[b].double().numpy(), float(lams[best[b]]))
        assert (f - fstar[b, best[b]]) / fstar[b, best[b]] <= GAP_TOL


def test_dev_accuracy_is_an_exact_count() -> None:
    """Dev accuracies are hit counts over m (float64): 18/20 is 0.9, not float32's 0.8999999762."""
    xs, ys = _utterance_problem(21)
    path = fit_softmax_path(xs[0], torch.from_numpy(ys[0]), 20, DEFAULT_PENALTIES,
                            x_dev=xs[1], y_dev=torch.from_numpy(ys[1]))
    m = len(ys[1])
    counts = path.dev_accuracy * m
    np.testing.assert_array_equal(counts, np.round(counts))  # float32 means were not exact
    assert path.dev_hits.dtype.kind == "i"
    np.testing.assert_array_equal(path.dev_accuracy, path.dev_hits / m)
    assert np.array_equal(path.best_index, np.argmax(np.where(path.converged, path.dev_hits, -1), axis=1))


def test_weak_penalty_fit_reaches_its_optimum_when_n_below_d() -> None:
    """At λ = 1e-5 with 140 samples × 256 dims the max-gradient test alone stopped after a few
    iterations far from the optimum; the gap certificate keeps going to within GAP_TOL."""
    xs, ys = _utterance_problem(10, layers=1)
    lam = 1e-5
    path = fit_softmax_path(xs[0], torch.from_numpy(ys[0]), 20, [lam])
    x = xs[0][0].double().numpy()
    ref = LogisticRegression(C=sklearn_c(lam, len(ys[0])), tol=1e-10, max_iter=20_000).fit(x, ys[0])
    fstar = _objective(x, ys[0], ref.coef_.T, ref.intercept_, lam)
    f = _objective(x, ys[0], path.coef[0].double().numpy(), path.intercept[0].double().numpy(), lam)
    assert path.converged.all()
    assert (f - fstar) / fstar <= GAP_TOL, (f, fstar)
    assert f - fstar <= float(path.gap_bound[0, 0]) + 1e-6 * fstar


def test_frame_level_tolerance_is_certified_against_sklearn() -> None:
    """The frame-level setting (``gap_tol`` 1e-2, sweep 1e-1) on a frame-like problem — many
    samples per dimension, overlapping classes: every fit the choice is made among is within
    1e-2 (relative) of scikit-learn's converged objective, the reported bound holds for every
    fit, and the choice is scikit-learn's or one whose dev count ties or is within one sample."""
    rng = np.random.default_rng(3)
    k, d, layers = 12, 24, 2
    ns = (3000, 600, 600)
    mix = rng.normal(size=(d, d)) * (0.2 + np.exp(-np.arange(d) / 6.0))
    centres = rng.normal(size=(layers, k, d)) * np.array([0.25, 0.4])[:, None, None]
    ys = [rng.integers(0, k, size=n) for n in ns]
    xs = [torch.from_numpy(np.stack([(centres[b][y] + rng.normal(size=(len(y), d))) @ mix for b in range(layers)])
                           .astype(np.float32)) for y in ys]
    standardise(*xs)
    lams = np.array(DEFAULT_PENALTIES)
    path = fit_softmax_path(xs[0], torch.from_numpy(ys[0]), k, lams, x_dev=xs[1], y_dev=torch.from_numpy(ys[1]),
                            gap_tol=1e-2, path_gap_tol=1e-1)
    hits, _, fstar = _sklearn_search(xs, ys, lams)
    refined = path.converged
    assert refined[np.arange(layers), path.best_index].all()
    rel = (path.objective - fstar) / fstar
    assert np.all(rel[refined] <= 1e-2) and np.all(rel >= -1e-6), rel
    assert np.all(path.objective - fstar <= path.gap_bound + 1e-6 * fstar)
    chosen = hits[np.arange(layers), path.best_index]
    assert np.all(chosen >= hits.max(axis=1) - 1), (path.dev_hits, hits)
