"""``deepwide teacher pretrain``: the run — iterations of targets, then masked-prediction steps.

:func:`pretrain_teacher` opens (or resumes) a run folder, loads the corpus, and for each
iteration makes the targets, trains, and keeps the iteration's model; each of those is a named
step below. Every step is seeded; ``state.pt`` is saved after the targets and at every
evaluation, so ``--resume`` continues a killed run to the weights of an uninterrupted one.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepwide.config import atomic_write_json, config_hash, config_to_dict
from deepwide.corpora import Manifest
from deepwide.errors import ConfigError
from deepwide.framing import SAMPLE_RATE
from deepwide.models.pretraining.config import PretrainConfig
from deepwide.models.pretraining.data import PretrainData, sample_batch
from deepwide.models.pretraining.model import build_pretrain_model, masked_loss, pretrain_loss
from deepwide.models.pretraining.state import (
    load_encoder,
    load_state,
    recipe_cut,
    run_extra,
    save_state,
)
from deepwide.models.pretraining.targets import layer_features, make_targets, mfcc_features
from deepwide.models.torchfile import CorruptFileError
from deepwide.training import (
    append_jsonl,
    remove_stale_temporaries,
    rewrite_jsonl,
    set_generator_state,
    warmup_cosine_lr,
)

log = logging.getLogger(__name__)

STATE = "state.pt"
LOG = "pretrain_log.jsonl"
RUN_INFO = "pretrain_config.json"


@dataclass(frozen=True)
class _Run:
    """One run folder: its recipe, seed, key (config + seed + corpus) and record."""

    out: Path
    cfg: PretrainConfig
    seed: int
    key: str
    info: dict[str, Any]

    @property
    def state_path(self) -> Path:
        return self.out / STATE

    @property
    def log_path(self) -> Path:
        return self.out / LOG


@dataclass
class _Iteration:
    """One HuBERT iteration in progress: its targets, model, optimiser, data generator, step."""

    index: int
    seed: int
    labels: list[np.ndarray]
    quality: dict[str, float]
    model: torch.nn.Module
    opt: torch.optim.Optimizer
    rng: np.random.Generator
    step: int = 0


def pretrain_teacher(
    manifest: Manifest,
    out_dir: str | Path,
    cfg: PretrainConfig,
    *,
    seed: int = 0,
    resume: bool = False,
    threads: int | None = None,
) -> Path:
    """Run the whole recipe and write a deepwide checkpoint (plus ``pretrain_log.jsonl``).

    Args:
        manifest: the corpus (needs phone alignments only for the quality report).
        out_dir: output folder; ``out_dir/model`` is the final deepwide checkpoint,
            ``out_dir/state.pt`` the resumable training state.
        cfg: the recipe.
        seed: seeds data order, masking, k-means and initialisation.
        resume: continue from ``out_dir/state.pt`` (same config required).

    Returns:
        the checkpoint folder.
    """
    from deepwide.models import build_encoder, save_checkpoint

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if threads:
        torch.set_num_threads(threads)
    run, state = _open_run(manifest, out, cfg, seed, resume)
    data = PretrainData.load(manifest, cfg.heldout_speakers, seed)
    log.info("pre-training on %d utterances (%d held out)", len(data.train_idx), len(data.heldout_idx))
    encoder = build_encoder(cfg.encoder_config(), seed=seed, model_id="tiny-teacher")
    if state is not None:
        load_encoder(encoder, state, run.state_path)
    for it in range(state["iteration"] if state else 0, len(cfg.steps)):
        iteration = _start_iteration(run, encoder, data, it, state)
        state = None  # only the first iteration resumes
        _train_iteration(run, encoder, data, iteration)
        _end_iteration(run, encoder, it)
    return save_checkpoint(encoder, out / "model", extra=run_extra(run.info, cfg, len(cfg.steps), 0))


def _open_run(manifest: Manifest, out: Path, cfg: PretrainConfig, seed: int,
              resume: bool) -> tuple[_Run, dict[str, Any] | None]:
    """The run of ``out``: refuse another run, read the state to resume, record the run.

    Returns:
        ``(run, state)``: ``state`` is the saved ``state.pt`` when resuming, else ``None``.

    Raises:
        ConfigError: ``out`` holds a run and ``resume`` is off, or a run of another config,
            seed or corpus.
    """
    key = config_hash({"cfg": config_to_dict(cfg), "seed": seed, "manifest": manifest.content_hash()})
    state_path = out / STATE
    state: dict[str, Any] | None = None
    if state_path.exists():
        if not resume:
            raise ConfigError(f"{out} already holds a pre-training run; pass --resume to continue it or choose another --out")
        state = load_state(state_path, hint=f"delete {state_path} to restart the run from the beginning, "
                                            f"or choose another --out")
        if state["key"] != key:
            raise ConfigError(f"{out} holds a run with another config, seed or corpus; use another --out")
        rewrite_jsonl(out / LOG)  # a torn last line (a kill mid-append) is dropped
    remove_stale_temporaries(out, STATE)  # a kill while state.pt was written
    info = {"config": config_to_dict(cfg), "seed": seed, "corpus_id": manifest.corpus_id,
            "manifest_hash": manifest.content_hash()}
    atomic_write_json(out / RUN_INFO, info)
    return _Run(out=out, cfg=cfg, seed=seed, key=key, info=info), state


def _start_iteration(run: _Run, encoder: Any, data: PretrainData, it: int,
                     state: dict[str, Any] | None) -> _Iteration:
    """Iteration ``it``'s targets, model, optimiser and generator: from ``state`` or fresh.

    A fresh iteration saves ``state.pt`` at once (k-means is the slow part of a restart).
    """
    cfg, it_seed = run.cfg, run.seed + 1000 * it
    if state and state["iteration"] == it and "labels" in state:
        labels, quality = state["labels"], state["quality"]
    else:
        labels, quality = _make_iteration_targets(encoder, data, cfg, it, it_seed)
    log.info("iteration %d targets: %s", it + 1, quality)
    append_jsonl(run.log_path, {"iteration": it + 1, "event": "targets", **quality})
    model = build_pretrain_model(encoder, cfg, cfg.n_clusters, it_seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.98), weight_decay=cfg.weight_decay)
    iteration = _Iteration(index=it, seed=it_seed, labels=labels, quality=quality, model=model, opt=opt,
                           rng=np.random.default_rng(it_seed))
    if state and state["iteration"] == it and "model" in state:
        iteration.step = _restore_iteration(run, iteration, state)
    else:
        torch.manual_seed(it_seed)
        _save_iteration(run, encoder, iteration)
    return iteration


def _make_iteration_targets(encoder: Any, data: PretrainData, cfg: PretrainConfig, it: int,
                            it_seed: int) -> tuple[list[np.ndarray], dict[str, float]]:
    """k-means targets of iteration ``it``: on MFCCs for the first, on a layer for later ones."""
    if it == 0:
        feats = [mfcc_features(data.wav_float(i)) for i in range(len(data.wavs))]
    else:
        feats = layer_features(encoder, data, range(len(data.wavs)), cfg.iter_layers[it - 1])
    return make_targets(feats, data, cfg, it_seed)


def _restore_iteration(run: _Run, iteration: _Iteration, state: dict[str, Any]) -> int:
    """Load the saved model, optimiser and RNG states into ``iteration``; returns the step.

    Raises:
        CorruptFileError: the state does not fit this run's model (one line).
    """
    try:
        iteration.model.load_state_dict(state["model"])
        iteration.opt.load_state_dict(state["optimizer"])
        set_generator_state(iteration.rng, state["rng"])
        torch.set_rng_state(state["torch_rng"])
    except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise CorruptFileError(
            f"{run.state_path} does not fit this run's model ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:120] if str(exc) else ''}); delete it to restart the run "
            f"from the beginning, or choose another --out"
        ) from None
    return state["step"]


def _save_iteration(run: _Run, encoder: Any, iteration: _Iteration) -> None:
    save_state(run.state_path, key=run.key, iteration=iteration.index, step=iteration.step, encoder=encoder,
               model=iteration.model, opt=iteration.opt, rng=iteration.rng, labels=iteration.labels,
               quality=iteration.quality)


def _train_iteration(run: _Run, encoder: Any, data: PretrainData, iteration: _Iteration) -> None:
    """Steps ``iteration.step`` … ``cfg.steps[it]``: train, log the window means, evaluate and save."""
    from tqdm import tqdm

    cfg = run.cfg
    total = cfg.steps[iteration.index]
    window = _LogWindow(iteration=iteration.index + 1)
    log_every = max(1, min(25, total // 10))
    bar = tqdm(total=total, initial=iteration.step, desc=f"iteration {iteration.index + 1}", unit="step")
    while iteration.step < total:
        loss, acc, extra, samples = _train_step(run, data, iteration, total)
        iteration.step += 1
        window.add(loss, acc, extra, samples)
        bar.update(1)
        if iteration.step % log_every == 0 or iteration.step == total:
            # the window means are what the log and its tests read: single batches are noisy
            record = window.flush(iteration.step, iteration.opt.param_groups[0]["lr"])
            append_jsonl(run.log_path, record)
            bar.set_postfix(loss=f"{record['loss']:.3f}", acc=f"{record['masked_acc']:.2f}")
        if iteration.step % cfg.eval_every == 0 or iteration.step == total:
            _evaluate_and_save(run, encoder, data, iteration)
    bar.close()


def _train_step(run: _Run, data: PretrainData, iteration: _Iteration,
                total: int) -> tuple[float, float, dict[str, float], int]:
    """One optimiser step on fresh random crops.

    Returns:
        ``(loss, masked accuracy, extra terms, audio samples seen)``.

    Raises:
        ConfigError: the loss is NaN or Inf (before the optimiser step).
    """
    cfg, model, opt, step = run.cfg, iteration.model, iteration.opt, iteration.step
    crop = int(cfg.crop_seconds * SAMPLE_RATE)
    model.train()
    wavs, lengths, lab = sample_batch(data, iteration.labels, data.train_idx, cfg.batch_size, crop, iteration.rng)
    contrastive = None
    if cfg.contrastive_batch:  # validated: only with contrastive_weight > 0
        contrastive = sample_batch(data, iteration.labels, data.train_idx, cfg.contrastive_batch, crop,
                                   iteration.rng)[:2]
    for g in opt.param_groups:
        g["lr"] = lr_at(step, total, cfg)
    loss, acc, extra = pretrain_loss(model, wavs, lengths, lab, cfg, contrastive)
    if not torch.isfinite(loss):
        raise ConfigError(f"pre-training loss became {loss.item()} at iteration {iteration.index + 1} step {step}; "
                          f"lower --lr or resume from {run.state_path}")
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    opt.step()
    return loss.item(), acc, extra, int(lengths.sum())


@dataclass
class _LogWindow:
    """Per-step losses since the last log line, and the iteration's audio throughput."""

    iteration: int
    t0: float = field(default_factory=time.time)
    seen: int = 0
    rows: list[tuple[float, ...]] = field(default_factory=list)
    names: tuple[str, ...] = ()

    def add(self, loss: float, acc: float, extra: dict[str, float], samples: int) -> None:
        self.seen += samples
        self.rows.append((loss, acc, *extra.values()))
        self.names = tuple(extra)

    def flush(self, step: int, lr: float) -> dict[str, Any]:
        """The log line at ``step``: window means of loss, accuracy and extra terms; resets the window."""
        loss_w, acc_w, *extra_w = (float(v) for v in np.mean(self.rows, axis=0))
        self.rows.clear()
        return {"iteration": self.iteration, "step": step, "loss": loss_w, "masked_acc": acc_w,
                **dict(zip(self.names, extra_w, strict=True)),
                "lr": lr, "audio_s_per_s": self.seen / SAMPLE_RATE / (time.time() - self.t0)}


def _evaluate_and_save(run: _Run, encoder: Any, data: PretrainData, iteration: _Iteration) -> None:
    """Held-out masked accuracy into the log, then ``state.pt``."""
    hacc = heldout_masked_accuracy(iteration.model, data, iteration.labels, run.cfg, run.seed)
    append_jsonl(run.log_path, {"iteration": iteration.index + 1, "step": iteration.step, "event": "eval",
                                "heldout_masked_acc": hacc})
    _save_iteration(run, encoder, iteration)


def _end_iteration(run: _Run, encoder: Any, it: int) -> None:
    """Keep iteration ``it``'s model (all but the last) and save a between-iterations state."""
    from deepwide.models import save_checkpoint

    if it + 1 < len(run.cfg.steps):
        # each iteration's model is kept (HuBERT practice), recorded as the recipe cut there
        info_k, cfg_k = recipe_cut(run.info, run.cfg, it + 1)
        save_checkpoint(encoder, run.out / f"model-iter{it + 1}", extra=run_extra(info_k, cfg_k, it + 1, 0))
    # the pre-training model shares the encoder's modules, so the encoder is trained in place
    save_state(run.state_path, key=run.key, iteration=it + 1, step=0, encoder=encoder)


def lr_at(step: int, total: int, cfg: PretrainConfig) -> float:
    """Linear warm-up to ``cfg.lr`` then cosine decay to 5 % of it (:func:`~deepwide.training.warmup_cosine_lr`)."""
    return warmup_cosine_lr(step, total, cfg.lr, int(cfg.warmup_frac * total))


def heldout_masked_accuracy(model: torch.nn.Module, data: PretrainData, labels: list[np.ndarray],
                            cfg: PretrainConfig, seed: int, batches: int = 4) -> float:
    """Masked-prediction accuracy on held-out speakers (fixed seeded crops and masks)."""
    if len(data.heldout_idx) == 0:
        return float("nan")
    rng = np.random.default_rng(seed + 7)
    model.eval()
    accs = []
    with torch.random.fork_rng(), torch.inference_mode():
        torch.manual_seed(seed + 7)
        for _ in range(batches):
            wavs, lengths, lab = sample_batch(data, labels, data.heldout_idx, cfg.batch_size,
                                              int(cfg.crop_seconds * SAMPLE_RATE), rng)
            model.train()  # masking is only applied in training mode
            _, acc = masked_loss(model, wavs, lengths, lab)
            accs.append(acc)
    model.train()
    return float(np.mean(accs))
