"""Random recording channels: what makes two halves of an utterance share only the speaker."""

from __future__ import annotations

import torch

from deepwide.framing import FRAME_HOP, FRAME_WINDOW, SAMPLE_RATE, num_frames


def random_channel(x: torch.Tensor, gain_db: float = 0.0) -> torch.Tensor:
    """One random recording channel: filters, peaking bands, white noise and (optionally) gain.

    High-pass 50–300 Hz, low-pass 3.5–7.5 kHz, three peaking bands of ±8 dB at 150 Hz–6 kHz,
    white noise at 10–30 dB SNR, then a gain uniform in ±``gain_db`` dB (drawn only when
    ``gain_db > 0``, so the draws without it are unchanged). Uses torch's global generator.

    Args:
        x: (S,) audio at 16 kHz.

    Returns:
        (S,) the same length.
    """
    import torchaudio.functional as AF

    r = torch.rand(12)
    y = AF.highpass_biquad(x[None], SAMPLE_RATE, float(50 + 250 * r[0]))
    y = AF.lowpass_biquad(y, SAMPLE_RATE, float(3500 + 4000 * r[1]))
    for k in range(3):
        y = AF.equalizer_biquad(y, SAMPLE_RATE, float(150 * 40 ** r[2 + k]), float(16 * r[5 + k] - 8),
                                float(0.7 + 1.3 * r[8 + k]))
    rms = y.pow(2).mean().sqrt().clamp(min=1e-4)
    y = y + rms * 10 ** (-(10 + 20 * float(r[11])) / 20) * torch.randn_like(y)
    if gain_db > 0:
        y = y * 10 ** (float(torch.rand(1)) * 2 * gain_db / 20 - gain_db / 20)
    return y[0]


def augmented_batch(wavs: torch.Tensor, lengths: torch.Tensor, gain_db: float) -> torch.Tensor:
    """Every row through a :func:`random_channel` of its own (valid samples only; padding stays 0).

    Args:
        wavs: (B, S); lengths: (B,).

    Returns:
        (B, S).
    """
    out = torch.zeros_like(wavs)
    for b in range(len(wavs)):
        n = int(lengths[b])
        out[b, :n] = random_channel(wavs[b, :n], gain_db)
    return out


def augmented_halves(
    wavs: torch.Tensor, lengths: torch.Tensor, gain_db: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut every row in two at a random frame of its middle third; give each half its own channel.

    Each half goes through a :func:`random_channel` of its own (filters, peaking bands, noise,
    and a gain of ±``gain_db`` dB when it is > 0), so the two halves of an utterance share the
    speaker but neither words nor recording conditions. Draws from torch's global generator
    (seeded and checkpointed by the run).

    Args:
        wavs: (B, S); lengths: (B,) valid samples, each ≥ 400.

    Returns:
        ``(halves (2B, S'), lengths (2B,))``: rows ``2j``, ``2j + 1`` are the frames
        ``[0, cut)`` and ``[cut, n)`` of row ``j`` (a one-frame row gives that frame twice).
    """
    parts = []
    for b in range(len(wavs)):
        w = wavs[b, : int(lengths[b])]
        n = num_frames(len(w))
        cut = int(torch.randint(max(1, n // 3), max(2, 2 * n // 3 + 1), (1,)))
        # frames [0, cut) need samples [0, (cut - 1) * FRAME_HOP + FRAME_WINDOW); frames [cut, n) start at cut * FRAME_HOP
        for part in (w[: (cut - 1) * FRAME_HOP + FRAME_WINDOW], w[cut * FRAME_HOP:]):
            part = part if len(part) >= FRAME_WINDOW else w[:FRAME_WINDOW]
            parts.append(random_channel(part, gain_db))
    out_len = torch.tensor([len(x) for x in parts])
    out = torch.zeros(len(parts), int(out_len.max()))
    for i, x in enumerate(parts):
        out[i, : len(x)] = x
    return out, out_len

