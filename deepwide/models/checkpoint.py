"""The deepwide checkpoint format: a folder of ``config.json`` + ``model.safetensors``.

Written by :func:`save_checkpoint` (distillation, teacher pre-training, the bundled
``tiny-teacher``); ``config.json`` carries the format tag, the architecture, the model id, the
weights hash (checked on load), the parameter count and free-form provenance.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepwide.config import atomic_write_bytes, atomic_write_json
from deepwide.errors import ConfigError, ModelError
from deepwide.models.config import EncoderConfig
from deepwide.models.weights import load_state_into, place

if TYPE_CHECKING:
    from deepwide.models.encoder import Encoder

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "deepwide-encoder"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


def save_checkpoint(
    model: Encoder, out_dir: str | Path, *, extra: dict[str, Any] | None = None, half: bool = False
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


def read_config_json(path: Path) -> dict[str, Any]:
    """The JSON object in ``path`` (a ``config.json``); unreadable or broken JSON is one ModelError line."""
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
    info = read_config_json(folder / CONFIG_FILE)
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


def stored_model_id(folder: str | Path, info: dict[str, Any]) -> str:
    """The id the checkpoint in ``folder`` loads under: its recorded ``model_id``, else the
    folder name (``info`` is :func:`read_checkpoint_info` of it)."""
    return str(info.get("model_id") or Path(folder).name)


def load_checkpoint(path: str | Path, *, model_id: str | None = None, device: str = "cpu") -> Encoder:
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
    model = Encoder(info["config"], model_id=model_id or stored_model_id(folder, info))
    load_state_into(model, state, source=str(weights))
    expected = info.get("weights_hash")
    if expected and model.weights_hash() != expected:
        raise ModelError(
            f"{weights} does not match the weights hash in {folder / CONFIG_FILE}; "
            f"the checkpoint is corrupt or was modified — save it again"
        )
    return place(model, device)
