"""``deepwide export``: write a model in another framework's format (Hugging Face)."""

from __future__ import annotations

from pathlib import Path

import click

#: --format name -> what it writes.
FORMATS = {
    "hf": "a Hugging Face folder (config.json, model.safetensors, preprocessor_config.json) "
          "for transformers' HubertModel / Wav2Vec2Model / WavLMModel",
}


@click.command("export")
@click.argument("model_spec", metavar="MODEL")
@click.option("--format", "fmt", type=click.Choice(sorted(FORMATS)), default="hf", show_default=True,
              help="hf: " + FORMATS["hf"] + ".")
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="Folder to write (it must not exist or must be empty).")
@click.pass_context
def export(ctx: click.Context, model_spec: str, fmt: str, out: Path) -> None:
    """Export MODEL (a student folder, a converted teacher, a preset, random:SPEC …) with a
    waveform CNN front-end, e.g. for s3prl, SUPERB or fine-tuning with transformers."""
    from deepwide.models.hf import HF_MODEL_CLASSES
    from deepwide.models.hf_export import export_hf
    from deepwide.models.loading import load_model

    model = load_model(model_spec, seed=getattr(ctx.obj, "seed", 0))
    written = export_hf(model, out)
    click.echo(f"{fmt} model: {written} ({HF_MODEL_CLASSES[model.config.arch]}, "
               f"{model.num_params():,} parameters, {model.config.describe()})")
