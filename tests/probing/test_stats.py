"""Bootstrap intervals, EER and macro-F1 by their properties and against naive versions."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import f1_score

from deepwide.probing.stats import (
    bootstrap_eer_ci,
    bootstrap_mean_ci,
    equal_error_rate,
    macro_f1,
    majority_accuracy,
)


def _grouped_correct(n_utt: int, frames: int, p: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    utt_p = np.clip(rng.normal(p, 0.15, n_utt), 0, 1)  # utterances differ in difficulty
    correct = (rng.random((n_utt, frames)) < utt_p[:, None]).astype(float).ravel()
    return correct, np.repeat(np.arange(n_utt), frames)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ci_contains_estimate_and_shrinks_with_n(seed: int) -> None:
    widths = []
    for n_utt in (20, 80, 320):
        c, g = _grouped_correct(n_utt, 10, 0.7, seed)
        lo, hi = bootstrap_mean_ci(c, g, n_boot=500, seed=seed)
        assert lo <= c.mean() <= hi
        widths.append(hi - lo)
    assert widths[0] > widths[1] > widths[2]
    assert widths[0] / widths[2] > 2.5  # ≈ √16 = 4 for i.i.d. utterances


def test_ci_resamples_utterances_not_frames() -> None:
    # frames of one utterance are perfectly correlated: the utterance bootstrap must be wider
    rng = np.random.default_rng(0)
    per_utt = (rng.random(40) < 0.5).astype(float)
    c = np.repeat(per_utt, 25)
    lo_u, hi_u = bootstrap_mean_ci(c, np.repeat(np.arange(40), 25), seed=0)
    lo_f, hi_f = bootstrap_mean_ci(c, np.arange(c.size), seed=0)
    assert (hi_u - lo_u) > 3 * (hi_f - lo_f)


def test_ci_is_seeded_and_columnwise() -> None:
    c, g = _grouped_correct(50, 5, 0.6, 0)
    cols = np.stack([c, 1 - c], axis=1)
    lo, hi = bootstrap_mean_ci(cols, g, seed=4)
    lo1, hi1 = bootstrap_mean_ci(c, g, seed=4)
    assert lo[0] == lo1 and hi[0] == hi1
    np.testing.assert_allclose([lo[1], hi[1]], [1 - hi1, 1 - lo1], atol=1e-12)


def test_eer_known_values() -> None:
    scores = np.r_[np.arange(10.0), np.arange(10.0) + 100]
    targets = np.r_[np.zeros(10, bool), np.ones(10, bool)]
    assert equal_error_rate(scores, targets) == 0.0
    assert equal_error_rate(-scores, targets) == 1.0
    assert equal_error_rate(np.zeros(20), targets) == 0.5  # constant score
    # two unit Gaussians 2 apart: EER = Φ(−1)
    rng = np.random.default_rng(0)
    s = np.r_[rng.normal(0, 1, 20000), rng.normal(2, 1, 20000)]
    t = np.r_[np.zeros(20000, bool), np.ones(20000, bool)]
    assert equal_error_rate(s, t) == pytest.approx(norm.cdf(-1), abs=0.006)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_eer_random_scores_near_half(seed: int) -> None:
    rng = np.random.default_rng(seed)
    s, t = rng.normal(size=4000), rng.random(4000) < 0.3
    assert equal_error_rate(s, t) == pytest.approx(0.5, abs=0.04)


def test_eer_weights_equal_replication() -> None:
    rng = np.random.default_rng(1)
    s, t = rng.normal(size=60) + np.r_[np.zeros(30), np.ones(30)], np.r_[np.zeros(30, bool), np.ones(30, bool)]
    w = rng.integers(0, 4, size=60)
    assert equal_error_rate(s, t, w) == pytest.approx(equal_error_rate(np.repeat(s, w), np.repeat(t, w)))


def test_eer_ci_contains_estimate() -> None:
    rng = np.random.default_rng(2)
    n = 300
    a, b = rng.integers(0, 80, n), rng.integers(0, 80, n)
    t = rng.random(n) < 0.5
    s = rng.normal(size=n) + 1.5 * t
    lo, hi = bootstrap_eer_ci(s, t, a, b, n_boot=300, seed=0)
    assert lo <= equal_error_rate(s, t) <= hi and hi - lo > 0.02


def test_macro_f1_matches_sklearn_and_majority() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.integers(0, 7, 500), rng.integers(0, 9, 500)
    assert macro_f1(a, b) == pytest.approx(f1_score(a, b, average="macro"))
    assert majority_accuracy(np.array([1, 1, 2]), np.array([1, 2, 2, 2])) == 0.25


def test_vectorised_eers_match_single_rows() -> None:
    from deepwide.probing.stats import equal_error_rates

    rng = np.random.default_rng(5)
    s = np.round(rng.normal(size=80), 1)  # ties
    t = rng.random(80) < 0.4
    w = rng.integers(0, 3, size=(20, 80)).astype(float)
    w[3, t] = 0  # a row without targets → NaN
    many = equal_error_rates(s, t, w)
    w[3, t] = 0  # keep the NaN row
    replicated = [equal_error_rate(np.repeat(s, row.astype(int)), np.repeat(t, row.astype(int))) for row in w]
    np.testing.assert_allclose(many, replicated)
    assert np.isnan(many[3])
