"""One utterance from its plan: clean speech, then the recording, then its audio file.

These functions run in the worker processes of :func:`deepwide.corpora.synth.generate_synth`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deepwide.corpora.synth.config import SAMPLE_RATE
from deepwide.corpora.synth.plans import UttPlan
from deepwide.corpora.synth.recording import record
from deepwide.corpora.synth.speech import synthesize_speech


@dataclass(frozen=True)
class Rendered:
    """What a worker reports back: sample counts and segments at 16 kHz (in samples)."""

    utt_id: str
    n_samples: int
    phones: tuple[tuple[str, int, int], ...]
    words: tuple[tuple[str, int, int], ...]


def render_utterance(plan: UttPlan) -> tuple[np.ndarray, Rendered]:
    """Synthesise and record one utterance.

    Returns:
        ``(wav (S,) int16 at 16 kHz, Rendered)``; phone segments cover ``[0, S)`` exactly.
    """
    speech, phones, words = synthesize_speech(plan)
    pcm = record(plan, speech, phones)
    return pcm, Rendered(plan.utt_id, len(pcm), tuple(phones), tuple(words))


def write_utterance(plan: UttPlan, root: str) -> Rendered:
    import soundfile as sf

    pcm, rendered = render_utterance(plan)
    path = Path(root) / plan.rel_path
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = "FLAC" if plan.audio_format == "flac" else "WAV"
    sf.write(str(path), pcm, SAMPLE_RATE, subtype="PCM_16", format=fmt)
    return rendered


def init_worker() -> None:
    from deepwide.corpora.espeak import get_engine

    get_engine()
