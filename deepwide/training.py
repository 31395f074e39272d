"""Training plumbing shared by the teacher's pre-training and distillation.

One home (ARCHITECTURE.md, "one rule has one home") for what every training loop in deepwide
needs besides its model and loss:

* **learning-rate schedules** — :func:`linear_warmup_decay` (distillation: a ``LambdaLR``
  factor) and :func:`warmup_cosine_lr` (the teacher's pre-training: the rate itself);
* **atomic checkpoints** — :func:`atomic_torch_save` (temporary name, fsync, rename),
  :func:`remove_stale_temporaries` (what a kill mid-write leaves), and
  :func:`load_checkpoint` / :func:`check_fields` (weights-only loading through
  :func:`deepwide.models.torchfile.load_torch_file`, then a layout check, both one-line errors);
* **RNG state** — :func:`seed_everything`, :func:`rng_state` / :func:`set_rng_state` (Python,
  NumPy, torch and CUDA global generators) and :func:`generator_state` /
  :func:`set_generator_state` (an explicit ``numpy.random.Generator``), all as
  weights-only-loadable values;
* **the metrics log** — JSON lines: :func:`append_jsonl`, :func:`read_jsonl` (a torn last line,
  from a kill mid-append, is dropped with a warning; a bad line elsewhere is a one-line
  :class:`~deepwide.errors.ConfigError`) and :func:`rewrite_jsonl` (keep some records, drop a
  torn line, atomically).

torch is imported inside the functions that need it, so the JSON-lines helpers do not load it.
"""

from __future__ import annotations

import json
import logging
import math
import random
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from deepwide.config import atomic_target, atomic_write_text
from deepwide.errors import ConfigError

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------- LR schedules
def linear_warmup_decay(warmup_steps: int, total_steps: int) -> Callable[[int], float]:
    """Factor of the peak rate: linear warm-up over ``warmup_steps``, then linear decay to 0.

    Meant for :class:`torch.optim.lr_scheduler.LambdaLR` (which multiplies it by the peak).

    Args:
        warmup_steps: steps of warm-up (0: none); step ``s < warmup_steps`` gets
            ``(s + 1) / warmup_steps``.
        total_steps: the factor reaches 0 at this step.
    """

    def factor(step: int) -> float:
        if warmup_steps > 0 and step < warmup_steps:
            return (step + 1) / warmup_steps
        remaining = total_steps - step
        span = max(1, total_steps - warmup_steps)
        return max(0.0, remaining / span)

    return factor


def warmup_cosine_lr(step: int, total_steps: int, peak: float, warmup_steps: int, floor: float = 0.05) -> float:
    """The rate at ``step``: linear warm-up to ``peak``, then cosine decay to ``floor × peak``.

    Args:
        step: optimiser steps done (0-based).
        total_steps: the decay ends here (later steps stay at the floor).
        peak: the rate reached at the end of warm-up.
        warmup_steps: steps of warm-up (at least 1 is used).
        floor: the final rate as a fraction of ``peak``.
    """
    warm = max(1, warmup_steps)
    if step < warm:
        return peak * (step + 1) / warm
    t = (step - warm) / max(1, total_steps - warm)
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


# ----------------------------------------------------------------------------------- checkpoints
def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` to a temporary file in the same folder, fsync, then rename over ``path``.

    ``path`` holds either its old content or the whole new one, whatever happens mid-write;
    a kill (no clean-up runs) can leave the temporary file, which
    :func:`remove_stale_temporaries` clears.
    """
    import torch

    with atomic_target(path) as tmp, open(tmp, "wb") as fh:
        torch.save(obj, fh)


def remove_stale_temporaries(folder: str | Path, name: str = "*") -> list[Path]:
    """Delete the temporary files that atomic writes of ``folder/name`` left when killed.

    Args:
        folder: where the files are written.
        name: the final file name (a glob; ``*``: any).

    Returns:
        the files removed.
    """
    root = Path(folder)
    if not root.is_dir():
        return []
    stale = sorted(root.glob(f".{name}.*.tmp"))
    for path in stale:
        path.unlink(missing_ok=True)
    if stale:
        log.debug("removed %d temporary file(s) of writes cut short in %s", len(stale), root)
    return stale


def load_checkpoint(path: str | Path, *, what: str, hint: str, unsafe_hint: str | None = None,
                    allow: Sequence[Any] = ()) -> dict[str, Any]:
    """Read a training checkpoint weights-only (no code in it can run); it must hold a dict.

    Args:
        path: the file.
        what: what it should be, for the error ("training checkpoint", "pre-training state").
        hint: what to do if it cannot be used, appended to the one-line error.
        unsafe_hint: what to do about a file that holds code, if not ``hint``.
        allow: extra data-only globals (see :func:`deepwide.models.torchfile.load_torch_file`).

    Raises:
        UnsafeFileError: the file holds pickled code or objects outside the allow-list.
        CorruptFileError: truncated, not a torch file, or not a dict.
    """
    from deepwide.models.torchfile import CorruptFileError, load_torch_file

    p = Path(path)
    state = load_torch_file(p, hint=hint, allow=allow, unsafe_hint=unsafe_hint)
    if not isinstance(state, dict):
        raise CorruptFileError(f"{p} is not a deepwide {what} (it holds a {type(state).__name__}, not a dict); {hint}")
    return state


def check_fields(state: Mapping[str, Any], kinds: Mapping[str, type], bad: Callable[[str], Exception]) -> None:
    """Check that ``state[name]`` is a ``kind`` for every entry of ``kinds`` (an int is no bool).

    Args:
        state: a loaded checkpoint.
        kinds: field name → the type its value must have.
        bad: builds the error from a short reason ("'step' is str, not int").

    Raises:
        whatever ``bad`` returns, for the first field that is missing or of another type.
    """
    missing = [name for name in kinds if name not in state]
    if missing:
        raise bad(f"missing {', '.join(missing)}")
    for name, kind in kinds.items():
        value = state[name]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise bad(f"{name!r} is {type(value).__name__}, not {kind.__name__}")


# ----------------------------------------------------------------------------------- RNG state
def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators (CUDA's with torch's)."""
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """Python, NumPy, torch (and CUDA) global RNG states, as weights-only-loadable values."""
    import torch

    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Inverse of :func:`rng_state`."""
    import torch

    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def generator_state(rng: np.random.Generator) -> dict[str, Any]:
    """The state of an explicit NumPy generator (``{"bit_generator": "PCG64", "state": {ints}, …}``)."""
    return rng.bit_generator.state


def set_generator_state(rng: np.random.Generator, state: Mapping[str, Any]) -> None:
    """Inverse of :func:`generator_state` (``rng`` continues where the saved one stopped)."""
    rng.bit_generator.state = state


# ----------------------------------------------------------------------------------- metrics log
def append_jsonl(path: str | Path, record: Mapping[str, Any], *, sort_keys: bool = False) -> None:
    """Append ``record`` as one JSON line to ``path`` (created if missing) and flush it.

    A kill mid-append can leave a torn last line; :func:`read_jsonl` and :func:`rewrite_jsonl`
    drop it.
    """
    with Path(path).open("a") as fh:
        fh.write(json.dumps(record, sort_keys=sort_keys) + "\n")
        fh.flush()


def _is_object(record: Any) -> bool:
    return isinstance(record, dict)


def read_jsonl(path: str | Path, *, is_record: Callable[[Any], bool] = _is_object,
               what: str = "log record") -> list[tuple[str, dict[str, Any]]]:
    """``(line, record)`` for every non-blank line of a JSON-lines log, in order.

    A last line that is not a record (a kill mid-append) is dropped with a warning.

    Args:
        path: the log (missing: no lines).
        is_record: whether a parsed line is a record (default: any JSON object).
        what: what a line should be, for the error.

    Raises:
        ConfigError: a line other than the last is not a record.
    """
    p = Path(path)
    if not p.is_file():
        return []
    lines = p.read_text(encoding="utf-8", errors="replace").splitlines()
    filled = [i for i, line in enumerate(lines) if line.strip()]
    out = []
    for i in filled:
        try:
            record = json.loads(lines[i])
            if not is_record(record):
                raise ValueError(f"not a {what}")
        except ValueError:
            if i == filled[-1]:
                log.warning("dropping the torn last line of %s (a write cut short): %.60s", p, lines[i])
                continue
            raise ConfigError(f"line {i + 1} of {p} is not a {what}; fix or delete that line, then rerun") from None
        out.append((lines[i], record))
    return out


def rewrite_jsonl(path: str | Path, keep: Callable[[dict[str, Any]], bool] | None = None, *,
                  is_record: Callable[[Any], bool] = _is_object, what: str = "log record") -> None:
    """Rewrite a JSON-lines log atomically with the records ``keep`` accepts (default: all).

    A torn last line is dropped (see :func:`read_jsonl`) and every kept line ends in a newline,
    so the next :func:`append_jsonl` starts a line of its own. A missing log stays missing.

    Raises:
        ConfigError: a line other than the last is not a record.
    """
    p = Path(path)
    if not p.is_file():
        return
    kept = [line for line, record in read_jsonl(p, is_record=is_record, what=what) if keep is None or keep(record)]
    atomic_write_text(p, "".join(line + "\n" for line in kept))
