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
  not need a tight optimum: the path is swept at ``path_tol`` (1e-3) and ``path_gap_tol``
  (1e-2, see the stop rule), then every penalty whose dev hit count is within
  ``refine_margin`` (0.2 points, and at least one dev sample) of a layer's best is refined to
  ``tol`` and ``gap_tol`` from its sweep solution — repeatedly, until no unrefined penalty is
  within the margin of the best refined one — and the choice is made among the refined fits.
  Dev hits are counted exactly (integers): the margin and the choice compare counts, so no
  rounding can drop a penalty one dev sample below the best.
* **A stop rule that bounds the objective gap.** ``max |∇f| ≤ tol`` (scikit-learn's test)
  alone is no guarantee: when features outnumber samples, weak penalties nearly separate the
  training set, the loss is flat, and a fit can pass it with its objective many times its
  optimum. A fit therefore also stops only when, with its bias first made exact for its
  weights (a few float64 Newton steps on the ``K``-dimensional bias problem),
  ``||∇_W f||²_F / (2λ) ≤ gap_tol · max(f, GAP_FLOOR)`` (``gap_tol`` 1e-3). With the bias
  minimised out, ``h(W) = min_c f(W, c)`` is ``λ``-strongly convex (the bias is unpenalised,
  the weights are), so ``f − f* ≤ ||∇_W f||² / (2λ)``: a certificate that every fit that can
  be chosen is within ``gap_tol`` (relative) of its optimum, up to float32's resolution of
  the gradient. A fit that stalls at that resolution, or stops at ``max_iter``, is reported
  not converged; ``SoftmaxPath.gap_bound`` holds the bound of every fit.
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
from dataclasses import dataclass, field

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
#: a step that lowers the loss by less than FTOL·|f| (float32 resolution) without a new
#: low of the gradient makes no progress; a layer stops after STALL_STEPS such steps in a row
#: (reported as not converged).
FTOL = 1e-7
STALL_STEPS = 5
#: damped Newton steps (float64) that make a layer's bias exact for its weights before the gap
#: certificate is judged (quadratic convergence: 2–4 are used from a nearly stationary point)
BIAS_NEWTON_STEPS = 20
#: ... and stop once ``max |∂f/∂c|`` is below this (far under float32's resolution of ``c``)
BIAS_GRAD_TOL = 1e-10
#: floor (nats per sample) on the objective that scales the relative gap test: below it the
#: certificate is judged against this absolute level (float32 cannot resolve finer gaps).
GAP_FLOOR = 1e-7


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
        dev_accuracy: ``(B, P)`` dev accuracy (``dev_hits / m``, float64) of every layer at
            every penalty (NaN when no dev);
            of the refined fit for the dev candidates, of the ``path_tol`` sweep otherwise.
        best_index: ``(B,)`` index into ``penalties`` chosen on dev (ties → stronger penalty).
        coef: ``(B, d, K)`` float32 weights at the chosen penalty.
        intercept: ``(B, K)`` float32 biases at the chosen penalty.
        converged: ``(B, P)`` whether that fit met ``tol`` and ``gap_tol`` (the dev candidates
            are refined to them; penalties only swept at ``path_tol`` are usually False). A
            chosen fit is not converged only if it stalled or hit ``max_iter``.
        stats: work counters.
        chosen_max_iter: ``(B,)`` whether a layer's chosen fit stopped at ``max_iter`` before
            ``tol`` (its result may be off the optimum).
        objective: ``(B, P)`` the objective ``f`` (mean-loss scale, float64) at each fit's last
            iterate; scikit-learn's objective is ``C·n`` times it.
        gap_bound: ``(B, P)`` ``||∇_W f||²_F / (2λ)`` there, with the bias exact for the
            weights: a bound on ``f − f*`` (see the module docstring); a converged fit has it
            at most ``gap_tol · max(f, GAP_FLOOR)``.
        dev_hits: ``(B, P)`` exact dev hit counts, which the candidates and the choice compare
            (zeros without dev).
    """

    penalties: np.ndarray
    dev_accuracy: np.ndarray
    best_index: np.ndarray
    coef: torch.Tensor
    intercept: torch.Tensor
    converged: np.ndarray
    stats: SolverStats
    chosen_max_iter: np.ndarray
    objective: np.ndarray = field(default_factory=lambda: np.empty((0, 0)))
    gap_bound: np.ndarray = field(default_factory=lambda: np.empty((0, 0)))
    dev_hits: np.ndarray = field(default_factory=lambda: np.empty((0, 0), dtype=np.int64))

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
            below it, as scikit-learn's ``tol``, and the gap test below holds; default
            1e-4), ``max_iter`` (per penalty,
            500), ``history`` (L-BFGS memory, 10), ``precondition`` (covariance
            preconditioner, True), ``keep_history`` (carry curvature pairs across penalties,
            True), ``class_curvature`` (per-class curvature in the preconditioner, True;
            off: ``(Σ + λK·I)⁻¹``), ``path_tol`` (tolerance of the path sweep, 1e-3; the
            dev candidates are then refined to ``tol``), ``refine_margin`` (dev-accuracy
            margin that makes a penalty a candidate, 0.002; at least one dev sample, compared
            on exact hit counts), ``gap_tol`` (a fit is converged only when, its bias made
            exact, ``||∇_W f||² / (2λ)`` — a bound on ``f − f*`` — is at most ``gap_tol`` times
            ``f``; 1e-3), ``path_gap_tol`` (the same for the sweep, 1e-2).

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
    gap_tol: float = 1e-3,
    path_gap_tol: float = 1e-2,
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

    def logits_nobias(idx: list[int], w: torch.Tensor) -> torch.Tensor:
        """``x W`` ``(A, n, K)`` for the layers ``idx`` (``w`` ``(A, d, K)``)."""
        if len(idx) == nb:
            return torch.bmm(x_train, w)
        return torch.stack([torch.mm(x_train[i], w[j]) for j, i in enumerate(idx)])

    def loss_grad(
        idx: list[int], th: torch.Tensor, lam: float, xw: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Loss ``(A,)`` and gradient ``(A, d+1, K)`` for the layers ``idx`` (``xw``: ``x W`` if known)."""
        w, c = th[:, :d], th[:, d]
        if xw is not None:
            z = xw + c[:, None, :]
        elif len(idx) == nb:
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

    class_freq = torch.bincount(y_train, minlength=k).double() / n  # (K,)

    def exact_bias(xw: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The bias that minimises the loss for fixed weights: damped Newton in float64 on the
        ``K``-dimensional convex problem ``min_c mean_i[-log softmax(x_i W + c)_{y_i}]``.

        Args:
            xw: ``(A, n, K)`` ``x W``.
            c: ``(A, K)`` the current bias (the start).

        Returns:
            ``(A, K)`` float32 bias and ``(A,)`` the mean loss there, in float64.
        """
        z = xw.double()
        cb = c.double()
        eye = torch.eye(k, dtype=torch.float64, device=dev)
        at_y = onehot_idx.expand(len(cb), n, 1)

        def log_probs(cc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            """``log softmax(z + c)`` ``(A, n, K)`` and the mean NLL ``(A,)``."""
            lz = torch.log_softmax(z + cc[:, None, :], dim=2)
            return lz, -lz.gather(2, at_y).mean(dim=(1, 2))

        lz, f0 = log_probs(cb)
        for _ in range(BIAS_NEWTON_STEPS):
            q = lz.exp()
            qm = q.mean(dim=1)
            gb = qm - class_freq  # (A, K), sums to 0
            if float(gb.abs().max()) <= BIAS_GRAD_TOL:
                break
            # Hessian diag(q̄) − mean q qᵀ is singular along 1 (a common shift of c changes
            # nothing): adding 11ᵀ/K fixes that direction without moving the step
            hmat = torch.diag_embed(qm) - torch.bmm(q.transpose(1, 2), q) / n + 1.0 / k + 1e-12 * eye
            step = -torch.linalg.solve(hmat, gb)
            slope = (gb * step).sum(dim=1)
            t = torch.ones(len(cb), dtype=torch.float64, device=dev)
            for _ in range(40):
                lz_t, f_t = log_probs(cb + t[:, None] * step)
                ok = f_t <= f0 + 1e-4 * t * slope + 1e-15 * f0.abs()
                if bool(ok.all()):
                    break
                t = torch.where(ok, t, 0.5 * t)
            else:  # no decrease at float64 resolution: those layers keep their bias
                t = torch.where(ok, t, torch.zeros_like(t))
                lz_t, f_t = log_probs(cb + t[:, None] * step)
            cb, lz, f0 = cb + t[:, None] * step, lz_t, f_t
        return cb.float(), f0

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
    dev_hits = np.zeros((nb, len(lams)), dtype=np.int64)  # exact counts: the selection compares these
    converged = np.zeros((nb, len(lams)), dtype=bool)
    objective = np.full((nb, len(lams)), np.nan)  # f at each fit's last iterate
    gap_bound = np.full((nb, len(lams)), np.nan)  # ||∇_W f||² / (2λ) there
    hist: dict[str, list[torch.Tensor]] = {"s": [], "y": []}  # curvature pairs, each (B, d+1, K)

    def certificate(f: torch.Tensor, g: torch.Tensor, lam: float) -> tuple[list[float], list[float]]:
        """Per layer: ``||∇_W f||²_F / (2λ)`` (a bound on ``f − f*`` once the bias is exact) and
        the gap test's scale ``max(f, GAP_FLOOR)``."""
        gw = g[:, :d].double()
        bound = ((gw * gw).sum(dim=(1, 2)) / (2.0 * lam)).tolist()
        return bound, f.double().clamp_min(GAP_FLOOR).tolist()

    def met(gm: float, bound: float, scale: float, tol_: float, gap_: float) -> bool:
        """The stop test: scikit-learn's ``max |∇f| ≤ tol`` *and* the objective-gap certificate."""
        return gm <= tol_ and bound <= gap_ * scale

    def run_lbfgs(lam: float, layers: list[int], tol_: float, gap_: float, pi: int) -> int:
        """L-BFGS on ``layers`` at penalty ``lam`` from the current ``theta``; returns iterations.

        A layer stops when, with its bias made exact for its weights, ``max |∇f| ≤ tol_`` and
        ``||∇_W f||² / (2λ) ≤ gap_ · max(f, GAP_FLOOR)`` — or after ``STALL_STEPS`` steps without
        progress, or at ``max_iter``. Every layer leaves with its bias made exact, and its
        ``converged`` / ``objective`` / ``gap_bound`` entries at ``pi`` are those of that point.
        """
        s_hist, y_hist = hist["s"], hist["y"]
        active = list(layers)
        hit_max_iter[layers, pi] = False  # a refinement that converges clears an earlier stop
        f, g = loss_grad(active, theta[active], lam)
        stall = torch.zeros(nb, dtype=torch.int64, device=dev)  # consecutive no-progress steps
        best_g = torch.full((nb,), float("inf"), device=dev)  # smallest max|∇f| so far
        it = 0
        while True:
            out_of_iter = it >= max_iter
            gm = g.abs().amax(dim=(1, 2)).tolist()
            bound, scale = certificate(f, g, lam)
            st = stall[active].tolist()
            # layers that pass the test at their bias, or stop anyway: make the bias exact (one
            # pass) and judge them there, where the bound is a certificate
            settle = [j for j in range(len(active))
                      if out_of_iter or st[j] >= STALL_STEPS or met(gm[j], bound[j], scale[j], tol_, gap_)]
            obj: dict[int, float] = {}  # float64 objective of the settled layers
            if settle:
                sub = [active[j] for j in settle]
                sel = torch.tensor(settle, device=dev)
                th_s = theta[sub]
                xw = logits_nobias(sub, th_s[:, :d])
                th_s[:, d], nll64 = exact_bias(xw, th_s[:, d])
                f_s, g_s = loss_grad(sub, th_s, lam, xw=xw)
                theta[sub] = th_s
                f, g = f.clone(), g.clone()
                f[sel], g[sel] = f_s, g_s
                # the objective in float64 (float32 resolves the loss of nearly separated
                # training data to ~1e-5 relative only): the gap test's scale and the reported value
                w64 = th_s[:, :d].double()
                f64 = (nll64 + 0.5 * lam * (w64 * w64).sum(dim=(1, 2))).tolist()
                g_s64 = g_s[:, :d].double()
                bound_s = ((g_s64 * g_s64).sum(dim=(1, 2)) / (2.0 * lam)).tolist()
                gm_s = g_s.abs().amax(dim=(1, 2)).tolist()
                for r, j in enumerate(settle):
                    gm[j], bound[j], scale[j], obj[j] = gm_s[r], bound_s[r], max(f64[r], GAP_FLOOR), f64[r]
            keep = []
            for j in range(len(active)):
                ok = j in obj and met(gm[j], bound[j], scale[j], tol_, gap_)
                if j in obj and (ok or out_of_iter or st[j] >= STALL_STEPS):
                    i = active[j]
                    converged[i, pi] = met(gm[j], bound[j], scale[j], tol, gap_tol)
                    objective[i, pi] = obj[j]
                    gap_bound[i, pi] = bound[j]
                    hit_max_iter[i, pi] = out_of_iter and not ok
                else:
                    keep.append(j)
            if not keep:
                break
            if len(keep) < len(active):
                active = [active[j] for j in keep]
                f, g = f[keep], g[keep]
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
            f_small = (f - f_new) <= FTOL * f.abs()
            f, g = f_new, g_new
            gmax = g.abs().amax(dim=(1, 2))
            g_better = gmax < 0.9 * best_g[idx_t]
            best_g[idx_t] = torch.minimum(best_g[idx_t], gmax)
            stalled = f_small & ~g_better
            stall[idx_t] = torch.where(stalled, stall[idx_t] + 1, torch.zeros_like(stall[idx_t]))
        stats.iterations += it
        return it

    def count_dev_hits(layers: list[int], pi: int) -> None:
        """Exact dev hit counts (integers) of ``theta[layers]`` into ``dev_hits[:, pi]``; the
        accuracy ``hits / m`` into ``dev_acc`` (float64, for reporting only)."""
        with torch.no_grad():
            th = theta[layers]
            z = torch.baddbmm(th[:, d][:, None, :], x_dev[layers], th[:, :d])  # type: ignore[index]
            hits = (z.argmax(dim=2) == y_dev[None, :]).sum(dim=1).cpu().numpy()  # type: ignore[index]
        dev_hits[layers, pi] = hits
        dev_acc[layers, pi] = hits / n_dev

    # ---- 1. the path, strongest penalty first, warm-started, at the sweep tolerance ----
    coarse = have_dev and len(lams) > 1
    sweep = max(tol, path_tol) if coarse else tol
    sweep_gap = max(gap_tol, path_gap_tol) if coarse else gap_tol
    n_dev = int(y_dev.numel()) if have_dev else 0  # type: ignore[union-attr]
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
        it = run_lbfgs(lam, all_layers, sweep, sweep_gap, pi)
        path_theta[pi] = theta
        if have_dev:
            count_dev_hits(all_layers, pi)
        log.debug("penalty %.3g: %d iterations, dev acc %s", lam, it, np.round(dev_acc[:, pi], 3))

    # ---- 2. refine the dev candidates (within refine_margin of the best) to ``tol`` ----
    if not have_dev:
        best_index = np.full(nb, len(lams) - 1, dtype=np.int64)
    else:
        # the margin in dev samples, at least one; counts are integers, so no rounding can drop
        # a penalty that is exactly at the margin
        margin = max(1, int(np.floor(refine_margin * n_dev + 1e-9)))
        refined = np.full(dev_hits.shape, sweep <= tol and sweep_gap <= gap_tol)
        for _ in range(len(lams)):
            # candidates: unrefined penalties within the margin of the best (refined) dev count;
            # refining can move a fit's dev count, so repeat until none is left
            best = np.where(refined.any(axis=1), np.where(refined, dev_hits, -1).max(axis=1), dev_hits.max(axis=1))
            cand = ~refined & (dev_hits >= best[:, None] - margin)
            if not cand.any():
                break
            for pi in range(len(lams)):
                layers = np.flatnonzero(cand[:, pi]).tolist()
                if not layers:
                    continue
                hist["s"], hist["y"] = [], []
                theta[layers] = path_theta[pi, layers]
                it = run_lbfgs(float(lams[pi]), layers, tol, gap_tol, pi)
                log.debug("refine penalty %.3g on %d layer(s): %d iterations", lams[pi], len(layers), it)
                path_theta[pi, layers] = theta[layers]
                count_dev_hits(layers, pi)
            refined |= cand
        # first best count among the refined fits (ties → the stronger penalty)
        best_index = np.argmax(np.where(refined, dev_hits, -1), axis=1)
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
        objective=objective,
        gap_bound=gap_bound,
        dev_hits=dev_hits,
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

