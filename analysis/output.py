"""Result files and printed tables: :func:`write_result` (NetCDF + CSV + config, atomic) and
the compact ``format_*`` tables the ``deepwide analyze`` commands print.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from deepwide.config import atomic_write_netcdf, atomic_write_text, config_to_dict, dump_toml

if TYPE_CHECKING:
    import xarray as xr

log = logging.getLogger(__name__)


def sanitize_id(model_id: str) -> str:
    """Model id made safe for file names (``[^A-Za-z0-9_.-]`` → ``-``)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "-", model_id)


def similarity_stem(ds: xr.Dataset) -> str:
    """File stem ``similarity_<measure>_<model_a>__<model_b>`` of a similarity result."""
    return f"similarity_{ds.attrs['measure']}_{sanitize_id(ds.attrs['model_a'])}__{sanitize_id(ds.attrs['model_b'])}"


def write_result(ds: xr.Dataset, out_dir: str | Path, stem: str, config: Any) -> list[Path]:
    """Write ``<stem>.nc``, ``<stem>.csv`` and ``<stem>.config.toml`` atomically.

    Args:
        ds: the result.
        out_dir: output folder (created).
        stem: file stem.
        config: the frozen config that produced it (also stored as the ``config`` attr).

    Returns:
        The written paths.
    """
    from deepwide import __version__

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ds = ds.copy()
    ds.attrs.update(
        config=json.dumps(config_to_dict(config), sort_keys=True),
        deepwide_version=__version__,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    nc = out / f"{stem}.nc"
    atomic_write_netcdf(nc, ds)
    csv = out / f"{stem}.csv"
    atomic_write_text(csv, ds.to_dataframe().to_csv())
    cfg = out / f"{stem}.config.toml"
    dump_toml(config, cfg)
    log.info("wrote %s, %s", nc, csv)
    return [nc, csv, cfg]


def _grid_lines(
    values: np.ndarray, rows: Sequence[Any], cols: Sequence[Any], corner: str
) -> list[str]:
    width = max(6, len(corner))
    lines = [f"{corner:>{width}} " + " ".join(f"{c!s:>6}" for c in cols)]
    for r, row in zip(rows, values, strict=True):
        lines.append(
            f"{r!s:>{width}} "
            + " ".join("   nan" if not np.isfinite(v) else f"{v:6.3f}" for v in row)
        )
    return lines


def format_similarity(ds: xr.Dataset) -> str:
    """Compact text table of a similarity grid (rows: layers of A, columns: layers of B)."""
    a = ds.attrs
    lines = [
        f"{a['measure']} similarity: {a['model_a']} (rows) vs {a['model_b']} (columns), "
        f"{a['n_samples']} frames"
    ]
    lines += _grid_lines(
        ds["similarity"].values, ds["layer_a"].values, ds["layer_b"].values, "a\\b"
    )
    if "null_similarity" in ds:
        lines.append(f"null: {a['model_a']} (rows) vs {a['null_model']} (columns)")
        lines += _grid_lines(
            ds["null_similarity"].values, ds["layer_a"].values, ds["layer_b"].values, "a\\null"
        )
    return "\n".join(lines)


def format_labels(ds: xr.Dataset) -> str:
    """Compact text table of label-CCA per layer (one row per model × label)."""
    rows, values = [], []
    for m in ds["model"].values:
        for lab in ds["label"].values:
            rows.append(f"{m} {lab}")
            values.append(ds["label_cca"].sel(model=m, label=lab).values)
    width = max(len(r) for r in rows)
    rows = [r.ljust(width) for r in rows]
    return "label-CCA (held-out mean canonical correlation) by layer\n" + "\n".join(
        _grid_lines(np.array(values), rows, ds["layer"].values, "layer".ljust(width))
    )


def format_spectrum(ds: xr.Dataset) -> str:
    """Compact text table of effective rank and participation ratio per layer."""
    models = list(ds["model"].values)
    width = max(len(str(m)) for m in models) + 6
    lines = []
    for var, title in (
        ("effective_rank", "effective rank"),
        ("participation_ratio", "participation ratio"),
    ):
        lines.append(f"{title} by layer")
        vals = ds[var].values
        header = f"{'layer':<{width}} " + " ".join(f"{c:>7}" for c in ds["layer"].values)
        lines.append(header)
        for m, row in zip(models, vals, strict=True):
            lines.append(
                f"{m!s:<{width}} "
                + " ".join("    nan" if not np.isfinite(v) else f"{v:7.2f}" for v in row)
            )
    return "\n".join(lines)
