"""Model specs -> encoders: the ``--model`` argument of every stage.

:func:`load_model` loads (or builds) the :class:`~deepwide.models.base.SpeechEncoder` a spec
names; :func:`resolve_config` gives its architecture without loading weights. Both dispatch
through the one registry of model sources, :mod:`deepwide.models.sources`, which lists the
kinds of spec (presets, bundled checkpoints, ``mfcc`` / ``mfcc-context``, ``torchaudio:NAME``,
``random:SPEC``, deepwide checkpoint folders, Hugging Face folders, fairseq ``.pt`` files).

The random twin of a deepwide checkpoint, ``random:FOLDER``, is called
``random:<the checkpoint's model id>`` wherever it is loaded (``deepwide extract --model
random:FOLDER`` included), so results pair it with the model it is the twin of.

The deepwide checkpoint format lives in :mod:`deepwide.models.checkpoint`, torchaudio bundles
in :mod:`deepwide.models.bundles`, the shared state-dict helpers in
:mod:`deepwide.models.weights`; their names are re-exported here for existing callers.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from deepwide.errors import ModelError
from deepwide.models.bundles import (
    OFFLINE_ENV,
    TORCHAUDIO_PREFIX,
    bundle_cache_path,
    bundle_config,
    bundle_url,
    load_torchaudio_bundle,
    torchaudio_bundles,
)
from deepwide.models.checkpoint import (
    CHECKPOINT_FORMAT,
    CONFIG_FILE,
    FORMAT_VERSION,
    WEIGHTS_FILE,
    is_deepwide_checkpoint,
    load_checkpoint,
    read_checkpoint_info,
    save_checkpoint,
)
from deepwide.models.features import FEATURE_MODELS, describe_feature_model
from deepwide.models.presets import PRESETS
from deepwide.models.sources import RANDOM_PREFIX, find_source
from deepwide.models.weights import load_state_into, place, rename_weight_norm
from deepwide.models.zoo import ZOO

if TYPE_CHECKING:
    from deepwide.models.base import SpeechEncoder
    from deepwide.models.config import EncoderConfig

log = logging.getLogger(__name__)

__all__ = [
    "CHECKPOINT_FORMAT", "CONFIG_FILE", "FORMAT_VERSION", "OFFLINE_ENV", "RANDOM_PREFIX",
    "TORCHAUDIO_PREFIX", "WEIGHTS_FILE", "bundle_cache_path", "bundle_config", "bundle_url",
    "is_deepwide_checkpoint", "load_checkpoint", "load_model", "load_state_into",
    "load_torchaudio_bundle", "model_listing", "read_checkpoint_info", "rename_weight_norm",
    "resolve_config", "save_checkpoint", "torchaudio_bundles",
]


def resolve_config(spec: str) -> EncoderConfig:
    """The architecture of any spec, without loading weights (fairseq files are read).

    Raises:
        UnknownNameError: an unknown name (the message lists the valid forms).
        ModelError: a path that is not a model, a bundled checkpoint that is missing, or a
            feature baseline (which has no architecture).
    """
    spec = spec.strip()
    return find_source(spec).config(spec)


def load_model(spec: str, *, seed: int = 0, device: str = "cpu") -> SpeechEncoder:
    """Load (or, for presets and ``random:``, build) the encoder named by ``spec``.

    Args:
        spec: see :mod:`deepwide.models.sources`.
        seed: initialisation seed of presets and ``random:`` twins (same seed, same weights).
        device: torch device string.

    Returns:
        The encoder, in eval mode on ``device``.

    Raises:
        UnknownNameError: an unknown name (valid ones are listed).
        ModelError: unreadable or mismatched checkpoints (the keys are named), missing
            bundled/cached files (the message says how to get them).
        ConfigError: an invalid device (:func:`deepwide.devices.resolve_device`).
    """
    spec = spec.strip()
    return place(find_source(spec).load(spec, seed), device)


# ---------------------------------------------------------------------------- listing
def model_listing(*, include_torchaudio: bool = True) -> list[tuple[str, str, str]]:
    """``(kind, spec, description)`` for every named model (`deepwide models list`)."""
    from deepwide.models.budget import count_params, format_count

    rows = []
    for name in PRESETS.names():
        cfg = PRESETS.get(name)
        rows.append(("preset", name, f"{format_count(count_params(cfg))}  {cfg.describe()} (random init)"))
    for name in ZOO.names():
        try:
            folder = ZOO.get(name)()
            info = read_checkpoint_info(folder)
            rows.append(("bundled", name, f"{info['config'].describe()}  ({folder})"))
        except ModelError as exc:
            rows.append(("bundled", name, f"not installed: {exc}"))
    for name in sorted(FEATURE_MODELS):
        rows.append(("features", name, describe_feature_model(name)))
    if include_torchaudio:
        for name in sorted(torchaudio_bundles()):
            spec = TORCHAUDIO_PREFIX + name
            cached = "cached" if bundle_cache_path(name).is_file() else "downloads on first use"
            rows.append(("torchaudio", spec, f"{bundle_config(name).describe()}  ({cached})"))
    rows.append(("form", "random:SPEC", "the architecture of SPEC, randomly initialised with --seed"))
    rows.append(("form", "PATH", "deepwide checkpoint folder, Hugging Face model folder, or fairseq .pt"))
    return rows
