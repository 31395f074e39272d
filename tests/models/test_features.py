"""The MFCC feature baselines behave like any encoder: one state, exact under padding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepwide.errors import AudioError
from deepwide.models import load_model
from deepwide.models.pretrain import mfcc_features


def test_mfcc_model_matches_the_teacher_targets_features_and_is_padding_exact() -> None:
    torch.manual_seed(0)
    model = load_model("mfcc")
    wavs = torch.randn(2, 16000) * 0.1
    lengths = torch.tensor([16000, 8000])
    states, frames = model.hidden_states(wavs, lengths)
    assert len(states) == model.num_layers + 1 == 1 and frames.tolist() == [49, 24]
    alone, _ = model.hidden_states(wavs[1:, :8000])
    assert torch.allclose(states[0][1, :24], alone[0][0], atol=1e-6)
    assert torch.all(states[0][1, 24:] == 0)
    # per-utterance normalisation of its output gives the teacher recipe's k-means features
    f = states[0][0].numpy()
    ref = mfcc_features(wavs[0].numpy())
    assert np.allclose((f - f.mean(0)) / (f.std(0) + 1e-5), ref, atol=1e-3)
    # un-normalised: utterance means differ between a loud and a quiet tone (pooled baselines)
    assert not np.allclose(f.mean(0), 0, atol=1e-2)


def test_mfcc_context_stacks_neighbours_and_checks_rate() -> None:
    model = load_model("mfcc-context")
    wav = torch.randn(1, 16000)
    (ctx,), _ = model.hidden_states(wav)
    (plain,), _ = load_model("mfcc").hidden_states(wav)
    assert ctx.shape[-1] == 39 * 9 == model.dim
    # the centre block of the context window is the frame itself; block 0 is frame t-4
    assert torch.allclose(ctx[0, 10, 4 * 39: 5 * 39], plain[0, 10])
    assert torch.allclose(ctx[0, 10, :39], plain[0, 6])
    with pytest.raises(AudioError, match="8000 Hz"):
        model.hidden_states(wav, sample_rate=8000)
