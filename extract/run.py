"""`deepwide extract`: run a model over a corpus and cache its layers in a feature store.

:func:`extract_features` is the library entry point (an encoder and a manifest in hand);
:func:`run_extract` resolves a model spec and a corpus spec first (what the CLI calls).

One run: plan the store (or read the plan of the existing one), refuse a store of another
model/corpus/config, take the writer lock, then for each shard to write: decode and run the
batches (on a CPU in forked single-threaded jobs, :mod:`deepwide.extract.compute`; on an
accelerator in this process, with audio decoded ahead by worker processes) under
``torch.inference_mode``, gather the stored frames and the pooled means, and hand them in
order to the writer thread, which appends them to the store while the next batches run.

A store on an fsspec URL (``memory://``, ``s3://`` …; ``file://`` is a local folder) is
written in one go without bookkeeping: no shards, no locks, no resume (an interrupted one is
refused on a rerun), and marked complete after its last batch.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import shutil
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from deepwide import __version__
from deepwide.corpora.common import subset_utterances
from deepwide.corpora.lexicon import lexicon_phones
from deepwide.corpora.manifest import Manifest, Utterance
from deepwide.devices import resolve_device
from deepwide.errors import (
    ConfigError,
    DiskFullError,
    ModelError,
    StoreError,
    disk_full_message,
    is_disk_full,
)
from deepwide.extract.compute import BatchTask, ForkedJobs, default_jobs, run_batch_task
from deepwide.extract.config import ExtractConfig
from deepwide.extract.faults import fault_point
from deepwide.extract.loading import (
    batch_requests,
    default_workers,
    make_executor,
    prefetch_batches,
)
from deepwide.extract.locks import WriterLock
from deepwide.extract.plan import ExtractPlan, build_plan, plan_from_store
from deepwide.extract.writer import ShardWriter
from deepwide.models.base import SpeechEncoder
from deepwide.store import (
    URL_UNSUPPORTED,
    UTT_STRING_COORDS,
    is_store,
    local_path,
    read_attrs,
    read_completion,
    read_plan,
    read_shard_state,
)
from deepwide.store_writer import (
    StoreSkeleton,
    check_identity,
    check_shards,
    create_store,
    default_chunks,
    finalize_store,
    mark_complete,
    open_arrays,
    write_shard_state,
)
from deepwide.system import torch_threads

log = logging.getLogger(__name__)

#: Stored features compress to about this fraction of their raw size (zstd level 1 on noisy
#: floats, see ``deepwide.store_writer._compressors``); used to estimate the disk a store needs.
COMPRESSED_FRACTION = 0.9

#: Bytes per stored frame of the frame coords (utt_index, frame_index int32; phone int16).
FRAME_COORD_BYTES = 10


@dataclass(frozen=True)
class ExtractReport:
    """What one extraction run did.

    Attributes:
        store: the store path (or fsspec URL).
        created: this run created the store.
        complete: the store is complete after the run.
        shards_written: shards this run worked on.
        batches: batches computed by this run.
        utterances: utterances computed by this run.
        audio_s: audio seconds computed by this run.
        elapsed_s: wall time of the compute loop.
        skipped: utterances left out of the store (bad audio), ``(utt_id, reason)``.
    """

    store: Path | str
    created: bool
    complete: bool
    shards_written: tuple[int, ...]
    batches: int
    utterances: int
    audio_s: float
    elapsed_s: float
    skipped: tuple[tuple[str, str], ...]

    def summary(self) -> str:
        """One line for the command's output."""
        speed = self.audio_s / self.elapsed_s if self.elapsed_s > 0 else float("nan")
        state = "complete" if self.complete else "incomplete (other shards remain)"
        done = (
            f"extracted {self.utterances} utterances ({self.audio_s:.1f} s of audio, "
            f"{speed:.1f}× real time)" if self.batches else "nothing left to extract"
        )
        skipped = f"; {len(self.skipped)} skipped" if self.skipped else ""
        return f"{self.store}: {done}{skipped}; store {state}"


def store_identity(encoder: SpeechEncoder, manifest: Manifest, config: ExtractConfig) -> dict[str, Any]:
    """The identity attrs (:data:`deepwide.store.IDENTITY_ATTRS`) a run of ``encoder`` on ``manifest`` writes."""
    from deepwide.store import SCHEMA_VERSION

    return {
        "schema_version": SCHEMA_VERSION,
        "model_id": str(encoder.model_id),
        "model_weights_hash": str(encoder.weights_hash()),
        "model_config": encoder.config_dict(),
        "corpus_id": manifest.corpus_id,
        "manifest_hash": manifest.content_hash(),
        "extract_config": config.identity(int(encoder.num_layers)),
    }


def build_skeleton(
    plan: ExtractPlan,
    manifest: Manifest,
    selected: Manifest,
    encoder: SpeechEncoder,
    config: ExtractConfig,
    identity: dict[str, Any],
    *,
    frame_chunk: int | None = None,
    utt_chunk: int | None = None,
) -> StoreSkeleton:
    """The coords, attrs and shapes of a new store for ``plan``.

    Args:
        plan: the layout.
        manifest: the whole corpus (phone set, label sets).
        selected: the corpus restricted to the wanted splits (trials).
        encoder: the model.
        config: extraction config.
        identity: :func:`store_identity` of this run.
        frame_chunk, utt_chunk: chunk sizes (default: :func:`deepwide.store_writer.default_chunks`).
    """
    phone_set = list(manifest.phone_set) or sorted(
        {p for u in manifest.utterances for p, _, _ in u.phones if p}
    )
    phone_index = {p: i for i, p in enumerate(phone_set)}

    utt_coords: dict[str, np.ndarray] = {
        name: np.array([getattr(u, name) or "" for u in plan.utts], dtype=object) for name in UTT_STRING_COORDS
    }
    utt_coords["phones"], phone_source = utterance_phones(plan.utts, manifest, config)
    if any(u.folds for u in plan.utts):
        utt_coords["folds"] = np.array([",".join(u.folds) for u in plan.utts], dtype=object)
    utt_coords.update(n_frames=plan.n_frames, n_stored=plan.n_stored, frame_offset=plan.frame_offset)
    frame_coords = plan.frame_coords(phone_index) if config.frames_per_utt != 0 else None
    kept = {u.utt_id for u in plan.utts}
    trials = [[t.utt_a, t.utt_b, int(t.target)] for t in selected.trials if t.utt_a in kept and t.utt_b in kept]
    layers = config.resolve_layers(int(encoder.num_layers))
    dflt_frames, dflt_utts = default_chunks(int(encoder.dim), config.dtype)
    attrs = dict(identity)
    attrs.update(
        model_params=int(encoder.num_params()),
        num_layers=int(encoder.num_layers),
        dim=int(encoder.dim),
        phone_set=phone_set,
        label_sets=manifest.label_sets(),
        trials=trials,
        frame_rate_hz=float(encoder.frame_rate_hz),
        dtype=config.dtype if config.frames_per_utt != 0 else "float32",
        frames_mode=config.frames,
        deepwide_version=__version__,
        completion={"complete": False, "shards": plan.n_shards, "done": []},
        skipped=[list(s) for s in plan.skipped],
    )
    if phone_source is not None:
        attrs["phone_source"] = json.dumps(phone_source, sort_keys=True)
    return StoreSkeleton(
        utt_coords=utt_coords,
        frame_coords=frame_coords,
        layers=layers,
        dim=int(encoder.dim),
        dtype=config.dtype,
        attrs=attrs,
        frame_chunk=frame_chunk or dflt_frames,
        utt_chunk=utt_chunk or dflt_utts,
        plan=plan.to_json(),
        shards=plan.n_shards,
    )


def utterance_phones(
    utts: Sequence[Utterance], manifest: Manifest, config: ExtractConfig
) -> tuple[np.ndarray, dict[str, Any] | None]:
    """The ``phones`` coordinate of ``utts`` and, when a lexicon made it, its ``phone_source`` record.

    A corpus with phone segments (any utterance of ``manifest``) keeps them as the only source,
    so its phone inventory stays its own; one without reads its transcripts through the lexicon
    (:func:`deepwide.corpora.lexicon.lexicon_phones`) unless ``config.phones_from`` is
    ``"segments"``.

    Returns:
        ``((n_utt,) object array of space-separated phones, "" for none; dict or None)``.
    """
    segments = np.array([" ".join(p for p, _, _ in u.phones if p) for u in utts], dtype=object)
    texts = [u.text or "" for u in utts]
    if config.phones_from == "segments" or any(u.phones for u in manifest.utterances) or not any(texts):
        return segments, None
    made = lexicon_phones(texts, stress=config.phones_from == "lexicon", where=manifest.corpus_id)
    return np.array(made.phones, dtype=object), made.source()


def compute_batch(
    encoder: SpeechEncoder,
    wavs: np.ndarray,
    lengths: np.ndarray,
    layers: tuple[int, ...],
    expected_frames: np.ndarray,
    positions: list[np.ndarray] | None,
    dtype: torch.dtype,
    device: torch.device,
) -> tuple[np.ndarray | None, np.ndarray]:
    """Run one batch and gather what the store keeps.

    Args:
        encoder: the model.
        wavs: (B, S) float32 padded audio.
        lengths: (B,) valid samples.
        layers: layer indices to keep.
        expected_frames: (B,) planned valid frames (checked against the model's).
        positions: stored frame positions of each utterance, or None to store no frames.
        dtype: storage dtype of the frames.
        device: where the model runs.

    Returns:
        ``(hidden (L', rows, D) or None, pooled (L', B, D) float32)``; rows are the stored
        frames of the batch's utterances, in order.

    Raises:
        ModelError: the model's frame counts differ from the plan, or it produced NaN/Inf
            (or values that overflow ``dtype``).
    """
    with torch.inference_mode():
        x = torch.from_numpy(wavs).to(device, non_blocking=True)
        lens = torch.from_numpy(lengths).to(device)
        states, frame_lengths = encoder.hidden_states(x, lens)
        got = frame_lengths.detach().cpu().numpy().astype(np.int64)
        if not np.array_equal(got, expected_frames):
            bad = int(np.nonzero(got != expected_frames)[0][0])
            raise ModelError(
                f"model {encoder.model_id} returned {got[bad]} frames for a {lengths[bad]}-sample input "
                f"but its num_frames({lengths[bad]}) gives {expected_frames[bad]}; make the two agree"
            )
        pooled, hidden = gather_outputs(states, layers, got, positions, dtype, batched=device.type != "cpu")
        if not bool(torch.isfinite(pooled).all()):  # a NaN/Inf in any valid frame reaches its mean
            raise ModelError(f"model {encoder.model_id} produced NaN/Inf features; check its weights")
        if hidden is not None and dtype == torch.float16 and not bool(torch.isfinite(hidden).all()):
            raise ModelError(
                f"model {encoder.model_id} produced values beyond float16's range; rerun with --dtype float32"
            )
        hidden_np = hidden.cpu().numpy() if hidden is not None else None
        return hidden_np, pooled.cpu().numpy()


def gather_outputs(
    states: list[torch.Tensor],
    layers: tuple[int, ...],
    n_valid: np.ndarray,
    positions: list[np.ndarray] | None,
    dtype: torch.dtype,
    *,
    batched: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Pooled means and stored rows of one batch, on the device of ``states``.

    Args:
        states: L+1 tensors (B, T, D).
        layers: layers to keep.
        n_valid: (B,) valid frames per utterance.
        positions: stored frame positions per utterance, or None for no frames.
        dtype: dtype of the stored rows.
        batched: ``False`` (CPU): per-utterance slices are copied and cast straight into the
            output, one pass over the data and no temporaries. ``True`` (accelerators, where
            every small op costs a kernel launch): a masked sum for the means and one
            ``index_select`` per layer.

    Returns:
        ``(pooled (L', B, D) float32, hidden (L', rows, D) dtype or None)``.
    """
    batch, t_max, dim = states[0].shape
    device = states[0].device
    pooled = torch.empty(len(layers), batch, dim, dtype=torch.float32, device=device)
    n_rows = sum(len(p) for p in positions) if positions is not None else 0
    hidden = torch.empty(len(layers), n_rows, dim, dtype=dtype, device=device) if positions is not None else None
    if not batched:
        for j, layer in enumerate(layers):
            h = states[layer]
            row = 0
            for i in range(batch):
                src = h[i, : int(n_valid[i])]
                pooled[j, i] = src.mean(dim=0)
                if hidden is not None and positions is not None:
                    pos = positions[i]
                    rows = src if len(pos) == len(src) else src[torch.from_numpy(pos).long()]
                    hidden[j, row : row + len(pos)] = rows
                    row += len(pos)
        return pooled, hidden
    flen = torch.as_tensor(n_valid, device=device)
    valid = (torch.arange(t_max, device=device)[None, :] < flen[:, None])[..., None]  # (B, T, 1)
    denom = flen.to(states[0].dtype)[:, None]
    idx = None
    if positions is not None:
        idx = torch.cat([torch.from_numpy(p).long() + i * t_max for i, p in enumerate(positions)]).to(device)
    for j, layer in enumerate(layers):
        h = states[layer]
        pooled[j] = torch.where(valid, h, 0.0).sum(dim=1) / denom  # padding may hold anything
        if hidden is not None and idx is not None:
            hidden[j] = h.reshape(-1, dim).index_select(0, idx)
    return pooled, hidden


def _read_utt_coords(store: Path) -> dict[str, np.ndarray]:
    import zarr

    group = zarr.open_group(str(store), mode="r", zarr_format=3)
    return {name: np.asarray(group[name][:]) for name in ("utt_id", "n_frames", "n_stored", "frame_offset")}


def extract_features(
    encoder: SpeechEncoder,
    manifest: Manifest,
    out: str | Path,
    config: ExtractConfig | None = None,
    *,
    shard: tuple[int, int] | None = None,
    device: str = "cpu",
    workers: int | None = None,
    jobs: int | None = None,
    progress: bool = True,
    frame_chunk: int | None = None,
    utt_chunk: int | None = None,
    check_space: bool = True,
) -> ExtractReport:
    """Extract every chosen layer of ``encoder`` over ``manifest`` into the store ``out``.

    Creates the store (pre-allocated, from a plan of batches and shards) or resumes it; a run
    killed at any point and rerun gives the same store as an uninterrupted run. On an fsspec
    URL the store is written in one go, without bookkeeping (no ``shard``, no resume).

    Args:
        encoder: a :class:`deepwide.models.base.SpeechEncoder` (``hidden_states``,
            ``num_frames``, ``num_params``, ``num_layers``, ``dim``, ``frame_rate_hz``,
            ``model_id``, ``config_dict()``, ``weights_hash()``).
        manifest: the whole corpus (``config.splits`` selects from it).
        out: store path: a local folder, a ``file://`` URL, or another fsspec URL
            (``memory://NAME`` …: written in one go; no ``shard``, no resume).
        config: what to extract.
        shard: ``(k, n)`` to write only shard k of n (other shards by other processes);
            ``None`` writes every unfinished shard and excludes every other writer.
        device: ``cpu``, ``cuda[:i]`` or ``auto`` (read by :func:`deepwide.devices.resolve_device`).
        workers: audio-decoding processes for a model run in this process (0: one thread;
            None: 0 on CPU, up to 4 on an accelerator, see
            :func:`deepwide.extract.loading.default_workers`).
        jobs: CPU only: forked single-threaded replicas of the model that decode and run
            batches in parallel (0: run the model here, also on one thread, so that the
            stored numbers do not depend on ``jobs``; None: one per core, at most 4; see
            :mod:`deepwide.extract.compute`). Ignored (0) on an accelerator.
        progress: show a progress bar (audio seconds per second).
        frame_chunk, utt_chunk: chunk sizes of a new store (default ≈ 4 MiB / 1 MiB chunks).
        check_space: refuse to start when the disk has less free space than the store still
            needs (:func:`store_bytes_left`).

    Returns:
        An :class:`ExtractReport`.

    Raises:
        StoreError: another model/corpus/config made the store, another writer holds it, the
            shard count differs, or an incomplete store on an fsspec URL (not resumable).
        AudioError: bad audio under ``on_bad_audio="error"``.
        ConfigError: bad layers/device, or ``shard`` with an fsspec URL.
        ModelError: ``encoder`` is not a SpeechEncoder (the members it lacks are named).
        DiskFullError: the disk is (or, checked before starting, would be) full; the message
            names the disk and the space needed, and rerunning resumes.
    """
    config = config or ExtractConfig()
    local = local_path(out)
    out = local if local is not None else str(out)
    if local is None and shard is not None:
        raise ConfigError(f"{out}: --shard {shard[0]}/{shard[1]} {URL_UNSUPPORTED}")
    if not isinstance(encoder, SpeechEncoder):
        members = [*SpeechEncoder.__annotations__, *(k for k, v in vars(SpeechEncoder).items()
                                                      if callable(v) and not k.startswith("_"))]
        missing = [m for m in members if not hasattr(encoder, m)]
        raise ModelError(f"{type(encoder).__name__} is not a SpeechEncoder: it lacks {', '.join(missing)}; "
                         f"see deepwide.models.base.SpeechEncoder")
    dev = resolve_device(device)
    if isinstance(encoder, torch.nn.Module):
        encoder.to(dev).eval()
    selected = manifest.select(config.splits)
    if config.kinds is not None or config.max_utts is not None:
        selected = subset_utterances(selected, config.kinds, config.max_utts)
    identity = store_identity(encoder, manifest, config)
    layers = config.resolve_layers(int(encoder.num_layers))
    n_shards = shard[1] if shard else 1
    workers = default_workers(dev.type) if workers is None else int(workers)
    jobs = default_jobs(dev.type) if jobs is None else int(jobs)
    if jobs and dev.type != "cpu":
        log.warning("--jobs is for CPU extraction; running the model in this process on %s", dev)
        jobs = 0
    item = np.dtype(config.dtype).itemsize
    store_frames = config.frames_per_utt != 0
    geometry = dict(n_layers=len(layers), dim=int(encoder.dim), itemsize=item, store_frames=store_frames)
    created = False
    with make_executor(workers) as executor:
        if not is_store(out):
            plan = build_plan(
                selected, config, n_shards=n_shards, frames_fn=encoder.num_frames, executor=executor
            )
            skeleton = build_skeleton(
                plan, manifest, selected, encoder, config, identity,
                frame_chunk=frame_chunk, utt_chunk=utt_chunk,
            )
            todo = [shard[0]] if shard else list(range(plan.n_shards))
            new_plan, new_todo = plan, todo

            def need() -> int:
                return store_bytes_left(new_plan, new_todo, {}, skeleton=True, **geometry)

            if check_space:
                check_free_space(out, need())
            with _disk_full_resumes(out, need):
                created = create_store(out, skeleton, before_rename=lambda: fault_point("create"))
        check_identity(out, identity)
        if shard is not None:
            check_shards(out, n_shards)
        attrs = read_attrs(out)
        completion = read_completion(out, attrs)
        skipped = tuple((str(u), str(r)) for u, r in json.loads(attrs["skipped"]))
        complete = completion.complete
        todo = []
        stats = np.zeros(4)  # batches, utterances, audio seconds, elapsed
        if completion.complete:
            log.info("store %s is already complete", out)
        elif local is None and not created:
            raise StoreError(
                f"store {out} is incomplete (an interrupted extraction, or one still running) and "
                f"resuming {URL_UNSUPPORTED} (or delete it and rerun)"
            )
        else:
            if local is not None:
                plan = plan_from_store(read_plan(out), _read_utt_coords(out), selected, config)
            todo = [shard[0]] if shard else list(completion.missing)
            old_plan = plan

            def left() -> int:
                return store_bytes_left(old_plan, todo, _shard_states(out, todo), **geometry) + _record_bytes(out)

            if check_space and not created:
                check_free_space(out, left())
            lock: Any = WriterLock(out, shard[0] if shard else None) if local is not None else contextlib.nullcontext()
            with _disk_full_resumes(out, left), lock:
                torch_dtype = torch.float16 if config.dtype == "float16" else torch.float32

                def compute(
                    wavs: np.ndarray, lengths: np.ndarray, expected: np.ndarray, positions: list[np.ndarray] | None
                ) -> tuple[np.ndarray | None, np.ndarray]:
                    return compute_batch(encoder, wavs, lengths, layers, expected, positions, torch_dtype, dev)

                with contextlib.ExitStack() as stack:
                    if dev.type == "cpu":
                        # the model runs on one thread here as in every forked job, so the stored
                        # numbers do not depend on --jobs (more threads change summation orders)
                        stack.enter_context(torch_threads(1))
                    pool = (
                        stack.enter_context(ForkedJobs(functools.partial(run_batch_task, compute=compute), jobs))
                        if jobs > 0 and _has_work(out, plan, todo)
                        else None
                    )
                    for k in todo:
                        stats += _extract_shard(
                            plan, out, k, config, compute, pool, executor, workers, progress,
                            bookkeeping=local is not None,
                        )
                if local is not None:
                    complete = finalize_store(out)
                else:  # the only writer of a URL store has written every batch
                    mark_complete(out, completion.shards)
                    complete = True
    report = ExtractReport(
        store=out,
        created=created,
        complete=complete,
        shards_written=tuple(todo),
        batches=int(stats[0]),
        utterances=int(stats[1]),
        audio_s=float(stats[2]),
        elapsed_s=float(stats[3]),
        skipped=skipped,
    )
    log.info("%s", report.summary())
    return report


def store_bytes_left(
    plan: ExtractPlan,
    shards: list[int],
    states: dict[int, dict[str, Any]],
    *,
    n_layers: int,
    dim: int,
    itemsize: int,
    store_frames: bool,
    skeleton: bool = False,
) -> int:
    """Estimated disk bytes that writing ``shards`` of a store still needs.

    The rows of ``hidden`` (``itemsize`` bytes per value) and ``pooled`` (float32) from each
    shard's resume point (its saved ``states``; none: its first batch) to its end, times
    :data:`COMPRESSED_FRACTION`; with ``skeleton``, also the frame coords of a new store.

    Returns:
        Bytes (>= 0).
    """
    frames = utts = 0
    for k in shards:
        start = _shard_start(plan, k, states.get(k, {}))
        if start is None:
            continue
        u0, u1 = int(plan.batch_starts[start]), int(plan.batch_starts[int(plan.shard_starts[k + 1])])
        utts += u1 - u0
        if store_frames:
            frames += int(plan.n_stored[u0:u1].sum())
    raw = n_layers * dim * (frames * itemsize + utts * 4)
    if skeleton and store_frames:
        raw += FRAME_COORD_BYTES * plan.total_frames_stored
    return int(raw * COMPRESSED_FRACTION)


def _record_bytes(out: Path) -> int:
    """Bytes that rewriting the store's attrs (the completion record) takes: a new copy of its
    ``zarr.json``, which holds every attr (the trial list, too)."""
    try:
        return (out / "zarr.json").stat().st_size
    except OSError:
        return 0


def _shard_states(out: Path, shards: list[int]) -> dict[int, dict[str, Any]]:
    states = {}
    for k in shards:
        with contextlib.suppress(OSError, ValueError):
            states[k] = read_shard_state(out, k)
    return states


def free_bytes(path: Path) -> int:
    """Free bytes on the disk that holds ``path`` (or its nearest existing parent)."""
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    return int(shutil.disk_usage(p).free)


def check_free_space(out: Path | str, needed: int) -> None:
    """Refuse to start when the disk of ``out`` clearly cannot hold the ``needed`` bytes.

    Raises:
        DiskFullError: one line with the free and the needed space and what to do.
    """
    if "://" in str(out):
        return  # not a local folder: store creation says so
    try:
        free = free_bytes(out)
    except OSError:
        return  # unknown: let the writes decide
    if free < needed:
        raise DiskFullError(
            f"the disk holding {out} has {free / 1e6:,.1f} MB free but the store needs about "
            f"{needed / 1e6:,.1f} MB more; free some space or choose another --out "
            f"(or pass --no-space-check to try anyway)"
        )


@contextlib.contextmanager
def _disk_full_resumes(out: Path | str, bytes_left: Callable[[], int]) -> Iterator[None]:
    """Turn a full disk (ENOSPC/EDQUOT, or an atomic writer's DiskFullError) met while writing
    ``out`` into one :class:`DiskFullError` line naming the disk, the space still needed and
    that rerunning resumes. A store on an fsspec URL is on no local disk and is not resumed:
    its errors pass unchanged."""
    if local_path(out) is None:
        yield
        return
    try:
        yield
    except Exception as exc:
        if not (isinstance(exc, DiskFullError) or is_disk_full(exc)):
            raise
        try:
            needed: int | None = bytes_left()
        except Exception:  # an estimate only; never hide the disk-full error behind another
            needed = None
        raise DiskFullError(
            f"{disk_full_message(out, needed)}: the same command resumes the store where it stopped"
        ) from exc


def _has_work(out: Path | str, plan: ExtractPlan, shards: list[int]) -> bool:
    """Whether any of ``shards`` has batches left (so that starting jobs is worth it)."""
    return any(_shard_start(plan, k, read_shard_state(out, k)) is not None for k in shards)


def _shard_start(plan: ExtractPlan, k: int, state: dict[str, Any]) -> int | None:
    """First batch of shard ``k`` still to compute given its saved ``state``; None when done."""
    b0, b1 = int(plan.shard_starts[k]), int(plan.shard_starts[k + 1])
    if state.get("done"):
        return None
    start = max(b0, int(state.get("next_batch") or b0))
    return start if start < b1 else None


def _batch_tasks(plan: ExtractPlan, batches: range, store_frames: bool) -> Iterator[BatchTask]:
    utt_ids = [u.utt_id for u in plan.utts]
    durations = [u.duration_s for u in plan.utts]
    requests = batch_requests(
        batches, [plan.batch_utts(b) for b in batches], plan.paths, plan.n_samples, utt_ids, durations
    )
    for b, req in zip(batches, requests, strict=True):
        utts = plan.batch_utts(b)
        yield BatchTask(
            request=req,
            expected_frames=plan.n_frames[utts.start : utts.stop],
            positions=[plan.positions(u) for u in utts] if store_frames else None,
        )


def _run_here(
    tasks: Iterator[BatchTask],
    compute: Callable[..., tuple[np.ndarray | None, np.ndarray]],
    executor: Any,
    workers: int,
) -> Iterator[tuple[int, np.ndarray | None, np.ndarray]]:
    """Run batches in this process, their audio decoded ahead by ``executor``."""
    pending: deque[BatchTask] = deque()

    def requests() -> Iterator[Any]:
        for task in tasks:
            pending.append(task)
            yield task.request

    for b, wavs, lengths in prefetch_batches(executor, requests(), depth=max(2, 2 * workers)):
        task = pending.popleft()
        hidden, pooled = compute(wavs, lengths, task.expected_frames, task.positions)
        yield b, hidden, pooled


def _extract_shard(
    plan: ExtractPlan,
    out: Path | str,
    k: int,
    config: ExtractConfig,
    compute: Callable[..., tuple[np.ndarray | None, np.ndarray]],
    pool: ForkedJobs | None,
    executor: Any,
    workers: int,
    progress: bool,
    *,
    bookkeeping: bool = True,
) -> np.ndarray:
    """Compute and write the unfinished batches of shard ``k``. Returns [batches, utts, audio s, s].

    ``bookkeeping=False`` (a store on an fsspec URL, one writer): no chunk lock, no progress file.
    """
    state = read_shard_state(out, k)
    b0, b1 = int(plan.shard_starts[k]), int(plan.shard_starts[k + 1])
    start = _shard_start(plan, k, state)
    if start is None:
        if not state.get("done") and bookkeeping:  # every batch written, the flag not yet
            write_shard_state(out, k, {"next_batch": b1, "done": True, "shard": k})
        return np.zeros(4)
    if start > b0:
        log.info("resuming shard %d at batch %d of %d..%d", k, start, b0, b1)
    hidden_arr, pooled_arr = open_arrays(out)
    batches = range(start, b1)
    tasks = _batch_tasks(plan, batches, store_frames=config.frames_per_utt != 0)
    outputs = pool.run(tasks) if pool is not None else _run_here(tasks, compute, executor, workers)
    total_s = sum(plan.batch_seconds(b) for b in batches)
    writer = ShardWriter(out, plan, k, start, b1, hidden_arr, pooled_arr, depth=2, bookkeeping=bookkeeping)
    n_utts = 0
    t0 = time.perf_counter()
    desc = f"extract shard {k}/{plan.n_shards}" if plan.n_shards > 1 else "extract"
    bar = tqdm(  # audio seconds per second
        total=round(total_s, 1), unit="s", desc=f"{desc} (audio)",
        disable=None if progress else True, leave=False, dynamic_ncols=True,
    )
    try:
        for b, hidden, pooled in outputs:
            fault_point("batch")
            writer.submit(b, hidden, pooled)
            n_utts += len(plan.batch_utts(b))
            bar.update(round(plan.batch_seconds(b), 1))
        writer.close()
    except BaseException:
        writer.abort()
        raise
    finally:
        bar.close()
    elapsed = time.perf_counter() - t0
    log.debug("shard %d: writer busy %.2f s of %.2f s", k, writer.busy_s, elapsed)
    return np.array([len(batches), n_utts, total_s, elapsed])


def torchrun_shard(device: str) -> tuple[tuple[int, int] | None, str]:
    """Under ``torchrun`` (``WORLD_SIZE`` > 1): one shard per rank, ``cuda`` -> ``cuda:LOCAL_RANK``.

    Returns:
        ``(shard or None, device)``.
    """
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return None, device
    rank = int(os.environ.get("RANK", "0"))
    if device == "cuda" and "LOCAL_RANK" in os.environ:
        device = f"cuda:{int(os.environ['LOCAL_RANK'])}"
    log.info("torchrun rank %d of %d: writing shard %d/%d on %s", rank, world, rank, world, device)
    return (rank, world), device


def run_extract(
    model: str,
    corpus: str,
    out: str | Path,
    config: ExtractConfig | None = None,
    *,
    shard: tuple[int, int] | None = None,
    device: str = "cpu",
    workers: int | None = None,
    jobs: int | None = None,
    seed: int = 0,
    progress: bool = True,
    check_space: bool = True,
) -> ExtractReport:
    """Resolve ``model`` and ``corpus`` specs, then :func:`extract_features`.

    Args:
        model: a model spec for :func:`deepwide.models.load_model` (``tiny-teacher``,
            ``random:tiny-teacher``, a checkpoint path …).
        corpus: a corpus spec for :func:`deepwide.corpora.resolve_corpus`.
        out, config, shard, device, workers, jobs, progress, check_space: as in
            :func:`extract_features`.
        seed: seed of randomly initialised models (``random:`` twins).

    Under ``torchrun`` without ``shard``, each rank writes its own shard (:func:`torchrun_shard`).
    """
    from deepwide.corpora import resolve_corpus
    from deepwide.models import load_model

    if shard is None:
        shard, device = torchrun_shard(device)
    manifest = resolve_corpus(corpus)
    device = str(resolve_device(device))
    encoder = load_model(model, seed=seed, device=device)
    return extract_features(
        encoder, manifest, out, config, shard=shard, device=device, workers=workers, jobs=jobs,
        progress=progress, check_space=check_space,
    )
