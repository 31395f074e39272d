"""Planning an extraction before any model runs: frame counts, layout, batches and shards.

The ragged store layout needs every utterance's frame count up front. It comes from the audio
headers (no decoding): ``S`` samples at 16 kHz (after resampling: ``ceil(S_file * 16000 / sr)``)
give ``floor((S - 400) / 320) + 1`` frames on the 50 Hz grid of a 400-sample window with a
320-sample hop. Models that follow another rule may expose ``num_frames(num_samples)``.

Utterances are laid out in order of increasing length (ties in manifest order). Batches are
contiguous runs of that order holding at most ``batch_seconds`` of padded audio, so each batch
writes one contiguous block of frames, and shards are contiguous runs of batches balanced by
audio duration. The plan is computed once, when the store is created, and saved in it: a
resumed run or another shard computes exactly the same batches, hence the same numbers.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from deepwide.audio import duration_mismatch
from deepwide.corpora.manifest import Manifest, Utterance
from deepwide.errors import AudioError, CorpusError
from deepwide.extract.config import ExtractConfig
from deepwide.framing import FRAME_WINDOW, SAMPLE_RATE, num_frames, phone_labels, resampled_length

log = logging.getLogger(__name__)


def sample_positions(n_frames: int, k: int | None, seed: int, utt_id: str) -> np.ndarray:
    """Frame positions stored for one utterance, sorted. Returns (n_stored,) int32.

    ``k=None``: every frame; ``k=0``: none; else ``min(k, n_frames)`` positions drawn without
    replacement by a generator seeded with ``(seed, sha256(utt_id))`` — the same for any
    batching, shard or resume.
    """
    if k is None:
        return np.arange(n_frames, dtype=np.int32)
    if k == 0:
        return np.zeros(0, dtype=np.int32)
    if k >= n_frames:
        return np.arange(n_frames, dtype=np.int32)
    key = int.from_bytes(hashlib.sha256(utt_id.encode()).digest()[:8], "little")
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, key])
    return np.sort(rng.choice(n_frames, size=k, replace=False)).astype(np.int32)


def header_length(path: str) -> tuple[int | None, str | None]:
    """16 kHz length of an audio file from its header: ``(samples, None)`` or ``(None, reason)``."""
    length, _, _, reason = header_facts(path)
    return length, reason


def header_facts(path: str) -> tuple[int | None, int, int, str | None]:
    """What an audio file's header says: ``(16 kHz samples, file samples, file rate, None)``,
    or ``(None, 0, 0, reason)`` when the file is missing, unreadable or empty."""
    import soundfile as sf

    if not os.path.isfile(path):
        return None, 0, 0, "file does not exist"
    try:
        info = sf.info(path)
    except Exception as exc:  # libsndfile raises several types for corrupt files
        return None, 0, 0, f"unreadable ({str(exc).splitlines()[0][:120]})"
    if info.frames <= 0 or info.samplerate <= 0:
        return None, 0, 0, "empty (0 samples)"
    return resampled_length(info.frames, info.samplerate), int(info.frames), int(info.samplerate), None


def decode_problem(path: str, expected_s: float | None = None) -> str | None:
    """Decode a whole file and return why it is bad (``None`` if fine). Runs in workers.

    ``expected_s``: the manifest's duration, which the decoded length must match.
    """
    from deepwide.audio import read_audio

    try:
        wav, sr = read_audio(path)
    except AudioError as exc:
        msg = str(exc)
        if "NaN or Inf" in msg:
            return "non-finite samples (NaN or Inf)"
        if "empty" in msg:
            return "empty (0 samples)"
        return f"unreadable ({msg.split(';')[0][:120]})"
    mismatch = duration_mismatch(len(wav), sr, expected_s) if expected_s is not None else None
    return f"decoded audio is {mismatch}" if mismatch else None


def plan_batches(n_samples: np.ndarray, batch_seconds: float) -> np.ndarray:
    """Cut a length-sorted sequence into batches of at most ``batch_seconds`` padded audio.

    Args:
        n_samples: (N,) samples per utterance, non-decreasing.
        batch_seconds: budget of ``batch_size × longest`` seconds (an utterance longer than
            the budget gets a batch of its own).

    Returns:
        (n_batches + 1,) int64 utterance indices where batches start, ending with N.
    """
    budget = batch_seconds * SAMPLE_RATE
    starts = [0]
    count = 0
    for i, s in enumerate(n_samples):
        if count > 0 and (count + 1) * int(s) > budget:
            starts.append(i)
            count = 0
        count += 1
    if len(n_samples) == 0:
        return np.zeros(1, dtype=np.int64)
    starts.append(len(n_samples))
    return np.asarray(starts, dtype=np.int64)


def plan_shards(batch_samples: np.ndarray, n_shards: int) -> np.ndarray:
    """Split batches into ``n_shards`` contiguous runs of about equal audio duration.

    Args:
        batch_samples: (n_batches,) audio samples per batch.
        n_shards: n.

    Returns:
        (n + 1,) int64 batch indices where shards start, ending with n_batches (a shard may be
        empty when there are fewer batches than shards).
    """
    cum = np.concatenate([[0], np.cumsum(batch_samples, dtype=np.int64)])
    total = cum[-1]
    starts = [int(np.searchsorted(cum[:-1], k * total / n_shards, side="left")) for k in range(n_shards)]
    starts[0] = 0
    starts.append(len(batch_samples))
    return np.maximum.accumulate(np.asarray(starts, dtype=np.int64))


@dataclass
class ExtractPlan:
    """The layout of a store and the work to fill it.

    Attributes:
        utts: kept utterances in store order (increasing length).
        paths: (N,) audio file of each.
        n_samples: (N,) int64 16 kHz samples.
        n_frames: (N,) int64 valid model frames.
        n_stored: (N,) int64 rows of ``hidden`` each owns.
        frame_offset: (N,) int64 first row of each (0 when nothing is stored).
        batch_starts: (n_batches + 1,) int64 utterance index where each batch starts.
        shard_starts: (n_shards + 1,) int64 batch index where each shard starts.
        skipped: ``(utt_id, reason)`` of utterances left out.
        frames_per_utt: K of ``sample:K``; None for all frames; 0 for none.
        seed: seed of the frame sample.
    """

    utts: list[Utterance]
    paths: list[str]
    n_samples: np.ndarray
    n_frames: np.ndarray
    n_stored: np.ndarray
    frame_offset: np.ndarray
    batch_starts: np.ndarray
    shard_starts: np.ndarray
    skipped: list[tuple[str, str]] = field(default_factory=list)
    frames_per_utt: int | None = None
    seed: int = 0

    @property
    def n_batches(self) -> int:
        return len(self.batch_starts) - 1

    @property
    def n_shards(self) -> int:
        return len(self.shard_starts) - 1

    @property
    def total_frames_stored(self) -> int:
        return int(self.n_stored.sum())

    def batch_utts(self, b: int) -> range:
        """Utterance indices of batch ``b``."""
        return range(int(self.batch_starts[b]), int(self.batch_starts[b + 1]))

    def batch_seconds(self, b: int) -> float:
        """Audio seconds (unpadded) of batch ``b``."""
        sl = slice(int(self.batch_starts[b]), int(self.batch_starts[b + 1]))
        return float(self.n_samples[sl].sum()) / SAMPLE_RATE

    def positions(self, u: int) -> np.ndarray:
        """Stored frame positions of utterance ``u``, (n_stored[u],) int32."""
        return sample_positions(int(self.n_frames[u]), self.frames_per_utt, self.seed, self.utts[u].utt_id)

    def frame_coords(self, phone_index: dict[str, int]) -> dict[str, np.ndarray]:
        """``utt_index``, ``frame_index``, ``phone`` for every stored row, each (F,)."""
        pos = [self.positions(u) for u in range(len(self.utts))]
        frame_index = np.concatenate(pos) if pos else np.zeros(0, np.int32)
        utt_index = np.repeat(np.arange(len(self.utts), dtype=np.int32), self.n_stored)
        phones = [
            phone_labels(u.phones, int(n), phone_index)[p] if len(p) else np.zeros(0, np.int16)
            for u, n, p in zip(self.utts, self.n_frames, pos, strict=True)
        ]
        phone = np.concatenate(phones).astype(np.int16) if phones else np.zeros(0, np.int16)
        return {"utt_index": utt_index, "frame_index": frame_index.astype(np.int32), "phone": phone}

    def to_json(self) -> dict[str, Any]:
        """What the store keeps to rebuild this plan (with its coords) on resume."""
        return {
            "n_samples": self.n_samples.tolist(),
            "batch_starts": self.batch_starts.tolist(),
            "shard_starts": self.shard_starts.tolist(),
        }


def build_plan(
    manifest: Manifest,
    config: ExtractConfig,
    *,
    n_shards: int = 1,
    frames_fn: Callable[[int], int] = num_frames,
    executor: Executor | None = None,
) -> ExtractPlan:
    """Plan a new store: which utterances, in what order, batched and sharded how.

    Reads every audio header; with ``on_bad_audio="skip"`` also decodes every file once
    (in ``executor``'s workers when given) so that bad files are left out before the layout
    is fixed. A file whose header (or, when decoded, its audio) is not as long as the
    manifest's ``duration_s`` says (within ``max(0.05 s, 1 %)``) is bad audio: a truncated or
    replaced file.

    Args:
        manifest: the corpus (already restricted to the wanted splits).
        config: extraction config.
        n_shards: shards the store will be written in.
        frames_fn: 16 kHz samples -> valid model frames.
        executor: pool for the decoding check.

    Returns:
        The plan.

    Raises:
        AudioError: a bad file under ``on_bad_audio="error"``.
        CorpusError: no utterance left to extract.
    """
    skip = config.on_bad_audio == "skip"
    kept: list[tuple[int, Utterance, str, int]] = []
    skipped: list[tuple[str, str]] = []
    candidates: list[tuple[int, Utterance, str, int]] = []
    for pos, utt in enumerate(manifest.utterances):
        path = str(manifest.audio_path(utt))
        length, file_samples, file_sr, reason = header_facts(path)
        if reason is None and frames_fn(int(length)) < 1:  # type: ignore[arg-type]
            reason = f"shorter than one frame ({length} samples at 16 kHz < {FRAME_WINDOW})"
        if reason is None:
            reason = duration_mismatch(file_samples, file_sr, utt.duration_s)
        if reason is not None:
            if not skip:
                raise AudioError(
                    f"audio of utterance {utt.utt_id} ({path}): {reason}; fix or remove it, "
                    f"or pass --on-bad-audio skip"
                )
            skipped.append((utt.utt_id, reason))
            continue
        candidates.append((pos, utt, path, int(length)))  # type: ignore[arg-type]
    if skip and candidates:
        paths = [c[2] for c in candidates]
        durations = [c[1].duration_s for c in candidates]
        mapper = (
            executor.map(decode_problem, paths, durations, chunksize=16)
            if executor
            else map(decode_problem, paths, durations)
        )
        for cand, reason in zip(candidates, mapper, strict=True):
            if reason is None:
                kept.append(cand)
            else:
                skipped.append((cand[1].utt_id, reason))
    else:
        kept = candidates
    if skipped:
        log.warning("skipping %d utterance(s) with bad audio, e.g. %s: %s", len(skipped), *skipped[0])
    if not kept:
        raise CorpusError(
            f"corpus {manifest.corpus_id}: no utterance left to extract "
            f"({len(manifest.utterances)} selected, {len(skipped)} skipped); check --splits and the audio"
        )
    kept.sort(key=lambda c: (c[3], c[0]))
    n_samples = np.array([c[3] for c in kept], dtype=np.int64)
    n_frames = np.array([frames_fn(int(s)) for s in n_samples], dtype=np.int64)
    k = config.frames_per_utt
    n_stored = n_frames.copy() if k is None else np.minimum(n_frames, k)
    frame_offset = np.concatenate([[0], np.cumsum(n_stored)[:-1]]).astype(np.int64)
    batch_starts = plan_batches(n_samples, config.batch_seconds)
    batch_samples = np.add.reduceat(n_samples, batch_starts[:-1])
    shard_starts = plan_shards(batch_samples, n_shards)
    return ExtractPlan(
        utts=[c[1] for c in kept],
        paths=[c[2] for c in kept],
        n_samples=n_samples,
        n_frames=n_frames,
        n_stored=n_stored.astype(np.int64),
        frame_offset=frame_offset,
        batch_starts=batch_starts,
        shard_starts=shard_starts,
        skipped=sorted(skipped),
        frames_per_utt=k,
        seed=config.seed,
    )


def plan_from_store(
    saved: dict[str, Any],
    utt_coords: dict[str, np.ndarray],
    manifest: Manifest,
    config: ExtractConfig,
) -> ExtractPlan:
    """Rebuild the plan of an existing store from its saved plan and coords.

    Raises:
        StoreError: the store names utterances the manifest lacks (should not happen when the
            manifest hash matched).
    """
    from deepwide.errors import StoreError

    by_id = manifest.by_id()
    ids = [str(x) for x in utt_coords["utt_id"]]
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise StoreError(f"the store names utterances missing from the corpus, e.g. {missing[0]}; re-extract")
    utts = [by_id[i] for i in ids]
    n_stored = np.asarray(utt_coords["n_stored"], dtype=np.int64)
    return ExtractPlan(
        utts=utts,
        paths=[str(manifest.audio_path(u)) for u in utts],
        n_samples=np.asarray(saved["n_samples"], dtype=np.int64),
        n_frames=np.asarray(utt_coords["n_frames"], dtype=np.int64),
        n_stored=n_stored,
        frame_offset=np.asarray(utt_coords["frame_offset"], dtype=np.int64),
        batch_starts=np.asarray(saved["batch_starts"], dtype=np.int64),
        shard_starts=np.asarray(saved["shard_starts"], dtype=np.int64),
        frames_per_utt=config.frames_per_utt,
        seed=config.seed,
    )
