"""deepwide.figures: one style, plot functions, paper-figure recipes and the report writer.

Figures and the report read only results files (docs/results-schema.md). The public API::

    make_figures(results_dir, out_dir) -> list[Path]          # PNG + PDF per drawable figure
    write_report(results_dir, out_dir=None) -> (html, md)     # self-contained HTML + Markdown

Both are imported lazily so that ``import deepwide.figures`` (and the CLI) stays light.
"""

from __future__ import annotations

from deepwide.lazy import lazy_exports

_EXPORTS = {
    "make_figures": "deepwide.figures.recipes",
    "write_report": "deepwide.figures.report",
    "load_results": "deepwide.figures.results",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
