"""Named architectures: the teachers of the study and the published students.

All presets use torchaudio's HuBERT-family layout (waveform CNN, convolutional positional
embedding with kernel 128 and 16 groups). Dropouts are 0 (inference); training recipes set
their own with :func:`dataclasses.replace`. Parameter counts (``deepwide models params``):
distilhubert 23.49 M, 3l-one 30.58 M, 12l-half 26.87 M, hubert-base 94.37 M.
"""

from __future__ import annotations

import dataclasses

from deepwide.errors import ModelError
from deepwide.models.config import EncoderConfig, FrontendConfig
from deepwide.registry import Registry

PRESETS: Registry[EncoderConfig] = Registry("model preset")

_LARGE_FRONTEND = FrontendConfig(norm="layer_norm", conv_bias=False, normalize_waveform=True)

PRESETS.add("hubert-base", EncoderConfig(depth=12, width=768, ffn=3072, heads=12, arch="hubert"))
PRESETS.add(
    "hubert-large",
    EncoderConfig(
        depth=24, width=1024, ffn=4096, heads=16, arch="hubert",
        frontend=_LARGE_FRONTEND, layer_norm_first=True,
    ),
)
PRESETS.add("wav2vec2-base", EncoderConfig(depth=12, width=768, ffn=3072, heads=12, arch="wav2vec2"))
PRESETS.add("wavlm-base", EncoderConfig(depth=12, width=768, ffn=3072, heads=12, arch="wavlm"))
# Students (Ashihara et al. 2022; DistilHuBERT; FitHuBERT), torchaudio HuBERT layout.
PRESETS.add("distilhubert", EncoderConfig(depth=2, width=768, ffn=3072, heads=12))
PRESETS.add("3l-one", EncoderConfig(depth=3, width=768, ffn=3072, heads=12))
PRESETS.add("12l-half", EncoderConfig(depth=12, width=384, ffn=1536, heads=6))
PRESETS.add("fithubert", EncoderConfig(depth=12, width=480, ffn=480, heads=12))


def heads_for(width: int, head_dim: int = 64) -> int:
    """The head rule: ``width / head_dim`` heads (width must be a multiple of ``head_dim``)."""
    if head_dim < 1 or width < 1:
        raise ModelError(f"width ({width}) and head_dim ({head_dim}) must be positive")
    if width % head_dim:
        raise ModelError(
            f"width {width} is not a multiple of head_dim {head_dim}; "
            f"pick a width multiple of {head_dim} or pass heads explicitly"
        )
    return width // head_dim


def student_config(
    teacher: EncoderConfig,
    depth: int,
    width: int,
    *,
    ffn: int | None = None,
    heads: int | None = None,
    ffn_ratio: float = 4.0,
    head_dim: int = 64,
) -> EncoderConfig:
    """A ``depth x width`` student that copies everything else from ``teacher``.

    The front-end, arch, layer-norm placement, positional convolution and dropouts are the
    teacher's; ``ffn`` defaults to ``round(width * ffn_ratio)`` and ``heads`` to
    ``width / head_dim``.

    Raises:
        ModelError: a width that the head rule or the positional-conv groups cannot divide.
    """
    ffn = int(round(width * ffn_ratio)) if ffn is None else int(ffn)
    heads = heads_for(width, head_dim) if heads is None else int(heads)
    try:
        return dataclasses.replace(teacher, depth=int(depth), width=int(width), ffn=ffn, heads=heads)
    except ValueError as exc:
        raise ModelError(f"invalid student {depth}x{width}: {exc}") from exc
