"""How the report writes numbers: percentage points, scores with intervals, parameter counts,
metric names and table cells."""

from __future__ import annotations

import numpy as np
import pandas as pd


def pts(x: float) -> str:
    """A fraction as percentage points with one decimal (0.1234 → "12.3")."""
    return "n/a" if not np.isfinite(x) else f"{100 * x:.1f}"


def score_ci(s: float, lo: float, hi: float) -> str:
    """``"87.1 [85.0, 89.0]"`` in percent."""
    return f"{pts(s)} [{pts(lo)}, {pts(hi)}]"


def fmt_params(p: float) -> str:
    """Parameter count as "23.49 M" or "412.3 k"."""
    if not np.isfinite(p):
        return "n/a"
    return f"{p / 1e6:.2f} M" if p >= 1e6 else f"{p / 1e3:.1f} k"


def metric_name(info: pd.DataFrame, task: str) -> str:
    """The name of ``task``'s metric as the report writes it (EER says lower is better)."""
    metric = str(info.loc[task, "metric"])
    if metric.lower() == "eer":
        return "EER, lower is better"
    return metric


def format_cell(v: object) -> str:
    """A table cell: ``—`` for a missing value, whole floats without their ``.0``."""
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "—"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)
