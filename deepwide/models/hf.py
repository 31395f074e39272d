"""Hugging Face model folders (HubertModel / Wav2Vec2Model / WavLMModel) -> :class:`Encoder`.

Reads ``config.json`` and the weights (``model.safetensors``, a sharded
``model.safetensors.index.json``, or ``pytorch_model.bin`` read with ``weights_only``) and maps
them onto torchaudio's module names, as
``torchaudio.models.wav2vec2.utils.import_huggingface_model`` does, but from the files alone:
``transformers`` is not needed (it is a test-only dependency). Task heads (CTC ``lm_head``,
classifiers, quantizers, ``masked_spec_embed``) are dropped. ``preprocessor_config.json``'s
``do_normalize`` becomes the front-end's ``normalize_waveform``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepwide.errors import ModelError
from deepwide.models.config import LIMITS, EncoderConfig, FrontendConfig
from deepwide.models.weights import load_state_into, rename_weight_norm

if TYPE_CHECKING:
    from deepwide.models.encoder import Encoder

log = logging.getLogger(__name__)

MODEL_TYPES = {"hubert": "hubert", "wav2vec2": "wav2vec2", "wavlm": "wavlm"}
_PREFIXES = ("hubert.", "wav2vec2.", "wavlm.")
_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


def _read_config(folder: Path) -> dict[str, Any]:
    path = folder / "config.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ModelError(f"{path} is broken JSON at line {exc.lineno} column {exc.colno} ({exc.msg}); "
                         f"fix or replace the file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ModelError(f"{path} does not hold a JSON object")
    return data


def _int(value: Any, key: str) -> int:
    """A config.json size as an int (integral floats accepted); anything else is a ValueError."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value or abs(value) == float("inf"):
        raise ValueError(f"{key} must be a positive integer, got {value!r}")
    if int(value) != value:
        raise ValueError(f"{key} must be an integer, got {value!r}")
    return int(value)


def is_hf_dir(path: str | Path) -> bool:
    """True if ``path`` is a folder with a Hugging Face ``config.json`` (``model_type``) and weights."""
    folder = Path(path)
    if not (folder / "config.json").is_file():
        return False
    try:
        data = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    return isinstance(data, dict) and "model_type" in data and any(
        (folder / f).is_file() for f in _WEIGHT_FILES
    )


def hf_config(path: str | Path) -> EncoderConfig:
    """The :class:`EncoderConfig` of a Hugging Face model folder.

    Raises:
        ModelError: an unsupported model type or option (the message names it).
    """
    folder = Path(path)
    cfg = _read_config(folder)
    try:
        return _hf_config(folder, cfg)
    except (ValueError, TypeError, OverflowError) as exc:  # a value of the wrong JSON type
        raise ModelError(f"{folder / 'config.json'} holds an invalid value: {exc}") from None


def _hf_config(folder: Path, cfg: dict[str, Any]) -> EncoderConfig:
    model_type = cfg.get("model_type")
    if not isinstance(model_type, str) or model_type not in MODEL_TYPES:
        raise ModelError(
            f"{folder}: Hugging Face model_type {model_type!r} is not supported; "
            f"valid: {', '.join(sorted(MODEL_TYPES))}"
        )

    def get(key: str, default: Any = None) -> Any:
        if key not in cfg and default is None:
            raise ModelError(f"{folder / 'config.json'} lacks {key!r}; it is not a complete {model_type} config")
        return cfg.get(key, default)

    checks = {
        "hidden_act": ("gelu", get("hidden_act", "gelu")),
        "feat_extract_activation": ("gelu", get("feat_extract_activation", "gelu")),
        "layer_norm_eps": (1e-5, float(get("layer_norm_eps", 1e-5))),
        "feat_proj_layer_norm": (True, bool(get("feat_proj_layer_norm", True))),
        "conv_pos_batch_norm": (False, bool(get("conv_pos_batch_norm", False))),
        "add_adapter": (False, bool(get("add_adapter", False))),
    }
    for key, (want, have) in checks.items():
        if have != want:
            raise ModelError(
                f"{folder}: {key}={have!r} is not supported (torchaudio's architecture needs {want!r})"
            )
    conv_dim, conv_kernel, conv_stride = get("conv_dim"), get("conv_kernel"), get("conv_stride")
    if not all(isinstance(v, list) for v in (conv_dim, conv_kernel, conv_stride)):
        raise ModelError(f"{folder / 'config.json'}: conv_dim, conv_kernel and conv_stride must be lists")
    if not len(conv_dim) == len(conv_kernel) == len(conv_stride):
        raise ModelError(f"{folder}: conv_dim, conv_kernel and conv_stride differ in length")
    if len(conv_dim) > LIMITS["conv_layers"]:
        raise ModelError(f"{folder / 'config.json'}: {len(conv_dim)} conv layers; at most {LIMITS['conv_layers']} are accepted")
    norm_name = get("feat_extract_norm", "group")
    norm = {"group": "group_norm", "layer": "layer_norm"}.get(norm_name) if isinstance(norm_name, str) else None
    if norm is None:
        raise ModelError(f"{folder}: feat_extract_norm {norm_name!r} is not group or layer")
    normalize = False
    pre = folder / "preprocessor_config.json"
    if pre.is_file():
        try:
            normalize = bool(json.loads(pre.read_text(encoding="utf-8")).get("do_normalize", False))
        except (OSError, json.JSONDecodeError) as exc:
            raise ModelError(f"cannot read {pre}: {exc}") from exc
    try:
        frontend = FrontendConfig(
            kind="cnn",
            conv_layers=tuple(zip(conv_dim, conv_kernel, conv_stride, strict=True)),
            norm=norm,
            conv_bias=bool(get("conv_bias", False)),
            normalize_waveform=normalize,
        )
        extra: dict[str, Any] = {}
        if model_type == "wavlm":
            extra = {"num_buckets": _int(get("num_buckets", 320), "num_buckets"),
                     "max_distance": _int(get("max_bucket_distance", 800), "max_bucket_distance")}
        return EncoderConfig(
            depth=_int(get("num_hidden_layers"), "num_hidden_layers"),
            width=_int(get("hidden_size"), "hidden_size"),
            ffn=_int(get("intermediate_size"), "intermediate_size"),
            heads=_int(get("num_attention_heads"), "num_attention_heads"),
            frontend=frontend,
            arch=MODEL_TYPES[model_type],
            layer_norm_first=bool(get("do_stable_layer_norm", False)),
            pos_conv_kernel=_int(get("num_conv_pos_embeddings", 128), "num_conv_pos_embeddings"),
            pos_conv_groups=_int(get("num_conv_pos_embedding_groups", 16), "num_conv_pos_embedding_groups"),
            **extra,
        )
    except (ValueError, TypeError) as exc:
        raise ModelError(f"{folder}: unsupported architecture: {exc}") from None


def _read_weights(folder: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    from deepwide.models.torchfile import load_torch_file

    try:
        if (folder / "model.safetensors").is_file():
            return load_file(str(folder / "model.safetensors"))
        index = folder / "model.safetensors.index.json"
        if index.is_file():
            shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
            state: dict[str, Any] = {}
            for shard in shards:
                state.update(load_file(str(folder / shard)))
            return state
        if (folder / "pytorch_model.bin").is_file():
            state = load_torch_file(folder / "pytorch_model.bin",
                                    hint="save the model again with save_pretrained(safe_serialization=True)")
            if not isinstance(state, dict):
                raise ModelError(f"{folder / 'pytorch_model.bin'} holds no state dict; save the model again")
            return state
    except ModelError:
        raise
    except Exception as exc:
        raise ModelError(f"cannot read the weights in {folder}: {type(exc).__name__}: "
                         f"{str(exc).splitlines()[0][:160] if str(exc) else ''}; save the model again") from None
    raise ModelError(f"{folder} has no weights ({' or '.join(_WEIGHT_FILES)})")


def map_hf_state(state: dict[str, Any], config: EncoderConfig) -> dict[str, Any]:
    """Rename Hugging Face keys to :class:`Encoder` keys (heads and other extras dropped).

    ``feature_extractor.*`` -> ``frontend.*``; ``feature_projection.*`` ->
    ``encoder.feature_projection.*``; ``encoder.*`` -> ``encoder.transformer.*``; WavLM's
    ``q/k/v_proj`` are concatenated into ``nn.MultiheadAttention``'s ``in_proj``.
    """
    import torch

    out: dict[str, Any] = {}
    dropped = []
    for key, value in state.items():
        for prefix in _PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix):]
                break
        if key.startswith("feature_extractor."):
            out["frontend." + key[len("feature_extractor."):]] = value
        elif key.startswith("feature_projection."):
            out["encoder." + key] = value
        elif key.startswith("encoder."):
            out["encoder.transformer." + key[len("encoder."):]] = value
        else:
            dropped.append(key)
    if dropped:
        log.debug("dropped Hugging Face keys outside the encoder: %s", ", ".join(sorted(dropped)))
    out = rename_weight_norm(out)
    if config.arch == "wavlm":
        for i in range(config.depth):
            base = f"encoder.transformer.layers.{i}.attention."
            qkv = [base + f"{p}_proj." for p in ("q", "k", "v")]
            if all(q + "weight" in out and q + "bias" in out for q in qkv):
                out[base + "attention.in_proj_weight"] = torch.cat([out.pop(q + "weight") for q in qkv])
                out[base + "attention.in_proj_bias"] = torch.cat([out.pop(q + "bias") for q in qkv])
            for part in ("weight", "bias"):
                if base + f"out_proj.{part}" in out:
                    out[base + f"attention.out_proj.{part}"] = out.pop(base + f"out_proj.{part}")
    return out


def load_hf(path: str | Path) -> Encoder:
    """Load a Hugging Face model folder as an :class:`Encoder` (model id: the folder name)."""
    from deepwide.models.encoder import Encoder

    folder = Path(path)
    config = hf_config(folder)
    model = Encoder(config, model_id=folder.resolve().name)
    load_state_into(model, map_hf_state(_read_weights(folder), config), source=str(folder))
    return model
