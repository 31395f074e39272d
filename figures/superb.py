"""SUPERB units: the published SUPERB rows (package data) and this study's scores written alike.

The published rows live in ``figures/data/superb_published.toml`` (shipped as package data of
``deepwide.figures``): HuBERT Base, DistilHuBERT, 3-L One-PredLayer and 12-L Half-L2L from
Ashihara et al. (Interspeech 2022, arXiv 2207.06867, Table 2), plus FitHuBERT, DPHuBERT and
STaRHuBERT from their own papers, each row naming its source. They are the only numbers of the
figures and the report that do not come from a results folder; they are shown only in their own
block ("published, SUPERB protocol"), never ranked or mixed with the measured block ("measured
here, deepwide protocol"): deepwide's protocol (linear probes on cached features, synthetic or
smaller data) is not SUPERB's, so the two blocks are not comparable.

:func:`superb_scores` writes a probe result in SUPERB units: each SUPERB task the results have
(``pr`` → PER %, ``asr`` → WER %, ``ks``/``ic``/``sid``/``er`` → accuracy %, ``asv`` → EER %)
takes the model's weighted-sum score where it is finite (SUPERB's downstreams sit on the
weighted sum of layers), else its best single layer.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from deepwide.errors import ConfigError
from deepwide.figures.results import best_layer_table

#: Block labels of the report's table and of figure 7 (exactly these words).
PUBLISHED_LABEL = "published, SUPERB protocol"
MEASURED_LABEL = "measured here, deepwide protocol"
#: The one-line caveat printed with every SUPERB-units table.
CAVEAT = (
    "deepwide's protocol (linear probes on cached features, on synthetic or smaller data) is not "
    "SUPERB's (its downstream models trained on the benchmark corpora), so the numbers are not "
    "comparable across the two blocks."
)


@dataclass(frozen=True)
class SuperbTask:
    """One SUPERB task: its published column, the deepwide probe task, and its metric."""

    column: str
    task: str
    metric: str
    higher_is_better: bool

    @property
    def header(self) -> str:
        """Column header, e.g. ``"PR PER % ↓"`` (↓: lower is better)."""
        return f"{self.column} {self.metric} %" + ("" if self.higher_is_better else " ↓")


#: The SUPERB tasks deepwide probes, in the published table's order.
SUPERB_TASKS: tuple[SuperbTask, ...] = (
    SuperbTask("PR", "pr", "PER", False),
    SuperbTask("KS", "ks", "acc", True),
    SuperbTask("IC", "ic", "acc", True),
    SuperbTask("SID", "sid", "acc", True),
    SuperbTask("ER", "er", "acc", True),
    SuperbTask("ASR", "asr", "WER", False),
    SuperbTask("ASV", "asv", "EER", False),
)
#: Figure 3's context row: study task -> (published column, its metric label, higher is better).
#: Looser than :data:`SUPERB_TASKS` (frame ``phone`` accuracy stands beside published PR there).
PUBLISHED_TASKS: dict[str, tuple[str, str, bool]] = {
    "phone": ("PR", "PER %", False),
    "ks": ("KS", "accuracy %", True),
    "ic": ("IC", "accuracy %", True),
    "sid": ("SID", "accuracy %", True),
    "er": ("ER", "accuracy %", True),
    "asr": ("ASR", "WER %", False),
    "asv": ("ASV", "EER %", False),
}
#: Published metric columns of the data file (SD: diarisation DER, which deepwide does not probe).
PUBLISHED_METRICS = ("PR", "KS", "IC", "SID", "ER", "ASR", "ASV", "SD")
_COLUMNS = ("model", "short", "source", "params_m", "layers", "width", *PUBLISHED_METRICS)
_REQUIRED = ("model", "short", "source", "params_m", *PUBLISHED_METRICS)

DATA_FILE = "superb_published.toml"


@dataclass(frozen=True)
class PublishedSuperb:
    """The published SUPERB table and where it comes from.

    Attributes:
        rows: one row per model, in the source's order: ``model``, ``short`` (figure label),
            ``source``, ``params_m`` (M), ``layers``, ``width`` (NaN where not given) and the
            metrics PR, KS, IC, SID, ER, ASR, ASV, SD in %.
        citation: the paper and table the core rows are copied from.
        protocol: the benchmark protocol the numbers were measured under.
        units: what the numbers' units are.
    """

    rows: pd.DataFrame
    citation: str
    protocol: str
    units: str


def published_superb_path() -> Path:
    """The packaged data file of the published SUPERB rows."""
    return Path(str(resources.files("deepwide.figures"))) / "data" / DATA_FILE


def load_published_superb(path: str | Path | None = None) -> PublishedSuperb:
    """Read the published SUPERB rows (default: the packaged ``data/superb_published.toml``).

    Raises:
        ConfigError: the file cannot be read or a row lacks a required field.
    """
    p = Path(path) if path is not None else published_superb_path()
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read the published SUPERB table {p} ({exc})") from exc
    source = data.get("source", {})
    models = data.get("model", [])
    for i, row in enumerate(models):
        missing = [k for k in _REQUIRED if k not in row]
        if missing:
            raise ConfigError(f"{p}: model entry {i + 1} lacks {', '.join(missing)}")
    missing = [k for k in ("citation", "protocol", "units") if k not in source]
    if not models or missing:
        raise ConfigError(f"{p} needs [source] citation, protocol, units and [[model]] rows")
    rows = pd.DataFrame([{c: r.get(c, math.nan) for c in _COLUMNS} for r in models])
    for c in ("params_m", "layers", "width", *PUBLISHED_METRICS):
        rows[c] = rows[c].astype(float)
    return PublishedSuperb(rows, source["citation"], source["protocol"], source["units"])


@cache
def published_superb() -> PublishedSuperb:
    """The packaged published SUPERB table, read once (treat it as read-only)."""
    return load_published_superb()


def superb_scores(probe: xr.Dataset) -> pd.DataFrame:
    """Every model's score on each SUPERB task the probe results have, in SUPERB units.

    A (model, task) takes ``ws_score`` where it is finite, else the best layer's ``score``
    (chosen on test; see :func:`~deepwide.figures.results.best_layer_table`); a pair with
    neither is omitted.

    Returns:
        DataFrame with columns model, column (SUPERB's name: ``"PR"`` …), task, score,
        ci_low, ci_high (in %), source (``"weighted sum"`` or ``"best layer"``) and layer
        (the best layer's index; -1 for the weighted sum), in probe model order then SUPERB
        task order.
    """
    tasks = [st for st in SUPERB_TASKS if st.task in set(probe["task"].values)]
    best = best_layer_table(probe).set_index(["model", "task"])
    has_ws = all(v in probe for v in ("ws_score", "ws_ci_low", "ws_ci_high"))
    rows = []
    for m in probe["model"].values:
        for st in tasks:
            ws = float(probe["ws_score"].sel(model=m, task=st.task)) if has_ws else math.nan
            if np.isfinite(ws):
                lo, hi = (
                    float(probe[v].sel(model=m, task=st.task)) for v in ("ws_ci_low", "ws_ci_high")
                )
                rows.append((m, st.column, st.task, ws, lo, hi, "weighted sum", -1))
            elif (m, st.task) in best.index:
                r = best.loc[(m, st.task)]
                rows.append(
                    (
                        m,
                        st.column,
                        st.task,
                        float(r["score"]),
                        float(r["ci_low"]),
                        float(r["ci_high"]),
                        "best layer",
                        int(r["layer"]),
                    )
                )
    df = pd.DataFrame(
        rows, columns=["model", "column", "task", "score", "ci_low", "ci_high", "source", "layer"]
    )
    for c in ("score", "ci_low", "ci_high"):
        df[c] = 100 * df[c].astype(float)
    return df


def measured_superb_tasks(probe: xr.Dataset) -> list[SuperbTask]:
    """The SUPERB tasks the probe results measure (at least one finite score), in SUPERB order."""
    measured = set(superb_scores(probe)["task"])
    return [st for st in SUPERB_TASKS if st.task in measured]
