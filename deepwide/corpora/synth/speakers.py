"""The synthetic speakers: stable voice identities and their speaker-disjoint content split."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deepwide.corpora.synth.config import SynthConfig
from deepwide.corpora.synth.seeds import seeded_rng


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



def plan_speakers(config: SynthConfig, seed: int) -> list[Speaker]:
    """Draw the speakers and their content split (speaker-disjoint)."""
    rng = seeded_rng(seed, 1)
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
