"""``deepwide analyze``: similarity grids, label-CCA and spectra of feature stores.

Parses options and hands off to :mod:`deepwide.analysis.run`; prints the result's compact
table and where it was written. No torch or xarray import at module import time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

import click

from deepwide.analysis.configs import (
    LABEL_KINDS,
    LabelsConfig,
    SimilarityConfig,
    SpectrumConfig,
)
from deepwide.analysis.measures import MEASURES
from deepwide.analysis.run import run_labels, run_similarity, run_spectrum
from deepwide.config import config_from_dict
from deepwide.params import INDEX_LIST

log = logging.getLogger(__name__)

C = TypeVar("C")

_STORE = click.Path(exists=False, file_okay=False, dir_okay=True, path_type=str)
_OUT = click.Path(file_okay=False, dir_okay=True, path_type=str)

#: Options shared by the analyze commands (each application builds its own click option).
_stores_option = click.option(
    "--store",
    "stores",
    required=True,
    multiple=True,
    type=_STORE,
    help="Feature store (repeatable).",
)
def _sorted(layers: tuple[int, ...] | None) -> tuple[int, ...]:
    """An ``--layers`` value in ascending order; ``None`` (all) is the configs' ``()``."""
    return tuple(sorted(layers or ()))


_layers_option = click.option(
    "--layers", type=INDEX_LIST, default=None, help="Layers, e.g. 0,4,8 or 0-12 (default all)."
)
_out_option = click.option("--out", "out_dir", required=True, type=_OUT, help="Output folder.")


def _frames_per_utt_option(
    default: int, help_text: str
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The ``--frames-per-utt`` option (0 = all) with a command's own default and help."""
    return click.option(
        "--frames-per-utt",
        type=click.IntRange(min=0),
        default=default,
        show_default=True,
        help=help_text,
    )


def _config(ctx: click.Context, cls: type[C], command: str, **fields: Any) -> C:
    """``cls`` built from a command's option values and the global ``--seed``.

    Errors name ``analyze <command>``.
    """
    seed = int(getattr(ctx.obj, "seed", 0) or 0)
    return config_from_dict(cls, dict(fields, seed=seed), where=f"analyze {command}")


def _echo(output: Any) -> None:
    click.echo(output.table)
    for path in output.paths:
        click.echo(f"wrote {path}")


@click.group("analyze")
def analyze() -> None:
    """Explain what each model kept: CKA/SVCCA/PWCCA grids, label-CCA, effective rank."""


@analyze.command("similarity")
@click.option(
    "--a", "store_a", required=True, type=_STORE, help="Feature store of model A (grid rows)."
)
@click.option(
    "--b", "store_b", required=True, type=_STORE, help="Feature store of model B (grid columns)."
)
@click.option(
    "--measure",
    type=click.Choice(MEASURES.names()),
    default="cka-debiased",
    show_default=True,
    help="Similarity measure.",
)
@_frames_per_utt_option(
    10, "Random shared frames per utterance, the same for both models (0 = all)."
)
@click.option(
    "--layers", type=INDEX_LIST, default=None, help="Layers of both models, e.g. 0,4,8 or 0-12 (default all)."
)
@click.option(
    "--layers-b", type=INDEX_LIST, default=None, help="Layers of model B (and null) if different from --layers."
)
@click.option(
    "--null",
    "null_store",
    type=_STORE,
    default=None,
    help="Store of a null for B (its random: twin): adds null_similarity on the same frames.",
)
@click.option(
    "--block-rows",
    type=click.IntRange(min=16),
    default=2048,
    show_default=True,
    help="Rows per streamed block (linear CKA).",
)
@_out_option
@click.pass_context
def similarity(
    ctx: click.Context,
    store_a: str,
    store_b: str,
    measure: str,
    frames_per_utt: int,
    layers: tuple[int, ...] | None,
    layers_b: tuple[int, ...] | None,
    null_store: str | None,
    block_rows: int,
    out_dir: str,
) -> None:
    """A (layer_a, layer_b) similarity grid between two stores of the same corpus."""
    la = _sorted(layers)
    config = _config(
        ctx,
        SimilarityConfig,
        "similarity",
        measure=measure,
        frames_per_utt=frames_per_utt,
        layers_a=la,
        layers_b=_sorted(layers_b) if layers_b is not None else la,
        block_rows=block_rows,
    )
    _echo(run_similarity(store_a, store_b, out_dir, config, null=null_store))


@analyze.command("labels")
@_stores_option
@click.option(
    "--label",
    "labels",
    required=True,
    multiple=True,
    type=click.Choice(LABEL_KINDS),
    help="Label kind (repeatable).",
)
@click.option(
    "--level",
    type=click.Choice(["auto", "frame", "utt"]),
    default="auto",
    show_default=True,
    help="auto: phone per frame, speaker per utterance (pooled).",
)
@_frames_per_utt_option(10, "Frame level: random labelled frames per utterance (0 = all).")
@click.option(
    "--folds",
    type=click.IntRange(min=2),
    default=5,
    show_default=True,
    help="Cross-validation folds.",
)
@_layers_option
@_out_option
@click.pass_context
def labels(
    ctx: click.Context,
    stores: tuple[str, ...],
    labels: tuple[str, ...],
    level: str,
    frames_per_utt: int,
    folds: int,
    layers: tuple[int, ...] | None,
    out_dir: str,
) -> None:
    """Cross-validated label-CCA per layer: where phone and speaker information sit."""
    config = _config(
        ctx,
        LabelsConfig,
        "labels",
        labels=tuple(dict.fromkeys(labels)),
        level=level,
        frames_per_utt=frames_per_utt,
        folds=folds,
        layers=_sorted(layers),
    )
    _echo(run_labels(stores, out_dir, config))


@analyze.command("spectrum")
@_stores_option
@click.option(
    "--level",
    type=click.Choice(["frame", "utt"]),
    default="frame",
    show_default=True,
    help="Stored frames or utterance means.",
)
@_frames_per_utt_option(0, "Frame level: random frames per utterance (0 = all stored).")
@_layers_option
@_out_option
@click.pass_context
def spectrum(
    ctx: click.Context,
    stores: tuple[str, ...],
    level: str,
    frames_per_utt: int,
    layers: tuple[int, ...] | None,
    out_dir: str,
) -> None:
    """Effective rank and participation ratio per layer: how much width each model uses."""
    config = _config(
        ctx,
        SpectrumConfig,
        "spectrum",
        level=level,
        frames_per_utt=frames_per_utt,
        layers=_sorted(layers),
    )
    _echo(run_spectrum(stores, out_dir, config))
