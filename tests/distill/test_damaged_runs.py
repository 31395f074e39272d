"""`distill --resume` on damaged run folders: torn metrics, truncated or broken checkpoints."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from deepwide.cli import cli
from deepwide.distill import trainer as trainer_mod
from deepwide.distill.config import make_config
from deepwide.distill.trainer import read_metrics, train_student
from deepwide.errors import ConfigError, ModelError
from tests.distill.conftest import base_options


class _Killed(BaseException):
    """Stands in for SIGKILL: nothing after it runs."""


def _killed_run(cfg, out: Path, at_loss_call: int) -> None:
    """Run ``cfg`` into ``out`` and die during loss call ``at_loss_call``."""
    real = trainer_mod.distill_loss
    calls = {"n": 0}

    def dying(*args, **kwargs):
        calls["n"] += torch.is_grad_enabled()  # training steps only, not held-out evaluations
        if calls["n"] == at_loss_call:
            raise _Killed()
        return real(*args, **kwargs)

    with pytest.MonkeyPatch.context() as m:
        m.setattr(trainer_mod, "distill_loss", dying)
        with pytest.raises(_Killed):
            train_student(cfg, out, progress=False)


def _strip_speed(lines: list[dict]) -> list[dict]:
    return [{k: v for k, v in m.items() if k not in ("frames_per_s", "steps_per_s")} for m in lines]


def _same_weights(a: Path, b: Path) -> bool:
    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    return wa.keys() == wb.keys() and all((wa[k] == wb[k]).all() for k in wa)


@pytest.fixture()
def whole(tmp_path, teacher_dir, corpus_dir):
    cfg = make_config(**base_options(teacher_dir, corpus_dir, steps=8, checkpoint_every=3, keep_checkpoints=3))
    train_student(cfg, tmp_path / "whole", progress=False)
    return cfg, tmp_path / "whole"


def test_torn_last_metrics_line_is_dropped_with_a_warning(tmp_path, whole, caplog) -> None:
    cfg, reference = whole
    out = tmp_path / "run"
    _killed_run(cfg, out, 5)  # dies in step 5: metrics 1-4 logged, checkpoint at 3
    with (out / "metrics.jsonl").open("a") as fh:
        fh.write('{"step": 5, "loss": 0.12')  # a kill in the middle of an append
    with caplog.at_level(logging.WARNING):
        train_student(cfg, out, resume=True, progress=False)
    assert "torn last line" in caplog.text
    assert _strip_speed(read_metrics(out)) == _strip_speed(read_metrics(reference))
    assert _same_weights(out, reference)


def test_torn_line_is_also_skipped_when_only_reading(tmp_path, caplog) -> None:
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "loss": 1.0}\n{"step": 2, "lo')
    with caplog.at_level(logging.WARNING):
        assert read_metrics(tmp_path) == [{"step": 1, "loss": 1.0}]
    assert "torn last line" in caplog.text
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "lo\n{"step": 2, "loss": 1.0}\n')
    with pytest.raises(ConfigError, match="line 1 of .* is not a metrics record"):
        read_metrics(tmp_path)


def test_truncated_latest_checkpoint_falls_back_to_the_previous_one(tmp_path, whole, caplog) -> None:
    cfg, reference = whole
    out = tmp_path / "run"
    _killed_run(cfg, out, 7)  # checkpoints at steps 3 and 6, dies in step 7
    folder = out / "checkpoints"
    assert json.loads((folder / "latest.json").read_text())["file"] == "step-00000006.pt"
    latest = folder / "step-00000006.pt"
    latest.write_bytes(latest.read_bytes()[: latest.stat().st_size // 2])  # a copy cut short
    with caplog.at_level(logging.WARNING):
        train_student(cfg, out, resume=True, progress=False)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("step-00000006.pt" in w and "truncated" in w and "\n" not in w for w in warnings)
    # resumed from step 3, so the run replays steps 4-8 exactly
    assert _strip_speed(read_metrics(out)) == _strip_speed(read_metrics(reference))
    assert _same_weights(out, reference)
    assert (folder / "step-00000006.pt.corrupt").is_file()  # set aside, never tried again


def test_no_readable_checkpoint_is_one_line_saying_what_to_do(tmp_path, teacher_dir, corpus_dir) -> None:
    cfg = make_config(**base_options(teacher_dir, corpus_dir, steps=8, checkpoint_every=3))
    out = tmp_path / "run"
    _killed_run(cfg, out, 7)
    for ckpt in (out / "checkpoints").glob("step-*.pt"):
        ckpt.write_bytes(b"\x80\x02partial")
    with pytest.raises(ModelError, match="no checkpoint in .* can be read .* start the run over"):
        train_student(cfg, out, resume=True, progress=False)
    # the same through the CLI: one line, non-zero exit, no traceback
    for ckpt in (out / "checkpoints").glob("step-*.pt.corrupt"):
        ckpt.rename(ckpt.with_suffix(""))
    args = ["distill", "--teacher", str(teacher_dir), "--corpus", str(corpus_dir), "--steps", "8",
            "--depth", "2", "--width", "32", "--heads", "2", "--ffn", "64", "--batch-seconds", "3",
            "--max-crop-seconds", "1", "--lr", "0.002", "--warmup", "0.1", "--log-every", "1",
            "--checkpoint-every", "3", "--device", "cpu", "--no-progress", "--resume", "--out", str(out)]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == ModelError.exit_code and isinstance(res.exception, SystemExit), res.output
    *warnings, error = res.output.strip().splitlines()
    assert error.startswith("Error: no checkpoint in") and "--resume" in error
    assert len(warnings) == 2 and all(w.startswith("WARNING ") and "trying the checkpoint before it" in w for w in warnings)


def test_broken_run_record_is_one_line(tmp_path, teacher_dir, corpus_dir) -> None:
    cfg = make_config(**base_options(teacher_dir, corpus_dir, steps=8, checkpoint_every=3))
    out = tmp_path / "run"
    _killed_run(cfg, out, 5)
    (out / "run.json").write_text('{"config": {"steps": 8')
    with pytest.raises(ConfigError, match=r"run.json is broken") as info:
        train_student(cfg, out, resume=True, progress=False)
    assert "\n" not in str(info.value)
