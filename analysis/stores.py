"""Reading feature stores for analysis: model facts, layer rows and shared frame samples.

Stores (schema: ../shared/ARCHITECTURE.md, ``deepwide.store``) are read lazily, one layer at
a time: :func:`read_rows` reads only the chunks holding the requested rows, and
:func:`sample_shared_frames` draws the *same* frames (matched by ``utt_id`` and
``frame_index``; K random frames per shared utterance) in several stores.

xarray is imported inside the functions that need it, so importing this module (and the
``deepwide analyze`` CLI) stays cheap.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from deepwide.errors import ConfigError, StoreError

if TYPE_CHECKING:
    import xarray as xr

log = logging.getLogger(__name__)


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


def store_name(ds: xr.Dataset) -> str:
    """The store's model id, as error messages name it."""
    return str(ds.attrs.get("model_id", "store"))


def resolve_layers(ds: xr.Dataset, layers: Sequence[int]) -> list[int]:
    """The requested layers (all of the store's when ``layers`` is empty), checked to exist.

    Raises:
        ConfigError: a requested layer is not in the store.
    """
    available = [int(v) for v in ds["layer"].values]
    if not layers:
        return available
    bad = [layer for layer in layers if layer not in available]
    if bad:
        raise ConfigError(
            f"model {store_name(ds)} has layers {available[0]}..{available[-1]}; "
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


def frame_table(ds: xr.Dataset) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per stored frame: utt_id (str), frame_index, utt_index, and whether it is a real frame.

    A frame is real when ``0 ≤ frame_index < n_frames`` of its utterance (padding excluded).
    """
    if ds.sizes.get("frame", 0) == 0:
        raise StoreError(
            f"store {store_name(ds)} holds no frames (pooled only); re-extract with frames"
        )
    utt_index = np.asarray(ds["utt_index"].values, dtype=np.int64)
    frame_index = np.asarray(ds["frame_index"].values, dtype=np.int64)
    utt_ids = np.asarray(ds["utt_id"].values).astype(str)
    valid = frame_index >= 0
    if "n_frames" in ds.coords:
        valid &= frame_index < np.asarray(ds["n_frames"].values, dtype=np.int64)[utt_index]
    return utt_ids[utt_index], frame_index, utt_index, valid


def sample_per_group(groups: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
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
    tables = [frame_table(ds) for ds in stores]
    shared_utts = set(np.unique(tables[0][0][tables[0][3]]))
    for utt, _, _, valid in tables[1:]:
        shared_utts &= set(np.unique(utt[valid]))
    if not shared_utts:
        names = " and ".join(store_name(ds) for ds in stores)
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
    common = np.sort(common[sample_per_group(common // stride, frames_per_utt, rng)])
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


def row_blocks(n: int, size: int) -> Iterator[slice]:
    """Consecutive slices of at most ``size`` of ``n`` rows (the streamed read blocks)."""
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))
