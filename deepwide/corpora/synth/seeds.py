"""Seeded random streams: every random draw of the synthetic corpus derives from ``(seed, keys)``.

Each consumer (speakers, an utterance's words, voice and recording, the additive noise, the
speaker-ID split, the verification trials) asks for its own stream by a distinct key tuple,
so changing one of them leaves the others' draws untouched.
"""

from __future__ import annotations

import numpy as np


def seeded_rng(seed: int, *keys: int) -> np.random.Generator:
    """The generator of the stream ``keys`` under the corpus seed ``seed`` (low 32 bits)."""
    return np.random.default_rng(np.random.SeedSequence([seed & 0xFFFFFFFF, *keys]))
