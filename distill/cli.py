"""``deepwide distill``: train one student (the default command) or a parameter-matched sweep.

    deepwide distill --teacher tiny-teacher --student distilhubert --objective predlayer \\
        --corpus synth --steps 2000 --out runs/distilhubert
    deepwide distill --teacher tiny-teacher --depth 12 --width 128 --objective l2l ...
    deepwide distill sweep --teacher tiny-teacher --budget 3M --depths 2,3,6,12 \\
        --objectives predlayer,l2l --corpus synth --steps 2000 --out runs/sweep

``deepwide distill …`` without a subcommand name runs ``deepwide distill train …``. Each
command parses its options into a :class:`~deepwide.distill.config.DistillConfig` and hands off
to :func:`~deepwide.distill.trainer.train_student` or :func:`~deepwide.distill.sweep.run_sweep`
(imported lazily: this module does not import torch). Under ``torchrun`` every process runs
the same command line.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from deepwide.distill.config import PRECISIONS, make_config
from deepwide.distill.objectives import OBJECTIVES
from deepwide.params import COUNT_LIST, INDEX_LIST, PARAM_COUNT

DEFAULT_COMMAND = "train"


class DefaultCommandGroup(click.Group):
    """A group that runs :data:`DEFAULT_COMMAND` when the first argument names no subcommand."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = [DEFAULT_COMMAND, *args]
        return super().parse_args(ctx, args)


def _is_main_process() -> bool:
    """False on every torchrun rank but 0 (only rank 0 prints the command's output)."""
    return os.environ.get("RANK", "0") == "0"


def _seed(ctx: click.Context) -> int:
    root = ctx.find_root().obj
    return int(getattr(root, "seed", 0) or 0)


def training_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Options shared by ``train`` and ``sweep`` (everything but the student's shape)."""
    options = [
        click.option("--teacher", required=True, help="Teacher model spec (tiny-teacher, a checkpoint folder, random:hubert-base …)."),
        click.option("--corpus", required=True, help="Corpus spec (synth, NAME:PATH or a folder with manifest.jsonl)."),
        click.option("--steps", type=click.IntRange(min=1), required=True, help="Optimiser steps."),
        click.option("--targets", type=INDEX_LIST, default=None, help="Teacher layers to regress, e.g. 4,8,12 (default: the objective's)."),
        click.option("--splits", default="train", show_default=True, help="Corpus splits to train on."),
        click.option("--batch-seconds", type=float, default=32.0, show_default=True, help="Audio seconds per batch and process (reference recipe: 375)."),
        click.option("--max-crop-seconds", type=float, default=15.625, show_default=True, help="Longest random crop."),
        click.option("--min-utt-seconds", type=float, default=0.25, show_default=True, help="Leave out shorter utterances."),
        click.option("--lr", type=float, default=2e-4, show_default=True, help="Peak learning rate (AdamW)."),
        click.option("--warmup", type=float, default=0.07, show_default=True, help="Warm-up as a fraction of --steps."),
        click.option("--weight-decay", type=float, default=0.0, show_default=True),
        click.option("--grad-clip", type=float, default=5.0, show_default=True, help="Max gradient norm (0: off)."),
        click.option("--cos-weight", type=float, default=1.0, show_default=True, help="λ of L1 + λ·(−log σ(cos))."),
        click.option("--dropout", type=float, default=None, help="Student dropout (default: the teacher's config)."),
        click.option("--precision", type=click.Choice(PRECISIONS), default="fp32", show_default=True, help="Autocast on CUDA; CPU runs fp32."),
        click.option("--init-from-teacher", is_flag=True, help="Also copy the teacher's first layers (student must have the teacher's width)."),
        click.option("--teacher-targets", "teacher_targets", type=click.Path(path_type=Path), default=None, help="Feature store of the teacher (extract --frames all): no teacher forward passes."),
        click.option("--checkpoint-every", type=click.IntRange(min=1), default=1000, show_default=True),
        click.option("--keep-checkpoints", type=click.IntRange(min=1), default=2, show_default=True),
        click.option("--log-every", type=click.IntRange(min=1), default=10, show_default=True),
        click.option("--eval-every", type=click.IntRange(min=0), default=0, show_default=True,
                     help="Steps between held-out evaluations (0: steps // 10; the last step always has one)."),
        click.option("--heldout-fraction", type=click.FloatRange(min=0, max=1, max_open=True), default=0.05,
                     show_default=True, help="Training utterances held out (hashed ids, same for every seed; 0: none)."),
        click.option("--heldout-max-utts", type=click.IntRange(min=1), default=64, show_default=True,
                     help="At most this many held-out utterances."),
        click.option("--plateau-threshold", type=click.FloatRange(min=0, min_open=True), default=0.01,
                     show_default=True,
                     help="Plateaued: the held-out loss fell by less than this fraction over the last quarter of evaluations."),
        click.option("--workers", "num_workers", type=click.IntRange(min=0), default=0, show_default=True, help="Data-loading processes."),
        click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N (torchrun: one GPU per process)."),
        click.option("--resume", is_flag=True, help="Continue the run in --out from its newest checkpoint."),
        click.option("--no-progress", is_flag=True, help="No progress bar."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _config_options(kw: dict[str, Any]) -> dict[str, Any]:
    """Turn parsed CLI options into DistillConfig keyword arguments (pops the CLI-only ones)."""
    opts = {k: v for k, v in kw.items() if k not in ("resume", "no_progress", "out")}
    opts["splits"] = tuple(s.strip() for s in opts["splits"].split(",") if s.strip())
    if opts.get("teacher_targets") is not None:
        opts["teacher_targets"] = str(opts["teacher_targets"])
    return opts


@click.group(cls=DefaultCommandGroup, no_args_is_help=True)
def distill() -> None:
    """Distil students of any depth × width from a HuBERT-family teacher.

    `deepwide distill --teacher … --student …` trains one student (the `train` command);
    `deepwide distill sweep …` trains parameter-matched students. See `deepwide distill train -h`.
    """


@distill.command("train")
@click.option("--student", default=None, help="Student preset (distilhubert, 3l-one, 12l-half, fithubert), scaled to the teacher's width.")
@click.option("--depth", type=click.IntRange(min=1), default=None, help="Student layers (with --width).")
@click.option("--width", type=click.IntRange(min=1), default=None, help="Student width (with --depth).")
@click.option("--ffn", type=click.IntRange(min=1), default=None, help="Student FFN width (default 4 × width).")
@click.option("--heads", type=click.IntRange(min=1), default=None, help="Student attention heads (default width / 64).")
@click.option("--objective", type=click.Choice(OBJECTIVES.names()), default="predlayer", show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Run folder [default: runs/distill/<student>-<objective>].")
@training_options
@click.pass_context
def train(ctx: click.Context, **kw: Any) -> None:
    """Train one student; the run folder is a checkpoint that `--model DIR` loads."""
    from deepwide.distill.trainer import train_student

    config = make_config(**_config_options(kw), seed=_seed(ctx))
    out = kw["out"] or Path("runs") / "distill" / config.student_name()
    result = train_student(config, out, resume=kw["resume"], progress=not kw["no_progress"])
    if not _is_main_process():
        return
    click.echo(
        f"{result.model_id}: {result.params / 1e6:.3f} M params (+{result.head_params / 1e6:.3f} M heads), "
        f"{result.steps} steps, final loss {result.final_loss:.4f}, "
        f"targets {result.mapping['teacher_layers']} <- student layers {result.mapping['student_layers']} -> {result.out}"
    )
    if result.heldout_loss == result.heldout_loss:  # NaN: nothing held out
        fall = "" if result.plateau_fall != result.plateau_fall else f", fell {100 * result.plateau_fall:.1f} % over the last quarter"
        click.echo(f"held-out loss {result.heldout_loss:.4f}{fall}: "
                   f"{'plateaued' if result.plateaued else 'not plateaued (train longer)'}")


@distill.command("sweep")
@click.option("--budget", type=PARAM_COUNT, required=True, help="Parameter budget of the encoder (heads excluded), e.g. 27M.")
@click.option("--depths", type=COUNT_LIST, required=True, help="Student depths, e.g. 2,3,6,12.")
@click.option("--objectives", default="predlayer,l2l", show_default=True, help="Objectives, e.g. predlayer,l2l.")
@click.option("--head-dim", type=click.IntRange(min=1), default=64, show_default=True, help="Attention head size (widths are multiples).")
@click.option("--ffn-ratio", type=float, default=4.0, show_default=True, help="FFN width / width.")
@click.option("--tolerance", type=float, default=0.1, show_default=True, help="Largest accepted |params − budget| / budget.")
@click.option("--dry-run", is_flag=True, help="Only print the planned students.")
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs/sweep"), show_default=True, help="Sweep folder.")
@training_options
@click.pass_context
def sweep(ctx: click.Context, **kw: Any) -> None:
    """Train parameter-matched students: one width per depth from the budget solver."""
    from deepwide.distill.sweep import plan_sweep, run_sweep
    from deepwide.errors import ConfigError
    from deepwide.models import resolve_config

    budget, depths = kw.pop("budget"), kw.pop("depths")
    objectives = tuple(o.strip() for o in kw.pop("objectives").split(",") if o.strip())
    for o in objectives:
        OBJECTIVES.get(o)
    head_dim, ffn_ratio, tolerance = kw.pop("head_dim"), kw.pop("ffn_ratio"), kw.pop("tolerance")
    if ffn_ratio <= 0 or tolerance <= 0:
        raise ConfigError("--ffn-ratio and --tolerance must be positive")
    dry_run = kw.pop("dry_run")
    options = dict(_config_options(kw), seed=_seed(ctx))
    entries = plan_sweep(options, resolve_config(kw["teacher"]), budget, depths, objectives,
                         head_dim=head_dim, ffn_ratio=ffn_ratio, tolerance=tolerance)
    echo = click.echo if _is_main_process() else (lambda *a, **k: None)
    echo(f"budget {budget / 1e6:.3f} M: {len(entries)} students")
    for e in entries:
        c = e.config
        echo(f"  {e.name:<24} depth {c.depth:>2}  width {c.width:>5}  ffn {c.ffn:>5}  heads {c.heads:>3}  "
                   f"{e.params / 1e6:8.3f} M  ({100 * e.deviation:+.1f} %)")
    if dry_run:
        return
    rows = run_sweep(entries, kw["out"], budget, resume=kw["resume"], progress=not kw["no_progress"])
    for row in rows:
        echo(f"{row['model']}: final loss {row['final_loss']:.4f} -> {row['out']}")
    echo(f"table: {Path(kw['out']) / 'sweep.csv'}")
