"""The SUPERB weighted-sum probe: one softmax weight per layer, learned with a linear head.

As in SUPERB's featurizer (s3prl ``Featurizer``): a zero-initialised scalar per layer,
softmax-normalised, weights the *un-normalised* hidden states; the weighted sum feeds a linear
classifier and both are trained jointly (here with Adam, minibatches, a fixed number of steps,
keeping the state with the best dev accuracy). The learned weights are not importance scores
when layer norms differ (a layer with a large norm needs a small weight to contribute the same),
so :func:`layer_norms` is reported beside them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from deepwide.probing.solver import cpu_threads

log = logging.getLogger(__name__)


@dataclass
class WeightedSumResult:
    """A trained weighted-sum probe.

    Attributes:
        weights: ``(L,)`` softmax layer weights (sum to 1).
        head_weight: ``(K, D)`` linear head weight; ``head_bias``: ``(K,)``.
        dev_accuracy: best dev accuracy seen (NaN without dev).
        steps: optimiser steps taken.
    """

    weights: np.ndarray
    head_weight: torch.Tensor
    head_bias: torch.Tensor
    dev_accuracy: float
    steps: int

    def logits(self, x: torch.Tensor | np.ndarray, batch: int = 8192) -> torch.Tensor:
        """Scores of layer-stacked features.

        Args:
            x: ``(L, m, D)`` raw (un-normalised) features.
            batch: samples per forward pass.

        Returns:
            ``(m, K)`` float32 logits on the CPU.
        """
        w = torch.as_tensor(self.weights, dtype=torch.float32)
        out = []
        for s in range(0, x.shape[1], batch):
            xb = torch.as_tensor(np.asarray(x[:, s : s + batch]) if isinstance(x, np.ndarray) else x[:, s : s + batch]).float()
            h = torch.einsum("l,lmd->md", w, xb)
            out.append(h @ self.head_weight.T.cpu() + self.head_bias.cpu())
        return torch.cat(out) if out else torch.zeros(0, self.head_bias.numel())


def layer_norms(x: np.ndarray | torch.Tensor) -> np.ndarray:
    """Mean L2 norm of each layer's feature vectors.

    Args:
        x: ``(L, n, D)`` features.

    Returns:
        ``(L,)`` float64.
    """
    t = torch.as_tensor(np.asarray(x) if isinstance(x, np.ndarray) else x)
    return np.array([float(torch.linalg.vector_norm(t[i].double(), dim=1).mean()) for i in range(t.shape[0])])


def fit_weighted_sum(
    x_train: np.ndarray,
    y_train: np.ndarray,
    num_classes: int,
    *,
    x_dev: np.ndarray | None = None,
    y_dev: np.ndarray | None = None,
    steps: int = 600,
    batch_size: int = 256,
    lr: float = 5e-3,
    eval_every: int = 100,
    seed: int = 0,
    device: str = "cpu",
    freeze_layer_weights: bool = False,
) -> WeightedSumResult:
    """Train layer weights and a linear head jointly.

    Args:
        x_train: ``(L, n, D)`` raw features of every layer.
        y_train: ``(n,)`` class indices.
        num_classes: ``K``.
        x_dev: ``(L, m, D)`` dev features (best-dev state is kept); ``y_dev``: ``(m,)``.
        steps: Adam steps (minibatches drawn with replacement across epochs).
        batch_size: samples per step.
        lr: Adam learning rate (layer weights and head alike).
        eval_every: dev evaluation period (steps).
        seed: seed for initialisation and batches.
        device: torch device.
        freeze_layer_weights: keep the layer weights uniform and train the head alone (the
            diagnosis of whether learned weights overfit).

    Returns:
        A :class:`WeightedSumResult`.
    """
    nl, n, d = x_train.shape
    with cpu_threads(float(batch_size) * nl * d * 4, device):
        return _fit_weighted_sum(
            x_train, y_train, num_classes, x_dev=x_dev, y_dev=y_dev, steps=steps,
            batch_size=batch_size, lr=lr, eval_every=eval_every, seed=seed, device=device,
            freeze_layer_weights=freeze_layer_weights,
        )


def _fit_weighted_sum(
    x_train: np.ndarray,
    y_train: np.ndarray,
    num_classes: int,
    *,
    x_dev: np.ndarray | None,
    y_dev: np.ndarray | None,
    steps: int,
    batch_size: int,
    lr: float,
    eval_every: int,
    seed: int,
    device: str,
    freeze_layer_weights: bool,
) -> WeightedSumResult:
    gen = torch.Generator().manual_seed(seed)
    torch_dev = torch.device(device)
    nl, n, d = x_train.shape
    logits_w = torch.zeros(nl, device=torch_dev, requires_grad=True)
    head = torch.nn.Linear(d, num_classes).to(torch_dev)
    with torch.no_grad():
        head.weight.copy_(torch.randn(num_classes, d, generator=gen) * (1.0 / np.sqrt(d)) * 0.01)
        head.bias.zero_()
    params = [logits_w, head.weight, head.bias]
    adam = torch.optim.Adam(params, lr=lr)
    y_t = torch.as_tensor(y_train, dtype=torch.int64)
    have_dev = x_dev is not None and y_dev is not None and len(y_dev) > 0

    def dev_acc() -> float:
        with torch.no_grad():
            res = _snapshot(logits_w, head, float("nan"), 0)
            pred = res.logits(x_dev).argmax(dim=1).numpy()  # type: ignore[arg-type]
        return float(np.mean(pred == y_dev))

    best = _snapshot(logits_w, head, float("nan"), 0)
    best_acc = -1.0
    perm = torch.randperm(n, generator=gen)
    pos = 0
    for step in range(1, steps + 1):
        if pos + batch_size > n:
            perm, pos = torch.randperm(n, generator=gen), 0
        idx = perm[pos : pos + batch_size].sort().values
        pos += batch_size
        xb = torch.as_tensor(x_train[:, idx.numpy()]).to(torch_dev).float()
        h = torch.einsum("l,lbd->bd", torch.softmax(logits_w, 0), xb)
        loss = torch.nn.functional.cross_entropy(head(h), y_t[idx].to(torch_dev))
        for p in params:
            p.grad = None
        loss.backward()
        if freeze_layer_weights:
            logits_w.grad = None
        adam.step()
        if have_dev and (step % eval_every == 0 or step == steps):
            acc = dev_acc()
            if acc > best_acc:
                best_acc, best = acc, _snapshot(logits_w, head, acc, step)
    if not have_dev:
        best = _snapshot(logits_w, head, float("nan"), steps)
    log.debug("weighted sum: dev accuracy %.3f at step %d, weights %s", best.dev_accuracy, best.steps, np.round(best.weights, 3))
    return best


def _snapshot(logits_w: torch.Tensor, head: torch.nn.Linear, acc: float, step: int) -> WeightedSumResult:
    with torch.no_grad():
        return WeightedSumResult(
            weights=torch.softmax(logits_w, 0).double().cpu().numpy(),
            head_weight=head.weight.detach().cpu().clone(),
            head_bias=head.bias.detach().cpu().clone(),
            dev_accuracy=acc,
            steps=step,
        )
