"""CTC probes on cached frames: one linear CTC head per layer, all layers in one batched problem.

SUPERB's phone-recognition (PR) downstream is a linear layer on the weighted sum of the
upstream's layers, trained with CTC and decoded greedily; its ASR downstream is the same loss
with characters (and a BiLSTM). Here the features are read from a store once, so every layer's
head trains on the same minibatch in one pass: logits ``(L, B, T, C)`` come from one einsum
over the layer-stacked frames, and the ``L`` CTC losses are one ``ctc_loss`` call over an
``L·B`` batch. Heads are independent (each layer's loss touches only its own head), so the
curve is exactly ``L`` separate probes, at the cost of one.

Decoding is greedy (argmax per frame, repeats collapsed, blanks dropped); the error rate is
``Σ edits / Σ reference length`` over utterances, with Levenshtein distances from RapidFuzz
(checked against ``torchaudio.functional.edit_distance``). Each head keeps
the parameters with the lowest dev error seen at its evaluation points.

Labels are ``1..V`` (0 is the CTC blank); a :class:`CtcSet` holds the frames of whole
utterances in the store's ragged layout (``offsets``) and one label sequence per utterance.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import numpy as np
import torch

from deepwide.probing.solver import cpu_threads

log = logging.getLogger(__name__)

BLANK = 0


@dataclass(frozen=True)
class CtcSet:
    """Whole utterances for CTC: frames of every layer and one label sequence each.

    Attributes:
        x: ``(L, N, D)`` frames of all utterances concatenated (any float dtype).
        offsets: ``(U + 1,)`` int64; utterance ``u`` owns frames ``offsets[u]:offsets[u+1]``.
        targets: ``U`` int64 arrays of labels in ``1..V`` (no blank), one per utterance.
    """

    x: np.ndarray
    offsets: np.ndarray
    targets: tuple[np.ndarray, ...]

    def __post_init__(self) -> None:
        if self.x.ndim != 3:
            raise ValueError(f"x must be (layers, frames, dim), got shape {self.x.shape}")
        if len(self.offsets) != len(self.targets) + 1 or int(self.offsets[-1]) != self.x.shape[1]:
            raise ValueError("offsets must have one entry per utterance plus one, ending at the frame count")

    @property
    def num_utts(self) -> int:
        return len(self.targets)

    def lengths(self) -> np.ndarray:
        """``(U,)`` frames per utterance."""
        return np.diff(self.offsets)

    def batch(self, utts: np.ndarray, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded frames of ``utts``: ``((L, B, T_max, D) float32, (B,) int64 lengths)``, zero
        past each utterance's length.

        Each utterance's ``(L, T_u, D)`` slice is copied, in ``x``'s dtype, into a zeroed batch;
        the batch is then cast to float32 in one pass (no index arrays, no pass to mask the
        padding, one parallel torch operation: many small ones stall when the cores are shared).
        """
        lens = self.lengths()[utts]
        t_max = int(lens.max()) if len(utts) else 0
        xb = np.zeros((self.x.shape[0], len(utts), t_max, self.x.shape[2]), self.x.dtype.newbyteorder("="))
        for i, u in enumerate(utts):
            xb[:, i, : lens[i]] = self.x[:, self.offsets[u] : self.offsets[u + 1]]
        return torch.from_numpy(xb).to(device, torch.float32), torch.from_numpy(lens.astype(np.int64))


@dataclass
class CtcFit:
    """Trained CTC heads, one per layer.

    Attributes:
        weight: ``(L, D, C)`` head weights (``C = V + 1``, class 0 the blank); ``bias``: ``(L, C)``.
        dev_error: ``(L,)`` best dev error rate of each head (NaN without dev).
        best_step: ``(L,)`` the step at which each head's kept parameters were reached.
        steps: optimiser steps taken.
    """

    weight: torch.Tensor
    bias: torch.Tensor
    dev_error: np.ndarray
    best_step: np.ndarray
    steps: int

    def decode(self, data: CtcSet, batch_utts: int = 32) -> list[list[list[int]]]:
        """Greedy CTC decoding of every utterance by every head: ``[layer][utt] -> labels``."""
        return greedy_decode_layers(self.weight, self.bias, data, batch_utts)


def greedy_collapse(path: np.ndarray) -> list[int]:
    """Best path -> labels: repeats collapsed, then blanks dropped. ``(T,)`` -> list."""
    if len(path) == 0:
        return []
    keep = np.ones(len(path), bool)
    keep[1:] = path[1:] != path[:-1]
    return [int(c) for c in path[keep] if c != BLANK]


def greedy_decode_layers(weight: torch.Tensor, bias: torch.Tensor, data: CtcSet, batch_utts: int = 32) -> list[list[list[int]]]:
    """``[layer][utt]`` greedy label sequences of heads ``weight (L, D, C)``, ``bias (L, C)``."""
    device = weight.device
    out: list[list[list[int]]] = [[] for _ in range(weight.shape[0])]
    with torch.no_grad():
        for s in range(0, data.num_utts, batch_utts):
            utts = np.arange(s, min(s + batch_utts, data.num_utts))
            xb, lens = data.batch(utts, device)
            best = (torch.einsum("lbtd,ldc->lbtc", xb, weight) + bias[:, None, None]).argmax(-1).cpu().numpy()
            for layer in range(weight.shape[0]):
                for i in range(len(utts)):
                    out[layer].append(greedy_collapse(best[layer, i, : int(lens[i])]))
    return out


def edit_counts(hyps: Sequence[Sequence[Any]], refs: Sequence[Sequence[Any]]) -> tuple[np.ndarray, np.ndarray]:
    """``(edits (U,), reference lengths (U,))`` of hypotheses against references.

    Edits are Levenshtein distances (insertions, deletions, substitutions, each 1) from
    RapidFuzz (``rapidfuzz.distance.Levenshtein``, C++; the backend of jiwer), on sequences of
    any hashable units: labels, words or characters. The tests check them against torchaudio's
    ``edit_distance`` and jiwer's counts.
    """
    from rapidfuzz.distance import Levenshtein

    edits = np.array([Levenshtein.distance(list(h), list(r)) for h, r in zip(hyps, refs, strict=True)], np.int64)
    return edits, np.array([len(r) for r in refs], np.int64)


def error_rate(hyps: Sequence[Sequence[Any]], refs: Sequence[Sequence[Any]]) -> float:
    """``Σ edits / Σ reference length`` (PER for phones, WER for words, CER for characters)."""
    edits, n = edit_counts(hyps, refs)
    return float(edits.sum() / max(int(n.sum()), 1))


def layer_ctc_losses(logp: torch.Tensor, lengths: torch.Tensor, targets: list[np.ndarray]) -> torch.Tensor:
    """Each layer's CTC loss on one batch, in one ``ctc_loss`` call.

    Args:
        logp: ``(L, B, T, C)`` log-probabilities (class 0 the blank).
        lengths: ``(B,)`` valid frames per row.
        targets: ``B`` label sequences (labels ``1..C-1``).

    Returns:
        ``(L,)``: per layer, the summed negative log-likelihood over the batch divided by ``B``
        (infinite losses of unreachable targets are zeroed, as ``zero_infinity`` does).
    """
    nl, b, t_max, c = logp.shape
    flat = torch.from_numpy(np.concatenate(targets).astype(np.int64)) if targets else torch.zeros(0, dtype=torch.int64)
    t_lens = torch.tensor([len(t) for t in targets], dtype=torch.int64)
    per_row = torch.nn.functional.ctc_loss(
        logp.reshape(nl * b, t_max, c).transpose(0, 1),  # (T, L·B, C): layer-major rows
        flat.repeat(nl), lengths.repeat(nl), t_lens.repeat(nl),
        blank=BLANK, reduction="none", zero_infinity=True,
    )
    return per_row.reshape(nl, b).sum(1) / b


def fit_ctc_layers(
    train: CtcSet,
    num_labels: int,
    *,
    dev: CtcSet | None = None,
    steps: int = 1000,
    batch_utts: int = 16,
    lr: float = 1e-2,
    eval_every: int = 100,
    seed: int = 0,
    device: str = "cpu",
) -> CtcFit:
    """Train one linear CTC head per layer on ``train``, all layers in each step.

    Args:
        train: training utterances (``L`` layers).
        num_labels: ``V``; heads have ``V + 1`` outputs (blank first).
        dev: utterances on which each head's kept state is chosen (lowest error); without it
            the last state is kept.
        steps: Adam steps; each draws ``batch_utts`` utterances without replacement within an
            epoch (seeded).
        lr: Adam learning rate.
        eval_every: dev evaluation interval in steps (and after the last step).
        seed: head initialisation and batch order.
        device: torch device.

    Returns:
        A :class:`CtcFit`.
    """
    nl, _, d = train.x.shape
    gen = torch.Generator().manual_seed(seed)
    head = _LayerHeads(torch.randn(nl, d, num_labels + 1, generator=gen) * (0.01 / np.sqrt(d))).to(device)

    def dev_errors(data: CtcSet) -> np.ndarray:
        return _error_rates(greedy_decode_layers(head.weight.detach(), head.bias.detach(), data), data)

    with cpu_threads(float(batch_utts) * float(train.lengths().mean() if train.num_utts else 0) * nl * d * (num_labels + 1),
                     device):
        err, step = _train(head, nl, train, dev, dev_errors, CtcSchedule(steps, batch_utts, lr, eval_every, seed),
                           torch.device(device))
    return CtcFit(weight=head.weight.detach().cpu(), bias=head.bias.detach().cpu(), dev_error=err, best_step=step,
                  steps=steps)


class _LayerHeads(torch.nn.Module):
    """One linear CTC head per layer: ``(L, B, T, D)`` + ``(B,)`` lengths -> ``(L, B, T, C)`` log-probs.

    Args:
        weight: ``(L, D, C)`` initial weights; the bias ``(L, C)`` starts at zero.
    """

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(weight)
        self.bias = torch.nn.Parameter(torch.zeros(weight.shape[0], weight.shape[2]))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(torch.einsum("lbtd,ldc->lbtc", x, self.weight) + self.bias[:, None, None], dim=-1)


def _error_rates(hyps: Sequence[Sequence[Sequence[int]]], data: CtcSet) -> np.ndarray:
    """``(K,)`` error rate of each head's hypotheses ``[head][utt]`` against ``data``'s targets."""
    return np.array([error_rate(h, data.targets) for h in hyps])


@dataclass(frozen=True)
class CtcSchedule:
    """How CTC heads are trained: Adam steps, utterances per step, learning rate, dev evaluation
    interval (in steps) and the seed (head initialisation, batch order); the arguments of
    :func:`fit_ctc_layers`."""

    steps: int
    batch_utts: int
    lr: float
    eval_every: int
    seed: int


def _train(
    head: torch.nn.Module,
    heads: int,
    train: CtcSet,
    dev: CtcSet | None,
    dev_errors: Callable[[CtcSet], np.ndarray],
    schedule: CtcSchedule,
    device: torch.device,
) -> tuple[np.ndarray, np.ndarray]:
    """The one CTC training loop: seeded batch order, Adam, dev evaluation, best-on-dev state.

    Every step draws ``batch_utts`` utterances without replacement within an epoch (the order
    seeded by ``seed``, each batch sorted), sums the ``heads`` CTC losses of
    :func:`layer_ctc_losses` and takes one Adam step. Every ``eval_every`` steps and after the
    last, ``dev_errors(dev)`` scores the current parameters; each head keeps the parameters of
    its lowest dev error so far, which ``head`` holds on return. Without ``dev`` (or with no
    dev utterances, or no step) the last parameters are kept.

    Args:
        head: maps ``(L, B, T, D)`` frames and ``(B,)`` lengths to ``(heads, B, T, C)``
            log-probs; with ``heads > 1`` every parameter has a leading ``heads`` dimension
            (row ``k`` is head ``k``'s), so each head's kept state is chosen on its own.
        heads: ``K``, the number of independent heads.
        train, dev: training utterances; utterances on which the kept state is chosen.
        dev_errors: ``dev -> (K,)`` error rate of each head with the current parameters.
        schedule: steps, batch size, learning rate, evaluation interval and seed.
        device: where ``head`` is and where batches go.

    Returns:
        ``(dev error (K,), step (K,))`` of the kept parameters (NaN and ``steps`` when nothing
        was evaluated).
    """
    steps, eval_every = schedule.steps, schedule.eval_every
    adam = torch.optim.Adam(head.parameters(), lr=schedule.lr)
    best = {k: v.clone() for k, v in head.state_dict().items()}
    best_err, best_step = np.full(heads, np.inf), np.zeros(heads, np.int64)
    scored = dev if dev is not None and dev.num_utts > 0 and steps > 0 else None
    rng = np.random.default_rng(schedule.seed)
    order, pos = rng.permutation(train.num_utts), 0
    batch_utts = min(schedule.batch_utts, train.num_utts)
    head.train()
    for step in range(1, steps + 1):
        if pos + batch_utts > len(order):
            order, pos = rng.permutation(train.num_utts), 0
        utts = np.sort(order[pos : pos + batch_utts])
        pos += batch_utts
        xb, lens = train.batch(utts, device)
        loss = layer_ctc_losses(head(xb, lens), lens, [train.targets[u] for u in utts]).sum()
        adam.zero_grad(set_to_none=True)
        loss.backward()
        adam.step()
        if scored is not None and (step % eval_every == 0 or step == steps):
            errs = dev_errors(scored)
            better = errs < best_err
            if better.all():
                best = {k: v.clone() for k, v in head.state_dict().items()}
            elif better.any():
                idx = torch.from_numpy(np.flatnonzero(better)).to(device)
                for k, v in head.state_dict().items():
                    best[k][idx] = v[idx]
            best_err[better], best_step[better] = errs[better], step
            log.debug("ctc step %d: loss %.3f, dev error by head %s", step, float(loss.detach()), np.round(errs, 3))
    if scored is None:
        return np.full(heads, np.nan), np.full(heads, steps, np.int64)
    head.load_state_dict(best)
    return best_err, best_step


class _Decoder(Protocol):
    def decode(self, data: CtcSet) -> list[list[int]]: ...


_Fit = TypeVar("_Fit", bound=_Decoder)


def _train_single(head: torch.nn.Module, snapshot: Callable[[float, int], _Fit], train: CtcSet, dev: CtcSet | None,
                  schedule: CtcSchedule, device: torch.device) -> _Fit:
    """:func:`_train` for one head; ``snapshot(dev error, step)`` is the fit of ``head``'s current
    parameters, whose ``decode`` scores them on dev."""
    err, step = _train(head, 1, train, dev, lambda data: _error_rates([snapshot(np.nan, 0).decode(data)], data),
                       schedule, device)
    return snapshot(float(err[0]), int(step[0]))


@dataclass
class WeightedCtcFit:
    """A trained SUPERB PR downstream: softmax layer weights and one linear CTC head.

    Attributes:
        weights: ``(L,)`` softmax layer weights (sum to 1).
        weight: ``(D, C)`` head weight; ``bias``: ``(C,)``.
        dev_error: best dev error rate (NaN without dev); ``best_step``: where it was reached.
    """

    weights: np.ndarray
    weight: torch.Tensor
    bias: torch.Tensor
    dev_error: float
    best_step: int

    def decode(self, data: CtcSet, batch_utts: int = 32) -> list[list[int]]:
        """Greedy label sequence of every utterance."""
        mixed = _mixed(torch.as_tensor(self.weights, dtype=torch.float32), data)
        return greedy_decode_layers(self.weight[None], self.bias[None], mixed, batch_utts)[0]


def _mixed(weights: torch.Tensor, data: CtcSet) -> CtcSet:
    """``data`` with its layers replaced by their ``weights``-weighted sum (one layer)."""
    x = np.einsum("l,lnd->nd", weights.detach().cpu().numpy().astype(np.float32), np.asarray(data.x, np.float32))
    return CtcSet(x=x[None], offsets=data.offsets, targets=data.targets)


def fit_ctc_weighted(
    train: CtcSet,
    num_labels: int,
    *,
    dev: CtcSet | None = None,
    steps: int = 1000,
    batch_utts: int = 16,
    lr: float = 1e-2,
    eval_every: int = 100,
    seed: int = 0,
    device: str = "cpu",
) -> WeightedCtcFit:
    """SUPERB's PR downstream on cached layers: a zero-initialised softmax weight per layer on
    the un-normalised states, one linear CTC head, trained jointly (Adam); the state with the
    lowest dev error is kept. Arguments as :func:`fit_ctc_layers`."""
    gen = torch.Generator().manual_seed(seed)
    nl, _, d = train.x.shape
    head = _WeightedHead(nl, torch.randn(d, num_labels + 1, generator=gen) * (0.01 / np.sqrt(d))).to(device)

    def snapshot(err: float, step: int) -> WeightedCtcFit:
        return WeightedCtcFit(torch.softmax(head.logits_w.detach(), 0).double().cpu().numpy(),
                              head.weight.detach().cpu().clone(), head.bias.detach().cpu().clone(), err, step)

    return _train_single(head, snapshot, train, dev, CtcSchedule(steps, batch_utts, lr, eval_every, seed),
                         torch.device(device))


def _layer_mix(logits_w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``softmax(logits_w)``-weighted sum of the layers of ``x``: ``(L,)``, ``(L, B, T, D)`` -> ``(B, T, D)``."""
    return torch.einsum("l,lbtd->btd", torch.softmax(logits_w, 0), x)


class _WeightedHead(torch.nn.Module):
    """SUPERB's PR downstream: a linear CTC head on the softmax-weighted sum of layers.
    ``(L, B, T, D)`` + ``(B,)`` lengths -> ``(1, B, T, C)`` log-probs.

    Args:
        num_layers: ``L``; the layer logits start at zero (equal weights).
        weight: ``(D, C)`` initial head weight; the bias ``(C,)`` starts at zero.
    """

    def __init__(self, num_layers: int, weight: torch.Tensor) -> None:
        super().__init__()
        self.logits_w = torch.nn.Parameter(torch.zeros(num_layers))
        self.weight = torch.nn.Parameter(weight)
        self.bias = torch.nn.Parameter(torch.zeros(weight.shape[1]))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(_layer_mix(self.logits_w, x) @ self.weight + self.bias, dim=-1)[None]


class _BlstmHead(torch.nn.Module):
    """SUPERB's ASR downstream: 2-layer BiLSTM on the weighted sum of layers, then a linear
    projection to the CTC classes. ``(L, B, T, D)`` + ``(B,)`` lengths -> ``(1, B, T, C)`` log-probs."""

    def __init__(self, num_layers: int, dim: int, classes: int, hidden: int) -> None:
        super().__init__()
        self.logits_w = torch.nn.Parameter(torch.zeros(num_layers))
        self.lstm = torch.nn.LSTM(dim, hidden, num_layers=2, bidirectional=True, batch_first=True)
        self.out = torch.nn.Linear(2 * hidden, classes)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        h = _layer_mix(self.logits_w, x)
        packed = torch.nn.utils.rnn.pack_padded_sequence(h, lengths.cpu(), batch_first=True, enforce_sorted=False)
        y, _ = self.lstm(packed)
        y, _ = torch.nn.utils.rnn.pad_packed_sequence(y, batch_first=True, total_length=h.shape[1])
        return torch.log_softmax(self.out(y), dim=-1)[None]


@dataclass
class BlstmCtcFit:
    """A trained BiLSTM CTC head on the weighted sum of layers.

    Attributes:
        weights: ``(L,)`` softmax layer weights; ``head``: the trained module (CPU, eval mode).
        dev_error, best_step: the kept state's dev error rate and step.
    """

    weights: np.ndarray
    head: torch.nn.Module
    dev_error: float
    best_step: int

    def decode(self, data: CtcSet, batch_utts: int = 16) -> list[list[int]]:
        """Greedy label sequence of every utterance."""
        out: list[list[int]] = []
        with torch.no_grad():
            for s in range(0, data.num_utts, batch_utts):
                xb, lens = data.batch(np.arange(s, min(s + batch_utts, data.num_utts)), torch.device("cpu"))
                best = self.head(xb, lens)[0].argmax(-1).numpy()
                out.extend(greedy_collapse(best[i, : int(lens[i])]) for i in range(len(lens)))
        return out


def fit_ctc_blstm(
    train: CtcSet,
    num_labels: int,
    *,
    dev: CtcSet | None = None,
    hidden: int = 1024,
    steps: int = 1000,
    batch_utts: int = 16,
    lr: float = 1e-2,
    eval_every: int = 100,
    seed: int = 0,
    device: str = "cpu",
) -> BlstmCtcFit:
    """SUPERB's ASR downstream on cached layers (weighted sum -> 2 × BiLSTM(``hidden``) ->
    linear -> CTC), Adam; the state with the lowest dev error is kept. Meant for a GPU at
    ``hidden=1024``; runs on the CPU for small stores. Other arguments as :func:`fit_ctc_layers`."""
    torch.manual_seed(seed)
    nl, _, d = train.x.shape
    head = _BlstmHead(nl, d, num_labels + 1, hidden).to(device)

    def snapshot(err: float, step: int) -> BlstmCtcFit:
        kept = copy.deepcopy(head).cpu().eval()
        return BlstmCtcFit(torch.softmax(kept.logits_w.detach(), 0).double().numpy(), kept, err, step)

    return _train_single(head, snapshot, train, dev, CtcSchedule(steps, batch_utts, lr, eval_every, seed),
                         torch.device(device))


__all__ = [
    "BLANK",
    "BlstmCtcFit",
    "CtcFit",
    "CtcSchedule",
    "CtcSet",
    "edit_counts",
    "error_rate",
    "WeightedCtcFit",
    "fit_ctc_blstm",
    "fit_ctc_layers",
    "fit_ctc_weighted",
    "greedy_collapse",
    "greedy_decode_layers",
    "layer_ctc_losses",
]
