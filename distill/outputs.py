"""What a finished distillation run leaves: the student checkpoint, its heads, ``distill.json``.

``OUT/config.json`` + ``model.safetensors`` are the student (a deepwide checkpoint:
``--model OUT``), ``heads.safetensors`` the prediction heads with their mapping, and
``distill.json`` the summary, written last: its presence means the run is complete.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor

from deepwide import __version__
from deepwide.config import atomic_write_bytes, atomic_write_json, config_to_dict
from deepwide.distill.config import DistillConfig
from deepwide.distill.student import DistillModel
from deepwide.errors import ConfigError

log = logging.getLogger(__name__)

SUMMARY = "distill.json"
HEADS = "heads.safetensors"


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
        heldout_loss: the last held-out evaluation's loss (NaN: none held out, or a run
            finished before held-out losses existed).
        plateau_fall: relative fall of the held-out loss over the last quarter of the
            evaluations (:func:`~deepwide.distill.metrics.plateau_fall`; NaN with fewer than 3).
        plateaued: whether that fall is below ``DistillConfig.plateau_threshold``: the student
            counts as trained.
    """

    out: Path
    model_id: str
    student_config: dict[str, Any]
    params: int
    head_params: int
    steps: int
    final_loss: float
    mapping: dict[str, list[int]]
    heldout_loss: float = math.nan
    plateau_fall: float = math.nan
    plateaued: bool = False

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


def save_heads(model: DistillModel, path: Path) -> None:
    """Write the heads' weights (safetensors) with the objective and mapping in the metadata."""
    from safetensors.torch import save

    tensors = {k: v.detach().cpu().contiguous() for k, v in model.heads.state_dict().items()}
    meta = {"objective": json.dumps(model.objective.describe())}
    atomic_write_bytes(path, save(tensors, metadata=meta))


def load_heads(path: str | Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """``(state_dict, objective description)`` of a ``heads.safetensors`` file."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        meta = json.loads((fh.metadata() or {})["objective"])
        return {k: fh.get_tensor(k) for k in fh.keys()}, meta


def write_outputs(out: Path, model: DistillModel, config: DistillConfig, result: DistillResult) -> None:
    """The student checkpoint, its heads, then ``distill.json`` (last: the run is complete)."""
    from deepwide.models import save_checkpoint

    save_checkpoint(model.student, out, extra={
        "distill": config_to_dict(config),
        "mapping": result.mapping,
        "objective": config.objective,
        "final_loss": result.final_loss,
        "steps": result.steps,
    })
    save_heads(model, out / HEADS)
    atomic_write_json(out / SUMMARY, {"complete": True, "result": result.to_dict(), "deepwide_version": __version__})
    log.info("wrote %s (final loss %.4f, held-out %.4f, fall over the last quarter %.2f %%: %s)", out,
             result.final_loss, result.heldout_loss, 100 * result.plateau_fall,
             "plateaued" if result.plateaued else "not plateaued")
