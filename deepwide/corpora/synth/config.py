"""What defines a synthetic corpus, except the seed: :class:`SynthConfig` and its constants."""

from __future__ import annotations

import math
from dataclasses import dataclass

from deepwide.audio import SAMPLE_RATE

#: The kinds of utterance, in the order each speaker's plans list them.
KINDS = ("sentence", "keyword", "command")


@dataclass(frozen=True)
class SynthConfig:
    """Everything that defines a synthetic corpus, except the seed.

    Ranges are ``(low, high)`` of uniform draws; ``*_jitter`` are standard deviations of
    per-utterance Gaussian jitter around a speaker's own value. Pitch and range are in
    espeak's 0–100 units (F0 ∝ exp(0.011 × pitch)); rate in words per minute.

    Attributes:
        n_speakers: number of speakers (≥ 4: train, dev and two test speakers at least).
        utts_per_speaker: utterances per speaker, split over the kinds by ``kind_fractions``.
        kind_fractions: shares of (sentence, keyword, command); each kind gets ≥ 1 utterance.
        language: espeak language of every voice (one phone set for all speakers).
        variants: espeak voice variants (``voices/!v``) the speakers are built on;
            ``variant_weights`` their shares.
        formant_spread: standard deviation of a speaker's log factor on each of the formants
            F1–F5 (on top of the variant's own values): an individual vocal-tract shape.
        formant_height_spread: the same for the formants' amplitudes.
        speaker_pitch, speaker_range, speaker_rate, speaker_formant: speaker-level ranges.
        pitch_jitter, range_jitter: per-utterance jitter (espeak units).
        rate_jitter, formant_jitter: per-utterance relative jitter (fraction of the value).
        level_dbfs: speech RMS level range (dB full scale).
        snr_db: additive-noise SNR range (speech power over noise power).
        noise_tilt: spectral slope range of the noise (power ∝ f^-tilt: 0 white, 1 pink).
        channel_bands: number of random peaking bands of the channel filter.
        channel_gain_db: largest |gain| of a peaking band.
        highpass_hz, lowpass_hz: ranges of the channel's cut-off frequencies.
        pad_s: range of leading and of trailing silence added around speech.
        keyword_clip_s: duration of keyword clips (longer words get a longer clip).
        speaker_fractions: (train, dev, test) shares of speakers for the content split.
        sid_fractions: (train, dev, test) shares of each speaker's sentences for speaker ID.
        max_trials: cap on target and on non-target verification trials (each).
        audio_format: ``flac`` or ``wav`` (16-bit PCM either way).
    """

    n_speakers: int = 100
    utts_per_speaker: int = 22
    kind_fractions: tuple[float, float, float] = (0.41, 0.32, 0.27)
    language: str = "en-us"
    variants: tuple[str, ...] = ("m3", "m1", "f2", "f4")
    variant_weights: tuple[float, ...] = (0.4, 0.2, 0.2, 0.2)
    formant_spread: float = 0.06
    formant_height_spread: float = 0.15
    speaker_pitch: tuple[float, float] = (30.0, 70.0)
    speaker_range: tuple[float, float] = (20.0, 80.0)
    speaker_rate: tuple[float, float] = (150.0, 200.0)
    speaker_formant: tuple[float, float] = (0.92, 1.10)
    pitch_jitter: float = 4.0
    range_jitter: float = 8.0
    rate_jitter: float = 0.06
    formant_jitter: float = 0.01
    level_dbfs: tuple[float, float] = (-30.0, -16.0)
    snr_db: tuple[float, float] = (8.0, 32.0)
    noise_tilt: tuple[float, float] = (0.0, 1.5)
    channel_bands: int = 3
    channel_gain_db: float = 6.0
    highpass_hz: tuple[float, float] = (60.0, 250.0)
    lowpass_hz: tuple[float, float] = (4500.0, 7600.0)
    pad_s: tuple[float, float] = (0.05, 0.25)
    keyword_clip_s: float = 1.0
    speaker_fractions: tuple[float, float, float] = (0.7, 0.1, 0.2)
    sid_fractions: tuple[float, float, float] = (0.7, 0.1, 0.2)
    max_trials: int = 3000
    audio_format: str = "flac"

    def __post_init__(self) -> None:
        if self.n_speakers < 4:
            raise ValueError(f"n_speakers must be ≥ 4 (train, dev and two test speakers), got {self.n_speakers}")
        if self.utts_per_speaker < 3:
            raise ValueError(f"utts_per_speaker must be ≥ 3 (one per kind), got {self.utts_per_speaker}")
        for name in ("kind_fractions", "speaker_fractions", "sid_fractions"):
            fr = getattr(self, name)
            if len(fr) != 3 or min(fr) < 0 or not math.isclose(sum(fr), 1.0, abs_tol=1e-6):
                raise ValueError(f"{name} must be three non-negative shares summing to 1, got {fr}")
        if not self.variants or len(self.variant_weights) != len(self.variants) or min(self.variant_weights) <= 0:
            raise ValueError("variants must be non-empty and variant_weights one positive weight per variant")
        if self.formant_spread < 0 or self.formant_height_spread < 0:
            raise ValueError("formant_spread and formant_height_spread must be ≥ 0")
        for name in ("speaker_pitch", "speaker_range", "speaker_rate", "speaker_formant", "level_dbfs",
                     "snr_db", "noise_tilt", "highpass_hz", "lowpass_hz", "pad_s"):
            lo, hi = getattr(self, name)
            if lo > hi:
                raise ValueError(f"{name} must be (low, high) with low ≤ high, got {(lo, hi)}")
        if not (0 <= self.speaker_pitch[0] and self.speaker_pitch[1] <= 100):
            raise ValueError("speaker_pitch must lie in espeak's 0–100")
        if not (0 <= self.speaker_range[0] and self.speaker_range[1] <= 100):
            raise ValueError("speaker_range must lie in espeak's 0–100")
        if not (0.7 <= self.speaker_formant[0] and self.speaker_formant[1] <= 1.4):
            raise ValueError("speaker_formant must lie within 0.7–1.4")
        if self.lowpass_hz[1] >= SAMPLE_RATE / 2 or self.highpass_hz[1] >= self.lowpass_hz[0]:
            raise ValueError("need highpass_hz < lowpass_hz < 8000 Hz")
        if min(self.pitch_jitter, self.range_jitter, self.rate_jitter, self.formant_jitter) < 0:
            raise ValueError("jitters must be ≥ 0")
        if not 0 <= self.channel_bands <= 8 or self.channel_gain_db < 0:
            raise ValueError("channel_bands must be 0–8 and channel_gain_db ≥ 0")
        if self.keyword_clip_s <= 0 or self.max_trials < 1:
            raise ValueError("keyword_clip_s and max_trials must be positive")
        if self.audio_format not in ("flac", "wav"):
            raise ValueError(f"audio_format must be 'flac' or 'wav', got {self.audio_format!r}")

    def without_recording(self) -> SynthConfig:
        """The same speakers and texts recorded cleanly: no channel filter or noise, one level.

        For pre-training with online augmentation (``PretrainConfig.augment_channel``): when
        every utterance carries its own channel, an utterance-level objective can match the
        two halves of an utterance by their shared recording instead of their speaker. The
        high- and low-pass become transparent (20 Hz, 7.9 kHz), the SNR 90 dB, the level
        −23 dBFS; voices, texts and splits are those of ``self`` for the same seed.
        """
        from dataclasses import replace

        return replace(self, channel_bands=0, highpass_hz=(20.0, 20.0), lowpass_hz=(7900.0, 7900.0),
                       snr_db=(90.0, 90.0), level_dbfs=(-23.0, -23.0))

    def kind_counts(self) -> dict[str, int]:
        """Utterances per speaker of each kind (each ≥ 1, summing to ``utts_per_speaker``)."""
        m = self.utts_per_speaker
        n_sent = max(1, round(m * self.kind_fractions[0]))
        n_kw = max(1, round(m * self.kind_fractions[1]))
        n_sent = min(n_sent, m - 2)
        n_kw = min(n_kw, m - n_sent - 1)
        return {"sentence": n_sent, "keyword": n_kw, "command": m - n_sent - n_kw}
