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
from typing import Any

from deepwide.errors import ModelError
from deepwide.models.config import EncoderConfig, FrontendConfig

log = logging.getLogger(__name__)

MODEL_TYPES = {"hubert": "hubert", "wav2vec2": "wav2vec2", "wavlm": "wavlm"}
_PREFIXES = ("hubert.", "wav2vec2.", "wavlm.")
_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


def _read_config(folder: Path) -> dict[str, Any]:
    try:
        data = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"cannot read {folder / 'config.json'}: {exc}") from exc
    if not isinstance(data, dict):
        raise ModelError(f"{folder / 'config.json'} does not hold a JSON object")
    return data


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
    model_type = cfg.get("model_type")
    if model_type not in MODEL_TYPES:
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
    if not len(conv_dim) == len(conv_kernel) == len(conv_stride):
        raise ModelError(f"{folder}: conv_dim, conv_kernel and conv_stride differ in length")
    norm = {"group": "group_norm", "layer": "layer_norm"}.get(get("feat_extract_norm", "group"))
    if norm is None:
        raise ModelError(f"{folder}: feat_extract_norm {cfg['feat_extract_norm']!r} is not group or layer")
    normalize = False
    pre = folder / "preprocessor_config.json"
    if pre.is_file():
        try:
            normalize = bool(json.loads(pre.read_text(encoding="utf-8")).get("do_normalize", False))
        except (OSError, json.JSONDecodeError) as exc:
            raise ModelError(f"cannot read {pre}: {exc}") from exc
    frontend = FrontendConfig(
        kind="cnn",
        conv_layers=tuple(zip(conv_dim, conv_kernel, conv_stride, strict=True)),
        norm=norm,
        conv_bias=bool(get("conv_bias", False)),
        normalize_waveform=normalize,
    )
    extra: dict[str, Any] = {}
    if model_type == "wavlm":
        extra = {"num_buckets": int(get("num_buckets", 320)), "max_distance": int(get("max_bucket_distance", 800))}
    try:
        return EncoderConfig(
            depth=int(get("num_hidden_layers")),
            width=int(get("hidden_size")),
            ffn=int(get("intermediate_size")),
            heads=int(get("num_attention_heads")),
            frontend=frontend,
            arch=MODEL_TYPES[model_type],
            layer_norm_first=bool(get("do_stable_layer_norm", False)),
            pos_conv_kernel=int(get("num_conv_pos_embeddings", 128)),
            pos_conv_groups=int(get("num_conv_pos_embedding_groups", 16)),
            **extra,
        )
    except ValueError as exc:
        raise ModelError(f"{folder}: unsupported architecture: {exc}") from exc


def _read_weights(folder: Path) -> dict[str, Any]:
    import torch
    from safetensors.torch import load_file

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
            return torch.load(str(folder / "pytorch_model.bin"), map_location="cpu", weights_only=True)
    except ModelError:
        raise
    except Exception as exc:
        raise ModelError(f"cannot read the weights in {folder}: {exc}") from exc
    raise ModelError(f"{folder} has no weights ({' or '.join(_WEIGHT_FILES)})")


def map_hf_state(state: dict[str, Any], config: EncoderConfig) -> dict[str, Any]:
    """Rename Hugging Face keys to :class:`Encoder` keys (heads and other extras dropped).

    ``feature_extractor.*`` -> ``frontend.*``; ``feature_projection.*`` ->
    ``encoder.feature_projection.*``; ``encoder.*`` -> ``encoder.transformer.*``; WavLM's
    ``q/k/v_proj`` are concatenated into ``nn.MultiheadAttention``'s ``in_proj``.
    """
    import torch

    from deepwide.models.loading import rename_weight_norm

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


def load_hf(path: str | Path) -> Any:
    """Load a Hugging Face model folder as an :class:`Encoder` (model id: the folder name)."""
    from deepwide.models.encoder import Encoder
    from deepwide.models.loading import load_state_into

    folder = Path(path)
    config = hf_config(folder)
    model = Encoder(config, model_id=folder.resolve().name)
    load_state_into(model, map_hf_state(_read_weights(folder), config), source=str(folder))
    return model
