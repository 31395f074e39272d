"""Distillation objectives: which student layers regress which teacher layers, and the loss.

Two objectives are registered in :data:`OBJECTIVES` (Ashihara et al. 2022):

- ``predlayer`` (DistilHuBERT): one linear prediction head per target on the *last* student
  layer regresses each chosen teacher layer (default: three layers spread evenly, 4, 8, 12
  for a 12-layer teacher).
- ``l2l`` (layer-to-layer): chosen student layers, each through a linear projection when the
  widths differ (identity otherwise), regress teacher layers. The default mapping spreads
  ``k = min(student depth, teacher depth)`` pairs evenly over both: 12 → 12 maps layer i to
  layer i; a 3-layer student maps its layers 1, 2, 3 to teacher layers 4, 8, 12.

The loss per target is ``L1 + λ·(−log σ(cos))`` (λ = ``cos_weight``, 1 by default), averaged
over *valid frames only*; the total is the mean over targets. (The reference implementation
also averages padded frames; we do not.)

This module imports torch lazily so that the CLI can list objective names without it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from deepwide.errors import ConfigError
from deepwide.registry import Registry

if TYPE_CHECKING:
    import torch


def spread_layers(k: int, n: int) -> tuple[int, ...]:
    """``k`` layers of ``1..n`` spread evenly, ending at ``n``: ``round(n·j/k)`` for j = 1..k.

    Example: ``spread_layers(3, 12) == (4, 8, 12)``; ``spread_layers(12, 12) == (1, …, 12)``.
    Rounding is half-up, so the result is the same on every platform; for ``k ≤ n`` the
    layers are distinct.
    """
    if not 1 <= k <= n:
        raise ValueError(f"cannot spread {k} layers over {n}")
    return tuple((2 * n * j + k) // (2 * k) for j in range(1, k + 1))


@dataclass(frozen=True)
class LayerMapping:
    """Pairs of (student layer, teacher layer), 1-based (0 is the front-end output).

    Attributes:
        student_layers: student layer feeding each target (predlayer: the last, repeated).
        teacher_layers: teacher layer each target regresses, ascending.
    """

    student_layers: tuple[int, ...]
    teacher_layers: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.student_layers) != len(self.teacher_layers) or not self.teacher_layers:
            raise ValueError("a layer mapping needs as many student as teacher layers (≥ 1)")

    def __len__(self) -> int:
        return len(self.teacher_layers)

    def to_dict(self) -> dict[str, list[int]]:
        return {"student_layers": list(self.student_layers), "teacher_layers": list(self.teacher_layers)}


class Objective:
    """A distillation objective: a layer mapping plus the heads that realise it.

    Subclasses set :attr:`name` and implement :meth:`default_mapping`, :meth:`mapping_for`
    and :meth:`predict`.

    Args:
        mapping: which student layers regress which teacher layers.
        student_dim: student width ``D_s``.
        teacher_dim: teacher width ``D_t``.
    """

    name: ClassVar[str] = ""

    def __init__(self, mapping: LayerMapping, student_dim: int, teacher_dim: int) -> None:
        self.mapping = mapping
        self.student_dim = student_dim
        self.teacher_dim = teacher_dim

    # -- mapping -------------------------------------------------------------------------------
    @classmethod
    def default_targets(cls, student_depth: int, teacher_depth: int) -> tuple[int, ...]:
        """Teacher layers regressed when ``--targets`` is not given."""
        raise NotImplementedError

    @classmethod
    def resolve_targets(
        cls, student_depth: int, teacher_depth: int, targets: Sequence[int] | None
    ) -> tuple[int, ...]:
        """``targets`` checked against the teacher's layers, or :meth:`default_targets` if ``None``.

        Raises:
            ConfigError: a target outside ``1..teacher_depth``, or targets not distinct and
                ascending.
        """
        if targets is None:
            return cls.default_targets(student_depth, teacher_depth)
        return _check_targets(targets, teacher_depth)

    @classmethod
    def mapping_for(
        cls, student_depth: int, teacher_depth: int, targets: Sequence[int] | None = None
    ) -> LayerMapping:
        """The mapping for a student of ``student_depth`` and a teacher of ``teacher_depth``.

        Raises:
            ConfigError: a target outside ``1..teacher_depth`` or too many targets.
        """
        raise NotImplementedError

    # -- heads ---------------------------------------------------------------------------------
    def build_heads(self) -> torch.nn.ModuleList:
        """One module per target: ``nn.Linear(D_s, D_t)``, or ``nn.Identity`` (l2l, equal widths)."""
        raise NotImplementedError

    def predict(self, heads: torch.nn.Module, states: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Predictions of every target from the student's hidden states.

        Args:
            heads: the module list from :meth:`build_heads` (possibly wrapped).
            states: ``L_s + 1`` student hidden states (B, T, D_s).

        Returns:
            one (B, T, D_t) prediction per target, in :attr:`mapping` order.
        """
        raise NotImplementedError

    def describe(self) -> dict[str, object]:
        """JSON-able description saved next to the heads."""
        return {
            "objective": self.name,
            "student_dim": self.student_dim,
            "teacher_dim": self.teacher_dim,
            **self.mapping.to_dict(),
        }


def _check_targets(targets: Sequence[int], teacher_depth: int) -> tuple[int, ...]:
    t = tuple(int(x) for x in targets)
    bad = [x for x in t if not 1 <= x <= teacher_depth]
    if bad:
        raise ConfigError(
            f"target layer(s) {bad} outside the teacher's layers 1..{teacher_depth}; fix --targets"
        )
    if list(t) != sorted(set(t)):
        raise ConfigError(f"targets must be distinct and ascending, got {list(t)}")
    return t


#: objective classes by name.
OBJECTIVES: Registry[type[Objective]] = Registry("objective")


@OBJECTIVES.register("predlayer")
class PredLayer(Objective):
    """DistilHuBERT: prediction heads on the last student layer regress several teacher layers."""

    name = "predlayer"

    @classmethod
    def default_targets(cls, student_depth: int, teacher_depth: int) -> tuple[int, ...]:
        return spread_layers(min(3, teacher_depth), teacher_depth)

    @classmethod
    def mapping_for(
        cls, student_depth: int, teacher_depth: int, targets: Sequence[int] | None = None
    ) -> LayerMapping:
        t = cls.resolve_targets(student_depth, teacher_depth, targets)
        return LayerMapping(student_layers=(student_depth,) * len(t), teacher_layers=t)

    def build_heads(self) -> torch.nn.ModuleList:
        import torch.nn as nn

        return nn.ModuleList(nn.Linear(self.student_dim, self.teacher_dim) for _ in self.mapping.teacher_layers)

    def predict(self, heads: torch.nn.Module, states: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        last = states[self.mapping.student_layers[0]]
        return [head(last) for head in heads]  # type: ignore[union-attr]


@OBJECTIVES.register("l2l")
class LayerToLayer(Objective):
    """Layer-to-layer: chosen student layers (projected when widths differ) regress teacher layers."""

    name = "l2l"

    @classmethod
    def default_targets(cls, student_depth: int, teacher_depth: int) -> tuple[int, ...]:
        return spread_layers(min(student_depth, teacher_depth), teacher_depth)

    @classmethod
    def mapping_for(
        cls, student_depth: int, teacher_depth: int, targets: Sequence[int] | None = None
    ) -> LayerMapping:
        t = cls.resolve_targets(student_depth, teacher_depth, targets)
        if len(t) > student_depth:
            raise ConfigError(
                f"l2l maps one student layer per target, but {len(t)} targets exceed the "
                f"student's {student_depth} layers; give at most {student_depth} --targets"
            )
        return LayerMapping(student_layers=spread_layers(len(t), student_depth), teacher_layers=t)

    def build_heads(self) -> torch.nn.ModuleList:
        import torch.nn as nn

        def one() -> nn.Module:
            if self.student_dim == self.teacher_dim:
                return nn.Identity()
            return nn.Linear(self.student_dim, self.teacher_dim)

        return nn.ModuleList(one() for _ in self.mapping.teacher_layers)

    def predict(self, heads: torch.nn.Module, states: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        return [head(states[s]) for head, s in zip(heads, self.mapping.student_layers, strict=True)]  # type: ignore[call-overload]


def build_objective(
    name: str,
    student_depth: int,
    student_dim: int,
    teacher_depth: int,
    teacher_dim: int,
    targets: Sequence[int] | None = None,
) -> Objective:
    """Look up objective ``name`` and build it with its (default or given) layer mapping."""
    cls = OBJECTIVES.get(name)
    mapping = cls.mapping_for(student_depth, teacher_depth, targets)
    return cls(mapping, student_dim, teacher_dim)


def frame_mask(frame_lengths: torch.Tensor, num_frames: int) -> torch.Tensor:
    """(B, T) bool mask, True on the first ``frame_lengths[b]`` frames of row ``b``."""
    import torch

    return torch.arange(num_frames, device=frame_lengths.device)[None, :] < frame_lengths[:, None]


def distill_loss(
    preds: Sequence[torch.Tensor],
    targets: Sequence[torch.Tensor],
    frame_lengths: torch.Tensor,
    cos_weight: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``L1 + λ·(−log σ(cos))`` per target over valid frames, averaged over targets.

    Computed in float32 whatever the inputs' dtype. Padded frames (``t ≥ frame_lengths[b]``)
    contribute nothing, not even NaN: they are selected out before any arithmetic.

    Args:
        preds: N predictions (B, T, D).
        targets: N teacher states (B, T, D), same shapes as ``preds``.
        frame_lengths: (B,) valid frames per row.
        cos_weight: λ.

    Returns:
        ``(total, per_target)``: the scalar loss and the (N,) loss of each target.
    """
    import torch
    import torch.nn.functional as F

    if len(preds) != len(targets) or not preds:
        raise ValueError(f"got {len(preds)} predictions for {len(targets)} targets")
    mask = frame_mask(frame_lengths, preds[0].shape[1])
    if not bool(mask.any()):
        raise ValueError("the batch holds no valid frames")
    losses = []
    for p, t in zip(preds, targets, strict=True):
        if p.shape != t.shape:
            raise ValueError(f"prediction shape {tuple(p.shape)} != target shape {tuple(t.shape)}")
        pv = p[mask].float()  # (F, D), valid frames only
        tv = t[mask].float()
        l1 = (pv - tv).abs().mean()
        cos = F.cosine_similarity(pv, tv, dim=-1)
        sim = -F.logsigmoid(cos).mean()
        losses.append(l1 + cos_weight * sim)
    per_target = torch.stack(losses)
    return per_target.mean(), per_target
