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

The package is split by job; this module is its public face and re-exports the API:

- :mod:`~deepwide.corpora.synth.config` — :class:`SynthConfig` (everything but the seed);
- :mod:`~deepwide.corpora.synth.texts` — what is said (sentences, keywords, intents);
- :mod:`~deepwide.corpora.synth.seeds` — the seeded random streams every draw comes from;
- :mod:`~deepwide.corpora.synth.speakers` — the speakers and their content split;
- :mod:`~deepwide.corpora.synth.plans` — every utterance's random choices, made up front;
- :mod:`~deepwide.corpora.synth.speech` — clean speech and alignments from espeak-ng;
- :mod:`~deepwide.corpora.synth.recording` — channel, level and noise (DSP);
- :mod:`~deepwide.corpora.synth.rendering` — one utterance to samples and to its audio file;
- :mod:`~deepwide.corpora.synth.annotation` — the manifest: rows, splits, trials, metadata;
- :mod:`~deepwide.corpora.synth.generation` — the worker pool and the all-or-nothing folder;
- :mod:`~deepwide.corpora.synth.cache` — the default corpus in the cache, the ``synth`` adapter.
"""

from __future__ import annotations

from deepwide.corpora.synth.cache import default_corpus_dir, ensure_synth_corpus, synth_corpus
from deepwide.corpora.synth.config import KINDS, SAMPLE_RATE, SynthConfig
from deepwide.corpora.synth.generation import default_workers, generate_synth
from deepwide.corpora.synth.plans import UttPlan, plan_utterances
from deepwide.corpora.synth.recording import record
from deepwide.corpora.synth.rendering import Rendered, render_utterance
from deepwide.corpora.synth.speakers import Speaker, plan_speakers
from deepwide.corpora.synth.speech import ESPEAK_RATE, PITCH_LOG_SLOPE, synthesize_speech
from deepwide.corpora.synth.texts import (
    COMMAND_PHRASES,
    INTENTS,
    KEYWORD_CLASSES,
    KEYWORDS,
    SILENCE_CLASS,
    UNKNOWN,
    UNKNOWN_WORDS,
    make_command,
    make_sentence,
)

__all__ = [
    "COMMAND_PHRASES",
    "ESPEAK_RATE",
    "INTENTS",
    "KEYWORD_CLASSES",
    "KEYWORDS",
    "KINDS",
    "PITCH_LOG_SLOPE",
    "SAMPLE_RATE",
    "SILENCE_CLASS",
    "UNKNOWN",
    "UNKNOWN_WORDS",
    "Rendered",
    "Speaker",
    "SynthConfig",
    "UttPlan",
    "default_corpus_dir",
    "default_workers",
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
]
