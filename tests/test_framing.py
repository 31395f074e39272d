"""The 50 Hz frame grid (deepwide.framing): counts, centres and phone labels, against torchaudio."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepwide.errors import CorpusError
from deepwide.framing import (
    FRAME_RATE_HZ,
    frame_centres_s,
    mfcc_transform,
    num_frames,
    num_frames_batch,
    phone_labels,
)


@pytest.mark.parametrize("n", [0, 1, 399, 400, 401, 719, 720, 721, 16_000, 16_321])
def test_frame_count_is_torchaudios_uncentred_mfcc(n: int) -> None:
    # torchaudio's STFT with center=False frames exactly the grid; it needs one window.
    expected = mfcc_transform()(torch.zeros(n)).shape[-1] if n >= 400 else 0
    assert num_frames(n) == expected
    assert int(num_frames_batch(torch.tensor([n]))[0]) == expected
    assert int(torch.zeros(n).unfold(0, 400, 320).shape[0] if n >= 400 else 0) == expected


def test_grid_rate_and_centres() -> None:
    assert FRAME_RATE_HZ == 50.0
    np.testing.assert_allclose(frame_centres_s(3), [0.0125, 0.0325, 0.0525])


def test_phone_rule_uses_frame_centre() -> None:
    # frame 0 spans 0..25 ms (centre 12.5 ms); frame 1 spans 20..45 ms (centre 32.5 ms)
    segs = [("a", 0.0, 0.0125), ("b", 0.0125, 0.0325), ("c", 0.0325, 1.0)]
    labels = phone_labels(segs, 3, {"a": 0, "b": 1, "c": 2})
    assert labels.dtype == np.int16 and labels.tolist() == [1, 2, 2]
    assert phone_labels([("a", 0.5, 0.6)], 2, {"a": 0}).tolist() == [-1, -1]
    # centres at 12.5, 32.5, 52.5, 72.5, 92.5 ms
    two = [("aa", 0.0, 0.03), ("iy", 0.03, 0.1)]
    assert phone_labels(two, 5, {"aa": 0, "iy": 1}).tolist() == [0, 1, 1, 1, 1]


def test_pause_is_unlabelled_and_unknown_phone_is_an_error() -> None:
    assert phone_labels([("", 0.0, 0.03), ("aa", 0.03, 0.1)], 3, {"aa": 0}).tolist() == [-1, 0, 0]
    with pytest.raises(CorpusError, match="'zz' is not in the corpus phone set"):
        phone_labels([("zz", 0.0, 0.1)], 2, {"aa": 0})


def test_labels_match_a_per_frame_interval_search() -> None:
    rng = np.random.default_rng(0)
    bounds = np.sort(rng.uniform(0, 2.0, 41))
    segs = [(f"p{i % 5}" if i % 7 else "", float(a), float(b)) for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:], strict=True))]
    index = {f"p{k}": k for k in range(5)}
    n = num_frames(32_000)
    got = phone_labels(segs, n, index)
    centres = frame_centres_s(n)
    for t, c in enumerate(centres):
        hit = [index.get(p, -1) for p, a, b in segs if a <= c < b]
        assert got[t] == (hit[0] if hit else -1)
