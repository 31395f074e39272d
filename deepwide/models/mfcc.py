"""The MFCC encoder behind the ``mfcc`` / ``mfcc-context`` feature baselines.

A zero-layer :class:`~deepwide.models.base.SpeechEncoder` whose single state (index 0) is
MFCC + Δ + ΔΔ on the 50 Hz model grid, optionally stacked with neighbouring frames. See
:mod:`deepwide.models.features` for the names and what they are for.
"""

from __future__ import annotations

import hashlib
from typing import Any

import torch
from torch import nn

from deepwide.audio import check_sample_rate

#: Analysis window and hop in samples at 16 kHz: the 50 Hz grid of the models.
WIN, HOP = 400, 320


class MfccEncoder(nn.Module):
    """MFCC + Δ + ΔΔ as a zero-layer :class:`SpeechEncoder`.

    Args:
        context: frames stacked on each side (0 → 39 dims, 4 → 351 dims); edges repeat the
            first/last valid frame.
    """

    frame_rate_hz = 50.0
    sample_rate = 16000
    num_layers = 0

    def __init__(self, context: int = 0, model_id: str = "mfcc") -> None:
        super().__init__()
        import torchaudio

        self.context = context
        self.model_id = model_id
        self.dim = 39 * (2 * context + 1)
        self.mfcc = torchaudio.transforms.MFCC(
            sample_rate=16000, n_mfcc=13,
            melkwargs={"n_fft": WIN, "win_length": WIN, "hop_length": HOP, "n_mels": 40, "center": False},
        )

    def forward(self, wavs: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[list[torch.Tensor], torch.Tensor]:
        return self.hidden_states(wavs, lengths)

    def hidden_states(
        self, wavs: torch.Tensor, lengths: torch.Tensor | None = None, sample_rate: int = 16000
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Args: wavs (B, S) at 16 kHz, lengths (B,). Returns ``([feats (B, T, dim)], (B,))``.

        Each row is computed on its own valid samples, so padding never changes a result.
        """
        import torchaudio.functional as taf

        check_sample_rate(sample_rate)
        b, s = wavs.shape
        lengths = torch.full((b,), s, dtype=torch.long) if lengths is None else lengths.long()
        frames = torch.clamp((lengths - WIN) // HOP + 1, min=0)
        t_max = int(frames.max()) if b else 0
        out = wavs.new_zeros(b, t_max, self.dim)
        for i in range(b):
            n = int(frames[i])
            if n == 0:
                continue
            m = self.mfcc(wavs[i, : int(lengths[i])].float()[None])[0][:, :n]  # (13, n)
            d1 = taf.compute_deltas(m[None])[0]
            d2 = taf.compute_deltas(d1[None])[0]
            f = torch.cat([m, d1, d2]).T  # (n, 39)
            if self.context:
                idx = (torch.arange(n)[:, None] + torch.arange(-self.context, self.context + 1)[None]).clamp(0, n - 1)
                f = f[idx].reshape(n, -1)
            out[i, :n] = f
        return [out], frames

    def num_frames(self, num_samples: int) -> int:
        """Valid frames for ``num_samples`` samples at 16 kHz (0 when under one window)."""
        return max(0, (int(num_samples) - WIN) // HOP + 1)

    def config_dict(self) -> dict[str, Any]:
        return {"arch": "mfcc", "context": self.context, "n_mfcc": 13, "deltas": 2, "n_mels": 40,
                "win": WIN, "hop": HOP, "normalisation": "none"}

    def weights_hash(self) -> str:
        return hashlib.sha256(repr(sorted(self.config_dict().items())).encode()).hexdigest()[:16]

    def num_params(self) -> int:
        return 0
