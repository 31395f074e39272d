"""Centered kernel alignment (CKA): linear (biased and debiased), RBF, minibatch, streaming.

All functions return a *similarity* (1.0 = identical up to an orthogonal map, an isotropic
scale and a shift; debiased CKA can be slightly negative for unrelated views). Inputs are
``(n_samples, n_features)`` numpy arrays or torch tensors; everything is computed in float64.

Linear CKA is computed in feature space (``‖YᵀX‖²_F / (‖XᵀX‖_F ‖YᵀY‖_F)`` on centred data,
O(n·d²)) or, when n is smaller than the widths, through n × n Gram matrices; both are exact.
The debiased form is Song et al.'s unbiased HSIC (JMLR 13, 2012) written in feature space:

    D(X, Y) = ‖YᵀX‖²_F − n/(n−2)·⟨r_x, r_y⟩ + s_x·s_y / ((n−1)(n−2)),
    CKA_d   = D(X, Y) / √(D(X, X)·D(Y, Y)),

with ``r`` the squared row norms of the centred data and ``s = Σ r``.

:class:`LinearCKAAccumulator` streams row chunks of many layers of two models and returns the
whole ``(L_a, L_b)`` grid, biased or debiased, from one pass with memory independent of n.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

ArrayLike = Any  # numpy array or torch tensor of shape (n, d)


def as_float64(x: ArrayLike, *, name: str = "x") -> np.ndarray:
    """Return ``x`` as a 2-D float64 numpy array (torch tensors are detached and moved to CPU).

    Args:
        x: ``(n, d)`` array-like; a 1-D input is treated as one feature ``(n, 1)``.
        name: argument name used in error messages.

    Returns:
        ``(n, d)`` float64 array (a view when ``x`` already is one).
    """
    if type(x).__module__.startswith("torch"):
        x = x.detach().to(device="cpu").double().numpy()
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"{name} must be (n_samples, n_features), got shape {arr.shape}")
    return arr


def _pair(x: ArrayLike, y: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    xa, ya = as_float64(x, name="x"), as_float64(y, name="y")
    if xa.shape[0] != ya.shape[0]:
        raise ValueError(
            f"x and y need the same number of rows, got {xa.shape[0]} and {ya.shape[0]}"
        )
    return xa, ya


def _center(x: np.ndarray) -> np.ndarray:
    return x - x.mean(axis=0, keepdims=True)


def _unbiased_correction(cross: float, r_dot: float, s_x: float, s_y: float, n: int) -> float:
    """Feature-space numerator of unbiased HSIC (times n(n−3)); see the module docstring."""
    return cross - n / (n - 2) * r_dot + s_x * s_y / ((n - 1) * (n - 2))


def _cka_ratio(xy: float, xx: float, yy: float) -> float:
    denom = xx * yy
    if not denom > 0.0:
        warnings.warn(
            "CKA is undefined here (a view has zero or negative self-HSIC, e.g. constant "
            "features or too few samples for the debiased estimator); returning NaN",
            RuntimeWarning,
            stacklevel=3,
        )
        return math.nan
    return float(xy / math.sqrt(denom))


def linear_cka(x: ArrayLike, y: ArrayLike, debiased: bool = False) -> float:
    """Linear CKA similarity between two views of the same samples.

    Args:
        x: ``(n, d_x)`` representations.
        y: ``(n, d_y)`` representations of the same n samples, in the same order.
        debiased: use the unbiased HSIC estimator (Song et al. 2012); needs n ≥ 4. Biased
            CKA of unrelated high-dimensional views is large when n is not ≫ d (0.95 for two
            independent Gaussians at n=50, d=1000), so prefer ``debiased=True``.

    Returns:
        The similarity in [0, 1] (biased) or ≤ 1, possibly slightly negative (debiased).
    """
    xa, ya = _pair(x, y)
    n = xa.shape[0]
    if debiased and n < 4:
        raise ValueError(f"debiased CKA needs at least 4 samples, got {n}")
    xc, yc = _center(xa), _center(ya)
    dx, dy = xc.shape[1], yc.shape[1]
    # Pick the cheaper exact route: feature space O(n·(dx+dy)²) or Gram O(n²·(dx+dy)).
    if n * n * (dx + dy + 1) < n * (dx + dy) ** 2:
        k, l_ = xc @ xc.T, yc @ yc.T
        cross, xx, yy = float(np.vdot(k, l_)), float(np.vdot(k, k)), float(np.vdot(l_, l_))
    else:
        cross = float(np.linalg.norm(yc.T @ xc) ** 2)
        xx = float(np.linalg.norm(xc.T @ xc) ** 2)
        yy = float(np.linalg.norm(yc.T @ yc) ** 2)
    if debiased:
        r_x = np.einsum("ij,ij->i", xc, xc)
        r_y = np.einsum("ij,ij->i", yc, yc)
        s_x, s_y = float(r_x.sum()), float(r_y.sum())
        cross = _unbiased_correction(cross, float(r_x @ r_y), s_x, s_y, n)
        xx = _unbiased_correction(xx, float(r_x @ r_x), s_x, s_x, n)
        yy = _unbiased_correction(yy, float(r_y @ r_y), s_y, s_y, n)
    return _cka_ratio(cross, xx, yy)


# --------------------------------------------------------------------------------------------
# Gram-matrix forms (RBF CKA, minibatch CKA)


def gram_linear(x: ArrayLike) -> np.ndarray:
    """Linear Gram matrix ``x xᵀ`` of shape ``(n, n)``, float64."""
    xa = as_float64(x)
    return xa @ xa.T


def gram_rbf(x: ArrayLike, threshold: float = 0.5) -> np.ndarray:
    """RBF Gram matrix with the median heuristic (Kornblith et al. 2019).

    ``K_ij = exp(−‖x_i − x_j‖² / (2σ²))`` with ``σ² = threshold² · median`` of the squared
    pairwise distances, the median taken over the full ``(n, n)`` matrix (zero diagonal included).

    Args:
        x: ``(n, d)`` representations.
        threshold: bandwidth as a fraction of the median distance (t in the reference).

    Returns:
        ``(n, n)`` float64 Gram matrix.
    """
    if threshold <= 0:
        raise ValueError(f"threshold must be positive, got {threshold}")
    xa = as_float64(x)
    dot = xa @ xa.T
    sq = np.diag(dot)
    sq_dist = np.maximum(sq[:, None] + sq[None, :] - 2.0 * dot, 0.0)
    median = float(np.median(sq_dist))
    if median <= 0.0:
        raise ValueError("RBF CKA needs at least two distinct rows (median distance is 0)")
    return np.exp(-sq_dist / (2.0 * threshold**2 * median))


def _center_gram(k: np.ndarray) -> np.ndarray:
    return k - k.mean(axis=0, keepdims=True) - k.mean(axis=1, keepdims=True) + k.mean()


def hsic_biased(k: np.ndarray, l_: np.ndarray) -> float:
    """Biased HSIC ``tr(K H L H) / (n−1)²`` of two ``(n, n)`` Gram matrices."""
    n = k.shape[0]
    return float(np.vdot(_center_gram(k), _center_gram(l_))) / (n - 1) ** 2


def hsic_unbiased(k: np.ndarray, l_: np.ndarray) -> float:
    """Unbiased HSIC₁ (Song et al. 2012) of two ``(n, n)`` Gram matrices; needs n ≥ 4.

    ``[tr(K̃L̃) + (1ᵀK̃1)(1ᵀL̃1)/((n−1)(n−2)) − 2/(n−2)·1ᵀK̃L̃1] / (n(n−3))`` with K̃, L̃ the
    Grams with zeroed diagonals. The Grams are double-centred first: the estimator is
    unchanged by ``K → K + f1ᵀ + 1fᵀ`` and the centring avoids cancellation when K is
    nearly constant (an RBF kernel with a wide bandwidth).
    """
    n = k.shape[0]
    if n < 4:
        raise ValueError(f"unbiased HSIC needs at least 4 samples, got {n}")
    kt, lt = _center_gram(k), _center_gram(l_)
    np.fill_diagonal(kt, 0.0)
    np.fill_diagonal(lt, 0.0)
    k1, l1 = kt.sum(axis=1), lt.sum(axis=1)
    value = (
        float(np.vdot(kt, lt))
        + float(k1.sum()) * float(l1.sum()) / ((n - 1) * (n - 2))
        - 2.0 / (n - 2) * float(k1 @ l1)
    )
    return value / (n * (n - 3))


def rbf_cka(x: ArrayLike, y: ArrayLike, threshold: float = 0.5, debiased: bool = False) -> float:
    """CKA similarity with RBF kernels (median-heuristic bandwidth); O(n²) memory.

    Args:
        x: ``(n, d_x)`` representations.
        y: ``(n, d_y)`` representations of the same samples.
        threshold: bandwidth ``σ = threshold · √median squared distance``; as it grows the
            result approaches :func:`linear_cka`.
        debiased: use unbiased HSIC (needs n ≥ 4).

    Returns:
        The similarity (1.0 = identical up to orthogonal maps, isotropic scale, shifts).
    """
    xa, ya = _pair(x, y)
    k, l_ = gram_rbf(xa, threshold), gram_rbf(ya, threshold)
    hsic = hsic_unbiased if debiased else hsic_biased
    return _cka_ratio(hsic(k, l_), hsic(k, k), hsic(l_, l_))


def _hsic1_features(xa: np.ndarray, ya: np.ndarray) -> tuple[float, float, float]:
    """Unbiased HSIC₁ (X,Y), (X,X), (Y,Y) of one batch in feature space (linear kernel)."""
    n = xa.shape[0]
    xc, yc = _center(xa), _center(ya)
    r_x, r_y = np.einsum("ij,ij->i", xc, xc), np.einsum("ij,ij->i", yc, yc)
    s_x, s_y = float(r_x.sum()), float(r_y.sum())
    xy = _unbiased_correction(float(np.linalg.norm(yc.T @ xc) ** 2), float(r_x @ r_y), s_x, s_y, n)
    xx = _unbiased_correction(float(np.linalg.norm(xc.T @ xc) ** 2), float(r_x @ r_x), s_x, s_x, n)
    yy = _unbiased_correction(float(np.linalg.norm(yc.T @ yc) ** 2), float(r_y @ r_y), s_y, s_y, n)
    scale = n * (n - 3)
    return xy / scale, xx / scale, yy / scale


def minibatch_cka(batches_x: Iterable[ArrayLike], batches_y: Iterable[ArrayLike]) -> float:
    """Minibatch linear CKA (Nguyen, Raghu, Kornblith 2021) from paired batches.

    ``mean HSIC₁(X_b, Y_b) / √(mean HSIC₁(X_b, X_b) · mean HSIC₁(Y_b, Y_b))`` with the unbiased
    HSIC₁ of each batch. Each batch's HSIC₁ is unbiased whatever its size, so a ragged last
    batch is kept and the means are weighted by batch size; batches with fewer than 4 rows are
    dropped with a warning. With a single batch this equals ``linear_cka(x, y, debiased=True)``.

    Args:
        batches_x: iterable of ``(n_b, d_x)`` batches.
        batches_y: iterable of ``(n_b, d_y)`` batches, paired with ``batches_x``.

    Returns:
        The similarity.
    """
    sums = np.zeros(3)
    total = 0
    dropped = 0
    for bx, by in zip(batches_x, batches_y, strict=True):
        xa, ya = _pair(bx, by)
        n = xa.shape[0]
        if n < 4:
            dropped += 1
            continue
        sums += n * np.array(_hsic1_features(xa, ya))
        total += n
    if dropped:
        warnings.warn(
            f"minibatch CKA dropped {dropped} batch(es) with fewer than 4 rows", stacklevel=2
        )
    if total == 0:
        raise ValueError("minibatch CKA needs at least one batch with 4 or more rows")
    xy, xx, yy = sums / total
    return _cka_ratio(float(xy), float(xx), float(yy))


# --------------------------------------------------------------------------------------------
# Streaming grid


class LinearCKAAccumulator:
    """One-pass linear CKA between every layer of model A and every layer of model B.

    Feed aligned row chunks (the same samples, in the same order, for every layer of both
    models) to :meth:`update`; :meth:`similarity` then returns the ``(L_a, L_b)`` grid, biased
    or debiased. It accumulates in float64, after subtracting a per-layer shift taken from the
    first chunk (to avoid cancellation when the features have a large mean):

    - per layer: column sums, ``XᵀX`` (once per layer, not per pair), Σ‖x‖², Σ‖x‖⁴, Σ‖x‖²·x;
    - per pair: ``XᵀY`` (one GEMM over the concatenated layers per chunk), Σ‖x‖²‖y‖²,
      Σ‖y‖²·x and Σ‖x‖²·y (the terms of the debiased estimator after centring).

    Memory is ``O((Σd_a)·(Σd_b))`` (0.8 GB for 13 × 768 against 13 × 768) plus one chunk,
    independent of the number of rows.

    Example:
        >>> acc = LinearCKAAccumulator([768] * 13, [384] * 13)
        >>> for chunk_a, chunk_b in chunks:   # lists of (c, d) arrays, one per layer
        ...     acc.update(chunk_a, chunk_b)
        >>> grid = acc.similarity(debiased=True)   # (13, 13)
    """

    def __init__(self, dims_a: Sequence[int], dims_b: Sequence[int]) -> None:
        """Args:
        dims_a: feature width of each layer of model A (length L_a).
        dims_b: feature width of each layer of model B (length L_b).
        """
        if not dims_a or not dims_b:
            raise ValueError("need at least one layer on each side")
        self.dims_a = tuple(int(d) for d in dims_a)
        self.dims_b = tuple(int(d) for d in dims_b)
        self._off_a = np.concatenate([[0], np.cumsum(self.dims_a)])
        self._off_b = np.concatenate([[0], np.cumsum(self.dims_b)])
        da, db = int(self._off_a[-1]), int(self._off_b[-1])
        la, lb = len(self.dims_a), len(self.dims_b)
        self.n = 0
        self._shift_a: np.ndarray | None = None
        self._shift_b: np.ndarray | None = None
        self._sum_a, self._sum_b = np.zeros(da), np.zeros(db)
        self._gram_a = [np.zeros((d, d)) for d in self.dims_a]
        self._gram_b = [np.zeros((d, d)) for d in self.dims_b]
        self._cross = np.zeros((da, db), order="F")  # Σ xᵀy over all layer pairs
        self._nrm_a, self._nrm_b = np.zeros(la), np.zeros(lb)  # Σ‖x‖²
        self._nrm2_a, self._nrm2_b = np.zeros(la), np.zeros(lb)  # Σ‖x‖⁴
        self._nx_a, self._nx_b = np.zeros(da), np.zeros(db)  # Σ‖x‖²·x (own layer)
        self._nn = np.zeros((la, lb))  # Σ‖x‖²‖y‖²
        self._bx = np.zeros((da, lb))  # Σ‖y_m‖²·x
        self._ay = np.zeros((db, la))  # Σ‖x_l‖²·y

    def _stack(self, chunk: Sequence[ArrayLike], off: np.ndarray, side: str) -> np.ndarray:
        """Concatenate one chunk's layers into a ``(c, Σd)`` float64 array (one copy)."""
        dims = np.diff(off)
        if len(chunk) != len(dims):
            raise ValueError(f"model {side}: expected {len(dims)} layers, got {len(chunk)}")
        arrs = [
            c if isinstance(c, np.ndarray) else as_float64(c, name=f"{side}[{i}]")
            for i, c in enumerate(chunk)
        ]
        rows = {a.shape[0] for a in arrs}
        if len(rows) != 1:
            raise ValueError(f"model {side}: layers of one chunk have different row counts {rows}")
        out = np.empty((rows.pop(), int(off[-1])), dtype=np.float64)
        for i, (a, d) in enumerate(zip(arrs, dims, strict=True)):
            if a.ndim != 2 or a.shape[1] != d:
                raise ValueError(f"model {side} layer {i}: expected width {d}, got shape {a.shape}")
            out[:, off[i] : off[i + 1]] = a
        return out

    def update(self, chunk_a: Sequence[ArrayLike], chunk_b: Sequence[ArrayLike]) -> None:
        """Accumulate one chunk of rows.

        Args:
            chunk_a: one ``(c, d_a[l])`` array per layer of A (same c rows for every layer).
            chunk_b: one ``(c, d_b[m])`` array per layer of B, rows aligned with ``chunk_a``.
        """
        from scipy.linalg.blas import dgemm

        xa = self._stack(chunk_a, self._off_a, "a")
        xb = self._stack(chunk_b, self._off_b, "b")
        if xa.shape[0] != xb.shape[0]:
            raise ValueError(f"chunks of A and B have {xa.shape[0]} and {xb.shape[0]} rows")
        c = xa.shape[0]
        if c == 0:
            return
        if self._shift_a is None:
            self._shift_a, self._shift_b = xa.mean(axis=0), xb.mean(axis=0)
        xa -= self._shift_a
        xb -= self._shift_b
        na = self._row_norms(xa, self._off_a)  # (c, L_a)
        nb = self._row_norms(xb, self._off_b)  # (c, L_b)
        self._layer_stats(
            xa, na, self._off_a, self._gram_a, self._sum_a, self._nrm_a, self._nrm2_a, self._nx_a
        )
        self._layer_stats(
            xb, nb, self._off_b, self._gram_b, self._sum_b, self._nrm_b, self._nrm2_b, self._nx_b
        )
        # cross += xaᵀ xb, in place (Fortran-ordered accumulator, no temporary of its size)
        self._cross = dgemm(1.0, xa.T, xb.T, beta=1.0, c=self._cross, trans_b=1, overwrite_c=1)
        self._nn += na.T @ nb
        self._bx += xa.T @ nb
        self._ay += xb.T @ na
        self.n += c

    @staticmethod
    def _row_norms(x: np.ndarray, off: np.ndarray) -> np.ndarray:
        """Squared row norm of each layer's block: ``(c, L)``."""
        blocks = [x[:, off[i] : off[i + 1]] for i in range(len(off) - 1)]
        return np.stack([np.einsum("ij,ij->i", b, b) for b in blocks], axis=1)

    @staticmethod
    def _layer_stats(
        x: np.ndarray,
        norms: np.ndarray,
        off: np.ndarray,
        grams: list[np.ndarray],
        sums: np.ndarray,
        nrm: np.ndarray,
        nrm2: np.ndarray,
        nx: np.ndarray,
    ) -> None:
        sums += x.sum(axis=0)
        nrm += norms.sum(axis=0)
        nrm2 += (norms * norms).sum(axis=0)
        for i, g in enumerate(grams):
            block = x[:, off[i] : off[i + 1]]
            g += block.T @ block
            nx[off[i] : off[i + 1]] += block.T @ norms[:, i]

    def _layer_terms(self, side: str) -> list[tuple[np.ndarray, float, float, float, float]]:
        """Per layer: (mean μ, ‖μ‖², ‖C‖²_F, s = tr C, Σ r²) of the centred data."""
        n = self.n
        if side == "a":
            grams, sums, off, nrm, nrm2, nx = (
                self._gram_a,
                self._sum_a,
                self._off_a,
                self._nrm_a,
                self._nrm2_a,
                self._nx_a,
            )
        else:
            grams, sums, off, nrm, nrm2, nx = (
                self._gram_b,
                self._sum_b,
                self._off_b,
                self._nrm_b,
                self._nrm2_b,
                self._nx_b,
            )
        out = []
        for i, g in enumerate(grams):
            mu = sums[off[i] : off[i + 1]] / n
            m = float(mu @ mu)
            cov = g - n * np.outer(mu, mu)
            s = float(np.trace(cov))
            gmu = float(mu @ g @ mu)
            r2 = float(
                nrm2[i]
                - 4.0 * (mu @ nx[off[i] : off[i + 1]])
                + 4.0 * gmu
                + 2.0 * m * nrm[i]
                - 3.0 * n * m * m
            )
            out.append((mu, m, float(np.vdot(cov, cov)), s, r2))
        return out

    def similarity(self, *, debiased: bool = False) -> np.ndarray:
        """The ``(L_a, L_b)`` grid of linear CKA similarities.

        Args:
            debiased: use the unbiased HSIC estimator (needs n ≥ 4).

        Returns:
            ``(L_a, L_b)`` float64 array; entry ``[l, m]`` compares layer l of A with layer m of B.
        """
        n = self.n
        if n < (4 if debiased else 2):
            raise ValueError(f"need at least {4 if debiased else 2} rows, accumulated {n}")
        terms_a, terms_b = self._layer_terms("a"), self._layer_terms("b")
        grid = np.full((len(self.dims_a), len(self.dims_b)), np.nan)
        for i, (mu_x, m_x, xx, s_x, r2_x) in enumerate(terms_a):
            sa = slice(self._off_a[i], self._off_a[i + 1])
            if debiased:
                xx = _unbiased_correction(xx, r2_x, s_x, s_x, n)
            for j, (mu_y, m_y, yy, s_y, r2_y) in enumerate(terms_b):
                sb = slice(self._off_b[j], self._off_b[j + 1])
                p = self._cross[sa, sb]
                pc = p - n * np.outer(mu_x, mu_y)
                cross = float(np.vdot(pc, pc))
                if debiased:
                    rr = (
                        self._nn[i, j]
                        - 2.0 * float(mu_y @ self._ay[sb, i])
                        - 2.0 * float(mu_x @ self._bx[sa, j])
                        + 4.0 * float(mu_x @ p @ mu_y)
                        + m_y * self._nrm_a[i]
                        + m_x * self._nrm_b[j]
                        - 3.0 * n * m_x * m_y
                    )
                    cross = _unbiased_correction(cross, rr, s_x, s_y, n)
                    yy = _unbiased_correction(yy, r2_y, s_y, s_y, n)
                grid[i, j] = _cka_ratio(cross, xx, yy)
        return grid
