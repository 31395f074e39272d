"""Hugging Face model folders (HubertModel / Wav2Vec2Model / WavLMModel) -> :class:`Encoder`.

Reads ``config.json`` and the weights (``model.safetensors``, a sharded
``model.safetensors.index.json``, or ``pytorch_model.bin`` read with ``weights_only``) and maps
them onto torchaudio's module names, as
``torchaudio.models.wav2vec2.utils.import_huggingface_model`` does, but from the files alone:
``transformers`` is not needed (it is a test-only dependency). Task heads (CTC ``lm_head``,
classifiers, quantizers, ``masked_spec_embed``) are dropped. ``preprocessor_config.json``'s
``do_normalize`` becomes the front-end's ``normalize_waveform``.

The key and config mapping lives here once, as tables read in both directions:
:func:`map_hf_state` / :func:`hf_config` read a Hugging Face folder, :func:`to_hf_state` /
:func:`to_hf_config` give the Hugging Face form of an :class:`Encoder`
(:mod:`deepwide.models.hf_export` writes it).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepwide.errors import ModelError
from deepwide.framing import SAMPLE_RATE
from deepwide.models.config import LIMITS, EncoderConfig, FrontendConfig
from deepwide.models.weights import load_state_into, rename_weight_norm

if TYPE_CHECKING:
    from deepwide.models.encoder import Encoder

log = logging.getLogger(__name__)

MODEL_TYPES = {"hubert": "hubert", "wav2vec2": "wav2vec2", "wavlm": "wavlm"}
#: deepwide ``arch`` -> the transformers class of the bare encoder.
HF_MODEL_CLASSES = {"hubert": "HubertModel", "wav2vec2": "Wav2Vec2Model", "wavlm": "WavLMModel"}
_PREFIXES = ("hubert.", "wav2vec2.", "wavlm.")
_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
PREPROCESSOR_FILE = "preprocessor_config.json"

#: Hugging Face state-dict prefix -> :class:`Encoder` prefix (after a task model's ``hubert.`` …
#: prefix is stripped); read left to right on import, right to left on export.
STATE_PREFIXES: tuple[tuple[str, str], ...] = (
    ("feature_extractor.", "frontend."),
    ("feature_projection.", "encoder.feature_projection."),
    ("encoder.", "encoder.transformer."),
)
#: :class:`EncoderConfig` size -> (config.json key, default when absent; None: required).
CONFIG_SIZES: dict[str, tuple[str, int | None]] = {
    "depth": ("num_hidden_layers", None),
    "width": ("hidden_size", None),
    "ffn": ("intermediate_size", None),
    "heads": ("num_attention_heads", None),
    "pos_conv_kernel": ("num_conv_pos_embeddings", 128),
    "pos_conv_groups": ("num_conv_pos_embedding_groups", 16),
}
#: WavLM's relative-position sizes, as :data:`CONFIG_SIZES`.
WAVLM_SIZES: dict[str, tuple[str, int | None]] = {
    "num_buckets": ("num_buckets", 320),
    "max_distance": ("max_bucket_distance", 800),
}
#: config.json options torchaudio's architecture fixes: the one value accepted (and written).
FIXED_OPTIONS: dict[str, Any] = {
    "hidden_act": "gelu",
    "feat_extract_activation": "gelu",
    "layer_norm_eps": 1e-5,
    "feat_proj_layer_norm": True,
    "conv_pos_batch_norm": False,
    "add_adapter": False,
}
#: config.json ``feat_extract_norm`` -> :attr:`FrontendConfig.norm`.
FEAT_EXTRACT_NORMS = {"group": "group_norm", "layer": "layer_norm"}
#: :class:`EncoderConfig` dropout -> config.json key (torchaudio's ``import_huggingface_model``
#: pairs them so); written on export only.
DROPOUTS = {
    "dropout": "hidden_dropout",
    "attention_dropout": "attention_dropout",
    "ffn_dropout": "activation_dropout",
    "projection_dropout": "feat_proj_dropout",
    "layer_drop": "layerdrop",
}


def _rename(key: str, prefixes: tuple[tuple[str, str], ...]) -> str | None:
    """``key`` with the first matching ``(old, new)`` prefix replaced; None if none matches."""
    for old, new in prefixes:
        if key.startswith(old):
            return new + key[len(old):]
    return None


def _wavlm_attention_keys(layer: int) -> tuple[list[str], str, tuple[str, str]]:
    """Encoder-side names of one WavLM attention block: Hugging Face's separate ``q/k/v_proj.``
    prefixes, torchaudio's fused ``in_proj_`` prefix (q, k, v stacked), and the
    ``(Hugging Face, torchaudio)`` ``out_proj.`` prefixes."""
    base = f"encoder.transformer.layers.{layer}.attention."
    return ([base + f"{p}_proj." for p in ("q", "k", "v")], base + "attention.in_proj_",
            (base + "out_proj.", base + "attention.out_proj."))


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

    checks = {key: (want, get(key, want) if isinstance(want, str) else type(want)(get(key, want)))
              for key, want in FIXED_OPTIONS.items()}
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
    norm = FEAT_EXTRACT_NORMS.get(norm_name) if isinstance(norm_name, str) else None
    if norm is None:
        raise ModelError(f"{folder}: feat_extract_norm {norm_name!r} is not group or layer")
    normalize = False
    pre = folder / PREPROCESSOR_FILE
    if pre.is_file():
        try:
            preprocessor = json.loads(pre.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ModelError(f"cannot read {pre}: {exc}") from exc
        normalize = bool(preprocessor.get("do_normalize", False))
        rate = preprocessor.get("sampling_rate", SAMPLE_RATE)
        if rate != SAMPLE_RATE:
            raise ModelError(f"{pre}: the model takes {rate!r} Hz audio, but deepwide runs every model on "
                             f"{SAMPLE_RATE} Hz audio; use a {SAMPLE_RATE // 1000} kHz model")
    try:
        frontend = FrontendConfig(
            kind="cnn",
            conv_layers=tuple(zip(conv_dim, conv_kernel, conv_stride, strict=True)),
            norm=norm,
            conv_bias=bool(get("conv_bias", False)),
            normalize_waveform=normalize,
        )
        sizes = {**(WAVLM_SIZES if model_type == "wavlm" else {}), **CONFIG_SIZES}
        values = {name: _int(get(key, default), key) for name, (key, default) in sizes.items()}
        return EncoderConfig(
            frontend=frontend,
            arch=MODEL_TYPES[model_type],
            layer_norm_first=bool(get("do_stable_layer_norm", False)),
            **values,
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
    ``encoder.feature_projection.*``; ``encoder.*`` -> ``encoder.transformer.*``
    (:data:`STATE_PREFIXES`); WavLM's ``q/k/v_proj`` are concatenated into
    ``nn.MultiheadAttention``'s ``in_proj``. :func:`to_hf_state` is the inverse.
    """
    import torch

    out: dict[str, Any] = {}
    dropped = []
    for key, value in state.items():
        for prefix in _PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix):]
                break
        ours = _rename(key, STATE_PREFIXES)
        if ours is None:
            dropped.append(key)
        else:
            out[ours] = value
    if dropped:
        log.debug("dropped Hugging Face keys outside the encoder: %s", ", ".join(sorted(dropped)))
    out = rename_weight_norm(out)
    if config.arch == "wavlm":
        for i in range(config.depth):
            qkv, fused, (hf_out, ta_out) = _wavlm_attention_keys(i)
            if all(q + "weight" in out and q + "bias" in out for q in qkv):
                out[fused + "weight"] = torch.cat([out.pop(q + "weight") for q in qkv])
                out[fused + "bias"] = torch.cat([out.pop(q + "bias") for q in qkv])
            for part in ("weight", "bias"):
                if hf_out + part in out:
                    out[ta_out + part] = out.pop(hf_out + part)
    return out


def to_hf_state(state: dict[str, Any], config: EncoderConfig) -> dict[str, Any]:
    """The inverse of :func:`map_hf_state`: :class:`Encoder` keys -> the bare Hugging Face
    model's keys (``HubertModel`` … without a task prefix); WavLM's fused ``in_proj`` is split
    back into ``q/k/v_proj`` (views of the fused tensors).
    """
    out = dict(state)
    if config.arch == "wavlm":
        for i in range(config.depth):
            qkv, fused, (hf_out, ta_out) = _wavlm_attention_keys(i)
            for part in ("weight", "bias"):
                if fused + part in out:
                    for name, chunk in zip(qkv, out.pop(fused + part).chunk(3), strict=True):
                        out[name + part] = chunk
                if ta_out + part in out:
                    out[hf_out + part] = out.pop(ta_out + part)
    reverse = tuple((ours, theirs) for theirs, ours in STATE_PREFIXES)
    hf_state = {}
    for key, value in out.items():
        theirs = _rename(key, reverse)
        if theirs is None:
            raise ModelError(f"encoder weight {key!r} has no Hugging Face name; it cannot be exported")
        hf_state[theirs] = value
    return hf_state


def to_hf_config(config: EncoderConfig, *, name: str = "the model") -> dict[str, Any]:
    """The ``config.json`` of the Hugging Face twin of ``config`` (inverse of :func:`hf_config`).

    The dropouts are written too (:data:`DROPOUTS`); reading a folder leaves them at 0.

    Raises:
        ModelError: a spectral front-end (Hugging Face's models have only the waveform CNN).
    """
    fe = config.frontend
    if fe.kind != "cnn":
        raise ModelError(
            f"{name} has a {fe.kind} (log-mel) front-end and Hugging Face's HuBERT, wav2vec 2.0 "
            f"and WavLM models have only the waveform CNN, so it cannot be exported"
        )
    sizes = {**(WAVLM_SIZES if config.arch == "wavlm" else {}), **CONFIG_SIZES}
    model_types = {ours: theirs for theirs, ours in MODEL_TYPES.items()}
    norms = {ours: theirs for theirs, ours in FEAT_EXTRACT_NORMS.items()}
    return {
        "model_type": model_types[config.arch],
        "architectures": [HF_MODEL_CLASSES[config.arch]],
        **{key: getattr(config, field) for field, (key, _) in sizes.items()},
        "conv_dim": [channels for channels, _, _ in fe.conv_layers],
        "conv_kernel": [kernel for _, kernel, _ in fe.conv_layers],
        "conv_stride": [stride for _, _, stride in fe.conv_layers],
        "num_feat_extract_layers": len(fe.conv_layers),
        "feat_extract_norm": norms[fe.norm],
        "conv_bias": fe.conv_bias,
        "do_stable_layer_norm": config.layer_norm_first,
        **FIXED_OPTIONS,
        **{key: float(getattr(config, field)) for field, key in DROPOUTS.items()},
    }


def to_hf_preprocessor(frontend: FrontendConfig) -> dict[str, Any]:
    """The ``preprocessor_config.json`` of a ``Wav2Vec2FeatureExtractor`` for ``frontend``.

    ``do_normalize`` is :attr:`FrontendConfig.normalize_waveform` (what :func:`hf_config`
    reads back); attention masks are returned for layer-norm CNNs only, as Hugging Face's own
    group-norm models (wav2vec 2.0 / HuBERT Base) are fed without them.
    """
    return {
        "feature_extractor_type": "Wav2Vec2FeatureExtractor",
        "feature_size": 1,
        "sampling_rate": SAMPLE_RATE,
        "padding_side": "right",
        "padding_value": 0.0,
        "do_normalize": frontend.normalize_waveform,
        "return_attention_mask": frontend.norm == "layer_norm",
    }


def load_hf(path: str | Path) -> Encoder:
    """Load a Hugging Face model folder as an :class:`Encoder` (model id: the folder name)."""
    from deepwide.models.encoder import Encoder

    folder = Path(path)
    config = hf_config(folder)
    model = Encoder(config, model_id=folder.resolve().name)
    load_state_into(model, map_hf_state(_read_weights(folder), config), source=str(folder))
    return model
