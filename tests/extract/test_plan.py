"""Planning: frame counts, sampling, batches, shards, option parsing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepwide.errors import ConfigError
from deepwide.extract.config import (
    ExtractConfig,
    parse_frames,
    parse_shard,
    parse_splits,
)
from deepwide.extract.plan import plan_batches, plan_shards, sample_positions
from deepwide.framing import num_frames, resampled_length
from tests.extract.helpers import FakeEncoder


@pytest.mark.parametrize("n", [399, 400, 719, 720, 721, 16_000, 16_399, 160_000])
def test_frame_count_formula_matches_the_model_grid(n: int) -> None:
    # padded into a longer batch, as extraction does
    _, flens = FakeEncoder().hidden_states(torch.zeros(1, n + 800), torch.tensor([n]))
    assert num_frames(n) == int(flens[0]) == max(0, (n - 400) // 320 + 1)


def test_resampled_length_matches_torchaudio() -> None:
    import torchaudio.functional as taf

    for n, sr in [(8000, 8000), (12_345, 8000), (22_051, 22_050), (1001, 48_000), (777, 16_000)]:
        assert resampled_length(n, sr) == taf.resample(torch.zeros(n), sr, 16_000).shape[0]


def test_sample_positions_are_seeded_per_utterance() -> None:
    a = sample_positions(100, 10, 0, "utt-a")
    assert len(a) == 10 and len(set(a.tolist())) == 10 and (np.diff(a) > 0).all()
    assert np.array_equal(a, sample_positions(100, 10, 0, "utt-a"))
    assert not np.array_equal(a, sample_positions(100, 10, 1, "utt-a"))
    assert not np.array_equal(a, sample_positions(100, 10, 0, "utt-b"))
    assert sample_positions(7, 10, 0, "x").tolist() == list(range(7))
    assert sample_positions(7, None, 0, "x").tolist() == list(range(7))
    assert sample_positions(7, 0, 0, "x").tolist() == []


def test_batches_respect_the_padded_budget() -> None:
    rng = np.random.default_rng(0)
    n = np.sort(rng.integers(8000, 80_000, size=200))
    starts = plan_batches(n, batch_seconds=20.0)
    assert starts[0] == 0 and starts[-1] == 200 and (np.diff(starts) > 0).all()
    for a, b in zip(starts[:-1], starts[1:], strict=True):
        size = b - a
        assert size == 1 or size * n[b - 1] <= 20 * 16_000
        if b < 200:  # greedy: one more would have broken the budget
            assert (size + 1) * n[b] > 20 * 16_000
    # one utterance longer than the budget gets its own batch
    assert plan_batches(np.array([1000, 400_000]), 1.0).tolist() == [0, 1, 2]


def test_shards_are_contiguous_balanced_and_cover_everything() -> None:
    samples = np.full(10, 100)
    starts = plan_shards(samples, 3)
    assert starts[0] == 0 and starts[-1] == 10 and (np.diff(starts) >= 0).all()
    sizes = np.diff(starts)
    assert sizes.max() - sizes.min() <= 1
    assert plan_shards(np.array([5, 5]), 4).tolist()[-1] == 2  # more shards than batches
    assert plan_shards(samples, 1).tolist() == [0, 10]


def test_option_parsing() -> None:
    assert parse_frames("all") is None and parse_frames("none") == 0 and parse_frames("sample:4") == 4
    for bad in ("sample:0", "some", "sample:x"):
        with pytest.raises(ConfigError):
            parse_frames(bad)
    assert parse_shard("1/4") == (1, 4) and parse_shard(None) is None
    for bad in ("4/4", "1", "a/b", "0/0"):
        with pytest.raises(ConfigError):
            parse_shard(bad)
    assert parse_splits("train,test") == ("train", "test") and parse_splits(None) is None
    with pytest.raises(ConfigError, match="valid splits"):
        parse_splits("train,eval")


def test_config_identity_ignores_the_seed_unless_sampling() -> None:
    a = ExtractConfig(seed=1).identity(12)
    b = ExtractConfig(seed=2).identity(12)
    assert a == b and a["layers"] == list(range(13))
    assert ExtractConfig(frames="sample:3", seed=1).identity(12) != ExtractConfig(frames="sample:3", seed=2).identity(12)
    with pytest.raises(ValueError):
        ExtractConfig(dtype="int8")
    with pytest.raises(ValueError):
        ExtractConfig(layers=(1, 1))


def test_torchrun_ranks_become_shards(monkeypatch: pytest.MonkeyPatch) -> None:
    from deepwide.extract.run import torchrun_shard

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert torchrun_shard("cpu") == (None, "cpu")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert torchrun_shard("cuda") == ((2, 4), "cuda:0")
    assert torchrun_shard("cpu") == ((2, 4), "cpu")
