"""The similarity grid: every selected layer of model A against every layer of model B.

:func:`similarity_grid` compares two stores of the same corpus on the *same* sampled frames
(:func:`~deepwide.analysis.stores.sample_shared_frames`), optionally with the grid against a
null store (a ``random:`` twin of model B), and returns the ``Similarity`` layout of
docs/results-schema.md. Linear CKA streams row blocks through
:class:`~deepwide.analysis.cka.LinearCKAAccumulator` (memory independent of the number of
frames); RBF CKA, SVCCA and PWCCA hold one layer's sampled rows per side.

xarray is imported inside the functions that need it, so importing this module (and the
``deepwide analyze`` CLI) stays cheap.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from deepwide.analysis.cca import ViewBasis
from deepwide.analysis.cka import LinearCKAAccumulator, as_float64
from deepwide.analysis.configs import SimilarityConfig
from deepwide.analysis.measures import MEASURES, Measure
from deepwide.analysis.progress import progress, warnings_to_log
from deepwide.analysis.stores import (
    model_facts,
    read_rows,
    resolve_layers,
    row_blocks,
    sample_shared_frames,
)
from deepwide.errors import ConfigError

if TYPE_CHECKING:
    import xarray as xr

log = logging.getLogger(__name__)

#: RBF CKA builds n × n Grams: refuse more sampled rows than this (2 GB per float64 Gram).
MAX_RBF_SAMPLES = 16_000
#: prepared per-layer views of model B (SVD bases, Grams) are cached up to this many bytes
PREPARED_CACHE_BYTES = 1 << 30


def _streaming_grid(
    sides_a: list[tuple[xr.Dataset, int]],
    sides_b: list[tuple[xr.Dataset, int]],
    rows_a: list[np.ndarray],
    rows_b: list[np.ndarray],
    *,
    debiased: bool,
    block_rows: int,
) -> np.ndarray:
    """Linear CKA grid; each side is a list of (store, layer) with the store's frame rows."""
    dims_a = [int(ds.sizes["feat"]) for ds, _ in sides_a]
    dims_b = [int(ds.sizes["feat"]) for ds, _ in sides_b]
    acc = LinearCKAAccumulator(dims_a, dims_b)
    n = rows_a[0].shape[0]
    for sl in progress(list(row_blocks(n, block_rows)), desc="CKA blocks"):
        chunk_a = [
            read_rows(ds, "hidden", layer, r[sl])
            for (ds, layer), r in zip(sides_a, rows_a, strict=True)
        ]
        chunk_b = [
            read_rows(ds, "hidden", layer, r[sl])
            for (ds, layer), r in zip(sides_b, rows_b, strict=True)
        ]
        acc.update(chunk_a, chunk_b)
    return acc.similarity(debiased=debiased)


def _pairwise_grid(
    measure: Measure,
    sides_a: list[tuple[xr.Dataset, int]],
    sides_b: list[tuple[xr.Dataset, int]],
    rows_a: list[np.ndarray],
    rows_b: list[np.ndarray],
) -> np.ndarray:
    """Grid of a pairwise measure: one prepared layer of A at a time, B prepared views cached."""
    assert measure.prepare is not None and measure.compare is not None
    grid = np.full((len(sides_a), len(sides_b)), np.nan)
    cache: dict[int, Any] = {}
    cached_bytes = 0

    def prepared_b(j: int) -> Any:
        nonlocal cached_bytes
        if j in cache:
            return cache[j]
        ds, layer = sides_b[j]
        view = measure.prepare(as_float64(read_rows(ds, "hidden", layer, rows_b[j])))
        size = _nbytes(view)
        if cached_bytes + size <= PREPARED_CACHE_BYTES:
            cache[j] = view
            cached_bytes += size
        return view

    for i in progress(range(len(sides_a)), desc="layers of A"):
        ds, layer = sides_a[i]
        view_a = measure.prepare(as_float64(read_rows(ds, "hidden", layer, rows_a[i])))
        for j in range(len(sides_b)):
            grid[i, j] = measure.compare(view_a, prepared_b(j))
    return grid


def _nbytes(obj: Any) -> int:
    if isinstance(obj, np.ndarray):
        return int(obj.nbytes)
    if isinstance(obj, ViewBasis):
        return int(obj.q.nbytes + obj.s.nbytes + obj.vt.nbytes)
    return 0


def similarity_grid(
    store_a: xr.Dataset,
    store_b: xr.Dataset,
    config: SimilarityConfig,
    *,
    null: xr.Dataset | None = None,
) -> xr.Dataset:
    """Similarity between every selected layer of A and of B on the same sampled frames.

    Args:
        store_a: feature store of model A (rows of the grid).
        store_b: feature store of model B (columns).
        config: measure, frames per utterance, layers, seed.
        null: optional store of a null model for B (e.g. its ``random:`` twin); adds
            ``null_similarity``, computed on the same frames.

    Returns:
        Dataset ``similarity (layer_a, layer_b)`` (+ ``null_similarity``) with the attrs of
        docs/results-schema.md.

    Raises:
        StoreError: stores of different corpora, with no shared frames, or pooled-only.
        ConfigError: a requested layer that does not exist, or too many rows for RBF CKA.
    """
    import xarray as xr

    from deepwide.store import corpus_ids

    measure = MEASURES.get(config.measure)
    stores = [store_a, store_b] + ([null] if null is not None else [])
    layers_a = resolve_layers(store_a, config.layers_a)
    layers_b = resolve_layers(store_b, config.layers_b)
    if null is not None:
        resolve_layers(null, layers_b)
    sample = sample_shared_frames(stores, config.frames_per_utt, config.seed)
    n = sample.rows[0].shape[0]
    log.info(
        "%s: %d frames from %d shared utterances, %d × %d layers%s",
        measure.name,
        n,
        sample.n_utts,
        len(layers_a),
        len(layers_b),
        " (+ null)" if null is not None else "",
    )
    if measure.name == "cka-rbf" and n > MAX_RBF_SAMPLES:
        raise ConfigError(
            f"cka-rbf builds {n} × {n} Gram matrices (limit {MAX_RBF_SAMPLES} rows); lower --frames-per-utt"
        )
    sides_a = [(store_a, layer) for layer in layers_a]
    rows_a = [sample.rows[0]] * len(sides_a)
    sides_b = [(store_b, layer) for layer in layers_b]
    rows_b = [sample.rows[1]] * len(sides_b)
    if null is not None:
        sides_b += [(null, layer) for layer in layers_b]
        rows_b += [sample.rows[2]] * len(layers_b)
    if measure.streaming:
        grid = _streaming_grid(
            sides_a,
            sides_b,
            rows_a,
            rows_b,
            debiased=measure.debiased,
            block_rows=config.block_rows,
        )
    else:
        with warnings_to_log(measure.name, log):
            grid = _pairwise_grid(measure, sides_a, sides_b, rows_a, rows_b)
    nb = len(layers_b)
    facts_a, facts_b = model_facts(store_a), model_facts(store_b)
    data_vars: dict[str, Any] = {"similarity": (("layer_a", "layer_b"), grid[:, :nb])}
    if null is not None:
        data_vars["null_similarity"] = (("layer_a", "layer_b"), grid[:, nb:])
    return xr.Dataset(
        data_vars,
        coords={"layer_a": np.asarray(layers_a), "layer_b": np.asarray(layers_b)},
        attrs={
            "measure": measure.name,
            "model_a": facts_a.model_id,
            "model_b": facts_b.model_id,
            "null_model": model_facts(null).model_id if null is not None else "",
            "corpus_id": corpus_ids(stores),
            "n_samples": int(n),
            "n_utts": int(sample.n_utts),
            "frames_per_utt": int(config.frames_per_utt),
            "seed": int(config.seed),
            "num_layers_a": facts_a.num_layers,
            "num_layers_b": facts_b.num_layers,
        },
    )
