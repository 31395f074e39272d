"""Running the study's plan: each step whose marker is missing or stale, in order."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from deepwide.config import atomic_write_json, dump_toml
from deepwide.errors import ConfigError
from deepwide.study.config import StudyConfig
from deepwide.study.plan import Step, build_plan

log = logging.getLogger(__name__)


def run_study(cfg: StudyConfig, out: str | Path, *, seed: int = 0, dry_run: bool = False,
              echo: Callable[[str], None] = print) -> list[Step]:
    """Run (or, with ``dry_run``, list) the plan; returns its steps."""
    out = Path(out)
    steps, missing = build_plan(cfg, out, seed=seed, check_only=dry_run)
    if dry_run:
        for s in steps:
            echo(f"{'cached' if s.is_done() else 'to run':>7}  {s.kind:<10} {s.name}")
        if missing:
            for m in missing:
                echo(f"missing  {m}")
            raise ConfigError(f"{len(missing)} input(s) of the study are missing (listed above); fix the paths in the config")
        echo(f"{len(steps)} steps, {sum(not s.is_done() for s in steps)} to run")
        return steps
    out.mkdir(parents=True, exist_ok=True)
    dump_toml(cfg, out / "study.toml")
    t_all = time.time()
    timings = []
    for i, s in enumerate(steps, 1):
        if s.is_done():
            log.info("[%d/%d] %s: cached", i, len(steps), s.name)
            timings.append({"step": s.name, "kind": s.kind, "cached": True, "seconds": 0.0})
            continue
        log.info("[%d/%d] %s …", i, len(steps), s.name)
        t0 = time.time()
        s.run()
        dt = time.time() - t0
        s.mark_done(dt)
        timings.append({"step": s.name, "kind": s.kind, "cached": False, "seconds": round(dt, 2)})
        log.info("[%d/%d] %s: done in %.1f s", i, len(steps), s.name, dt)
    atomic_write_json(out / "timings.json", {"total_seconds": round(time.time() - t_all, 2), "steps": timings})
    echo(f"report: {out / 'report' / 'report.html'}  (total {time.time() - t_all:.0f} s)")
    return steps
