"""Per-layer tables over several stores: label-CCA and covariance spectra.

- :func:`label_cca_table`: cross-validated CCA between each layer and one-hot phone (frame
  level) or speaker (utterance-pooled, or frame level) labels.
- :func:`spectrum_table`: effective rank and participation ratio of each layer's covariance.

Both return the ``Labels`` / ``Spectrum`` layouts of docs/results-schema.md. xarray is imported
inside the functions that need it, so importing this module (and the ``deepwide analyze`` CLI)
stays cheap.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from deepwide.analysis.cca import label_cca
from deepwide.analysis.cka import as_float64
from deepwide.analysis.configs import LabelsConfig, SpectrumConfig
from deepwide.analysis.progress import progress, warnings_to_log
from deepwide.analysis.spectrum import (
    CovarianceAccumulator,
    effective_rank_from_eigenvalues,
    participation_ratio_from_eigenvalues,
)
from deepwide.analysis.stores import (
    ModelFacts,
    frame_table,
    model_facts,
    read_rows,
    resolve_layers,
    row_blocks,
    sample_per_group,
    store_name,
)
from deepwide.errors import ConfigError, TaskError

if TYPE_CHECKING:
    import xarray as xr

log = logging.getLogger(__name__)


def _facts_vars(facts: Sequence[ModelFacts]) -> dict[str, Any]:
    return {
        "num_layers": ("model", np.array([f.num_layers for f in facts], dtype=np.int64)),
        "dim": ("model", np.array([f.dim for f in facts], dtype=np.int64)),
        "params": ("model", np.array([f.params for f in facts], dtype=np.int64)),
        "is_null": ("model", np.array([f.is_null for f in facts], dtype=bool)),
        "null_of": ("model", np.array([f.null_of for f in facts], dtype=object)),
    }


def _unique_ids(stores: Sequence[xr.Dataset]) -> list[ModelFacts]:
    facts = [model_facts(ds) for ds in stores]
    ids = [f.model_id for f in facts]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise ConfigError(
            f"model id(s) {', '.join(dupes)} given more than once; pass each store once"
        )
    return facts


def _label_rows(
    ds: xr.Dataset, label: str, level: str, config: LabelsConfig
) -> tuple[str, np.ndarray, np.ndarray, np.ndarray | None]:
    """(variable, rows, labels, groups) for one label kind at one level."""
    from deepwide.store import phone_set_of

    name = store_name(ds)
    if label == "speaker" and "speaker" not in ds.coords:
        raise TaskError(f"store {name} has no speaker labels; use a corpus with speakers")
    if level == "utt":
        rows = np.arange(ds.sizes["utt"])
        return "pooled", rows, np.asarray(ds["speaker"].values).astype(str), None
    _, _, utt_index, real = frame_table(ds)
    if label == "phone":
        if "phone" not in ds.coords:
            raise TaskError(f"store {name} has no phone labels; use a corpus with alignments")
        phone_set_of(ds)  # labels must index the store's phone_set (one-line StoreError)
        labels = np.asarray(ds["phone"].values, dtype=np.int64)
        valid = real & (labels >= 0)
        if not valid.any():
            raise TaskError(
                f"store {name} has no labelled frames (every phone is -1); use a corpus with alignments"
            )
    else:
        labels = np.asarray(ds["speaker"].values).astype(str)[utt_index]
        valid = real
    rng = np.random.default_rng(config.seed)
    pos = np.flatnonzero(valid)
    keep = sample_per_group(utt_index[pos], config.frames_per_utt, rng)
    rows = pos[keep]
    return "hidden", rows, labels[rows], utt_index[rows]


def label_cca_table(stores: Sequence[xr.Dataset], config: LabelsConfig) -> xr.Dataset:
    """Cross-validated label-CCA of every layer of every store, for each label kind.

    Returns:
        Dataset ``label_cca (model, label, layer)`` (NaN where a model has fewer layers), plus
        ``n_samples``/``n_classes (model, label)`` and the per-model facts.

    Raises:
        TaskError: a store lacks the requested labels.
        ConfigError: duplicate model ids or missing layers.
    """
    import xarray as xr

    from deepwide.store import corpus_ids

    facts = _unique_ids(stores)
    max_layer = max(int(ds["layer"].values.max()) for ds in stores)
    layer_coord = np.arange(max_layer + 1)
    scores = np.full((len(stores), len(config.labels), layer_coord.size), np.nan)
    n_samples = np.zeros((len(stores), len(config.labels)), dtype=np.int64)
    n_classes = np.zeros_like(n_samples)
    for s, ds in enumerate(stores):
        layers = resolve_layers(ds, config.layers)
        for k, label in enumerate(config.labels):
            var, rows, labels, groups = _label_rows(ds, label, config.level_of(label), config)
            n_samples[s, k], n_classes[s, k] = rows.size, np.unique(labels).size
            log.info(
                "label-CCA %s / %s: %d rows, %d classes",
                facts[s].model_id,
                label,
                rows.size,
                n_classes[s, k],
            )
            with warnings_to_log(f"{facts[s].model_id} / {label}", log):
                for layer in progress(layers, desc=f"{facts[s].model_id} {label}"):
                    x = as_float64(read_rows(ds, var, layer, rows))  # refuses NaN/Inf
                    scores[s, k, layer] = label_cca(
                        x,
                        labels,
                        folds=config.folds,
                        seed=config.seed,
                        groups=groups,
                        reg=config.reg,
                    )
    return xr.Dataset(
        {
            "label_cca": (("model", "label", "layer"), scores),
            "n_samples": (("model", "label"), n_samples),
            "n_classes": (("model", "label"), n_classes),
            **_facts_vars(facts),
        },
        coords={
            "model": np.array([f.model_id for f in facts], dtype=object),
            "label": np.array(config.labels, dtype=object),
            "layer": layer_coord,
        },
        attrs={
            "corpus_id": corpus_ids(stores),
            "seed": int(config.seed),
            "folds": int(config.folds),
            "level": config.level,
            "frames_per_utt": int(config.frames_per_utt),
        },
    )


def spectrum_table(stores: Sequence[xr.Dataset], config: SpectrumConfig) -> xr.Dataset:
    """Effective rank and participation ratio of every layer of every store (streamed).

    Returns:
        Dataset ``effective_rank``, ``participation_ratio`` ``(model, layer)`` (NaN where a
        model has fewer layers), ``n_samples (model)`` and the per-model facts.
    """
    import xarray as xr

    from deepwide.store import corpus_ids

    facts = _unique_ids(stores)
    max_layer = max(int(ds["layer"].values.max()) for ds in stores)
    layer_coord = np.arange(max_layer + 1)
    erank = np.full((len(stores), layer_coord.size), np.nan)
    pratio = np.full_like(erank, np.nan)
    n_samples = np.zeros(len(stores), dtype=np.int64)
    for s, ds in enumerate(stores):
        if config.level == "utt":
            var, rows = "pooled", np.arange(ds.sizes["utt"])
        else:
            _, _, utt_index, real = frame_table(ds)
            var = "hidden"
            rng = np.random.default_rng(config.seed)
            pos = np.flatnonzero(real)
            rows = pos[sample_per_group(utt_index[pos], config.frames_per_utt, rng)]
        n_samples[s] = rows.size
        for layer in progress(
            resolve_layers(ds, config.layers), desc=f"{facts[s].model_id} spectrum"
        ):
            acc = CovarianceAccumulator(int(ds.sizes["feat"]))
            for sl in row_blocks(rows.size, config.block_rows):
                acc.update(read_rows(ds, var, layer, rows[sl]))
            lam = acc.eigenvalues()
            erank[s, layer] = effective_rank_from_eigenvalues(lam)
            pratio[s, layer] = participation_ratio_from_eigenvalues(lam)
    return xr.Dataset(
        {
            "effective_rank": (("model", "layer"), erank),
            "participation_ratio": (("model", "layer"), pratio),
            "n_samples": ("model", n_samples),
            **_facts_vars(facts),
        },
        coords={"model": np.array([f.model_id for f in facts], dtype=object), "layer": layer_coord},
        attrs={
            "corpus_id": corpus_ids(stores),
            "seed": int(config.seed),
            "level": config.level,
            "frames_per_utt": int(config.frames_per_utt),
        },
    )
