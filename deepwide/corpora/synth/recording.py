"""The recording chain (DSP): channel filter, level and additive coloured noise on clean speech."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from deepwide.corpora.phones import SILENCE
from deepwide.corpora.synth.config import SAMPLE_RATE
from deepwide.corpora.synth.plans import UttPlan
from deepwide.corpora.synth.seeds import seeded_rng


def _channel_sos(plan: UttPlan) -> np.ndarray:
    """Second-order sections of the plan's channel: high-pass, low-pass, peaking bands."""
    from scipy import signal

    sections = [
        signal.butter(2, plan.highpass_hz, "highpass", fs=SAMPLE_RATE, output="sos"),
        signal.butter(4, plan.lowpass_hz, "lowpass", fs=SAMPLE_RATE, output="sos"),
    ]
    for freq, gain_db, q in plan.bands:
        # RBJ audio-EQ-cookbook peaking filter
        a_lin = 10 ** (gain_db / 40)
        w0 = 2 * math.pi * min(freq, 0.45 * SAMPLE_RATE) / SAMPLE_RATE
        alpha = math.sin(w0) / (2 * q)
        b = np.array([1 + alpha * a_lin, -2 * math.cos(w0), 1 - alpha * a_lin])
        a = np.array([1 + alpha / a_lin, -2 * math.cos(w0), 1 - alpha / a_lin])
        sections.append(np.concatenate([b / a[0], a / a[0]])[None, :])
    return np.concatenate(sections, axis=0)


def _colored_noise(n: int, tilt: float, rng: np.random.Generator) -> np.ndarray:
    """Unit-power noise (n,) whose power spectrum falls as f^-tilt."""
    white = rng.standard_normal(n)
    spec = np.fft.rfft(white)
    f = np.fft.rfftfreq(n, 1.0 / SAMPLE_RATE)
    f[0] = f[1] if n > 1 else 1.0
    spec *= (f / 1000.0) ** (-tilt / 2.0)
    noise = np.fft.irfft(spec, n)
    return noise / max(float(np.sqrt(np.mean(noise**2))), 1e-12)


def record(plan: UttPlan, speech: np.ndarray, phones: Sequence[tuple[str, int, int]]) -> np.ndarray:
    """Pass clean speech through the plan's channel, level and additive noise.

    Args:
        plan: the utterance plan (channel, level, SNR, noise colour and seed).
        speech: (S,) float64 clean speech from :func:`synthesize_speech`.
        phones: its phone segments in samples (the SNR is measured over non-``sil`` phones).

    Returns:
        (S,) int16 PCM.
    """
    from scipy import signal

    rng = seeded_rng(plan.noise_seed, 7)
    active = np.zeros(len(speech), bool)
    for p, a, b in phones:
        if p != SILENCE:
            active[a:b] = True
    x = signal.sosfilt(_channel_sos(plan), speech) if active.any() else speech.copy()
    if active.any():  # speech RMS over the phones (not the pauses); noise relative to it
        x *= 10 ** (plan.level_dbfs / 20) / max(float(np.sqrt(np.mean(x[active] ** 2))), 1e-12)
    noise_rms = 10 ** ((plan.level_dbfs - plan.snr_db) / 20)
    wav = x + noise_rms * _colored_noise(len(x), plan.noise_tilt, rng)
    peak = float(np.max(np.abs(wav))) if len(wav) else 0.0
    if peak > 0.97:
        wav *= 0.97 / peak
    return np.clip(np.round(wav * 32767.0), -32768, 32767).astype(np.int16)
