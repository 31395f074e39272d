"""Locks between processes on one host: an advisory file lock, and whether a pid is alive."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)


@contextlib.contextmanager
def file_lock(path: Path, *, waiting_message: str | None = None) -> Iterator[None]:
    """Exclusive advisory lock (POSIX ``flock``) on ``path`` for the duration of the block.

    The lock is tried without blocking first; when another process holds it,
    ``waiting_message`` (if given) is logged at INFO, then this waits. The file and its
    folder are created when missing. A no-op where ``fcntl`` does not exist (not POSIX).

    Args:
        path: the lock file.
        waiting_message: what to log when the lock is busy (e.g. what the holder is doing).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - non-POSIX
        yield
        return
    with open(path, "a+b") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if waiting_message is not None:
                log.info("%s", waiting_message)
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
