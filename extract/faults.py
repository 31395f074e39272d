"""A fault-injection hook for the kill-and-resume tests.

``DEEPWIDE_TEST_KILL=POINT:N`` makes the process SIGKILL itself the N-th time it reaches
``fault_point(POINT)``. Points: ``create`` (temporary store written, not yet renamed),
``batch`` (a batch computed, before it is queued for writing), ``flush`` (chunks written,
progress not yet recorded), ``journal`` (progress recorded). Unset, it costs one dict lookup.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

ENV = "DEEPWIDE_TEST_KILL"
_counts: Counter[str] = Counter()


def fault_point(name: str) -> None:
    """SIGKILL this process if ``$DEEPWIDE_TEST_KILL`` is ``name:N`` and this is the N-th call."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    point, _, count = spec.partition(":")
    if point != name:
        return
    _counts[name] += 1
    if _counts[name] >= int(count or 1):
        os.kill(os.getpid(), signal.SIGKILL)
