"""The feature-store schema, and reading it: open, validate, completion, info.

A feature store is a Zarr v3 group, one per model × corpus, read and written through xarray:

- ``hidden (layer, frame, feat)`` float16/float32: frame-level states of every stored frame of
  every utterance, concatenated along ``frame`` (ragged). Utterance ``u`` owns rows
  ``frame_offset[u] : frame_offset[u] + n_stored[u]``. Chunked one layer at a time and in
  blocks of frames. Absent when the store was made with ``--frames none``.
- ``pooled (layer, utt, feat)`` float32: the mean over *all* valid frames of each utterance.
- coords on ``utt``: ``utt_id, speaker, split, sid_split, kind, keyword, intent, emotion, text``
  (strings, ``""`` when absent), ``n_frames`` (valid model frames), ``n_stored`` (rows of
  ``hidden`` it owns), ``frame_offset`` (int64 row of its first stored frame; 0 when nothing
  is stored); on ``frame``: ``utt_index`` (int32), ``frame_index`` (int32 position of the frame
  in its utterance), ``phone`` (int16 index into ``phone_set``, -1 none); ``layer``: the
  stored layer indices (0 = input to the first transformer layer).
- attrs: see :data:`REQUIRED_ATTRS`. JSON-valued attrs are JSON strings. ``completion`` is
  ``{"complete": bool, "shards": n, "done": [k, ...]}``; ``skipped`` lists
  ``[utt_id, reason]`` of utterances left out by ``--on-bad-audio skip``.

Phone label of frame ``t``: the phone segment ``[start, end)`` containing the frame centre
``t * 0.02 + 0.0125`` s (the centre of the 400-sample window of the 320-sample hop grid at
16 kHz), or -1 when no segment covers it (:func:`deepwide.framing.phone_labels`).

Bookkeeping that only writers need lives in the ``.deepwide`` sub-group (a plan of batches
and shards, one progress file per shard, lock files); xarray ignores it. Readers read the
plan and the progress files for a store's completion; creating, writing and finalizing a
store is :mod:`deepwide.store_writer`.

A store may live on an fsspec URL (``memory://NAME``, ``s3://…``; ``file://`` URLs are local
folders): every reader here opens it through zarr's fsspec support. Such a store is written
in one go without bookkeeping (no shards, no resume, no locks) and read by its completion
attr alone.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
import zarr

from deepwide.errors import StoreError

SCHEMA_VERSION = 1

#: Name of the bookkeeping sub-group inside a store.
BOOKKEEPING = ".deepwide"

UTT_STRING_COORDS = (
    "utt_id", "speaker", "split", "sid_split", "kind", "keyword", "intent", "emotion", "text",
)
#: Utterance strings written since deepwide 0.2 (older stores lack them; readers see ``""``):
#: ``phones``, the utterance's phone segments as space-separated symbols (silence included);
#: ``folds``, its split in each fold of the corpus's cross-validation protocol, comma-separated
#: (``"train,dev,test,train,train"``; written only by corpora with folds, e.g. ``iemocap:``).
OPTIONAL_UTT_STRING_COORDS = ("phones", "folds")
UTT_INT_COORDS = ("n_frames", "n_stored", "frame_offset")
FRAME_COORDS = {"utt_index": np.int32, "frame_index": np.int32, "phone": np.int16}

#: Attributes every store carries (JSON-valued ones marked in :data:`JSON_ATTRS`).
REQUIRED_ATTRS = (
    "schema_version", "model_id", "model_config", "model_weights_hash", "model_params",
    "num_layers", "dim", "corpus_id", "manifest_hash", "phone_set", "label_sets", "trials",
    "frame_rate_hz", "dtype", "frames_mode", "deepwide_version", "completion", "skipped",
    "extract_config",
)
JSON_ATTRS = ("model_config", "phone_set", "label_sets", "trials", "completion", "skipped", "extract_config")

#: Attributes that decide whether a store may be resumed by a run: name -> words for messages.
IDENTITY_ATTRS = {
    "schema_version": "schema version",
    "model_id": "model",
    "model_weights_hash": "model weights (hash)",
    "model_config": "model config",
    "corpus_id": "corpus",
    "manifest_hash": "corpus manifest (hash)",
    "extract_config": "extraction setting",
}


# ---------------------------------------------------------------------------------------------
# paths, attrs and completion (the plan and the progress files a reader needs)
# ---------------------------------------------------------------------------------------------
def local_path(path: str | Path) -> Path | None:
    """``Path`` for a local store (``file://`` URLs included), ``None`` for any other fsspec
    URL (``memory://``, ``s3://`` …: no bookkeeping there, see :data:`URL_UNSUPPORTED`)."""
    s = str(path)
    if "://" in s and not s.startswith("file://"):
        return None
    return Path(s.removeprefix("file://")).expanduser()


def zarr_location(path: str | Path) -> str:
    """What zarr and xarray open for ``path``: the local folder, or the fsspec URL as given."""
    p = local_path(path)
    return str(p) if p is not None else str(path)


#: What a store on an fsspec URL (not ``file://``) does not support, and what to do instead.
URL_UNSUPPORTED = "is not supported on fsspec URLs; write to a local folder and copy it"


def bookkeeping_dir(path: str | Path) -> Path:
    """Folder of the ``.deepwide`` bookkeeping group of a local store.

    Raises:
        StoreError: ``path`` is an fsspec URL (the writer's plan, progress and lock files need
            a local folder).
    """
    p = local_path(path)
    if p is None:
        raise StoreError(f"{path}: the writer's bookkeeping (plan, progress and lock files) {URL_UNSUPPORTED}")
    return p / BOOKKEEPING


def is_store(path: str | Path) -> bool:
    """True when ``path`` holds a Zarr group with deepwide attrs (cheap: reads one JSON file)."""
    p = local_path(path)
    if p is not None and not (p / "zarr.json").is_file():
        return False
    try:
        attrs = read_attrs(path)
    except StoreError:
        return False
    return "schema_version" in attrs and "model_id" in attrs


def read_attrs(path: str | Path) -> dict[str, Any]:
    """The store's root attributes (JSON attrs left as strings).

    Raises:
        StoreError: no Zarr group at ``path``.
    """
    p = local_path(path)
    if p is not None and not p.exists():
        raise StoreError(f"no feature store at {path}; run `deepwide extract --out {path}` first")
    try:
        group = zarr.open_group(zarr_location(path), mode="r", zarr_format=3)
    except Exception as exc:  # zarr raises several types for a folder that is not a group
        raise StoreError(f"{path} is not a Zarr v3 feature store ({type(exc).__name__}); check the path") from exc
    return dict(group.attrs)


def json_attr(attrs: Mapping[str, Any], key: str) -> Any:
    """The value of attr ``key`` of ``attrs``, parsed when it is a JSON string (None if absent)."""
    value = attrs.get(key)
    return json.loads(value) if isinstance(value, str) else value


def read_plan(path: str | Path) -> dict[str, Any]:
    """The writer plan saved at creation (batches, shards, per-utterance sample counts)."""
    f = bookkeeping_dir(path) / "plan.json"
    if not f.is_file():
        raise StoreError(f"{path} has no writer plan (.deepwide/plan.json); it was not made by deepwide extract")
    return json.loads(f.read_text())


def read_shard_state(path: str | Path, shard: int) -> dict[str, Any]:
    """Progress of ``shard``: ``{"next_batch": int | None, "done": bool, ...}`` (empty if
    unstarted, and on an fsspec URL, where nothing records progress)."""
    if local_path(path) is None:
        return {}
    f = bookkeeping_dir(path) / "shards" / f"{shard}.json"
    if not f.is_file():
        return {}
    return json.loads(f.read_text())


@dataclass(frozen=True)
class Completion:
    """Which shards of a store are written.

    Attributes:
        complete: every shard is done (and the store was finalized).
        shards: number of shards n.
        done: finished shard indices.
        progress: shard -> fraction of its batches written, for unfinished shards.
    """

    complete: bool
    shards: int
    done: tuple[int, ...]
    progress: Mapping[int, float] = field(default_factory=dict)

    @property
    def missing(self) -> tuple[int, ...]:
        return tuple(k for k in range(self.shards) if k not in self.done)

    def describe(self) -> str:
        """One line: ``complete`` or which shards are missing."""
        if self.complete:
            return f"complete ({self.shards} shard{'s' if self.shards != 1 else ''})"
        if not self.missing:
            return "incomplete: every shard is written but the store was not finalized (rerun extract)"
        parts = []
        for k in self.missing:
            frac = self.progress.get(k, 0.0)
            parts.append(f"{k} ({frac:.0%} written)" if frac > 0 else f"{k} (not started)")
        return (
            f"incomplete: {len(self.done)}/{self.shards} shards done; missing shard"
            f"{'s' if len(parts) != 1 else ''} {', '.join(parts)}"
        )


def read_completion(path: str | Path, attrs: Mapping[str, Any] | None = None) -> Completion:
    """Completion of a store, from its ``completion`` attr and (locally) its shard files."""
    attrs = read_attrs(path) if attrs is None else attrs
    try:
        rec = json_attr(attrs, "completion") or {}
        shards = int(rec.get("shards", 1))
        done = {int(k) for k in rec.get("done", [])}
        complete = bool(rec.get("complete", False))
    except (ValueError, TypeError, AttributeError) as exc:
        raise StoreError(f"{path}: malformed completion record ({exc}); re-extract the store") from exc
    progress: dict[int, float] = {}
    p = local_path(path)
    if not complete and p is not None and (p / BOOKKEEPING / "plan.json").is_file():
        plan = read_plan(path)
        starts = plan.get("shard_starts", [0] * (shards + 1))
        for k in range(shards):
            state = read_shard_state(path, k)
            if state.get("done"):
                done.add(k)
            elif state.get("next_batch") is not None:
                total = max(1, starts[k + 1] - starts[k])
                progress[k] = (int(state["next_batch"]) - starts[k]) / total
    return Completion(complete=complete, shards=shards, done=tuple(sorted(done)), progress=progress)


# ---------------------------------------------------------------------------------------------
# reading, validation, info
# ---------------------------------------------------------------------------------------------
def corpus_ids(stores: Sequence[xr.Dataset]) -> str:
    """The corpus ids of ``stores``, sorted, comma-separated (the ``corpus_id`` attr of results)."""
    return ", ".join(sorted({str(ds.attrs.get("corpus_id", "")) for ds in stores} - {""}))


def store_source(ds: xr.Dataset) -> str:
    """Where an opened store lives (its path), else its model id (for messages)."""
    src = ds.encoding.get("source") if hasattr(ds, "encoding") else None
    return str(src) if src else str(ds.attrs.get("model_id", "<in memory>"))


def _fix_hint(ds: xr.Dataset) -> str:
    src = ds.encoding.get("source") if hasattr(ds, "encoding") else None
    target = str(src) if src else "PATH"
    return f"check it with `deepwide store validate --data {target}` and re-extract it"


def check_finite(values: np.ndarray, ds: xr.Dataset, array: str, layer: int) -> None:
    """Refuse features that hold NaN/Inf (one-line :class:`StoreError`).

    A chunk that was never written (or was deleted) reads as the fill value, NaN, so this is
    how a damaged store, or one marked complete before it was, shows up in a reader.

    Args:
        values: ``(n, D)`` (or any shape) features just read from ``ds[array]``.
        ds: the store they came from.
        array: ``"hidden"`` or ``"pooled"``.
        layer: the model layer number they belong to.

    Raises:
        StoreError: naming the store, the array, the layer and the fix.
    """
    finite = np.isfinite(values)
    if finite.all():
        return
    bad = int(finite.size - np.count_nonzero(finite))
    raise StoreError(
        f"store {store_source(ds)}: `{array}` layer {int(layer)} holds {bad:,} non-finite "
        f"value(s) (NaN/Inf; an unwritten or deleted chunk reads as NaN); {_fix_hint(ds)}"
    )


def phone_set_of(ds: xr.Dataset) -> list[str]:
    """The store's ``phone_set``, after checking the frame ``phone`` labels index into it.

    Returns:
        Phone names; frame label ``i`` (``0 ≤ i < len``) is ``phone_set[i]``, ``-1`` is none.

    Raises:
        StoreError: labels outside ``-1 .. len(phone_set) - 1``, a repeated phone name, or a
            ``phone_set`` that is not a JSON list (one line, naming the store and the fix).
    """
    raw = ds.attrs.get("phone_set", "[]")
    try:
        phones = json.loads(raw) if isinstance(raw, str) else list(raw)
    except (TypeError, ValueError):
        phones = None
    if not isinstance(phones, list):
        raise StoreError(f"store {store_source(ds)}: attr phone_set is not a JSON list; {_fix_hint(ds)}")
    phones = [str(p) for p in phones]
    if len(set(phones)) != len(phones):
        dup = sorted({p for p in phones if phones.count(p) > 1})
        raise StoreError(
            f"store {store_source(ds)}: phone_set names {', '.join(map(repr, dup))} more than once, "
            f"so its labels are ambiguous; {_fix_hint(ds)}"
        )
    if "phone" in ds.coords and ds["phone"].size:
        labels = np.asarray(ds["phone"].values)
        lo, hi = int(labels.min()), int(labels.max())
        if lo < -1 or hi >= len(phones):
            raise StoreError(
                f"store {store_source(ds)}: frame phone labels run {lo}..{hi} but phone_set has "
                f"{len(phones)} phone(s) (valid labels -1..{len(phones) - 1}), so labels and "
                f"phone_set disagree; {_fix_hint(ds)}"
            )
    return phones


def _corpus_name(ds: xr.Dataset) -> str:
    return str(ds.attrs.get("model_id", "store"))


def check_same_corpus(stores: Sequence[xr.Dataset], *, same_utterances: bool = False) -> None:
    """Refuse stores that were not extracted from the same corpus (one-line :class:`StoreError`).

    The one reader-side check of "these stores describe the same audio": equal ``corpus_id``
    and ``manifest_hash`` and frame rate; with ``same_utterances`` also the same set of
    ``utt_id`` (a random-init twin must be scored on exactly the utterances of its model).

    Args:
        stores: opened stores; the first is compared with each other one.
        same_utterances: also require identical ``utt_id`` sets.

    Raises:
        StoreError: naming both stores and what differs.
    """
    import math

    first = stores[0]
    for other in stores[1:]:
        for key in ("corpus_id", "manifest_hash"):
            va, vb = first.attrs.get(key), other.attrs.get(key)
            if (va is None) != (vb is None) and same_utterances:
                va, vb = va or "<none>", vb or "<none>"
            if va is not None and vb is not None and str(va) != str(vb):
                raise StoreError(
                    f"stores {_corpus_name(first)} and {_corpus_name(other)} were made on different "
                    f"corpora ({key} {va!r} vs {vb!r}); extract both from the same manifest"
                )
        ra, rb = first.attrs.get("frame_rate_hz", 50.0), other.attrs.get("frame_rate_hz", 50.0)
        if not math.isclose(float(ra), float(rb)):
            raise StoreError(
                f"stores {_corpus_name(first)} and {_corpus_name(other)} have different frame rates "
                f"({ra} vs {rb} Hz); frames cannot be matched"
            )
        if same_utterances:
            ua = {str(u) for u in np.asarray(first["utt_id"].values)}
            ub = {str(u) for u in np.asarray(other["utt_id"].values)}
            if ua != ub:
                raise StoreError(
                    f"stores {_corpus_name(first)} ({store_source(first)}) and {_corpus_name(other)} "
                    f"({store_source(other)}) hold different utterances ({len(ua - ub)} only in the "
                    f"first, {len(ub - ua)} only in the second), so they cannot be scored on the same "
                    f"test utterances; extract both with the same corpus manifest and --splits"
                )


def _open_dataset(path: str | Path) -> xr.Dataset:
    p = local_path(path)
    if p is not None and not p.exists():
        raise StoreError(f"no feature store at {path}; run `deepwide extract --out {path}` first")
    try:
        return xr.open_zarr(zarr_location(path), consolidated=False, chunks=None, zarr_format=3)
    except Exception as exc:  # zarr/xarray raise many types for a non-store
        raise StoreError(f"{path} is not a readable Zarr v3 feature store ({type(exc).__name__}: {exc}); check the path") from exc


def schema_problems(ds: xr.Dataset) -> list[str]:
    """Structural problems of an opened store (attrs, variables, coords, dims); reads no data."""
    problems: list[str] = []
    attrs = ds.attrs
    missing = [k for k in REQUIRED_ATTRS if k not in attrs]
    if missing:
        problems.append(f"missing attrs {missing}")
    version = attrs.get("schema_version")
    if version is not None and version != SCHEMA_VERSION:
        problems.append(f"schema version {version} (this deepwide reads {SCHEMA_VERSION})")
    for key in JSON_ATTRS:
        if key in attrs:
            try:
                json_attr(attrs, key)
            except (TypeError, ValueError):
                problems.append(f"attr {key} is not valid JSON")
    if "pooled" not in ds:
        problems.append("no `pooled` variable")
    elif ds["pooled"].dims != ("layer", "utt", "feat"):
        problems.append(f"`pooled` has dims {ds['pooled'].dims}, expected (layer, utt, feat)")
    frames_mode = attrs.get("frames_mode", "all")
    if frames_mode != "none":
        if "hidden" not in ds:
            problems.append(f"no `hidden` variable although frames_mode is {frames_mode!r}")
        elif ds["hidden"].dims != ("layer", "frame", "feat"):
            problems.append(f"`hidden` has dims {ds['hidden'].dims}, expected (layer, frame, feat)")
        for name in FRAME_COORDS:
            if name not in ds.coords:
                problems.append(f"missing frame coord {name}")
            elif ds[name].dims != ("frame",):
                problems.append(f"coord {name} has dims {ds[name].dims}, expected (frame,)")
    for name in UTT_STRING_COORDS + UTT_INT_COORDS:
        if name not in ds.coords:
            problems.append(f"missing utt coord {name}")
        elif ds[name].dims != ("utt",):
            problems.append(f"coord {name} has dims {ds[name].dims}, expected (utt,)")
    if "layer" not in ds.coords:
        problems.append("missing layer coord")
    if "dim" in attrs and "feat" in ds.sizes and ds.sizes["feat"] != attrs["dim"]:
        problems.append(f"feat size {ds.sizes['feat']} != dim attr {attrs['dim']}")
    if "num_layers" in attrs and "layer" in ds.coords:
        layers = np.asarray(ds["layer"].values)
        if layers.size and (layers.min() < 0 or layers.max() > int(attrs["num_layers"])):
            problems.append(f"layer coord {layers.tolist()} outside 0..{attrs['num_layers']}")
    return problems


def open_store(path: str | Path, *, require_complete: bool = True) -> xr.Dataset:
    """Open a feature store lazily (xarray, ``chunks=None``: nothing is read until indexed).

    String coordinates come back as object arrays; ``hidden``/``pooled`` stay lazy, so
    ``ds.hidden.sel(layer=4).values`` reads one layer.

    Args:
        path: the store (a local folder or an fsspec URL).
        require_complete: refuse a store whose extraction has not finished.

    Returns:
        The store as an ``xr.Dataset`` (schema in the module docstring).

    Raises:
        StoreError: missing, unreadable, of another schema, or incomplete (one-line reason).
    """
    ds = _open_dataset(path)
    problems = schema_problems(ds)
    if problems:
        raise StoreError(
            f"store {path} does not follow the deepwide store schema v{SCHEMA_VERSION}: "
            f"{problems[0]}; re-extract it with this deepwide"
        )
    if require_complete:
        comp = read_completion(path, ds.attrs)
        if not comp.complete and local_path(path) is None:
            raise StoreError(
                f"store {path} is incomplete: its extraction did not finish, and resuming "
                f"{URL_UNSUPPORTED} (or delete it and extract again)"
            )
        if not comp.complete:
            raise StoreError(
                f"store {path} is {comp.describe()}; finish it by rerunning the same "
                f"`deepwide extract` command (with each missing --shard)"
            )
    strings = {name: ("utt", ds[name].values.astype(object)) for name in UTT_STRING_COORDS}
    for name in OPTIONAL_UTT_STRING_COORDS:
        values = ds[name].values.astype(object) if name in ds.coords else np.full(ds.sizes["utt"], "", dtype=object)
        strings[name] = ("utt", values)
    return ds.assign_coords(strings)


def validate_store(path: str | Path, *, data: bool = True) -> list[str]:
    """Check a store's schema, coordinate consistency and completeness.

    Args:
        path: the store.
        data: also check that every chunk of ``hidden``/``pooled`` was written and that
            ``pooled`` is finite (reads ``pooled``, lists chunk files).

    Returns:
        Problems, one line each; empty when the store is valid and complete.
    """
    try:
        ds = _open_dataset(path)
    except StoreError as exc:
        return [str(exc)]
    problems = schema_problems(ds)
    if problems:
        return problems
    attrs = ds.attrs
    comp = read_completion(path, attrs)
    if not comp.complete:
        problems.append(comp.describe())
    n_utt = ds.sizes["utt"]
    n_frames = ds["n_frames"].values
    n_stored = ds["n_stored"].values
    offset = ds["frame_offset"].values
    if np.any(n_frames < 1):
        problems.append(f"{int(np.sum(n_frames < 1))} utterances have n_frames < 1")
    if np.any(n_stored > n_frames):
        problems.append("some utterances store more frames than they have (n_stored > n_frames)")
    ids = ds["utt_id"].values
    if len(set(ids.tolist())) != n_utt:
        problems.append("utt_id values repeat")
    mode = attrs["frames_mode"]
    if mode != "none":
        f_total = ds.sizes["frame"]
        expect_offset = np.concatenate([[0], np.cumsum(n_stored)[:-1]]) if n_utt else n_stored
        if not np.array_equal(offset, expect_offset) or int(n_stored.sum()) != f_total:
            problems.append("frame_offset/n_stored do not tile the frame dimension")
        else:
            utt_index = ds["utt_index"].values
            frame_index = ds["frame_index"].values
            if not np.array_equal(utt_index, np.repeat(np.arange(n_utt), n_stored)):
                problems.append("utt_index disagrees with frame_offset/n_stored")
            elif f_total and (frame_index.min() < 0 or np.any(frame_index >= n_frames[utt_index])):
                problems.append("frame_index outside 0..n_frames-1 of its utterance")
        if mode == "all" and not np.array_equal(n_stored, n_frames):
            problems.append("frames_mode is 'all' but n_stored != n_frames")
        if mode.startswith("sample:"):
            k = int(mode.split(":")[1])
            if not np.array_equal(n_stored, np.minimum(n_frames, k)):
                problems.append(f"frames_mode is {mode!r} but n_stored != min(n_frames, {k})")
        n_phones = len(json_attr(attrs, "phone_set"))
        phone = ds["phone"].values
        if phone.size and (phone.min() < -1 or phone.max() >= n_phones):
            problems.append(f"phone labels outside -1..{n_phones - 1}")
    elif np.any(n_stored != 0):
        problems.append("frames_mode is 'none' but some n_stored != 0")
    stored = set(ids.tolist())
    bad_trials = [t for t in json_attr(attrs, "trials") if t[0] not in stored or t[1] not in stored]
    if bad_trials:
        problems.append(f"{len(bad_trials)} trials name utterances not in the store")
    if data and comp.complete:
        problems.extend(_data_problems(path, ds))
    return problems


def _data_problems(path: str | Path, ds: xr.Dataset) -> list[str]:
    problems: list[str] = []
    group = zarr.open_group(zarr_location(path), mode="r", zarr_format=3)
    for name in ("hidden", "pooled"):
        if name in group:
            arr = group[name]
            if arr.nchunks_initialized < arr.nchunks:
                problems.append(
                    f"`{name}` has {arr.nchunks - arr.nchunks_initialized} of {arr.nchunks} "
                    f"chunks unwritten although the store is marked complete"
                )
    for i in range(ds.sizes["layer"]):
        pooled = ds["pooled"].isel(layer=i).values
        if not np.isfinite(pooled).all():
            problems.append(f"pooled layer {int(ds['layer'].values[i])} holds NaN/Inf")
            break
    return problems


@dataclass(frozen=True)
class StoreInfo:
    """A summary of a store for ``deepwide store info``."""

    path: str
    model_id: str
    num_layers: int
    dim: int
    model_params: int
    weights_hash: str
    corpus_id: str
    manifest_hash: str
    splits: list[str] | None
    layers: list[int]
    frames_mode: str
    dtype: str
    n_utt: int
    n_frames_total: int
    n_stored_total: int
    audio_s: float
    nbytes: dict[str, int]
    disk_bytes: int | None
    skipped: list[list[str]]
    completion: Completion

    def lines(self) -> list[str]:
        """Human-readable lines, one fact each."""
        layers = self.layers
        contiguous = layers == list(range(layers[0], layers[-1] + 1)) if layers else False
        layer_text = f"{layers[0]}..{layers[-1]}" if contiguous and len(layers) > 2 else ",".join(map(str, layers))
        sizes = ", ".join(f"{k} {_fmt_bytes(v)}" for k, v in self.nbytes.items())
        disk = f" ({_fmt_bytes(self.disk_bytes)} on disk)" if self.disk_bytes is not None else ""
        frames = (
            f"{self.frames_mode}: {self.n_stored_total:,} of {self.n_frames_total:,} frames stored, {self.dtype}"
            if self.frames_mode != "none"
            else f"none: pooled only ({self.n_frames_total:,} frames pooled)"
        )
        out = [
            f"store      {self.path}",
            f"model      {self.model_id}: {self.num_layers} layers × {self.dim}, "
            f"{self.model_params:,} params, weights {self.weights_hash[:12]}",
            f"corpus     {self.corpus_id} (manifest {self.manifest_hash}), splits "
            f"{','.join(self.splits) if self.splits else 'all'}",
            f"layers     {layer_text} ({len(layers)} stored)",
            f"utterances {self.n_utt:,} ({_fmt_seconds(self.audio_s)} of model frames)",
            f"frames     {frames}",
            f"size       {sizes}{disk}",
            f"skipped    {len(self.skipped)} utterance(s)"
            + (f", e.g. {self.skipped[0][0]}: {self.skipped[0][1]}" if self.skipped else ""),
            f"status     {self.completion.describe()}",
        ]
        return out


def _fmt_seconds(s: float) -> str:
    return f"{s:.1f} s" if s < 600 else f"{s / 3600:.2f} h"


def _fmt_bytes(n: int | None) -> str:
    if n is None:
        return "?"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"


def store_info(path: str | Path) -> StoreInfo:
    """Summarise a store (complete or not) without reading features.

    Raises:
        StoreError: not a readable store of this schema.
    """
    ds = _open_dataset(path)
    problems = schema_problems(ds)
    if problems:
        raise StoreError(f"store {path} does not follow the deepwide store schema: {problems[0]}")
    attrs = ds.attrs
    cfg = json_attr(attrs, "extract_config") or {}
    n_frames = ds["n_frames"].values
    rate = float(attrs.get("frame_rate_hz", 50.0))
    nbytes = {name: int(ds[name].size * ds[name].dtype.itemsize) for name in ("hidden", "pooled") if name in ds}
    p = local_path(path)
    disk = None
    if p is not None:
        disk = sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
    return StoreInfo(
        path=str(path),
        model_id=str(attrs["model_id"]),
        num_layers=int(attrs["num_layers"]),
        dim=int(attrs["dim"]),
        model_params=int(attrs["model_params"]),
        weights_hash=str(attrs["model_weights_hash"]),
        corpus_id=str(attrs["corpus_id"]),
        manifest_hash=str(attrs["manifest_hash"]),
        splits=cfg.get("splits"),
        layers=[int(x) for x in ds["layer"].values],
        frames_mode=str(attrs["frames_mode"]),
        dtype=str(attrs["dtype"]),
        n_utt=int(ds.sizes["utt"]),
        n_frames_total=int(n_frames.sum()),
        n_stored_total=int(ds["n_stored"].values.sum()),
        audio_s=float(n_frames.sum()) / rate,
        nbytes=nbytes,
        disk_bytes=disk,
        skipped=list(json_attr(attrs, "skipped") or []),
        completion=read_completion(path, attrs),
    )
