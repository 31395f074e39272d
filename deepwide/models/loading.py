"""Model specs -> :class:`Encoder`: the ``--model`` argument of every stage.

A spec is one of

* a **deepwide checkpoint** folder (``config.json`` + ``model.safetensors``; written by
  :func:`save_checkpoint`, i.e. by distillation and teacher pre-training);
* a **bundled checkpoint** name from :data:`deepwide.models.zoo.ZOO` (``tiny-teacher``);
* a **preset** name from :data:`deepwide.models.presets.PRESETS` — randomly initialised with
  the seed (model id ``random:<name>``);
* ``random:SPEC`` — the architecture of any other spec, randomly initialised with the seed:
  the null model results are compared against (model id ``random:<SPEC>``);
* ``torchaudio:NAME`` — a torchaudio wav2vec 2.0 / HuBERT / WavLM bundle (downloads into the
  torch hub cache when online; offline, or with ``DEEPWIDE_OFFLINE=1``, a missing file is a
  one-line error naming where to put it);
* a **Hugging Face** model folder (``config.json`` + ``model.safetensors`` or
  ``pytorch_model.bin``) of ``HubertModel`` / ``Wav2Vec2Model`` / ``WavLMModel`` (see
  :mod:`deepwide.models.hf`; ``transformers`` is not needed);
* ``mfcc`` / ``mfcc-context`` — hand-crafted feature baselines with one "layer" (see
  :mod:`deepwide.models.features`);
* a **fairseq** HuBERT / wav2vec 2.0 checkpoint file (``.pt``), read without executing pickled
  code (see :mod:`deepwide.models.fairseq`).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from deepwide.config import atomic_write_bytes, atomic_write_json
from deepwide.errors import ConfigError, ModelError, UnknownNameError
from deepwide.models.config import EncoderConfig, FrontendConfig
from deepwide.models.presets import PRESETS
from deepwide.models.zoo import ZOO

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "deepwide-encoder"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
RANDOM_PREFIX = "random:"
TORCHAUDIO_PREFIX = "torchaudio:"
OFFLINE_ENV = "DEEPWIDE_OFFLINE"

_MAX_LISTED = 6


# ---------------------------------------------------------------------------- deepwide format
def save_checkpoint(
    model: Any, out_dir: str | Path, *, extra: dict[str, Any] | None = None, half: bool = False
) -> Path:
    """Write ``model`` as a deepwide checkpoint folder.

    ``model.safetensors`` holds the state dict; ``config.json`` holds the format tag, the
    architecture, ``model_id``, the weights hash, the parameter count and ``extra`` (any
    JSON-able provenance, e.g. the distillation config). Both files are written atomically
    (temporary name + rename), weights first and ``config.json`` last, so a folder with a
    ``config.json`` is complete; the hash is checked on load.

    Args:
        model: an :class:`~deepwide.models.encoder.Encoder`.
        out_dir: folder to create or overwrite.
        extra: JSON-able metadata stored under ``"extra"``.
        half: store floating-point weights as float16 (half the size). The model's own
            weights are rounded to float16 in place first, so the recorded hash matches what
            :func:`load_checkpoint` rebuilds (float16 loaded into float32 parameters).

    Returns:
        The folder.
    """
    from safetensors.torch import save as safetensors_save

    from deepwide import __version__

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / CONFIG_FILE).unlink(missing_ok=True)  # a half-rewritten folder is then never "complete"
    if half:
        import torch

        with torch.no_grad():
            for v in model.state_dict().values():
                if v.is_floating_point():
                    v.copy_(v.half().to(v.dtype))
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    weights_hash = model.weights_hash()
    atomic_write_bytes(out / WEIGHTS_FILE, safetensors_save(state, metadata={"format": "pt"}))
    atomic_write_json(
        out / CONFIG_FILE,
        {
            "format": CHECKPOINT_FORMAT,
            "format_version": FORMAT_VERSION,
            "model_id": model.model_id,
            "config": model.config_dict(),
            "weights_hash": weights_hash,
            "num_params": model.num_params(),
            "deepwide_version": __version__,
            "extra": dict(extra or {}),
        },
    )
    log.info("saved %s (%s, %d params) to %s", model.model_id, weights_hash, model.num_params(), out)
    return out


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise _broken_json(path, exc) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelError(f"cannot read {path}: {exc}; the checkpoint is incomplete or corrupt") from None
    if not isinstance(data, dict):
        raise ModelError(f"{path} does not hold a JSON object; it is not a model config")
    return data


def _broken_json(path: Path, exc: json.JSONDecodeError) -> ModelError:
    return ModelError(
        f"{path} is broken JSON at line {exc.lineno} column {exc.colno} ({exc.msg}); "
        f"the checkpoint is incomplete or corrupt — fix the file or save the model again"
    )


def is_deepwide_checkpoint(path: str | Path) -> bool:
    """True if ``path`` is a folder whose ``config.json`` carries the deepwide format tag."""
    cfg = Path(path) / CONFIG_FILE
    if not cfg.is_file():
        return False
    try:
        return json.loads(cfg.read_text(encoding="utf-8")).get("format") == CHECKPOINT_FORMAT
    except (OSError, json.JSONDecodeError, AttributeError):
        return False


def read_checkpoint_info(path: str | Path) -> dict[str, Any]:
    """The parsed ``config.json`` of a deepwide checkpoint, with ``config`` as an EncoderConfig.

    Raises:
        ModelError: not a deepwide checkpoint, or an unreadable / invalid config.
    """
    folder = Path(path)
    info = _read_json(folder / CONFIG_FILE)
    if info.get("format") != CHECKPOINT_FORMAT:
        raise ModelError(f"{folder} is not a deepwide checkpoint (config.json lacks format {CHECKPOINT_FORMAT!r})")
    version = info.get("format_version", 0)
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise ModelError(
            f"{folder / CONFIG_FILE} holds format_version {version!r}, which is not a version number; "
            f"the checkpoint is corrupt or was edited — save it again"
        )
    if version > FORMAT_VERSION:
        raise ModelError(f"{folder} was written by a newer deepwide (format_version {version}); upgrade deepwide")
    if not isinstance(info.get("config"), dict):
        raise ModelError(f"{folder / CONFIG_FILE} holds no encoder config (a JSON object under \"config\"); "
                         f"the checkpoint is corrupt — save it again")
    try:
        info["config"] = EncoderConfig.from_dict(info["config"], where=f"{folder / CONFIG_FILE}")
    except (KeyError, TypeError, ValueError, ConfigError) as exc:
        raise ModelError(f"{folder / CONFIG_FILE} holds no valid encoder config: {exc}") from None
    return info


def load_checkpoint(path: str | Path, *, model_id: str | None = None, device: str = "cpu") -> Any:
    """Load a deepwide checkpoint folder (weights hash verified).

    Args:
        path: the folder written by :func:`save_checkpoint`.
        model_id: name to give the model; default: the stored ``model_id``.
        device: torch device string.

    Returns:
        The :class:`~deepwide.models.encoder.Encoder`, in eval mode.
    """
    from safetensors.torch import load_file

    from deepwide.models.encoder import Encoder

    folder = Path(path)
    info = read_checkpoint_info(folder)
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise ModelError(f"{folder} has no {WEIGHTS_FILE}; the checkpoint is incomplete — save it again")
    try:
        state = load_file(str(weights))
    except Exception as exc:  # safetensors raises its own error types
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise ModelError(f"cannot read {weights}: {reason}; the file is corrupt — save it again") from None
    model = Encoder(info["config"], model_id=model_id or info.get("model_id") or folder.name)
    load_state_into(model, state, source=str(weights))
    expected = info.get("weights_hash")
    if expected and model.weights_hash() != expected:
        raise ModelError(
            f"{weights} does not match the weights hash in {folder / CONFIG_FILE}; "
            f"the checkpoint is corrupt or was modified — save it again"
        )
    return _place(model, device)


def load_state_into(model: Any, state: Mapping[str, Any], *, source: str) -> None:
    """Load ``state`` into ``model`` strictly; a mismatch raises one line naming the keys.

    Raises:
        ModelError: missing or unexpected keys, or tensors of the wrong shape.
    """
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [
        f"{k} {tuple(state[k].shape)} != {tuple(expected[k].shape)}"
        for k in sorted(set(expected) & set(state))
        if tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    if missing or unexpected or shapes:
        parts = []
        for label, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes)):
            if items:
                more = f" (+{len(items) - _MAX_LISTED} more)" if len(items) > _MAX_LISTED else ""
                parts.append(f"{label}: {', '.join(items[:_MAX_LISTED])}{more}")
        raise ModelError(
            f"{source} does not fit the {model.config.describe()} architecture — {'; '.join(parts)}; "
            f"check that the checkpoint and its config belong together"
        )
    model.load_state_dict(dict(state), strict=True)


def rename_weight_norm(state: dict[str, Any]) -> dict[str, Any]:
    """Map legacy ``weight_g`` / ``weight_v`` keys to ``parametrizations.weight.original0/1``."""
    out = {}
    for key, value in state.items():
        if key.endswith(".weight_g"):
            key = key[: -len("weight_g")] + "parametrizations.weight.original0"
        elif key.endswith(".weight_v"):
            key = key[: -len("weight_v")] + "parametrizations.weight.original1"
        out[key] = value
    return out


def _place(model: Any, device: str) -> Any:
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ModelError(f"invalid device {device!r}; use cpu, cuda or cuda:N") from exc
    return model.to(dev).eval()


# ---------------------------------------------------------------------------- torchaudio bundles
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
    bundle = _bundle(name)
    p = bundle._params
    frontend = FrontendConfig(
        kind="cnn",
        conv_layers=tuple(tuple(c) for c in (p["extractor_conv_layer_config"] or FrontendConfig().conv_layers)),
        norm=p["extractor_mode"],
        conv_bias=bool(p["extractor_conv_bias"]),
        normalize_waveform=bool(getattr(bundle, "_normalize_waveform", False)),
    )
    arch = "wavlm" if bundle._model_type == "WavLM" else ("hubert" if name.startswith("HUBERT") else "wav2vec2")
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
    path = _bundle(name)._path
    return path if path.startswith("https") else f"https://download.pytorch.org/torchaudio/models/{path}"


def bundle_cache_path(name: str) -> Path:
    """Where ``torch.hub`` caches the weights of bundle ``name`` (``<hub dir>/checkpoints/<file>``)."""
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(bundle_url(name))


def _offline() -> bool:
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def load_torchaudio_bundle(name: str, *, device: str = "cpu") -> Any:
    """Load torchaudio bundle ``name`` as an :class:`Encoder` (model id ``torchaudio:NAME``).

    The weights come from the torch hub cache; when they are missing they are downloaded,
    unless ``DEEPWIDE_OFFLINE=1`` is set or the download fails — then a one-line
    :class:`ModelError` says which file to put where.
    """
    import torch
    import torch.hub

    from deepwide.models.encoder import Encoder

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
    from deepwide.models.torchfile import load_torch_file

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
    return _place(model, device)


# ---------------------------------------------------------------------------- spec resolution
def _spec_path(spec: str) -> Path | None:
    path = Path(spec).expanduser()
    if path.exists():
        return path
    if os.sep in spec or "/" in spec or path.suffix in {".pt", ".pth", ".json", ".safetensors", ".bin"}:
        raise ModelError(f"model path {spec} does not exist; check the path")
    return None


def _classify_path(path: Path) -> str:
    if path.is_file():
        return "fairseq"
    config = path / CONFIG_FILE
    if config.is_file():
        _read_json(config)  # broken JSON is named as such, not as "neither … nor …"
    if is_deepwide_checkpoint(path):
        return "deepwide"
    from deepwide.models.hf import is_hf_dir

    if is_hf_dir(path):
        return "hf"
    raise ModelError(
        f"folder {path} is neither a deepwide checkpoint ({CONFIG_FILE} with format "
        f"{CHECKPOINT_FORMAT!r} + {WEIGHTS_FILE}) nor a Hugging Face HubertModel/Wav2Vec2Model/"
        f"WavLMModel folder ({CONFIG_FILE} with model_type + weights)"
    )


def _unknown(spec: str) -> UnknownNameError:
    return UnknownNameError(
        f"unknown model {spec!r}; valid: a preset ({', '.join(PRESETS.names())}), a bundled "
        f"checkpoint ({', '.join(ZOO.names())}), torchaudio:NAME (`deepwide models list`), "
        f"random:SPEC, or the path of a deepwide checkpoint, Hugging Face model folder or fairseq .pt"
    )


def resolve_config(spec: str) -> EncoderConfig:
    """The architecture of any spec, without loading weights (fairseq files are read).

    Raises:
        UnknownNameError: an unknown name (the message lists the valid forms).
        ModelError: a path that is not a model, or a bundled checkpoint that is missing.
    """
    spec = spec.strip()
    if spec.startswith(RANDOM_PREFIX):
        return resolve_config(spec[len(RANDOM_PREFIX):])
    if spec.startswith(TORCHAUDIO_PREFIX):
        return bundle_config(spec[len(TORCHAUDIO_PREFIX):])
    if spec in ZOO:
        return read_checkpoint_info(ZOO.get(spec)())["config"]
    if spec in PRESETS:
        return PRESETS.get(spec)
    path = _spec_path(spec)
    if path is None:
        raise _unknown(spec)
    kind = _classify_path(path)
    if kind == "deepwide":
        return read_checkpoint_info(path)["config"]
    if kind == "hf":
        from deepwide.models.hf import hf_config

        return hf_config(path)
    from deepwide.models.fairseq import read_fairseq

    return read_fairseq(path)[0]


def load_model(spec: str, *, seed: int = 0, device: str = "cpu") -> Any:
    """Load (or, for presets and ``random:``, build) the encoder named by ``spec``.

    Args:
        spec: see the module docstring.
        seed: initialisation seed of presets and ``random:`` twins (same seed, same weights).
        device: torch device string.

    Returns:
        An :class:`~deepwide.models.encoder.Encoder` in eval mode on ``device``.

    Raises:
        UnknownNameError: an unknown name (valid ones are listed).
        ModelError: unreadable or mismatched checkpoints (the keys are named), missing
            bundled/cached files (the message says how to get them).
    """
    from deepwide.models.encoder import build_encoder

    spec = spec.strip()
    if spec.startswith(RANDOM_PREFIX):
        config = resolve_config(spec[len(RANDOM_PREFIX):])
        log.info("%s: random initialisation (seed %d) of %s", spec, seed, config.describe())
        return _place(build_encoder(config, seed=seed, model_id=spec), device)
    if spec.startswith(TORCHAUDIO_PREFIX):
        return load_torchaudio_bundle(spec[len(TORCHAUDIO_PREFIX):], device=device)
    from deepwide.models.features import FEATURE_MODELS, load_feature_model

    if spec in FEATURE_MODELS:
        return _place(load_feature_model(spec), device)
    if spec in ZOO:
        return load_checkpoint(ZOO.get(spec)(), model_id=spec, device=device)
    if spec in PRESETS:
        model_id = RANDOM_PREFIX + spec
        log.info("preset %s has no weights: random initialisation (seed %d), model id %s", spec, seed, model_id)
        return _place(build_encoder(PRESETS.get(spec), seed=seed, model_id=model_id), device)
    path = _spec_path(spec)
    if path is None:
        raise _unknown(spec)
    kind = _classify_path(path)
    if kind == "deepwide":
        return load_checkpoint(path, device=device)
    if kind == "hf":
        from deepwide.models.hf import load_hf

        return _place(load_hf(path), device)
    from deepwide.models.fairseq import load_fairseq

    return _place(load_fairseq(path), device)


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
    if include_torchaudio:
        for name in sorted(torchaudio_bundles()):
            spec = TORCHAUDIO_PREFIX + name
            cached = "cached" if bundle_cache_path(name).is_file() else "downloads on first use"
            rows.append(("torchaudio", spec, f"{bundle_config(name).describe()}  ({cached})"))
    rows.append(("form", "random:SPEC", "the architecture of SPEC, randomly initialised with --seed"))
    rows.append(("form", "PATH", "deepwide checkpoint folder, Hugging Face model folder, or fairseq .pt"))
    return rows
