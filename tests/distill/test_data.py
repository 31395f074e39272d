"""Length-bucketed random crops, the resumable batch stream and stored teacher targets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepwide.audio import load_audio
from deepwide.corpora import Manifest
from deepwide.distill.data import BatchPlan, CropBatches, CropSpec, StreamSampler, TeacherTargets
from deepwide.errors import StoreError
from tests.distill.conftest import write_target_store

SR = 16_000


def _spec(**kw) -> CropSpec:
    opts = dict(batch_seconds=3.0, max_crop_seconds=1.0, min_utt_seconds=0.25, seed=0)
    opts.update(kw)
    return CropSpec(**opts)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_epoch_covers_each_utterance_once_within_budget(seed: int) -> None:
    rng = np.random.default_rng(seed)
    durations = rng.integers(int(0.3 * SR), int(4 * SR), size=50)
    spec = _spec(batch_seconds=5.0, max_crop_seconds=2.0, seed=seed)
    plan = BatchPlan(durations, spec)
    for e in range(3):
        batches = plan.epoch(e)
        flat = np.concatenate(batches)
        assert sorted(flat.tolist()) == list(range(50))
        for b in batches:
            crop = min(durations[b].min(), spec.max_crop_samples)
            assert len(b) == 1 or len(b) * crop <= spec.batch_seconds * SR
    assert [b.tolist() for b in plan.epoch(0)] != [b.tolist() for b in plan.epoch(1)]
    # the stream is a pure function of (seed, index)
    again = BatchPlan(durations, spec)
    for g in (0, 7, len(plan.epoch(0)) + 3):
        assert again.batch(g).tolist() == plan.batch(g).tolist()
    e, b = plan.locate(len(plan.epoch(0)))
    assert (e, b) == (1, 0)


def test_buckets_group_similar_lengths() -> None:
    durations = np.array([SR] * 20 + [10 * SR] * 20)
    plan = BatchPlan(durations, _spec(batch_seconds=4.0, max_crop_seconds=20.0))
    for b in plan.epoch(0):
        assert len(set(durations[b].tolist())) == 1


def test_ranks_read_disjoint_consecutive_batches() -> None:
    seen = []
    for rank in range(3):
        seen += list(StreamSampler(first=10, start_step=4, end_step=9, rank=rank, world_size=3))
    assert sorted(seen) == list(range(10, 10 + 5 * 3))


def test_crops_are_equal_length_seeded_slices_of_the_audio(corpus_dir) -> None:
    manifest = Manifest.load(corpus_dir).select(["train"])
    data = CropBatches(manifest, _spec())
    for g in range(4):
        batch = data[g]
        wavs, lengths, starts = batch["wavs"], batch["lengths"], batch["starts"]
        assert wavs.dtype == torch.float32 and wavs.ndim == 2
        assert torch.all(lengths == wavs.shape[1])
        assert wavs.shape[1] <= SR  # max crop 1 s
        for row, i in enumerate(batch["utt_index"].tolist()):
            full = load_audio(data.paths[i])
            s = int(starts[row])
            np.testing.assert_array_equal(wavs[row].numpy(), full[s : s + wavs.shape[1]])
        again = data[g]
        assert torch.equal(again["wavs"], wavs)
    other = CropBatches(manifest, _spec(seed=5))
    assert any(not torch.equal(other[g]["starts"], data[g]["starts"]) for g in range(4))


def test_short_utterances_are_left_out(corpus_dir) -> None:
    manifest = Manifest.load(corpus_dir).select(["train"])
    longest = max(u.duration_s for u in manifest)
    data = CropBatches(manifest, _spec(min_utt_seconds=longest - 0.01, max_crop_seconds=2.0))
    assert len(data.utts) == 1


@pytest.fixture(scope="module")
def target_store(tmp_path_factory, teacher_dir, corpus_dir):
    from deepwide.models import load_model

    teacher = load_model(str(teacher_dir))
    manifest = Manifest.load(corpus_dir).select(["train"])
    path = write_target_store(teacher, manifest, tmp_path_factory.mktemp("store") / "teacher.zarr")
    return path, teacher, manifest


def test_stored_targets_are_frame_aligned_with_the_crop(target_store) -> None:
    path, teacher, manifest = target_store
    store = TeacherTargets(path, [0, 2, 4])
    data = CropBatches(manifest, _spec(frame_aligned=True), store)
    checked = 0
    for g in range(4):
        batch = data[g]
        n = batch["wavs"].shape[1]
        assert n % 320 == 0 and torch.all(batch["starts"] % 320 == 0)
        assert batch["targets"].shape[:3] == (3, len(batch["starts"]), n // 320)
        with torch.no_grad():
            states, frames = teacher.hidden_states(batch["wavs"])
        # layer 0 (front-end + projection + positional conv) only sees ±4 frames of context:
        # away from the crop edges, the crop's states equal the stored whole-utterance ones.
        layer0 = states[0]
        t = int(frames[0])
        interior = slice(6, t - 6)
        if t > 12:
            torch.testing.assert_close(batch["targets"][0][:, interior], layer0[:, interior], atol=1e-4, rtol=1e-4)
            checked += 1
        assert torch.all(batch["target_lengths"] >= t)
    assert checked


def test_store_problems_are_one_line_store_errors(target_store, tmp_path, corpus_dir) -> None:
    path, teacher, manifest = target_store
    with pytest.raises(StoreError, match=r"lacks teacher layer\(s\) \[7\]"):
        TeacherTargets(path, [7])
    with pytest.raises(StoreError, match="no feature store"):
        TeacherTargets(tmp_path / "nope.zarr", [1])
    partial = write_target_store(teacher, manifest, tmp_path / "partial.zarr", shard=(0, 2))
    with pytest.raises(StoreError, match="incomplete"):
        TeacherTargets(partial, [1])
    sampled = write_target_store(teacher, manifest, tmp_path / "sampled.zarr", frames="sample:5")
    with pytest.raises(StoreError, match="--frames all"):
        TeacherTargets(sampled, [1])
    some = write_target_store(teacher, Manifest.load(corpus_dir).select(["test"]), tmp_path / "some.zarr")
    with pytest.raises(StoreError, match="lacks 10 of 10 training utterances") as info:
        CropBatches(manifest, _spec(frame_aligned=True), TeacherTargets(some, [1]))
    assert "\n" not in str(info.value)


def test_targets_read_lazily_equal_in_memory(target_store) -> None:
    path, _, manifest = target_store
    mem = TeacherTargets(path, [1, 3])
    lazy = TeacherTargets(path, [1, 3], in_memory_bytes=0)
    assert mem._memory is not None and lazy._memory is None
    uid = manifest.utterances[0].utt_id
    a, va = mem.read(uid, 3, 500)
    b, vb = lazy.read(uid, 3, 500)
    assert va == vb < 500
    np.testing.assert_array_equal(a, b)
    assert not a[:, va:].any()
    assert a.dtype == np.float32 and mem._memory.dtype == lazy._open().dtype  # kept at the store's dtype


def test_float16_targets_stay_float16_in_memory_and_read_exactly(target_store, tmp_path) -> None:
    """A float16 store (the study's) is held at float16 — half the memory, so a 12-target L2L
    student's targets fit — and every read equals the per-batch read from the store."""
    from tests.distill.conftest import write_target_store

    path, teacher, manifest = target_store
    half = write_target_store(teacher, manifest, tmp_path / "half.zarr", dtype="float16")
    mem = TeacherTargets(half, [1, 3])
    lazy = TeacherTargets(half, [1, 3], in_memory_bytes=0)
    assert mem._memory is not None and mem._memory.dtype == np.float16
    uid = manifest.utterances[1].utt_id
    a, _ = mem.read(uid, 0, 400)
    b, _ = lazy.read(uid, 0, 400)
    assert a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
