"""The student: its shape from a config and the teacher, its initialisation, and what trains.

* :func:`resolve_student` — the student's :class:`~deepwide.models.EncoderConfig` (a preset
  scaled to the teacher's width, or ``--depth/--width``), with the teacher's front-end;
* :func:`init_student` — the teacher's front-end (and optionally its first layers) copied in;
* :func:`freeze_unused` — parameters the loss never reaches frozen (so DDP need not look);
* :class:`DistillModel` — student + objective heads, what the optimiser trains and DDP wraps.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from torch import Tensor, nn

from deepwide.distill.config import DistillConfig
from deepwide.distill.objectives import Objective
from deepwide.errors import ConfigError, DeepwideError

log = logging.getLogger(__name__)

#: HuBERT Base width: student presets are shapes relative to it (see :func:`resolve_student`).
REFERENCE_WIDTH = 768


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
