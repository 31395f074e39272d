"""An :class:`Encoder` -> a Hugging Face model folder (``deepwide export --format hf``).

The folder holds ``config.json``, ``model.safetensors`` and ``preprocessor_config.json``, the
files ``transformers.HubertModel`` / ``Wav2Vec2Model`` / ``WavLMModel.from_pretrained`` and
``Wav2Vec2FeatureExtractor.from_pretrained`` read; its ``output_hidden_states`` equal
:meth:`Encoder.hidden_states`. The names and config keys come from :mod:`deepwide.models.hf`
(the tables its reader uses), so reading the folder back with
:func:`deepwide.models.hf.load_hf` gives the same weights. ``transformers`` is not needed to
write it.

Waveform normalisation (``normalize_waveform``) is not part of a Hugging Face model: it becomes
the feature extractor's ``do_normalize``. The one weight a deepwide model lacks,
``masked_spec_embed`` (the vector that Hugging Face's SpecAugment puts in masked frames when
fine-tuning), is written as Hugging Face initialises it, ``U[0, 1)``, from seed 0.

The folder is built in a hidden temporary sibling and renamed into place, so ``--out`` holds
either nothing or the whole folder.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepwide.errors import DiskFullError, ModelError, disk_full_message, is_disk_full
from deepwide.models.hf import PREPROCESSOR_FILE, to_hf_config, to_hf_preprocessor, to_hf_state

if TYPE_CHECKING:
    from deepwide.models.base import SpeechEncoder

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
#: Seed of the ``masked_spec_embed`` vector (deepwide models have none).
MASK_EMBED_SEED = 0


def export_hf(model: SpeechEncoder, out: str | Path) -> Path:
    """Write ``model`` as a Hugging Face folder at ``out``.

    Args:
        model: an :class:`~deepwide.models.encoder.Encoder` with a waveform CNN front-end.
        out: the folder to create; it must not exist or be an empty folder.

    Returns:
        ``out``.

    Raises:
        ModelError: ``model`` is not a HuBERT-family encoder or has a spectral front-end, or
            ``out`` exists and is not an empty folder; nothing is written.
        DiskFullError: the disk filled up (nothing is left behind).
    """
    from deepwide.models.encoder import Encoder

    name = getattr(model, "model_id", type(model).__name__)
    if not isinstance(model, Encoder):
        raise ModelError(f"{name} is not a HuBERT-family encoder, so it has no Hugging Face form to export")
    config = to_hf_config(model.config, name=name)
    config["dtype"] = str(next(model.parameters()).dtype).removeprefix("torch.")
    out = Path(out)
    _check_target(out)
    tensors = _hf_tensors(model)
    files = {
        CONFIG_FILE: json.dumps(config, indent=2, sort_keys=True) + "\n",
        PREPROCESSOR_FILE: json.dumps(to_hf_preprocessor(model.config.frontend), indent=2, sort_keys=True) + "\n",
    }
    try:
        _write_folder(out, tensors, files)
    except OSError as exc:
        if is_disk_full(exc):
            raise DiskFullError(disk_full_message(out.parent)) from exc
        raise ModelError(f"cannot write {out}: {exc}") from exc
    return out


def _hf_tensors(model: Any) -> dict[str, Any]:
    """The bare Hugging Face model's state dict of ``model``: CPU, contiguous, unshared copies
    (as safetensors requires), plus ``masked_spec_embed`` (D,)."""
    import torch

    param = next(model.parameters())
    tensors = {k: v.detach().to("cpu").contiguous().clone()
               for k, v in to_hf_state(model.state_dict(), model.config).items()}
    generator = torch.Generator().manual_seed(MASK_EMBED_SEED)
    tensors["masked_spec_embed"] = torch.rand(model.config.width, generator=generator).to(param.dtype)
    return tensors


def _check_target(out: Path) -> None:
    if out.exists() and not (out.is_dir() and not any(out.iterdir())):
        raise ModelError(f"{out} already exists and is not empty; remove it or choose another --out")


def _write_folder(out: Path, tensors: dict[str, Any], files: dict[str, str]) -> None:
    """Write the files into a temporary sibling of ``out``, fsync them, rename it to ``out``."""
    from safetensors.torch import save_file

    from deepwide.system import current_umask

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        os.chmod(tmp, 0o777 & ~current_umask())
        save_file(tensors, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        for file_name, text in files.items():
            (tmp / file_name).write_text(text, encoding="utf-8")
        for path in tmp.iterdir():
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())
            os.chmod(path, 0o666 & ~current_umask())
        try:
            os.rename(tmp, out)  # replaces an empty folder, never a full one
        except OSError as exc:
            if out.exists():
                raise ModelError(f"{out} already exists and is not empty; remove it or choose another --out") from exc
            raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
