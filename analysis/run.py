"""Entry points of the ``deepwide analyze`` commands: open stores, compute, write, format."""

from __future__ import annotations

from collections.abc import Callable, Sequence
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
    return _written(ds, out_dir, similarity_stem(ds), config, format_similarity)


def run_labels(
    stores: Sequence[str | Path], out_dir: str | Path, config: LabelsConfig
) -> AnalysisOutput:
    """Open the stores, compute :func:`label_cca_table`, write ``labels.nc``/``.csv``."""
    return _per_store_table(label_cca_table, "labels", format_labels, stores, out_dir, config)


def run_spectrum(
    stores: Sequence[str | Path], out_dir: str | Path, config: SpectrumConfig
) -> AnalysisOutput:
    """Open the stores, compute :func:`spectrum_table`, write ``spectrum.nc``/``.csv``."""
    return _per_store_table(spectrum_table, "spectrum", format_spectrum, stores, out_dir, config)


def _per_store_table(
    compute: Callable[[list[Any], Any], Any],
    stem: str,
    fmt: Callable[[Any], str],
    stores: Sequence[str | Path],
    out_dir: str | Path,
    config: Any,
) -> AnalysisOutput:
    """``compute`` over the opened ``stores``, written as ``<stem>.nc``/``.csv`` and formatted."""
    ds = compute([open_feature_store(p) for p in stores], config)
    return _written(ds, out_dir, stem, config, fmt)


def _written(
    ds: Any, out_dir: str | Path, stem: str, config: Any, fmt: Callable[[Any], str]
) -> AnalysisOutput:
    """``ds`` written under ``out_dir`` as ``stem``, with its ``fmt`` table."""
    paths = write_result(ds, out_dir, stem, config)
    return AnalysisOutput(ds, paths, fmt(ds))
