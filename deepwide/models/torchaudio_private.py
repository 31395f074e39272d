"""Every use of torchaudio's private API, in one module.

deepwide assembles its encoder from torchaudio's wav2vec 2.0 / HuBERT / WavLM components and
reads a bundle's architecture without downloading its weights. torchaudio offers neither
publicly: the component builders, the transformer's input step, the fairseq initialisation and
a bundle's parameters are underscore names. They are touched here and nowhere else, and
``tests/models/test_torchaudio_private.py`` pins each one against the installed torchaudio
(it exists, takes the arguments used here, and computes what deepwide relies on), so an
upgrade that moves one fails that test, not a study.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn
from torchaudio.models.wav2vec2 import components

#: Where torchaudio downloads a bundle whose ``_path`` is a bare file name.
BUNDLE_BASE_URL = "https://download.pytorch.org/torchaudio/models/"


# ---------------------------------------------------------------------------- components
def build_feature_extractor(
    norm: str, conv_layers: Sequence[tuple[int, int, int]], conv_bias: bool
) -> components.FeatureExtractor:
    """torchaudio's waveform CNN (``components._get_feature_extractor``).

    Args:
        norm: ``group_norm`` (first layer normalised over time) or ``layer_norm`` (every layer).
        conv_layers: ``(channels, kernel, stride)`` per layer.
        conv_bias: whether the convolutions have biases.

    Returns:
        A ``FeatureExtractor``: ``forward(wavs (B, S), lengths (B,) | None) -> (B, T, C), lengths``.
    """
    return components._get_feature_extractor(norm, [tuple(layer) for layer in conv_layers], conv_bias)


def build_transformer_encoder(**kwargs: Any) -> components.Encoder:
    """torchaudio's feature projection + transformer (``components._get_encoder``).

    Args:
        **kwargs: ``in_features, embed_dim, dropout_input, pos_conv_kernel, pos_conv_groups,
            num_layers, num_heads, attention_dropout, ff_interm_features, ff_interm_dropout,
            dropout, layer_norm_first, layer_drop`` (the builder's own names).
    """
    return components._get_encoder(**kwargs)


def build_wavlm_encoder(*, num_buckets: int, max_distance: int, **kwargs: Any) -> components.Encoder:
    """WavLM's feature projection + transformer (``components._get_wavlm_encoder``).

    Args:
        num_buckets, max_distance: the relative-position buckets of WavLM's attention.
        **kwargs: as for :func:`build_transformer_encoder`.
    """
    return components._get_wavlm_encoder(num_buckets=num_buckets, max_distance=max_distance, **kwargs)


def init_transformer_params(module: nn.Module) -> None:
    """fairseq's BERT initialisation of one module (``components._init_transformer_params``):
    linear and embedding weights ~ N(0, 0.02), linear biases 0; use with ``Module.apply``."""
    components._init_transformer_params(module)


def transformer_input(transformer: components.Transformer, x: Tensor) -> Tensor:
    """The input of the first transformer layer (``Transformer._preprocess``).

    ``x + pos_conv_embed(x)``, then the layer norm in post-LN models (``layer_norm_first``
    false), then dropout.

    Args:
        transformer: a torchaudio ``components.Transformer``.
        x: (B, T, D) projected features.

    Returns:
        (B, T, D).
    """
    return transformer._preprocess(x)


def encoder_input(
    encoder: components.Encoder, features: Tensor, lengths: Tensor | None
) -> tuple[Tensor, Tensor | None]:
    """Feature projection and attention mask (``components.Encoder._preprocess``).

    Args:
        encoder: a torchaudio ``components.Encoder``.
        features: (B, T, C) front-end frames.
        lengths: (B,) valid frames, or ``None``.

    Returns:
        ``(x (B, T, D) with padded frames zeroed, mask (B, 1, T, T) additive -10000 on padded
        keys, or None)``.
    """
    return encoder._preprocess(features, lengths)


# ---------------------------------------------------------------------------- bundles
@dataclass(frozen=True)
class BundleInfo:
    """What deepwide reads of a ``torchaudio.pipelines.Wav2Vec2Bundle`` (all private fields).

    Attributes:
        params: keyword arguments of ``torchaudio.models.wav2vec2_model`` / ``wavlm_model``
            that rebuild the architecture (``encoder_num_layers``, ``extractor_mode`` …).
        model_type: ``"Wav2Vec2"`` (also HuBERT) or ``"WavLM"``.
        normalize_waveform: whether the bundle's model layer-normalises the waveform first.
        url: where torchaudio downloads the weights from.
    """

    params: dict[str, Any]
    model_type: str
    normalize_waveform: bool
    url: str


def bundle_info(bundle: Any) -> BundleInfo:
    """The private fields of ``bundle`` (``_params``, ``_model_type``, ``_normalize_waveform``,
    ``_path``) as a :class:`BundleInfo`; the URL is built as torchaudio builds it."""
    path = str(bundle._path)
    return BundleInfo(
        params=dict(bundle._params),
        model_type=str(bundle._model_type),
        normalize_waveform=bool(getattr(bundle, "_normalize_waveform", False)),
        url=path if path.startswith("https") else BUNDLE_BASE_URL + path,
    )
