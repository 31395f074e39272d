"""The study's collect step writes each student's held-out columns and its distillation curves (#19)."""

from __future__ import annotations

import math

import pandas as pd

from deepwide.distill.config import make_config
from deepwide.distill.metrics import read_heldout, read_metrics
from deepwide.distill.trainer import train_student
from tests.distill.conftest import base_options


def test_collect_writes_distill_curves_and_heldout_columns(tmp_path, teacher_dir, corpus_dir) -> None:
    from deepwide.study.config import StudyConfig
    from deepwide.study.plan import Student
    from deepwide.study.stages import collect_results

    cfg = make_config(**base_options(teacher_dir, corpus_dir, steps=9, log_every=2, eval_every=3))
    run = tmp_path / "run"
    result = train_student(cfg, run, progress=False)
    st = Student(name="2x32-predlayer", depth=2, width=32, ffn=64, heads=2, objective="predlayer")
    results = tmp_path / "results"
    results.mkdir()
    collect_results(results, [], [st], {st.name: (run, "")}, {}, {}, StudyConfig(), 0)

    distill = pd.read_csv(results / "distill.csv")
    row = distill.set_index("model").loc[result.model_id]
    assert row["heldout_loss"] == round(result.heldout_loss, 6)
    assert math.isclose(row["plateau_fall"], result.plateau_fall, abs_tol=1e-6)
    assert bool(row["plateaued"]) == result.plateaued

    curves = pd.read_csv(results / "distill_curves.csv")
    assert list(curves.columns) == ["model", "step", "train_loss", "heldout_loss"]
    assert set(curves["model"]) == {result.model_id}
    train_steps = [m["step"] for m in read_metrics(run)]  # 2, 4, 6, 8, 9
    held_steps = [h["step"] for h in read_heldout(run)]  # 3, 6, 9
    assert list(curves["step"]) == sorted(set(train_steps) | set(held_steps))
    assert list(curves.dropna(subset=["train_loss"])["step"]) == train_steps
    assert list(curves.dropna(subset=["heldout_loss"])["step"]) == held_steps == [3, 6, 9]
    assert curves["heldout_loss"].dropna().iloc[-1] == round(result.heldout_loss, 6)
