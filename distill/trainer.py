"""The distillation trainer: one student from one teacher, on one process or many (DDP).

:func:`train_student` runs a :class:`~deepwide.distill.config.DistillConfig` into a run folder::

    OUT/
      config.json, model.safetensors   the student: a deepwide checkpoint (``--model OUT``)
      heads.safetensors                prediction heads / projections (+ their mapping)
      distill.json                     summary, written last (its presence = run complete)
      metrics.jsonl                    one line per logged step (docs/results-schema.md)
      checkpoints/step-XXXXXXXX.pt     training state: model, heads, optimiser, scheduler,
      checkpoints/latest.json          RNG states of every rank, data position, log buffers
      tensorboard/                     when TensorBoard is installed

Training: AdamW, linear warm-up then linear decay to zero, gradient clipping, bf16/fp16
autocast on CUDA (fp32 on CPU), DDP when launched by ``torchrun`` (NCCL on CUDA, gloo on CPU).
The teacher is frozen and in eval mode (no dropout, no layer drop); with stored teacher
targets it is not run at all.

Reliability: checkpoints are written to a temporary name, fsynced and renamed, and
``latest.json`` is replaced atomically after them, so a kill at any moment leaves the last
complete checkpoint in place. ``resume=True`` restores everything, RNG states included, so on
CPU the resumed loss sequence equals the uninterrupted one exactly. A NaN/Inf loss stops the
run before the optimiser step with a one-line :class:`DivergenceError` naming the step and the
last good checkpoint.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from deepwide import __version__
from deepwide.config import atomic_target, atomic_write_json, atomic_write_text, config_to_dict
from deepwide.corpora import Manifest, resolve_corpus
from deepwide.distill.config import DistillConfig
from deepwide.distill.data import CropBatches, CropSpec, StreamSampler, TeacherTargets, make_loader
from deepwide.distill.objectives import Objective, build_objective, distill_loss
from deepwide.errors import ConfigError, DeepwideError, ModelError, StoreError
from deepwide.models.torchfile import CorruptFileError, UnsafeFileError, load_torch_file

log = logging.getLogger(__name__)

#: HuBERT Base width: student presets are shapes relative to it (see :func:`resolve_student`).
REFERENCE_WIDTH = 768

#: Config fields that may change between a run and its resumption (they do not change results).
RESUMABLE_CHANGES = frozenset({"checkpoint_every", "keep_checkpoints", "num_workers", "device"})

CHECKPOINT_DIR = "checkpoints"
LATEST = "latest.json"
SUMMARY = "distill.json"
METRICS = "metrics.jsonl"
HEADS = "heads.safetensors"


class DivergenceError(DeepwideError):
    """The loss became NaN or Inf; the message names the step and the last good checkpoint."""


# ----------------------------------------------------------------------------------- students
def resolve_student(config: DistillConfig, teacher_config: Any) -> Any:
    """The student's :class:`~deepwide.models.EncoderConfig`.

    ``--depth/--width`` (with optional ``--ffn/--heads``) give the shape directly. A preset
    (``distilhubert``, ``3l-one``, ``12l-half``, ``fithubert``) is a shape *relative to HuBERT
    Base*: its depth is kept, its width, FFN and heads scale by ``teacher width / 768`` (a
    HuBERT-Base-wide teacher gets the preset exactly; ``tiny-teacher`` (width 256) gets a
    ``distilhubert``-shaped 2 × 256 student). Everything else (front-end, arch, layer-norm
    placement, positional convolution, dropouts) is the teacher's; layer drop is off.

    Raises:
        ConfigError / UnknownNameError: an unknown preset or a shape the teacher's
            positional-convolution groups or the head rule cannot divide.
    """
    from deepwide.models import PRESETS, student_config

    if config.student is not None:
        preset = PRESETS.get(config.student)
        scale = teacher_config.width / REFERENCE_WIDTH
        if scale == 1:
            depth, width, ffn, heads = preset.depth, preset.width, preset.ffn, preset.heads
        else:
            width = int(round(preset.width * scale))
            ffn = max(1, int(round(preset.ffn * scale)))
            heads = max(1, int(round(preset.heads * scale)))
            depth = preset.depth
            if width % heads or width % teacher_config.pos_conv_groups:
                raise ConfigError(
                    f"preset {config.student} scaled to the teacher's width {teacher_config.width} gives "
                    f"{depth}x{width} with {heads} heads, which does not divide; give --depth/--width/--heads"
                )
    else:
        depth, width, ffn, heads = config.depth, config.width, config.ffn, config.heads
    try:
        cfg = student_config(teacher_config, depth, width, ffn=ffn, heads=heads)
    except DeepwideError as exc:
        raise ConfigError(str(exc)) from exc
    overrides: dict[str, Any] = {"layer_drop": 0.0}
    if config.dropout is not None:
        overrides.update(dropout=config.dropout, attention_dropout=config.dropout, ffn_dropout=config.dropout)
    try:
        return dataclasses.replace(cfg, **overrides)
    except ValueError as exc:
        raise ConfigError(f"invalid student: {exc}") from exc


def student_model_id(student_cfg: Any, objective: str) -> str:
    """``student-<depth>x<width>-<objective>``, the student's model id in stores and results."""
    return f"student-{student_cfg.depth}x{student_cfg.width}-{objective}"


def init_student(student: nn.Module, teacher: nn.Module, *, copy_layers: bool) -> None:
    """Copy the teacher's front-end into ``student`` (and with ``copy_layers`` its transformer).

    ``copy_layers`` copies the feature projection, positional convolution, layer norms and the
    first ``student depth`` transformer layers; it needs the student's width, FFN, heads and
    architecture to equal the teacher's and ``depth ≤ teacher depth``.

    Raises:
        ConfigError: ``copy_layers`` with a student whose shape differs from the teacher's.
    """
    student.frontend.load_state_dict(teacher.frontend.state_dict())
    if not copy_layers:
        return
    s, t = student.config, teacher.config
    same = ("width", "ffn", "heads", "arch", "layer_norm_first", "pos_conv_kernel", "pos_conv_groups")
    diff = [f"{k} {getattr(s, k)} vs {getattr(t, k)}" for k in same if getattr(s, k) != getattr(t, k)]
    if diff or s.depth > t.depth:
        why = ", ".join(diff) or f"depth {s.depth} > teacher depth {t.depth}"
        raise ConfigError(
            f"--init-from-teacher copies transformer layers, which needs the teacher's shape ({why}); "
            f"drop the flag or give the teacher's width/ffn/heads"
        )
    teacher_state = teacher.encoder.state_dict()
    own = student.encoder.state_dict()
    copied = {k: v for k, v in teacher_state.items() if k in own}
    student.encoder.load_state_dict(copied, strict=True)


def freeze_unused(model: nn.Module, wavs: Tensor, lengths: Tensor) -> list[str]:
    """Freeze parameters that the loss never reaches (e.g. a pre-LN student's final layer norm,
    which :meth:`Encoder.hidden_states` does not apply), so DDP need not search for them.

    Runs one forward/backward in eval mode (no dropout, no RNG use) and clears the gradients.

    Args:
        model: a :class:`DistillModel`.
        wavs: (B, S) a dummy batch; lengths: (B,).

    Returns:
        the names of the frozen parameters.
    """
    was_training = model.training
    model.eval()
    preds, _ = model(wavs, lengths)
    sum(p.float().sum() for p in preds).backward()
    frozen = []
    for name, p in model.named_parameters():
        if p.requires_grad and p.grad is None:
            p.requires_grad_(False)
            frozen.append(name)
        p.grad = None
    model.train(was_training)
    if frozen:
        log.debug("parameters the loss does not reach, frozen: %s", ", ".join(frozen))
    return frozen


class DistillModel(nn.Module):
    """Student + objective heads: what the optimiser trains and DDP wraps.

    Args:
        student: the student :class:`~deepwide.models.Encoder`.
        objective: maps student states to predictions of the teacher layers.
    """

    def __init__(self, student: nn.Module, objective: Objective) -> None:
        super().__init__()
        self.student = student
        self.heads = objective.build_heads()
        self.objective = objective

    def forward(self, wavs: Tensor, lengths: Tensor) -> tuple[list[Tensor], Tensor]:
        """Args: wavs (B, S); lengths (B,). Returns N predictions (B, T, D_t) and (B,) frames."""
        states, frame_lengths = self.student.hidden_states(wavs, lengths)
        return self.objective.predict(self.heads, states), frame_lengths


# ----------------------------------------------------------------------------------- schedule
def lr_lambda(warmup_steps: int, total_steps: int):  # noqa: ANN201 - a closure for LambdaLR
    """Linear warm-up over ``warmup_steps`` then linear decay to 0 at ``total_steps``."""

    def factor(step: int) -> float:
        if warmup_steps > 0 and step < warmup_steps:
            return (step + 1) / warmup_steps
        remaining = total_steps - step
        span = max(1, total_steps - warmup_steps)
        return max(0.0, remaining / span)

    return factor


# ----------------------------------------------------------------------------------- distributed
@dataclass(frozen=True)
class DistEnv:
    """Where this process sits: rank, world size, device, and whether we set up the group."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    owns_group: bool

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: str = "auto") -> DistEnv:
    """Read ``torchrun``'s env vars (RANK, WORLD_SIZE, LOCAL_RANK) and join the process group.

    NCCL on CUDA, gloo on CPU. Without those variables (or with WORLD_SIZE=1) this is one
    process and no group is created.
    """
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError("--device cuda was asked for but no CUDA device is available; use --device cpu")
        dev = torch.device(f"cuda:{local_rank}") if device == "cuda" else torch.device(device)
        torch.cuda.set_device(dev)
    else:
        dev = torch.device("cpu")
    owns = False
    if world > 1 and not (dist.is_available() and dist.is_initialized()):
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
        owns = True
    if world > 1:
        rank, world = dist.get_rank(), dist.get_world_size()
    return DistEnv(rank=rank, world_size=world, local_rank=local_rank, device=dev, owns_group=owns)


def _all_reduce_mean(x: Tensor, env: DistEnv) -> Tensor:
    if env.world_size == 1:
        return x
    import torch.distributed as dist

    y = x.detach().clone()
    dist.all_reduce(y, op=dist.ReduceOp.SUM)
    return y / env.world_size


def _all_reduce_sum(x: Tensor, env: DistEnv) -> Tensor:
    if env.world_size == 1:
        return x
    import torch.distributed as dist

    y = x.detach().clone()
    dist.all_reduce(y, op=dist.ReduceOp.SUM)
    return y


# ----------------------------------------------------------------------------------- RNG state
def rng_state() -> dict[str, Any]:
    """Python, NumPy, torch (and CUDA) RNG states, as weights-only-loadable values."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`rng_state`."""
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _gather_objects(obj: Any, env: DistEnv) -> list[Any]:
    if env.world_size == 1:
        return [obj]
    import torch.distributed as dist

    out: list[Any] = [None] * env.world_size
    dist.all_gather_object(out, obj)
    return out


# ----------------------------------------------------------------------------------- checkpoints
def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file in the same folder, fsync, then rename over ``path``."""
    with atomic_target(path) as tmp, open(tmp, "wb") as fh:
        torch.save(obj, fh)


def latest_checkpoint(out: Path) -> Path | None:
    """The newest complete training checkpoint of run folder ``out`` (``None`` if none).

    Reads ``checkpoints/latest.json``; if it is missing or names a file that is gone, falls back
    to the newest ``step-*.pt`` that loads.
    """
    folder = out / CHECKPOINT_DIR
    pointer = folder / LATEST
    if pointer.is_file():
        try:
            name = json.loads(pointer.read_text())["file"]
            if (folder / name).is_file():
                return folder / name
        except (json.JSONDecodeError, KeyError, TypeError):
            log.warning("ignoring unreadable %s", pointer)
    candidates = sorted(folder.glob("step-*.pt"), reverse=True)
    return candidates[0] if candidates else None


#: What every training checkpoint holds (``_save_training_state``).
_STATE_KEYS = ("step", "model", "optimizer", "scheduler", "scaler", "rng", "data", "window")


def load_training_state(path: str | Path, *, hint: str = "") -> dict[str, Any]:
    """Read a training checkpoint weights-only (no code in it can run) and check its layout.

    Args:
        path: a ``checkpoints/step-XXXXXXXX.pt``.
        hint: what to do if it cannot be used, appended to the one-line error.

    Raises:
        UnsafeFileError: the file holds pickled code or objects other than plain data.
        CorruptFileError: truncated, unreadable, or not a deepwide training checkpoint.
    """
    p = Path(path)
    hint = hint or f"delete {p} to resume from the checkpoint before it"
    state = load_torch_file(p, hint=hint, unsafe_hint=f"do not trust this run folder; delete {p} to resume "
                                                      f"from the checkpoint before it, or start over in another --out")
    if not isinstance(state, dict):
        raise CorruptFileError(f"{p} is not a deepwide training checkpoint (it holds a {type(state).__name__}); {hint}")
    missing = [k for k in _STATE_KEYS if k not in state]
    step, data = state.get("step"), state.get("data")
    if missing or type(step) is not int or not isinstance(data, dict) or type(data.get("next_batch")) is not int \
            or not isinstance(state["rng"], list) or not state["rng"]:
        what = f"missing {', '.join(missing)}" if missing else "its step, data position or RNG states are malformed"
        raise CorruptFileError(f"{p} is not a deepwide training checkpoint ({what}); {hint}")
    return state


def load_resumable_state(out: Path, *, set_aside: bool = False) -> tuple[Path, dict[str, Any]] | None:
    """The newest training checkpoint of run folder ``out`` that loads, and its state.

    ``latest.json``'s file is tried first, then every ``step-*.pt`` from the newest down: a
    truncated or corrupt one is skipped with a one-line warning (and, with ``set_aside``,
    renamed to ``<name>.corrupt`` so it is never tried or kept again).

    Returns:
        ``(path, state)``, or ``None`` when the run has no checkpoint at all.

    Raises:
        UnsafeFileError: a checkpoint holds pickled code or other objects (never skipped:
            someone put it there).
        ModelError: there are checkpoints but none of them loads.
    """
    folder = out / CHECKPOINT_DIR
    first = latest_checkpoint(out)
    candidates = ([first] if first is not None else []) + [
        p for p in sorted(folder.glob("step-*.pt"), reverse=True) if p != first
    ]
    skipped = []
    for path in candidates:
        try:
            return path, load_training_state(path, hint="trying the checkpoint before it")
        except UnsafeFileError:
            raise
        except CorruptFileError as exc:
            log.warning("%s", exc)
            skipped.append(path.name)
            if set_aside and path.is_file():
                path.replace(path.with_name(path.name + ".corrupt"))
    if skipped:
        raise ModelError(
            f"no checkpoint in {folder} can be read ({', '.join(skipped)}: truncated or corrupt); "
            f"delete {folder} and rerun with --resume to start the run over, or choose another --out"
        )
    return None


def _prune_checkpoints(folder: Path, keep: int) -> None:
    for old in sorted(folder.glob("step-*.pt"))[:-keep]:
        old.unlink(missing_ok=True)


def _mapping_key(layer: int) -> str:
    return f"loss_{layer}"


# ----------------------------------------------------------------------------------- results
@dataclass(frozen=True)
class DistillResult:
    """What a finished run produced.

    Attributes:
        out: the run folder (a deepwide checkpoint: ``--model OUT``).
        model_id: the student's id (``student-<D>x<W>-<objective>``).
        student_config: the student's architecture as a plain dict.
        params: student parameters (encoder only, no heads).
        head_params: parameters of the heads / projections.
        steps: optimiser steps taken in total.
        final_loss: mean loss of the last logged window.
        mapping: ``{"student_layers": [...], "teacher_layers": [...]}``.
    """

    out: Path
    model_id: str
    student_config: dict[str, Any]
    params: int
    head_params: int
    steps: int
    final_loss: float
    mapping: dict[str, list[int]]

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["out"] = str(self.out)
        return d


def read_result(out: str | Path) -> DistillResult | None:
    """The :class:`DistillResult` of a finished run folder, or ``None`` if it is not finished."""
    p = Path(out) / SUMMARY
    if not p.is_file():
        return None
    try:
        d = json.loads(p.read_text())["result"]
        d["out"] = Path(out)
        return DistillResult(**d)
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"{p} is broken ({type(exc).__name__}: {exc}); delete it and rerun with --resume to finish the run again"
        ) from None


def read_metrics(out: str | Path) -> list[dict[str, Any]]:
    """The metrics lines of a run folder, in order (a torn last line is dropped with a warning).

    Raises:
        ConfigError: a line other than the last is not a metrics record.
    """
    p = Path(out) / METRICS
    if not p.is_file():
        return []
    return [record for _, record in _metrics_lines(p)]


def _metrics_lines(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """``(line, record)`` for every metrics line; a torn last line (a kill mid-append) is dropped."""
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    filled = [i for i, line in enumerate(lines) if line.strip()]
    out = []
    for i in filled:
        try:
            record = json.loads(lines[i])
            if not isinstance(record, dict) or type(record.get("step")) is not int:
                raise ValueError("not a metrics record")
        except ValueError:
            if i == filled[-1]:
                log.warning("dropping the torn last line of %s (a write cut short): %.60s", path, lines[i])
                continue
            raise ConfigError(
                f"line {i + 1} of {path} is not a metrics record; fix or delete that line, then rerun"
            ) from None
        out.append((lines[i], record))
    return out


def save_heads(model: DistillModel, path: Path) -> None:
    """Write the heads' weights (safetensors) with the objective and mapping in the metadata."""
    from safetensors.torch import save

    tensors = {k: v.detach().cpu().contiguous() for k, v in model.heads.state_dict().items()}
    meta = {"objective": json.dumps(model.objective.describe())}
    from deepwide.config import atomic_write_bytes

    atomic_write_bytes(path, save(tensors, metadata=meta))


def load_heads(path: str | Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """``(state_dict, objective description)`` of a ``heads.safetensors`` file."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        meta = json.loads((fh.metadata() or {})["objective"])
        return {k: fh.get_tensor(k) for k in fh.keys()}, meta


# ----------------------------------------------------------------------------------- training
def train_student(
    config: DistillConfig,
    out: str | Path,
    *,
    resume: bool = False,
    teacher: nn.Module | None = None,
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
    """
    out = Path(out)
    env = setup_distributed(config.device)
    try:
        return _train(config, out, env, resume=resume, teacher=teacher, manifest=manifest, progress=progress)
    finally:
        if env.owns_group:
            import torch.distributed as dist

            dist.destroy_process_group()


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


def _train(
    config: DistillConfig,
    out: Path,
    env: DistEnv,
    *,
    resume: bool,
    teacher: nn.Module | None,
    manifest: Manifest | None,
    progress: bool,
) -> DistillResult:
    from deepwide.models import build_encoder, load_model

    _check_run_folder(config, out, resume)
    done = read_result(out)
    if done is not None:
        log.info("%s is already finished (%d steps); nothing to do", out, done.steps)
        return done

    if env.device.type == "cpu" and config.precision != "fp32":
        log.warning("--precision %s only applies on CUDA; training in fp32 on the CPU", config.precision)
    precision = config.precision if env.device.type == "cuda" else "fp32"

    # -- teacher, student, objective ---------------------------------------------------------------
    if teacher is None:
        teacher = load_model(config.teacher, seed=config.seed)
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
    mapping = objective.mapping.to_dict()

    # -- data ------------------------------------------------------------------------------------
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
    dataset = CropBatches(train_manifest, spec, targets_store)
    if targets_store is None:
        teacher.to(env.device)
    else:
        teacher = None  # never run: its targets are stored
    model.to(env.device)

    # -- optimiser ---------------------------------------------------------------------------------
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        trainable, lr=config.lr, betas=tuple(config.betas), eps=config.eps, weight_decay=config.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(config.warmup_steps, config.steps))
    scaler = torch.amp.GradScaler("cuda", enabled=precision == "fp16")

    # -- state -------------------------------------------------------------------------------------
    start_step, next_batch = 0, 0
    window = _Window(objective.mapping.teacher_layers)
    resumed = load_resumable_state(out, set_aside=env.is_main) if resume and out.exists() else None
    ckpt_path = resumed[0] if resumed is not None else None
    if env.is_main and (out / CHECKPOINT_DIR).is_dir():
        for stale in (out / CHECKPOINT_DIR).glob(".*.tmp"):  # a write cut short by a kill
            stale.unlink(missing_ok=True)
    if resumed is not None:
        start_step, next_batch = _restore(resumed, env, config, model, optimizer, scheduler, scaler, window)
        if env.is_main:
            _truncate_metrics(out / METRICS, start_step)
        log.info("resuming %s from %s (step %d)", out, ckpt_path.name, start_step)
    else:
        _seed_everything(config.seed + env.rank)
        if env.is_main:
            out.mkdir(parents=True, exist_ok=True)
            (out / METRICS).unlink(missing_ok=True)
    if env.is_main:
        atomic_write_json(out / "run.json", {
            "config": config_to_dict(config),
            "student": student_cfg.to_dict(),
            "model_id": model_id,
            "teacher": {"spec": config.teacher, "model_id": getattr(teacher, "model_id", None) if teacher else None},
            "mapping": mapping,
            "params": params,
            "head_params": head_params,
            "world_size": env.world_size,
            "deepwide_version": __version__,
        })
    log.log(
        logging.INFO if env.is_main else logging.DEBUG,
        "distilling %s (%s, %.2f M params + %.2f M in heads) from %s with %s, targets %s, on %s × %d",
        model_id, student_cfg.describe(), params / 1e6, head_params / 1e6, config.teacher,
        config.objective, list(objective.mapping.teacher_layers), env.device, env.world_size,
    )

    ddp_model: nn.Module = model
    if env.world_size > 1:
        from torch.nn.parallel import DistributedDataParallel

        ddp_model = DistributedDataParallel(model, device_ids=[env.device.index] if env.device.type == "cuda" else None)

    sampler = StreamSampler(next_batch, start_step, config.steps, env.rank, env.world_size)
    loader = make_loader(dataset, sampler, config.num_workers, pin_memory=env.device.type == "cuda")
    writer = _tensorboard(out) if env.is_main else None
    last_ckpt: Path | None = ckpt_path
    bar = _progress(config.steps, start_step, progress and env.is_main, model_id)
    autocast = _autocast(env.device, precision)
    last_record: dict[str, Any] | None = None
    model.train()
    t_window = time.perf_counter()
    try:
        for step in range(start_step, config.steps):
            with autocast:
                preds, targets, frame_lengths = predict_and_target(
                    ddp_model, teacher, next(loader), objective.mapping.teacher_layers, env.device
                )
            loss, per_target = distill_loss(preds, targets, frame_lengths, config.cos_weight)
            stats = torch.cat([loss.detach()[None], per_target.detach()])
            stats = _all_reduce_mean(stats, env)
            loss_value = float(stats[0])
            if not math.isfinite(loss_value):
                where = str(last_ckpt) if last_ckpt is not None else "none (no checkpoint saved yet)"
                raise DivergenceError(
                    f"loss became {loss_value} at step {step + 1}; last good checkpoint: {where}; "
                    f"lower --lr or use --precision bf16/fp32, then --resume"
                )
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            max_norm = config.grad_clip if config.grad_clip > 0 else float("inf")
            grad_norm = torch.nn.utils.clip_grad_norm_(trainable, max_norm)
            scaler.step(optimizer)
            scaler.update()
            lr = optimizer.param_groups[0]["lr"]
            scheduler.step()
            frames = _all_reduce_sum(frame_lengths.sum().detach().float(), env)
            window.add(stats.cpu().tolist(), float(grad_norm), float(frames))
            done_steps = step + 1
            bar.update(1)
            if done_steps % config.log_every == 0 or done_steps == config.steps:
                elapsed = time.perf_counter() - t_window
                record = last_record = window.flush(done_steps, lr, elapsed)
                t_window = time.perf_counter()
                if env.is_main:
                    _append_jsonl(out / METRICS, record)
                    bar.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{lr:.2e}")
                    if writer is not None:
                        for k, v in record.items():
                            if k != "step":
                                writer.add_scalar(f"distill/{k}", v, done_steps)
            if done_steps % config.checkpoint_every == 0 or done_steps == config.steps:
                last_ckpt = _save_training_state(
                    out, env, config, done_steps, next_batch + (done_steps - start_step) * env.world_size,
                    model, optimizer, scheduler, scaler, window,
                )
    finally:
        bar.close()
        if writer is not None:
            writer.close()
        del loader

    # -- outputs -----------------------------------------------------------------------------------
    if last_record is None:  # nothing left to train: killed after the last checkpoint
        metrics = read_metrics(out)
        last_record = metrics[-1] if metrics else {"loss": float("nan")}
    final_loss = float(last_record["loss"])
    result = DistillResult(
        out=out,
        model_id=model_id,
        student_config=student_cfg.to_dict(),
        params=params,
        head_params=head_params,
        steps=config.steps,
        final_loss=final_loss,
        mapping=mapping,
    )
    if env.is_main:
        _write_outputs(out, model, config, result)
    if env.world_size > 1:
        import torch.distributed as dist

        dist.barrier()
    return result


def predict_and_target(
    model: nn.Module,
    teacher: nn.Module | None,
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


def _restore(
    resumed: tuple[Path, dict[str, Any]],
    env: DistEnv,
    config: DistillConfig,
    model: DistillModel,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: Any,
    window: _Window,
) -> tuple[int, int]:
    """Load a training checkpoint (from :func:`load_resumable_state`) into everything.

    Returns:
        ``(step, next global batch)``.

    Raises:
        ModelError: the checkpoint does not fit this run's model or optimiser (one line).
    """
    path, state = resumed
    step, next_batch = int(state["step"]), int(state["data"]["next_batch"])
    rngs = state["rng"]
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        window.load_state_dict(state["window"])
        if len(rngs) == env.world_size:
            set_rng_state(rngs[env.rank])
    except (RuntimeError, ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
        reason = (str(exc).strip().splitlines() or [""])[0][:160]
        raise ModelError(
            f"{path} does not fit this run ({type(exc).__name__}: {reason}); delete it to resume from the "
            f"checkpoint before it, or choose another --out"
        ) from None
    if len(rngs) != env.world_size:
        log.warning("resuming on %d processes a run saved on %d: RNG streams restart", env.world_size, len(rngs))
        _seed_everything(config.seed + 7919 * step + env.rank)
    return step, next_batch


def _check_store_fits(store: TeacherTargets, teacher: nn.Module) -> None:
    if store.dim != teacher.dim:
        raise StoreError(
            f"store {store.path} holds {store.dim}-dim states but the teacher is {teacher.dim}-dim; "
            f"extract the targets with the same teacher"
        )
    weights_hash = getattr(teacher, "weights_hash", None)
    if store.weights_hash and callable(weights_hash) and weights_hash() != store.weights_hash:
        raise StoreError(
            f"store {store.path} was extracted from {store.model_id or 'another model'} "
            f"(weights {store.weights_hash}), not from the teacher ({weights_hash()}); "
            f"extract the targets with the same --teacher"
        )


def _write_outputs(out: Path, model: DistillModel, config: DistillConfig, result: DistillResult) -> None:
    from deepwide.models import save_checkpoint

    student = model.student
    save_checkpoint(student, out, extra={
        "distill": config_to_dict(config),
        "mapping": result.mapping,
        "objective": config.objective,
        "final_loss": result.final_loss,
        "steps": result.steps,
    })
    save_heads(model, out / HEADS)
    atomic_write_json(out / SUMMARY, {"complete": True, "result": result.to_dict(), "deepwide_version": __version__})
    log.info("wrote %s (final loss %.4f)", out, result.final_loss)


def _save_training_state(
    out: Path,
    env: DistEnv,
    config: DistillConfig,
    step: int,
    next_batch: int,
    model: DistillModel,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: Any,
    window: _Window,
) -> Path:
    """Write ``checkpoints/step-XXXXXXXX.pt`` (rank 0) and point ``latest.json`` at it."""
    rngs = _gather_objects(rng_state(), env)
    folder = out / CHECKPOINT_DIR
    path = folder / f"step-{step:08d}.pt"
    if env.is_main:
        state = {
            "step": step,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),
            "rng": rngs,
            "data": {"next_batch": next_batch, "world_size": env.world_size},
            "window": window.state_dict(),
            "deepwide_version": __version__,
        }
        atomic_torch_save(state, path)
        atomic_write_text(folder / LATEST, json.dumps({"file": path.name, "step": step}) + "\n")
        _prune_checkpoints(folder, config.keep_checkpoints)
        log.debug("checkpoint %s", path)
    if env.world_size > 1:
        import torch.distributed as dist

        dist.barrier()
    return path


class _Window:
    """Running sums between two metrics lines (kept in checkpoints for exact resumption)."""

    def __init__(self, teacher_layers: Sequence[int]) -> None:
        self.layers = list(teacher_layers)
        self.reset()

    def reset(self) -> None:
        self.n = 0
        self.sums = [0.0] * (1 + len(self.layers))
        self.grad_norm = 0.0
        self.frames = 0.0

    def add(self, stats: Sequence[float], grad_norm: float, frames: float) -> None:
        self.n += 1
        self.sums = [a + b for a, b in zip(self.sums, stats, strict=True)]
        self.grad_norm += grad_norm
        self.frames += frames

    def flush(self, step: int, lr: float, elapsed: float) -> dict[str, Any]:
        n = max(self.n, 1)
        record: dict[str, Any] = {"step": step, "loss": self.sums[0] / n}
        for layer, s in zip(self.layers, self.sums[1:], strict=True):
            record[_mapping_key(layer)] = s / n
        record.update(
            lr=lr,
            grad_norm=self.grad_norm / n,
            frames_per_s=self.frames / max(elapsed, 1e-9),
            steps_per_s=self.n / max(elapsed, 1e-9),
        )
        self.reset()
        return record

    def state_dict(self) -> dict[str, Any]:
        return {"n": self.n, "sums": list(self.sums), "grad_norm": self.grad_norm, "frames": self.frames}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.n, self.sums = int(state["n"]), [float(x) for x in state["sums"]]
        self.grad_norm, self.frames = float(state["grad_norm"]), float(state["frames"])


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    if device.type != "cuda" or precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast("cuda", dtype=dtype)


def _append_jsonl(path: Path, record: dict[str, Any]) -> None:
    with path.open("a") as fh:
        fh.write(json.dumps(record, sort_keys=True) + "\n")
        fh.flush()


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop metrics lines past ``step`` (a killed run may have logged beyond its checkpoint)."""
    if not path.is_file():
        return
    keep = [line for line, record in _metrics_lines(path) if record["step"] <= step]
    atomic_write_text(path, "".join(line + "\n" for line in keep))


def _tensorboard(out: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        log.debug("TensorBoard is not installed; metrics go to %s only", out / METRICS)
        return None
    return SummaryWriter(log_dir=str(out / "tensorboard"))


class _NoBar:
    def update(self, n: int) -> None: ...
    def set_postfix(self, **kwargs: Any) -> None: ...
    def close(self) -> None: ...


def _progress(total: int, initial: int, enabled: bool, desc: str) -> Any:
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="step", dynamic_ncols=True)
