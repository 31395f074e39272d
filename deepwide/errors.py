"""Error classes for mistakes a user can cause.

Every message says what is wrong *and* what to do about it; the CLI prints it on one line
and exits non-zero (a traceback only with ``-v``). Programming errors stay ordinary
exceptions and are never caught into these.
"""

from __future__ import annotations


class DeepwideError(Exception):
    """Base class: a user-caused error with a one-line, actionable message."""

    exit_code: int = 2


class ConfigError(DeepwideError):
    """An invalid option, config file or combination of settings."""


class UnknownNameError(DeepwideError):
    """A registry lookup missed (unknown task, corpus, model, measure …)."""


class AudioError(DeepwideError):
    """Missing, unreadable, empty, non-finite or wrongly sampled audio."""


class CorpusError(DeepwideError):
    """A missing corpus path, malformed split file or inconsistent manifest."""


class ModelError(DeepwideError):
    """An unknown model spec, or a checkpoint whose keys/shapes do not match."""


class StoreError(DeepwideError):
    """A feature store that is missing, incomplete, mismatched or locked by another writer."""


class TaskError(DeepwideError):
    """A probing/analysis task that the given store cannot serve (e.g. missing labels)."""


class DiskFullError(DeepwideError):
    """A write failed because the disk (or the user's quota) is full."""


def disk_full_state(folder: str | object, needed_bytes: int | None = None) -> str:
    """``the disk holding FOLDER is full (X MB free, about Y MB needed)``, without advice.

    Args:
        folder: the folder that was being written to.
        needed_bytes: bytes the failed write needed, when the caller knows.
    """
    import shutil
    from pathlib import Path

    p = Path(str(folder))
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        free = f"{_size(shutil.disk_usage(p).free)} free"
    except OSError:
        free = "free space unknown"
    need = f", about {_size(needed_bytes)} needed" if needed_bytes else ""
    return f"the disk holding {folder} is full ({free}{need})"


def disk_full_message(folder: str | object, needed_bytes: int | None = None) -> str:
    """:func:`disk_full_state` and what to do: free space or choose another folder, then rerun."""
    return f"{disk_full_state(folder, needed_bytes)}; free some space or choose another folder, then rerun"


def _size(n: float) -> str:
    return f"{n / 1e3:,.1f} kB" if n < 1e6 else f"{n / 1e6:,.1f} MB"


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` (an OSError, possibly wrapped) reports a full disk or exceeded quota."""
    import errno

    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return False
