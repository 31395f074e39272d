"""One probe task with deepwide's freed-memory setting against glibc's malloc defaults.

The ``deepwide`` command keeps large freed blocks in glibc's heap
(``deepwide.system.reuse_freed_memory``: mmap threshold 1 GiB, trim threshold 2 GiB), so the
probe solver's per-step ``(layers, frames, classes)`` logits and gradients are not mmapped and
page-faulted in afresh at every L-BFGS step. The baseline is the same command with
``DEEPWIDE_MALLOC_DEFAULTS=1`` (glibc as it ships: what a hand-written loop gets). Each side is
one ``deepwide probe`` subprocess on the same store, task and seed, run one after the other;
the script prints wall, user and system seconds, minor page faults and peak resident memory
of each, the wall-time ratio, and whether the two ``probe.csv`` files are byte-identical (they should be: the setting
changes where memory comes from, not the arithmetic).

Usage: ``python benchmarks/malloc.py --store STORE.zarr [--task phone] [--repeats 1]``, with a
store from ``deepwide extract`` (the embedded study's ``deepwide-study/stores/teacher-synth.zarr``
is the one of ``docs/benchmarks.md``). Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VARIANTS = {"deepwide": {}, "glibc defaults": {"DEEPWIDE_MALLOC_DEFAULTS": "1"}}


def run_probe(store: str, task: str, out: Path, env_extra: dict[str, str]) -> dict[str, float]:
    """One ``deepwide probe`` subprocess; its wall, user and system seconds, minor faults and
    peak resident memory (MiB), from that child's own rusage."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env.update(env_extra)
    deepwide = Path(sys.executable).with_name("deepwide")
    t0 = time.perf_counter()
    proc = subprocess.Popen([str(deepwide), "-q", "probe", "--task", task, "--store", store,
                             "--max-train-frames", "40000", "--out", str(out)], env=env, stdout=subprocess.DEVNULL)
    _, status, ru = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"deepwide probe failed (exit {proc.returncode}) with {env_extra or 'deepwide settings'}")
    return {"wall": wall, "user": ru.ru_utime, "sys": ru.ru_stime, "minflt": float(ru.ru_minflt),
            "maxrss_mib": ru.ru_maxrss / 1024}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", required=True, help="feature store (deepwide extract)")
    ap.add_argument("--task", default="phone")
    ap.add_argument("--repeats", type=int, default=1, help="alternating runs per side; the best wall time counts")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="deepwide-malloc-"))
    best: dict[str, dict[str, float]] = {}
    try:
        for r in range(args.repeats):
            for name, env in VARIANTS.items():
                m = run_probe(args.store, args.task, work / f"{name.replace(' ', '-')}-{r}", env)
                print(f"{name:>15}: wall {m['wall']:.1f} s, user {m['user']:.1f} s, sys {m['sys']:.1f} s, "
                      f"minor faults {m['minflt'] / 1e6:.2f} M, peak RSS {m['maxrss_mib']:.0f} MiB", flush=True)
                if name not in best or m["wall"] < best[name]["wall"]:
                    best[name] = m
        same = filecmp.cmp(work / "deepwide-0" / "probe.csv", work / "glibc-defaults-0" / "probe.csv", shallow=False)
        print(f"glibc defaults / deepwide, wall: {best['glibc defaults']['wall'] / best['deepwide']['wall']:.2f}x; "
              f"probe.csv byte-identical: {same}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
