"""Slow: students of the bundled `tiny-teacher` on `synth` learn with both objectives."""

from __future__ import annotations

import pytest

from deepwide.distill.config import make_config
from deepwide.distill.trainer import read_metrics, train_student
from deepwide.errors import DeepwideError


@pytest.mark.slow
@pytest.mark.parametrize(("student", "objective"), [("distilhubert", "predlayer"), ("12l-half", "l2l")])
def test_tiny_teacher_students_learn(tmp_path, student, objective) -> None:
    from deepwide.corpora import resolve_corpus
    from deepwide.models import load_model

    try:
        teacher = load_model("tiny-teacher")
        manifest = resolve_corpus("synth")
    except DeepwideError as exc:  # not bundled / generated in this checkout yet
        pytest.skip(str(exc))
    cfg = make_config(teacher="tiny-teacher", corpus="synth", student=student, objective=objective, steps=60,
                      batch_seconds=12, max_crop_seconds=3, lr=5e-4, log_every=10, device="cpu")
    result = train_student(cfg, tmp_path / "run", teacher=teacher, manifest=manifest, progress=False)
    losses = [m["loss"] for m in read_metrics(tmp_path / "run")]
    assert losses[-1] < 0.9 * losses[0], losses
    # presets are shapes relative to HuBERT Base (768 wide): distilhubert keeps the teacher's width
    assert result.student_config["width"] == {"distilhubert": teacher.dim, "12l-half": teacher.dim // 2}[student]
