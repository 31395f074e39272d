"""A scikit-learn-compatible linear probe for notebooks: ``fit/predict/predict_proba/score``.

``LinearProbe`` is the deepwide solver (:func:`deepwide.probing.solver.fit_softmax_path`) for
one feature matrix: features are standardised with the training statistics, the L2 penalty is
chosen on a held-out part of the training data (grouped by ``groups`` when given, e.g.
utterance ids of frames), and the probe is then refitted on all of the training data at that
penalty. Pass ``penalty=`` to skip the search.

Example:
    >>> from deepwide.probing.estimator import LinearProbe
    >>> probe = LinearProbe(random_state=0).fit(x_train, y_train)
    >>> probe.score(x_test, y_test), probe.penalty_
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.model_selection import GroupShuffleSplit, ShuffleSplit, StratifiedShuffleSplit
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from deepwide.probing.solver import DEFAULT_PENALTIES, fit_softmax_path

log = logging.getLogger(__name__)


class LinearProbe(ClassifierMixin, BaseEstimator):
    """Multinomial logistic-regression probe with an L2 penalty chosen on held-out data.

    Args:
        penalty: fixed L2 strength ``λ`` (mean-loss scale: scikit-learn's
            ``C = 1 / (λ · n_samples)``); ``None`` → choose from ``penalties``.
        penalties: the grid searched when ``penalty`` is None.
        dev_size: fraction of the training data held out to choose the penalty.
        tol: gradient tolerance (as scikit-learn's ``tol``).
        max_iter: solver iterations per penalty.
        device: ``"cpu"`` or ``"cuda"``.
        random_state: seed of the held-out split.

    Attributes:
        classes_: ``(K,)`` class labels.
        coef_: ``(K, d)`` weights on the *original* (unstandardised) features; ``(1, d)`` for
            two classes (scikit-learn's binary convention: log-odds of ``classes_[1]``).
        intercept_: ``(K,)`` biases on the original features (``(1,)`` for two classes).
        penalty_: the penalty used for the final fit.
        dev_scores_: ``(P,)`` held-out accuracy per grid penalty (strongest first), or None.
        mean_, scale_: ``(d,)`` training standardisation.
        n_features_in_: ``d``.
    """

    def __init__(
        self,
        penalty: float | None = None,
        penalties: tuple[float, ...] = DEFAULT_PENALTIES,
        dev_size: float = 0.2,
        tol: float = 1e-4,
        max_iter: int = 500,
        device: str = "cpu",
        random_state: int | None = 0,
    ) -> None:
        self.penalty = penalty
        self.penalties = penalties
        self.dev_size = dev_size
        self.tol = tol
        self.max_iter = max_iter
        self.device = device
        self.random_state = random_state

    def fit(self, X: Any, y: Any, groups: Any = None) -> LinearProbe:
        """Fit the probe.

        Args:
            X: ``(n, d)`` features.
            y: ``(n,)`` labels (any hashable type).
            groups: ``(n,)`` optional group ids; the held-out part never splits a group.

        Returns:
            self.
        """
        X, y = validate_data(self, X, y, dtype=np.float64, y_numeric=False)
        check_classification_targets(y)
        self.classes_, y_idx = np.unique(y, return_inverse=True)
        k = self.classes_.size
        self.mean_ = X.mean(axis=0)
        self.scale_ = np.where(X.std(axis=0) > 1e-6, X.std(axis=0), 1.0)
        z = torch.from_numpy(((X - self.mean_) / self.scale_).astype(np.float32)).to(self.device)
        y_t = torch.from_numpy(y_idx.astype(np.int64))
        self.dev_scores_ = None
        if self.penalty is not None:
            self.penalty_ = float(self.penalty)
        elif len(self.penalties) == 1:
            self.penalty_ = float(self.penalties[0])
        else:
            tr, dv = self._split(y_idx, groups)
            path = fit_softmax_path(
                z[tr][None], y_t[tr], k, self.penalties, x_dev=z[dv][None], y_dev=y_t[dv],
                tol=self.tol, max_iter=self.max_iter,
            )
            self.dev_scores_ = path.dev_accuracy[0]
            self.penalty_ = float(path.best_penalty[0])
        final = fit_softmax_path(z[None], y_t, k, [self.penalty_], tol=self.tol, max_iter=self.max_iter)
        w = final.coef[0].double().cpu().numpy()  # (d, K) on standardised features
        b = final.intercept[0].double().cpu().numpy()
        coef = (w / self.scale_[:, None]).T  # (K, d)
        intercept = b - (self.mean_ / self.scale_) @ w
        if k == 2:  # scikit-learn's binary convention: one row, positive class = classes_[1]
            coef, intercept = coef[1:] - coef[:1], intercept[1:] - intercept[:1]
        self.coef_, self.intercept_ = coef, intercept
        self.n_iter_ = final.stats.iterations
        return self

    def _split(self, y_idx: np.ndarray, groups: Any) -> tuple[np.ndarray, np.ndarray]:
        n = y_idx.size
        idx = np.arange(n)
        if groups is not None:
            splitter: Any = GroupShuffleSplit(n_splits=1, test_size=self.dev_size, random_state=self.random_state)
            return next(splitter.split(idx, y_idx, np.asarray(groups)))
        counts = np.bincount(y_idx)
        if counts.min() >= 2 and int(round(self.dev_size * n)) >= counts.size:
            splitter = StratifiedShuffleSplit(n_splits=1, test_size=self.dev_size, random_state=self.random_state)
        else:
            splitter = ShuffleSplit(n_splits=1, test_size=self.dev_size, random_state=self.random_state)
        return next(splitter.split(idx, y_idx))

    def decision_function(self, X: Any) -> np.ndarray:
        """``(n, K)`` logits; for two classes ``(n,)``, the log-odds of ``classes_[1]``."""
        check_is_fitted(self, "coef_")
        X = validate_data(self, X, dtype=np.float64, reset=False)
        z = X @ self.coef_.T + self.intercept_
        return z[:, 0] if self.classes_.size == 2 else z

    def predict_proba(self, X: Any) -> np.ndarray:
        """``(n, K)`` class probabilities (columns ordered as ``classes_``)."""
        z = self.decision_function(X)
        if z.ndim == 1:
            z = np.stack([np.zeros_like(z), z], axis=1)
        z = z - z.max(axis=1, keepdims=True)
        p = np.exp(z)
        return p / p.sum(axis=1, keepdims=True)

    def predict(self, X: Any) -> np.ndarray:
        """``(n,)`` predicted labels."""
        z = self.decision_function(X)
        idx = (z > 0).astype(np.int64) if z.ndim == 1 else np.argmax(z, axis=1)
        return self.classes_[idx]
