"""``deepwide figures`` and ``deepwide report``: parse options, hand off to the library.

No matplotlib or xarray at import time: the library modules are imported inside the commands.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

log = logging.getLogger(__name__)

_RESULTS_HELP = "Results folder (probe.nc, similarity_*.nc, labels.nc, spectrum.nc, distill.csv)."

_results_option = click.option(
    "--results", "results_dir", type=click.Path(path_type=Path), required=True, help=_RESULTS_HELP
)


def _out_option(help_text: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The optional ``--out`` folder of a command, with the command's own help."""
    return click.option(
        "--out", "out_dir", type=click.Path(path_type=Path), default=None, help=help_text
    )


@click.command("figures")
@_results_option
@_out_option("Where the PNG and PDF files go [default: RESULTS/figures].")
@click.pass_context
def figures(ctx: click.Context, results_dir: Path, out_dir: Path | None) -> None:
    """Draw the paper figures (PNG + PDF) from a results folder; skip those without input."""
    from deepwide.figures.recipes import make_figures

    out = out_dir if out_dir is not None else results_dir / "figures"
    paths = make_figures(results_dir, out)
    for p in paths:
        click.echo(str(p))


@click.command("report")
@_results_option
@_out_option("Where report.html and report.md go [default: RESULTS].")
@click.pass_context
def report(ctx: click.Context, results_dir: Path, out_dir: Path | None) -> None:
    """Write a self-contained HTML report and its Markdown twin from a results folder."""
    from deepwide.figures.report import write_report

    html_path, md_path = write_report(results_dir, out_dir)
    click.echo(str(html_path))
    click.echo(str(md_path))
