"""Store-level analysis: similarity grids, label-CCA and spectra per layer, with nulls.

Everything here reads feature stores (schema: ../shared/ARCHITECTURE.md, ``deepwide.store``)
lazily, one layer at a time, and returns xarray results in the layout of
docs/results-schema.md (Similarity, Labels, Spectrum), which :func:`write_result` writes as
NetCDF + CSV atomically.

- :func:`similarity_grid`: a ``(layer_a, layer_b)`` grid between two stores of the same corpus
  on the *same* sampled frames (matched by ``utt_id`` and ``frame_index``; K random frames
  per shared utterance), optionally with the grid against a null store (a ``random:`` twin of
  model B). Linear CKA streams row blocks through :class:`~deepwide.analysis.cka.LinearCKAAccumulator`
  (memory independent of the number of frames); RBF CKA, SVCCA and PWCCA hold one layer's
  sampled rows per side.
- :func:`label_cca_table`: cross-validated CCA between each layer and one-hot phone (frame
  level) or speaker (utterance-pooled, or frame level) labels.
- :func:`spectrum_table`: effective rank and participation ratio of each layer's covariance.

xarray is imported inside the functions that need it, so importing this module (and the
``deepwide analyze`` CLI) stays cheap.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from deepwide.analysis.cca import (
    ViewBasis,
    keep_for_variance,
    label_cca,
    pwcca_from_bases,
    svcca_from_bases,
    view_basis,
)
from deepwide.analysis.cka import LinearCKAAccumulator, as_float64, gram_rbf
from deepwide.analysis.spectrum import (
    CovarianceAccumulator,
    effective_rank_from_eigenvalues,
    participation_ratio_from_eigenvalues,
)
from deepwide.config import atomic_write_netcdf, atomic_write_text, config_to_dict, dump_toml
from deepwide.errors import ConfigError, StoreError, TaskError
from deepwide.registry import Registry

if TYPE_CHECKING:
    import xarray as xr

log = logging.getLogger(__name__)

#: RBF CKA builds n × n Grams: refuse more sampled rows than this (2 GB per float64 Gram).
MAX_RBF_SAMPLES = 16_000
#: prepared per-layer views of model B (SVD bases, Grams) are cached up to this many bytes
PREPARED_CACHE_BYTES = 1 << 30


# --------------------------------------------------------------------------------------------
# Measures


@dataclass(frozen=True)
class Measure:
    """A layer-grid similarity measure.

    Attributes:
        name: CLI / results name.
        description: one line for help texts.
        streaming: computed in one pass by :class:`LinearCKAAccumulator` (linear CKA).
        debiased: for streaming measures, use the unbiased HSIC estimator.
        prepare: for pairwise measures, ``(n, d) float64 → prepared view`` (once per layer).
        compare: for pairwise measures, ``(prepared a, prepared b) → similarity``.
    """

    name: str
    description: str
    streaming: bool = False
    debiased: bool = False
    prepare: Callable[[np.ndarray], Any] | None = None
    compare: Callable[[Any, Any], float] | None = None


MEASURES: Registry[Measure] = Registry("measure")


def _prepare_rbf(x: np.ndarray) -> np.ndarray:
    k = gram_rbf(x, threshold=0.5)
    k -= k.mean(axis=0, keepdims=True)
    k -= k.mean(axis=1, keepdims=True)
    norm = float(np.linalg.norm(k))
    return k / norm if norm > 0 else k * math.nan


def _compare_rbf(ka: np.ndarray, kb: np.ndarray) -> float:
    return float(np.vdot(ka, kb))


def _prepare_svcca(x: np.ndarray) -> ViewBasis:
    basis = view_basis(x)
    return basis.truncated(keep_for_variance(basis.s, 0.99))


for _m in (
    Measure("cka", "linear CKA (biased HSIC), streamed", streaming=True),
    Measure(
        "cka-debiased", "linear CKA with unbiased HSIC, streamed", streaming=True, debiased=True
    ),
    Measure(
        "cka-rbf",
        "RBF-kernel CKA, bandwidth 0.5 × median distance",
        prepare=_prepare_rbf,
        compare=_compare_rbf,
    ),
    Measure(
        "svcca",
        "SVCCA, 99 % variance kept per view",
        prepare=_prepare_svcca,
        compare=lambda a, b: svcca_from_bases(a, b, variance=1.0),
    ),
    Measure(
        "pwcca",
        "PWCCA weighted by model A's neurons",
        prepare=view_basis,
        compare=lambda a, b: pwcca_from_bases(a, b, weights_from="x"),
    ),
):
    MEASURES.add(_m.name, _m)


# --------------------------------------------------------------------------------------------
# Configs


def parse_layers(spec: str | None) -> tuple[int, ...]:
    """Parse a layer list such as ``"0,4,8"``, ``"0-12"``, ``"0-12:4"`` or ``"all"`` (→ ``()``).

    Raises:
        ConfigError: on a malformed spec.
    """
    if spec is None or spec.strip().lower() in ("", "all"):
        return ()
    out: list[int] = []
    for part in spec.split(","):
        part = part.strip()
        m = re.fullmatch(r"(\d+)(?:-(\d+)(?::(\d+))?)?", part)
        if not m:
            raise ConfigError(f"bad layer spec {spec!r}; use e.g. 0,4,8 or 0-12 or 0-12:2 or all")
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) else lo
        step = int(m.group(3)) if m.group(3) else 1
        if hi < lo or step < 1:
            raise ConfigError(f"bad layer range {part!r} in {spec!r}")
        out.extend(range(lo, hi + 1, step))
    return tuple(sorted(set(out)))


@dataclass(frozen=True)
class SimilarityConfig:
    """Options of a similarity grid.

    Attributes:
        measure: a name in :data:`MEASURES`.
        frames_per_utt: K random shared frames per utterance (0 = every shared frame).
        layers_a: layers of model A (empty = all).
        layers_b: layers of model B and of the null (empty = all).
        seed: seed of the frame sample.
        block_rows: rows per streamed block (linear CKA).
    """

    measure: str = "cka-debiased"
    frames_per_utt: int = 10
    layers_a: tuple[int, ...] = ()
    layers_b: tuple[int, ...] = ()
    seed: int = 0
    block_rows: int = 2048

    def __post_init__(self) -> None:
        MEASURES.get(self.measure)
        if self.frames_per_utt < 0:
            raise ValueError(f"frames_per_utt must be ≥ 0 (0 = all), got {self.frames_per_utt}")
        if self.block_rows < 16:
            raise ValueError(f"block_rows must be ≥ 16, got {self.block_rows}")


LABEL_KINDS = ("phone", "speaker")


@dataclass(frozen=True)
class LabelsConfig:
    """Options of the label-CCA table.

    Attributes:
        labels: label kinds, each ``phone`` or ``speaker``.
        level: ``auto`` (phone → frame, speaker → utt), ``frame`` or ``utt`` (pooled).
        frames_per_utt: at frame level, K random labelled frames per utterance (0 = all).
        folds: cross-validation folds (utterance-disjoint at frame level).
        reg: relative ridge on the representation covariance.
        seed: seed of the frame sample and of the folds.
        layers: layers to analyse (empty = all).
    """

    labels: tuple[str, ...] = ("phone", "speaker")
    level: str = "auto"
    frames_per_utt: int = 10
    folds: int = 5
    reg: float = 1e-3
    seed: int = 0
    layers: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not self.labels:
            raise ValueError("need at least one label kind")
        for lab in self.labels:
            if lab not in LABEL_KINDS:
                raise ValueError(f"unknown label {lab!r}; valid labels: {', '.join(LABEL_KINDS)}")
        if self.level not in ("auto", "frame", "utt"):
            raise ValueError(f"level must be auto, frame or utt, got {self.level!r}")
        if self.level == "utt" and "phone" in self.labels:
            raise ValueError("phone labels are frame-level; use level frame or auto")
        if self.frames_per_utt < 0 or self.folds < 2 or self.reg < 0:
            raise ValueError("need frames_per_utt ≥ 0, folds ≥ 2 and reg ≥ 0")

    def level_of(self, label: str) -> str:
        """The level a label kind is measured at."""
        if self.level != "auto":
            return self.level
        return "frame" if label == "phone" else "utt"


@dataclass(frozen=True)
class SpectrumConfig:
    """Options of the spectrum table.

    Attributes:
        level: ``frame`` (stored frames) or ``utt`` (pooled).
        frames_per_utt: at frame level, K random frames per utterance (0 = all stored).
        seed: seed of the frame sample.
        block_rows: rows per streamed block.
        layers: layers to analyse (empty = all).
    """

    level: str = "frame"
    frames_per_utt: int = 0
    seed: int = 0
    block_rows: int = 8192
    layers: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.level not in ("frame", "utt"):
            raise ValueError(f"level must be frame or utt, got {self.level!r}")
        if self.frames_per_utt < 0 or self.block_rows < 16:
            raise ValueError("need frames_per_utt ≥ 0 and block_rows ≥ 16")


# --------------------------------------------------------------------------------------------
# Stores


def open_feature_store(path: str | Path) -> xr.Dataset:
    """Open a complete feature store lazily (:func:`deepwide.store.open_store`, which validates
    the schema and the completion record).

    Raises:
        StoreError: missing, unreadable or incomplete store.
    """
    from deepwide.store import open_store

    return open_store(path)


@dataclass(frozen=True)
class ModelFacts:
    """Per-model facts carried by every result with a ``model`` dim (see results schema)."""

    model_id: str
    num_layers: int
    dim: int
    params: int
    is_null: bool
    null_of: str


def model_facts(ds: xr.Dataset) -> ModelFacts:
    """Read :class:`ModelFacts` from a store's attrs."""
    model_id = str(ds.attrs.get("model_id", "unknown"))
    num_layers = int(ds.attrs.get("num_layers", ds.sizes["layer"] - 1))
    dim = int(ds.attrs.get("dim", ds.sizes["feat"]))
    params = int(ds.attrs.get("model_params", -1))
    is_null = model_id.startswith("random:")
    return ModelFacts(
        model_id, num_layers, dim, params, is_null, model_id[len("random:") :] if is_null else ""
    )


def _store_name(ds: xr.Dataset) -> str:
    return str(ds.attrs.get("model_id", "store"))


def _resolve_layers(ds: xr.Dataset, layers: Sequence[int]) -> list[int]:
    available = [int(v) for v in ds["layer"].values]
    if not layers:
        return available
    bad = [layer for layer in layers if layer not in available]
    if bad:
        raise ConfigError(
            f"model {_store_name(ds)} has layers {available[0]}..{available[-1]}; "
            f"layer(s) {', '.join(map(str, bad))} do not exist"
        )
    return list(layers)


def _layer_pos(ds: xr.Dataset, layer: int) -> int:
    return int(np.flatnonzero(ds["layer"].values == layer)[0])


def read_rows(ds: xr.Dataset, var: str, layer: int, rows: np.ndarray) -> np.ndarray:
    """Read the given rows of one layer of ``hidden`` (frames) or ``pooled`` (utts).

    Only the store chunks holding those rows are read (orthogonal indexing on the lazy array).

    Args:
        ds: an open store.
        var: ``"hidden"`` or ``"pooled"``.
        layer: layer number (the ``layer`` coordinate).
        rows: ``(m,)`` integer row positions along ``frame`` / ``utt``, any order.

    Returns:
        ``(m, feat)`` array in the order of ``rows``, in the store's dtype.

    Raises:
        StoreError: the rows hold NaN/Inf (a missing chunk reads as NaN): a damaged store.
    """
    from deepwide.store import check_finite

    dim = "frame" if var == "hidden" else "utt"
    rows = np.asarray(rows, dtype=np.int64)
    order = np.argsort(rows, kind="stable")
    data = ds[var].isel({"layer": _layer_pos(ds, layer), dim: rows[order]}).values
    check_finite(data, ds, var, layer)
    out = np.empty_like(data)
    out[order] = data
    return out


def _frame_table(ds: xr.Dataset) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per stored frame: utt_id (str), frame_index, utt_index, and whether it is a real frame.

    A frame is real when ``0 ≤ frame_index < n_frames`` of its utterance (padding excluded).
    """
    if ds.sizes.get("frame", 0) == 0:
        raise StoreError(
            f"store {_store_name(ds)} holds no frames (pooled only); re-extract with frames"
        )
    utt_index = np.asarray(ds["utt_index"].values, dtype=np.int64)
    frame_index = np.asarray(ds["frame_index"].values, dtype=np.int64)
    utt_ids = np.asarray(ds["utt_id"].values).astype(str)
    valid = frame_index >= 0
    if "n_frames" in ds.coords:
        valid &= frame_index < np.asarray(ds["n_frames"].values, dtype=np.int64)[utt_index]
    return utt_ids[utt_index], frame_index, utt_index, valid


def _sample_per_group(groups: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Boolean mask keeping at most ``k`` random rows of each group (all rows if k == 0)."""
    if k == 0:
        return np.ones(groups.shape[0], dtype=bool)
    priority = rng.random(groups.shape[0])
    order = np.lexsort((priority, groups))
    sorted_groups = groups[order]
    starts = np.flatnonzero(np.r_[True, sorted_groups[1:] != sorted_groups[:-1]])
    counts = np.diff(np.r_[starts, sorted_groups.shape[0]])
    rank = np.arange(sorted_groups.shape[0]) - np.repeat(starts, counts)
    keep = np.zeros(groups.shape[0], dtype=bool)
    keep[order[rank < k]] = True
    return keep


def check_same_corpus(stores: Sequence[xr.Dataset]) -> None:
    """Refuse stores made on different corpora or frame rates (one-line :class:`StoreError`).

    The check itself is :func:`deepwide.store.check_same_corpus`, shared with ``probe --null``.
    """
    from deepwide.store import check_same_corpus as check

    check(stores)


@dataclass(frozen=True)
class FrameSample:
    """Frames shared by several stores, with their row positions in each.

    Attributes:
        utt_id: ``(n,)`` utterance id of each sampled frame.
        frame_index: ``(n,)`` frame index (50 Hz grid) within the utterance.
        rows: one ``(n,)`` array of ``frame`` positions per store, aligned.
        n_utts: number of utterances contributing frames.
    """

    utt_id: np.ndarray
    frame_index: np.ndarray
    rows: tuple[np.ndarray, ...]
    n_utts: int


def sample_shared_frames(
    stores: Sequence[xr.Dataset], frames_per_utt: int, seed: int
) -> FrameSample:
    """Sample the same K frames per utterance in every store.

    Frames are matched by ``(utt_id, frame_index)``; of the frames present in every store,
    ``frames_per_utt`` per shared utterance are drawn with ``seed`` (0 = all). The draw does
    not depend on the stores' row order.

    Raises:
        StoreError: different corpora or frame rates, no frames, or nothing shared.
    """
    check_same_corpus(stores)
    tables = [_frame_table(ds) for ds in stores]
    shared_utts = set(np.unique(tables[0][0][tables[0][3]]))
    for utt, _, _, valid in tables[1:]:
        shared_utts &= set(np.unique(utt[valid]))
    if not shared_utts:
        names = " and ".join(_store_name(ds) for ds in stores)
        raise StoreError(
            f"stores {names} share no utterances; extract them from the same corpus split"
        )
    vocab = np.array(sorted(shared_utts))
    stride = int(max(int(t[1].max()) for t in tables)) + 1
    keys, positions = [], []
    for utt, fidx, _, valid in tables:
        code = np.searchsorted(vocab, utt)
        inside = valid & (code < vocab.size) & (vocab[np.minimum(code, vocab.size - 1)] == utt)
        keys.append(code[inside] * stride + fidx[inside])
        positions.append(np.flatnonzero(inside))
    common = keys[0]
    for k in keys[1:]:
        common = np.intersect1d(common, k)
    if common.size == 0:
        raise StoreError(
            "the stores share utterances but no frames; were they extracted with different frame samples?"
        )
    rng = np.random.default_rng(seed)
    common = np.sort(common[_sample_per_group(common // stride, frames_per_utt, rng)])
    rows = []
    for k, pos in zip(keys, positions, strict=True):
        order = np.argsort(k, kind="stable")
        rows.append(pos[order[np.searchsorted(k[order], common)]])
    codes = common // stride
    n_utts = int(np.unique(codes).size)
    if frames_per_utt and common.size < 0.5 * frames_per_utt * n_utts:
        log.warning(
            "only %.1f frames per utterance are stored in every store (asked for %d); stores "
            "extracted with --frames sample:K and different seeds share few frames: use the same "
            "seed, or --frames all",
            common.size / n_utts,
            frames_per_utt,
        )
    return FrameSample(vocab[codes].astype(object), common % stride, tuple(rows), n_utts)


# --------------------------------------------------------------------------------------------
# Similarity


def _blocks(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


@contextlib.contextmanager
def _warnings_to_log(context: str) -> Iterator[None]:
    """Collect warnings raised per layer and log each distinct message once."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for message in dict.fromkeys(str(w.message) for w in caught):
        log.warning("%s: %s", context, message)


def _progress(iterable: Any, **kwargs: Any) -> Any:
    from tqdm.auto import tqdm

    return tqdm(iterable, disable=None, leave=False, **kwargs)


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
    for sl in _progress(list(_blocks(n, block_rows)), desc="CKA blocks"):
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

    for i in _progress(range(len(sides_a)), desc="layers of A"):
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
    layers_a = _resolve_layers(store_a, config.layers_a)
    layers_b = _resolve_layers(store_b, config.layers_b)
    if null is not None:
        _resolve_layers(null, layers_b)
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
        with _warnings_to_log(measure.name):
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


# --------------------------------------------------------------------------------------------
# Labels and spectra


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

    name = _store_name(ds)
    if label == "speaker" and "speaker" not in ds.coords:
        raise TaskError(f"store {name} has no speaker labels; use a corpus with speakers")
    if level == "utt":
        rows = np.arange(ds.sizes["utt"])
        return "pooled", rows, np.asarray(ds["speaker"].values).astype(str), None
    _, _, utt_index, real = _frame_table(ds)
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
    keep = _sample_per_group(utt_index[pos], config.frames_per_utt, rng)
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
        layers = _resolve_layers(ds, config.layers)
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
            with _warnings_to_log(f"{facts[s].model_id} / {label}"):
                for layer in _progress(layers, desc=f"{facts[s].model_id} {label}"):
                    x = as_float64(read_rows(ds, var, layer, rows))  # refuses NaN/Inf
                    scores[s, k, layer] = label_cca(
                        x, labels, folds=config.folds, seed=config.seed, groups=groups, reg=config.reg
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
            _, _, utt_index, real = _frame_table(ds)
            var = "hidden"
            rng = np.random.default_rng(config.seed)
            pos = np.flatnonzero(real)
            rows = pos[_sample_per_group(utt_index[pos], config.frames_per_utt, rng)]
        n_samples[s] = rows.size
        for layer in _progress(
            _resolve_layers(ds, config.layers), desc=f"{facts[s].model_id} spectrum"
        ):
            acc = CovarianceAccumulator(int(ds.sizes["feat"]))
            for sl in _blocks(rows.size, config.block_rows):
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


# --------------------------------------------------------------------------------------------
# Writing and printing


def sanitize_id(model_id: str) -> str:
    """Model id made safe for file names (``[^A-Za-z0-9_.-]`` → ``-``)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "-", model_id)


def similarity_stem(ds: xr.Dataset) -> str:
    """File stem ``similarity_<measure>_<model_a>__<model_b>`` of a similarity result."""
    return f"similarity_{ds.attrs['measure']}_{sanitize_id(ds.attrs['model_a'])}__{sanitize_id(ds.attrs['model_b'])}"


def write_result(ds: xr.Dataset, out_dir: str | Path, stem: str, config: Any) -> list[Path]:
    """Write ``<stem>.nc``, ``<stem>.csv`` and ``<stem>.config.toml`` atomically.

    Args:
        ds: the result.
        out_dir: output folder (created).
        stem: file stem.
        config: the frozen config that produced it (also stored as the ``config`` attr).

    Returns:
        The written paths.
    """
    from deepwide import __version__

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ds = ds.copy()
    ds.attrs.update(
        config=json.dumps(config_to_dict(config), sort_keys=True),
        deepwide_version=__version__,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    nc = out / f"{stem}.nc"
    atomic_write_netcdf(nc, ds)
    csv = out / f"{stem}.csv"
    atomic_write_text(csv, ds.to_dataframe().to_csv())
    cfg = out / f"{stem}.config.toml"
    dump_toml(config, cfg)
    log.info("wrote %s, %s", nc, csv)
    return [nc, csv, cfg]


def _grid_lines(
    values: np.ndarray, rows: Sequence[Any], cols: Sequence[Any], corner: str
) -> list[str]:
    width = max(6, len(corner))
    lines = [f"{corner:>{width}} " + " ".join(f"{c!s:>6}" for c in cols)]
    for r, row in zip(rows, values, strict=True):
        lines.append(
            f"{r!s:>{width}} "
            + " ".join("   nan" if not np.isfinite(v) else f"{v:6.3f}" for v in row)
        )
    return lines


def format_similarity(ds: xr.Dataset) -> str:
    """Compact text table of a similarity grid (rows: layers of A, columns: layers of B)."""
    a = ds.attrs
    lines = [
        f"{a['measure']} similarity: {a['model_a']} (rows) vs {a['model_b']} (columns), "
        f"{a['n_samples']} frames"
    ]
    lines += _grid_lines(
        ds["similarity"].values, ds["layer_a"].values, ds["layer_b"].values, "a\\b"
    )
    if "null_similarity" in ds:
        lines.append(f"null: {a['model_a']} (rows) vs {a['null_model']} (columns)")
        lines += _grid_lines(
            ds["null_similarity"].values, ds["layer_a"].values, ds["layer_b"].values, "a\\null"
        )
    return "\n".join(lines)


def format_labels(ds: xr.Dataset) -> str:
    """Compact text table of label-CCA per layer (one row per model × label)."""
    rows, values = [], []
    for m in ds["model"].values:
        for lab in ds["label"].values:
            rows.append(f"{m} {lab}")
            values.append(ds["label_cca"].sel(model=m, label=lab).values)
    width = max(len(r) for r in rows)
    rows = [r.ljust(width) for r in rows]
    return "label-CCA (held-out mean canonical correlation) by layer\n" + "\n".join(
        _grid_lines(np.array(values), rows, ds["layer"].values, "layer".ljust(width))
    )


def format_spectrum(ds: xr.Dataset) -> str:
    """Compact text table of effective rank and participation ratio per layer."""
    models = list(ds["model"].values)
    width = max(len(str(m)) for m in models) + 6
    lines = []
    for var, title in (
        ("effective_rank", "effective rank"),
        ("participation_ratio", "participation ratio"),
    ):
        lines.append(f"{title} by layer")
        vals = ds[var].values
        header = f"{'layer':<{width}} " + " ".join(f"{c:>7}" for c in ds["layer"].values)
        lines.append(header)
        for m, row in zip(models, vals, strict=True):
            lines.append(
                f"{m!s:<{width}} "
                + " ".join("    nan" if not np.isfinite(v) else f"{v:7.2f}" for v in row)
            )
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Entry points used by the CLI


@dataclass(frozen=True)
class AnalysisOutput:
    """A computed result, where it was written, and its printable table."""

    result: Any
    paths: list[Path] = field(default_factory=list)
    table: str = ""


def run_similarity(
    a: str | Path,
    b: str | Path,
    out_dir: str | Path,
    config: SimilarityConfig,
    *,
    null: str | Path | None = None,
) -> AnalysisOutput:
    """Open the stores, compute :func:`similarity_grid`, write it and format its table."""
    ds = similarity_grid(
        open_feature_store(a),
        open_feature_store(b),
        config,
        null=open_feature_store(null) if null is not None else None,
    )
    paths = write_result(ds, out_dir, similarity_stem(ds), config)
    return AnalysisOutput(ds, paths, format_similarity(ds))


def run_labels(
    stores: Sequence[str | Path], out_dir: str | Path, config: LabelsConfig
) -> AnalysisOutput:
    """Open the stores, compute :func:`label_cca_table`, write ``labels.nc``/``.csv``."""
    ds = label_cca_table([open_feature_store(p) for p in stores], config)
    paths = write_result(ds, out_dir, "labels", config)
    return AnalysisOutput(ds, paths, format_labels(ds))


def run_spectrum(
    stores: Sequence[str | Path], out_dir: str | Path, config: SpectrumConfig
) -> AnalysisOutput:
    """Open the stores, compute :func:`spectrum_table`, write ``spectrum.nc``/``.csv``."""
    ds = spectrum_table([open_feature_store(p) for p in stores], config)
    paths = write_result(ds, out_dir, "spectrum", config)
    return AnalysisOutput(ds, paths, format_spectrum(ds))
