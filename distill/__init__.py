"""Distillation: students of any depth × width from a HuBERT-family teacher.

Names are re-exported lazily, so importing :mod:`deepwide.distill` (the CLI does) does not
import torch::

    from deepwide.distill import DistillConfig, train_student
    config = DistillConfig(teacher="tiny-teacher", corpus="synth", steps=2000,
                           student="distilhubert", objective="predlayer")
    result = train_student(config, "runs/distilhubert")   # result.out loads with --model
"""

from __future__ import annotations

from deepwide.lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    # no torch
    "DistillConfig": "deepwide.distill.config",
    "make_config": "deepwide.distill.config",
    "OBJECTIVES": "deepwide.distill.objectives",
    "LayerMapping": "deepwide.distill.objectives",
    "Objective": "deepwide.distill.objectives",
    "build_objective": "deepwide.distill.objectives",
    "distill_loss": "deepwide.distill.objectives",
    "spread_layers": "deepwide.distill.objectives",
    "plan_sweep": "deepwide.distill.sweep",
    "run_sweep": "deepwide.distill.sweep",
    "SweepEntry": "deepwide.distill.sweep",
    # data (numpy; torch inside functions)
    "CropBatches": "deepwide.distill.data",
    "CropSpec": "deepwide.distill.data",
    "TeacherTargets": "deepwide.distill.data",
    "split_heldout": "deepwide.distill.data",
    # torch
    "DistillResult": "deepwide.distill.outputs",
    "DivergenceError": "deepwide.distill.trainer",
    "train_student": "deepwide.distill.trainer",
    "resolve_student": "deepwide.distill.student",
    "read_result": "deepwide.distill.outputs",
    "read_metrics": "deepwide.distill.metrics",
    "read_heldout": "deepwide.distill.metrics",
    "plateau_fall": "deepwide.distill.metrics",
    "is_plateaued": "deepwide.distill.metrics",
    "load_heads": "deepwide.distill.outputs",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
