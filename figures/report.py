"""The study report: a self-contained HTML page and its Markdown twin, from results files only.

:func:`write_report` reads a results folder (docs/results-schema.md) and writes
``report.html`` (figures embedded as base64 PNG, inline CSS, no external resources) and
``report.md`` (figures as PNG files in ``report_figures/`` beside it). Sections:

- **Setup**: the models (role, depth, width, parameters, distillation objective), the corpus
  and seeds recorded in the results' attrs, and the probing tasks.
- **Findings**: deep-narrow against shallow-wide students per task, with a 95 % interval of the
  difference and a verdict against the paper's claim (depth for content, width for speaker);
  every model against its random twin; where in depth each kind of information peaks; how
  close each student's layers come to the teacher's.
- **Tables**: best single layer per task (score ± CI) and the weighted-sum probe per task.
- **SUPERB units**: every model's scores in SUPERB's units, and apart from them the published
  SUPERB rows (package data, :mod:`~deepwide.figures.superb`), never ranked together.
- **Figures**, then **Method notes** on how each interval was computed.

Every number comes from the results files, except the published SUPERB rows, which are package
data with their citation. Difference intervals are
derived from the two stored per-model 95 % bootstrap intervals by MOVER
(:func:`~deepwide.figures.results.mover_difference`), which is conservative here.

The report is assembled here from parts that each do one job:
:mod:`~deepwide.figures.document` (the document model),
:mod:`~deepwide.figures.sections` (setup, tables, method notes),
:mod:`~deepwide.figures.findings` (the findings prose),
:mod:`~deepwide.figures.formatting` (how numbers are written), and the two renderers
:mod:`~deepwide.figures.html_renderer` and :mod:`~deepwide.figures.markdown_renderer`.
"""

from __future__ import annotations

import logging
from pathlib import Path

from deepwide.config import atomic_write_bytes, atomic_write_text
from deepwide.figures.document import Doc, Table
from deepwide.figures.explain import add_student_measures_section
from deepwide.figures.findings import (
    PAPER_CLAIM,
    Comparison,
    add_deep_wide_section,
    add_layer_section,
    add_similarity_section,
    add_teacher_profile_section,
    add_twin_section,
    compare,
)
from deepwide.figures.formatting import fmt_params, pts, score_ci
from deepwide.figures.html_renderer import render_html
from deepwide.figures.markdown_renderer import FIGURE_DIR, render_markdown
from deepwide.figures.recipes import BuiltFigure, SkippedFigure, build_figures
from deepwide.figures.results import Results, load_results, model_facts, model_roles
from deepwide.figures.sections import (
    add_method_notes,
    add_setup_section,
    add_superb_section,
    add_tables_section,
)
from deepwide.figures.style import figure_bytes

log = logging.getLogger(__name__)

REPORT_PNG_DPI = 150


def build_report(res: Results) -> tuple[Doc, list[BuiltFigure], list[SkippedFigure]]:
    """The report document of ``res`` and the figures it embeds."""
    facts = model_facts(res)
    roles = model_roles(res, facts) if not facts.empty else {}
    doc = Doc()
    doc.h(1, "deepwide: deep versus wide students")
    doc.p(
        f"Results folder: {res.root}. Every number below is read from the results files there "
        "(except the published SUPERB rows, cited where they are shown); "
        "scores are percentages of the task metric on the test split."
    )
    add_setup_section(doc, res, facts, roles)
    doc.h(2, "Findings")
    if res.probe is None:
        doc.p("probe.nc is missing, so there are no probing findings; run `deepwide probe`.")
    else:
        add_deep_wide_section(doc, res, facts, roles)
        add_twin_section(doc, res, facts)
        add_layer_section(doc, res, facts, roles)
        add_teacher_profile_section(doc, res, roles)
        add_student_measures_section(doc, res, roles)
    add_similarity_section(doc, res)
    if res.probe is not None:
        add_tables_section(doc, res, roles)
        add_superb_section(doc, res)
    built, skipped = build_figures(res)
    doc.h(2, "Figures")
    for bf in built:
        doc.figure(bf, figure_bytes(bf.figure, "png", REPORT_PNG_DPI))
    if skipped:
        doc.p("Figures not drawn, for lack of input:")
        doc.ul([f"{s.title} ({s.stem}): {s.reason}" for s in skipped])
    add_method_notes(doc)
    return doc, built, skipped


def write_report(results_dir: str | Path, out_dir: str | Path | None = None) -> tuple[Path, Path]:
    """Write ``report.html`` (self-contained) and ``report.md`` for ``results_dir``.

    Args:
        results_dir: a results folder (any of its files may be missing).
        out_dir: where to write (default: ``results_dir``); the Markdown twin's figures go to
            ``out_dir/report_figures/<stem>.png``.

    Returns:
        ``(html_path, md_path)``.

    Raises:
        ConfigError: ``results_dir`` does not exist.
        StoreError: a results file does not follow the schema.
    """
    res = load_results(results_dir)
    out = Path(out_dir) if out_dir is not None else res.root
    doc, built, _ = build_report(res)
    for kind, payload in doc.blocks:
        if kind == "figure":
            bf, png = payload  # type: ignore[misc]
            atomic_write_bytes(out / FIGURE_DIR / f"{bf.stem}.png", png)
    title = "deepwide report"
    html_path, md_path = out / "report.html", out / "report.md"
    atomic_write_text(html_path, render_html(doc, title))
    atomic_write_text(md_path, render_markdown(doc, FIGURE_DIR))
    log.info("wrote %s and %s (%d figures)", html_path, md_path, len(built))
    return html_path, md_path


__all__ = [
    "FIGURE_DIR",
    "PAPER_CLAIM",
    "REPORT_PNG_DPI",
    "Comparison",
    "Doc",
    "Table",
    "build_report",
    "compare",
    "fmt_params",
    "pts",
    "render_html",
    "render_markdown",
    "score_ci",
    "write_report",
]
