"""fairseq HuBERT / wav2vec 2.0 checkpoints (``.pt``) -> :class:`Encoder`, without fairseq.

The file is read with ``torch.load(weights_only=True)``: only tensors, containers and the
explicit allow-list :data:`SAFE_GLOBALS` (``argparse.Namespace`` for old ``args``, numpy
scalars/dtypes for logged metrics) are unpickled, so a checkpoint cannot run code. The
architecture comes from ``cfg["model"]`` (fairseq >= 0.10 saves it as a plain dict) or the
legacy ``args`` namespace; fine-tuned checkpoints (``w2v_args``, keys under
``w2v_encoder.w2v_model.``) load their pre-trained encoder. ``conv_feature_layers`` — a
Python expression in fairseq — is evaluated by a small literal-only parser, never ``eval``.
Key names follow ``torchaudio.models.wav2vec2.utils.import_fairseq``.
"""

from __future__ import annotations

import argparse
import ast
import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepwide.errors import ModelError
from deepwide.framing import SAMPLE_RATE
from deepwide.models.config import EncoderConfig, FrontendConfig
from deepwide.models.weights import load_state_into, rename_weight_norm

if TYPE_CHECKING:
    from deepwide.models.encoder import Encoder

log = logging.getLogger(__name__)

_DEFAULT_CONV = "[(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512, 2, 2)] * 2"


def _safe_globals() -> list[Any]:
    allowed: list[Any] = [argparse.Namespace]
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy is a dependency
        return allowed
    core = getattr(np, "_core", None) or np.core
    scalar = core.multiarray.scalar
    allowed += [
        (scalar, "numpy.core.multiarray.scalar"),
        (scalar, "numpy._core.multiarray.scalar"),
        np.dtype,
    ]
    allowed += [type(np.dtype(t)) for t in (np.float64, np.float32, np.int64, np.int32, np.bool_)]
    return allowed


#: Non-tensor objects a fairseq checkpoint may hold that are safe to unpickle (data only).
SAFE_GLOBALS = _safe_globals()


def read_checkpoint_file(path: str | Path) -> dict[str, Any]:
    """``torch.load`` a fairseq checkpoint with ``weights_only=True`` and :data:`SAFE_GLOBALS`.

    Raises:
        ModelError: unreadable, not a dict with ``"model"``, or holding other objects (one line;
            nothing in the file is run).
    """
    from deepwide.models.torchfile import load_torch_file

    p = Path(path)
    ckpt = load_torch_file(
        p, allow=SAFE_GLOBALS,
        hint="re-save it as {'cfg': plain dict, 'model': state_dict} or convert it to a Hugging Face folder",
    )
    if not isinstance(ckpt, Mapping) or not isinstance(ckpt.get("model"), Mapping):
        raise ModelError(f"{p} is not a fairseq checkpoint (no 'model' state dict)")
    return dict(ckpt)


#: Longest ``conv_feature_layers`` expression and most layers it may describe (HuBERT has 7).
MAX_CONV_TEXT = 2_000
MAX_CONV_LAYERS = 64
#: Most items any list/tuple built while evaluating it may hold (checked before building).
_MAX_ITEMS = 4 * MAX_CONV_LAYERS


def parse_conv_layers(text: str | list | tuple) -> tuple[tuple[int, int, int], ...]:
    """Evaluate fairseq's ``conv_feature_layers`` (lists/tuples of ints, ``+`` and ``*`` only).

    Every list a ``*`` or ``+`` would build is sized first: more than :data:`MAX_CONV_LAYERS`
    layers is refused before anything is allocated (``"[(512,10,5)]*1000000000"`` is a 60-byte
    string).

    Raises:
        ModelError: not such an expression, too long, or too many / out-of-range layers.
    """
    if isinstance(text, list | tuple):
        value: Any = text
        if len(value) > MAX_CONV_LAYERS:
            raise ModelError(f"conv_feature_layers lists {len(value)} layers; at most {MAX_CONV_LAYERS} are accepted")
    else:
        source = str(text)
        if len(source) > MAX_CONV_TEXT:
            raise ModelError(f"conv_feature_layers is {len(source)} characters long; at most {MAX_CONV_TEXT} are accepted")
        try:
            value = _literal(ast.parse(source, mode="eval").body)
        except (SyntaxError, ValueError, TypeError, RecursionError, MemoryError) as exc:
            raise ModelError(f"cannot parse conv_feature_layers {source[:80]!r}: {exc}") from None
    try:
        layers = tuple((int(c), int(k), int(s)) for c, k, s in value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ModelError(f"conv_feature_layers {str(text)[:80]!r} is not a list of (dim, kernel, stride)") from exc
    if not layers:
        raise ModelError(f"conv_feature_layers {text!r} is empty")
    if len(layers) > MAX_CONV_LAYERS:
        raise ModelError(f"conv_feature_layers describes {len(layers)} layers; at most {MAX_CONV_LAYERS} are accepted")
    return layers


def _literal(node: ast.AST) -> Any:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.List | ast.Tuple):
        if len(node.elts) > _MAX_ITEMS:
            raise ValueError(f"a list of {len(node.elts)} items is longer than {_MAX_ITEMS}")
        items = [_literal(e) for e in node.elts]
        return items if isinstance(node, ast.List) else tuple(items)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Mult):
        left, right = _literal(node.left), _literal(node.right)
        if isinstance(node.op, ast.Add):
            if isinstance(left, list | tuple) and isinstance(right, list | tuple) and len(left) + len(right) > _MAX_ITEMS:
                raise ValueError(f"a list of {len(left) + len(right)} items is longer than {_MAX_ITEMS}")
            return left + right
        seq, times = (left, right) if isinstance(left, list | tuple) else (right, left)
        if isinstance(seq, list | tuple):
            # size the repetition before Python builds it
            if type(times) is not int:
                raise ValueError(f"a list can only be repeated an integer number of times, not {times!r}")
            if times > _MAX_ITEMS or len(seq) * max(times, 0) > _MAX_ITEMS:
                raise ValueError(f"{len(seq)} item(s) repeated {times} times is longer than {_MAX_ITEMS}")
            return seq * times
        if abs(left) > 2**31 or abs(right) > 2**31:
            raise ValueError("numbers beyond 2**31 are not layer sizes")
        return left * right
    raise ValueError(f"only lists, tuples, numbers, + and * are allowed (found {type(node).__name__})")


def _as_dict(obj: Any) -> dict[str, Any]:
    if obj is None:
        return {}
    if isinstance(obj, argparse.Namespace):
        return vars(obj)
    if isinstance(obj, Mapping):
        return dict(obj)
    raise ModelError(f"unexpected fairseq config of type {type(obj).__name__}")


def _model_and_task_cfg(ckpt: Mapping[str, Any], where: str) -> tuple[dict[str, Any], dict[str, Any]]:
    cfg = _as_dict(ckpt.get("cfg"))
    if cfg.get("model"):
        model_cfg, task_cfg = _as_dict(cfg["model"]), _as_dict(cfg.get("task"))
    elif ckpt.get("args") is not None:
        model_cfg = task_cfg = _as_dict(ckpt["args"])
    else:
        raise ModelError(f"{where} has neither cfg['model'] nor args; it is not a fairseq checkpoint")
    inner = model_cfg.get("w2v_args")
    if inner:  # fine-tuned: the encoder's own pre-training config
        inner_d = _as_dict(inner)
        if inner_d.get("model"):
            return _as_dict(inner_d["model"]), _as_dict(inner_d.get("task"))
        return inner_d, inner_d
    return model_cfg, task_cfg


def fairseq_config(ckpt: Mapping[str, Any], *, where: str = "fairseq checkpoint") -> EncoderConfig:
    """The :class:`EncoderConfig` of a loaded fairseq checkpoint dict."""
    model_cfg, task_cfg = _model_and_task_cfg(ckpt, where)
    name = str(model_cfg.get("_name") or model_cfg.get("arch") or "")
    if any("relative_attention_bias" in k for k in ckpt["model"]):
        raise ModelError(
            f"{where} is a WavLM checkpoint, which is not read from fairseq files; "
            f"use torchaudio:WAVLM_BASE or a Hugging Face WavLMModel folder"
        )
    arch = "hubert" if "hubert" in name else "wav2vec2"
    unsupported = {
        "activation_fn": ("gelu", model_cfg.get("activation_fn", "gelu")),
        "layer_type": ("transformer", model_cfg.get("layer_type", "transformer")),
        "pos_conv_depth": (1, int(model_cfg.get("pos_conv_depth", 1))),
    }
    for key, (want, have) in unsupported.items():
        if have != want:
            raise ModelError(f"{where}: {key}={have!r} is not supported (needs {want!r})")
    mode = model_cfg.get("extractor_mode", "default")
    norm = {"default": "group_norm", "group_norm": "group_norm", "layer_norm": "layer_norm"}.get(mode)
    if norm is None:
        raise ModelError(f"{where}: extractor_mode {mode!r} is not default or layer_norm")
    rate = task_cfg.get("sample_rate", SAMPLE_RATE)
    if rate != SAMPLE_RATE:
        raise ModelError(f"{where} was trained on {rate!r} Hz audio, but deepwide runs every model on "
                         f"{SAMPLE_RATE} Hz audio; use a {SAMPLE_RATE // 1000} kHz checkpoint")
    conv_layers = parse_conv_layers(model_cfg.get("conv_feature_layers", _DEFAULT_CONV))
    try:
        frontend = FrontendConfig(
            kind="cnn",
            conv_layers=conv_layers,
            norm=norm,
            conv_bias=bool(model_cfg.get("conv_bias", False)),
            normalize_waveform=bool(task_cfg.get("normalize", False)),
        )
        return EncoderConfig(
            depth=_size(model_cfg, "encoder_layers", 12),
            width=_size(model_cfg, "encoder_embed_dim", 768),
            ffn=_size(model_cfg, "encoder_ffn_embed_dim", 3072),
            heads=_size(model_cfg, "encoder_attention_heads", 12),
            frontend=frontend,
            arch=arch,
            layer_norm_first=bool(model_cfg.get("layer_norm_first", False)),
            pos_conv_kernel=_size(model_cfg, "conv_pos", 128),
            pos_conv_groups=_size(model_cfg, "conv_pos_groups", 16),
        )
    except (ValueError, TypeError, OverflowError) as exc:
        raise ModelError(f"{where}: unsupported architecture: {exc}") from None


def _size(cfg: Mapping[str, Any], key: str, default: int) -> int:
    """``cfg[key]`` as an int (an integral float is accepted); anything else is a ValueError."""
    value = cfg.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value or int(value) != value:
        raise ValueError(f"{key} must be a positive integer, got {value!r}")
    return int(value)


_DROP = re.compile(r"(mask_emb|label_embs_concat|quantizer\.|project_q\.|final_proj\.|proj\.|target_glu\.)")
_RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"feature_extractor\.conv_layers\.0\.2\.(weight|bias)$"), r"frontend.conv_layers.0.layer_norm.\1"),
    (re.compile(r"feature_extractor\.conv_layers\.(\d+)\.0\.(weight|bias)$"), r"frontend.conv_layers.\1.conv.\2"),
    (re.compile(r"feature_extractor\.conv_layers\.(\d+)\.2\.1\.(weight|bias)$"), r"frontend.conv_layers.\1.layer_norm.\2"),
    (re.compile(r"post_extract_proj\.(weight|bias)$"), r"encoder.feature_projection.projection.\1"),
    (re.compile(r"layer_norm\.(weight|bias)$"), r"encoder.feature_projection.layer_norm.\1"),
    (re.compile(r"encoder\.pos_conv\.0\.(.+)$"), r"encoder.transformer.pos_conv_embed.conv.\1"),
    (re.compile(r"encoder\.layer_norm\.(weight|bias)$"), r"encoder.transformer.layer_norm.\1"),
    (re.compile(r"encoder\.layers\.(\d+)\.self_attn\.((?:k|v|q|out)_proj\.(?:weight|bias))$"), r"encoder.transformer.layers.\1.attention.\2"),
    (re.compile(r"encoder\.layers\.(\d+)\.self_attn_layer_norm\.(weight|bias)$"), r"encoder.transformer.layers.\1.layer_norm.\2"),
    (re.compile(r"encoder\.layers\.(\d+)\.fc1\.(weight|bias)$"), r"encoder.transformer.layers.\1.feed_forward.intermediate_dense.\2"),
    (re.compile(r"encoder\.layers\.(\d+)\.fc2\.(weight|bias)$"), r"encoder.transformer.layers.\1.feed_forward.output_dense.\2"),
    (re.compile(r"encoder\.layers\.(\d+)\.final_layer_norm\.(weight|bias)$"), r"encoder.transformer.layers.\1.final_layer_norm.\2"),
]


def map_fairseq_state(state: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Rename fairseq keys to :class:`Encoder` keys.

    Returns:
        ``(mapped, unknown)``: the encoder's tensors, and the keys no rule recognises (kept
        under their own name so the strict load names them).
    """
    mapped: dict[str, Any] = {}
    unknown: list[str] = []
    for key, value in state.items():
        k = key
        for prefix in ("w2v_encoder.", "w2v_model."):
            if k.startswith(prefix):
                k = k[len(prefix):]
        if _DROP.match(k):
            continue
        for pattern, repl in _RULES:
            if pattern.match(k):
                mapped[pattern.sub(repl, k)] = value
                break
        else:
            unknown.append(key)
            mapped[key] = value
    return rename_weight_norm(mapped), unknown


def read_fairseq(path: str | Path) -> tuple[EncoderConfig, dict[str, Any]]:
    """``(config, mapped state dict)`` of a fairseq checkpoint file."""
    p = Path(path)
    ckpt = read_checkpoint_file(p)
    config = fairseq_config(ckpt, where=str(p))
    state, unknown = map_fairseq_state(ckpt["model"])
    if unknown:
        log.debug("unrecognised fairseq keys in %s: %s", p, ", ".join(unknown))
    return config, state


def load_fairseq(path: str | Path) -> Encoder:
    """Load a fairseq HuBERT / wav2vec 2.0 checkpoint as an :class:`Encoder` (id: file stem)."""
    from deepwide.models.encoder import Encoder

    p = Path(path)
    config, state = read_fairseq(p)
    model = Encoder(config, model_id=p.stem)
    load_state_into(model, state, source=str(p))
    return model
