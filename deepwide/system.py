"""What this process may use of the machine: CPUs, torch threads; what the machine is."""

from __future__ import annotations

import os
import platform
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``'s first ``model name``; else platform's guess)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask on Linux, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux: /proc).

    ``os.umask`` can only be read by setting it, which briefly changes the mask for every
    thread of the process; this avoids that where it can.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)  # pragma: no cover - elsewhere: set and restore
    os.umask(mask)
    return mask


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run torch with ``n`` intra-op threads, then restore the previous count."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


#: set to 1 to leave OpenMP's wait policy as torch ships it (for benchmarks against that baseline)
KEEP_OPENMP_ENV = "DEEPWIDE_OPENMP_DEFAULTS"


#: set to 1 to leave glibc's malloc thresholds as they are (for benchmarks against that baseline)
KEEP_MALLOC_ENV = "DEEPWIDE_MALLOC_DEFAULTS"
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3  # glibc's mallopt parameters


def reuse_freed_memory(mmap_threshold: int = 1 << 30, trim_threshold: int = 1 << 31) -> bool:
    """Keep large freed blocks in the heap for reuse instead of handing them back to the OS.

    glibc serves blocks above its mmap threshold (at most 32 MiB by its dynamic rule) with a
    fresh ``mmap`` and unmaps them on free. A probe's solver allocates its ``(layers, frames,
    classes)`` logits and gradients (the teacher's phone probe: 13 × 25,000 × 40 float32, 52 MB,
    several per step) afresh at every L-BFGS
    step, so every step page-faults and zeroes them again: the teacher's phone probe took 10.6 M
    minor faults and 32–40 s of system time. With blocks up to ``mmap_threshold`` taken from
    the heap, and the heap trimmed only above ``trim_threshold`` free at its top, the same probe
    took 0.4 M faults and 3–4 s of system time, 3–16 % less wall time in two measurements
    (``benchmarks/malloc.py``, ``docs/benchmarks.md``). The price: memory freed during a run is
    kept by the process until it exits (peak resident memory +10 % there).

    Linux with glibc only (elsewhere nothing happens). A ``MALLOC_*`` setting of the user's is
    kept, and ``DEEPWIDE_MALLOC_DEFAULTS=1`` leaves malloc alone.

    Returns:
        Whether the thresholds were set here.
    """
    if os.environ.get(KEEP_MALLOC_ENV) == "1" or any(k.startswith("MALLOC_") for k in os.environ):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, int(mmap_threshold)) and mallopt(_M_TRIM_THRESHOLD, int(trim_threshold))
                and mallopt(_M_TOP_PAD, 64 << 20))


def _cpu_times() -> tuple[int, int] | None:
    """(busy, total) jiffies summed over every CPU since boot (``/proc/stat``), or None."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu" or len(fields) < 8:
        return None
    user, nice, system, idle, iowait, irq, softirq = (int(x) for x in fields[1:8])
    busy = user + nice + system + irq + softirq
    return busy, busy + idle + iowait


def busy_cpus(window: float = 0.2) -> float:
    """How many CPUs other jobs keep busy now: the machine's busy time over ``window`` seconds.

    This process sleeps through the window, so what is measured is everything else. The
    1-minute load average alone is not enough: it still counts the install or corpus
    generation that ran just before (``scripts/study`` installs, then studies), which makes a
    free machine look busy for a minute. Without ``/proc/stat`` the load average is the answer.

    Returns:
        Busy CPUs (0 to the machine's CPU count), a float.
    """
    import time

    before = _cpu_times()
    if before is None:
        try:
            return os.getloadavg()[0]
        except OSError:  # pragma: no cover - not available on this OS
            return 0.0
    time.sleep(window)
    after = _cpu_times()
    if after is None or after[1] <= before[1]:
        return 0.0
    return (after[0] - before[0]) / (after[1] - before[1]) * (os.cpu_count() or 1)


def prefer_sleeping_openmp_threads(load: float | None = None) -> bool:
    """On a busy machine, make OpenMP worker threads sleep, not spin, while they wait for work.

    torch's CPU kernels (ATen, MKL, oneDNN) run on libgomp, whose idle workers spin for a
    while at every barrier. On cores another job also uses, a spinning worker burns the time
    slice the thread it waits for needs, and small per-op parallel regions (a 128-wide
    transformer step has thousands) slow down four- to ten-fold instead of two-fold;
    ``OMP_WAIT_POLICY=PASSIVE`` makes them yield at once. On free cores spinning is faster
    (PASSIVE costs 30–40 % there), so the policy is set only when the machine is already
    busy: other jobs keeping at least half the usable CPUs busy. A 1-minute load average below
    that means a free machine, at no cost; above it, :func:`busy_cpus` (0.2 s) tells whether
    the load is still there or was a job that has just finished
    (``benchmarks/cpu_contention.py``, ``docs/benchmarks.md``). A job that starts competing
    later is not seen.

    Must run before torch is imported (libgomp reads the variable once, when it starts); the
    ``deepwide`` command calls it first thing. A value the user set is kept, and
    ``DEEPWIDE_OPENMP_DEFAULTS=1`` leaves the environment alone.

    Args:
        load: the busy CPUs to judge (default: the load average, confirmed by
            :func:`busy_cpus` when it says busy).

    Returns:
        Whether the policy was set here.
    """
    if os.environ.get(KEEP_OPENMP_ENV) == "1" or "OMP_WAIT_POLICY" in os.environ:
        return False
    if load is None:
        try:
            load = os.getloadavg()[0]
        except OSError:  # pragma: no cover - not available on this OS
            return False
        if load >= 0.5 * usable_cpus():
            load = busy_cpus()
    if load < 0.5 * usable_cpus():
        return False
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    return True
