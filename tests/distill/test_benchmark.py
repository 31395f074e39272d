"""The GPU benchmark's CPU smoke mode runs end to end and reports every variant."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_distill_gpu_benchmark_smoke_mode(tmp_path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "distill_gpu.py"), "--device", "cpu", "--steps", "2",
         "--json", str(out)],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| fp32 | online |" in proc.stdout and "| fp32 | stored |" in proc.stdout
    report = json.loads(out.read_text())
    assert report["device"].startswith("CPU")
    rows = {(r["precision"], r["targets"]): r for r in report["rows"]}
    assert set(rows) == {("fp32", "online"), ("fp32", "stored")}
    for r in rows.values():
        assert r["steps_per_s"] > 0 and r["student_params"] == 23_492_224  # DistilHuBERT, as published
