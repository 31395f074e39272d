"""The real-size benchmark's quick mode measures every part and writes its JSON and tables."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STUDENTS = {"3-L One PredLayer", "12-L Half L2L", "DistilHuBERT"}


def test_real_size_quick_mode_writes_every_figure(tmp_path) -> None:
    out = tmp_path / "real-size"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "real_size.py"), "--quick", "--out", str(out)],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    res = json.loads((out / "real-size.json").read_text())
    table = (out / "real-size.md").read_text()
    assert res["mode"].startswith("quick") and {"cpu", "cpus", "torch", "date"} <= set(res["machine"])

    # a) + d): every paper student, online and stored, timed, its peak RSS read, one step counted
    rows = res["distill"]
    assert {(r["name"], r["targets"]) for r in rows} == {(s, t) for s in STUDENTS for t in ("online", "stored")}
    for r in rows:
        assert r["step_seconds"] > 0 and r["peak_rss_gib"] >= r["rss_start_gib"] > 0
        assert r["flops_step"] > 0 and r["params"] > 0
        assert "aten.convolution_backward" in r["flops_by_op"]  # the backward pass is counted
        assert "aten.bmm" in r["flops_by_op"]  # attention (math kernel) is counted
    by = {(r["name"], r["targets"]): r["flops_step"] for r in rows}
    assert all(by[(s, "online")] > by[(s, "stored")] for s in STUDENTS)  # the teacher's forward

    # b) extraction against its forward passes; c) the store per hour, beside its formula
    ex, st = res["extract"], res["store"]
    assert ex["extract_s"] > 0 and ex["forward_s"] > 0 and ex["ratio_vs_forward"] > 0
    assert st["layers"] == 13 and st["dtype"] == "float16" and st["frames"] > 0
    assert st["formula_bytes_per_hour"] == 3600 * 50 * 13 * st["dim"] * 2
    assert 0 < st["bytes_per_hour"] and 0 < st["compressed_fraction"] <= 1.1

    # the projection is labelled, and every variant has one
    assert len(res["projection"]) == 6 and all(p["h100_hours"] > 0 for p in res["projection"])
    assert "**Projection** (not measured)" in table and "989 TFLOP/s" in table and "35%" in table
    for name in STUDENTS:
        assert f"| {name} |" in table
    assert "GB per hour of audio" in table and table in proc.stdout
