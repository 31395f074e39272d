"""What deepwide sets up about the machine before a stage starts (threads, OpenMP)."""

from __future__ import annotations

import os
import subprocess
import sys

CHECK = (
    "import os, sys\n"
    "os.getloadavg = lambda: (float(os.environ['FAKE_LOADAVG']),) * 3\n"
    "import deepwide.system\n"
    "deepwide.system.busy_cpus = lambda: float(os.environ['FAKE_LOAD'])\n"
    "import deepwide.cli\n"
    "assert 'torch' not in sys.modules, 'deepwide.cli imported torch'\n"
    "import torch\n"
    "print(os.environ.get('OMP_WAIT_POLICY'))\n"
)


def _policy(**env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "DEEPWIDE_OPENMP_DEFAULTS")}
    clean.update(env)
    out = subprocess.run([sys.executable, "-c", CHECK], env=clean, capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_on_a_busy_machine_the_command_makes_openmp_workers_sleep_before_torch_starts() -> None:
    """Issue #18.5: spinning OpenMP workers slow a shared machine four- to ten-fold; on a busy
    machine the deepwide command sets OMP_WAIT_POLICY=PASSIVE before torch is imported; on
    free cores (where spinning is faster) it leaves it; a user's value and
    DEEPWIDE_OPENMP_DEFAULTS=1 are respected."""
    from deepwide.system import usable_cpus

    busy, free = str(float(usable_cpus())), "0.0"
    assert _policy(FAKE_LOADAVG=busy, FAKE_LOAD=busy) == "PASSIVE"
    assert _policy(FAKE_LOADAVG=free, FAKE_LOAD=free) == "None"
    # a high load average left by a job that has finished (scripts/study's install): free now
    assert _policy(FAKE_LOADAVG=busy, FAKE_LOAD=free) == "None"
    assert _policy(FAKE_LOADAVG=busy, FAKE_LOAD=busy, OMP_WAIT_POLICY="ACTIVE") == "ACTIVE"
    assert _policy(FAKE_LOADAVG=busy, FAKE_LOAD=busy, DEEPWIDE_OPENMP_DEFAULTS="1") == "None"


def test_busy_cpus_sees_other_jobs_not_the_load_average() -> None:
    """The busy-machine test measures the CPUs other jobs use now (``/proc/stat`` over 0.2 s),
    not the 1-minute load average, which still counts an install that has just finished. Two
    spinning processes on this machine are seen as at least one busy CPU."""
    import pytest

    from deepwide.system import busy_cpus

    if not os.path.exists("/proc/stat"):
        pytest.skip("no /proc/stat")
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        import time

        time.sleep(0.5)  # let them start
        busy = busy_cpus(window=0.3)
    finally:
        for p in spinners:
            p.kill()
            p.wait()
    assert 1.0 <= busy <= (os.cpu_count() or 1) + 1e-9


FAULTS = (
    "import os, resource, sys\n"
    "import deepwide.system as s\n"
    "if sys.argv[1] == 'set': assert s.reuse_freed_memory()\n"
    "import numpy as np\n"
    "before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
    "for _ in range(20):\n"
    "    a = np.ones(64 << 17)  # 64 MiB, touched\n"
    "    del a\n"
    "print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)\n"
)


def test_large_freed_blocks_are_reused_not_faulted_in_again(monkeypatch) -> None:
    """A solver step that frees and allocates the same 64 MiB block must not page-fault it in
    again every time: with the thresholds the deepwide command sets, 20 such steps fault the
    block in about once; with glibc's defaults (mmap per block) 20 times (the kernel's fault
    granularity varies, so the two are compared with each other, not with a page count). A user's
    MALLOC_* setting and DEEPWIDE_MALLOC_DEFAULTS=1 are respected."""
    import pytest

    if not sys.platform.startswith("linux"):
        pytest.skip("glibc's mallopt")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "DEEPWIDE_MALLOC_DEFAULTS"}

    def faults(mode: str) -> int:
        out = subprocess.run([sys.executable, "-c", FAULTS, mode], env=env, capture_output=True, text=True, check=True)
        return int(out.stdout.strip())

    default, reused = faults("default"), faults("set")
    assert reused * 5 < default, (reused, default)  # measured here: 530 against 10,880
    from deepwide.system import reuse_freed_memory

    monkeypatch.setenv("DEEPWIDE_MALLOC_DEFAULTS", "1")
    assert not reuse_freed_memory()
    monkeypatch.delenv("DEEPWIDE_MALLOC_DEFAULTS")
    monkeypatch.setenv("MALLOC_ARENA_MAX", "2")  # a user's own malloc setting
    assert not reuse_freed_memory()
