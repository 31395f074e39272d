"""``deepwide extract`` and ``deepwide store {info,validate}``: parse options, hand off.

Heavy modules (torch, xarray, zarr) are imported inside the commands, so mounting these
commands costs nothing.
"""

from __future__ import annotations

import click

from deepwide.extract.config import (
    BAD_AUDIO_POLICIES,
    DTYPES,
    PHONE_SOURCES,
    ExtractConfig,
    parse_frames,
    parse_shard,
    parse_splits,
)
from deepwide.params import INDEX_LIST


@click.command("extract")
@click.option("--model", "model", required=True, help="Model spec: tiny-teacher, random:NAME, a checkpoint …")
@click.option("--corpus", "corpus", required=True, help="Corpus spec: synth, NAME:PATH or a folder with manifest.jsonl.")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="Feature store to create or resume.")
@click.option("--splits", default=None, help="Comma list of splits to keep (default: all).")
@click.option("--kinds", default=None, help="Comma list of utterance kinds to keep (sentence, keyword, command …; default: all).")
@click.option("--max-utts", type=click.IntRange(min=1), default=None, help="Keep at most this many utterances per split (chosen by hashed id, the same for every model) [default: all].")
@click.option("--layers", type=INDEX_LIST, default="all", show_default=True, help="all, or indices like 0,4,8 or 0-12.")
@click.option("--frames", default="all", show_default=True, help="all | sample:K (K seeded frames per utterance) | none (pooled only).")
@click.option("--dtype", type=click.Choice(DTYPES), default="float16", show_default=True, help="Storage type of frame features.")
@click.option("--batch-seconds", type=float, default=ExtractConfig.batch_seconds, show_default=True, help="Padded audio seconds per batch.")
@click.option("--device", default="cpu", show_default=True, help="cpu or cuda[:i].")
@click.option("--workers", type=click.IntRange(min=0), default=None, help="Audio-decoding processes (0: a thread) [default: 0 on CPU, up to 4 on GPU].")
@click.option("--jobs", type=click.IntRange(min=0), default=None, help="CPU: forked one-thread model replicas running batches in parallel (0: none) [default: one per core, at most 4].")
@click.option("--shard", default=None, help="k/n: write only shard k of n (one process per shard; under torchrun each rank takes its own).")
@click.option("--on-bad-audio", type=click.Choice(BAD_AUDIO_POLICIES), default="error", show_default=True, help="Stop at bad audio, or skip and record it.")
@click.option("--phones-from", type=click.Choice(PHONE_SOURCES), default=ExtractConfig.phones_from, show_default=True, help="Phone sequences (pr targets) of a corpus without phone segments: its transcripts through CMUdict and espeak-ng, ARPAbet with stress (SUPERB PR) or without; segments: none.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Progress bar in audio seconds.")
@click.option("--no-space-check", is_flag=True, help="Start even when the disk has less free space than the store's estimated size.")
@click.pass_context
def extract(
    ctx: click.Context, model: str, corpus: str, out: str, splits: str | None, kinds: str | None,
    max_utts: int | None, layers: tuple[int, ...] | None,
    frames: str, dtype: str, batch_seconds: float, device: str, workers: int | None, jobs: int | None, shard: str | None,
    on_bad_audio: str, phones_from: str, progress: bool, no_space_check: bool,
) -> None:
    """Cache every chosen layer of MODEL over CORPUS in the feature store OUT.

    Rerun the same command to resume after an interruption (a kill, a full disk); run one
    process per --shard k/n to split the work (the store is complete when every shard is).
    """
    from deepwide.config import config_from_dict
    from deepwide.extract.run import run_extract

    seed = getattr(ctx.obj, "seed", 0)
    parse_frames(frames)
    config = config_from_dict(
        ExtractConfig,
        dict(
            layers=layers, frames=frames, dtype=dtype, splits=parse_splits(splits),
            batch_seconds=batch_seconds, seed=seed, on_bad_audio=on_bad_audio, phones_from=phones_from,
            kinds=tuple(k for k in kinds.split(",") if k) if kinds is not None else None, max_utts=max_utts,
        ),
        where="extract options",
    )
    report = run_extract(
        model, corpus, out, config, shard=parse_shard(shard), device=device, workers=workers,
        jobs=jobs, seed=seed, progress=progress, check_space=not no_space_check,
    )
    click.echo(report.summary())


@click.group("store")
def store() -> None:
    """Inspect and check feature stores."""


@store.command("info")
@click.argument("path", type=click.Path())
def info(path: str) -> None:
    """Print model, corpus, layers, sizes and completeness of the store PATH."""
    from deepwide.store import store_info

    for line in store_info(path).lines():
        click.echo(line)


@store.command("validate")
@click.argument("path", type=click.Path())
@click.option("--data/--no-data", default=True, show_default=True, help="Also check every chunk is written and pooled is finite.")
@click.pass_context
def validate(ctx: click.Context, path: str, data: bool) -> None:
    """Check the store PATH against the schema and for completeness (exit 1 on problems)."""
    from deepwide.store import validate_store

    problems = validate_store(path, data=data)
    if problems:
        for p in problems:
            click.echo(f"problem: {p}")
        click.echo(f"{path}: {len(problems)} problem(s)")
        ctx.exit(1)
    click.echo(f"{path}: valid and complete")
