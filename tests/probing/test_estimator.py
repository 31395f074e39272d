"""The scikit-learn-compatible LinearProbe."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from deepwide.probing.estimator import LinearProbe
from deepwide.probing.solver import sklearn_c


def _data(seed: int = 0, n: int = 300, d: int = 8):
    rng = np.random.default_rng(seed)
    y = rng.choice(np.array(["a", "b", "c"]), size=n)
    centres = {"a": 0.0, "b": 1.0, "c": -1.0}
    x = rng.normal(size=(n, d)) * 3 + 10 + np.array([centres[v] for v in y])[:, None] * np.linspace(0, 3, d)
    return x, y


def test_fit_predict_score_proba() -> None:
    x, y = _data()
    probe = LinearProbe(random_state=0).fit(x[:200], y[:200])
    assert list(probe.classes_) == ["a", "b", "c"]
    proba = probe.predict_proba(x[200:])
    assert proba.shape == (100, 3)
    np.testing.assert_allclose(proba.sum(1), 1.0)
    assert set(probe.predict(x[200:])) <= {"a", "b", "c"}
    assert probe.score(x[200:], y[200:]) > 0.7
    assert probe.penalty_ in probe.penalties and probe.dev_scores_.shape == (len(probe.penalties),)
    assert probe.n_features_in_ == 8


def test_matches_sklearn_on_raw_features_at_fixed_penalty() -> None:
    x, y = _data(1)
    lam = 1e-2
    probe = LinearProbe(penalty=lam, tol=1e-6).fit(x, y)
    z = StandardScaler().fit_transform(x)
    ref = LogisticRegression(C=sklearn_c(lam, len(y)), tol=1e-10, max_iter=5000).fit(z, y)
    np.testing.assert_allclose(probe.predict_proba(x), ref.predict_proba(z), atol=2e-3)
    # coef_ lives on the original features
    np.testing.assert_allclose(probe.decision_function(x), x @ probe.coef_.T + probe.intercept_)


def test_sklearn_api() -> None:
    x, y = _data(2)
    probe = LinearProbe(penalty=1e-2)
    assert clone(probe).get_params()["penalty"] == 1e-2
    probe.set_params(penalty=1e-1)
    assert probe.penalty == 1e-1
    with pytest.raises(NotFittedError):
        probe.predict(x)
    scores = cross_val_score(make_pipeline(StandardScaler(), LinearProbe(penalty=1e-2)), x, y, cv=3)
    assert scores.shape == (3,) and scores.min() > 0.6
    with pytest.raises(ValueError):
        LinearProbe().fit(x, y).predict(x[:, :3])


def test_groups_keep_held_out_part_whole() -> None:
    x, y = _data(3)
    groups = np.repeat(np.arange(30), 10)
    probe = LinearProbe(random_state=1)
    tr, dv = probe._split(np.unique(y, return_inverse=True)[1], groups)
    assert not set(groups[tr]) & set(groups[dv])
    probe.fit(x, y, groups=groups)
    assert probe.score(x, y) > 0.5  # chance is 1/3


def test_binary_follows_sklearn_convention() -> None:
    x, y = _data(4)
    keep = y != "c"
    probe = LinearProbe(penalty=1e-2).fit(x[keep], y[keep])
    assert probe.coef_.shape == (1, 8) and probe.decision_function(x).shape == (len(x),)
    p = probe.predict_proba(x)
    np.testing.assert_allclose(p[:, 1], 1 / (1 + np.exp(-probe.decision_function(x))))
    assert np.array_equal(probe.predict(x), probe.classes_[(p[:, 1] > 0.5).astype(int)])
    # the sign: positive scores mean classes_[1], as scikit-learn's own binary model says
    ref = make_pipeline(StandardScaler(), LogisticRegression(C=sklearn_c(1e-2, int(keep.sum())), max_iter=5000))
    ref.fit(x[keep], y[keep])
    assert np.mean(np.sign(probe.decision_function(x)) == np.sign(ref.decision_function(x))) > 0.95


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.SkipTestWarning")
def test_passes_sklearn_estimator_checks() -> None:
    from sklearn.utils.estimator_checks import check_estimator

    results = check_estimator(LinearProbe(penalties=(1e-1, 1e-2)), on_fail=None)
    failed = [r["check_name"] for r in results if r["status"] == "failed"]
    assert not failed, failed
