"""Run probing tasks on feature stores and collect the results as one xarray Dataset.

``probe_stores(stores, tasks, config, nulls=…, seed=…)`` opens each store, prepares each task
(:mod:`deepwide.probing.tasks`), reads its features one layer at a time, fits

* the layerwise linear softmax probes — every layer and every penalty of the grid in one
  batched solve (:mod:`deepwide.probing.solver`): features standardised with training
  statistics, penalty chosen on dev accuracy, the dev-chosen *train* fit scored on test (no
  refit on train + dev);
* the SUPERB weighted-sum probe over all layers (:mod:`deepwide.probing.weighted`);
* for ``asv``: cosine scoring of pooled features (centred on the LDA training mean) and cosine
  scoring after an LDA fitted on training speakers outside the trial list; ``score`` is the EER
  after LDA, ``eer_cosine`` the EER without it (when an LDA cannot be fitted, ``score`` is
  the cosine EER and ``backend`` says ``"cosine"``);

and returns a Dataset with the layout of ``docs/results-schema.md`` (Probing), written by
:func:`write_results` as the pair ``probe.nc`` + ``probe.csv`` (the ``.nc`` records the CSV's
SHA-256, :func:`check_results_pair` compares them), merged into an earlier pair by
:func:`save_results`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr
from tqdm.auto import tqdm

from deepwide import __version__
from deepwide.config import atomic_target, config_to_dict
from deepwide.devices import resolve_device
from deepwide.errors import ConfigError, DiskFullError, TaskError, disk_full_state, is_disk_full
from deepwide.probing.ctc import (
    CtcSet,
    edit_counts,
    error_rate,
    fit_ctc_blstm,
    fit_ctc_layers,
    fit_ctc_weighted,
)
from deepwide.probing.folds import bootstrap_fold_mean_ci, fold_means
from deepwide.probing.solver import DEFAULT_PENALTIES, fit_softmax_path, standardise
from deepwide.probing.stats import (
    DEFAULT_BOOT,
    bootstrap_eer_ci,
    bootstrap_mean_ci,
    bootstrap_ratio_ci,
    equal_error_rate,
    macro_f1,
    majority_accuracy,
)
from deepwide.probing.tasks import (
    TASKS,
    FoldedData,
    PrepareOptions,
    SequenceData,
    Task,
    TaskData,
    TrialData,
)
from deepwide.probing.weighted import fit_weighted_sum, layer_norms

log = logging.getLogger(__name__)

NULL_PREFIX = "random:"


@dataclass(frozen=True)
class ProbeConfig:
    """Everything that changes a probing result (saved in the results' attrs).

    Attributes:
        penalties: L2 grid (mean-loss scale; see :mod:`deepwide.probing.solver`).
        max_train_frames: cap on training frames of frame-level tasks.
        max_eval_frames: cap on dev and on test frames (whole utterances).
        include_silence: keep silence frames in ``phone``.
        segment_frames: ``sid-frame`` sample = mean of this many consecutive frames.
        tol: solver gradient tolerance (as scikit-learn's ``tol``).
        gap_tol, frame_gap_tol: the certified relative objective gap of every fit the penalty
            can be chosen among (:func:`deepwide.probing.solver.fit_softmax_path`; the sweep
            uses ten times it): ``gap_tol`` (1e-3) for utterance-level tasks, whose few samples
            per dimension nearly separate the training set at weak penalties, and
            ``frame_gap_tol`` (1e-2) for frame-level tasks (tens of thousands of frames per
            fit), where it halves the work and moved no teacher layer's phone or sid-frame
            accuracy by more than 0.25 points against 1e-3 (docs/benchmarks.md).
        max_iter: solver iterations per run (the penalty sweep and a refinement each get it).
        n_boot: bootstrap replicates.
        weighted_sum: also train the SUPERB weighted-sum probe.
        ws_steps, ws_batch, ws_lr: its Adam schedule.
        ctc_steps, ctc_batch, ctc_lr, ctc_eval_every: Adam steps, utterances per batch, learning
            rate and dev-evaluation interval of the CTC heads of sequence tasks (``pr``, ``asr``).
        asr_head: ``"linear"`` (a CTC head per layer and on the weighted sum) or ``"blstm"``
            (SUPERB's ASR downstream on the weighted sum: a 2-layer BiLSTM of ``blstm_hidden``
            units per direction, then the CTC head; no per-layer curve).
        device: ``"auto"`` (CUDA when present), ``"cpu"`` or ``"cuda"``.
        max_batch_bytes: memory budget of one batched solve (layers are split to fit).
    """

    penalties: tuple[float, ...] = DEFAULT_PENALTIES
    max_train_frames: int = 50_000
    max_eval_frames: int = 50_000
    include_silence: bool = False
    segment_frames: int = 1
    tol: float = 1e-4
    gap_tol: float = 1e-3
    frame_gap_tol: float = 1e-2
    max_iter: int = 500
    n_boot: int = DEFAULT_BOOT
    weighted_sum: bool = True
    ws_steps: int = 600
    ws_batch: int = 256
    ws_lr: float = 5e-3
    ctc_steps: int = 1000
    ctc_batch: int = 16
    ctc_lr: float = 1e-2
    ctc_eval_every: int = 100
    asr_head: str = "linear"
    blstm_hidden: int = 1024
    device: str = "auto"
    max_batch_bytes: int = 2 * 1024**3

    def __post_init__(self) -> None:
        if not self.penalties or any(p <= 0 for p in self.penalties):
            raise ValueError("penalties must be a non-empty tuple of positive numbers")
        if self.asr_head not in ("linear", "blstm"):
            raise ValueError(f"asr_head must be linear or blstm, not {self.asr_head!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda, not {self.device!r}")
        if self.n_boot < 10:
            raise ValueError("n_boot must be at least 10")
        if self.max_train_frames < 1 or self.max_eval_frames < 1:
            raise ValueError("frame caps must be positive")
        if not (0 < self.gap_tol < 1 and 0 < self.frame_gap_tol < 1):
            raise ValueError("gap_tol and frame_gap_tol must be between 0 and 1")

    def prepare_options(self, seed: int) -> PrepareOptions:
        """The sampling options for :meth:`Task.prepare`."""
        return PrepareOptions(self.max_train_frames, self.max_eval_frames, self.include_silence, self.segment_frames, seed)


@dataclass
class TaskResult:
    """One task on one model: per-layer arrays of length ``L + 1`` and scalars."""

    task: Task
    layers: np.ndarray  # model layer number of each entry below (stores may hold a subset)
    score: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    f1: np.ndarray
    penalty: np.ndarray
    n_train: np.ndarray
    n_test: np.ndarray
    majority: float
    eer_cosine: np.ndarray | None = None
    cer: np.ndarray | None = None  # asr: character error rate per layer
    ws_weight: np.ndarray | None = None
    layer_norm: np.ndarray | None = None
    ws_score: float = float("nan")
    ws_ci: tuple[float, float] = (float("nan"), float("nan"))
    backend: str = ""  # asv: "lda" or "cosine" (what scored ``score``); "" for classification
    fold_sd: np.ndarray | None = None  # folded tasks: standard deviation of the fold scores per layer
    n_folds: int = 0  # folded tasks: how many folds ``score`` averages (0: not folded)
    correct: np.ndarray | None = None  # classification: (n_test, L + 1) 1.0/0.0 per test sample (not saved)
    ws_correct: np.ndarray | None = None  # classification: (n_test,) of the weighted-sum probe (not saved)


@dataclass
class ModelEntry:
    """A store to probe and its place in the results."""

    ds: Any
    model_id: str
    path: str
    is_null: bool = False
    null_of: str = ""
    results: dict[str, TaskResult] = field(default_factory=dict)


# ----------------------------------------------------------------- store access
def _num_layers(ds: Any) -> int:
    """``L`` of the model (a store may hold a subset of its layers)."""
    if "num_layers" in ds.attrs:
        return int(ds.attrs["num_layers"])
    return int(np.max(ds["layer"].values))


def _layer_numbers(ds: Any) -> np.ndarray:
    """``(n_stored_layers,)`` the model layer number of each stored layer position."""
    return np.asarray(ds["layer"].values, np.int64)


def load_task_layers(data: TaskData | SequenceData, ds: Any, desc: str) -> dict[str, np.ndarray]:
    """``{"train"|"dev"|"test": (L+1, n, D) float32}``, read one layer at a time."""
    n_layers = int(ds.sizes["layer"])
    out: dict[str, np.ndarray] = {}
    for layer in tqdm(range(n_layers), desc=desc, unit="layer", leave=False, disable=None):
        block = data.load_layer(ds, layer)
        for name, arr in block.items():
            if name not in out:
                out[name] = np.empty((n_layers, *arr.shape), np.float32)
            out[name][layer] = arr
    return out


# ----------------------------------------------------------------- classification
def probe_classification(data: TaskData, ds: Any, config: ProbeConfig, seed: int = 0) -> TaskResult:
    """Layerwise linear probes (+ weighted-sum probe) for one classification task.

    Args:
        data: the prepared task.
        ds: the store.
        config: probe configuration.
        seed: seed for the weighted-sum probe and the bootstrap.

    Returns:
        A :class:`TaskResult` with per-layer arrays of length ``L + 1``.
    """
    device = resolve_device(config.device)
    feats = load_task_layers(data, ds, f"{data.task.name}: reading")
    n_layers, _, dim = feats["train"].shape
    k = len(data.classes)
    y_tr, y_dv, y_te = data.train.labels, data.dev.labels, data.test.labels

    result = TaskResult(
        task=data.task, layers=_layer_numbers(ds),
        score=np.full(n_layers, np.nan), ci_low=np.full(n_layers, np.nan), ci_high=np.full(n_layers, np.nan),
        f1=np.full(n_layers, np.nan), penalty=np.full(n_layers, np.nan),
        n_train=np.full(n_layers, len(y_tr), np.int64), n_test=np.full(n_layers, len(y_te), np.int64),
        majority=majority_accuracy(y_tr, y_te),
    )

    if config.weighted_sum:
        result.layer_norm = layer_norms(feats["train"])
        ws = fit_weighted_sum(
            feats["train"], y_tr, k, x_dev=feats["dev"], y_dev=y_dv,
            steps=config.ws_steps, batch_size=config.ws_batch, lr=config.ws_lr, seed=seed, device=device,
        )
        pred = ws.logits(feats["test"]).argmax(dim=1).numpy()
        correct = (pred == y_te).astype(np.float64)
        result.ws_weight = ws.weights
        result.ws_score = float(correct.mean())
        result.ws_ci = bootstrap_mean_ci(correct, data.test.groups, n_boot=config.n_boot, seed=seed)
        result.ws_correct = correct

    gap = config.frame_gap_tol if data.task.level == "frame" else config.gap_tol
    per_layer = (len(y_tr) + len(y_dv) + len(y_te)) * dim * 4 * 2 + dim * dim * 8
    chunk = max(1, int(config.max_batch_bytes // max(per_layer, 1)))
    correct_all = np.zeros((len(y_te), n_layers))
    for start in range(0, n_layers, chunk):
        sl = slice(start, min(n_layers, start + chunk))
        xt, xd, xe = (torch.from_numpy(feats[s][sl]).to(device, copy=True) for s in ("train", "dev", "test"))
        standardise(xt, xd, xe)
        path = fit_softmax_path(
            xt, torch.from_numpy(y_tr), k, config.penalties,
            x_dev=xd, y_dev=torch.from_numpy(y_dv), tol=config.tol, max_iter=config.max_iter,
            gap_tol=gap, path_gap_tol=10 * gap,
        )
        if path.chosen_max_iter.any():
            layers = ", ".join(str(n) for n in result.layers[sl][path.chosen_max_iter])
            log.warning("%s · %s: the chosen fit of layer(s) %s stopped at max_iter=%d before tol=%g "
                        "(%d (layer, penalty) fits in all); raise --max-iter to be sure of those layers",
                        ds.attrs.get("model_id", "?"), data.task.name, layers, config.max_iter, config.tol,
                        path.stats.max_iter_hits)
        elif path.stats.max_iter_hits:
            log.info("%s: %d (layer, penalty) fits stopped at max_iter=%d, none of them a chosen one",
                     data.task.name, path.stats.max_iter_hits, config.max_iter)
        with torch.no_grad():
            pred = path.logits(xe).argmax(dim=2).cpu().numpy()  # (B, n_test)
        result.penalty[sl] = path.best_penalty
        correct_all[:, sl] = (pred == y_te[None, :]).T
        for j, layer in enumerate(range(sl.start, sl.stop)):
            result.f1[layer] = macro_f1(y_te, pred[j])
        del xt, xd, xe
    if len(y_dv) == 0:
        used = ", ".join(f"{p:g}" for p in np.unique(result.penalty[np.isfinite(result.penalty)])[::-1])
        log.warning(
            "%s · %s: no dev samples, so no penalty was chosen on dev: every layer was fitted with "
            "penalty %s of the grid%s; give the corpus a dev split (or more utterances per speaker) "
            "for a chosen penalty", ds.attrs.get("model_id", "?"), data.task.name, used or "?",
            " and the weighted-sum probe kept its last step" if config.weighted_sum else "",
        )
    result.score = correct_all.mean(axis=0) if len(y_te) else result.score
    lo, hi = bootstrap_mean_ci(correct_all, data.test.groups, n_boot=config.n_boot, seed=seed)
    result.ci_low, result.ci_high = np.asarray(lo), np.asarray(hi)
    result.correct = correct_all
    return result


def probe_folds(data: FoldedData, ds: Any, config: ProbeConfig, seed: int = 0) -> TaskResult:
    """A classification task over every fold of the store's cross-validation protocol.

    Each fold is probed on its own (:func:`probe_classification`: its own probes, penalties
    and weighted sum, chosen on its dev split). The scores are SUPERB's: the mean over folds of
    the fold test accuracies; the interval resamples every fold's test utterances
    (:func:`deepwide.probing.folds.bootstrap_fold_mean_ci`); ``fold_sd`` is the standard
    deviation of the fold scores (ddof 1).

    Returns:
        A :class:`TaskResult` with ``n_folds`` set; ``n_test`` counts the test utterances of
        all folds, ``n_train`` their mean per fold, ``penalty`` is NaN (chosen per fold),
        ``f1``, ``majority``, ``ws_weight`` and ``layer_norm`` are means over folds.
    """
    folds = []
    for k, fold in enumerate(data.folds, start=1):
        log.info("%s · %s: fold %d of %d", ds.attrs.get("model_id", "?"), data.task.name, k, len(data.folds))
        folds.append(probe_classification(fold, ds, config, seed))
    groups = [f.test.groups for f in data.folds]
    scores = fold_means([r.correct for r in folds])  # (K, L + 1)
    lo, hi = bootstrap_fold_mean_ci([r.correct for r in folds], groups, n_boot=config.n_boot, seed=seed)
    first = folds[0]
    n_layers = scores.shape[1]
    result = TaskResult(
        task=data.task, layers=first.layers, score=scores.mean(axis=0), ci_low=np.asarray(lo), ci_high=np.asarray(hi),
        f1=np.mean([r.f1 for r in folds], axis=0), penalty=np.full(n_layers, np.nan),
        n_train=np.full(n_layers, round(float(np.mean([r.n_train[0] for r in folds]))), np.int64),
        n_test=np.full(n_layers, sum(int(r.n_test[0]) for r in folds), np.int64),
        majority=float(np.mean([r.majority for r in folds])),
        fold_sd=scores.std(axis=0, ddof=1) if len(folds) > 1 else np.zeros(n_layers), n_folds=len(folds),
    )
    if all(r.ws_correct is not None for r in folds):
        ws = [r.ws_correct for r in folds]
        result.ws_weight = np.mean([r.ws_weight for r in folds], axis=0)
        result.layer_norm = np.mean([r.layer_norm for r in folds], axis=0)
        result.ws_score = float(fold_means([w[:, None] for w in ws]).mean())
        wlo, whi = bootstrap_fold_mean_ci(ws, groups, n_boot=config.n_boot, seed=seed)
        result.ws_ci = (float(wlo[0]), float(whi[0]))
    return result


# ----------------------------------------------------------------- sequences
def probe_sequences(data: SequenceData, ds: Any, config: ProbeConfig, seed: int = 0) -> TaskResult:
    """Layerwise linear CTC heads (+ the weighted-sum CTC head) for a sequence task (``pr``).

    All layers are read once (every frame of the chosen utterances) and trained as one batched
    problem (:func:`deepwide.probing.ctc.fit_ctc_layers`); each head keeps its lowest-dev-error
    state; the score is the test error rate ``Σ edits / Σ reference length`` with a bootstrap
    interval over test utterances.

    Returns:
        A :class:`TaskResult`: ``score`` the error rate per layer, ``n_train``/``n_test`` in
        utterances, ``majority`` the error rate of an empty hypothesis (1.0).
    """
    device = resolve_device(config.device)
    feats = load_task_layers(data, ds, f"{data.task.name}: reading")
    sets = {name: CtcSet(x=feats[name], offsets=data.offsets(split), targets=split.targets)
            for name, split in (("train", data.train), ("dev", data.dev), ("test", data.test))}
    n_layers = feats["train"].shape[0]
    v = len(data.vocabulary)
    schedule = dict(steps=config.ctc_steps, batch_utts=config.ctc_batch, lr=config.ctc_lr,
                    eval_every=config.ctc_eval_every, seed=seed, device=str(device))
    dev = sets["dev"] if sets["dev"].num_utts else None
    if dev is None:
        log.warning("%s · %s: no dev utterances, so every CTC head keeps its last step",
                    ds.attrs.get("model_id", "?"), data.task.name)
    nan = np.full(n_layers, np.nan)
    result = TaskResult(
        task=data.task, layers=_layer_numbers(ds), score=nan.copy(), ci_low=nan.copy(), ci_high=nan.copy(),
        f1=nan.copy(), penalty=nan.copy(), n_train=np.full(n_layers, len(data.train), np.int64),
        n_test=np.full(n_layers, len(data.test), np.int64), majority=1.0,
    )
    words = data.task.metric == "wer"
    refs = sets["test"].targets
    ref_units = [_words(t, data.vocabulary) for t in refs] if words else list(refs)
    n_ref = np.array([len(r) for r in ref_units], np.float64)

    def counts(hyps: list[list[int]]) -> np.ndarray:
        """``(U,)`` edits of greedy outputs against the references, in the task's units."""
        return edit_counts([_words(h, data.vocabulary) for h in hyps] if words else hyps, ref_units)[0]

    if not words or config.asr_head == "linear":
        fit = fit_ctc_layers(sets["train"], v, dev=dev, **schedule)  # type: ignore[arg-type]
        edits = []
        if words:
            result.cer = nan.copy()
        for layer, hyps in enumerate(fit.decode(sets["test"])):
            edits.append(counts(hyps))
            result.score[layer] = edits[-1].sum() / max(n_ref.sum(), 1.0)
            if result.cer is not None:
                result.cer[layer] = error_rate(hyps, refs)
        result.ci_low, result.ci_high = bootstrap_ratio_ci(np.stack(edits, 1), n_ref, n_boot=config.n_boot, seed=seed)
    if config.weighted_sum or (words and config.asr_head == "blstm"):
        result.layer_norm = layer_norms(feats["train"])
        if words and config.asr_head == "blstm":
            ws = fit_ctc_blstm(sets["train"], v, dev=dev, hidden=config.blstm_hidden, **schedule)  # type: ignore[arg-type]
        else:
            ws = fit_ctc_weighted(sets["train"], v, dev=dev, **schedule)  # type: ignore[arg-type]
        e = counts(ws.decode(sets["test"]))
        result.ws_weight = ws.weights
        result.ws_score = float(e.sum() / max(n_ref.sum(), 1.0))
        lo, hi = bootstrap_ratio_ci(e[:, None], n_ref, n_boot=config.n_boot, seed=seed)
        result.ws_ci = (float(lo[0]), float(hi[0]))
    return result


def _words(labels: np.ndarray | list[int], vocabulary: list[str]) -> list[str]:
    """Character labels (``1..V``) -> the words they spell (split at spaces)."""
    return "".join(vocabulary[int(i) - 1] for i in labels).split()


# ----------------------------------------------------------------- verification
def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    na = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.einsum("ij,ij->i", a, b) / np.maximum(na, 1e-12)


def probe_asv(data: TrialData, ds: Any, config: ProbeConfig, seed: int = 0) -> TaskResult:
    """EER per layer: cosine scoring of pooled features, and after an LDA back-end.

    The LDA (scikit-learn, eigen solver with Ledoit–Wolf shrinkage, on features standardised
    with the LDA training statistics) is fitted on ``data.lda_utts``: utterances of training
    speakers that appear in no trial. Plain cosine scoring centres on the same training mean.
    With ``data.backend == "cosine"`` (fewer than 2 such speakers, or no more utterances than
    speakers) there is no LDA: features are standardised with the statistics of
    ``data.centre_utts`` and ``score`` is the cosine EER.

    Returns:
        A :class:`TaskResult` whose ``score`` is the EER of ``backend`` (``"lda"``: after LDA,
        ``"cosine"``: plain cosine) and ``eer_cosine`` the EER of plain cosine scoring; CIs
        resample utterances of the trial list.
    """
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    n_layers = int(ds.sizes["layer"])
    nan = np.full(n_layers, np.nan)
    result = TaskResult(
        task=data.task, layers=_layer_numbers(ds), score=nan.copy(), ci_low=nan.copy(), ci_high=nan.copy(), f1=nan.copy(),
        penalty=nan.copy(), n_train=np.full(n_layers, data.lda_utts.size, np.int64),
        n_test=np.full(n_layers, data.target.size, np.int64), majority=0.5, eer_cosine=nan.copy(),
        backend=data.backend,
    )
    centre = data.lda_utts if data.centre_utts is None else data.centre_utts
    for layer in tqdm(range(n_layers), desc="asv", unit="layer", leave=False, disable=None):
        x = data.load_layer(ds, layer).astype(np.float64)
        train = x[centre]
        mu, sd = train.mean(axis=0), train.std(axis=0) + 1e-8
        z = (x - mu) / sd
        cosine = _cosine(z[data.utt_a], z[data.utt_b])
        result.eer_cosine[layer] = equal_error_rate(cosine, data.target)  # type: ignore[index]
        if data.backend == "cosine":
            scores = cosine
        else:
            lda = LinearDiscriminantAnalysis(solver="eigen", shrinkage="auto").fit(z[data.lda_utts], data.lda_speakers)
            p = lda.transform(z)
            scores = _cosine(p[data.utt_a], p[data.utt_b])
        result.score[layer] = equal_error_rate(scores, data.target)
        result.ci_low[layer], result.ci_high[layer] = bootstrap_eer_ci(
            scores, data.target, data.utt_a, data.utt_b, n_boot=config.n_boot, seed=seed
        )
    return result


# ----------------------------------------------------------------- several stores
def _entries(stores: Sequence[Any], nulls: Sequence[Any]) -> list[ModelEntry]:
    from deepwide.store import open_store  # validates schema and completion (one-line StoreError)

    def load(s: Any) -> tuple[Any, str]:
        if isinstance(s, xr.Dataset):
            return s, str(s.encoding.get("source", "<in memory>"))
        return open_store(s), str(s)

    entries: list[ModelEntry] = []
    for s in stores:
        ds, path = load(s)
        mid = str(ds.attrs.get("model_id", Path(path).stem))
        is_null = mid.startswith(NULL_PREFIX)
        entries.append(ModelEntry(ds, mid, path, is_null, mid[len(NULL_PREFIX):] if is_null else ""))
    main_ids = [e.model_id for e in entries]
    for i, s in enumerate(nulls):
        ds, path = load(s)
        mid = str(ds.attrs.get("model_id", Path(path).stem))
        if mid.startswith(NULL_PREFIX):
            twin = mid[len(NULL_PREFIX):]
        elif len(nulls) == len(stores):
            twin = main_ids[i]
        elif len(stores) == 1:
            twin = main_ids[0]
        else:
            twin = ""
        if not mid.startswith(NULL_PREFIX):
            mid = NULL_PREFIX + (twin or mid)
        entries.append(ModelEntry(ds, mid, path, True, twin))
    seen: dict[str, str] = {}
    for e in entries:
        if e.model_id in seen:
            raise ConfigError(
                f"stores {seen[e.model_id]} and {e.path} both hold model {e.model_id!r}; probe one of them per run"
            )
        seen[e.model_id] = e.path
    check_twins(entries)
    return entries


def check_twins(entries: Sequence[ModelEntry]) -> None:
    """Refuse a null store that was not extracted from its model's corpus and utterances.

    A null is compared with the model it is the twin of, so both must be scored on the same
    test utterances: same ``corpus_id``, ``manifest_hash`` and ``utt_id`` set
    (:func:`deepwide.store.check_same_corpus`, the check ``analyze similarity`` uses too).

    Raises:
        StoreError: one line naming both stores and what differs.
    """
    from deepwide.store import check_same_corpus

    by_id = {e.model_id: e for e in entries if not e.is_null}
    for e in entries:
        twin = by_id.get(e.null_of) if e.is_null else None
        if twin is not None:
            check_same_corpus([twin.ds, e.ds], same_utterances=True)


def probe_stores(
    stores: Sequence[str | Path | xr.Dataset],
    tasks: Sequence[str],
    config: ProbeConfig | None = None,
    *,
    nulls: Sequence[str | Path | xr.Dataset] = (),
    seed: int = 0,
    skip_unservable: bool = False,
) -> xr.Dataset:
    """Probe every task on every store (and null store) and collect the results.

    Args:
        stores: store paths (or opened datasets), one per model.
        tasks: task names (see :data:`deepwide.probing.tasks.TASKS`).
        config: probe configuration (defaults when None).
        nulls: stores of ``random:`` twins; each becomes its own model entry with
            ``is_null=True`` and ``null_of`` = the model it is the twin of (from its
            ``random:`` id, else paired by position, else the single ``--store``).
        seed: seed of every random choice (subsamples, weighted-sum probe, bootstrap).
        skip_unservable: skip (with a warning) tasks a store cannot serve instead of raising.

    Returns:
        The results Dataset (dims ``model, task, layer``; see ``docs/results-schema.md``).

    Raises:
        TaskError: a store cannot serve a task (unless ``skip_unservable``).
    """
    config = config or ProbeConfig()
    task_objs = [TASKS.get(t) for t in tasks]
    entries = _entries(stores, nulls)
    for entry in entries:
        for task in task_objs:
            try:
                data = task.prepare(entry.ds, config.prepare_options(seed))
            except TaskError as exc:
                if not skip_unservable:
                    raise
                log.warning("%s: skipping %s (%s)", entry.model_id, task.name, exc)
                continue
            log.info("%s: probing %s", entry.model_id, task.name)
            t0 = time.monotonic()
            if isinstance(data, TrialData):
                entry.results[task.name] = probe_asv(data, entry.ds, config, seed)
            elif isinstance(data, SequenceData):
                entry.results[task.name] = probe_sequences(data, entry.ds, config, seed)
            elif isinstance(data, FoldedData):
                entry.results[task.name] = probe_folds(data, entry.ds, config, seed)
            else:
                entry.results[task.name] = probe_classification(data, entry.ds, config, seed)
            log.info("%s: %s probed in %.1f s", entry.model_id, task.name, time.monotonic() - t0)
    if skip_unservable:
        task_objs = [t for t in task_objs if any(t.name in e.results for e in entries)]
        if not task_objs:
            raise TaskError(f"none of the tasks {', '.join(tasks)} can be served by the given stores")
    return results_dataset(entries, task_objs, config, seed)


def results_dataset(entries: Sequence[ModelEntry], tasks: Sequence[Task], config: ProbeConfig, seed: int) -> xr.Dataset:
    """Assemble per-model task results into the schema's Dataset."""
    from deepwide.store import corpus_ids

    n_models, n_tasks = len(entries), len(tasks)
    n_layer = max(_num_layers(e.ds) for e in entries) + 1 if entries else 0
    shape = (n_models, n_tasks, n_layer)

    def full(fill: float = np.nan, dtype: Any = np.float64, s: tuple[int, ...] = shape) -> np.ndarray:
        return np.full(s, fill, dtype)

    v = {name: full() for name in ("score", "ci_low", "ci_high", "f1", "penalty", "eer_cosine", "cer", "ws_weight",
                                   "layer_norm", "fold_sd")}
    n_train, n_test = full(0, np.int64), full(0, np.int64)
    scal = {name: full(s=(n_models, n_tasks)) for name in ("majority", "ws_score", "ws_ci_low", "ws_ci_high")}
    backend = np.full((n_models, n_tasks), "", dtype=object)
    n_folds = np.zeros((n_models, n_tasks), np.int64)
    for m, e in enumerate(entries):
        for t, task in enumerate(tasks):
            r = e.results.get(task.name)
            if r is None:
                continue
            nl = r.layers
            for name in ("score", "ci_low", "ci_high", "f1", "penalty"):
                v[name][m, t, nl] = getattr(r, name)
            n_train[m, t, nl] = r.n_train
            n_test[m, t, nl] = r.n_test
            if r.eer_cosine is not None:
                v["eer_cosine"][m, t, nl] = r.eer_cosine
            if r.cer is not None:
                v["cer"][m, t, nl] = r.cer
            if r.fold_sd is not None:
                v["fold_sd"][m, t, nl] = r.fold_sd
            n_folds[m, t] = r.n_folds
            if r.ws_weight is not None:
                v["ws_weight"][m, t, nl] = r.ws_weight
                v["layer_norm"][m, t, nl] = r.layer_norm
            scal["majority"][m, t] = r.majority
            scal["ws_score"][m, t] = r.ws_score
            scal["ws_ci_low"][m, t], scal["ws_ci_high"][m, t] = r.ws_ci
            backend[m, t] = r.backend
    dims3, dims2 = ("model", "task", "layer"), ("model", "task")
    data_vars: dict[str, Any] = {name: (dims3, arr) for name, arr in v.items()}
    data_vars.update({"n_train": (dims3, n_train), "n_test": (dims3, n_test)})
    data_vars.update({name: (dims2, arr) for name, arr in scal.items()})
    data_vars["backend"] = (dims2, backend)
    data_vars["n_folds"] = (dims2, n_folds)
    data_vars.update(
        num_layers=("model", np.array([_num_layers(e.ds) for e in entries], np.int64)),
        dim=("model", np.array([int(e.ds.attrs.get("dim", e.ds.sizes.get("feat", 0))) for e in entries], np.int64)),
        params=("model", np.array([int(e.ds.attrs.get("model_params", 0)) for e in entries], np.int64)),
        is_null=("model", np.array([e.is_null for e in entries], bool)),
        null_of=("model", np.array([e.null_of for e in entries], dtype=object)),
        metric=("task", np.array([t.metric for t in tasks], dtype=object)),
        higher_is_better=("task", np.array([t.higher_is_better for t in tasks], bool)),
        level=("task", np.array([t.level for t in tasks], dtype=object)),
        kind=("task", np.array([t.kind for t in tasks], dtype=object)),
    )
    ds = xr.Dataset(
        data_vars,
        coords={
            "model": np.array([e.model_id for e in entries], dtype=object),
            "task": np.array([t.name for t in tasks], dtype=object),
            "layer": np.arange(n_layer),
        },
        attrs={
            "corpus_id": corpus_ids([e.ds for e in entries]),
            "seed": int(seed),
            "deepwide_version": __version__,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "config": json.dumps(config_to_dict(config), sort_keys=True),
            "stores": json.dumps({e.model_id: e.path for e in entries}, sort_keys=True),
        },
    )
    ds["score"].attrs["description"] = (
        "test metric (fraction); asv: EER of `backend`, pr: phone error rate (both lower is better)"
    )
    ds["eer_cosine"].attrs["description"] = "asv only: EER of plain cosine scoring (centred); NaN elsewhere"
    ds["cer"].attrs["description"] = "asr only: character error rate of the layer's CTC head; NaN elsewhere"
    ds["fold_sd"].attrs["description"] = (
        "folded tasks only (er on a store with folds): standard deviation of the fold scores; NaN elsewhere"
    )
    ds["n_folds"].attrs["description"] = "folded tasks: how many folds `score` averages; 0 elsewhere"
    ds["backend"].attrs["description"] = (
        "asv only: what scored `score`, 'lda' (cosine after LDA) or 'cosine' (plain cosine: fewer than "
        "2 training speakers outside the trial list); '' elsewhere"
    )
    return ds


# ----------------------------------------------------------------- output
#: attr of ``probe.nc`` holding the SHA-256 of the ``probe.csv`` written with it
CSV_HASH_ATTR = "csv_sha256"
#: attr of ``probe.nc``: JSON ``{task: created}``, when each task's rows were computed
TASKS_CREATED_ATTR = "tasks_created"


def _csv_text(results: xr.Dataset) -> str:
    return results.to_dataframe().to_csv()


def _mkdir(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        if is_disk_full(exc):
            raise DiskFullError(disk_full_state(out) + "; free some space or choose another --out") from exc
        raise


def write_results(results: xr.Dataset, out_dir: str | Path, name: str = "probe") -> tuple[Path, Path]:
    """Write ``<name>.nc`` (NetCDF4) and ``<name>.csv`` under ``out_dir`` as one result.

    Both files are written in full to temporary names first; only then is the CSV renamed
    into place and, last, the ``.nc`` (the file readers use, so its rename is the commit
    point). A failed write (e.g. a full disk) leaves the old pair untouched; a kill between the
    two renames leaves the old ``.nc`` beside the new CSV, which :func:`check_results_pair`
    detects: the ``.nc`` records the SHA-256 of its CSV in the ``csv_sha256`` attr.

    Returns:
        The two paths.

    Raises:
        DiskFullError: the disk holding ``out_dir`` is full (nothing was replaced).
    """
    out = Path(out_dir)
    _mkdir(out)
    nc_path, csv_path = out / f"{name}.nc", out / f"{name}.csv"
    text = _csv_text(results).encode("utf-8")
    ds = results.assign_attrs({CSV_HASH_ATTR: hashlib.sha256(text).hexdigest()})
    with atomic_target(nc_path) as tmp_nc:
        ds.to_netcdf(tmp_nc, engine="netcdf4")
        with atomic_target(csv_path) as tmp_csv, open(tmp_csv, "wb") as fh:
            fh.write(text)
    return nc_path, csv_path


def check_results_pair(out_dir: str | Path, name: str = "probe") -> str | None:
    """Whether ``<name>.nc`` and ``<name>.csv`` under ``out_dir`` are one result.

    Readers that use both files (or the CSV alone) call this; readers of the ``.nc`` alone need
    not, as the ``.nc`` is always whole and is replaced last.

    Returns:
        ``None`` when the pair matches (or the ``.nc`` predates the recorded hash), else one
        line saying what is wrong and what to do.
    """
    out = Path(out_dir)
    nc_path, csv_path = out / f"{name}.nc", out / f"{name}.csv"
    if not nc_path.is_file():
        return f"{nc_path} does not exist; run `deepwide probe --out {out}`"
    try:
        with xr.open_dataset(nc_path) as ds:
            want = ds.attrs.get(CSV_HASH_ATTR)
    except Exception as exc:  # netCDF/HDF errors come in many types
        return f"{nc_path} cannot be read as NetCDF ({type(exc).__name__}); rerun `deepwide probe --out {out}`"
    if want is None:
        return None
    if not csv_path.is_file():
        return f"{csv_path} is missing beside {nc_path.name}; rerun `deepwide probe --out {out}` to rewrite the pair"
    if hashlib.sha256(csv_path.read_bytes()).hexdigest() != str(want):
        return (
            f"{csv_path} is not the CSV of {nc_path.name} (a probe run was stopped between writing the two); "
            f"{nc_path.name} is the result: rerun `deepwide probe --out {out}` or regenerate the CSV from it"
        )
    return None


#: ProbeConfig fields that say how a run was executed, not what it measured (merges ignore them)
EXECUTION_SETTINGS = ("device", "max_batch_bytes")


def _facts(ds: xr.Dataset) -> dict[str, tuple[Any, ...]]:
    """``{model: (num_layers, dim, params, is_null, null_of)}`` of a results Dataset."""
    out = {}
    for i, m in enumerate(ds["model"].values):
        null_of = ds["null_of"].values[i]
        null_of = "" if null_of is None or (isinstance(null_of, float) and np.isnan(null_of)) else str(null_of)
        out[str(m)] = (int(ds["num_layers"].values[i]), int(ds["dim"].values[i]), int(ds["params"].values[i]),
                       bool(ds["is_null"].values[i]), null_of)
    return out


def _entry_facts(entries: Sequence[ModelEntry]) -> dict[str, tuple[Any, ...]]:
    """The same facts as :func:`_facts`, from the opened stores (before probing)."""
    return {e.model_id: (_num_layers(e.ds), int(e.ds.attrs.get("dim", e.ds.sizes.get("feat", 0))),
                         int(e.ds.attrs.get("model_params", 0)), e.is_null, e.null_of) for e in entries}


def _merge_conflict(old: xr.Dataset, facts: dict[str, tuple[Any, ...]], config: str, seed: int) -> str | None:
    """Why results of ``facts``/``config``/``seed`` cannot join ``old`` in one table, or None."""
    old_facts = _facts(old)
    if set(old_facts) != set(facts):
        return (f"it holds models {', '.join(sorted(old_facts))} but this run probes "
                f"{', '.join(sorted(facts))}")
    for m, f in facts.items():
        if old_facts[m] != f:
            return f"its model {m} has (layers, dim, params, is_null, null_of) {old_facts[m]}, this run's {f}"
    if int(old.attrs.get("seed", -1)) != int(seed):
        return f"it was probed with --seed {old.attrs.get('seed')}, this run with {seed}"
    have, want = json.loads(str(old.attrs.get("config", "{}"))), json.loads(config)
    diff = sorted(k for k in (set(have) | set(want)) - set(EXECUTION_SETTINGS) if have.get(k) != want.get(k))
    if diff:
        k = diff[0]
        return f"it was probed with {k}={have.get(k)!r}, this run with {k}={want.get(k)!r}"
    return None


def _refusal(out: Path, why: str) -> ConfigError:
    return ConfigError(
        f"{out / 'probe.nc'} holds earlier results that cannot share a table with this run ({why}); "
        f"use another --out, or delete {out / 'probe.nc'} and probe.csv to replace them"
    )


def _read_earlier(out: Path) -> xr.Dataset | None:
    path = out / "probe.nc"
    if not path.is_file():
        return None
    try:
        return xr.load_dataset(path)
    except Exception as exc:  # netCDF/HDF errors come in many types
        raise ConfigError(
            f"{path} exists but cannot be read as NetCDF ({type(exc).__name__}), so this run cannot be "
            f"merged into it; delete it (and probe.csv) or use another --out"
        ) from exc


def check_output_folder(
    out_dir: str | Path,
    stores: Sequence[str | Path | xr.Dataset],
    config: ProbeConfig,
    *,
    nulls: Sequence[str | Path | xr.Dataset] = (),
    seed: int = 0,
) -> None:
    """Before any probing: refuse an ``--out`` whose earlier ``probe.nc`` this run cannot join.

    Results merge (see :func:`merge_results`) when they cover the same models (same facts),
    seed and probe config; otherwise the run is refused here, before minutes of work, rather
    than silently replacing the earlier results. Also opens the stores, so a missing store or a
    mismatched ``--null`` twin is refused before probing.

    Raises:
        ConfigError: the earlier results cannot be merged (one line, with the fix).
        StoreError: a store cannot be opened, or a null is not its model's twin.
    """
    entries = _entries(stores, nulls)
    old = _read_earlier(Path(out_dir))
    if old is None:
        return
    why = _merge_conflict(old, _entry_facts(entries), json.dumps(config_to_dict(config), sort_keys=True), seed)
    if why:
        raise _refusal(Path(out_dir), why)


def _blank_like(template: xr.DataArray, sizes: dict[str, int], coords: dict[str, Any]) -> xr.DataArray:
    kind = template.dtype.kind
    fill: Any = "" if kind in "OUS" else (False if kind == "b" else (0 if kind in "iu" else np.nan))
    shape = tuple(sizes[d] for d in template.dims)
    arr = np.full(shape, fill, dtype=object if kind in "OUS" else template.dtype)
    return xr.DataArray(arr, dims=template.dims, coords={d: coords[d] for d in template.dims if d in coords})


def merge_results(old: xr.Dataset, new: xr.Dataset) -> tuple[xr.Dataset, list[str], list[str]]:
    """Merge ``new`` results into earlier ones of the same models, seed and config.

    Tasks of ``new`` replace same-named tasks of ``old`` (in place); other old tasks are kept,
    new ones appended. ``corpus_id`` becomes the union, ``stores`` maps each model to its store
    (a list when tasks were probed from different stores), ``tasks_created`` records when each
    task's rows were computed.

    Returns:
        ``(merged, replaced task names, kept task names)``.

    Raises:
        ConfigError: other models, facts, seed or probe config (one line).
    """
    why = _merge_conflict(old, _facts(new), str(new.attrs.get("config", "{}")), int(new.attrs.get("seed", 0)))
    if why:
        raise ConfigError(f"earlier results cannot share a table with these ({why})")
    new_tasks = [str(t) for t in new["task"].values]
    old_tasks = [str(t) for t in old["task"].values]
    kept = [t for t in old_tasks if t not in new_tasks]
    replaced = [t for t in old_tasks if t in new_tasks]
    created_old = json.loads(str(old.attrs.get(TASKS_CREATED_ATTR, "{}")))
    created = {t: created_old.get(t, str(old.attrs.get("created", ""))) for t in kept}
    created.update({t: str(new.attrs.get("created", "")) for t in new_tasks})
    if kept:
        part = old.sel(task=kept).drop_vars([v for v in old.data_vars if v not in new.data_vars])
        part = part.assign_coords(model=part["model"].values.astype(object), task=np.array(kept, dtype=object))
        for v in new.data_vars:
            if v not in part.data_vars:
                part[v] = _blank_like(new[v], dict(part.sizes), dict(part.coords))
        aligned = new.sel(model=[m for m in part["model"].values])
        # strings read back from NetCDF are fixed-width (<U3): concat would cut "lda" to the
        # width of the other side's strings, so both sides hold Python strings
        part, aligned = (x.assign({v: x[v].astype(object) for v in x.data_vars if x[v].dtype.kind in "US"})
                         for x in (part, aligned))
        merged = xr.concat([part, aligned], dim="task", data_vars="minimal", coords="minimal", compat="override",
                           combine_attrs="override")
        order = [t for t in old_tasks if t in kept or t in new_tasks] + [t for t in new_tasks if t not in old_tasks]
        merged = merged.sel(task=order)
    else:
        merged = new.copy()
    corpora = {c.strip() for ds in (old, new) for c in str(ds.attrs.get("corpus_id", "")).split(",")} - {""}
    stores: dict[str, Any] = {}
    for ds in (old, new):
        for m, p in json.loads(str(ds.attrs.get("stores", "{}"))).items():
            paths = stores.setdefault(m, [])
            for q in p if isinstance(p, list) else [p]:
                if q not in paths:
                    paths.append(q)
    attrs = {k: v for k, v in new.attrs.items() if k != CSV_HASH_ATTR}
    attrs.update(
        corpus_id=", ".join(sorted(corpora)),
        stores=json.dumps({m: p[0] if len(p) == 1 else p for m, p in stores.items()}, sort_keys=True),
    )
    attrs[TASKS_CREATED_ATTR] = json.dumps(created, sort_keys=True)
    merged.attrs = attrs
    return merged, replaced, kept


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def _device(path: Path) -> int | None:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return os.stat(p).st_dev
    except OSError:
        return None


def fallback_folder(out: Path) -> Path | None:
    """A fresh folder under ``tempfile.gettempdir()`` when that lies on another disk than ``out``."""
    tmp = Path(tempfile.gettempdir())
    dev_out, dev_tmp = _device(out), _device(tmp)
    if dev_out is None or dev_tmp is None or dev_out == dev_tmp:
        return None
    try:
        return Path(tempfile.mkdtemp(prefix="deepwide-probe-", dir=tmp))
    except OSError:
        return None


@dataclass(frozen=True)
class SavedResults:
    """What :func:`save_results` wrote: the pair, and which earlier tasks it kept or replaced."""

    nc: Path
    csv: Path
    replaced: tuple[str, ...] = ()
    kept: tuple[str, ...] = ()

    def describe(self) -> str:
        """One line for the command's output."""
        line = f"wrote {self.nc} and {self.csv}"
        if self.kept or self.replaced:
            parts = []
            if self.kept:
                parts.append(f"kept earlier task(s) {', '.join(self.kept)}")
            if self.replaced:
                parts.append(f"replaced task(s) {', '.join(self.replaced)} with this run's")
            line += f" (merged with the results there: {'; '.join(parts)})"
        return line


def save_results(results: xr.Dataset, out_dir: str | Path, *, started: float | None = None) -> SavedResults:
    """Merge ``results`` into ``out_dir``'s earlier ``probe.nc`` (if any) and write the pair.

    Args:
        results: this run's results.
        out_dir: the ``--out`` folder.
        started: ``time.monotonic()`` when probing began (for the disk-full message).

    Returns:
        Where the pair went and which earlier tasks were kept or replaced (also logged).

    Raises:
        ConfigError: earlier results there cannot be merged (see :func:`check_output_folder`).
        DiskFullError: the disk is full; the line says where the results were saved instead
            (a folder under the temp dir, when that is another disk) or that they were not.
    """
    out = Path(out_dir)
    old = _read_earlier(out)
    replaced: list[str] = []
    kept: list[str] = []
    merged = results
    if old is not None:
        why = _merge_conflict(old, _facts(results), str(results.attrs.get("config", "{}")),
                              int(results.attrs.get("seed", 0)))
        if why:
            raise _refusal(out, why)
        merged, replaced, kept = merge_results(old, results)
        for t in replaced:
            log.info("%s: task %s replaced by this run's rows (earlier: %s)", out / "probe.nc", t,
                     json.loads(str(old.attrs.get(TASKS_CREATED_ATTR, "{}"))).get(t, old.attrs.get("created", "?")))
        if kept:
            log.info("%s: keeping earlier task(s) %s", out / "probe.nc", ", ".join(kept))
    try:
        nc, csv = write_results(merged, out)
    except DiskFullError as exc:
        raise _disk_full(merged, out, started) from exc
    return SavedResults(nc, csv, tuple(replaced), tuple(kept))


def _disk_full(results: xr.Dataset, out: Path, started: float | None) -> DiskFullError:
    """The one-line error of a full disk, after saving ``results`` elsewhere when possible."""
    need = int(results.nbytes) + len(_csv_text(results))
    took = f" of {_duration(time.monotonic() - started)} of probing" if started is not None else ""
    head = disk_full_state(out, need)
    fallback = fallback_folder(out)
    if fallback is not None:
        try:
            nc, _ = write_results(results, fallback)
        except (DiskFullError, OSError) as exc:
            log.debug("saving to %s failed too: %s", fallback, exc)
        else:
            return DiskFullError(
                f"{head}; the results{took} were saved to {nc.parent} instead (probe.nc, probe.csv): "
                f"move them into {out} once there is space"
            )
    where = "" if fallback is not None else f", and {tempfile.gettempdir()} is on the same disk"
    return DiskFullError(
        f"{head}; the results{took} were NOT saved{where} (the table above shows them): "
        f"free some space or choose another --out, then rerun"
    )


#: What the ``majority`` column is for each metric, in :func:`format_table`.
_BASELINE_NAME = {"eer": "chance", "per": "empty output"}


def format_table(results: xr.Dataset) -> str:
    """A per-layer text table for every model × task, the best layer marked with ``*``."""
    lines: list[str] = []
    for model in results["model"].values:
        r_m = results.sel(model=model)
        n_layers = int(r_m["num_layers"])
        null = f" (null of {r_m['null_of'].item()})" if bool(r_m["is_null"]) else ""
        for task in results["task"].values:
            r = r_m.sel(task=task)
            score = r["score"].values[: n_layers + 1]
            if np.all(np.isnan(score)):
                continue
            hib = bool(r["higher_is_better"])
            best = int(np.nanargmax(score) if hib else np.nanargmin(score))
            metric = str(r["metric"].item())
            backend = str(r["backend"].item()) if "backend" in r else ""
            backend = f"; backend {backend}" if backend not in ("", "nan") else ""
            shown = [i for i in range(n_layers + 1) if np.isfinite(score[i])]
            n_folds = int(r["n_folds"]) if "n_folds" in r else 0
            folds = f"; mean of {n_folds} folds" if n_folds else ""
            lines.append(f"{model}{null} · {task} ({metric}, {r['level'].item()}{backend}{folds}; "
                         f"n_train {int(r['n_train'][shown[0]])}, n_test {int(r['n_test'][shown[0]])}; "
                         f"{_BASELINE_NAME.get(metric, 'majority')} {float(r['majority']):.3f})")
            extra = "eer_cos" if metric == "eer" else "f1"
            lines.append(f"  layer  {metric:>8}  95% CI            {extra:>7}  {'fold_sd' if n_folds else 'penalty'}"
                         "  ws_weight  norm")
            for layer in shown:
                f1 = float(r["eer_cosine"][layer] if metric == "eer" else r["f1"][layer])
                fourth = f"{float(r['fold_sd'][layer]):7.3f}" if n_folds else f"{float(r['penalty'][layer]):7.0e}"
                lines.append(
                    f"  {layer:>5}  {score[layer]:8.3f}  [{float(r['ci_low'][layer]):.3f}, {float(r['ci_high'][layer]):.3f}]"
                    f"  {f1:7.3f}  {fourth}  {float(r['ws_weight'][layer]):9.3f}"
                    f"  {float(r['layer_norm'][layer]):6.1f}{'  *' if layer == best else ''}"
                )
            if np.isfinite(float(r["ws_score"])):
                lines.append(
                    f"  weighted sum: {float(r['ws_score']):.3f} "
                    f"[{float(r['ws_ci_low']):.3f}, {float(r['ws_ci_high']):.3f}]"
                )
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"
