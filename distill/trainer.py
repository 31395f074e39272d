"""The distillation trainer: one student from one teacher, on one process or many (DDP).

:func:`train_student` runs a :class:`~deepwide.distill.config.DistillConfig` into a run folder::

    OUT/
      config.json, model.safetensors   the student: a deepwide checkpoint (``--model OUT``)
      heads.safetensors                prediction heads / projections (+ their mapping)
      distill.json                     summary, written last (its presence = run complete)
      metrics.jsonl                    one line per logged step and per held-out evaluation
                                       (docs/results-schema.md)
      checkpoints/step-XXXXXXXX.pt     training state: model, heads, optimiser, scheduler,
      checkpoints/latest.json          RNG states of every rank, data position, log buffers
      tensorboard/                     when TensorBoard is installed

Training: AdamW, linear warm-up then linear decay to zero, gradient clipping, bf16/fp16
autocast on CUDA (fp32 on CPU), DDP when launched by ``torchrun`` (NCCL on CUDA, gloo on CPU).
The teacher is frozen and in eval mode (no dropout, no layer drop); with stored teacher
targets it is not run at all.

Held-out loss (issue #19): a fixed, seed-independent few of the training utterances
(:func:`~deepwide.distill.data.split_heldout`) are never trained on; every
``config.eval_steps`` steps and after the last one, the student (eval mode, no gradients) is
scored on fixed crops of them with the training objective, and ``{"step", "heldout_loss"}`` is
logged. ``distill.json`` records the last held-out loss, its relative fall over the last quarter
of the evaluations and whether that fall is below ``config.plateau_threshold`` (the student then
counts as trained; :func:`~deepwide.distill.metrics.plateau_fall`). Evaluation draws from no
random generator, so it changes neither the training nor its exact resumption.

Reliability: checkpoints are written to a temporary name, fsynced and renamed, and
``latest.json`` is replaced atomically after them, so a kill at any moment leaves the last
complete checkpoint in place. ``resume=True`` restores everything, RNG states included, so on
CPU the resumed loss sequence equals the uninterrupted one exactly. A NaN/Inf loss stops the
run before the optimiser step with a one-line :class:`DivergenceError` naming the step and the
last good checkpoint.

This module is the run and its loop; each of its other jobs has a module of its own:
:mod:`~deepwide.distill.student` (shape, initialisation, :class:`DistillModel`),
:mod:`~deepwide.distill.distributed` (DDP), :mod:`~deepwide.distill.checkpoints`,
:mod:`~deepwide.distill.metrics` (window, ``metrics.jsonl``, TensorBoard, progress bar),
:mod:`~deepwide.distill.outputs` (student, heads, ``distill.json``); the schedule, atomic
saves, RNG state and JSON-lines rules are the core's (:mod:`deepwide.training`). Their public
names are importable from here too, as before the split.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from deepwide import __version__
from deepwide.config import atomic_write_json, config_to_dict
from deepwide.corpora import Manifest, resolve_corpus
from deepwide.distill.checkpoints import (
    CHECKPOINT_DIR,
    LATEST,
    STATE_FIELDS,
    clear_torn_writes,
    latest_checkpoint,
    load_resumable_state,
    load_training_state,
    restore_training_state,
    save_training_state,
)
from deepwide.distill.config import DistillConfig
from deepwide.distill.data import (
    CropBatches,
    CropSpec,
    StreamSampler,
    TeacherTargets,
    heldout_batches,
    make_loader,
    split_heldout,
)
from deepwide.distill.distributed import (
    DistEnv,
    all_reduce_mean,
    all_reduce_sum,
    barrier,
    setup_distributed,
    teardown_distributed,
)
from deepwide.distill.metrics import (
    METRICS,
    MetricsWindow,
    append_metrics,
    heldout_record,
    is_plateaued,
    plateau_fall,
    progress_bar,
    read_heldout,
    read_metrics,
    tensorboard_writer,
    truncate_metrics,
    write_scalars,
)
from deepwide.distill.objectives import Objective, build_objective, distill_loss
from deepwide.distill.outputs import (
    HEADS,
    SUMMARY,
    DistillResult,
    load_heads,
    read_result,
    save_heads,
    write_outputs,
)
from deepwide.distill.student import (
    REFERENCE_WIDTH,
    DistillModel,
    freeze_unused,
    init_student,
    resolve_student,
    student_model_id,
)
from deepwide.errors import ConfigError, DeepwideError, ModelError, StoreError
from deepwide.framing import FRAME_HOP, SAMPLE_RATE
from deepwide.models.encoder import Encoder
from deepwide.training import atomic_torch_save, rng_state, seed_everything, set_rng_state
from deepwide.training import linear_warmup_decay as lr_lambda

__all__ = [
    # the run
    "RESUMABLE_CHANGES", "DivergenceError", "train_student", "predict_and_target",
    # re-exported from the modules this one was split into (and from deepwide.training)
    "CHECKPOINT_DIR", "HEADS", "LATEST", "METRICS", "REFERENCE_WIDTH", "STATE_FIELDS", "SUMMARY",
    "DistEnv", "DistillModel", "DistillResult", "atomic_torch_save", "freeze_unused", "init_student",
    "latest_checkpoint", "load_heads", "load_resumable_state", "load_training_state", "lr_lambda",
    "read_metrics", "read_result", "resolve_student", "rng_state", "save_heads", "set_rng_state",
    "setup_distributed", "student_model_id",
]

log = logging.getLogger(__name__)

#: Config fields that may change between a run and its resumption (they do not change results).
RESUMABLE_CHANGES = frozenset({"checkpoint_every", "keep_checkpoints", "num_workers", "device"})


class DivergenceError(DeepwideError):
    """The loss became NaN or Inf; the message names the step and the last good checkpoint."""


@dataclass
class _Parts:
    """What one run trains with (built by :func:`_build_parts`).

    Attributes:
        teacher: the frozen teacher on the device, or ``None`` with stored targets.
        student_cfg: the student's EncoderConfig; model_id: its id.
        objective: the objective; model: student + heads (on the device).
        params, head_params: parameter counts of the student and of the heads.
        mapping: the layer mapping as a plain dict.
        dataset: the training batches.
        heldout: the held-out utterances' fixed batches (``None``: none held out).
    """

    teacher: Encoder | None
    student_cfg: Any
    model_id: str
    objective: Objective
    model: DistillModel
    params: int
    head_params: int
    mapping: dict[str, list[int]]
    dataset: CropBatches
    heldout: CropBatches | None


@dataclass
class _Optimisation:
    """The trainable parameters, AdamW, its schedule and the (fp16-only) gradient scaler."""

    trainable: list[nn.Parameter]
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: Any


@dataclass
class _Start:
    """Where the loop starts: the step, the next global batch, and the checkpoint it came from."""

    step: int
    next_batch: int
    checkpoint: Path | None


# ----------------------------------------------------------------------------------- the run
def train_student(
    config: DistillConfig,
    out: str | Path,
    *,
    resume: bool = False,
    teacher: Encoder | None = None,
    manifest: Manifest | None = None,
    progress: bool = True,
) -> DistillResult:
    """Distil one student as ``config`` says into run folder ``out``.

    Args:
        config: the run.
        out: the run folder (created).
        resume: continue from the newest training checkpoint in ``out`` (same config required);
            a finished run is returned as is; no checkpoint yet starts from scratch.
        teacher: an already-loaded teacher (sweeps load it once); ``None`` loads
            ``config.teacher``.
        manifest: an already-resolved corpus; ``None`` resolves ``config.corpus``.
        progress: show a tqdm progress bar (rank 0 only).

    Returns:
        the finished run's :class:`DistillResult`.

    Raises:
        ConfigError: ``out`` holds another run, or a non-resumable config change.
        DivergenceError: a NaN/Inf loss.
        StoreError: stored teacher targets that do not fit the teacher or corpus.
        ModelError: a teacher that is not a HuBERT-family transformer (e.g. ``mfcc``).
    """
    out = Path(out)
    env = setup_distributed(config.device)
    try:
        return _train(config, out, env, resume=resume, teacher=teacher, manifest=manifest, progress=progress)
    finally:
        teardown_distributed(env)


def _train(
    config: DistillConfig,
    out: Path,
    env: DistEnv,
    *,
    resume: bool,
    teacher: Encoder | None,
    manifest: Manifest | None,
    progress: bool,
) -> DistillResult:
    _check_run_folder(config, out, resume)
    done = read_result(out)
    if done is not None:
        log.info("%s is already finished (%d steps); nothing to do", out, done.steps)
        return done
    precision = _precision(config, env)
    parts = _build_parts(config, env, teacher, manifest)
    optim = _build_optimisation(config, parts.model, precision)
    window = MetricsWindow(parts.objective.mapping.teacher_layers)
    start = _start_or_resume(config, out, env, resume, parts, optim, window)
    if env.is_main:
        _write_run_record(out, config, env, parts)
    _log_start(config, env, parts)
    last_record = _train_loop(config, out, env, parts, optim, window, start, precision, progress)
    return _finish(config, out, env, parts, last_record)


def _check_run_folder(config: DistillConfig, out: Path, resume: bool) -> None:
    """Refuse to mix runs: another run without --resume, or --resume with other settings."""
    summary = out / SUMMARY
    ckpt = latest_checkpoint(out) if out.exists() else None
    if not resume and (summary.exists() or ckpt is not None):
        raise ConfigError(f"{out} already holds a distillation run; pass --resume to continue it or choose another --out")
    if out.exists() and (out / "run.json").is_file():
        try:
            saved = json.loads((out / "run.json").read_text())["config"]
            if not isinstance(saved, dict):
                raise TypeError("its config is not a JSON object")
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(
                f"{out / 'run.json'} is broken ({type(exc).__name__}: {exc}); delete it to resume without "
                f"checking the settings, or choose another --out"
            ) from None
        now = config_to_dict(config)
        changed = sorted(k for k in set(saved) | set(now) if k not in RESUMABLE_CHANGES and saved.get(k) != now.get(k))
        if changed and resume:
            raise ConfigError(
                f"{out} was made with other settings ({', '.join(changed)} differ); "
                f"resume with the original options or choose another --out"
            )


def _precision(config: DistillConfig, env: DistEnv) -> str:
    """The autocast precision: ``config.precision`` on CUDA, fp32 on the CPU (with a warning)."""
    if env.device.type == "cpu" and config.precision != "fp32":
        log.warning("--precision %s only applies on CUDA; training in fp32 on the CPU", config.precision)
    return config.precision if env.device.type == "cuda" else "fp32"


def _build_parts(
    config: DistillConfig, env: DistEnv, teacher: Encoder | None, manifest: Manifest | None
) -> _Parts:
    """Teacher, student, objective and heads, then the training batches; all on the device."""
    from deepwide.models import build_encoder, load_model

    if teacher is None:
        teacher = load_model(config.teacher, seed=config.seed)
    if not isinstance(teacher, Encoder):
        raise ModelError(
            f"teacher {config.teacher!r} is a {type(teacher).__name__}, not a HuBERT-family transformer; "
            f"distil from one (tiny-teacher, hubert-base, a checkpoint folder or fairseq file)"
        )
    teacher.eval().requires_grad_(False)
    student_cfg = resolve_student(config, teacher.config)
    objective = build_objective(
        config.objective, student_cfg.depth, student_cfg.width, teacher.num_layers, teacher.dim, config.targets
    )
    model_id = student_model_id(student_cfg, config.objective)
    student = build_encoder(student_cfg, seed=config.seed, model_id=model_id)
    init_student(student, teacher, copy_layers=config.init_from_teacher)
    torch.manual_seed(config.seed)  # the heads' initialisation
    model = DistillModel(student, objective)
    params, head_params = student.num_params(), sum(p.numel() for p in model.heads.parameters())
    probe = torch.zeros(1, 2 * student_cfg.frontend.receptive_field)
    freeze_unused(model, probe, torch.tensor([probe.shape[1]]))

    dataset, heldout, targets_store = _build_dataset(config, objective, teacher, manifest)
    if targets_store is None:
        teacher.to(env.device)
    else:
        teacher = None  # never run: its targets are stored
    model.to(env.device)
    return _Parts(teacher=teacher, student_cfg=student_cfg, model_id=model_id, objective=objective, model=model,
                  params=params, head_params=head_params, mapping=objective.mapping.to_dict(), dataset=dataset,
                  heldout=heldout)


def _build_dataset(
    config: DistillConfig, objective: Objective, teacher: Encoder, manifest: Manifest | None
) -> tuple[CropBatches, CropBatches | None, TeacherTargets | None]:
    """The training splits' crops less the held-out utterances, the held-out utterances' fixed
    crops (``None`` when none are held out), and the stored teacher targets when the config
    names a store."""
    if manifest is None:
        manifest = resolve_corpus(config.corpus)
    train_manifest = dataclasses.replace(
        manifest, utterances=[u for u in manifest if u.split in config.splits], trials=[]
    )
    targets_store: TeacherTargets | None = None
    if config.teacher_targets is not None:
        targets_store = TeacherTargets(config.teacher_targets, objective.mapping.teacher_layers)
        _check_store_fits(targets_store, teacher)
    spec = CropSpec(
        batch_seconds=config.batch_seconds,
        max_crop_seconds=config.max_crop_seconds,
        min_utt_seconds=config.min_utt_seconds,
        frame_aligned=targets_store is not None,
        seed=config.seed,
    )
    train_manifest, heldout_manifest = split_heldout(
        train_manifest, spec, config.heldout_fraction, config.heldout_max_utts
    )
    heldout = heldout_batches(heldout_manifest, spec, targets_store) if heldout_manifest is not None else None
    return CropBatches(train_manifest, spec, targets_store), heldout, targets_store


def _check_store_fits(store: TeacherTargets, teacher: Encoder) -> None:
    # crops of stored targets are cut on the 50 Hz grid (FRAME_HOP): another frame rate would
    # pair the student's frames with the wrong stored ones
    grid = SAMPLE_RATE / FRAME_HOP
    if teacher.frame_rate_hz != grid:
        raise StoreError(
            f"the teacher {teacher.model_id} gives {teacher.frame_rate_hz:g} frames/s, but stored teacher "
            f"targets are cut at {grid:g} frames/s (a {FRAME_HOP}-sample hop); distil from the online teacher"
        )
    if store.dim != teacher.dim:
        raise StoreError(
            f"store {store.path} holds {store.dim}-dim states but the teacher is {teacher.dim}-dim; "
            f"extract the targets with the same teacher"
        )
    if store.weights_hash and teacher.weights_hash() != store.weights_hash:
        raise StoreError(
            f"store {store.path} was extracted from {store.model_id or 'another model'} "
            f"(weights {store.weights_hash}), not from the teacher ({teacher.weights_hash()}); "
            f"extract the targets with the same --teacher"
        )


def _build_optimisation(config: DistillConfig, model: DistillModel, precision: str) -> _Optimisation:
    """AdamW over the trainable parameters, linear warm-up/decay, a scaler for fp16."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        trainable, lr=config.lr, betas=tuple(config.betas), eps=config.eps, weight_decay=config.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(config.warmup_steps, config.steps))
    scaler = torch.amp.GradScaler("cuda", enabled=precision == "fp16")
    return _Optimisation(trainable=trainable, optimizer=optimizer, scheduler=scheduler, scaler=scaler)


def _start_or_resume(
    config: DistillConfig, out: Path, env: DistEnv, resume: bool, parts: _Parts, optim: _Optimisation,
    window: MetricsWindow,
) -> _Start:
    """Restore the newest checkpoint (``resume``) or seed a fresh run; tidy the run folder."""
    resumed = load_resumable_state(out, set_aside=env.is_main) if resume and out.exists() else None
    if env.is_main:
        clear_torn_writes(out)
    if resumed is None:
        seed_everything(config.seed + env.rank)
        if env.is_main:
            out.mkdir(parents=True, exist_ok=True)
            (out / METRICS).unlink(missing_ok=True)
        return _Start(step=0, next_batch=0, checkpoint=None)
    step, next_batch = restore_training_state(resumed, env, config, parts.model, optim.optimizer, optim.scheduler,
                                              optim.scaler, window)
    if env.is_main:
        truncate_metrics(out, step)
    log.info("resuming %s from %s (step %d)", out, resumed[0].name, step)
    return _Start(step=step, next_batch=next_batch, checkpoint=resumed[0])


def _write_run_record(out: Path, config: DistillConfig, env: DistEnv, parts: _Parts) -> None:
    """``run.json``: the config, the student, the mapping and sizes (checked on resume)."""
    teacher_id = parts.teacher.model_id if parts.teacher is not None else None
    atomic_write_json(out / "run.json", {
        "config": config_to_dict(config),
        "student": parts.student_cfg.to_dict(),
        "model_id": parts.model_id,
        "teacher": {"spec": config.teacher, "model_id": teacher_id},
        "mapping": parts.mapping,
        "params": parts.params,
        "head_params": parts.head_params,
        "world_size": env.world_size,
        "deepwide_version": __version__,
    })


def _log_start(config: DistillConfig, env: DistEnv, parts: _Parts) -> None:
    log.log(
        logging.INFO if env.is_main else logging.DEBUG,
        "distilling %s (%s, %.2f M params + %.2f M in heads) from %s with %s, targets %s, on %s × %d; "
        "%d utterances held out, evaluated every %d steps",
        parts.model_id, parts.student_cfg.describe(), parts.params / 1e6, parts.head_params / 1e6, config.teacher,
        config.objective, list(parts.objective.mapping.teacher_layers), env.device, env.world_size,
        len(parts.heldout.utts) if parts.heldout is not None else 0, config.eval_steps,
    )


# ----------------------------------------------------------------------------------- the loop
def _train_loop(
    config: DistillConfig, out: Path, env: DistEnv, parts: _Parts, optim: _Optimisation, window: MetricsWindow,
    start: _Start, precision: str, progress: bool,
) -> dict[str, Any] | None:
    """Steps ``start.step`` … ``config.steps``: train, log every ``log_every``, evaluate on the
    held-out utterances every ``config.eval_steps`` (rank 0), checkpoint.

    Returns:
        the last metrics line logged (``None`` if no step was left to train).
    """
    ddp_model = _wrap_ddp(parts.model, env)
    sampler = StreamSampler(start.next_batch, start.step, config.steps, env.rank, env.world_size)
    loader = make_loader(parts.dataset, sampler, config.num_workers, pin_memory=env.device.type == "cuda")
    writer = tensorboard_writer(out) if env.is_main else None
    bar = progress_bar(config.steps, start.step, progress and env.is_main, parts.model_id)
    autocast = _autocast(env.device, precision)
    last_ckpt, last_record = start.checkpoint, None
    parts.model.train()
    t_window = time.perf_counter()
    try:
        for step in range(start.step, config.steps):
            stats, grad_norm, frames, lr = _train_step(config, env, ddp_model, parts, optim, loader, autocast,
                                                       step, last_ckpt)
            window.add(stats, grad_norm, frames)
            done_steps = step + 1
            bar.update(1)
            if done_steps % config.log_every == 0 or done_steps == config.steps:
                last_record = window.flush(done_steps, lr, time.perf_counter() - t_window)
                t_window = time.perf_counter()
                if env.is_main:
                    _log_metrics(out, last_record, bar, writer)
            if parts.heldout is not None and env.is_main and (
                done_steps % config.eval_steps == 0 or done_steps == config.steps
            ):
                record = heldout_record(done_steps, _heldout_loss(config, env, parts, autocast))
                append_metrics(out, record)
                if writer is not None:
                    write_scalars(writer, record, done_steps)
            if done_steps % config.checkpoint_every == 0 or done_steps == config.steps:
                next_batch = start.next_batch + (done_steps - start.step) * env.world_size
                last_ckpt = save_training_state(out, env, config, done_steps, next_batch, parts.model,
                                                optim.optimizer, optim.scheduler, optim.scaler, window)
    finally:
        bar.close()
        if writer is not None:
            writer.close()
        del loader
    return last_record


def _train_step(
    config: DistillConfig, env: DistEnv, model: nn.Module, parts: _Parts, optim: _Optimisation,
    loader: Iterator[dict[str, Tensor]], autocast: contextlib.AbstractContextManager[Any], step: int,
    last_ckpt: Path | None,
) -> tuple[list[float], float, float, float]:
    """One optimiser step on the next batch.

    Returns:
        ``(stats, grad_norm, frames, lr)``: [loss, loss per target layer] averaged over the
        processes, the gradient norm before clipping, valid frames summed over the processes,
        and the learning rate the step used.

    Raises:
        DivergenceError: the loss is NaN or Inf (before the optimiser step).
    """
    with autocast:
        preds, targets, frame_lengths = predict_and_target(
            model, parts.teacher, next(loader), parts.objective.mapping.teacher_layers, env.device
        )
    loss, per_target = distill_loss(preds, targets, frame_lengths, config.cos_weight)
    stats = all_reduce_mean(torch.cat([loss.detach()[None], per_target.detach()]), env)
    _stop_if_diverged(float(stats[0]), step, last_ckpt)
    optimizer, scaler = optim.optimizer, optim.scaler
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    max_norm = config.grad_clip if config.grad_clip > 0 else float("inf")
    grad_norm = torch.nn.utils.clip_grad_norm_(optim.trainable, max_norm)
    scaler.step(optimizer)
    scaler.update()
    lr = optimizer.param_groups[0]["lr"]
    optim.scheduler.step()
    frames = all_reduce_sum(frame_lengths.sum().detach().float(), env)
    return stats.cpu().tolist(), float(grad_norm), float(frames), lr


def _heldout_loss(
    config: DistillConfig, env: DistEnv, parts: _Parts, autocast: contextlib.AbstractContextManager[Any]
) -> float:
    """The training objective over every held-out utterance's fixed crop, frame-weighted.

    The student is in eval mode (no dropout) and runs without gradients; no random generator
    is drawn from, and the training mode is restored after.
    """
    assert parts.heldout is not None
    model, layers = parts.model, parts.objective.mapping.teacher_layers
    total, frames = 0.0, 0.0
    model.eval()
    try:
        with torch.no_grad():
            for g in range(parts.heldout.plan.batches_per_epoch(0)):
                with autocast:
                    preds, targets, frame_lengths = predict_and_target(
                        model, parts.teacher, parts.heldout[g], layers, env.device
                    )
                loss, _ = distill_loss(preds, targets, frame_lengths, config.cos_weight)
                n = float(frame_lengths.sum())
                total, frames = total + float(loss) * n, frames + n
    finally:
        model.train()
    return total / frames


def _stop_if_diverged(loss_value: float, step: int, last_ckpt: Path | None) -> None:
    if not math.isfinite(loss_value):
        where = str(last_ckpt) if last_ckpt is not None else "none (no checkpoint saved yet)"
        raise DivergenceError(
            f"loss became {loss_value} at step {step + 1}; last good checkpoint: {where}; "
            f"lower --lr or use --precision bf16/fp32, then --resume"
        )


def _log_metrics(out: Path, record: dict[str, Any], bar: Any, writer: Any) -> None:
    """One metrics line into ``metrics.jsonl``, the progress bar and TensorBoard (rank 0)."""
    append_metrics(out, record)
    bar.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{record['lr']:.2e}")
    if writer is not None:
        write_scalars(writer, record, record["step"])


def predict_and_target(
    model: nn.Module,
    teacher: Encoder | None,
    batch: dict[str, Tensor],
    teacher_layers: Sequence[int],
    device: torch.device,
) -> tuple[list[Tensor], list[Tensor], Tensor]:
    """The student's predictions and the teacher's targets for one batch.

    Args:
        model: the (possibly DDP-wrapped) :class:`DistillModel`.
        teacher: the frozen teacher, or ``None`` when ``batch`` carries stored targets.
        batch: from :class:`~deepwide.distill.data.CropBatches`.
        teacher_layers: target layers, in mapping order.
        device: where to compute.

    Returns:
        ``(preds, targets, frame_lengths)``: N tensors (B, T, D_t) each and (B,) valid frames
        (with stored targets: frames both the crop and the store cover).
    """
    wavs = batch["wavs"].to(device, non_blocking=True)
    lengths = batch["lengths"].to(device, non_blocking=True)
    preds, frame_lengths = model(wavs, lengths)
    if "targets" in batch:
        stored = batch["targets"].to(device, non_blocking=True)  # (N, B, T, D)
        t = min(preds[0].shape[1], stored.shape[2])
        frame_lengths = torch.minimum(frame_lengths, batch["target_lengths"].to(device)).clamp(max=t)
        return [p[:, :t] for p in preds], list(stored[:, :, :t].unbind(0)), frame_lengths
    if teacher is None:
        raise ValueError("a batch without stored targets needs the teacher")
    with torch.no_grad():
        states, _ = teacher.hidden_states(wavs, lengths)
    return preds, [states[layer].detach() for layer in teacher_layers], frame_lengths


def _wrap_ddp(model: DistillModel, env: DistEnv) -> nn.Module:
    if env.world_size == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[env.device.index] if env.device.type == "cuda" else None)


def _autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    if device.type != "cuda" or precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast("cuda", dtype=dtype)


# ----------------------------------------------------------------------------------- outputs
def _finish(
    config: DistillConfig, out: Path, env: DistEnv, parts: _Parts, last_record: dict[str, Any] | None
) -> DistillResult:
    """The run's :class:`DistillResult`, its outputs written by rank 0, every rank waiting."""
    if last_record is None:  # nothing left to train: killed after the last checkpoint
        metrics = read_metrics(out)
        last_record = metrics[-1] if metrics else {"loss": float("nan")}
    barrier(env)  # rank 0's held-out lines are written
    curve = [float(r["heldout_loss"]) for r in read_heldout(out)]
    fall = plateau_fall(curve)
    result = DistillResult(
        out=out,
        model_id=parts.model_id,
        student_config=parts.student_cfg.to_dict(),
        params=parts.params,
        head_params=parts.head_params,
        steps=config.steps,
        final_loss=float(last_record["loss"]),
        mapping=parts.mapping,
        heldout_loss=curve[-1] if curve else math.nan,
        plateau_fall=fall,
        plateaued=is_plateaued(fall, config.plateau_threshold),
    )
    if env.is_main:
        write_outputs(out, parts.model, config, result)
    barrier(env)
    return result

