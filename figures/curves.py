"""Distillation curves (issue #19): ``distill_curves.csv`` and whether each student is trained.

``distill_curves.csv`` (docs/results-schema.md) holds each student's training loss per logged
step and its held-out loss per evaluation; ``distill.csv`` holds the verdict of the plateau
rule per student (``heldout_loss``, ``plateau_fall``, ``plateaued``). The rule, stated where
the distillation computes it (:mod:`deepwide.distill.metrics`) and repeated in the report by
:data:`PLATEAU_RULE`: of ``n ≥ 3`` held-out evaluations, the relative fall from the evaluation
``max(3, n // 4 + 1)`` from the end to the last one must be below the run's
``plateau_threshold`` (1 % by default). Both files are optional: older results have neither
the curves nor the columns, and the figure and section that need them are left out.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from deepwide.figures.results import read_model_csv

DISTILL_CURVES = "distill_curves.csv"
CURVE_COLUMNS = ("model", "step", "train_loss", "heldout_loss")
PLATEAU_COLUMNS = ("heldout_loss", "plateau_fall", "plateaued")

#: The plateau rule as the report states it.
PLATEAU_RULE = (
    "A student counts as trained when its held-out distillation loss has stopped falling: of its "
    "n ≥ 3 held-out evaluations (the training objective on fixed crops of a few training-split "
    "utterances it never trained on, chosen by a hash of their ids, the same for every seed), "
    "the relative fall from the evaluation max(3, n // 4 + 1) from the end to the last one — "
    "the last quarter of the evaluations — is below the run's plateau threshold (1 % by "
    "default). A rise counts as no fall; fewer than three evaluations never count as trained."
)


def read_distill_curves(root: str | Path) -> pd.DataFrame | None:
    """``distill_curves.csv`` of a results folder, or ``None`` when it has none (older results).

    Returns:
        one row per (model, step): ``train_loss`` and ``heldout_loss`` (NaN where that step
        has only the other), sorted by model then step.

    Raises:
        StoreError: the file cannot be read or lacks a column.
    """
    path = Path(root) / DISTILL_CURVES
    if not path.is_file():
        return None
    df = read_model_csv(path, CURVE_COLUMNS)
    return df.sort_values(["model", "step"], kind="stable").reset_index(drop=True)


def plateau_table(distill: pd.DataFrame | None) -> pd.DataFrame | None:
    """Per student: ``steps``, ``final_loss``, ``heldout_loss``, ``plateau_fall``, ``plateaued``
    from ``distill.csv``, or ``None`` when it lacks the held-out columns (older results)."""
    if distill is None or any(c not in distill.columns for c in PLATEAU_COLUMNS):
        return None
    cols = [c for c in ("model", "steps", "final_loss", *PLATEAU_COLUMNS) if c in distill.columns]
    table = distill[cols].copy()
    table["plateaued"] = table["plateaued"].map(_as_bool)
    return table.reset_index(drop=True)


def _as_bool(v: object) -> bool:
    return v is True or str(v).strip().lower() == "true"
