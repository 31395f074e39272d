"""``deepwide teacher``: pre-train the tiny HuBERT teacher that the embedded study uses."""

from __future__ import annotations

from pathlib import Path

import click


@click.group()
def teacher() -> None:
    """Pre-train (and evaluate) the bundled tiny HuBERT teacher."""


@teacher.command("pretrain")
@click.option("--corpus", "corpus_spec", default="synth", show_default=True, help="Corpus spec (synth, NAME:PATH or a manifest folder).")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Output folder (checkpoint in OUT/model).")
@click.option("--config", "config_file", type=click.Path(path_type=Path), default=None, help="TOML file with PretrainConfig fields.")
@click.option("--steps", default=None, help="Steps per HuBERT iteration, e.g. 3000,3000 (overrides the config).")
@click.option("--quick", is_flag=True, help="A few-step, 2-layer smoke recipe (tests, demos).")
@click.option("--resume", is_flag=True, help="Continue the run in OUT.")
@click.option("--threads", type=int, default=None, help="torch CPU threads.")
@click.pass_context
def pretrain_cmd(ctx: click.Context, corpus_spec: str, out: Path, config_file: Path | None,
                 steps: str | None, quick: bool, resume: bool, threads: int | None) -> None:
    """HuBERT masked prediction of k-means targets (MFCC, then a middle layer) on a corpus."""
    from dataclasses import replace

    from deepwide.config import config_from_dict, load_toml
    from deepwide.corpora import resolve_corpus
    from deepwide.errors import ConfigError
    from deepwide.models.pretrain import PretrainConfig, pretrain_teacher, quick_config

    cfg = config_from_dict(PretrainConfig, load_toml(config_file), where=str(config_file)) if config_file else PretrainConfig()
    if quick:
        cfg = quick_config(cfg)
    if steps:
        try:
            cfg = replace(cfg, steps=tuple(int(s) for s in steps.split(",")))
        except ValueError as exc:
            raise ConfigError(f"--steps {steps!r}: {exc}; give comma-separated step counts, e.g. 3000,3000") from exc
    ckpt = pretrain_teacher(resolve_corpus(corpus_spec), out, cfg, seed=getattr(ctx.obj, "seed", 0),
                            resume=resume, threads=threads)
    click.echo(f"teacher checkpoint: {ckpt}")


@teacher.command("export")
@click.option("--run", "run_dir", type=click.Path(path_type=Path), required=True, help="A `teacher pretrain --out` folder.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Checkpoint folder to write.")
@click.option("--iterations", type=click.IntRange(min=1), default=None,
              help="The state is the end of this iteration: record the recipe cut after it.")
def export_cmd(run_dir: Path, out: Path, iterations: int | None) -> None:
    """Write the encoder of a (possibly unfinished) pre-training run as a deepwide checkpoint."""
    from deepwide.models.pretrain import export_teacher

    click.echo(f"teacher checkpoint: {export_teacher(run_dir, out, iterations=iterations)}")
