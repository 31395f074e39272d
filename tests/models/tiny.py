"""Tiny encoder configs and waveforms for the model tests (built in code, CPU-fast)."""

from __future__ import annotations

import torch

from deepwide.models.config import EncoderConfig, FrontendConfig

#: HuBERT's CNN strides and kernels (400-sample window, 320 hop) with 32 channels.
TINY_CNN = ((32, 10, 5),) + ((32, 3, 2),) * 4 + ((32, 2, 2),) * 2


def tiny_config(**overrides) -> EncoderConfig:
    """A 2-layer, 64-wide encoder; ``frontend`` and any other field can be overridden."""
    base = dict(
        depth=2,
        width=64,
        ffn=128,
        heads=4,
        pos_conv_kernel=16,
        pos_conv_groups=4,
        frontend=FrontendConfig(conv_layers=TINY_CNN),
    )
    base.update(overrides)
    return EncoderConfig(**base)


FRONTENDS = {
    "cnn-groupnorm": FrontendConfig(conv_layers=TINY_CNN),
    "cnn-layernorm": FrontendConfig(
        conv_layers=TINY_CNN, norm="layer_norm", conv_bias=True, normalize_waveform=True
    ),
    "spectral": FrontendConfig(kind="spectral", n_mels=40, channels=32, kernel=3),
}


def waveforms(batch: int, samples: int, seed: int = 0) -> torch.Tensor:
    """(batch, samples) noise with some low-frequency structure, float32."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(samples) / 16000.0
    tone = torch.sin(2 * torch.pi * (120 + 40 * torch.rand(batch, 1, generator=g)) * t)
    return (0.3 * tone + 0.1 * torch.randn(batch, samples, generator=g)).float()


def pad_batch(wavs: list[torch.Tensor], *, garbage: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad 1-D waveforms: ((B, S_max), lengths (B,)).

    With ``garbage`` the padding holds loud noise instead of zeros (results must not change).
    """
    lengths = torch.tensor([w.shape[0] for w in wavs])
    out = torch.zeros(len(wavs), int(lengths.max()))
    if garbage:
        out = 5.0 * torch.randn(out.shape, generator=torch.Generator().manual_seed(123))
    for i, w in enumerate(wavs):
        out[i, : w.shape[0]] = w
    return out, lengths
