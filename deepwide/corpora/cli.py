"""``deepwide corpus``: generate the synthetic corpus and describe any corpus.

Only option parsing lives here; the work is done by :mod:`deepwide.corpora.synth` and
:mod:`deepwide.corpora.baselines` (imported inside the commands, so ``deepwide --help`` stays
fast).
"""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.group("corpus")
def corpus() -> None:
    """Corpora: generate the embedded synthetic corpus, describe any corpus."""


@corpus.command("synth")
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder to generate into (must not exist or be empty). "
                   "Default: the cache folder that the name `synth` refers to.")
@click.option("--speakers", type=click.IntRange(min=4), default=None,
              help="Number of speakers [default: 100].")
@click.option("--utts-per-speaker", type=click.IntRange(min=3), default=None,
              help="Utterances per speaker, over sentences/keywords/commands [default: 24].")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Worker processes (the output does not depend on it) [default: CPUs, ≤ 8].")
@click.option("--format", "audio_format", type=click.Choice(["flac", "wav"]), default="flac",
              show_default=True, help="Audio container (16-bit PCM, 16 kHz mono).")
@click.option("--clean", is_flag=True,
              help="Record every utterance cleanly (no channel filter or noise, one level): a "
                   "pre-training corpus for `teacher pretrain` with augment_channel on.")
@click.pass_context
def synth_command(
    ctx: click.Context,
    out: Path | None,
    speakers: int | None,
    utts_per_speaker: int | None,
    workers: int | None,
    audio_format: str,
    clean: bool,
) -> None:
    """Generate the multi-speaker synthetic corpus (espeak-ng, offline, deterministic).

    The same --seed gives byte-identical audio and manifest. Without --out the corpus goes
    to the user cache; with the default sizes and seed 0 that is the corpus named `synth`.
    """
    from dataclasses import replace

    from deepwide.corpora.synth import (
        SynthConfig,
        default_workers,
        ensure_synth_corpus,
        generate_synth,
    )

    seed = getattr(ctx.obj, "seed", 0)
    cfg = SynthConfig()
    if speakers is not None:
        cfg = replace(cfg, n_speakers=speakers)
    if utts_per_speaker is not None:
        cfg = replace(cfg, utts_per_speaker=utts_per_speaker)
    if audio_format != cfg.audio_format:
        cfg = replace(cfg, audio_format=audio_format)
    if clean:
        cfg = cfg.without_recording()
    n_workers = workers or default_workers()
    if out is None:
        manifest = ensure_synth_corpus(cfg, seed=seed, workers=n_workers)
    else:
        manifest = generate_synth(cfg, out, seed=seed, workers=n_workers)
    hours = sum(u.duration_s for u in manifest) / 3600
    click.echo(
        f"{manifest.root}: {len(manifest)} utterances, {hours:.2f} h, "
        f"{len(manifest.speakers())} speakers, {len(manifest.trials)} trials"
    )


@corpus.command("info")
@click.argument("corpus_spec", metavar="CORPUS")
@click.option("--baselines/--no-baselines", default=None,
              help="Also fit the reference baselines (speaker ID from MFCC / log-mel means, "
                   "frame phones from MFCCs) [default: on for synthetic corpora].")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.pass_context
def info_command(ctx: click.Context, corpus_spec: str, baselines: bool | None, as_json: bool) -> None:
    """Describe CORPUS: `synth`, NAME:PATH (e.g. librispeech:/data/LibriSpeech/dev-clean) or a
    folder with a manifest.jsonl."""
    from deepwide.corpora import resolve_corpus
    from deepwide.corpora.baselines import describe_corpus, format_description, run_baselines

    seed = getattr(ctx.obj, "seed", 0)
    manifest = resolve_corpus(corpus_spec)
    description = describe_corpus(manifest)
    if baselines is None:
        baselines = manifest.meta.get("generator") == "deepwide.corpora.synth"
    if baselines:
        description["baselines"] = [r.to_dict() for r in run_baselines(manifest, seed=seed)]
    if as_json:
        click.echo(json.dumps(description, indent=2, sort_keys=True))
    else:
        click.echo(format_description(description))
