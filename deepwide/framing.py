"""The 50 Hz frame grid every deepwide model, store and label shares.

One rule, one home: audio is 16 kHz; frame ``t`` spans samples ``[320 t, 320 t + 400)``
(a 25 ms window every 20 ms), so ``S`` samples give ``⌊(S − 400) / 320⌋ + 1`` frames (0 under
one window); a frame's phone is the phone segment covering its centre ``(320 t + 200) / 16000``
seconds. The spectral front-end, the MFCC baselines, the stores' phone labels and the tiny
teacher's pre-training all use these functions — a waveform CNN front-end has its own
receptive field (:meth:`deepwide.models.config.FrontendConfig.num_frames`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from deepwide.audio import SAMPLE_RATE
from deepwide.errors import CorpusError

#: Analysis window and hop in samples at 16 kHz (25 ms, 20 ms).
FRAME_WINDOW = 400
FRAME_HOP = 320
#: Frames per second of the grid.
FRAME_RATE_HZ = SAMPLE_RATE / FRAME_HOP


def num_frames(num_samples: int) -> int:
    """Frames of the grid for ``num_samples`` samples at 16 kHz (0 if under one window)."""
    if num_samples < FRAME_WINDOW:
        return 0
    return (int(num_samples) - FRAME_WINDOW) // FRAME_HOP + 1


def num_frames_batch(lengths: Any) -> Any:
    """:func:`num_frames` of each length: (B,) integer tensor of samples -> (B,) frames."""
    import torch

    return torch.clamp(torch.div(lengths - FRAME_WINDOW, FRAME_HOP, rounding_mode="floor") + 1, min=0)


def resampled_length(num_samples: int, sample_rate: int) -> int:
    """Length after resampling to 16 kHz, as ``torchaudio.functional.resample`` returns it."""
    if sample_rate == SAMPLE_RATE:
        return int(num_samples)
    return -(-SAMPLE_RATE * int(num_samples) // int(sample_rate))


def frame_centres_s(n_frames: int) -> np.ndarray:
    """Centre time (s) of each frame: ``t * 0.02 + 0.0125``. Returns (n_frames,) float64."""
    t = np.arange(n_frames, dtype=np.float64)
    return (t * FRAME_HOP + FRAME_WINDOW / 2) / SAMPLE_RATE


def phone_labels(
    segments: Sequence[tuple[str, float, float]], n_frames: int, phone_index: dict[str, int]
) -> np.ndarray:
    """Label each frame with the phone segment ``[start, end)`` covering its centre.

    Args:
        segments: ``(phone, start_s, end_s)`` in time order without overlaps (a manifest's
            ``phones``).
        n_frames: frames of the utterance.
        phone_index: phone -> class index. An empty label (a pause without a symbol) maps to
            -1; any other label missing from it is an error.

    Returns:
        (n_frames,) int16, -1 where no segment covers the centre.

    Raises:
        CorpusError: a segment label missing from the phone set.
    """
    out = np.full(n_frames, -1, dtype=np.int16)
    if not segments or n_frames == 0:
        return out
    starts = np.array([s[1] for s in segments], dtype=np.float64)
    ends = np.array([s[2] for s in segments], dtype=np.float64)
    labels = np.empty(len(segments), dtype=np.int16)
    for i, (ph, _, _) in enumerate(segments):
        if ph in phone_index:
            labels[i] = phone_index[ph]
        elif ph == "":
            labels[i] = -1
        else:
            raise CorpusError(
                f"phone {ph!r} is not in the corpus phone set; the manifest is inconsistent, regenerate it"
            )
    order = np.argsort(starts, kind="stable")
    starts, ends, labels = starts[order], ends[order], labels[order]
    centres = frame_centres_s(n_frames)
    seg = np.searchsorted(starts, centres, side="right") - 1
    ok = (seg >= 0) & (centres < ends[np.clip(seg, 0, None)])
    out[ok] = labels[seg[ok]]
    return out


def mfcc_transform(n_mfcc: int = 13, *, hop_length: int = FRAME_HOP, center: bool = False) -> Any:
    """torchaudio's MFCC (40 mels, 400-sample window) at 16 kHz.

    The default is the grid's own analysis (one frame per grid frame, no centring): the
    ``mfcc`` baseline encoder and the tiny teacher's first-round targets. ``(S,)`` or
    ``(B, S)`` in, ``(…, n_mfcc, T)`` out.
    """
    import torchaudio

    return torchaudio.transforms.MFCC(
        sample_rate=SAMPLE_RATE, n_mfcc=n_mfcc,
        melkwargs={"n_fft": FRAME_WINDOW, "win_length": FRAME_WINDOW, "hop_length": hop_length,
                   "n_mels": 40, "center": center},
    )


__all__ = [
    "FRAME_HOP",
    "FRAME_RATE_HZ",
    "FRAME_WINDOW",
    "SAMPLE_RATE",
    "frame_centres_s",
    "mfcc_transform",
    "num_frames",
    "num_frames_batch",
    "phone_labels",
    "resampled_length",
]
