"""Front-ends: waveform (B, S) at 16 kHz -> frames (B, T, C) at 50 Hz.

Both follow torchaudio's ``FeatureExtractor`` interface,
``forward(wavs (B, S), lengths (B,) | None) -> (feats (B, T, C), frame_lengths (B,) | None)``,
so :meth:`deepwide.models.encoder.Encoder.as_torchaudio` can hand them to torchaudio's
``Wav2Vec2Model`` / ``HuBERTPretrainModel`` unchanged.

Padding. A valid output frame ``t`` only sees input samples ``[hop*t, hop*t + receptive)``,
which lie inside the utterance, so convolutions without padding (the CNN) are exact for valid
frames whatever the padding holds. What is *not* local is handled here or in the encoder:

* waveform normalisation (``normalize_waveform``) uses the mean/variance of each row's valid
  samples only;
* the spectral Conv1d uses "same" padding, so padded frames are zeroed before it (exactly what
  the zero padding of an unpadded row provides);
* the group-norm CNN normalises its first layer over *all* frames of a row: it is exact only
  for unpadded rows — :meth:`Encoder.hidden_states` therefore runs rows of different lengths
  separately (see :attr:`WaveformCNN.time_normalised`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchaudio.models.wav2vec2 import components

from deepwide.framing import FRAME_HOP, FRAME_WINDOW, SAMPLE_RATE, num_frames_batch
from deepwide.models.config import FrontendConfig
from deepwide.models.torchaudio_private import build_feature_extractor

_WAVE_NORM_EPS = 1e-5


def normalize_waveform(wavs: Tensor, lengths: Tensor | None) -> Tensor:
    """Zero-mean, unit-variance normalisation of each row over its valid samples.

    Equals ``F.layer_norm(row[:len], (len,))`` (eps 1e-5) on every unpadded row; padded
    samples come out as zeros.

    Args:
        wavs: (B, S) waveforms.
        lengths: (B,) valid samples per row, or ``None`` (all valid).

    Returns:
        (B, S) normalised waveforms.
    """
    if lengths is None:
        return nn.functional.layer_norm(wavs, wavs.shape[-1:], eps=_WAVE_NORM_EPS)
    valid = torch.arange(wavs.shape[1], device=wavs.device)[None, :] < lengths[:, None]
    count = lengths.clamp(min=1).to(wavs.dtype)[:, None]
    x = wavs.masked_fill(~valid, 0.0)
    mean = x.sum(dim=1, keepdim=True) / count
    var = ((x - mean).masked_fill(~valid, 0.0) ** 2).sum(dim=1, keepdim=True) / count
    return ((x - mean) / torch.sqrt(var + _WAVE_NORM_EPS)).masked_fill(~valid, 0.0)


class WaveformCNN(components.FeatureExtractor):
    """HuBERT / wav2vec 2.0 waveform CNN (torchaudio's ``FeatureExtractor``, same state keys).

    Adds optional per-utterance waveform normalisation (``normalize_waveform``).

    Attributes:
        time_normalised: True for the group-norm variant, whose first layer normalises over
            time — padded rows then differ from unpadded ones, so callers must not pad.
    """

    def __init__(self, conv_layers: nn.ModuleList, *, normalize: bool, time_normalised: bool) -> None:
        super().__init__(conv_layers)
        self.normalize = normalize
        self.time_normalised = time_normalised

    def forward(self, x: Tensor, length: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """Args: x (B, S) waveforms; length (B,) valid samples or None.

        Returns:
            ``(feats (B, T, C), frame_lengths (B,) | None)``.
        """
        if self.normalize:
            x = normalize_waveform(x, length)
        return super().forward(x, length)


def _frame_mask(num_frames: int, lengths: Tensor) -> Tensor:
    """(B, T) bool, True on valid frames."""
    return torch.arange(num_frames, device=lengths.device)[None, :] < lengths[:, None]


class SpectralFrontend(nn.Module):
    """Log-mel filterbank + one Conv1d over time, on the 50 Hz grid of the HuBERT CNN.

    Frame ``t`` is the Hann-windowed 400-sample window starting at sample ``320 t`` (no centre
    padding), so ``T = floor((S - 400) / 320) + 1`` — the CNN's frame count — and a valid frame
    never sees padding. Log-mel ``log(mel + 1e-6)`` (B, T, n_mels) -> padded frames zeroed ->
    Conv1d(n_mels, channels, kernel, "same") -> LayerNorm(channels) -> GELU.

    Attributes:
        time_normalised: always False (nothing normalises over time; padding is exact).
    """

    time_normalised = False

    def __init__(self, n_mels: int, channels: int, kernel: int) -> None:
        super().__init__()
        import torchaudio.functional as taf

        self.n_fft = FRAME_WINDOW
        self.hop = FRAME_HOP
        self.n_mels = n_mels
        self.kernel_size = kernel
        fb = taf.melscale_fbanks(
            n_freqs=self.n_fft // 2 + 1,
            f_min=0.0,
            f_max=8000.0,
            n_mels=n_mels,
            sample_rate=SAMPLE_RATE,
            norm="slaney",
            mel_scale="slaney",
        )
        # Fixed, derived from the config: not part of the state dict.
        self.register_buffer("mel_fb", fb, persistent=False)  # (n_freqs, n_mels)
        self.register_buffer(
            "window", torch.hann_window(self.n_fft, periodic=True), persistent=False
        )
        self.conv = nn.Conv1d(n_mels, channels, kernel, padding=kernel // 2)
        self.layer_norm = nn.LayerNorm(channels)

    def num_frames(self, lengths: Tensor) -> Tensor:
        """(B,) valid frames for (B,) valid samples (the 50 Hz grid)."""
        return num_frames_batch(lengths)

    def log_mel(self, wavs: Tensor) -> Tensor:
        """(B, S) -> (B, T, n_mels) log-mel energies (T = floor((S-400)/320)+1)."""
        if wavs.shape[1] < self.n_fft:
            return wavs.new_zeros(wavs.shape[0], 0, self.n_mels)
        frames = wavs.unfold(1, self.n_fft, self.hop) * self.window  # (B, T, 400)
        power = torch.fft.rfft(frames, n=self.n_fft).abs().pow(2)  # (B, T, 201)
        return torch.log(power @ self.mel_fb + 1e-6)

    def forward(self, x: Tensor, length: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """Args: x (B, S) waveforms; length (B,) valid samples or None.

        Returns:
            ``(feats (B, T, channels), frame_lengths (B,) | None)``.
        """
        if x.ndim != 2:
            raise ValueError(f"expected (batch, time) waveforms, got shape {list(x.shape)}")
        feats = self.log_mel(x)
        frame_lengths = None
        if length is not None:
            frame_lengths = self.num_frames(length)
            feats = feats.masked_fill(~_frame_mask(feats.shape[1], frame_lengths)[..., None], 0.0)
        y = self.conv(feats.transpose(1, 2)).transpose(1, 2)
        y = nn.functional.gelu(self.layer_norm(y))
        return y, frame_lengths


def build_frontend(config: FrontendConfig) -> nn.Module:
    """Build the front-end module of ``config`` (default PyTorch initialisation)."""
    if config.kind == "spectral":
        return SpectralFrontend(config.n_mels, config.channels, config.kernel)
    base = build_feature_extractor(config.norm, config.conv_layers, config.conv_bias)
    return WaveformCNN(
        base.conv_layers,
        normalize=config.normalize_waveform,
        time_normalised=config.norm == "group_norm",
    )


def frames_for(config: FrontendConfig, lengths: Tensor) -> Tensor:
    """(B,) valid frames of the front-end of ``config`` for (B,) valid samples."""
    if config.kind == "spectral":
        return num_frames_batch(lengths)
    n = lengths
    for _, kernel, stride in config.conv_layers:
        n = torch.clamp(torch.div(n - kernel, stride, rounding_mode="floor") + 1, min=0)
    return n


__all__ = [
    "SpectralFrontend",
    "WaveformCNN",
    "build_frontend",
    "frames_for",
    "normalize_waveform",
]
