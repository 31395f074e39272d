"""Audio reading and validation: soundfile in, float32 mono 16 kHz out.

Models never resample: everything that reaches a model went through :func:`load_audio`,
which resamples with ``torchaudio.functional.resample`` and rejects bad files with the file
named.

A caller that knows how long a file should be (a manifest's ``duration_s``) passes it as
``expected_s``: a decoded length further than :func:`duration_tolerance_s` from it (the larger
of 0.05 s and 1 %) is bad audio — a truncated or replaced file — and raises
:class:`~deepwide.errors.AudioError` naming the file and both durations.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from deepwide.errors import AudioError

SAMPLE_RATE = 16_000

#: A decoded duration may differ from the expected one by the larger of these (seconds, fraction).
DURATION_TOLERANCE_S = 0.05
DURATION_TOLERANCE_FRACTION = 0.01


def duration_tolerance_s(expected_s: float) -> float:
    """Largest accepted ``|decoded - expected|`` in seconds: ``max(0.05 s, 1 % of expected_s)``."""
    return max(DURATION_TOLERANCE_S, DURATION_TOLERANCE_FRACTION * float(expected_s))


def duration_mismatch(n_samples: int, sample_rate: int, expected_s: float) -> str | None:
    """Why ``n_samples`` at ``sample_rate`` is not ``expected_s`` long, or ``None`` if it is
    (within :func:`duration_tolerance_s`)."""
    got = int(n_samples) / int(sample_rate)
    tol = duration_tolerance_s(expected_s)
    if abs(got - float(expected_s)) <= tol:
        return None
    return (
        f"{got:.3f} s long but the manifest says {float(expected_s):.3f} s "
        f"(more than ±{tol:.3f} s off: truncated or replaced?)"
    )


def check_duration(n_samples: int, sample_rate: int, expected_s: float, source: str = "audio") -> None:
    """Raise :class:`AudioError` unless ``n_samples / sample_rate`` is ``expected_s`` within
    :func:`duration_tolerance_s`."""
    reason = duration_mismatch(n_samples, sample_rate, expected_s)
    if reason is not None:
        raise AudioError(
            f"decoded audio of {source} is {reason}; restore the file or regenerate the manifest, "
            f"or use --on-bad-audio skip"
        )


def read_audio(path: str | Path, expected_s: float | None = None) -> tuple[np.ndarray, int]:
    """Read a file as float32 mono, at its own sample rate.

    Args:
        path: WAV, FLAC (or anything libsndfile reads, NIST SPHERE included).
        expected_s: the duration the file should have (a manifest's ``duration_s``), checked
            with :func:`check_duration`; ``None`` skips the check.

    Returns:
        ``(wav (S,), sample_rate)``.

    Raises:
        AudioError: missing, unreadable, empty or non-finite audio, or a decoded length that
            is not ``expected_s`` (the message names the file).
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
    if expected_s is not None:
        check_duration(len(wav), int(sr), expected_s, source=str(p))
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


def load_audio(path: str | Path, target_sr: int = SAMPLE_RATE, expected_s: float | None = None) -> np.ndarray:
    """Read ``path`` as float32 mono at ``target_sr`` (resampling when needed). Returns (S,).

    ``expected_s``: as in :func:`read_audio` (checked at the file's own rate, before resampling).
    """
    wav, sr = read_audio(path, expected_s=expected_s)
    return resample(wav, sr, target_sr)


def check_sample_rate(sample_rate: int, expected: int = SAMPLE_RATE, what: str = "audio") -> None:
    """Raise :class:`AudioError` unless ``sample_rate == expected`` (models never resample)."""
    if int(sample_rate) != expected:
        raise AudioError(
            f"{what} is sampled at {sample_rate} Hz but the model expects {expected} Hz; "
            f"resample it first (deepwide.audio.load_audio does)"
        )
