"""Parameter-matched sweeps: for each depth, the width that meets a budget; train each student.

``deepwide distill sweep --teacher SPEC --budget 27M --depths 2,3,6,12 --objectives
predlayer,l2l …`` asks :func:`deepwide.models.solve_budget` for the width whose parameter count
(encoder only, heads excluded, as in the paper) is nearest the budget at each depth, then
distils one student per (depth, objective) into ``OUT/<depth>x<width>-<objective>/`` and keeps
a table of them in ``OUT/sweep.csv`` (rewritten atomically after every student).

The teacher and corpus are loaded once. Under ``torchrun`` every student is trained with all
processes. Rerunning with ``resume=True`` skips finished students and resumes a partial one.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deepwide.config import atomic_write_json, atomic_write_text
from deepwide.distill.config import DistillConfig, make_config
from deepwide.errors import ConfigError

log = logging.getLogger(__name__)

#: Columns of ``sweep.csv``.
SWEEP_COLUMNS = (
    "model", "depth", "width", "ffn", "heads", "objective", "params", "budget", "deviation",
    "steps", "final_loss", "heldout_loss", "plateau_fall", "plateaued", "out",
)


@dataclass(frozen=True)
class SweepEntry:
    """One student of a sweep.

    Attributes:
        name: folder name, ``<depth>x<width>-<objective>``.
        config: its distillation config.
        params: its parameter count (encoder only).
        deviation: ``(params − budget) / budget``.
    """

    name: str
    config: DistillConfig
    params: int
    deviation: float


def plan_sweep(
    options: Mapping[str, Any],
    teacher_config: Any,
    budget: int,
    depths: Sequence[int],
    objectives: Sequence[str],
    *,
    head_dim: int = 64,
    ffn_ratio: float = 4.0,
    tolerance: float = 0.1,
) -> list[SweepEntry]:
    """The students of a sweep, without training anything.

    Args:
        options: :class:`DistillConfig` fields shared by every student (teacher, corpus,
            steps, lr …); the student shape and objective are filled in here.
        teacher_config: the teacher's EncoderConfig (students copy its front-end).
        budget: parameter budget (encoder only).
        depths: student depths.
        objectives: objective names.
        head_dim: attention head size (widths are multiples of it).
        ffn_ratio: FFN width / model width.
        tolerance: largest accepted ``|deviation|``; a depth that cannot meet it is an error.

    Raises:
        ConfigError: a depth whose nearest width misses the budget by more than ``tolerance``,
            or invalid options.
    """
    from deepwide.models import count_params, solve_budget, student_config

    if not depths or not objectives:
        raise ConfigError("a sweep needs at least one depth and one objective")
    shared = {k: v for k, v in options.items() if k not in ("student", "depth", "width", "ffn", "heads", "objective")}
    rows = solve_budget(budget, list(depths), template=teacher_config, ffn_ratio=ffn_ratio, head_dim=head_dim)
    entries = []
    for row in rows:
        if abs(row.deviation) > tolerance:
            raise ConfigError(
                f"at depth {row.depth} the nearest width {row.width} gives {row.params / 1e6:.3f} M "
                f"params, {100 * row.deviation:+.1f} % off the {budget / 1e6:.3f} M budget (tolerance "
                f"{100 * tolerance:.0f} %); change --budget, --head-dim or --tolerance"
            )
        for objective in objectives:
            cfg = make_config(**shared, depth=row.depth, width=row.width, ffn=row.ffn, heads=row.heads, objective=objective)
            # the count the trainer will report: the student copies the teacher's front-end
            params = count_params(student_config(teacher_config, row.depth, row.width, ffn=row.ffn, heads=row.heads))
            entries.append(
                SweepEntry(
                    name=f"{row.depth}x{row.width}-{objective}",
                    config=cfg,
                    params=params,
                    deviation=(params - budget) / budget,
                )
            )
    return entries


def run_sweep(
    entries: Sequence[SweepEntry],
    out: str | Path,
    budget: int,
    *,
    resume: bool = False,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Train every planned student into ``out/<name>`` and write ``out/sweep.csv``.

    Args:
        entries: from :func:`plan_sweep` (all with the same teacher and corpus).
        out: sweep folder.
        budget: the budget the entries were planned for (recorded in the table).
        resume: skip finished students and resume partial ones.
        progress: progress bars.

    Returns:
        one row per student (the columns of :data:`SWEEP_COLUMNS`).
    """
    from deepwide.corpora import resolve_corpus
    from deepwide.distill.distributed import setup_distributed, teardown_distributed
    from deepwide.distill.outputs import read_result
    from deepwide.distill.trainer import train_student
    from deepwide.models import load_model

    if not entries:
        raise ConfigError("the sweep has no students")
    first = entries[0].config
    if any(e.config.teacher != first.teacher or e.config.corpus != first.corpus for e in entries):
        raise ValueError("every student of a sweep shares one teacher and one corpus")
    out = Path(out)
    env = setup_distributed(first.device)
    try:
        teacher = load_model(first.teacher, seed=first.seed)
        manifest = resolve_corpus(first.corpus)
        if env.is_main:
            atomic_write_json(out / "sweep.json", {
                "budget": budget,
                "students": [
                    {"name": e.name, "params": e.params, "deviation": e.deviation,
                     "config": dataclasses.asdict(e.config)}
                    for e in entries
                ],
            })
        rows: list[dict[str, Any]] = []
        for i, entry in enumerate(entries):
            folder = out / entry.name
            done = read_result(folder)
            if done is not None and resume:
                log.info("sweep %d/%d: %s already finished", i + 1, len(entries), entry.name)
                result = done
            else:
                log.info("sweep %d/%d: %s (%.3f M params, %+.1f %%)", i + 1, len(entries), entry.name,
                         entry.params / 1e6, 100 * entry.deviation)
                result = train_student(entry.config, folder, resume=resume, teacher=teacher,
                                       manifest=manifest, progress=progress)
            cfg = result.student_config
            rows.append({
                "model": result.model_id, "depth": cfg["depth"], "width": cfg["width"], "ffn": cfg["ffn"],
                "heads": cfg["heads"], "objective": entry.config.objective, "params": result.params,
                "budget": budget, "deviation": (result.params - budget) / budget, "steps": result.steps,
                "final_loss": result.final_loss, "heldout_loss": result.heldout_loss,
                "plateau_fall": result.plateau_fall, "plateaued": result.plateaued, "out": str(folder),
            })
            if env.is_main:
                write_sweep_table(out / "sweep.csv", rows)
        return rows
    finally:
        teardown_distributed(env)


def write_sweep_table(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """Write ``rows`` as CSV with :data:`SWEEP_COLUMNS`, atomically."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(SWEEP_COLUMNS), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: row[k] for k in SWEEP_COLUMNS})
    atomic_write_text(path, buf.getvalue())
