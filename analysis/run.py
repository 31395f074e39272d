"""Entry points of the ``deepwide analyze`` commands: open stores, compute, write, format."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepwide.analysis.configs import LabelsConfig, SimilarityConfig, SpectrumConfig
from deepwide.analysis.output import (
    format_labels,
    format_similarity,
    format_spectrum,
    similarity_stem,
    write_result,
)
from deepwide.analysis.similarity import similarity_grid
from deepwide.analysis.stores import open_feature_store
from deepwide.analysis.tables import label_cca_table, spectrum_table


@dataclass(frozen=True)
class AnalysisOutput:
    """A computed result, where it was written, and its printable table."""

    result: Any
    paths: list[Path] = field(default_factory=list)
    table: str = ""


def run_similarity(
    a: str | Path,
    b: str | Path,
    out_dir: str | Path,
    config: SimilarityConfig,
    *,
    null: str | Path | None = None,
) -> AnalysisOutput:
    """Open the stores, compute :func:`similarity_grid`, write it and format its table."""
    ds = similarity_grid(
        open_feature_store(a),
        open_feature_store(b),
        config,
        null=open_feature_store(null) if null is not None else None,
    )
    paths = write_result(ds, out_dir, similarity_stem(ds), config)
    return AnalysisOutput(ds, paths, format_similarity(ds))


def run_labels(
    stores: Sequence[str | Path], out_dir: str | Path, config: LabelsConfig
) -> AnalysisOutput:
    """Open the stores, compute :func:`label_cca_table`, write ``labels.nc``/``.csv``."""
    ds = label_cca_table([open_feature_store(p) for p in stores], config)
    paths = write_result(ds, out_dir, "labels", config)
    return AnalysisOutput(ds, paths, format_labels(ds))


def run_spectrum(
    stores: Sequence[str | Path], out_dir: str | Path, config: SpectrumConfig
) -> AnalysisOutput:
    """Open the stores, compute :func:`spectrum_table`, write ``spectrum.nc``/``.csv``."""
    ds = spectrum_table([open_feature_store(p) for p in stores], config)
    paths = write_result(ds, out_dir, "spectrum", config)
    return AnalysisOutput(ds, paths, format_spectrum(ds))
