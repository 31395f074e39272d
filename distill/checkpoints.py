"""Training checkpoints of a distillation run: write, find, read, restore, prune.

``OUT/checkpoints/step-XXXXXXXX.pt`` holds everything a resumed run needs to continue exactly:
model (student + heads), optimiser, scheduler, grad scaler, the RNG states of every rank, the
data position and the metrics window. ``latest.json`` names the newest; it is replaced only after
its checkpoint is complete. Writes are atomic and reads weights-only
(:mod:`deepwide.training`), so a kill at any moment leaves the last complete checkpoint in
place, and a checkpoint that holds code is refused before anything in it runs.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch

from deepwide import __version__
from deepwide.config import atomic_write_text
from deepwide.distill.config import DistillConfig
from deepwide.distill.distributed import DistEnv, barrier, gather_objects
from deepwide.distill.metrics import MetricsWindow
from deepwide.distill.student import DistillModel
from deepwide.errors import ModelError
from deepwide.models.torchfile import CorruptFileError, UnsafeFileError
from deepwide.training import (
    atomic_torch_save,
    check_fields,
    load_checkpoint,
    remove_stale_temporaries,
    rng_state,
    seed_everything,
    set_rng_state,
)

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
LATEST = "latest.json"

#: What every training checkpoint holds (:func:`save_training_state`), and the type of each.
STATE_FIELDS: dict[str, type] = {"step": int, "model": dict, "optimizer": dict, "scheduler": dict,
                                 "scaler": dict, "rng": list, "data": dict, "window": dict}


def latest_checkpoint(out: Path) -> Path | None:
    """The newest complete training checkpoint of run folder ``out`` (``None`` if none).

    Reads ``checkpoints/latest.json``; if it is missing or names a file that is gone, falls back
    to the newest ``step-*.pt`` that loads.
    """
    folder = out / CHECKPOINT_DIR
    pointer = folder / LATEST
    if pointer.is_file():
        try:
            name = json.loads(pointer.read_text())["file"]
            if (folder / name).is_file():
                return folder / name
        except (json.JSONDecodeError, KeyError, TypeError):
            log.warning("ignoring unreadable %s", pointer)
    candidates = sorted(folder.glob("step-*.pt"), reverse=True)
    return candidates[0] if candidates else None


def load_training_state(path: str | Path, *, hint: str = "") -> dict[str, Any]:
    """Read a training checkpoint weights-only (no code in it can run) and check its layout.

    Args:
        path: a ``checkpoints/step-XXXXXXXX.pt``.
        hint: what to do if it cannot be used, appended to the one-line error.

    Raises:
        UnsafeFileError: the file holds pickled code or objects other than plain data.
        CorruptFileError: truncated, unreadable, or not a deepwide training checkpoint.
    """
    p = Path(path)
    hint = hint or f"delete {p} to resume from the checkpoint before it"
    state = load_checkpoint(p, what="training checkpoint", hint=hint,
                            unsafe_hint=f"do not trust this run folder; delete {p} to resume "
                                        f"from the checkpoint before it, or start over in another --out")

    def bad(what: str) -> CorruptFileError:
        return CorruptFileError(f"{p} is not a deepwide training checkpoint ({what}); {hint}")

    check_fields(state, STATE_FIELDS, bad)
    if type(state["data"].get("next_batch")) is not int or not state["rng"]:
        raise bad("its data position or RNG states are malformed")
    return state


def load_resumable_state(out: Path, *, set_aside: bool = False) -> tuple[Path, dict[str, Any]] | None:
    """The newest training checkpoint of run folder ``out`` that loads, and its state.

    ``latest.json``'s file is tried first, then every ``step-*.pt`` from the newest down: a
    truncated or corrupt one is skipped with a one-line warning (and, with ``set_aside``,
    renamed to ``<name>.corrupt`` so it is never tried or kept again).

    Returns:
        ``(path, state)``, or ``None`` when the run has no checkpoint at all.

    Raises:
        UnsafeFileError: a checkpoint holds pickled code or other objects (never skipped:
            someone put it there).
        ModelError: there are checkpoints but none of them loads.
    """
    folder = out / CHECKPOINT_DIR
    first = latest_checkpoint(out)
    candidates = ([first] if first is not None else []) + [
        p for p in sorted(folder.glob("step-*.pt"), reverse=True) if p != first
    ]
    skipped = []
    for path in candidates:
        try:
            return path, load_training_state(path, hint="trying the checkpoint before it")
        except UnsafeFileError:
            raise
        except CorruptFileError as exc:
            log.warning("%s", exc)
            skipped.append(path.name)
            if set_aside and path.is_file():
                path.replace(path.with_name(path.name + ".corrupt"))
    if skipped:
        raise ModelError(
            f"no checkpoint in {folder} can be read ({', '.join(skipped)}: truncated or corrupt); "
            f"delete {folder} and rerun with --resume to start the run over, or choose another --out"
        )
    return None


def clear_torn_writes(out: Path) -> None:
    """Remove the temporary files of checkpoint writes that a kill cut short."""
    remove_stale_temporaries(out / CHECKPOINT_DIR)


def save_training_state(
    out: Path,
    env: DistEnv,
    config: DistillConfig,
    step: int,
    next_batch: int,
    model: DistillModel,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: Any,
    window: MetricsWindow,
) -> Path:
    """Write ``checkpoints/step-XXXXXXXX.pt`` (rank 0) and point ``latest.json`` at it.

    Every rank takes part (its RNG states are gathered); only rank 0 writes.

    Returns:
        the checkpoint's path (on every rank).
    """
    rngs = gather_objects(rng_state(), env)
    folder = out / CHECKPOINT_DIR
    path = folder / f"step-{step:08d}.pt"
    if env.is_main:
        state = {
            "step": step,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),
            "rng": rngs,
            "data": {"next_batch": next_batch, "world_size": env.world_size},
            "window": window.state_dict(),
            "deepwide_version": __version__,
        }
        atomic_torch_save(state, path)
        atomic_write_text(folder / LATEST, json.dumps({"file": path.name, "step": step}) + "\n")
        prune_checkpoints(folder, config.keep_checkpoints)
        log.debug("checkpoint %s", path)
    barrier(env)
    return path


def restore_training_state(
    resumed: tuple[Path, dict[str, Any]],
    env: DistEnv,
    config: DistillConfig,
    model: DistillModel,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: Any,
    window: MetricsWindow,
) -> tuple[int, int]:
    """Load a training checkpoint (from :func:`load_resumable_state`) into everything.

    RNG states are restored per rank; resumed on another number of processes, the streams
    restart from a seed derived from the step (with a warning).

    Returns:
        ``(step, next global batch)``.

    Raises:
        ModelError: the checkpoint does not fit this run's model or optimiser (one line).
    """
    path, state = resumed
    step, next_batch = int(state["step"]), int(state["data"]["next_batch"])
    rngs = state["rng"]
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        window.load_state_dict(state["window"])
        if len(rngs) == env.world_size:
            set_rng_state(rngs[env.rank])
    except (RuntimeError, ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
        reason = (str(exc).strip().splitlines() or [""])[0][:160]
        raise ModelError(
            f"{path} does not fit this run ({type(exc).__name__}: {reason}); delete it to resume from the "
            f"checkpoint before it, or choose another --out"
        ) from None
    if len(rngs) != env.world_size:
        log.warning("resuming on %d processes a run saved on %d: RNG streams restart", env.world_size, len(rngs))
        seed_everything(config.seed + 7919 * step + env.rank)
    return step, next_batch


def prune_checkpoints(folder: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` ``step-*.pt`` files of ``folder``."""
    for old in sorted(folder.glob("step-*.pt"))[:-keep]:
        old.unlink(missing_ok=True)
