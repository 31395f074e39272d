"""What deepwide sets up about the machine before a stage starts (threads, OpenMP)."""

from __future__ import annotations

import os
import subprocess
import sys

CHECK = (
    "import os, sys\n"
    "os.getloadavg = lambda: (float(os.environ['FAKE_LOAD']),) * 3\n"
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
    assert _policy(FAKE_LOAD=busy) == "PASSIVE"
    assert _policy(FAKE_LOAD=free) == "None"
    assert _policy(FAKE_LOAD=busy, OMP_WAIT_POLICY="ACTIVE") == "ACTIVE"
    assert _policy(FAKE_LOAD=busy, DEEPWIDE_OPENMP_DEFAULTS="1") == "None"
