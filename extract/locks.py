"""Writer locks: one writer per shard, and a writer without ``--shard`` excludes all others.

A lock is a JSON file ``.deepwide/locks/{all|shard-K}.json`` holding the writer's pid, host and
process start time, created with ``O_EXCL``. A lock whose process is gone (same host: no such
pid, or a pid reused by a process that started later) is stale and taken over with a warning;
a lock held from another host cannot be checked and is respected — the message names the file
to delete if that writer is dead. Every acquisition runs under a host-wide ``flock`` so two
writers never both take over the same stale lock.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import Any

from deepwide.errors import StoreError
from deepwide.locks import file_lock, pid_alive
from deepwide.store import bookkeeping_dir

log = logging.getLogger(__name__)


def _start_time(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot (Linux ``/proc``), or None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def _holder_alive(info: dict[str, Any]) -> bool:
    if info.get("host") != socket.gethostname():
        return True
    pid = int(info.get("pid", -1))
    if pid <= 0 or not pid_alive(pid):
        return False
    started = info.get("start")
    return started is None or _start_time(pid) in (None, started)


class WriterLock:
    """Exclusive right to write a store (``shard=None``) or one shard of it.

    Use as a context manager; :meth:`acquire` raises :class:`StoreError` when another live
    writer holds a conflicting lock.
    """

    def __init__(self, store: str | Path, shard: int | None) -> None:
        self.dir = bookkeeping_dir(store) / "locks"
        self.store = str(store)
        self.shard = shard
        self.path = self.dir / ("all.json" if shard is None else f"shard-{shard}.json")
        self._held = False

    def _describe(self, info: dict[str, Any]) -> str:
        return f"pid {info.get('pid')} on {info.get('host')}"

    def _live(self, path: Path) -> dict[str, Any] | None:
        """The holder of lock file ``path`` if it is alive; removes a stale one."""
        try:
            info = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            info = {}
        if info and _holder_alive(info):
            return info
        log.warning("removing stale writer lock %s (%s is gone)", path, self._describe(info))
        path.unlink(missing_ok=True)
        return None

    def acquire(self) -> None:
        """Take the lock or raise :class:`StoreError` naming the live writer."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with file_lock(self.dir / "guard.lock"):
            holder = self._live(self.path)
            if holder is not None:
                what = "the store" if self.shard is None else f"shard {self.shard}"
                raise StoreError(
                    f"{what} of {self.store} is being written by {self._describe(holder)}; wait for it "
                    f"or give each writer its own --shard k/n (if that writer is dead, delete {self.path})"
                )
            others = [self.dir / "all.json"] if self.shard is not None else sorted(self.dir.glob("shard-*.json"))
            for other in others:
                holder = self._live(other)
                if holder is not None:
                    raise StoreError(
                        f"{self.store} is being written by {self._describe(holder)} ({other.stem}); "
                        f"a second writer needs --shard k/n and must not overlap it "
                        f"(if that writer is dead, delete {other})"
                    )
            info = {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "start": _start_time(os.getpid()),
                "shard": self.shard,
                "since": time.strftime("%Y-%m-%dT%H:%M:%S"),
            }
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            with os.fdopen(fd, "w") as fh:
                json.dump(info, fh)
        self._held = True

    def release(self) -> None:
        """Drop the lock (no-op when not held)."""
        if self._held:
            self.path.unlink(missing_ok=True)
            self._held = False

    def __enter__(self) -> WriterLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
