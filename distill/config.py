"""The distillation config: one frozen dataclass that says everything a run depends on.

A :class:`DistillConfig` is validated on construction, saved next to every student
(``config.json``) and hashed (:func:`deepwide.config.config_hash`) so that ``--resume`` can
refuse a run directory made with other settings.

Defaults follow the public DistilHuBERT recipe (Chang et al., ICASSP 2022; docs/distill.md): AdamW, lr 2e-4,
betas (0.9, 0.98), eps 1e-6, 7 % linear warm-up then linear decay to zero, gradient clipping
at 5, random crops of at most 250,000 samples (15.625 s). The reference batch is 24 crops
(about 375 s of audio); the default ``batch_seconds`` is smaller so that a laptop can run it —
pass ``--batch-seconds 375`` on a GPU to match the recipe.

Held-out loss and the plateau rule (issue #19): a fixed, seed-independent subset of the training
utterances (:func:`deepwide.distill.data.split_heldout`: the ``heldout_fraction`` of them with
the smallest hash of their id, at least one and at most ``heldout_max_utts``) is never trained
on; every ``eval_every`` steps the student, in eval mode and without gradients, is scored with
the training objective on fixed crops of them. The run counts as **plateaued** (trained) when
the relative fall of that held-out loss over the last quarter of its evaluations — from the
evaluation ``max(3, n // 4 + 1)`` from the end to the last of the ``n`` — is below
``plateau_threshold`` (:func:`deepwide.distill.metrics.plateau_fall`); with fewer than three
evaluations it cannot count as plateaued.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from deepwide.errors import ConfigError
from deepwide.framing import FRAME_HOP, SAMPLE_RATE

#: Mixed-precision modes; bf16/fp16 only take effect on CUDA (CPU always runs fp32).
PRECISIONS = ("fp32", "bf16", "fp16")

@dataclass(frozen=True)
class DistillConfig:
    """Everything one distillation run depends on.

    Attributes:
        teacher: teacher model spec (anything :func:`deepwide.models.load_model` takes).
        corpus: corpus spec (:func:`deepwide.corpora.resolve_corpus`).
        steps: optimiser steps in total.
        objective: a name in :data:`deepwide.distill.objectives.OBJECTIVES`
            (``predlayer`` or ``l2l``).
        student: a student preset name (``distilhubert``, ``3l-one`` …), or ``None`` when
            ``depth`` and ``width`` give the architecture.
        depth: student transformer layers (with ``width``; exclusive with ``student``).
        width: student feature width.
        ffn: student feed-forward width (``None``: the models package's default ratio).
        heads: student attention heads (``None``: the models package's head rule).
        targets: teacher layers to regress (1-based, ascending); ``None`` picks the objective's
            default (predlayer: three layers spread evenly, 4, 8, 12 for a 12-layer teacher;
            l2l: the student's layers spread evenly over the teacher's).
        dropout: student dropout (residual, attention and FFN); ``None`` keeps the teacher's
            config values (presets and bundled teachers have 0).
        cos_weight: λ of ``L1 + λ·(−log σ(cos))``.
        splits: corpus splits to train on.
        batch_seconds: audio seconds per batch (per process under DDP).
        max_crop_seconds: longest random crop.
        min_utt_seconds: shorter utterances are left out of training.
        lr: peak learning rate.
        betas, eps, weight_decay: AdamW settings.
        warmup: warm-up length as a fraction of ``steps`` (linear up, then linear decay to 0).
        grad_clip: max global gradient norm (``0`` disables clipping).
        precision: ``fp32``, ``bf16`` or ``fp16`` (autocast on CUDA; CPU runs fp32).
        seed: seeds student initialisation, dropout, batching and crops.
        init_from_teacher: also copy the teacher's first ``depth`` transformer layers (needs the
            student's width, FFN and heads to equal the teacher's).
        teacher_targets: a feature store of the teacher extracted with ``--frames all``; its
            stored hidden states replace running the teacher each step.
        checkpoint_every: steps between training checkpoints (the last step always saves one).
        keep_checkpoints: how many training checkpoints to keep (oldest are deleted).
        log_every: steps between metrics lines.
        eval_every: steps between held-out evaluations (the last step always has one);
            ``0``: ``max(1, steps // 10)``, about ten evaluations per run.
        heldout_fraction: fraction of the (long enough) training utterances held out, chosen
            by a hash of their ids, independent of the seed; ``0`` holds none out and never
            evaluates.
        heldout_max_utts: at most this many held-out utterances.
        plateau_threshold: the run counts as plateaued when the held-out loss fell by less
            than this fraction over the last quarter of its evaluations.
        num_workers: data-loading worker processes (``0``: load in the training process).
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``.
    """

    teacher: str
    corpus: str
    steps: int
    objective: str = "predlayer"
    student: str | None = None
    depth: int | None = None
    width: int | None = None
    ffn: int | None = None
    heads: int | None = None
    targets: tuple[int, ...] | None = None
    dropout: float | None = None
    cos_weight: float = 1.0
    splits: tuple[str, ...] = ("train",)
    batch_seconds: float = 32.0
    max_crop_seconds: float = 15.625
    min_utt_seconds: float = 0.25
    lr: float = 2e-4
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    weight_decay: float = 0.0
    warmup: float = 0.07
    grad_clip: float = 5.0
    precision: str = "fp32"
    seed: int = 0
    init_from_teacher: bool = False
    teacher_targets: str | None = None
    checkpoint_every: int = 1000
    keep_checkpoints: int = 2
    log_every: int = 10
    eval_every: int = 0
    heldout_fraction: float = 0.05
    heldout_max_utts: int = 64
    plateau_threshold: float = 0.01
    num_workers: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        from deepwide.distill.objectives import OBJECTIVES

        if not self.teacher:
            raise ValueError("teacher is empty; give --teacher SPEC (e.g. tiny-teacher)")
        if not self.corpus:
            raise ValueError("corpus is empty; give --corpus SPEC (e.g. synth)")
        if self.objective not in OBJECTIVES:
            raise ValueError(
                f"unknown objective {self.objective!r}; valid objectives: {', '.join(OBJECTIVES.names())}"
            )
        if self.student is not None and (self.depth is not None or self.width is not None):
            raise ValueError("give either a student preset or --depth/--width, not both")
        if self.student is None and (self.depth is None or self.width is None):
            raise ValueError("give a student: --student PRESET, or --depth D --width W")
        for name in ("depth", "width", "ffn", "heads"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.student is not None and (self.ffn is not None or self.heads is not None):
            raise ValueError("--ffn/--heads only apply with --depth/--width, not with a preset")
        if self.targets is not None:
            t = tuple(self.targets)
            if not t or any(not isinstance(x, int) or x < 1 for x in t):
                raise ValueError(f"targets must be teacher layers ≥ 1, got {t!r}")
            if list(t) != sorted(set(t)):
                raise ValueError(f"targets must be distinct and ascending, got {t!r}")
        if not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"steps must be a positive integer, got {self.steps!r}")
        from deepwide.corpora.manifest import SPLITS

        bad = [x for x in self.splits if x not in SPLITS]
        if not self.splits or bad:
            raise ValueError(f"splits must be a non-empty subset of {', '.join(SPLITS)}, got {list(self.splits)}")
        positive = ("batch_seconds", "max_crop_seconds", "min_utt_seconds", "lr", "eps")
        for name in positive:
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        if self.min_utt_seconds * SAMPLE_RATE < 2 * FRAME_HOP:
            raise ValueError(f"min_utt_seconds must be ≥ {2 * FRAME_HOP / SAMPLE_RATE} s (two frames)")
        if self.max_crop_seconds < self.min_utt_seconds:
            raise ValueError("max_crop_seconds must be ≥ min_utt_seconds")
        if self.dropout is not None and not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if self.cos_weight < 0 or self.weight_decay < 0 or self.grad_clip < 0:
            raise ValueError("cos_weight, weight_decay and grad_clip must be ≥ 0")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas!r}")
        if not 0 <= self.warmup < 1:
            raise ValueError(f"warmup is a fraction of steps in [0, 1), got {self.warmup!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        for name in ("checkpoint_every", "keep_checkpoints", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be ≥ 1, got {getattr(self, name)!r}")
        if not isinstance(self.eval_every, int) or self.eval_every < 0:
            raise ValueError(f"eval_every must be ≥ 0 (0: steps // 10), got {self.eval_every!r}")
        if not 0 <= self.heldout_fraction <= 0.5:
            raise ValueError(f"heldout_fraction must be in [0, 0.5], got {self.heldout_fraction!r}")
        if not isinstance(self.heldout_max_utts, int) or self.heldout_max_utts < 1:
            raise ValueError(f"heldout_max_utts must be a positive integer, got {self.heldout_max_utts!r}")
        if not 0 < self.plateau_threshold < 1:
            raise ValueError(f"plateau_threshold must be in (0, 1), got {self.plateau_threshold!r}")
        if self.num_workers < 0:
            raise ValueError(f"num_workers must be ≥ 0, got {self.num_workers!r}")
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device):
            raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")

    @property
    def warmup_steps(self) -> int:
        """Warm-up length in steps (``round(warmup · steps)``)."""
        return int(round(self.warmup * self.steps))

    @property
    def eval_steps(self) -> int:
        """Steps between held-out evaluations (``eval_every``, or ``max(1, steps // 10)``)."""
        return self.eval_every or max(1, self.steps // 10)

    def student_name(self) -> str:
        """A short name for the student: ``<preset>-<objective>`` or ``<D>x<W>-<objective>``."""
        arch = self.student if self.student is not None else f"{self.depth}x{self.width}"
        return f"{arch}-{self.objective}"


def make_config(**kwargs: object) -> DistillConfig:
    """Build a :class:`DistillConfig`, turning validation errors into one-line ConfigErrors."""
    try:
        return DistillConfig(**kwargs)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"distill config: {exc}") from exc
