"""Architecture configs of the HuBERT-family encoders (no torch import: the CLI reads these).

:class:`FrontendConfig` describes what turns a 16 kHz waveform into 50 Hz frames (HuBERT's
waveform CNN, or a log-mel + Conv1d front-end for small CPU-trained models);
:class:`EncoderConfig` adds the transformer (torchaudio's wav2vec 2.0 / HuBERT / WavLM
components). Both are frozen, validated in ``__post_init__`` and round-trip through
:func:`deepwide.config.config_to_dict` / :func:`deepwide.config.config_from_dict`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from deepwide import framing
from deepwide.config import config_from_dict, config_hash, config_to_dict
from deepwide.framing import SAMPLE_RATE

#: HuBERT / wav2vec 2.0 waveform CNN: (channels, kernel, stride); receptive field 400 samples
#: (25 ms), hop 320 samples (20 ms) -> 50 Hz.
HUBERT_CNN: tuple[tuple[int, int, int], ...] = (
    ((512, 10, 5),) + ((512, 3, 2),) * 4 + ((512, 2, 2),) * 2
)

FRONTEND_KINDS = ("cnn", "spectral")
CNN_NORMS = ("group_norm", "layer_norm")
ARCHS = ("hubert", "wav2vec2", "wavlm")

#: The largest size of each kind that a config (a checkpoint's config.json, a fairseq ``cfg``,
#: a Hugging Face config.json, a student shape) may ask for: far above every published
#: HuBERT-family model (the largest, 2 B parameters, is 48 × 1920 with FFN 7680), far below
#: what would exhaust memory when the model is built. Beyond them a config is refused before
#: anything is allocated.
LIMITS: dict[str, int] = {
    "depth": 256,
    "width": 16_384,
    "ffn": 131_072,
    "heads": 1_024,
    "pos_conv_kernel": 4_096,
    "pos_conv_groups": 16_384,
    "num_buckets": 65_536,
    "max_distance": 1_000_000,
    "conv_layers": 64,
    "conv_channels": 16_384,
    "conv_kernel": 16_000,
    "conv_stride": 16_000,
    "n_mels": 1_024,
    "channels": 16_384,
    "kernel": 1_025,
}
#: The most parameters an encoder config may have (20 GB of float32 weights).
MAX_PARAMS = 5_000_000_000


def _bounded_int(value: Any, name: str) -> int:
    """``value`` as an int in ``1..LIMITS[name]`` (an integral float is accepted), else ValueError."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value or value in (math.inf, -math.inf):
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if int(value) != value or not 1 <= value <= LIMITS[name]:
        raise ValueError(f"{name} must be an integer in 1..{LIMITS[name]:,}, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class FrontendConfig:
    """What turns a (B, S) 16 kHz waveform into (B, T, C) frames.

    Attributes:
        kind: ``"cnn"`` (the HuBERT/wav2vec 2.0 waveform CNN) or ``"spectral"`` (log-mel
            filterbank, 25 ms window / 20 ms hop without centre padding, then one Conv1d over
            time) — both give ``floor((S - 400) / 320) + 1`` frames for the default CNN.
        conv_layers: CNN only: ``(channels, kernel, stride)`` per layer.
        norm: CNN only: ``"group_norm"`` (first layer normalised over time; HuBERT Base) or
            ``"layer_norm"`` (every layer normalised per frame; HuBERT Large).
        conv_bias: CNN only: bias terms in the convolutions.
        normalize_waveform: normalise each utterance to zero mean, unit variance over its own
            valid samples before the front-end (HuBERT Large, wav2vec 2.0 LV-60k).
        n_mels: spectral only: mel bands.
        channels: spectral only: output channels of the Conv1d.
        kernel: spectral only: Conv1d kernel in frames (odd, "same" padding).
    """

    kind: str = "cnn"
    conv_layers: tuple[tuple[int, int, int], ...] = HUBERT_CNN
    norm: str = "group_norm"
    conv_bias: bool = False
    normalize_waveform: bool = False
    n_mels: int = 80
    channels: int = 256
    kernel: int = 3

    def __post_init__(self) -> None:
        if self.kind not in FRONTEND_KINDS:
            raise ValueError(f"frontend kind {self.kind!r} is not one of {', '.join(FRONTEND_KINDS)}")
        if self.norm not in CNN_NORMS:
            raise ValueError(f"frontend norm {self.norm!r} is not one of {', '.join(CNN_NORMS)}")
        if not isinstance(self.conv_layers, list | tuple) or len(self.conv_layers) > LIMITS["conv_layers"]:
            what = f"{len(self.conv_layers)} layers" if isinstance(self.conv_layers, list | tuple) else repr(self.conv_layers)
            raise ValueError(f"conv_layers must list at most {LIMITS['conv_layers']} layers, got {what}")
        layers = []
        for layer in self.conv_layers:
            if not isinstance(layer, list | tuple) or len(layer) != 3:
                raise ValueError(f"conv layer {layer!r} must be (channels, kernel, stride) with positive ints")
            layers.append(tuple(_bounded_int(v, f"conv_{part}") for v, part in zip(layer, ("channels", "kernel", "stride"), strict=True)))
        object.__setattr__(self, "conv_layers", tuple(layers))
        if self.kind == "cnn" and not layers:
            raise ValueError("a cnn front-end needs at least one conv layer")
        for name in ("n_mels", "channels", "kernel"):
            object.__setattr__(self, name, _bounded_int(getattr(self, name), name))
        if self.kernel % 2 == 0:
            raise ValueError(f"spectral kernel must be a positive odd number, got {self.kernel}")

    @property
    def out_channels(self) -> int:
        """Feature width C of the front-end output."""
        return self.conv_layers[-1][0] if self.kind == "cnn" else self.channels

    @property
    def hop(self) -> int:
        """Samples between consecutive frames (320 for HuBERT -> 50 Hz)."""
        if self.kind == "spectral":
            return framing.FRAME_HOP
        return math.prod(stride for _, _, stride in self.conv_layers)

    @property
    def receptive_field(self) -> int:
        """Samples that one output frame sees (400 for HuBERT)."""
        if self.kind == "spectral":
            return framing.FRAME_WINDOW
        rf, jump = 1, 1
        for _, kernel, stride in self.conv_layers:
            rf += (kernel - 1) * jump
            jump *= stride
        return rf

    @property
    def frame_rate_hz(self) -> float:
        """Output frames per second at 16 kHz."""
        return SAMPLE_RATE / self.hop

    def num_frames(self, num_samples: int) -> int:
        """Valid frames for ``num_samples`` samples (0 when the input is too short)."""
        if self.kind == "spectral":
            return framing.num_frames(num_samples)
        n = num_samples
        for _, kernel, stride in self.conv_layers:
            n = max(0, (n - kernel) // stride + 1)
        return n


@dataclass(frozen=True)
class EncoderConfig:
    """A HuBERT-family encoder: front-end + feature projection + transformer.

    Attributes:
        depth: transformer layers L.
        width: model dimension D.
        ffn: feed-forward inner dimension.
        heads: attention heads (``width % heads == 0``).
        frontend: the front-end (copied from the teacher by students).
        arch: ``"hubert"`` or ``"wav2vec2"`` (same encoder, different provenance) or
            ``"wavlm"`` (gated relative-position attention).
        layer_norm_first: pre-LN (True; Large models) or post-LN (False; HuBERT Base).
        pos_conv_kernel: convolutional positional embedding kernel (frames).
        pos_conv_groups: its groups (``width % groups == 0``).
        dropout: residual dropout (fairseq ``dropout``).
        attention_dropout: dropout on attention weights.
        ffn_dropout: dropout inside the feed-forward block (fairseq ``activation_dropout``).
        projection_dropout: dropout after the feature projection (fairseq ``dropout_input``).
        layer_drop: probability of skipping a layer in training (never the first WavLM layer).
        num_buckets: WavLM relative-position buckets.
        max_distance: WavLM maximum relative distance.
    """

    depth: int
    width: int
    ffn: int
    heads: int
    frontend: FrontendConfig = field(default_factory=FrontendConfig)
    arch: str = "hubert"
    layer_norm_first: bool = False
    pos_conv_kernel: int = 128
    pos_conv_groups: int = 16
    dropout: float = 0.0
    attention_dropout: float = 0.0
    ffn_dropout: float = 0.0
    projection_dropout: float = 0.0
    layer_drop: float = 0.0
    num_buckets: int = 320
    max_distance: int = 800

    def __post_init__(self) -> None:
        for name in ("depth", "width", "ffn", "heads", "pos_conv_kernel", "pos_conv_groups"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
            if value > LIMITS[name]:
                raise ValueError(f"{name} {value:,} is beyond the largest accepted ({LIMITS[name]:,})")
        if self.arch not in ARCHS:
            raise ValueError(f"arch {self.arch!r} is not one of {', '.join(ARCHS)}")
        if self.width % self.heads:
            raise ValueError(
                f"width {self.width} is not divisible by heads {self.heads}; "
                f"pick heads that divide the width"
            )
        if self.width % self.pos_conv_groups:
            raise ValueError(
                f"width {self.width} is not divisible by pos_conv_groups {self.pos_conv_groups}"
            )
        for name in ("dropout", "attention_dropout", "ffn_dropout", "projection_dropout", "layer_drop"):
            value = float(getattr(self, name))
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {value}")
        if self.arch == "wavlm" and (self.num_buckets < 2 or self.max_distance < 2):
            raise ValueError("wavlm needs num_buckets >= 2 and max_distance >= 2")
        for name in ("num_buckets", "max_distance"):
            if getattr(self, name) > LIMITS[name]:
                raise ValueError(f"{name} {getattr(self, name):,} is beyond the largest accepted ({LIMITS[name]:,})")
        if isinstance(self.frontend, dict):  # tolerate a plain dict from JSON
            object.__setattr__(self, "frontend", config_from_dict(FrontendConfig, self.frontend))
        if not isinstance(self.frontend, FrontendConfig):
            raise ValueError("frontend must be a FrontendConfig")
        from deepwide.models.budget import count_params  # budget imports this module

        n = count_params(self)
        if n > MAX_PARAMS:
            raise ValueError(
                f"{self.describe()} would have {n / 1e9:.1f} B parameters, more than the "
                f"{MAX_PARAMS / 1e9:.0f} B deepwide builds; check depth, width and ffn"
            )

    @property
    def head_dim(self) -> int:
        """Width of one attention head."""
        return self.width // self.heads

    @property
    def frame_rate_hz(self) -> float:
        """Output frames per second (50 for HuBERT-family models)."""
        return self.frontend.frame_rate_hz

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples become lists)."""
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, where: str = "encoder config") -> EncoderConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise :class:`deepwide.errors.ConfigError`."""
        return config_from_dict(cls, data, where=where)

    def hash(self) -> str:
        """Canonical content hash of the architecture (cache keys)."""
        return config_hash(self)

    def describe(self) -> str:
        """One-line summary, e.g. ``hubert 12x768 ffn3072 h12 post-LN cnn/group_norm``."""
        ln = "pre-LN" if self.layer_norm_first else "post-LN"
        fe = self.frontend
        front = f"cnn/{fe.norm}" if fe.kind == "cnn" else f"spectral/{fe.n_mels}mel"
        return f"{self.arch} {self.depth}x{self.width} ffn{self.ffn} h{self.heads} {ln} {front}"
