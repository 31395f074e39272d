"""Hand-crafted feature "models": the spectral baselines every learned layer must beat.

``load_model("mfcc")`` returns an encoder with no transformer layers whose single state
(index 0) is MFCC + Δ + ΔΔ (39 dims) on the 50 Hz model grid — *not* normalised per
utterance, so that utterance means (speaker, keyword baselines) keep their information; probes
standardise with training statistics; ``mfcc-context`` stacks ±4 neighbouring frames (351 dims), the usual
"MFCC with context" baseline of phone probes. They follow the :class:`SpeechEncoder`
interface, so they extract, probe and compare like any model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from deepwide.models.mfcc import MfccEncoder

#: name -> frames of context on each side
FEATURE_MODELS: dict[str, int] = {"mfcc": 0, "mfcc-context": 4}


def load_feature_model(name: str) -> MfccEncoder:
    """Build the feature model ``name`` (a key of :data:`FEATURE_MODELS`), in eval mode."""
    from deepwide.models.mfcc import MfccEncoder

    return MfccEncoder(FEATURE_MODELS[name], model_id=name).eval()


def describe_feature_model(name: str) -> str:
    """One line saying what feature model ``name`` computes (``deepwide models list``)."""
    context = FEATURE_MODELS[name]
    stacked = f", ±{context} frames stacked" if context else ""
    return f"MFCC + Δ + ΔΔ, {39 * (2 * context + 1)} dims{stacked}, one layer (no weights)"
