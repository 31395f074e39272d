"""The embedded synthetic corpus: many close espeak-ng speakers with exact phone alignments.

``generate_synth(config, out_dir, seed=…, workers=…)`` writes a multi-speaker English corpus
(16 kHz mono FLAC, resampled from espeak's 22.05 kHz) plus its ``manifest.jsonl``. Everything
is a function of ``(config, seed)``: the same pair gives byte-identical files for any number of
worker processes.

Design (see docs/corpus.md for the numbers):

- **Speakers** are stable identities: a base voice variant (most speakers share a few), an
  individual vocal-tract shape (a factor on each of F1–F5 and on their amplitudes, written
  into a per-speaker espeak voice file), a vocal-tract length (a uniform formant scale), a
  mean pitch, pitch range and speaking rate. The formant scale is realised by synthesising
  with compensated pitch and rate and resampling as if the audio had been recorded at
  ``22050 × scale`` Hz, which scales every frequency by ``scale``; alignments scale with it.
- **Each utterance** varies as a recording does: pitch/range/rate jitter, a random channel
  (high-pass, low-pass, peaking bands), a level, additive coloured noise at a random SNR and
  random leading/trailing silence, all drawn from seeded generators.
- **Kinds**: ``sentence`` (free text from templates and word lists: phones, speaker ID),
  ``keyword`` (Speech Commands' 10 keywords, ``_unknown_`` words and ``_silence_`` clips:
  SUPERB's 12 classes; 1-second clips) and ``command`` (Fluent Speech Commands' 31 intents,
  ``action_object_location``).
- **Labels**: phone segments on :data:`deepwide.corpora.phones.PHONE_SET` from espeak's
  phoneme events (sample-exact), word segments from its word events.
- **Splits**: speaker-disjoint ``split`` (train/dev/test) for content tasks; ``sid_split``
  for every speaker's sentences (speaker ID over all speakers); verification trials
  (``Manifest.trials``) between the sentences of the test speakers.

``synth`` is registered in :data:`deepwide.corpora.CORPORA`: ``synth`` alone is the default
corpus in the user cache (generated on first use, under a lock), ``synth:DIR`` a corpus that
was generated into ``DIR``.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deepwide.config import config_hash, config_to_dict
from deepwide.corpora import CORPORA
from deepwide.corpora.manifest import Manifest, Trial, Utterance
from deepwide.corpora.phones import PHONE_SET, SILENCE, map_espeak_phone, merge_segments
from deepwide.errors import ConfigError, CorpusError
from deepwide.paths import cache_dir
from deepwide.system import current_umask, usable_cpus

log = logging.getLogger(__name__)

SAMPLE_RATE = 16_000
ESPEAK_RATE = 22_050
#: F0 of espeak-ng grows by a factor exp(0.011) per unit of its pitch parameter (measured for
#: en-us and its m*/f* variants at range 0: 53 Hz at 0, 89 Hz at 50, 158 Hz at 100).
PITCH_LOG_SLOPE = 0.011
KINDS = ("sentence", "keyword", "command")

# ---------------------------------------------------------------------------------------------
# Texts
# ---------------------------------------------------------------------------------------------

#: The 10 Speech Commands keywords.
KEYWORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
#: Speech Commands v1's auxiliary words, spoken for the ``_unknown_`` class.
UNKNOWN_WORDS = (
    "bed", "bird", "cat", "dog", "eight", "five", "four", "happy", "house", "marvin",
    "nine", "one", "seven", "sheila", "six", "three", "tree", "two", "wow", "zero",
)
UNKNOWN, SILENCE_CLASS = "_unknown_", "_silence_"
#: SUPERB's 12 keyword-spotting classes.
KEYWORD_CLASSES = (*KEYWORDS, UNKNOWN, SILENCE_CLASS)

_NAMES = (
    "Anna Ben Carla David Emma Frank Grace Henry Iris Jack Kate Leo Maria Nick Olivia Paul "
    "Rosa Sam Tina Victor Walter Zoe Lucy Martin Helen Oscar Ruth George Judy Peter Thomas "
    "Laura Simon Nora Hugo Julia"
).split()
_NOUNS = (
    "apple basket bicycle book bottle bridge button camera candle car chair cloud coat cup "
    "door dog engine feather fish flower garden guitar hammer hat house island jacket key "
    "ladder lamp letter machine map mirror mountain newspaper orange packet paper pencil "
    "piano picture pillow plate pocket radio river rope sandwich ship shoe shirt spoon storm "
    "table teacher ticket tower train tree umbrella wagon wallet window whistle blanket "
    "bucket cabbage carpet cushion drawer envelope fence helmet kettle lemon needle onion "
    "parcel puzzle rabbit saucer scarf spider towel turtle violin watch"
).split()
_ADJS = (
    "big small old new red green blue yellow heavy light quiet noisy bright dark warm cold "
    "wet dry soft hard strange famous broken empty careful lazy clever gentle rough smooth "
    "tiny huge pleasant ordinary purple golden wooden silver simple useful curious"
).split()
_PAST = (
    "found bought carried painted opened closed washed moved lost sold borrowed cleaned "
    "dropped fixed watched pushed pulled packed remembered followed measured noticed needed "
    "wrapped hid forgot chose shared showed"
).split()
_BASE = (
    "find buy carry paint open close wash move sell borrow clean fix watch push pull pack "
    "measure check bring take choose share show wrap hide"
).split()
_PLACES = (
    "station market office school museum harbor library garden village forest beach "
    "hospital airport bakery factory church theater kitchen valley corner castle farm garage"
).split()
_TIMES = (
    "yesterday", "today", "this morning", "last night", "on Monday", "on Friday",
    "after lunch", "before dinner", "every Sunday", "in the evening", "next week", "at noon",
    "on Tuesday", "last winter", "in the summer",
)
_ADVS = "quickly slowly quietly carefully suddenly happily early again rarely often".split()
_NUMS = "two three four five six seven eight nine ten eleven twelve twenty thirty".split()
_PREPS = (
    "near", "behind", "beside", "under", "above", "inside", "outside", "across", "next to",
    "in front of",
)
_SENTENCE_TEMPLATES = (
    "{Name} {past} the {adj} {noun} {prep} the {place}.",
    "{Time}, {name} {past} {num} {adj} {nouns}.",
    "Did {name} {base} the {noun} {time}?",
    "The {noun} {prep} the {place} was {adv} {adj}.",
    "Please {base} the {adj} {noun} and {base} the {noun2}.",
    "{Name} and {name2} {past} a {adj} {noun} {time}.",
    "Why is the {noun} so {adj}?",
    "We should {base} {num} {nouns} before {name} comes back.",
    "I think the {noun} is {adj}, but {name} says it is {adj2}.",
    "There were {num} {adj} {nouns} {prep} the {place}.",
    "{Name} {adv} {past} the {noun} {time}.",
    "My {noun} is {prep} the {adj} {noun2}.",
)

#: Fluent Speech Commands' 31 intents as (action, object, location) and their phrasings.
_LOCATIONS = ("kitchen", "bedroom", "washroom")
_LANGUAGES = ("chinese", "english", "german", "korean")


def _command_phrases() -> dict[tuple[str, str, str], tuple[str, ...]]:
    out: dict[tuple[str, str, str], tuple[str, ...]] = {}
    for act, on_off in (("activate", "on"), ("deactivate", "off")):
        out[(act, "lights", "none")] = (
            f"turn {on_off} the lights", f"switch {on_off} the lights", f"lights {on_off}",
            f"turn the lights {on_off}",
        )
        for loc in _LOCATIONS:
            out[(act, "lights", loc)] = (
                f"turn {on_off} the {loc} lights", f"switch {on_off} the lights in the {loc}",
                f"{loc} lights {on_off}", f"turn the lights {on_off} in the {loc}",
            )
        out[(act, "lamp", "none")] = (
            f"turn {on_off} the lamp", f"switch {on_off} the lamp", f"lamp {on_off}",
        )
    out[("activate", "music", "none")] = (
        "play the music", "put on some music", "start the music", "music on please",
    )
    out[("deactivate", "music", "none")] = (
        "stop the music", "turn off the music", "pause the music", "music off please",
    )
    for act, up, more, cmp_ in (("increase", "up", "increase", "warmer"), ("decrease", "down", "decrease", "cooler")):
        out[(act, "heat", "none")] = (
            f"turn the heat {up}", f"make it {cmp_}", f"{more} the temperature",
            f"turn {up} the heating",
        )
        for loc in _LOCATIONS:
            out[(act, "heat", loc)] = (
                f"turn the heat {up} in the {loc}", f"make the {loc} {cmp_}",
                f"{more} the temperature in the {loc}", f"turn {up} the {loc} heating",
            )
    out[("increase", "volume", "none")] = (
        "turn up the volume", "make it louder", "increase the volume", "louder please",
    )
    out[("decrease", "volume", "none")] = (
        "turn down the volume", "make it quieter", "decrease the volume", "too loud",
    )
    for obj in ("juice", "newspaper", "shoes", "socks"):
        det = "some" if obj == "juice" else "my"
        out[("bring", obj, "none")] = (
            f"bring me {det} {obj}", f"fetch {det} {obj}", f"get me {det} {obj}",
            f"I need {det} {obj}",
        )
    for lang in _LANGUAGES:
        cap = lang.capitalize()
        out[("change", lang, "none")] = (
            f"change the language to {cap}", f"switch to {cap}", f"set the language to {cap}",
            f"use {cap}",
        )
    out[("change", "language", "none")] = (
        "change the language", "switch the language", "change language",
        "use another language",
    )
    return out


COMMAND_PHRASES = _command_phrases()
#: Intent strings ``action_object_location``, sorted (31 of them).
INTENTS = tuple(sorted("_".join(k) for k in COMMAND_PHRASES))
assert len(INTENTS) == 31


def _plural(noun: str) -> str:
    if noun.endswith(("s", "sh", "ch", "x")):
        return noun + "es"
    if noun.endswith("y") and noun[-2] not in "aeiou":
        return noun[:-1] + "ies"
    if noun == "knife":
        return "knives"
    return noun + "s"


def make_sentence(rng: np.random.Generator) -> str:
    """One English sentence from the templates and word lists (5–12 words)."""
    template = _SENTENCE_TEMPLATES[int(rng.integers(len(_SENTENCE_TEMPLATES)))]

    def pick(words: Sequence[str], avoid: str | None = None) -> str:
        while True:
            w = words[int(rng.integers(len(words)))]
            if w != avoid:
                return w

    name, noun, adj = pick(_NAMES), pick(_NOUNS), pick(_ADJS)
    slots = {
        "name": name, "Name": name, "name2": pick(_NAMES, name),
        "noun": noun, "noun2": pick(_NOUNS, noun), "nouns": _plural(noun),
        "adj": adj, "adj2": pick(_ADJS, adj), "past": pick(_PAST), "base": pick(_BASE),
        "place": pick(_PLACES), "time": pick(_TIMES), "adv": pick(_ADVS), "num": pick(_NUMS),
        "prep": pick(_PREPS),
    }
    slots["Time"] = slots["time"][0].upper() + slots["time"][1:]
    text = template.format(**slots)
    return text[0].upper() + text[1:]


def make_command(rng: np.random.Generator, intent: str) -> str:
    """One phrasing of ``intent`` (e.g. ``"activate_lights_kitchen"``)."""
    phrases = COMMAND_PHRASES[tuple(intent.split("_"))]  # type: ignore[index]
    return phrases[int(rng.integers(len(phrases)))]


# ---------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------


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


def default_corpus_dir(config: SynthConfig | None = None, seed: int = 0) -> Path:
    """Cache folder of the default corpus: ``cache_dir()/corpora/synth-<config hash>-seed<seed>``."""
    cfg = config or SynthConfig()
    return cache_dir() / "corpora" / f"synth-{config_hash(cfg)}-seed{seed}"


# ---------------------------------------------------------------------------------------------
# Planning: every random choice, made up front in the parent process
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Speaker:
    """A stable voice identity: variant, pitch, range, rate, vocal-tract length and shape.

    ``formant`` scales every frequency (vocal-tract length); ``formants`` are per-formant
    ``(frequency, height, width)`` factors for F1–F5 (vocal-tract shape).
    """

    speaker_id: str
    variant: str
    pitch: float
    pitch_range: float
    rate: float
    formant: float
    formants: tuple[tuple[float, float, float], ...]
    split: str


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


def _rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed & 0xFFFFFFFF, *keys]))


def plan_speakers(config: SynthConfig, seed: int) -> list[Speaker]:
    """Draw the speakers and their content split (speaker-disjoint)."""
    rng = _rng(seed, 1)
    n = config.n_speakers
    width = max(3, len(str(n - 1)))
    weights = np.asarray(config.variant_weights, float)
    variants = rng.choice(len(config.variants), size=n, p=weights / weights.sum())
    draws = {name: rng.uniform(*getattr(config, f"speaker_{name}"), size=n)
             for name in ("pitch", "range", "rate", "formant")}
    shape = rng.standard_normal((n, 5, 2))  # per-formant frequency and height, F1–F5
    n_test = max(2, round(n * config.speaker_fractions[2]))
    n_dev = max(1, round(n * config.speaker_fractions[1]))
    order = rng.permutation(n)
    split_of = {}
    for rank, i in enumerate(order):
        split_of[int(i)] = "test" if rank < n_test else "dev" if rank < n_test + n_dev else "train"
    return [
        Speaker(
            speaker_id=f"spk{i:0{width}d}",
            variant=config.variants[int(variants[i])],
            pitch=round(float(draws["pitch"][i]), 3),
            pitch_range=round(float(draws["range"][i]), 3),
            rate=round(float(draws["rate"][i]), 3),
            formant=round(float(draws["formant"][i]), 5),
            formants=tuple(
                (round(float(np.exp(config.formant_spread * zf)), 4),
                 round(float(np.exp(config.formant_height_spread * zh)), 4), 1.0)
                for zf, zh in shape[i]
            ),
            split=split_of[i],
        )
        for i in range(n)
    ]


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
    rng = _rng(seed, 2, si, kind_index, j, 0)
    voice_rng = _rng(seed, 2, si, kind_index, j, 1)
    rec_rng = _rng(seed, 2, si, kind_index, j, 2)
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


# ---------------------------------------------------------------------------------------------
# Rendering (runs in worker processes)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rendered:
    """What a worker reports back: sample counts and segments at 16 kHz (in samples)."""

    utt_id: str
    n_samples: int
    phones: tuple[tuple[str, int, int], ...]
    words: tuple[tuple[str, int, int], ...]


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

    rng = _rng(plan.noise_seed, 7)
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


def render_utterance(plan: UttPlan) -> tuple[np.ndarray, Rendered]:
    """Synthesise and record one utterance.

    Returns:
        ``(wav (S,) int16 at 16 kHz, Rendered)``; phone segments cover ``[0, S)`` exactly.
    """
    speech, phones, words = synthesize_speech(plan)
    pcm = record(plan, speech, phones)
    return pcm, Rendered(plan.utt_id, len(pcm), tuple(phones), tuple(words))


def _render_and_write(plan: UttPlan, root: str) -> Rendered:
    import soundfile as sf

    pcm, rendered = render_utterance(plan)
    path = Path(root) / plan.rel_path
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = "FLAC" if plan.audio_format == "flac" else "WAV"
    sf.write(str(path), pcm, SAMPLE_RATE, subtype="PCM_16", format=fmt)
    return rendered


def _worker_init() -> None:
    from deepwide.corpora.espeak import get_engine

    get_engine()


# ---------------------------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------------------------


def generate_synth(
    config: SynthConfig, out_dir: str | Path, *, seed: int = 0, workers: int = 1
) -> Manifest:
    """Generate the corpus defined by ``(config, seed)`` into ``out_dir``.

    The corpus is written to a temporary sibling folder and renamed into place at the end,
    so ``out_dir`` either holds a complete corpus or nothing.

    Args:
        config: what to generate.
        out_dir: destination folder; must not exist or be empty.
        seed: every random choice derives from it.
        workers: worker processes (one espeak engine each); the output does not depend on it.

    Returns:
        The :class:`Manifest`, rooted at ``out_dir`` (also saved as ``out_dir/manifest.jsonl``).

    Raises:
        CorpusError: ``out_dir`` already holds files.
    """
    out = Path(out_dir).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise CorpusError(f"{out} already exists and is not empty; remove it or choose another --out")
    if workers < 1:
        raise ConfigError(f"workers must be ≥ 1, got {workers}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        umask = current_umask()
        tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private; the corpus is an ordinary folder
        manifest = _generate_into(config, tmp, seed=seed, workers=workers)
        if out.exists():
            out.rmdir()
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    manifest.root = out
    log.info("synthetic corpus: %d utterances, %.1f min in %s", len(manifest),
             sum(u.duration_s for u in manifest) / 60, out)
    return manifest


def _generate_into(config: SynthConfig, root: Path, *, seed: int, workers: int) -> Manifest:
    from tqdm import tqdm

    speakers = plan_speakers(config, seed)
    plans = plan_utterances(config, speakers, seed)
    log.info("rendering %d utterances of %d speakers with %d worker(s)", len(plans), len(speakers), workers)
    bar = tqdm(total=len(plans), desc="synth corpus", unit="utt", disable=None)
    rendered: list[Rendered] = []
    try:
        if workers == 1:
            for plan in plans:
                rendered.append(_render_and_write(plan, str(root)))
                bar.update()
        else:
            import multiprocessing as mp

            # fork where possible: spawned workers would re-run an unguarded __main__ (scripts,
            # `python -m`); the workers use no thread pools, only numpy/scipy/espeak.
            method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
            ctx = mp.get_context(method)
            chunk = max(1, min(32, len(plans) // (workers * 8)))
            with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init) as pool:
                for r in pool.map(_render_and_write, plans, [str(root)] * len(plans), chunksize=chunk):
                    rendered.append(r)
                    bar.update()
    finally:
        bar.close()
    manifest = _build_manifest(config, seed, speakers, plans, rendered, root)
    manifest.save(root)
    return manifest


def _sec(samples: int) -> float:
    return samples / SAMPLE_RATE


def _build_manifest(
    config: SynthConfig,
    seed: int,
    speakers: list[Speaker],
    plans: list[UttPlan],
    rendered: list[Rendered],
    root: Path,
) -> Manifest:
    split_of = {s.speaker_id: s.split for s in speakers}
    sid_of = _sid_splits(config, plans, seed)
    utts = []
    for plan, r in zip(plans, rendered, strict=True):
        assert plan.utt_id == r.utt_id
        utts.append(
            Utterance(
                utt_id=plan.utt_id,
                path=plan.rel_path,
                speaker=plan.speaker,
                split=split_of[plan.speaker],
                duration_s=_sec(r.n_samples),
                kind=plan.kind,
                sid_split=sid_of.get(plan.utt_id),
                text=plan.text,
                keyword=plan.keyword,
                intent=plan.intent,
                phones=tuple((p, _sec(a), _sec(b)) for p, a, b in r.phones),
                words=tuple((w, _sec(a), _sec(b)) for w, a, b in r.words),
            )
        )
    trials = _make_trials(config, utts, seed)
    chash = config_hash(config)
    meta: dict[str, Any] = {
        "generator": "deepwide.corpora.synth",
        "config": config_to_dict(config),
        "config_hash": chash,
        "seed": seed,
        "sample_rate": SAMPLE_RATE,
        "source_sample_rate": ESPEAK_RATE,
        "phone_set_name": "timit39",
        "keyword_classes": list(KEYWORD_CLASSES),
        "intents": list(INTENTS),
        "speakers": {
            s.speaker_id: {
                "variant": s.variant, "pitch": s.pitch, "pitch_range": s.pitch_range,
                "rate": s.rate, "formant": s.formant, "split": s.split,
                "formants": [list(f) for f in s.formants],
            }
            for s in speakers
        },
        "sid_speakers": "all",
    }
    return Manifest(
        corpus_id=f"synth-{chash}-seed{seed}",
        root=root,
        utterances=utts,
        phone_set=PHONE_SET,
        trials=trials,
        meta=meta,
    )


def _sid_splits(config: SynthConfig, plans: list[UttPlan], seed: int) -> dict[str, str]:
    """Per-speaker split of the sentence utterances for speaker identification."""
    by_spk: dict[str, list[str]] = {}
    for p in plans:
        if p.kind == "sentence":
            by_spk.setdefault(p.speaker, []).append(p.utt_id)
    out: dict[str, str] = {}
    for si, (_spk, ids) in enumerate(sorted(by_spk.items())):
        n = len(ids)
        n_test = max(1, round(n * config.sid_fractions[2])) if n >= 2 else 0
        n_dev = round(n * config.sid_fractions[1]) if n - n_test >= 2 else 0
        order = _rng(seed, 3, si).permutation(n)
        for rank, k in enumerate(order):
            out[ids[int(k)]] = "test" if rank < n_test else "dev" if rank < n_test + n_dev else "train"
    return out


def _make_trials(config: SynthConfig, utts: list[Utterance], seed: int) -> list[Trial]:
    """Target and non-target pairs among the test speakers' sentences (equal numbers, capped)."""
    pool = [u for u in utts if u.split == "test" and u.kind == "sentence"]
    by_spk: dict[str, list[str]] = {}
    for u in pool:
        by_spk.setdefault(u.speaker, []).append(u.utt_id)
    rng = _rng(seed, 4)
    targets = [(a, b) for ids in by_spk.values() for i, a in enumerate(ids) for b in ids[i + 1 :]]
    if len(targets) > config.max_trials:
        keep = np.sort(rng.choice(len(targets), config.max_trials, replace=False))
        targets = [targets[int(k)] for k in keep]
    spk_of = {u.utt_id: u.speaker for u in pool}
    ids = [u.utt_id for u in pool]
    n_non = min(max(len(targets), 1), config.max_trials)
    seen: set[tuple[str, str]] = set()
    non: list[tuple[str, str]] = []
    attempts = 0
    while len(non) < n_non and attempts < 100 * n_non and len(by_spk) >= 2:
        attempts += 1
        i, j = (int(x) for x in rng.integers(len(ids), size=2))
        a, b = sorted((ids[i], ids[j]))
        if spk_of[a] != spk_of[b] and (a, b) not in seen:
            seen.add((a, b))
            non.append((a, b))
    trials = [Trial(a, b, True) for a, b in targets] + [Trial(a, b, False) for a, b in non]
    order = rng.permutation(len(trials))
    return [trials[int(k)] for k in order]


# ---------------------------------------------------------------------------------------------
# The default corpus in the cache, and the ``synth`` adapter
# ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``path`` (POSIX ``flock``; a no-op elsewhere)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - non-POSIX
        yield
        return
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("waiting for another process that is generating %s", path.with_suffix(""))
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_synth_corpus(
    config: SynthConfig | None = None, *, seed: int = 0, workers: int | None = None
) -> Manifest:
    """The default corpus for ``(config, seed)`` in the cache, generated on first use.

    Two processes asking at once do not both generate: the second waits on a lock file and
    then loads what the first wrote.
    """
    cfg = config or SynthConfig()
    out = default_corpus_dir(cfg, seed)
    if (out / "manifest.jsonl").is_file():
        return Manifest.load(out)
    with _file_lock(out.parent / f".{out.name}.lock"):
        if (out / "manifest.jsonl").is_file():
            return Manifest.load(out)
        if out.exists():  # an empty or stray folder (e.g. a crashed, pre-rename copy)
            shutil.rmtree(out)
        n = workers or default_workers()
        log.info("generating the default synthetic corpus into %s (first use)", out)
        return generate_synth(cfg, out, seed=seed, workers=n)


def default_workers() -> int:
    """Worker processes to use by default: the CPUs this process may run on (at most 8)."""
    return max(1, min(8, usable_cpus()))


@CORPORA.register("synth")
def synth_corpus(path: Path | None = None, *, seed: int = 0) -> Manifest:
    """The ``synth`` adapter: ``None`` → the default cached corpus, a path → a generated folder."""
    if path is None:
        return ensure_synth_corpus(seed=seed)
    p = Path(path)
    if not (p / "manifest.jsonl").is_file():
        raise CorpusError(f"{p} holds no synthetic corpus (no manifest.jsonl); run `deepwide corpus synth --out {p}`")
    return Manifest.load(p)


__all__ = [
    "INTENTS",
    "KEYWORD_CLASSES",
    "KINDS",
    "SynthConfig",
    "default_corpus_dir",
    "ensure_synth_corpus",
    "generate_synth",
    "make_command",
    "make_sentence",
    "plan_speakers",
    "plan_utterances",
    "record",
    "render_utterance",
    "synth_corpus",
    "synthesize_speech",
    "Speaker",
    "UttPlan",
]
