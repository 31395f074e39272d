"""``deepwide study``: run the whole deep-versus-wide study (cached), or list its plan."""

from __future__ import annotations

from pathlib import Path

import click

from deepwide.study.config import load_study_config
from deepwide.study.run import run_study


@click.command("study")
@click.option("--config", "config_file", type=click.Path(path_type=Path), default=None,
              help="TOML study config (default: the embedded study on the synthetic corpus).")
@click.option("--out", type=click.Path(path_type=Path), default=Path("deepwide-study"), show_default=True,
              help="Output folder (students, stores, results, figures, report).")
@click.option("--dry-run", is_flag=True, help="List the plan (cached / to run) and missing inputs; run nothing.")
@click.pass_context
def study(ctx: click.Context, config_file: Path | None, out: Path, dry_run: bool) -> None:
    """Distil, extract, probe, analyse, draw and report, re-running only what changed."""
    run_study(load_study_config(config_file), out, seed=getattr(ctx.obj, "seed", 0), dry_run=dry_run,
              echo=click.echo)
