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

from deepwide.audio import SAMPLE_RATE, check_sample_rate
from deepwide.framing import FRAME_HOP, FRAME_WINDOW, mfcc_transform, num_frames, num_frames_batch


def with_deltas(coefficients: torch.Tensor) -> torch.Tensor:
    """(C, T) coefficients -> (T, 3C) C-contiguous: the coefficients, their Δ and ΔΔ (torchaudio's)."""
    import torchaudio.functional as taf

    d1 = taf.compute_deltas(coefficients[None])[0]
    d2 = taf.compute_deltas(d1[None])[0]
    return torch.cat([coefficients, d1, d2]).T.contiguous()


class MfccEncoder(nn.Module):
    """MFCC + Δ + ΔΔ as a zero-layer :class:`SpeechEncoder`.

    Args:
        context: frames stacked on each side (0 → 39 dims, 4 → 351 dims); edges repeat the
            first/last valid frame.
    """

    frame_rate_hz = 50.0
    sample_rate = SAMPLE_RATE
    num_layers = 0

    def __init__(self, context: int = 0, model_id: str = "mfcc") -> None:
        super().__init__()
        self.context = context
        self.model_id = model_id
        self.dim = 39 * (2 * context + 1)
        self.mfcc = mfcc_transform(13)

    def forward(self, wavs: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[list[torch.Tensor], torch.Tensor]:
        return self.hidden_states(wavs, lengths)

    def hidden_states(
        self, wavs: torch.Tensor, lengths: torch.Tensor | None = None, sample_rate: int = SAMPLE_RATE
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Args: wavs (B, S) at 16 kHz, lengths (B,). Returns ``([feats (B, T, dim)], (B,))``.

        Each row is computed on its own valid samples, so padding never changes a result.
        """
        check_sample_rate(sample_rate)
        b, s = wavs.shape
        lengths = torch.full((b,), s, dtype=torch.long) if lengths is None else lengths.long()
        frames = num_frames_batch(lengths)
        t_max = int(frames.max()) if b else 0
        out = wavs.new_zeros(b, t_max, self.dim)
        for i in range(b):
            n = int(frames[i])
            if n == 0:
                continue
            f = with_deltas(self.mfcc(wavs[i, : int(lengths[i])].float()[None])[0][:, :n])  # (n, 39)
            if self.context:
                idx = (torch.arange(n)[:, None] + torch.arange(-self.context, self.context + 1)[None]).clamp(0, n - 1)
                f = f[idx].reshape(n, -1)
            out[i, :n] = f
        return [out], frames

    def num_frames(self, num_samples: int) -> int:
        """Valid frames for ``num_samples`` samples at 16 kHz (0 when under one window)."""
        return num_frames(num_samples)

    def config_dict(self) -> dict[str, Any]:
        return {"arch": "mfcc", "context": self.context, "n_mfcc": 13, "deltas": 2, "n_mels": 40,
                "win": FRAME_WINDOW, "hop": FRAME_HOP, "normalisation": "none"}

    def weights_hash(self) -> str:
        return hashlib.sha256(repr(sorted(self.config_dict().items())).encode()).hexdigest()[:16]

    def num_params(self) -> int:
        return 0
