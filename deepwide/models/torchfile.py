"""Reading torch/pickle files a user may have been handed, without running code from them.

Every ``torch.load`` in deepwide goes through :func:`load_torch_file`: weights-only unpickling
(tensors, plain containers, numbers, strings, ``None``) plus an explicit, per-caller allow-list
of data-only types. A file that names anything else — a function to call, a class to build —
is refused before that object exists, so its ``__reduce__`` never runs. Problems become one
line: :class:`UnsafeFileError` (the file holds code or objects outside the allow-list) or
:class:`CorruptFileError` (truncated, not a torch file, or not the expected layout). Neither
repeats torch's own advice to turn the weights-only check off, which is the unsafe thing.

:func:`numpy_array_globals` reads plain numeric numpy arrays (as older deepwide pre-training
states hold) through *checked stand-ins* for numpy's reconstructors: only ``ndarray`` of a
numeric dtype can be built, and the array's bytes come from the file itself.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from deepwide.errors import ModelError

#: How torch's weights-only unpickler words a refusal (the group names what it refused).
_REFUSED = (
    re.compile(r"unsupported global:? (?:GLOBAL )?([\w.]+)", re.IGNORECASE),
    re.compile(r"unrecognized function (\S+)"),
    re.compile(r"allowlisted via `add_safe_globals`,? but got (.+?)\s*$", re.MULTILINE),
)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_MAX_REASON = 160


class UnsafeFileError(ModelError):
    """A torch/pickle file that holds code or objects outside the allow-list (never unpickled)."""


class CorruptFileError(ModelError):
    """A torch file that is truncated, unreadable or not laid out as expected."""


def _reason(exc: BaseException) -> str:
    """A short, one-line, safe description of why torch could not read a file."""
    text = _ANSI.sub("", str(exc))
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    # torch's weights-only message is several lines of advice; keep only the cause
    cause = [line for line in lines if line.startswith("WeightsUnpickler error:")]
    if cause:
        line = cause[0][len("WeightsUnpickler error:"):].strip()
    else:
        line = next((x for x in lines if "weights_only" not in x and "Weights only" not in x), "")
    line = line or type(exc).__name__
    if len(line) > _MAX_REASON:
        line = line[: _MAX_REASON - 3] + "..."
    return line if line.startswith(type(exc).__name__) else f"{type(exc).__name__}: {line}"


def refused_global(exc: BaseException) -> str | None:
    """The name of the global a weights-only load refused, or ``None`` if it refused none."""
    text = _ANSI.sub("", str(exc))
    for pattern in _REFUSED:
        found = pattern.search(text)
        if found:
            return found.group(1).strip(".")
    return None


def load_torch_file(path: str | Path, *, hint: str, allow: Sequence[Any] = (), unsafe_hint: str | None = None) -> Any:
    """``torch.load`` ``path`` onto the CPU, weights-only, with ``allow`` added to the allow-list.

    Args:
        path: the file.
        hint: what the user should do, appended to every error (e.g. "delete it and rerun").
        allow: extra globals for :func:`torch.serialization.safe_globals` (data-only types, or
            ``(checked_function, "module.name")`` stand-ins).
        unsafe_hint: what to do about a refused file, if not ``hint``.

    Returns:
        whatever the file holds (only tensors, containers, numbers, strings and ``allow``).

    Raises:
        UnsafeFileError: the file names a global outside the allow-list (nothing was run).
        CorruptFileError: the file is missing, truncated or not a torch file.
    """
    import torch

    p = Path(path)
    try:
        with torch.serialization.safe_globals(list(allow)):
            return torch.load(str(p), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        what = refused_global(exc)
        if what is not None:
            raise UnsafeFileError(
                f"{p} holds pickled code or objects outside deepwide's allow-list of plain data "
                f"({what}); refusing to unpickle it — {unsafe_hint or hint}"
            ) from None
        raise CorruptFileError(f"{p} is truncated or not a torch file ({_reason(exc)}); {hint}") from None
    except (RuntimeError, EOFError, OSError, ValueError, TypeError, KeyError, IndexError,
            AttributeError, MemoryError, OverflowError, UnicodeDecodeError) as exc:
        raise CorruptFileError(f"{p} is truncated or not a torch file ({_reason(exc)}); {hint}") from None


# ------------------------------------------------------------------------ numpy arrays (checked)
#: numpy dtype codes an allow-listed array may have (no object, void, string or datetime dtypes).
NUMERIC_DTYPES = ("b1", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8")


def _checked_reconstruct(subtype: Any, shape: Any, dtype: Any) -> Any:
    """numpy's ``_reconstruct`` for plain, empty ``ndarray`` shells only (the data follows)."""
    import numpy as np

    if subtype is not np.ndarray or tuple(shape) != (0,):
        raise pickle.UnpicklingError(f"Unsupported global: GLOBAL numpy._reconstruct({getattr(subtype, '__name__', '?')})")
    return np.ndarray.__new__(np.ndarray, (0,), np.uint8)


def _checked_dtype(spec: Any, align: Any = False, copy: Any = True) -> Any:
    """``numpy.dtype`` for the numeric codes in :data:`NUMERIC_DTYPES` only."""
    import numpy as np

    if spec not in NUMERIC_DTYPES:
        raise pickle.UnpicklingError(f"Unsupported global: GLOBAL numpy.dtype({spec!r})")
    return np.dtype(spec, bool(align), bool(copy))


def _checked_bytes(*args: Any) -> bytes:
    """``bytes()`` with no argument (how protocol 2 pickles an empty byte string) only."""
    if args:
        raise pickle.UnpicklingError("Unsupported global: GLOBAL builtins.bytes with arguments")
    return b""


def numpy_array_globals() -> list[Any]:
    """The allow-list entries that read plain numeric numpy arrays (see the module docstring)."""
    import numpy as np

    allowed: list[Any] = [np.ndarray, (_checked_bytes, "builtins.bytes"), (_checked_dtype, "numpy.dtype")]
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed.append((_checked_reconstruct, f"{module}._reconstruct"))
    allowed += sorted({type(np.dtype(code)) for code in NUMERIC_DTYPES}, key=lambda t: t.__name__)
    return allowed
