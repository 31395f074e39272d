"""Writing a feature store: create its skeleton, write regions, record progress, finalize.

The schema is :mod:`deepwide.store`. A store is created in a temporary folder and renamed
into place, so it either exists with its whole skeleton or not at all; chunk files are
replaced atomically by zarr, so killing a writer never leaves a torn chunk. The writer's
bookkeeping (plan, one progress file per shard, lock files) lives in the store's
``.deepwide`` sub-group; a writer refuses a store made by another model, corpus or
configuration (:func:`check_identity`).

A store on an fsspec URL (not ``file://``) is created in place, without bookkeeping, by one
writer that writes every batch and then marks it complete (:func:`mark_complete`); nothing
there can be renamed atomically, locked or resumed.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
import zarr

from deepwide.config import atomic_write_json
from deepwide.errors import StoreError
from deepwide.locks import file_lock, pid_alive
from deepwide.store import (
    BOOKKEEPING,
    FRAME_COORDS,
    IDENTITY_ATTRS,
    JSON_ATTRS,
    OPTIONAL_UTT_STRING_COORDS,
    REQUIRED_ATTRS,
    SCHEMA_VERSION,
    UTT_INT_COORDS,
    UTT_STRING_COORDS,
    bookkeeping_dir,
    is_store,
    json_attr,
    local_path,
    read_attrs,
    read_completion,
    zarr_location,
)

log = logging.getLogger(__name__)


def _host() -> str:
    return socket.gethostname()


# ---------------------------------------------------------------------------------------------
# creation
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StoreSkeleton:
    """Everything a store is created with, before any feature is computed.

    Attributes:
        utt_coords: name -> (N,) array for every name in :data:`UTT_STRING_COORDS` +
            :data:`UTT_INT_COORDS` (strings as object arrays).
        frame_coords: name -> (F,) array for :data:`FRAME_COORDS`, or ``None`` without frames.
        layers: stored layer indices.
        dim: feature width D.
        dtype: ``hidden`` dtype (``float16``/``float32``).
        attrs: root attributes (:data:`REQUIRED_ATTRS`; JSON ones as Python values or strings).
        frame_chunk: frames per ``hidden`` chunk.
        utt_chunk: utterances per ``pooled`` chunk.
        plan: JSON-able writer plan kept in the bookkeeping group (batches, shards …).
        shards: number of shards the store is written in.
    """

    utt_coords: Mapping[str, np.ndarray]
    frame_coords: Mapping[str, np.ndarray] | None
    layers: tuple[int, ...]
    dim: int
    dtype: str
    attrs: Mapping[str, Any]
    frame_chunk: int
    utt_chunk: int
    plan: Mapping[str, Any] = field(default_factory=dict)
    shards: int = 1


def default_chunks(dim: int, dtype: str) -> tuple[int, int]:
    """(frames per ``hidden`` chunk ≈ 4 MiB, utterances per ``pooled`` chunk ≈ 1 MiB), powers of 2."""
    item = np.dtype(dtype).itemsize
    frames = 1 << max(8, int(np.log2(max(1, (4 << 20) // (dim * item)))))
    utts = 1 << max(6, int(np.log2(max(1, (1 << 20) // (dim * 4)))))
    return frames, utts


def _compressors() -> tuple[Any, ...]:
    # Hidden states are noisy floats that compress to ~0.9 of their size whatever the codec
    # (zstd, blosc-zstd with byte or bit shuffle, lz4 were measured): the cheapest of them,
    # plain zstd at level 1, keeps the writer's CPU share small.
    return (zarr.codecs.ZstdCodec(level=1),)


def _attr_value(key: str, value: Any) -> Any:
    if key in JSON_ATTRS and not isinstance(value, str):
        return json.dumps(value, sort_keys=True)
    if isinstance(value, np.generic):
        return value.item()
    return value


def create_store(
    path: str | Path, skeleton: StoreSkeleton, *, before_rename: Callable[[], None] | None = None
) -> bool:
    """Create the store at ``path`` with its coords, attrs and pre-allocated (unwritten) arrays.

    The store is built in a temporary folder next to ``path`` and renamed into place, so
    concurrent creators race safely: exactly one wins, the others find the store there. On an
    fsspec URL it is written in place without bookkeeping (its single writer keeps the plan).

    Args:
        path: where the store goes (a local folder or an fsspec URL).
        skeleton: coords, attrs, shapes and the writer plan.
        before_rename: called once the temporary store is complete (a test hook; local only).

    Returns:
        True if this call created the store, False if a store already existed at ``path``.

    Raises:
        StoreError: ``path`` exists and is neither an empty folder nor a deepwide store.
    """
    if local_path(path) is None:
        return _create_url_store(str(path), skeleton)
    p = bookkeeping_dir(path).parent
    if p.exists():
        if p.is_dir() and not any(p.iterdir()):
            pass  # an empty folder made by the user: rename replaces it
        elif is_store(p):
            return False
        else:
            raise StoreError(f"{p} exists and is not a deepwide feature store; choose another --out")
    p.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(p)
    tmp = p.parent / f".{p.name}.tmp-{_host()}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        _write_skeleton(tmp, skeleton)
        if before_rename is not None:
            before_rename()
        try:
            os.rename(tmp, p)
        except OSError:
            if is_store(p):
                return False
            raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    log.info("created feature store %s", p)
    return True


def _create_url_store(url: str, skeleton: StoreSkeleton) -> bool:
    """:func:`create_store` on an fsspec URL: in place, no bookkeeping group."""
    from fsspec.core import url_to_fs  # zarr's URL stores need fsspec anyway

    if is_store(url):
        return False
    fs, root = url_to_fs(url)
    if fs.exists(root) and (not fs.isdir(root) or fs.ls(root, detail=False)):
        raise StoreError(f"{url} exists and is not a deepwide feature store; choose another --out")
    _write_skeleton(url, skeleton, bookkeeping=False)
    log.info("created feature store %s (no bookkeeping on a URL: written in one go)", url)
    return True


def _remove_stale_temps(p: Path) -> None:
    """Delete ``.NAME.tmp-HOST-PID`` folders of creators on this host that are gone."""
    prefix = f".{p.name}.tmp-{_host()}-"
    for cand in p.parent.glob(f".{p.name}.tmp-*"):
        if cand.name.startswith(prefix):
            pid = cand.name[len(prefix):]
            if pid.isdigit() and not pid_alive(int(pid)):
                shutil.rmtree(cand, ignore_errors=True)


def _write_skeleton(tmp: Path | str, sk: StoreSkeleton, *, bookkeeping: bool = True) -> None:
    n_utt = len(sk.utt_coords["utt_id"])
    coords: dict[str, Any] = {"layer": ("layer", np.asarray(sk.layers, dtype=np.int64))}
    for name in UTT_STRING_COORDS + tuple(n for n in OPTIONAL_UTT_STRING_COORDS if n in sk.utt_coords):
        coords[name] = ("utt", np.asarray(sk.utt_coords[name], dtype=object))
    for name in UTT_INT_COORDS:
        coords[name] = ("utt", np.asarray(sk.utt_coords[name], dtype=np.int64))
    if sk.frame_coords is not None:
        for name, dt in FRAME_COORDS.items():
            coords[name] = ("frame", np.asarray(sk.frame_coords[name], dtype=dt))
    attrs = {k: _attr_value(k, v) for k, v in sk.attrs.items()}
    attrs["completion"] = json.dumps({"complete": False, "shards": sk.shards, "done": []})
    attrs["schema_version"] = SCHEMA_VERSION
    missing = [k for k in REQUIRED_ATTRS if k not in attrs]
    if missing:
        raise ValueError(f"store attrs lack {missing}")
    xr.Dataset(coords=coords, attrs=attrs).to_zarr(
        str(tmp), mode="w-", consolidated=False, zarr_format=3
    )
    group = zarr.open_group(str(tmp), mode="r+", zarr_format=3)
    n_layers = len(sk.layers)
    if sk.frame_coords is not None:
        n_frames = len(sk.frame_coords["utt_index"])
        group.create_array(
            "hidden",
            shape=(n_layers, n_frames, sk.dim),
            chunks=(1, max(1, min(sk.frame_chunk, n_frames)), sk.dim),
            dtype=sk.dtype,
            fill_value=np.nan,
            compressors=_compressors(),
            dimension_names=("layer", "frame", "feat"),
        )
    group.create_array(
        "pooled",
        shape=(n_layers, n_utt, sk.dim),
        chunks=(1, max(1, min(sk.utt_chunk, n_utt)), sk.dim),
        dtype="float32",
        fill_value=np.nan,
        compressors=_compressors(),
        dimension_names=("layer", "utt", "feat"),
    )
    if not bookkeeping:
        return
    tmp = Path(tmp)
    group.create_group(BOOKKEEPING, attributes={"about": "deepwide writer bookkeeping"})
    book = tmp / BOOKKEEPING
    (book / "shards").mkdir(parents=True, exist_ok=True)
    (book / "locks").mkdir(parents=True, exist_ok=True)
    atomic_write_json(book / "plan.json", dict(sk.plan, shards=sk.shards))


# ---------------------------------------------------------------------------------------------
# writing
# ---------------------------------------------------------------------------------------------
def open_arrays(path: str | Path) -> tuple[zarr.Array | None, zarr.Array]:
    """``(hidden or None, pooled)`` zarr arrays of a store, opened for writing."""
    group = zarr.open_group(zarr_location(path), mode="r+", zarr_format=3)
    hidden = group["hidden"] if "hidden" in group else None
    return hidden, group["pooled"]  # type: ignore[return-value]


def write_region(
    array: zarr.Array, start: int, block: np.ndarray, *, lock: Path | None = None
) -> None:
    """Write ``block`` (layers, n, D) into ``array[:, start:start+n, :]``.

    Writes that cover whole chunks touch nobody else's data and run unlocked; a write that
    covers part of a chunk is a read-modify-write of that chunk, so it runs under ``lock``
    (a file lock shared by every writer of the store) when one is given.
    """
    n = block.shape[1]
    if n == 0:
        return
    chunk = array.chunks[1]
    end = start + n
    whole = start % chunk == 0 and (end % chunk == 0 or end == array.shape[1])
    if whole or lock is None:
        array[:, start:end, :] = block
    else:
        with file_lock(lock):
            array[:, start:end, :] = block


def write_shard_state(path: str | Path, shard: int, state: Mapping[str, Any]) -> None:
    """Atomically replace the progress file of ``shard``."""
    atomic_write_json(bookkeeping_dir(path) / "shards" / f"{shard}.json", dict(state))


def finalize_store(path: str | Path) -> bool:
    """Mark the store complete if every shard is done. Safe to call from any shard's writer.

    Returns:
        True when the store is (now) complete.
    """
    book = bookkeeping_dir(path)
    with file_lock(book / "finalize.lock"):
        attrs = read_attrs(path)
        comp = read_completion(path, attrs)
        if comp.complete:
            return True
        if comp.missing:
            return False
        mark_complete(book.parent, comp.shards)
    return True


def mark_complete(path: str | Path, shards: int = 1) -> None:
    """Write the completion record ``complete`` (every one of ``shards`` shards done).

    :func:`finalize_store` calls it once the progress files say every shard is done; a store
    on an fsspec URL has no progress files, so its one writer calls it after its last write.
    """
    group = zarr.open_group(zarr_location(path), mode="r+", zarr_format=3)
    group.attrs["completion"] = json.dumps({"complete": True, "shards": shards, "done": list(range(shards))})
    log.info("feature store %s is complete", path)


# ---------------------------------------------------------------------------------------------
# identity
# ---------------------------------------------------------------------------------------------
def check_identity(path: str | Path, expected: Mapping[str, Any]) -> None:
    """Refuse to write into a store made by another model, corpus or configuration.

    Args:
        path: existing store.
        expected: values of :data:`IDENTITY_ATTRS` for this run (JSON ones as Python values).

    Raises:
        StoreError: naming the first attribute that differs.
    """
    attrs = read_attrs(path)
    for key, words in IDENTITY_ATTRS.items():
        have = json_attr(attrs, key) if key in JSON_ATTRS else attrs.get(key)
        want = expected[key]
        if key == "extract_config" and isinstance(have, dict) and isinstance(want, dict):
            for sub in sorted(set(have) | set(want)):
                if have.get(sub) != want.get(sub):
                    raise StoreError(
                        f"store {path} was made with {sub}={have.get(sub)!r} but this run asks for "
                        f"{sub}={want.get(sub)!r}; a store is never appended to with another "
                        f"configuration: use another --out or delete the store"
                    )
        if _canonical(have) != _canonical(want):
            raise StoreError(
                f"store {path} was made with {words} {_short(have)} but this run has "
                f"{_short(want)}; a store is never appended to by another model, corpus or "
                f"configuration: use another --out or delete the store"
            )


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _short(value: Any) -> str:
    s = _canonical(value) if not isinstance(value, str) else value
    return repr(s if len(s) <= 60 else s[:57] + "...")


def check_shards(path: str | Path, shards: int) -> None:
    """Raise :class:`StoreError` unless the store was planned for ``shards`` shards."""
    have = read_completion(path).shards
    if have != shards:
        raise StoreError(
            f"store {path} is written in {have} shard(s), not {shards}; "
            f"use --shard k/{have} (or no --shard to write every missing shard)"
        )


