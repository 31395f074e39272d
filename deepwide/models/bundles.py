"""torchaudio's wav2vec 2.0 / HuBERT / WavLM bundles as deepwide encoders (``torchaudio:NAME``).

A bundle's architecture is read from the bundle object (no download); its weights come from
the torch hub cache, downloaded when missing unless ``DEEPWIDE_OFFLINE=1`` is set or the
download fails — then a one-line :class:`~deepwide.errors.ModelError` says which file to put
where. What a bundle hides behind private fields is read by
:func:`deepwide.models.torchaudio_private.bundle_info`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepwide.errors import ModelError, UnknownNameError
from deepwide.models.config import EncoderConfig, FrontendConfig
from deepwide.models.weights import load_state_into, place, rename_weight_norm

if TYPE_CHECKING:
    from deepwide.models.encoder import Encoder

log = logging.getLogger(__name__)

TORCHAUDIO_PREFIX = "torchaudio:"
OFFLINE_ENV = "DEEPWIDE_OFFLINE"


def torchaudio_bundles() -> dict[str, Any]:
    """``{NAME: bundle}`` for every torchaudio wav2vec 2.0 / HuBERT / WavLM bundle."""
    import torchaudio.pipelines as pipelines
    from torchaudio.pipelines import Wav2Vec2Bundle

    return {
        name: obj
        for name in dir(pipelines)
        if isinstance(obj := getattr(pipelines, name), Wav2Vec2Bundle)
    }


def _bundle(name: str) -> Any:
    bundles = torchaudio_bundles()
    if name not in bundles:
        raise UnknownNameError(
            f"unknown torchaudio bundle {name!r}; valid: {', '.join(TORCHAUDIO_PREFIX + n for n in sorted(bundles))}"
        )
    return bundles[name]


def bundle_config(name: str) -> EncoderConfig:
    """The architecture of torchaudio bundle ``name`` (no download)."""
    from deepwide.models.torchaudio_private import bundle_info

    info = bundle_info(_bundle(name))
    p = info.params
    frontend = FrontendConfig(
        kind="cnn",
        conv_layers=tuple(tuple(c) for c in (p["extractor_conv_layer_config"] or FrontendConfig().conv_layers)),
        norm=p["extractor_mode"],
        conv_bias=bool(p["extractor_conv_bias"]),
        normalize_waveform=info.normalize_waveform,
    )
    arch = "wavlm" if info.model_type == "WavLM" else ("hubert" if name.startswith("HUBERT") else "wav2vec2")
    extra = (
        {"num_buckets": p["encoder_num_buckets"], "max_distance": p["encoder_max_distance"]}
        if arch == "wavlm"
        else {}
    )
    return EncoderConfig(
        depth=p["encoder_num_layers"],
        width=p["encoder_embed_dim"],
        ffn=p["encoder_ff_interm_features"],
        heads=p["encoder_num_heads"],
        frontend=frontend,
        arch=arch,
        layer_norm_first=bool(p["encoder_layer_norm_first"]),
        pos_conv_kernel=p["encoder_pos_conv_kernel"],
        pos_conv_groups=p["encoder_pos_conv_groups"],
        **extra,
    )


def bundle_url(name: str) -> str:
    """Download URL of torchaudio bundle ``name``."""
    from deepwide.models.torchaudio_private import bundle_info

    return bundle_info(_bundle(name)).url


def bundle_cache_path(name: str) -> Path:
    """Where ``torch.hub`` caches the weights of bundle ``name`` (``<hub dir>/checkpoints/<file>``)."""
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(bundle_url(name))


def _offline() -> bool:
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def load_torchaudio_bundle(name: str, *, device: str = "cpu") -> Encoder:
    """Load torchaudio bundle ``name`` as an :class:`Encoder` (model id ``torchaudio:NAME``).

    The weights come from the torch hub cache; when they are missing they are downloaded,
    unless ``DEEPWIDE_OFFLINE=1`` is set or the download fails — then a one-line
    :class:`ModelError` says which file to put where.
    """
    import torch
    import torch.hub

    from deepwide.models.encoder import Encoder
    from deepwide.models.torchfile import load_torch_file

    config = bundle_config(name)
    path = bundle_cache_path(name)
    url = bundle_url(name)
    hint = (
        f"download {url} and put it at {path} (the torch hub cache; set TORCH_HOME to move it)"
    )
    if not path.is_file():
        if _offline():
            raise ModelError(f"torchaudio bundle {name} is not cached and {OFFLINE_ENV} is set; {hint}")
        log.info("downloading %s to %s", url, path)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            torch.hub.download_url_to_file(url, str(path), progress=False)
        except Exception as exc:  # URLError, HTTPError, socket errors, SSL errors …
            raise ModelError(
                f"torchaudio bundle {name} is not cached and could not be downloaded "
                f"({type(exc).__name__}: {exc}); {hint}"
            ) from exc
    state = load_torch_file(path, hint=f"delete it and {hint}")
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{path} holds no state dict of tensors; delete it and {hint}")
    state = {
        ("frontend." + k[len("feature_extractor."):] if k.startswith("feature_extractor.") else k): v
        for k, v in state.items()
        if not k.startswith("aux.")
    }
    model = Encoder(config, model_id=TORCHAUDIO_PREFIX + name)
    load_state_into(model, rename_weight_norm(state), source=str(path))
    return place(model, device)
