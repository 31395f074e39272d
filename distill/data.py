"""Training batches for distillation: length-bucketed random crops, seeded and resumable.

The batch stream is a pure function of ``(seed, global batch index)``:

* epoch ``e`` orders the training utterances by (jittered, seeded) duration, cuts the order
  into batches of about ``batch_seconds`` of cropped audio, and shuffles the batches;
* batch ``g`` of the stream crops every utterance of its batch to one common length (the
  shortest utterance, at most ``max_crop_seconds``) at seeded random offsets.

Rows of a batch therefore have equal lengths: no padding, so even HuBERT Base's group-norm CNN
(which normalises over time) sees exactly what it would see alone. The data position of a run
is one integer, the next global batch index, and resuming from it replays the very same
batches. Under DDP, step ``s`` of rank ``r`` in a world of ``w`` reads batch
``next_batch + s·w + r``.

With ``teacher_targets`` (a feature store of the teacher extracted with ``--frames all``) each
batch also carries the stored teacher states of its crops: crops then start at multiples of 320
samples (one 50 Hz frame) and span a whole number of frames, so crop frame ``i`` is stored
frame ``start / 320 + i`` of the utterance (exact for front-ends whose frame ``t`` starts at
sample ``320 t``: HuBERT's CNN and deepwide's spectral front-end).

Held-out utterances (:func:`split_heldout`) are chosen by a hash of their ids, so the same
utterances are held out whatever the seed; :func:`heldout_batches` cuts them into batches with
fixed crops (batching and offsets seeded by :data:`HELDOUT_SEED`, not the run's seed).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from deepwide.audio import load_audio
from deepwide.corpora import Manifest
from deepwide.errors import CorpusError, StoreError
from deepwide.framing import FRAME_HOP, SAMPLE_RATE

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

#: Relative jitter of the duration sort key: batches differ between epochs.
DURATION_JITTER = 0.1

#: Stored targets smaller than this, at the store's dtype, are read into memory once and kept
#: at that dtype (float16 to float32 is exact, so per-batch slices equal the store's values);
#: larger ones are sliced from the store per batch (random reads of compressed chunks: slow).
TARGETS_IN_MEMORY_BYTES = 2 << 30

#: Seeds the held-out batches' grouping and crop offsets: fixed, whatever the run's seed.
HELDOUT_SEED = 0


@dataclass(frozen=True)
class CropSpec:
    """Cropping settings of a batch stream.

    Attributes:
        batch_seconds: cropped audio per batch (a batch holds at least one crop).
        max_crop_seconds: longest crop (also capped at ``batch_seconds``).
        min_utt_seconds: shorter utterances are not used.
        frame_aligned: crops start at multiples of 320 samples and span whole frames
            (required with stored teacher targets).
        seed: seeds batching and crop offsets.
    """

    batch_seconds: float
    max_crop_seconds: float
    min_utt_seconds: float
    frame_aligned: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        if min(self.batch_seconds, self.max_crop_seconds, self.min_utt_seconds) <= 0:
            raise ValueError("batch_seconds, max_crop_seconds and min_utt_seconds must be > 0")

    @property
    def max_crop_samples(self) -> int:
        samples = int(min(self.max_crop_seconds, self.batch_seconds) * SAMPLE_RATE)
        return self.align(samples)

    def align(self, samples: int) -> int:
        """``samples`` rounded down to whole frames when frame-aligned."""
        if self.frame_aligned:
            return (samples // FRAME_HOP) * FRAME_HOP
        return samples


class BatchPlan:
    """The deterministic, infinite sequence of batches (lists of utterance indices).

    Args:
        durations: (N,) utterance lengths in samples (16 kHz).
        spec: cropping settings.
    """

    def __init__(self, durations: Sequence[int], spec: CropSpec) -> None:
        self.durations = np.asarray(durations, dtype=np.int64)
        if self.durations.size == 0:
            raise CorpusError("no training utterances are long enough; lower --min-utt-seconds or check the corpus")
        self.spec = spec
        self._epochs: list[list[np.ndarray]] = []
        self._starts: list[int] = [0]  # global index of each epoch's first batch

    def epoch(self, e: int) -> list[np.ndarray]:
        """Batches (arrays of utterance indices) of epoch ``e``, computed once and cached."""
        while len(self._epochs) <= e:
            self._epochs.append(self._plan_epoch(len(self._epochs)))
            self._starts.append(self._starts[-1] + len(self._epochs[-1]))
        return self._epochs[e]

    def _plan_epoch(self, e: int) -> list[np.ndarray]:
        rng = np.random.default_rng([self.spec.seed, e, 0xB47C4])
        d = self.durations.astype(np.float64)
        keys = np.log(d) + rng.uniform(-DURATION_JITTER, DURATION_JITTER, size=d.size)
        order = np.argsort(keys, kind="stable")
        budget = self.spec.batch_seconds * SAMPLE_RATE
        cap = self.spec.max_crop_samples
        batches: list[np.ndarray] = []
        current: list[int] = []
        shortest = math.inf
        for i in order:
            s = min(shortest, self.durations[i], cap)
            if current and (len(current) + 1) * s > budget:
                batches.append(np.array(current, dtype=np.int64))
                current, shortest = [], math.inf
                s = min(self.durations[i], cap)
            current.append(int(i))
            shortest = s
        if current:
            batches.append(np.array(current, dtype=np.int64))
        perm = rng.permutation(len(batches))
        return [batches[j] for j in perm]

    def locate(self, g: int) -> tuple[int, int]:
        """``(epoch, batch within epoch)`` of global batch ``g``."""
        if g < 0:
            raise ValueError(f"batch index must be ≥ 0, got {g}")
        e = 0
        while True:
            n = len(self.epoch(e))
            if g < self._starts[e] + n:
                return e, g - self._starts[e]
            e += 1

    def batch(self, g: int) -> np.ndarray:
        """Utterance indices of global batch ``g``."""
        e, b = self.locate(g)
        return self.epoch(e)[b]

    def batches_per_epoch(self, e: int = 0) -> int:
        return len(self.epoch(e))


class TeacherTargets:
    """Reads the teacher's stored hidden states (a feature store written with ``--frames all``).

    The store is opened with :func:`deepwide.store.open_store` (schema and completeness
    checked): ``hidden (layer, frame, feat)`` ragged over utterances, with ``utt_id``,
    ``frame_offset``, ``n_stored`` and ``n_frames`` on ``utt``. Stored float16 is read as
    float32.

    Args:
        path: the store (Zarr v3 folder).
        layers: teacher layers needed (values of the store's ``layer`` coordinate).
        in_memory_bytes: read the needed layers into memory when they are at most this large.

    Raises:
        StoreError: missing, incomplete or sampled store, or a needed layer not stored.
    """

    def __init__(self, path: str | Path, layers: Sequence[int], in_memory_bytes: int = TARGETS_IN_MEMORY_BYTES) -> None:
        from deepwide.store import open_store

        self.path = Path(path)
        ds = open_store(self.path)  # schema and completeness checked, one-line StoreErrors
        self.attrs = dict(ds.attrs)
        frames_mode = self.attrs.get("frames_mode", "all")
        if frames_mode != "all" or "hidden" not in ds:
            raise StoreError(
                f"store {self.path} keeps frames {frames_mode!r}; teacher targets need every frame "
                f"(extract with --frames all)"
            )
        stored_layers = [int(v) for v in ds["layer"].values]
        missing = [layer for layer in layers if layer not in stored_layers]
        if missing:
            raise StoreError(f"store {self.path} lacks teacher layer(s) {missing}; it has {stored_layers}")
        self.layers = tuple(int(v) for v in layers)
        self._layer_index = [stored_layers.index(layer) for layer in self.layers]
        utt_ids = [str(u) for u in ds["utt_id"].values]
        offsets = np.asarray(ds["frame_offset"].values, dtype=np.int64)
        counts = np.asarray(ds["n_stored"].values, dtype=np.int64)
        if np.any(counts != np.asarray(ds["n_frames"].values)):
            raise StoreError(f"store {self.path} does not hold every frame of every utterance; extract with --frames all")
        self.index = {u: (int(o), int(n)) for u, o, n in zip(utt_ids, offsets, counts, strict=True)}
        self.dim = int(ds.sizes["feat"])
        self.model_id = str(self.attrs.get("model_id", ""))
        self.weights_hash = str(self.attrs.get("model_weights_hash", ""))
        ds.close()
        self._array: Any = None
        self._memory: np.ndarray | None = None
        arr = self._open()
        itemsize = np.dtype(arr.dtype).itemsize
        needed = len(self.layers) * sum(n for _, n in self.index.values()) * self.dim * itemsize
        if needed <= in_memory_bytes:
            self._memory = np.stack([np.asarray(arr[i]) for i in self._layer_index])
            self._array = None
            log.info("teacher targets: %d layers (%.1f MB, %s) read into memory", len(self.layers), needed / 1e6,
                     self._memory.dtype)
        else:
            log.info("teacher targets: %d layers (%.1f MB) exceed the in-memory limit (%.1f MB): read per batch",
                     len(self.layers), needed / 1e6, in_memory_bytes / 1e6)

    def _open(self) -> Any:
        if self._array is None:
            import zarr

            self._array = zarr.open_group(str(self.path), mode="r")["hidden"]
        return self._array

    def __getstate__(self) -> dict[str, Any]:  # DataLoader workers reopen the array
        state = dict(self.__dict__)
        state["_array"] = None
        return state

    def check_covers(self, utt_ids: Sequence[str]) -> None:
        """Raise StoreError unless every utterance in ``utt_ids`` is stored."""
        missing = [u for u in utt_ids if u not in self.index]
        if missing:
            raise StoreError(
                f"store {self.path} lacks {len(missing)} of {len(utt_ids)} training utterances "
                f"(e.g. {missing[0]}); extract the same corpus and splits with --frames all"
            )

    def read(self, utt_id: str, start_frame: int, num_frames: int) -> tuple[np.ndarray, int]:
        """Stored states of frames ``[start_frame, start_frame + num_frames)`` of ``utt_id``.

        Returns:
            ``(states (N, num_frames, D) float32, valid)``: frames past the utterance's end are
            zeros and ``valid`` counts the stored ones.
        """
        offset, count = self.index[utt_id]
        valid = max(0, min(num_frames, count - start_frame))
        out = np.zeros((len(self.layers), num_frames, self.dim), dtype=np.float32)
        if valid:
            a, b = offset + start_frame, offset + start_frame + valid
            if self._memory is not None:
                out[:, :valid] = self._memory[:, a:b]
            else:
                arr = self._open()
                for j, i in enumerate(self._layer_index):
                    out[j, :valid] = np.asarray(arr[i, a:b], dtype=np.float32)
        return out, valid


def _long_enough(manifest: Manifest, spec: CropSpec) -> list[Any]:
    """The utterances of ``manifest`` a crop stream may use (at least ``min_utt_seconds``, two frames)."""
    min_samples = max(int(spec.min_utt_seconds * SAMPLE_RATE), 2 * FRAME_HOP)
    return [u for u in manifest if int(u.duration_s * SAMPLE_RATE) >= min_samples]


def _id_hash(utt_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(utt_id.encode(), digest_size=8).digest(), "big")


def split_heldout(
    manifest: Manifest, spec: CropSpec, fraction: float, max_utts: int
) -> tuple[Manifest, Manifest | None]:
    """Split the training utterances into those trained on and the held-out ones.

    Of the utterances long enough to crop (``spec.min_utt_seconds``), the
    ``max(1, ⌊fraction · N⌋)`` (at most ``max_utts``) with the smallest hash of their id are
    held out: the choice depends on the ids only, never on the seed. Nothing is held out when
    ``fraction`` is 0 or fewer than two utterances are long enough.

    Args:
        manifest: the corpus, already restricted to the training splits.
        spec: cropping settings (for the length rule).
        fraction: share of the long-enough utterances to hold out.
        max_utts: cap on the held-out utterances.

    Returns:
        ``(train, heldout)``: ``manifest`` without the held-out utterances, and the held-out
        ones as a manifest (``None`` when none are held out).
    """
    eligible = _long_enough(manifest, spec)
    n = min(max_utts, max(1, int(fraction * len(eligible)))) if fraction > 0 and len(eligible) >= 2 else 0
    if n == 0:
        return manifest, None
    held = {u.utt_id for u in sorted(eligible, key=lambda u: (_id_hash(u.utt_id), u.utt_id))[:n]}
    train = dataclasses.replace(manifest, utterances=[u for u in manifest if u.utt_id not in held], trials=[])
    heldout = dataclasses.replace(manifest, utterances=[u for u in manifest if u.utt_id in held], trials=[])
    return train, heldout


class CropBatches:
    """Map-style dataset: index ``g`` → global batch ``g`` of random crops (a dict of tensors).

    Batch keys: ``wavs`` (B, S) float32, ``lengths`` (B,) int64 (all equal to S), ``index``
    (scalar int64: ``g``), ``utt_index`` (B,) int64, ``starts`` (B,) int64 crop offsets in
    samples; with teacher targets also ``targets`` (N, B, T, D) float32 and ``target_lengths``
    (B,) int64 (stored frames available per row, ≤ T = S / 320).

    Args:
        manifest: the corpus (already restricted to the training splits).
        spec: cropping settings.
        targets: stored teacher states, or ``None`` to run the teacher online.
    """

    def __init__(self, manifest: Manifest, spec: CropSpec, targets: TeacherTargets | None = None) -> None:
        if targets is not None and not spec.frame_aligned:
            raise ValueError("stored teacher targets need frame-aligned crops")
        self.utts = _long_enough(manifest, spec)
        dropped = len(manifest) - len(self.utts)
        if dropped:
            log.info("left out %d utterances shorter than %.2f s", dropped, spec.min_utt_seconds)
        if not self.utts:
            raise CorpusError(
                f"corpus {manifest.corpus_id} has no utterance of at least {spec.min_utt_seconds} s "
                f"in the training splits; check --corpus and the splits"
            )
        if targets is not None:
            targets.check_covers([u.utt_id for u in self.utts])
        self.paths = [manifest.audio_path(u) for u in self.utts]
        self.spec = spec
        self.targets = targets
        self.plan = BatchPlan([int(u.duration_s * SAMPLE_RATE) for u in self.utts], spec)

    def __len__(self) -> int:  # the stream is infinite; the sampler decides what is read
        return 2**62

    def __getitem__(self, g: int) -> dict[str, torch.Tensor]:
        import torch

        idx = self.plan.batch(int(g))
        wavs = [load_audio(self.paths[i], expected_s=self.utts[i].duration_s) for i in idx]
        shortest = min(w.shape[0] for w in wavs)
        crop = self.spec.align(min(shortest, self.spec.max_crop_samples))
        if crop < 2 * FRAME_HOP:
            raise CorpusError(
                f"utterance {self.utts[int(idx[0])].utt_id} is shorter than its manifest says; regenerate the manifest"
            )
        rng = np.random.default_rng([self.spec.seed, int(g), 0xC809])
        starts = np.zeros(len(idx), dtype=np.int64)
        out = np.zeros((len(idx), crop), dtype=np.float32)
        for row, w in enumerate(wavs):
            slack = w.shape[0] - crop
            if self.spec.frame_aligned:
                start = int(rng.integers(0, slack // FRAME_HOP + 1)) * FRAME_HOP
            else:
                start = int(rng.integers(0, slack + 1))
            starts[row] = start
            out[row] = w[start : start + crop]
        batch: dict[str, torch.Tensor] = {
            "wavs": torch.from_numpy(out),
            "lengths": torch.full((len(idx),), crop, dtype=torch.int64),
            "index": torch.tensor(int(g), dtype=torch.int64),
            "utt_index": torch.from_numpy(idx.copy()),
            "starts": torch.from_numpy(starts),
        }
        if self.targets is not None:
            n_frames = crop // FRAME_HOP
            states = np.zeros((len(self.targets.layers), len(idx), n_frames, self.targets.dim), np.float32)
            valid = np.zeros(len(idx), dtype=np.int64)
            for row, i in enumerate(idx):
                states[:, row], valid[row] = self.targets.read(
                    self.utts[int(i)].utt_id, int(starts[row]) // FRAME_HOP, n_frames
                )
            batch["targets"] = torch.from_numpy(states)
            batch["target_lengths"] = torch.from_numpy(valid)
        return batch


def heldout_batches(manifest: Manifest, spec: CropSpec, targets: TeacherTargets | None = None) -> CropBatches:
    """The held-out utterances as batches of fixed crops: batches ``0 … n − 1`` of the result
    (``n = result.plan.batches_per_epoch(0)``) hold every utterance once.

    Grouping and crop offsets are seeded by :data:`HELDOUT_SEED`, not ``spec.seed``, so every
    run and every evaluation sees the same crops.
    """
    return CropBatches(manifest, dataclasses.replace(spec, seed=HELDOUT_SEED), targets)


class StreamSampler:
    """Yields the global batch indices one rank reads: ``first + s·world + rank`` for each step.

    Args:
        first: global batch index of step ``start_step`` on rank 0.
        start_step, end_step: steps ``[start_step, end_step)``.
        rank, world_size: this process's DDP position.
    """

    def __init__(self, first: int, start_step: int, end_step: int, rank: int = 0, world_size: int = 1) -> None:
        self.first, self.start_step, self.end_step = first, start_step, end_step
        self.rank, self.world_size = rank, world_size

    def __iter__(self) -> Iterator[int]:
        for s in range(self.end_step - self.start_step):
            yield self.first + s * self.world_size + self.rank

    def __len__(self) -> int:
        return max(0, self.end_step - self.start_step)


def make_loader(
    dataset: CropBatches,
    sampler: StreamSampler,
    num_workers: int = 0,
    pin_memory: bool = False,
) -> Iterator[dict[str, torch.Tensor]]:
    """A DataLoader over ``dataset`` in ``sampler`` order (one batch per item, workers optional).

    The loader gets its own generator: creating it must not draw from the global torch RNG
    (that would shift dropout masks after a resume). Batches are a pure function of their
    index, so worker seeds do not matter.
    """
    import torch
    from torch.utils.data import DataLoader

    return iter(
        DataLoader(
            dataset,  # type: ignore[arg-type]
            batch_size=None,
            sampler=sampler,
            num_workers=num_workers,
            pin_memory=pin_memory,
            persistent_workers=False,
            generator=torch.Generator().manual_seed(0),
            prefetch_factor=2 if num_workers else None,
        )
    )
