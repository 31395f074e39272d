"""Encoder interface, padding exactness, front-ends, seeds and the torchaudio view."""

from __future__ import annotations

import pytest
import torch

from deepwide.errors import AudioError
from deepwide.models.base import SpeechEncoder
from deepwide.models.config import HUBERT_CNN, FrontendConfig
from deepwide.models.encoder import build_encoder
from tests.models.tiny import FRONTENDS, pad_batch, tiny_config, waveforms

torch.set_num_threads(1)

LENGTHS = [8000, 5123, 3210, 5123, 401]  # a repeated length and a one-frame utterance


def _per_utterance(model, wavs, lengths):
    out = []
    for i, n in enumerate(lengths):
        states, frames = model.hidden_states(wavs[i : i + 1, :n])
        out.append((states, int(frames[0])))
    return out


@pytest.mark.parametrize("frontend", sorted(FRONTENDS))
@pytest.mark.parametrize("garbage", [False, True])
def test_batched_equals_per_utterance(frontend, garbage):
    model = build_encoder(tiny_config(frontend=FRONTENDS[frontend]), seed=1).eval()
    rows = [waveforms(1, n, seed=i)[0] for i, n in enumerate(LENGTHS)]
    wavs, lengths = pad_batch(rows, garbage=garbage)
    with torch.no_grad():
        states, frame_lengths = model.hidden_states(wavs, lengths)
        singles = _per_utterance(model, wavs, LENGTHS)
    assert len(states) == model.num_layers + 1
    for i, (single, n_frames) in enumerate(singles):
        assert int(frame_lengths[i]) == n_frames == (LENGTHS[i] - 400) // 320 + 1
        for layer, (batched, alone) in enumerate(zip(states, single, strict=True)):
            torch.testing.assert_close(
                batched[i, :n_frames], alone[0], atol=1e-5, rtol=0, msg=f"row {i} layer {layer}"
            )
            assert torch.all(batched[i, n_frames:] == 0), "padded frames are zeroed"


def test_wavlm_batched_equals_per_utterance():
    model = build_encoder(tiny_config(arch="wavlm", num_buckets=8, max_distance=20), seed=2).eval()
    rows = [waveforms(1, n, seed=i)[0] for i, n in enumerate(LENGTHS[:3])]
    wavs, lengths = pad_batch(rows)
    with torch.no_grad():
        states, _ = model.hidden_states(wavs, lengths)
        singles = _per_utterance(model, wavs, LENGTHS[:3])
    for i, (single, n) in enumerate(singles):
        for batched, alone in zip(states, single, strict=True):
            torch.testing.assert_close(batched[i, :n], alone[0], atol=1e-5, rtol=0)


def test_naive_padding_would_differ_for_group_norm():
    """The exactness test can fail: torchaudio's own batched path is not exact here."""
    model = build_encoder(tiny_config(), seed=1).eval()
    rows = [waveforms(1, n, seed=i)[0] for i, n in enumerate([8000, 4000])]
    wavs, lengths = pad_batch(rows)
    with torch.no_grad():
        naive, _ = model.as_torchaudio().extract_features(wavs, lengths)
        alone, frames = model.hidden_states(wavs[1:, :4000])
    assert (naive[-1][1, : frames[0]] - alone[-1][0]).abs().max() > 1e-3


def test_interface_shapes_and_frame_lengths():
    model = build_encoder(tiny_config(depth=3), seed=0).eval()
    assert isinstance(model, SpeechEncoder)
    assert (model.num_layers, model.dim, model.frame_rate_hz, model.sample_rate) == (3, 64, 50.0, 16000)
    wavs = waveforms(2, 7777)
    with torch.no_grad():
        states, frames = model.hidden_states(wavs)
    expected = (7777 - 400) // 320 + 1
    assert len(states) == 4
    assert all(s.shape == (2, expected, 64) for s in states)
    assert frames.tolist() == [expected, expected] and frames.dtype == torch.int64


def test_frame_count_formula_matches_cnn_and_spectral():
    cnn, spectral = FrontendConfig(conv_layers=HUBERT_CNN), FrontendConfig(kind="spectral")
    assert cnn.receptive_field == 400 and cnn.hop == 320 and cnn.frame_rate_hz == 50.0
    for s in list(range(380, 1300, 7)) + [16000, 16319, 16320, 160000]:
        expected = max(0, (s - 400) // 320 + 1)
        assert cnn.num_frames(s) == spectral.num_frames(s) == expected


def test_spectral_frame_sees_only_its_window():
    model = build_encoder(tiny_config(frontend=FRONTENDS["spectral"]), seed=0).eval()
    wav = waveforms(1, 3000)
    with torch.no_grad():
        a = model.frontend.log_mel(wav)
        changed = wav.clone()
        changed[0, 320 * 3 + 400 :] += 1.0  # after frame 3's window
        b = model.frontend.log_mel(changed)
    torch.testing.assert_close(a[:, :4], b[:, :4], atol=0, rtol=0)
    assert not torch.allclose(a[:, 5:], b[:, 5:])


def test_hidden_states_are_differentiable_on_grouped_path():
    model = build_encoder(tiny_config(), seed=0).train()
    rows = [waveforms(1, n, seed=i)[0] for i, n in enumerate([6000, 4000])]
    wavs, lengths = pad_batch(rows)
    states, _ = model.hidden_states(wavs, lengths)
    states[-1].pow(2).mean().backward()
    assert model.frontend.conv_layers[0].conv.weight.grad.abs().sum() > 0
    assert model.encoder.transformer.layers[0].attention.q_proj.weight.grad.abs().sum() > 0


def test_bad_audio_is_refused():
    model = build_encoder(tiny_config(), seed=0).eval()
    with pytest.raises(AudioError, match="8000 Hz"):
        model.hidden_states(waveforms(1, 8000), sample_rate=8000)
    with pytest.raises(AudioError, match="shorter than one frame"):
        model.hidden_states(waveforms(1, 399))
    with pytest.raises(AudioError, match="shorter than one frame"):
        model.hidden_states(waveforms(2, 4000), torch.tensor([4000, 100]))
    with pytest.raises(AudioError, match="batch, samples"):
        model.hidden_states(torch.zeros(4000))
    with pytest.raises(AudioError, match="exceeds"):
        model.hidden_states(waveforms(1, 4000), torch.tensor([5000]))


def test_seed_determines_weights_and_leaves_global_rng_alone():
    torch.manual_seed(7)
    before = torch.rand(1)
    torch.manual_seed(7)
    a = build_encoder(tiny_config(), seed=3)
    after = torch.rand(1)
    assert torch.equal(before, after)
    b = build_encoder(tiny_config(), seed=3)
    c = build_encoder(tiny_config(), seed=4)
    assert a.weights_hash() == b.weights_hash() != c.weights_hash()
    with torch.no_grad():
        next(b.parameters()).add_(1e-3)
    assert a.weights_hash() != b.weights_hash()


@pytest.mark.parametrize("frontend", sorted(FRONTENDS))
def test_as_torchaudio_shares_modules_and_agrees(frontend):
    model = build_encoder(tiny_config(frontend=FRONTENDS[frontend]), seed=5).eval()
    ta = model.as_torchaudio()
    assert ta.feature_extractor is model.frontend and ta.encoder is model.encoder
    wavs = waveforms(2, 6400)
    with torch.no_grad():
        ours, _ = model.hidden_states(wavs)
        theirs, _ = ta.extract_features(wavs)
    assert len(theirs) == model.num_layers
    for a, b in zip(ours[1:], theirs, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_pre_ln_last_state_is_raw_layer_output():
    model = build_encoder(tiny_config(layer_norm_first=True), seed=0).eval()
    wavs = waveforms(1, 4000)
    with torch.no_grad():
        states, _ = model.hidden_states(wavs)
        theirs, _ = model.as_torchaudio().extract_features(wavs)
        final = model.as_torchaudio()(wavs)[0]  # torchaudio's forward applies the final LN
    torch.testing.assert_close(states[-1], theirs[-1], atol=1e-5, rtol=0)
    torch.testing.assert_close(model.encoder.transformer.layer_norm(states[-1]), final, atol=1e-5, rtol=0)


def test_layer_drop_only_in_training():
    model = build_encoder(tiny_config(depth=4, layer_drop=0.99), seed=0)
    wavs = waveforms(1, 4000)
    torch.manual_seed(0)
    with torch.no_grad():
        states, _ = model.train().hidden_states(wavs)
        dropped = sum(torch.equal(a, b) for a, b in zip(states[:-1], states[1:], strict=True))
        states_eval, _ = model.eval().hidden_states(wavs)
        kept = sum(torch.equal(a, b) for a, b in zip(states_eval[:-1], states_eval[1:], strict=True))
    assert dropped >= 3 and kept == 0
