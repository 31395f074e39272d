"""The paper's study rehearsed at real shapes (``scripts/paper_smoke.py``, ``configs/paper-smoke.toml``).

The slow test runs the whole rehearsal on CPU (a random HuBERT-Base-shaped teacher as a fairseq
``.pt``, the fabricated real corpus layouts, the paper's five students, every probe task,
similarity, figures, report; about 10 min on two cores), then reruns it fully cached. The quick
tests check that the template keeps configs/paper.toml's plan and only shrinks the compute.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "paper_smoke.py"
#: The paper's students and their parameter counts (M), as counted on the built students.
PAPER_PARAMS = {"3x768": 30.58, "12x384": 26.87, "distilhubert-2x768": 23.49}
#: StudyConfig fields that only set how much compute (and where the inputs are): the template
#: may change these, and nothing else of configs/paper.toml.
COMPUTE = {"teacher", "corpus", "probe_corpora", "distill_steps", "distill_batch_seconds",
           "distill_max_crop_seconds", "distill_lr", "teacher_targets", "sequence_max_utts", "ctc_steps",
           "max_train_frames", "n_boot", "device", "extract_batch_seconds"}


def _toml(name: str) -> dict:
    return tomllib.loads((ROOT / "configs" / name).read_text())


def test_template_keeps_the_papers_plan_and_loads() -> None:
    from deepwide.study import load_study_config

    paper, smoke = _toml("paper.toml"), _toml("paper-smoke.toml")
    plan = {k: v for k, v in paper.items() if k not in COMPUTE}
    assert {k: smoke.get(k) for k in plan} == plan
    assert set(smoke) - set(paper) <= COMPUTE
    assert set(smoke["probe_corpora"]) == set(paper["probe_corpora"])
    for task, spec in paper["probe_corpora"].items():  # the same corpus kind for every task
        assert smoke["probe_corpora"][task].partition(":")[0] == spec.partition(":")[0], task
    assert load_study_config(ROOT / "configs" / "paper-smoke.toml").distill_steps < 10


def _run(out: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out)], capture_output=True, text=True,
                          timeout=2700)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return proc


@pytest.mark.slow
def test_paper_rehearsal_end_to_end_then_cached(tmp_path: Path) -> None:
    import torch
    import xarray as xr

    from deepwide.models import load_model
    from deepwide.study import build_plan, load_study_config

    torch.set_num_threads(2)
    out = tmp_path / "paper-smoke"
    _run(out)
    inputs = json.loads((out / "inputs" / ".paper-smoke-inputs.json").read_text())
    assert inputs["teacher_max_abs_diff"] <= 1e-5  # fairseq .pt and HF folder: the same hidden states
    cfg = load_study_config(out / "paper-smoke.toml")
    study = out / "study"

    # every step of the plan ran and is marked done
    steps, missing = build_plan(cfg, study)
    assert not missing
    assert all(s.is_done() for s in steps), [s.name for s in steps if not s.is_done()]
    timings = json.loads((study / "timings.json").read_text())
    assert [t["step"] for t in timings["steps"]] == [s.name for s in steps]
    assert not any(t["cached"] for t in timings["steps"])
    kinds = {s.kind for s in steps}
    assert kinds == {"targets", "distill", "extract", "probe", "similarity", "labels", "spectrum", "collect",
                     "figures", "report"}

    # the paper's students, counted on the students actually built
    counted = {}
    for sdir in sorted((study / "students").iterdir()):
        model = load_model(str(sdir))
        counted[sdir.name] = sum(p.numel() for p in model.parameters()) / 1e6
    assert sorted(counted) == ["12x384-l2l", "12x384-predlayer", "3x768-l2l", "3x768-predlayer",
                               "distilhubert-2x768"]
    for name, millions in counted.items():
        want = next(v for k, v in PAPER_PARAMS.items() if name.startswith(k))
        assert abs(millions - want) < 0.01, (name, millions)

    # every probe task has finite scores for the teacher, on every layer
    probe = xr.load_dataset(study / "results" / "probe.nc")
    assert set(probe["task"].values) == set(cfg.tasks)
    teacher = load_model(cfg.teacher).model_id
    for task in cfg.tasks:
        scores = probe["score"].sel(model=teacher, task=task).values
        assert scores.size == 13 and all(math.isfinite(float(s)) for s in scores), (task, scores)
    assert str(probe["backend"].sel(model=teacher, task="asv").item()) == "lda"  # VoxCeleb1's back-end

    # the report shows every figure the study drew
    figures = {p.stem for p in (study / "figures").glob("*.png")}
    assert len(figures) >= 6
    md = (study / "report" / "report.md").read_text()
    shown = {Path(m).stem for m in re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", md)}
    assert shown == figures
    html = (study / "report" / "report.html").read_text()
    assert html.count("<img") >= len(figures)

    # a rerun is fully cached
    _run(out)
    timings = json.loads((study / "timings.json").read_text())
    assert timings["steps"] and all(t["cached"] for t in timings["steps"])
