"""Clean speech of a plan: espeak-ng with the speaker's voice file, formant scaling, 16 kHz,
placement, and the phone and word alignments that come with it.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from deepwide.corpora.phones import SILENCE, map_espeak_phone, merge_segments
from deepwide.corpora.synth.config import SAMPLE_RATE
from deepwide.corpora.synth.plans import UttPlan

#: Sample rate espeak-ng synthesises at (Hz).
ESPEAK_RATE = 22_050
#: F0 of espeak-ng grows by a factor exp(0.011) per unit of its pitch parameter (measured for
#: en-us and its m*/f* variants at range 0: 53 Hz at 0, 89 Hz at 50, 158 Hz at 100).
PITCH_LOG_SLOPE = 0.011


def _espeak_params(plan: UttPlan) -> tuple[int, int, int, int]:
    """Compensated espeak settings and the source rate that realises the formant scale.

    Playing audio synthesised at 22050 Hz as if it were ``src`` Hz scales every frequency
    (formants and F0) by ``src / 22050`` and every duration by the inverse; pitch and rate
    are set beforehand so that F0 and tempo land on the plan's values.
    """
    src = int(round(ESPEAK_RATE * plan.formant / 50.0)) * 50  # multiple of 50: cheap polyphase
    scale = src / ESPEAK_RATE
    pitch = plan.pitch - math.log(scale) / PITCH_LOG_SLOPE
    rate = plan.rate / scale
    return int(round(pitch)), int(round(plan.pitch_range)), int(round(rate)), src


@functools.lru_cache(maxsize=512)
def _voice_definition(language: str, variant: str, formants: tuple[tuple[float, float, float], ...]) -> str:
    from deepwide.corpora.espeak import voice_file_text

    return voice_file_text(language, variant, {k + 1: f for k, f in enumerate(formants)})


def synthesize_speech(plan: UttPlan) -> tuple[np.ndarray, list[tuple[str, int, int]], list[tuple[str, int, int]]]:
    """The clean, placed speech of ``plan``: espeak → formant scaling → 16 kHz → padding.

    Depends only on what is said and how the speaker says it (text, voice, pitch, range,
    rate, formant, seed) and on the padding/placement, not on the channel or noise.

    Returns:
        ``(speech (S,) float64 in [-1, 1], phones, words)`` with segments in samples at 16 kHz;
        phone segments tile ``[0, S)`` with ``sil`` on pauses and padding.
    """
    from scipy import signal

    if plan.text is None:  # a _silence_ clip: no speech at all
        n = int(round((plan.clip_s or 1.0) * SAMPLE_RATE))
        return np.zeros(n), [(SILENCE, 0, n)], []
    from deepwide.corpora.espeak import get_engine

    pitch, prange, rate, src = _espeak_params(plan)
    out = get_engine().synthesize(
        plan.text, rate=rate, pitch=pitch, pitch_range=prange, seed=plan.seed,
        voice_definition=_voice_definition(plan.language, plan.variant, plan.formants),
    )
    g = math.gcd(src, SAMPLE_RATE)
    up, down = SAMPLE_RATE // g, src // g
    y = signal.resample_poly(out.wav.astype(np.float64) / 32768.0, up, down)

    def at16(sample: int) -> int:
        return min(int(round(sample * up / down)), len(y))

    lead = int(round(plan.pad_lead_s * SAMPLE_RATE))
    trail = int(round(plan.pad_trail_s * SAMPLE_RATE))
    if plan.clip_s is not None:
        total = max(int(round(plan.clip_s * SAMPLE_RATE)), len(y))
        lead = int(round(plan.offset_frac * (total - len(y))))
        trail = total - len(y) - lead
    speech = np.concatenate([np.zeros(lead), y, np.zeros(trail)])
    n = len(speech)
    segs = [(map_espeak_phone(lab), lead + at16(a), lead + at16(b)) for lab, a, b in out.phones]
    segs = [(p, a, b) for p, a, b in segs if b > a]
    first = segs[0][1] if segs else n
    last = segs[-1][2] if segs else n
    phones = merge_segments([(SILENCE, 0, first), *segs, (SILENCE, last, n)])
    phones = [seg for seg in phones if seg[2] > seg[1]]
    words = [(w, lead + at16(a), lead + at16(b)) for w, a, b in out.words]
    words = [seg for seg in words if seg[2] > seg[1]]
    return speech, phones, words
