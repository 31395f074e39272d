"""Audio reading and validation: soundfile in, float32 mono 16 kHz out.

Models never resample: everything that reaches a model went through :func:`load_audio`,
which resamples with ``torchaudio.functional.resample`` and rejects bad files with the file
named.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from deepwide.errors import AudioError

SAMPLE_RATE = 16_000


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Read a file as float32 mono, at its own sample rate.

    Args:
        path: WAV, FLAC (or anything libsndfile reads, NIST SPHERE included).

    Returns:
        ``(wav (S,), sample_rate)``.

    Raises:
        AudioError: missing, unreadable, empty or non-finite audio (the message names the file).
    """
    p = Path(path)
    if not p.is_file():
        raise AudioError(f"audio file {p} does not exist; check the corpus path or its manifest")
    try:
        data, sr = sf.read(str(p), dtype="float32", always_2d=True)
    except Exception as exc:  # libsndfile raises several types for corrupt files
        raise AudioError(f"cannot read audio file {p}: {exc}; the file is corrupt or not audio") from exc
    wav = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    validate_waveform(wav, source=str(p))
    return np.ascontiguousarray(wav, dtype=np.float32), int(sr)


def validate_waveform(wav: np.ndarray, source: str = "waveform") -> None:
    """Raise :class:`AudioError` if ``wav`` (S,) is empty or holds NaN/Inf."""
    if wav.size == 0:
        raise AudioError(f"{source} is empty (0 samples); remove it or use --on-bad-audio skip")
    if not np.isfinite(wav).all():
        raise AudioError(f"{source} contains NaN or Inf samples; remove it or use --on-bad-audio skip")


def resample(wav: np.ndarray, orig_sr: int, target_sr: int = SAMPLE_RATE) -> np.ndarray:
    """Resample ``wav`` (S,) from ``orig_sr`` to ``target_sr`` (band-limited sinc, torchaudio)."""
    if orig_sr == target_sr:
        return wav
    import torch
    import torchaudio.functional as taf

    out = taf.resample(torch.from_numpy(np.ascontiguousarray(wav)), orig_sr, target_sr)
    return out.numpy().astype(np.float32, copy=False)


def load_audio(path: str | Path, target_sr: int = SAMPLE_RATE) -> np.ndarray:
    """Read ``path`` as float32 mono at ``target_sr`` (resampling when needed). Returns (S,)."""
    wav, sr = read_audio(path)
    return resample(wav, sr, target_sr)


def check_sample_rate(sample_rate: int, expected: int = SAMPLE_RATE, what: str = "audio") -> None:
    """Raise :class:`AudioError` unless ``sample_rate == expected`` (models never resample)."""
    if int(sample_rate) != expected:
        raise AudioError(
            f"{what} is sampled at {sample_rate} Hz but the model expects {expected} Hz; "
            f"resample it first (deepwide.audio.load_audio does)"
        )
