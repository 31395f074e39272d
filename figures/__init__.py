"""deepwide.figures: one style, plot functions, paper-figure recipes and the report writer.

Figures and the report read only results files (docs/results-schema.md). The public API::

    make_figures(results_dir, out_dir) -> list[Path]          # PNG + PDF per drawable figure
    write_report(results_dir, out_dir=None) -> (html, md)     # self-contained HTML + Markdown

Both are imported lazily so that ``import deepwide.figures`` (and the CLI) stays light.
"""

from __future__ import annotations

from typing import Any

__all__ = ["load_results", "make_figures", "write_report"]

_LAZY = {
    "make_figures": "deepwide.figures.recipes",
    "write_report": "deepwide.figures.report",
    "load_results": "deepwide.figures.results",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'deepwide.figures' has no attribute {name!r}")
