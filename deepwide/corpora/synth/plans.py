"""Utterance plans: every random choice of every utterance, made up front in the parent process.

A plan is pure data; rendering it is deterministic, so the corpus does not depend on how many
worker processes render it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from deepwide.corpora.synth.config import KINDS, SynthConfig
from deepwide.corpora.synth.seeds import seeded_rng
from deepwide.corpora.synth.speakers import Speaker
from deepwide.corpora.synth.texts import (
    INTENTS,
    KEYWORD_CLASSES,
    SILENCE_CLASS,
    UNKNOWN,
    UNKNOWN_WORDS,
    make_command,
    make_sentence,
)


@dataclass(frozen=True)
class UttPlan:
    """Everything needed to render one utterance (pure data: rendering is deterministic)."""

    utt_id: str
    speaker: str
    kind: str
    text: str | None
    keyword: str | None
    intent: str | None
    language: str
    variant: str
    formants: tuple[tuple[float, float, float], ...]
    pitch: float
    pitch_range: float
    rate: float
    formant: float
    level_dbfs: float
    snr_db: float
    noise_tilt: float
    highpass_hz: float
    lowpass_hz: float
    bands: tuple[tuple[float, float, float], ...]  # (freq Hz, gain dB, Q)
    pad_lead_s: float
    pad_trail_s: float
    clip_s: float | None  # fixed clip length (keywords), None = padded speech
    offset_frac: float  # where speech sits inside a fixed clip, 0..1
    seed: int  # espeak's seed
    noise_seed: int  # the additive noise's seed
    audio_format: str = "flac"

    @property
    def rel_path(self) -> str:
        return f"audio/{self.speaker}/{self.utt_id}.{self.audio_format}"


def plan_utterances(config: SynthConfig, speakers: list[Speaker], seed: int) -> list[UttPlan]:
    """All utterance plans, speaker by speaker (sentences, then keywords, then commands)."""
    counts = config.kind_counts()
    plans: list[UttPlan] = []
    for si, spk in enumerate(speakers):
        for kind_index, kind in enumerate(KINDS):
            for j in range(counts[kind]):
                plans.append(_plan_one(config, spk, si, kind, j, counts[kind], seed, kind_index))
    return plans


def _plan_one(
    config: SynthConfig, spk: Speaker, si: int, kind: str, j: int, n_kind: int, seed: int, kind_index: int
) -> UttPlan:
    # three independent streams: what is said, how the speaker says it, how it is recorded;
    # changing the recording settings leaves the words and the voice untouched
    rng = seeded_rng(seed, 2, si, kind_index, j, 0)
    voice_rng = seeded_rng(seed, 2, si, kind_index, j, 1)
    rec_rng = seeded_rng(seed, 2, si, kind_index, j, 2)
    text = keyword = intent = None
    clip_s: float | None = None
    if kind == "sentence":
        text = make_sentence(rng)
    elif kind == "keyword":
        keyword = KEYWORD_CLASSES[(si * n_kind + j) % len(KEYWORD_CLASSES)]
        if keyword == UNKNOWN:
            text = UNKNOWN_WORDS[int(rng.integers(len(UNKNOWN_WORDS)))]
        elif keyword != SILENCE_CLASS:
            text = keyword
        clip_s = config.keyword_clip_s
    else:
        intent = INTENTS[(si * n_kind + j) % len(INTENTS)]
        text = make_command(rng, intent)
    letter = kind[0]
    width = max(2, len(str(n_kind - 1)))
    z = voice_rng.standard_normal(4)  # pitch, range, rate, formant jitter
    level = round(float(rec_rng.uniform(*config.level_dbfs)), 3)
    snr = round(float(rec_rng.uniform(*config.snr_db)), 3)
    tilt = round(float(rec_rng.uniform(*config.noise_tilt)), 3)
    highpass = round(float(rec_rng.uniform(*config.highpass_hz)), 2)
    lowpass = round(float(rec_rng.uniform(*config.lowpass_hz)), 2)
    pads = [round(float(x), 4) for x in rec_rng.uniform(*config.pad_s, size=2)]
    offset = round(float(rec_rng.uniform()), 4)
    band_draws = rec_rng.uniform(size=(8, 3))  # fixed count: channel_bands only truncates
    bands = tuple(
        (
            round(float(math.exp(math.log(200.0) + u[0] * math.log(6000.0 / 200.0))), 2),
            round(float((2 * u[1] - 1) * config.channel_gain_db), 3),
            round(float(0.5 + 2.0 * u[2]), 3),
        )
        for u in band_draws[: config.channel_bands]
    )
    return UttPlan(
        utt_id=f"{spk.speaker_id}-{letter}{j:0{width}d}",
        speaker=spk.speaker_id,
        kind=kind,
        text=text,
        keyword=keyword,
        intent=intent,
        language=config.language,
        variant=spk.variant,
        formants=spk.formants,
        pitch=round(float(spk.pitch + config.pitch_jitter * z[0]), 3),
        pitch_range=round(float(spk.pitch_range + config.range_jitter * z[1]), 3),
        rate=round(float(spk.rate * math.exp(config.rate_jitter * z[2])), 3),
        formant=round(float(spk.formant * math.exp(config.formant_jitter * z[3])), 5),
        level_dbfs=level,
        snr_db=snr,
        noise_tilt=tilt,
        highpass_hz=highpass,
        lowpass_hz=lowpass,
        bands=bands,
        pad_lead_s=pads[0],
        pad_trail_s=pads[1],
        clip_s=clip_s,
        offset_frac=offset,
        seed=int(voice_rng.integers(2**31 - 1)),
        noise_seed=int(rec_rng.integers(2**31 - 1)),
        audio_format=config.audio_format,
    )
