"""Canonical correlation measures: CCA, SVCCA, PWCCA and cross-validated CCA with labels.

All similarities (1.0 = the views span the same subspace of sample space). Inputs are
``(n_samples, n_features)`` numpy arrays or torch tensors; float64 inside.

CCA is computed from orthonormal bases of the centred views (thin SVD, rank-truncated): the
canonical correlations are the singular values of ``Q_xᵀ Q_y``. It is invariant to any
invertible linear map of either view, and it is degenerate when a view's width approaches n
(ρ ≡ 1 once d ≥ n − 1): every function here warns with :class:`UnderdeterminedCCAWarning`
when n < 5·d (the literature asks for n ≥ 5–10·d).
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from deepwide.analysis.cka import ArrayLike, as_float64

log = logging.getLogger(__name__)

#: warn when n_samples < CCA_MIN_SAMPLES_PER_DIM × width of a view fed to CCA
CCA_MIN_SAMPLES_PER_DIM = 5


class UnderdeterminedCCAWarning(UserWarning):
    """CCA on views whose width is not well below the number of samples (ρ is inflated)."""


def warn_if_underdetermined(n: int, d: int, *, what: str = "CCA", stacklevel: int = 3) -> bool:
    """Warn when ``n < 5·d``; return whether it warned."""
    if n < CCA_MIN_SAMPLES_PER_DIM * d:
        warnings.warn(
            f"{what}: {n} samples for width {d}; canonical correlations are inflated unless "
            f"n ≥ {CCA_MIN_SAMPLES_PER_DIM}·d (use more samples or reduce the width first)",
            UnderdeterminedCCAWarning,
            stacklevel=stacklevel,
        )
        return True
    return False


@dataclass(frozen=True)
class ViewBasis:
    """Thin SVD of one centred view ``X_c = Q · diag(s) · Vᵀ`` (rank-truncated).

    Attributes:
        q: ``(n, r)`` orthonormal basis of the centred view's column space.
        s: ``(r,)`` singular values, descending.
        vt: ``(r, d)`` right singular vectors; the neurons in the basis are ``diag(s) · vt``.
    """

    q: np.ndarray
    s: np.ndarray
    vt: np.ndarray

    @property
    def rank(self) -> int:
        return int(self.s.shape[0])

    def truncated(self, k: int) -> ViewBasis:
        """The top-``k`` directions."""
        return ViewBasis(self.q[:, :k], self.s[:k], self.vt[:k])


def view_basis(x: ArrayLike) -> ViewBasis:
    """Centre ``x (n, d)`` and return its rank-truncated thin SVD (see :class:`ViewBasis`)."""
    xa = as_float64(x)
    xc = xa - xa.mean(axis=0, keepdims=True)
    u, s, vt = np.linalg.svd(xc, full_matrices=False)
    tol = (s[0] if s.size else 0.0) * max(xc.shape) * np.finfo(np.float64).eps
    r = int(np.sum(s > tol)) if s.size and s[0] > 0 else 0
    return ViewBasis(u[:, :r], s[:r], vt[:r])


def _check_rows(x: np.ndarray, y: np.ndarray) -> None:
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y need the same number of rows, got {x.shape[0]} and {y.shape[0]}")


def _basis_correlations(bx: ViewBasis, by: ViewBasis) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SVD of ``Q_xᵀ Q_y``: (U (r_x, k), ρ (k,), V (r_y, k)), k = min(r_x, r_y)."""
    if bx.rank == 0 or by.rank == 0:
        raise ValueError("CCA needs views with non-constant features")
    u, rho, vt = np.linalg.svd(bx.q.T @ by.q, full_matrices=False)
    return u, np.clip(rho, 0.0, 1.0), vt.T


def canonical_correlations(x: ArrayLike, y: ArrayLike) -> np.ndarray:
    """Canonical correlations between two views, descending.

    Args:
        x: ``(n, d_x)`` representations.
        y: ``(n, d_y)`` representations of the same samples.

    Returns:
        ``(min(r_x, r_y),)`` correlations in [0, 1], r the ranks of the centred views.
    """
    xa, ya = as_float64(x, name="x"), as_float64(y, name="y")
    _check_rows(xa, ya)
    warn_if_underdetermined(xa.shape[0], max(xa.shape[1], ya.shape[1]))
    _, rho, _ = _basis_correlations(view_basis(xa), view_basis(ya))
    return rho


def cca_similarity(x: ArrayLike, y: ArrayLike) -> float:
    """Mean canonical correlation between two views (a similarity in [0, 1])."""
    return float(np.mean(canonical_correlations(x, y)))


def keep_for_variance(s: np.ndarray, variance: float) -> int:
    """Smallest k whose top-k squared singular values explain ``variance`` of the total."""
    if not 0.0 < variance <= 1.0:
        raise ValueError(f"variance must be in (0, 1], got {variance}")
    energy = np.cumsum(s**2)
    if energy.size == 0 or energy[-1] <= 0:
        return 0
    frac = energy / energy[-1]
    return int(min(np.searchsorted(frac, variance - 1e-12) + 1, s.size))


def svcca_from_bases(bx: ViewBasis, by: ViewBasis, variance: float = 0.99) -> float:
    """SVCCA from precomputed :func:`view_basis` results (see :func:`svcca`)."""
    kx, ky = keep_for_variance(bx.s, variance), keep_for_variance(by.s, variance)
    n = bx.q.shape[0]
    warn_if_underdetermined(n, max(kx, ky), what="SVCCA", stacklevel=4)
    _, rho, _ = _basis_correlations(bx.truncated(kx), by.truncated(ky))
    return float(np.mean(rho))


def svcca(x: ArrayLike, y: ArrayLike, variance: float = 0.99) -> float:
    """SVCCA similarity (Raghu et al. 2017): mean canonical correlation after SVD reduction.

    Each centred view keeps its top singular directions explaining ``variance`` of its
    variance (squared singular values); CCA is run between the reduced views. With
    ``variance=1.0`` this is plain mean CCA.

    Args:
        x: ``(n, d_x)`` representations.
        y: ``(n, d_y)`` representations of the same samples.
        variance: fraction of variance each view keeps.

    Returns:
        Mean canonical correlation in [0, 1].
    """
    xa, ya = as_float64(x, name="x"), as_float64(y, name="y")
    _check_rows(xa, ya)
    return svcca_from_bases(view_basis(xa), view_basis(ya), variance)


def pwcca_from_bases(bx: ViewBasis, by: ViewBasis, weights_from: Literal["x", "y"] = "x") -> float:
    """PWCCA from precomputed :func:`view_basis` results (see :func:`pwcca`)."""
    if weights_from not in ("x", "y"):
        raise ValueError(f"weights_from must be 'x' or 'y', got {weights_from!r}")
    warn_if_underdetermined(bx.q.shape[0], max(bx.rank, by.rank), what="PWCCA", stacklevel=4)
    u, rho, v = _basis_correlations(bx, by)
    k = rho.shape[0]
    # canonical variates of the weighting view: h = Q·dirs (n, k), orthonormal columns;
    # its neurons are Q·diag(s)·Vᵀ, so ⟨h_i, z_j⟩ = (dirsᵀ diag(s) Vᵀ)_ij.
    basis, dirs = (bx, u[:, :k]) if weights_from == "x" else (by, v[:, :k])
    alpha = np.abs(dirs.T @ (basis.s[:, None] * basis.vt)).sum(axis=1)
    return float(np.sum(alpha * rho) / np.sum(alpha))


def pwcca(x: ArrayLike, y: ArrayLike, weights_from: Literal["x", "y"] = "x") -> float:
    """Projection-weighted CCA similarity (Morcos et al. 2018).

    Each canonical correlation ρ_i is weighted by ``α_i = Σ_j |⟨h_i, z_j⟩|``, with h_i the
    orthonormal canonical variates of the weighting view and z_j that view's centred neurons;
    α is normalised and ``Σ α_i ρ_i`` returned. Asymmetric: ``pwcca(x, y, "x") ==
    pwcca(y, x, "y")``. Written from the definition (the widely copied reference code
    indexes the wrong matrix when the first view is the wider one).

    Args:
        x: ``(n, d_x)`` representations.
        y: ``(n, d_y)`` representations of the same samples.
        weights_from: which view's neurons weight the correlations, ``"x"`` or ``"y"``.

    Returns:
        Weighted mean canonical correlation in [0, 1].
    """
    xa, ya = as_float64(x, name="x"), as_float64(y, name="y")
    _check_rows(xa, ya)
    return pwcca_from_bases(view_basis(xa), view_basis(ya), weights_from)


# --------------------------------------------------------------------------------------------
# CCA with labels


def _inv_sqrt_psd(c: np.ndarray) -> tuple[np.ndarray, int]:
    """Pseudo-inverse square root of a PSD matrix and its numerical rank."""
    w, v = np.linalg.eigh(c)
    tol = max(w.max(), 0.0) * c.shape[0] * np.finfo(np.float64).eps * 10
    keep = w > tol
    return (v[:, keep] / np.sqrt(w[keep])) @ v[:, keep].T, int(keep.sum())


@dataclass(frozen=True)
class CCAFit:
    """A fitted (ridge-regularised) CCA.

    Attributes:
        mean_x: ``(d_x,)`` training mean of x.
        mean_y: ``(d_y,)`` training mean of y.
        wx: ``(d_x, k)`` canonical directions of x.
        wy: ``(d_y, k)`` canonical directions of y.
        rho: ``(k,)`` training canonical correlations.
    """

    mean_x: np.ndarray
    mean_y: np.ndarray
    wx: np.ndarray
    wy: np.ndarray
    rho: np.ndarray

    def transform(self, x: ArrayLike, y: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        """Canonical variates ``((n, k), (n, k))`` of new data."""
        return (as_float64(x) - self.mean_x) @ self.wx, (as_float64(y) - self.mean_y) @ self.wy


def fit_cca(x: ArrayLike, y: ArrayLike, *, reg: float = 1e-3) -> CCAFit:
    """Fit CCA with a ridge on each covariance (``C + reg · tr(C)/d · I``).

    Args:
        x: ``(n, d_x)`` training representations.
        y: ``(n, d_y)`` training targets (e.g. one-hot labels).
        reg: relative ridge; 0 gives plain CCA (ranks handled by pseudo-inverses).

    Returns:
        The fit; ``k = min(rank C_xx, rank C_yy)`` components.
    """
    xa, ya = as_float64(x, name="x"), as_float64(y, name="y")
    _check_rows(xa, ya)
    mx, my = xa.mean(axis=0), ya.mean(axis=0)
    xc, yc = xa - mx, ya - my
    n = xa.shape[0]
    cxx, cyy, cxy = xc.T @ xc / n, yc.T @ yc / n, xc.T @ yc / n
    if reg > 0:
        cxx = cxx + reg * np.trace(cxx) / cxx.shape[0] * np.eye(cxx.shape[0])
        cyy = cyy + reg * np.trace(cyy) / cyy.shape[0] * np.eye(cyy.shape[0])
    wxx, rx = _inv_sqrt_psd(cxx)
    wyy, ry = _inv_sqrt_psd(cyy)
    u, rho, vt = np.linalg.svd(wxx @ cxy @ wyy, full_matrices=False)
    k = min(rx, ry)
    return CCAFit(mx, my, wxx @ u[:, :k], wyy @ vt[:k].T, np.clip(rho[:k], 0.0, 1.0))


def _fold_ids(
    codes: np.ndarray, groups: np.ndarray | None, folds: int, rng: np.random.Generator
) -> np.ndarray:
    """Fold index per row: stratified by label, keeping each group in one fold.

    Units (rows, or groups when given) are shuffled and dealt round robin within each label,
    starting at a random fold per label; a group whose rows carry several labels makes the
    deal unstratified (plain shuffled round robin).
    """
    if groups is None:
        unit_codes, unit_of_row = codes, np.arange(codes.shape[0])
    else:
        _, unit_of_row = np.unique(groups, return_inverse=True)
        first = np.zeros(int(unit_of_row.max()) + 1, dtype=np.int64)
        first[unit_of_row[::-1]] = codes[::-1]  # label of each group's first row
        pure = bool(np.all(codes == first[unit_of_row]))
        unit_codes = first if pure else np.zeros_like(first)
    n_units = unit_codes.shape[0]
    order = rng.permutation(n_units)
    dealt = order[np.argsort(unit_codes[order], kind="stable")]  # grouped by label, shuffled within
    _, block, counts = np.unique(unit_codes[dealt], return_inverse=True, return_counts=True)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.arange(n_units) - starts[block]
    start_fold = rng.integers(folds, size=counts.size)
    unit_fold = np.empty(n_units, dtype=np.int64)
    unit_fold[dealt] = (rank + start_fold[block]) % folds
    return unit_fold[unit_of_row]


def _column_correlations(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    uc, vc = u - u.mean(axis=0), v - v.mean(axis=0)
    denom = np.sqrt((uc * uc).sum(axis=0) * (vc * vc).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (uc * vc).sum(axis=0) / np.where(denom > 0, denom, 1.0), np.nan)


def label_cca(
    x: ArrayLike,
    labels: Any,
    *,
    folds: int = 5,
    seed: int = 0,
    groups: Any = None,
    reg: float = 1e-3,
) -> float:
    """Cross-validated CCA between representations and one-hot labels (Pasad et al. 2021).

    For each of ``folds`` folds, CCA is fitted between the training rows and their one-hot
    labels, both views of the held-out rows are projected on the canonical directions, and
    the held-out correlation of each canonical pair is measured; the result is the mean over
    components and folds. Folds are stratified by label; with ``groups`` (e.g. the utterance
    of each frame) a group never straddles folds, so neighbouring frames cannot leak.

    Args:
        x: ``(n, d)`` representations.
        labels: ``(n,)`` labels (ints or strings).
        folds: number of cross-validation folds (≥ 2).
        seed: seed of the fold assignment.
        groups: optional ``(n,)`` group ids kept together in one fold.
        reg: relative ridge on the representation covariance (see :func:`fit_cca`).

    Returns:
        Mean held-out canonical correlation (a similarity; ≈ 0 when x carries no label
        information, at most 1), or NaN when fewer than two classes occur.
    """
    xa = as_float64(x)
    lab = np.asarray(labels)
    if lab.ndim != 1 or lab.shape[0] != xa.shape[0]:
        raise ValueError(f"labels must be (n,) with n = {xa.shape[0]}, got shape {lab.shape}")
    if folds < 2:
        raise ValueError(f"folds must be at least 2, got {folds}")
    classes, codes = np.unique(lab, return_inverse=True)
    if classes.size < 2:
        warnings.warn(
            "label CCA needs at least two classes; returning NaN", RuntimeWarning, stacklevel=2
        )
        return math.nan
    onehot = np.eye(classes.size)[codes]
    rng = np.random.default_rng(seed)
    grp = None if groups is None else np.asarray(groups)
    fold_of = _fold_ids(codes, grp, folds, rng)
    n_train_min = xa.shape[0] - np.bincount(fold_of, minlength=folds).max()
    warn_if_underdetermined(int(n_train_min), xa.shape[1], what="label CCA")
    scores = []
    for f in range(folds):
        test = fold_of == f
        if test.sum() < 2 or (~test).sum() < 2:
            continue
        fit = fit_cca(xa[~test], onehot[~test], reg=reg)
        if fit.rho.size == 0:
            continue
        u, v = fit.transform(xa[test], onehot[test])
        corr = _column_correlations(u, v)
        if np.any(np.isfinite(corr)):
            scores.append(float(np.nanmean(corr)))
    if not scores:
        warnings.warn(
            "label CCA: no fold could be evaluated; returning NaN", RuntimeWarning, stacklevel=2
        )
        return math.nan
    return float(np.mean(scores))
