"""A fast multi-layer, multi-penalty softmax (multinomial logistic regression) probe.

The layerwise probing search — for every layer and every L2 penalty of a grid, fit a
multinomial logistic regression, pick the penalty on dev, score test — is the inner loop of the
toolkit. Written by hand with scikit-learn it is ``layers × penalties`` independent float64
L-BFGS fits. This module solves the same problems, to the same optimum, with less work:

* **All layers at once.** The layers of a store are one batched problem ``(B, n, d)`` (torch;
  CUDA when asked). Layers that have converged leave the active set.
* **One path, warm-started.** Penalties are visited from the strongest to the weakest; each
  fit starts from the previous optimum *and keeps the L-BFGS curvature pairs*, corrected
  exactly for the change of penalty (``y ← y + Δλ·s`` on the weights), so the solver resumes
  with a good Hessian model instead of rebuilding it.
* **A Kronecker preconditioner.** The Hessian of the mean softmax loss is close to
  ``Σ ⊗ diag(a) + λI`` (``Σ`` the feature covariance, ``a_k = mean_i p_ik(1 − p_ik)`` the
  class curvature at the current point). Hidden states are strongly correlated, so plain
  L-BFGS sees a badly conditioned problem; using the inverse of that model (one ``d × d``
  eigendecomposition per layer, shared by all penalties; ``a`` refreshed at every pass) as
  L-BFGS's initial inverse Hessian ``H₀`` (times the usual scaling ``γ``) removes most of it.
* **Coarse path, exact finish.** Only the dev ranking needs the whole grid, and a ranking does
  not need a tight optimum: the path is swept at ``path_tol`` (1e-3), then every penalty whose
  dev accuracy is within ``refine_margin`` (0.2 points, or one dev sample) of a layer's best is
  refined to ``tol`` (1e-4, scikit-learn's default) from its sweep solution — repeatedly,
  until no unrefined penalty is within the margin of the best refined one — and the choice is
  made among the refined fits. The reported model is therefore converged exactly as tightly as
  a scikit-learn fit at the chosen penalty.
* **float32 and fewer passes.** One fused loss-and-gradient pass per iteration, Armijo
  backtracking only on the layers that need it.

Objective (per layer ``b``), with ``x`` standardised, ``W`` of shape ``(d, K)``, bias ``c``::

    f_b(W, c) = mean_i[ -log softmax(x_i W + c)_{y_i} ] + λ/2 · ||W||²_F

which is scikit-learn's ``LogisticRegression(C=1/(λ·n))`` objective divided by ``C·n`` (the
bias is not penalised in either). :func:`sklearn_c` converts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from deepwide.system import torch_threads

log = logging.getLogger(__name__)

#: Default L2 grid (on the mean-loss scale above), strongest first.
DEFAULT_PENALTIES: tuple[float, ...] = (1.0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5)


def sklearn_c(penalty: float, n_samples: int) -> float:
    """scikit-learn's ``C`` for the same optimum as our ``penalty`` on ``n_samples`` samples."""
    return 1.0 / (penalty * n_samples)


#: below this many multiply-adds per loss pass, CPU work runs on one thread: intra-op threads
#: cost more than they save on small problems, and far more on a busy machine.
SMALL_WORK = 50_000_000
#: a step that lowers the loss by less than FTOL (relative; float32 resolution) without a new
#: low of the gradient makes no progress; a layer stops after STALL_STEPS such steps in a row
#: (reported as not converged).
FTOL = 1e-7
STALL_STEPS = 5


@contextmanager
def cpu_threads(work: float, device: str | torch.device = "cpu") -> Iterator[None]:
    """Run small CPU problems (``work`` multiply-adds per pass) on one torch thread.

    Restores the previous thread count on exit; a no-op for large problems and for CUDA.
    """
    if torch.device(device).type != "cpu" or work >= SMALL_WORK or torch.get_num_threads() == 1:
        yield
        return
    with torch_threads(1):
        yield


@dataclass
class SolverStats:
    """Work done by one :func:`fit_softmax_path` call (for logging and benchmarks)."""

    iterations: int = 0  # L-BFGS iterations summed over penalties (batched: max over layers)
    evaluations: int = 0  # loss+gradient passes, counted per layer
    seconds_precondition: float = 0.0
    max_iter_hits: int = 0  # (layer, penalty) fits whose last run stopped at max_iter, not tol or a stall
    # (max_iter bounds each run: the sweep and a refinement of the same fit each get it); which
    # of them are chosen fits is SoftmaxPath.chosen_max_iter


@dataclass
class SoftmaxPath:
    """The result of fitting a whole penalty grid for a batch of layers.

    Attributes:
        penalties: ``(P,)`` the grid, strongest first.
        dev_accuracy: ``(B, P)`` dev accuracy of every layer at every penalty (NaN when no dev);
            of the refined fit for the dev candidates, of the ``path_tol`` sweep otherwise.
        best_index: ``(B,)`` index into ``penalties`` chosen on dev (ties → stronger penalty).
        coef: ``(B, d, K)`` float32 weights at the chosen penalty.
        intercept: ``(B, K)`` float32 biases at the chosen penalty.
        converged: ``(B, P)`` whether that fit met ``tol`` (the chosen fits are refined to it;
            penalties only swept at ``path_tol`` are usually False).
        stats: work counters.
        chosen_max_iter: ``(B,)`` whether a layer's chosen fit stopped at ``max_iter`` before
            ``tol`` (its result may be off the optimum).
    """

    penalties: np.ndarray
    dev_accuracy: np.ndarray
    best_index: np.ndarray
    coef: torch.Tensor
    intercept: torch.Tensor
    converged: np.ndarray
    stats: SolverStats
    chosen_max_iter: np.ndarray

    @property
    def best_penalty(self) -> np.ndarray:
        """``(B,)`` the chosen penalty of each layer."""
        return self.penalties[self.best_index]

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Scores of standardised features.

        Args:
            x: ``(B, m, d)`` features (same standardisation as training).

        Returns:
            ``(B, m, K)`` logits.
        """
        coef = self.coef.to(x.device)
        return torch.baddbmm(self.intercept.to(x.device)[:, None, :], x, coef)


def fit_softmax_path(
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    num_classes: int,
    penalties: tuple[float, ...] | list[float] | np.ndarray = DEFAULT_PENALTIES,
    **kwargs: object,
) -> SoftmaxPath:
    """Fit L2-penalised multinomial logistic regression for every layer and penalty.

    Args:
        x_train: ``(B, n, d)`` float32 standardised training features of ``B`` layers.
        y_train: ``(n,)`` int64 class indices in ``[0, num_classes)``.
        num_classes: ``K``.
        penalties: L2 strengths ``λ`` (any order; solved strongest first).
        **kwargs: ``x_dev`` ``(B, m, d)`` and ``y_dev`` ``(m,)`` (dev set choosing the penalty;
            without it the weakest penalty is kept — pass a one-penalty grid to fit a fixed
            penalty), ``tol`` (stop a layer when ``max |∇f|`` on the mean-loss scale falls
            below it, as scikit-learn's ``tol``; default 1e-4), ``max_iter`` (per penalty,
            500), ``history`` (L-BFGS memory, 10), ``precondition`` (covariance
            preconditioner, True), ``keep_history`` (carry curvature pairs across penalties,
            True), ``class_curvature`` (per-class curvature in the preconditioner, True;
            off: ``(Σ + λK·I)⁻¹``), ``path_tol`` (tolerance of the path sweep, 1e-3; the
            dev candidates are then refined to ``tol``), ``refine_margin`` (dev-accuracy
            margin that makes a penalty a candidate, 0.002).

    Returns:
        A :class:`SoftmaxPath` whose ``coef``/``intercept`` are the dev-chosen fits.
    """
    if x_train.dim() != 3:
        raise ValueError(f"x_train must be (layers, samples, features), got {tuple(x_train.shape)}")
    nb, n, d = x_train.shape
    with cpu_threads(float(nb) * n * d * max(int(num_classes), 1), x_train.device):
        return _fit_softmax_path(x_train, y_train, num_classes, penalties, **kwargs)  # type: ignore[arg-type]


def _fit_softmax_path(
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    num_classes: int,
    penalties: tuple[float, ...] | list[float] | np.ndarray = DEFAULT_PENALTIES,
    *,
    x_dev: torch.Tensor | None = None,
    y_dev: torch.Tensor | None = None,
    tol: float = 1e-4,
    max_iter: int = 500,
    history: int = 10,
    precondition: bool = True,
    keep_history: bool = True,
    class_curvature: bool = True,
    path_tol: float = 1e-3,
    refine_margin: float = 0.002,
) -> SoftmaxPath:
    """Implementation of :func:`fit_softmax_path` (keyword arguments documented there)."""
    lams = np.sort(np.asarray(penalties, dtype=np.float64))[::-1].copy()
    if np.any(lams <= 0):
        raise ValueError("penalties must be positive")
    nb, n, d = x_train.shape
    k = int(num_classes)
    dev = x_train.device
    x_train = x_train.float()
    y_train = y_train.to(dev, torch.int64)
    have_dev = x_dev is not None and y_dev is not None and y_dev.numel() > 0
    if have_dev:
        x_dev = x_dev.to(dev).float()  # type: ignore[union-attr]
        y_dev = y_dev.to(dev, torch.int64)  # type: ignore[union-attr]
    stats = SolverStats()
    hit_max_iter = np.zeros((nb, len(lams)), dtype=bool)  # per (layer, penalty), its last run
    onehot_idx = y_train.view(1, n, 1)

    # ---- shared work: covariance eigendecomposition per layer (for the preconditioner) ----
    eigval = eigvec = None
    if precondition:
        t0 = time.perf_counter()
        cov = torch.bmm(x_train.transpose(1, 2), x_train) / n  # (B, d, d)
        eigval, eigvec = torch.linalg.eigh(cov.double())
        eigval = eigval.clamp_min(0).float()
        eigvec = eigvec.float()
        del cov
        stats.seconds_precondition = time.perf_counter() - t0

    theta = torch.zeros(nb, d + 1, k, device=dev)  # rows 0..d-1 weights, row d bias
    # per-layer class curvature mean_i p_ik(1 − p_ik) at the latest point (uniform at the start)
    curv = torch.full((nb, k), max(1.0 / k * (1.0 - 1.0 / k), 1e-6), device=dev)

    def loss_grad(idx: list[int], th: torch.Tensor, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Loss ``(A,)`` and gradient ``(A, d+1, K)`` for the layers ``idx``."""
        w, c = th[:, :d], th[:, d]
        if len(idx) == nb:
            z = torch.baddbmm(c[:, None, :], x_train, w)
        else:
            z = torch.stack([torch.addmm(c[j], x_train[i], w[j]) for j, i in enumerate(idx)])
        logp = torch.log_softmax(z, dim=2)
        nll = -logp.gather(2, onehot_idx.expand(len(idx), n, 1)).mean(dim=(1, 2))
        p = logp.exp_()
        if class_curvature:
            curv[idx] = (p - p * p).mean(dim=1).clamp_min(1e-6)
        p.scatter_add_(2, onehot_idx.expand(len(idx), n, 1), torch.full((len(idx), n, 1), -1.0, device=dev))
        p /= n
        g = torch.empty_like(th)
        if len(idx) == nb:
            torch.bmm(x_train.transpose(1, 2), p, out=g[:, :d])
        else:
            for j, i in enumerate(idx):
                torch.mm(x_train[i].T, p[j], out=g[j, :d])
        g[:, d] = p.sum(dim=1)
        g[:, :d] += lam * w
        f = nll + 0.5 * lam * (w * w).sum(dim=(1, 2))
        stats.evaluations += len(idx)
        return f, g

    def apply_h0(g: torch.Tensor, idx: list[int], lam: float) -> torch.Tensor:
        """Initial inverse-Hessian model ``(Σ ⊗ diag(a) + λI)⁻¹`` (bias rows: ``1/a``)."""
        if eigvec is None:
            return g.clone()
        v = eigvec[idx]
        out = torch.empty_like(g)
        proj = torch.bmm(v.transpose(1, 2), g[:, :d])
        if class_curvature:
            a = curv[idx]  # (A, K)
            proj /= eigval[idx][:, :, None] * a[:, None, :] + lam
            out[:, d] = g[:, d] / a
        else:
            proj /= (eigval[idx] + lam * k)[:, :, None]
            out[:, d] = g[:, d]
        out[:, :d] = torch.bmm(v, proj)
        return out

    def dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a * b).sum(dim=(1, 2))

    dev_acc = np.full((nb, len(lams)), np.nan)
    converged = np.zeros((nb, len(lams)), dtype=bool)
    hist: dict[str, list[torch.Tensor]] = {"s": [], "y": []}  # curvature pairs, each (B, d+1, K)

    def run_lbfgs(lam: float, layers: list[int], tol_: float, pi: int) -> int:
        """L-BFGS on ``layers`` at penalty ``lam`` from the current ``theta``; returns iterations."""
        s_hist, y_hist = hist["s"], hist["y"]
        active = list(layers)
        hit_max_iter[layers, pi] = False  # a refinement that converges clears an earlier stop
        f, g = loss_grad(active, theta[active], lam)
        gmax = g.abs().amax(dim=(1, 2))
        stall = torch.zeros(nb, dtype=torch.int64, device=dev)  # consecutive no-progress steps
        best_g = torch.full((nb,), float("inf"), device=dev)  # smallest max|∇f| so far
        it = 0
        while active and it < max_iter:
            gm = gmax.tolist()
            st = stall[active].tolist()
            keep = [j for j in range(len(active)) if gm[j] > tol_ and st[j] < STALL_STEPS]
            for j, i in enumerate(active):
                converged[i, pi] = gm[j] <= tol
            if not keep:
                active = []
                break
            if len(keep) < len(active):
                active = [active[j] for j in keep]
                f, g, gmax = f[keep], g[keep], gmax[keep]
            it += 1
            idx_t = torch.tensor(active, device=dev)
            # ---- two-loop recursion (batched over active layers) ----
            q = g.clone()
            alphas = []
            pairs = [(s_[idx_t], y_[idx_t]) for s_, y_ in zip(s_hist, y_hist, strict=True)]
            rhos = []
            for s_, y_ in reversed(pairs):
                sy = dot(s_, y_)
                rho = torch.where(sy > 0, 1.0 / sy.clamp_min(1e-30), torch.zeros_like(sy))
                a = rho * dot(s_, q)
                q -= a[:, None, None] * y_
                alphas.append(a)
                rhos.append(rho)
            r = apply_h0(q, active, lam)
            if pairs:
                s_l, y_l = pairs[-1]
                hy = apply_h0(y_l, active, lam)
                gamma = dot(s_l, y_l) / dot(y_l, hy).clamp_min(1e-30)
                gamma = torch.where(gamma > 0, gamma, torch.ones_like(gamma))
                r *= gamma[:, None, None]
            elif eigvec is None:
                # first step without curvature information: keep it modest
                gn = g.abs().amax(dim=(1, 2)).clamp_min(1e-12)
                r *= torch.clamp(1.0 / gn, max=1.0)[:, None, None]
            for (s_, y_), a, rho in zip(pairs, reversed(alphas), reversed(rhos), strict=True):
                b = rho * dot(y_, r)
                r += (a - b)[:, None, None] * s_
            direction = -r
            gd = dot(g, direction)
            bad = gd >= 0  # not a descent direction: fall back to steepest descent
            if bool(bad.any()):
                direction[bad] = -g[bad]
                gd = dot(g, direction)
            # ---- Armijo backtracking, only re-evaluating layers that fail ----
            step = torch.ones(len(active), device=dev)
            th_a = theta[idx_t]
            new_th = th_a + direction
            f_new, g_new = loss_grad(active, new_th, lam)
            for _ in range(30):
                fail = ~(f_new <= f + 1e-4 * step * gd)  # NaN/inf fail too
                if not bool(fail.any()):
                    break
                fj = fail.nonzero().flatten().tolist()
                step[fj] *= 0.5
                sub = [active[j] for j in fj]
                trial = th_a[fj] + step[fj, None, None] * direction[fj]
                f2, g2 = loss_grad(sub, trial, lam)
                new_th[fj] = trial
                f_new[fj] = f2
                g_new[fj] = g2
            full_s = torch.zeros_like(theta)
            full_y = torch.zeros_like(theta)
            full_s[idx_t] = new_th - th_a
            full_y[idx_t] = g_new - g
            if len(s_hist) == history:
                s_hist.pop(0)
                y_hist.pop(0)
            # layers not active keep a zero pair (rho = 0 → ignored)
            s_hist.append(full_s)
            y_hist.append(full_y)
            theta[idx_t] = new_th
            # no progress at float32 resolution without a new gradient low → count a stall
            f_small = (f - f_new) <= FTOL * torch.clamp(f.abs(), min=1.0)
            f, g = f_new, g_new
            gmax = g.abs().amax(dim=(1, 2))
            g_better = gmax < 0.9 * best_g[idx_t]
            best_g[idx_t] = torch.minimum(best_g[idx_t], gmax)
            stalled = f_small & ~g_better
            stall[idx_t] = torch.where(stalled, stall[idx_t] + 1, torch.zeros_like(stall[idx_t]))
        stats.iterations += it
        if active:  # the loop ran out of iterations: judge the last iterate
            gm = gmax.tolist()
            for j, i in enumerate(active):
                converged[i, pi] = gm[j] <= tol
            hit_max_iter[active, pi] = [v > tol_ for v in gm]
        return it

    def dev_accuracy(layers: list[int]) -> np.ndarray:
        with torch.no_grad():
            th = theta[layers]
            z = torch.baddbmm(th[:, d][:, None, :], x_dev[layers], th[:, :d])  # type: ignore[index]
            return (z.argmax(dim=2) == y_dev[None, :]).float().mean(dim=1).cpu().numpy()

    # ---- 1. the path, strongest penalty first, warm-started, at the sweep tolerance ----
    sweep = max(tol, path_tol) if have_dev and len(lams) > 1 else tol
    path_theta = torch.empty(len(lams), nb, d + 1, k, device=dev)
    all_layers = list(range(nb))
    prev_lam: float | None = None
    for pi, lam in enumerate(lams):
        lam = float(lam)
        # exact correction of stored curvature pairs for the new penalty
        if keep_history and prev_lam is not None:
            for s_, y_ in zip(hist["s"], hist["y"], strict=True):
                y_[:, :d] += (lam - prev_lam) * s_[:, :d]
        elif not keep_history:
            hist["s"], hist["y"] = [], []
        prev_lam = lam
        it = run_lbfgs(lam, all_layers, sweep, pi)
        path_theta[pi] = theta
        if have_dev:
            dev_acc[:, pi] = dev_accuracy(all_layers)
        log.debug("penalty %.3g: %d iterations, dev acc %s", lam, it, np.round(dev_acc[:, pi], 3))

    # ---- 2. refine the dev candidates (within refine_margin of the best) to ``tol`` ----
    if not have_dev:
        best_index = np.full(nb, len(lams) - 1, dtype=np.int64)
    else:
        margin = max(refine_margin, 1.0 / y_dev.numel())  # at least one dev sample  # type: ignore[union-attr]
        refined = np.full(dev_acc.shape, sweep <= tol)
        for _ in range(len(lams)):
            # candidates: unrefined penalties within the margin of the best (refined) dev accuracy;
            # refining can move a fit's dev accuracy, so repeat until none is left
            best = np.where(refined.any(axis=1), np.where(refined, dev_acc, -np.inf).max(axis=1), dev_acc.max(axis=1))
            cand = ~refined & (dev_acc >= best[:, None] - margin - 1e-12)
            if not cand.any():
                break
            for pi in range(len(lams)):
                layers = np.flatnonzero(cand[:, pi]).tolist()
                if not layers:
                    continue
                hist["s"], hist["y"] = [], []
                theta[layers] = path_theta[pi, layers]
                run_lbfgs(float(lams[pi]), layers, tol, pi)
                path_theta[pi, layers] = theta[layers]
                dev_acc[layers, pi] = dev_accuracy(layers)
            refined |= cand
        # first best among the refined fits (ties → the stronger penalty)
        best_index = np.argmax(np.where(refined, dev_acc, -np.inf), axis=1)
    best_theta = path_theta[best_index, torch.arange(nb, device=dev)]
    stats.max_iter_hits = int(hit_max_iter.sum())
    chosen_max_iter = hit_max_iter[np.arange(nb), best_index]
    return SoftmaxPath(
        penalties=lams,
        dev_accuracy=dev_acc,
        best_index=best_index,
        coef=best_theta[:, :d].contiguous(),
        intercept=best_theta[:, d].contiguous(),
        converged=converged,
        stats=stats,
        chosen_max_iter=chosen_max_iter,
    )

def standardise(
    x_train: torch.Tensor, *others: torch.Tensor, eps: float = 1e-6
) -> tuple[torch.Tensor, ...]:
    """Standardise features with training statistics, per layer and feature (in place).

    Args:
        x_train: ``(B, n, d)`` training features.
        *others: ``(B, m, d)`` tensors (dev, test) standardised with the training statistics.
        eps: floor on the standard deviation (constant features become 0).

    Returns:
        ``(mean (B, 1, d), std (B, 1, d))``; the inputs are modified in place.
    """
    nb, _, d = x_train.shape
    mean = torch.empty(nb, 1, d, dtype=torch.float32, device=x_train.device)
    std = torch.empty_like(mean)
    for b in range(nb):  # one layer at a time keeps the float64 copy small
        xb = x_train[b].double()
        mu = xb.mean(dim=0)
        mean[b, 0] = mu.float()
        std[b, 0] = (xb - mu).pow(2).mean(dim=0).sqrt().clamp_min(eps).float()
    for t in (x_train, *others):
        t.sub_(mean).div_(std)
    return mean, std

