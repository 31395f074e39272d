"""The CTC benchmark's quick mode runs both sides end to end and prints its comparison lines."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ctc_benchmark_quick_mode_prints_the_ratios(tmp_path) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "ctc.py"), "--quick"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert out.startswith("machine: ") and "threads" in out.splitlines()[0]
    assert "before:  load average" in out and "after:   load average" in out
    assert "train/dev/test 12/4/4 utterances" in out
    assert re.search(r"s3prl-style: train \+ dev \+ test \(\d+ teacher forwards\)", out)
    # the per-layer curve has all 13 layers; the one-layer comparison is on the top layer
    per_line = next(line for line in out.splitlines() if line.startswith("PER by layer"))
    assert len(per_line.split(":", 1)[1].split()) == 13
    assert re.search(r"PER layer 12: deepwide [\d.]+ %, s3prl-style [\d.]+ %, \|difference\| [\d.]+ points", out)
    assert re.search(r"speed-up, 1 layer: s3prl-style / deepwide \(extract \+ read \+ train\) [\d.]+×", out)
    assert re.search(r"13 layers vs 1 layer in deepwide: [\d.]+× with extraction", out)
