"""What a pre-training run keeps on disk: ``state.pt``, ``pretrain_config.json``, the record.

``state.pt`` holds the encoder, and inside an iteration also the pre-training model, the
optimiser, the data generator's and torch's RNG states, the k-means labels and their quality:
everything ``--resume`` needs to continue a killed run to the very weights of an uninterrupted
one. It is written atomically and read weights-only (:mod:`deepwide.training`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepwide.config import config_to_dict
from deepwide.errors import ConfigError
from deepwide.models.pretraining.config import PretrainConfig
from deepwide.models.torchfile import CorruptFileError, numpy_array_globals
from deepwide.training import atomic_torch_save, check_fields, generator_state, load_checkpoint

log = logging.getLogger(__name__)

#: Format tag and version of ``state.pt`` (version 2: weights-only-loadable, labels as tensors).
STATE_FORMAT = "deepwide-pretrain-state"
STATE_VERSION = 2

#: Fields of every state, and those of a state saved inside an iteration (with their types).
STATE_FIELDS: dict[str, type] = {"key": str, "iteration": int, "step": int, "encoder": dict}
ITERATION_FIELDS: dict[str, type] = {"model": dict, "optimizer": dict, "rng": dict, "torch_rng": torch.Tensor,
                                     "labels": list, "quality": dict}


def save_state(path: Path, *, key: str, iteration: int, step: int, encoder: Any, model: torch.nn.Module | None = None,
               opt: torch.optim.Optimizer | None = None, rng: np.random.Generator | None = None,
               labels: list[np.ndarray] | None = None, quality: dict[str, float] | None = None) -> None:
    """Write ``state.pt``: only tensors, plain containers, numbers and strings (weights-only).

    Args:
        path: the ``state.pt``.
        key: the run's key (config, seed and corpus hash): a resume must match it.
        iteration: completed iterations; step: steps into the current one.
        encoder: the encoder (its weights are always saved).
        model, opt, rng, labels, quality: the current iteration's pre-training model, optimiser,
            data generator, k-means labels (per utterance (T_i,) int64) and their quality;
            ``model=None`` between iterations (then the others are not saved).
    """
    payload = {
        "format": STATE_FORMAT,
        "format_version": STATE_VERSION,
        "key": key,
        "iteration": iteration,
        "step": step,
        "encoder": encoder.state_dict(),
    }
    if model is not None:
        payload.update(
            model=model.state_dict(),
            optimizer=opt.state_dict(),
            rng=generator_state(rng),  # {"bit_generator": "PCG64", "state": {ints}, ...}
            torch_rng=torch.get_rng_state(),
            labels=[torch.from_numpy(np.ascontiguousarray(lab, dtype=np.int64)) for lab in labels],
            quality={k: float(v) for k, v in quality.items()},
        )
    atomic_torch_save(payload, path)


def load_state(path: str | Path, *, hint: str) -> dict[str, Any]:
    """Read a pre-training ``state.pt`` without unpickling code, checking its layout.

    Version-2 states hold tensors, plain containers, numbers and strings only; older states
    (no ``format`` tag) also hold numeric numpy arrays (the k-means labels), which are read
    through checked stand-ins for numpy's reconstructors (:mod:`deepwide.models.torchfile`)
    and converted — nothing else a file names is ever built.

    Args:
        path: the ``state.pt``.
        hint: what to do if it cannot be used, appended to the one-line error.

    Returns:
        the state; ``labels`` (when present) as a list of (T_i,) int64 numpy arrays.

    Raises:
        UnsafeFileError: the file holds code or objects outside the allow-list (nothing ran).
        CorruptFileError: truncated, not a torch file, or not a pre-training state.
    """
    p = Path(path)
    state = load_checkpoint(p, what="pre-training state", hint=hint, allow=numpy_array_globals())

    def bad(what: str) -> CorruptFileError:
        return CorruptFileError(f"{p} is not a deepwide pre-training state ({what}); {hint}")

    version = state.get("format_version", 1)
    if state.get("format", STATE_FORMAT) != STATE_FORMAT or isinstance(version, bool) or not isinstance(version, int):
        raise bad(f"format {state.get('format')!r}, version {version!r}")
    if version > STATE_VERSION:
        raise CorruptFileError(f"{p} was written by a newer deepwide (state format {version}); upgrade deepwide")
    check_fields(state, dict(STATE_FIELDS, **(ITERATION_FIELDS if "model" in state else {})), bad)
    if "model" in state:
        labels = []
        for lab in state["labels"]:
            arr = lab.numpy() if isinstance(lab, torch.Tensor) else lab
            if not isinstance(arr, np.ndarray) or arr.dtype != np.int64 or arr.ndim != 1:
                raise bad("its k-means labels are not 1-D int64 arrays")
            labels.append(arr)
        state["labels"] = labels
        if version < STATE_VERSION:
            log.info("read %s, a state written by an older deepwide (its numpy labels converted)", p)
    return state


def load_encoder(encoder: Any, state: dict[str, Any], path: Path) -> None:
    """The state's encoder weights into ``encoder``; a mismatch is a one-line error."""
    from deepwide.models.loading import load_state_into

    weights = state["encoder"]
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in weights.items()):
        raise CorruptFileError(f"{path} is not a deepwide pre-training state (its encoder holds non-tensors); "
                               f"delete it to restart the run, or choose another --out")
    load_state_into(encoder, weights, source=f"{path} (encoder)")


def read_run_info(path: Path) -> dict[str, Any]:
    """``pretrain_config.json`` of a run, checked (config dict and integer seed)."""
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}; rerun `deepwide teacher pretrain` into a fresh --out") from None
    if not isinstance(info, dict) or not isinstance(info.get("config"), dict) or type(info.get("seed")) is not int:
        raise ConfigError(f"{path} holds no run record (config and seed); rerun `deepwide teacher pretrain` "
                          f"into a fresh --out")
    return info


def recipe_cut(info: dict[str, Any], cfg: PretrainConfig, iterations: int) -> tuple[dict[str, Any], PretrainConfig]:
    """The run's record as if its recipe had stopped after ``iterations`` iterations.

    Iteration k depends only on the steps of iterations ≤ k (its learning-rate schedule spans
    its own steps; data order, masks and k-means are seeded per iteration), so the model after
    iteration k of a longer recipe *is* the final model of the recipe cut there — a test checks it.
    """
    cut = replace(cfg, steps=cfg.steps[:iterations], iter_layers=cfg.iter_layers[:iterations - 1])
    return {**info, "config": config_to_dict(cut)}, cut


def run_extra(info: dict[str, Any], cfg: PretrainConfig, iteration: int, step: int) -> dict[str, Any]:
    """What a teacher checkpoint records of its run (the same for the final model and an export).

    Args:
        info: the run's ``pretrain_config.json`` (config, seed, corpus id, manifest hash).
        iteration, step: where the weights come from, as saved in ``state.pt`` (completed
            iterations, steps into the current one).
    """
    return {"pretrain": info, "iteration": iteration + (1 if step else 0), "step_in_iteration": step,
            "total_steps_done": sum(cfg.steps[:iteration]) + step, "total_steps_planned": sum(cfg.steps)}
