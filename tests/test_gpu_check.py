"""The one-command GPU check's CPU smoke mode runs every part and passes every row."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PARTS = {"distill", "bf16", "ddp", "extract", "probe"}


def test_gpu_check_smoke_mode_passes_every_row(tmp_path) -> None:
    out = tmp_path / "gpu-check"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--device", "cpu", "--smoke", "--out", str(out)],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((out / "gpu-check.json").read_text())
    table = (out / "gpu-check.md").read_text()
    assert report["device"].startswith("CPU") and report["mode"].startswith("smoke")
    assert {"torch", "cuda", "date", "numbers"} <= set(report)
    rows = report["rows"]
    assert {r["part"] for r in rows} == PARTS
    assert report["failed"] == 0 and all(r["status"] in ("PASS", "SKIP") for r in rows), rows
    # only the bf16 comparison may be skipped on the CPU (the trainer autocasts on CUDA only)
    assert [r["part"] for r in rows if r["status"] == "SKIP"] == ["bf16"]
    # the five paper students × online/stored teacher targets, the DDP checks, extraction, both solvers
    assert sum(r["part"] == "distill" and "-fp32-" in r["check"] for r in rows) == 10
    assert sum(r["part"] == "ddp" for r in rows) == 3
    assert report["numbers"]["ddp"]["world_size"] == 2 and report["numbers"]["extract"]["ratio"] > 0
    assert len(report["numbers"]["distill"]) == 10
    for r in rows:
        assert f"| {r['part']} |" in table and r["status"] in table
    assert "20 rows, 0 FAIL" in table and table in proc.stdout
