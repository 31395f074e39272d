"""The metrics of a distillation run: the running window, ``metrics.jsonl``, TensorBoard, the bar.

One line of ``metrics.jsonl`` per logged step (docs/results-schema.md): the window means of the
loss and of each target layer's loss (``loss_<layer>``), the learning rate, the gradient norm and
the speed (``frames_per_s``, ``steps_per_s``: the only fields that differ between two runs of
one config), and one line ``{"step", "heldout_loss"}`` per held-out evaluation (issue #19).
:func:`read_metrics` returns the training lines, :func:`read_heldout` the held-out ones. The
JSON-lines rules (append, torn last line, atomic rewrite) are :mod:`deepwide.training`'s.

The plateau rule (:func:`plateau_fall`, :func:`is_plateaued`): of ``n ≥ 3`` held-out
evaluations, the last ``m = max(3, n // 4 + 1)`` span the last quarter of them; the relative fall
is ``(L[n−m] − L[n−1]) / L[n−m]``, and the student counts as trained (plateaued) when that fall
is below the threshold (``DistillConfig.plateau_threshold``, 1 % by default; a rise counts as no
fall). Fewer than three evaluations give a NaN fall and never count as plateaued.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from deepwide.training import append_jsonl, read_jsonl, rewrite_jsonl

log = logging.getLogger(__name__)

METRICS = "metrics.jsonl"

#: The field of a held-out evaluation's line in ``metrics.jsonl``.
HELDOUT_LOSS = "heldout_loss"

#: Fewest held-out evaluations the plateau rule needs.
PLATEAU_MIN_EVALS = 3


def mapping_key(layer: int) -> str:
    """The metrics field of the loss against teacher layer ``layer``: ``loss_<layer>``."""
    return f"loss_{layer}"


class MetricsWindow:
    """Running sums between two metrics lines (kept in checkpoints for exact resumption).

    Args:
        teacher_layers: the target layers, in mapping order (one loss each).
    """

    def __init__(self, teacher_layers: Sequence[int]) -> None:
        self.layers = list(teacher_layers)
        self.reset()

    def reset(self) -> None:
        self.n = 0
        self.sums = [0.0] * (1 + len(self.layers))
        self.grad_norm = 0.0
        self.frames = 0.0

    def add(self, stats: Sequence[float], grad_norm: float, frames: float) -> None:
        """One step: ``stats`` = [loss, loss of each target layer], its gradient norm and frames."""
        self.n += 1
        self.sums = [a + b for a, b in zip(self.sums, stats, strict=True)]
        self.grad_norm += grad_norm
        self.frames += frames

    def flush(self, step: int, lr: float, elapsed: float) -> dict[str, Any]:
        """The metrics line of the window ending at ``step`` (``elapsed`` seconds long); resets it."""
        n = max(self.n, 1)
        record: dict[str, Any] = {"step": step, "loss": self.sums[0] / n}
        for layer, s in zip(self.layers, self.sums[1:], strict=True):
            record[mapping_key(layer)] = s / n
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


def _is_metrics_record(record: Any) -> bool:
    return isinstance(record, dict) and type(record.get("step")) is int


def append_metrics(out: Path, record: dict[str, Any]) -> None:
    """Append one metrics line to run folder ``out`` (keys sorted)."""
    append_jsonl(out / METRICS, record, sort_keys=True)


def _read_lines(out: str | Path) -> list[dict[str, Any]]:
    lines = read_jsonl(Path(out) / METRICS, is_record=_is_metrics_record, what="metrics record")
    return [record for _, record in lines]


def read_metrics(out: str | Path) -> list[dict[str, Any]]:
    """The training metrics lines of a run folder, in order (a torn last line is dropped with a
    warning; held-out lines are :func:`read_heldout`'s).

    Raises:
        ConfigError: a line other than the last is not a metrics record.
    """
    return [r for r in _read_lines(out) if HELDOUT_LOSS not in r]


def read_heldout(out: str | Path) -> list[dict[str, Any]]:
    """The held-out evaluations of a run folder, ``{"step", "heldout_loss"}`` each, in order.

    Raises:
        ConfigError: a line other than the last is not a metrics record.
    """
    return [r for r in _read_lines(out) if HELDOUT_LOSS in r]


def heldout_record(step: int, loss: float) -> dict[str, Any]:
    """The metrics line of the held-out evaluation after ``step`` steps."""
    return {"step": step, HELDOUT_LOSS: loss}


def plateau_fall(losses: Sequence[float]) -> float:
    """The relative fall of the held-out loss over the last quarter of its evaluations.

    Args:
        losses: (n,) held-out losses, in step order.

    Returns:
        ``(L[n−m] − L[n−1]) / L[n−m]`` with ``m = max(3, n // 4 + 1)`` (positive: still
        falling; negative: rising); NaN for fewer than three evaluations (or ``L[n−m] ≤ 0``).
    """
    n = len(losses)
    if n < PLATEAU_MIN_EVALS:
        return math.nan
    m = max(PLATEAU_MIN_EVALS, n // 4 + 1)
    first, last = float(losses[n - m]), float(losses[n - 1])
    return (first - last) / first if first > 0 else math.nan


def is_plateaued(fall: float, threshold: float) -> bool:
    """Whether a student counts as trained: its :func:`plateau_fall` is finite and below ``threshold``."""
    return math.isfinite(fall) and fall < threshold


def truncate_metrics(out: Path, step: int) -> None:
    """Drop metrics lines past ``step`` (a killed run may have logged beyond its checkpoint)."""
    rewrite_jsonl(out / METRICS, lambda record: record["step"] <= step, is_record=_is_metrics_record,
                  what="metrics record")


def tensorboard_writer(out: Path) -> Any:
    """A TensorBoard ``SummaryWriter`` into ``out/tensorboard``, or ``None`` if not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        log.debug("TensorBoard is not installed; metrics go to %s only", out / METRICS)
        return None
    return SummaryWriter(log_dir=str(out / "tensorboard"))


def write_scalars(writer: Any, record: dict[str, Any], step: int) -> None:
    """Every field of a metrics line but ``step`` as a ``distill/<field>`` scalar."""
    for k, v in record.items():
        if k != "step":
            writer.add_scalar(f"distill/{k}", v, step)


class _NoBar:
    def update(self, n: int) -> None: ...
    def set_postfix(self, **kwargs: Any) -> None: ...
    def close(self) -> None: ...


def progress_bar(total: int, initial: int, enabled: bool, desc: str) -> Any:
    """A tqdm bar over the steps (a silent stand-in when not ``enabled``)."""
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="step", dynamic_ncols=True)
