"""Audio loading for extraction: batches decoded in worker processes, prefetched in order.

Workers are started with ``spawn`` (never ``fork`` after torch has started threads) and import
only numpy/soundfile (torchaudio only to resample a non-16 kHz file). With ``workers=0`` the
batches are decoded by one background thread of the main process.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from deepwide.audio import load_audio
from deepwide.errors import AudioError
from deepwide.system import usable_cpus

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchRequest:
    """The audio of one batch: files, their planned 16 kHz lengths and their manifest durations
    (empty: not checked)."""

    index: int
    paths: tuple[str, ...]
    n_samples: tuple[int, ...]
    utt_ids: tuple[str, ...]
    durations_s: tuple[float, ...] = ()


def load_batch(req: BatchRequest) -> tuple[int, np.ndarray, np.ndarray]:
    """Decode, resample and right-pad one batch.

    Returns:
        ``(index, wavs (B, S_max) float32, lengths (B,) int64)``.

    Raises:
        AudioError: a file is unreadable/non-finite, its decoded duration is not its manifest's
            (:func:`deepwide.audio.check_duration`), or its length differs from the plan.
    """
    wavs = []
    durations: tuple[float | None, ...] = req.durations_s or (None,) * len(req.paths)
    for path, expected, utt_id, dur in zip(req.paths, req.n_samples, req.utt_ids, durations, strict=True):
        wav = load_audio(path, expected_s=dur)
        if len(wav) != expected:
            raise AudioError(
                f"audio of utterance {utt_id} ({path}) has {len(wav)} samples at 16 kHz but the store "
                f"was planned with {expected}: the file changed since; restore it or extract to a new --out"
            )
        wavs.append(wav)
    lengths = np.array([len(w) for w in wavs], dtype=np.int64)
    out = np.zeros((len(wavs), int(lengths.max())), dtype=np.float32)
    for i, w in enumerate(wavs):
        out[i, : len(w)] = w
    return req.index, out, lengths


def default_workers(device: str) -> int:
    """Decoding processes when ``--workers`` is not given: none on CPU (the cores run the model;
    one decoding thread keeps up), else up to 4, leaving a core to the main process."""
    if device.startswith("cpu"):
        return 0
    return max(0, min(4, usable_cpus() - 1))


def make_executor(workers: int) -> Executor:
    """A process pool of ``workers`` spawned processes, or one thread when ``workers == 0``."""
    if workers <= 0:
        return ThreadPoolExecutor(max_workers=1, thread_name_prefix="deepwide-audio")
    return ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"))


def prefetch_batches(
    executor: Executor, requests: Iterable[BatchRequest], depth: int
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Yield :func:`load_batch` results in request order, keeping ``depth`` batches in flight.

    Errors raised in a worker (e.g. :class:`AudioError`) are re-raised here, in order.
    """
    pending: deque[Future[tuple[int, np.ndarray, np.ndarray]]] = deque()
    it = iter(requests)
    try:
        for req in it:
            pending.append(executor.submit(load_batch, req))
            if len(pending) >= max(1, depth):
                break
        while pending:
            fut = pending.popleft()
            nxt = next(it, None)
            if nxt is not None:
                pending.append(executor.submit(load_batch, nxt))
            yield fut.result()
    finally:
        for fut in pending:
            fut.cancel()


def batch_requests(
    batches: Sequence[int], batch_utts: Sequence[range], paths: Sequence[str],
    n_samples: np.ndarray, utt_ids: Sequence[str], durations_s: Sequence[float] | None = None,
) -> Iterator[BatchRequest]:
    """One :class:`BatchRequest` per batch index in ``batches`` (``durations_s``: manifest
    durations per utterance, checked against the decoded audio; ``None``: not checked)."""
    for b, utts in zip(batches, batch_utts, strict=True):
        yield BatchRequest(
            index=b,
            paths=tuple(paths[u] for u in utts),
            n_samples=tuple(int(n_samples[u]) for u in utts),
            utt_ids=tuple(utt_ids[u] for u in utts),
            durations_s=tuple(float(durations_s[u]) for u in utts) if durations_s is not None else (),
        )
