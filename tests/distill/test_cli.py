"""`deepwide distill [train] …` and `deepwide distill sweep …` as a user types them."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from deepwide.cli import cli
from deepwide.distill.config import make_config
from deepwide.distill.trainer import read_metrics, resolve_student
from tests.distill.conftest import tiny_encoder_config


def _common(teacher_dir, corpus_dir, out) -> list[str]:
    return [
        "--teacher", str(teacher_dir), "--corpus", str(corpus_dir), "--steps", "3",
        "--batch-seconds", "3", "--max-crop-seconds", "1", "--log-every", "1",
        "--device", "cpu", "--no-progress", "--out", str(out),
    ]


@pytest.mark.parametrize("explicit", [False, True])
def test_train_is_the_default_command(tmp_path, teacher_dir, corpus_dir, explicit) -> None:
    from deepwide.models import load_model

    args = ["distill"] + (["train"] if explicit else []) + [
        "--depth", "2", "--width", "32", "--heads", "2", "--ffn", "64", "--objective", "l2l", "--targets", "2,4",
        *_common(teacher_dir, corpus_dir, tmp_path / "run"),
    ]
    res = CliRunner().invoke(cli, ["--seed", "3", *args])
    assert res.exit_code == 0, res.output
    assert "student-2x32-l2l: 0.022 M params" in res.output
    assert "targets [2, 4] <- student layers [1, 2]" in res.output
    assert len(read_metrics(tmp_path / "run")) == 3
    student = load_model(str(tmp_path / "run"))
    assert (student.num_layers, student.dim) == (2, 32)
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["config"]["seed"] == 3 and run["config"]["targets"] == [2, 4]
    # rerunning without --resume is refused on one line; with --resume it is a no-op
    again = CliRunner().invoke(cli, ["--seed", "3", *args])
    assert again.exit_code != 0 and "pass --resume" in again.output
    assert CliRunner().invoke(cli, ["--seed", "3", *args, "--resume"]).exit_code == 0
    other_seed = CliRunner().invoke(cli, [*args, "--resume"])
    assert other_seed.exit_code != 0 and "seed differ" in other_seed.output


def test_user_errors_are_one_line(tmp_path, teacher_dir, corpus_dir) -> None:
    common = _common(teacher_dir, corpus_dir, tmp_path / "run")
    res = CliRunner().invoke(cli, ["distill", "--student", "distilhubert", "--depth", "2", *common])
    assert res.exit_code != 0
    assert res.output.strip().count("\n") == 0 and "not both" in res.output
    res = CliRunner().invoke(cli, ["distill", "--depth", "2", "--width", "32", "--objective", "fitnet", *common])
    assert res.exit_code != 0 and "'fitnet' is not one of" in res.output
    res = CliRunner().invoke(cli, ["distill", "--depth", "2", "--width", "32", "--heads", "2", "--targets", "4,x", *common])
    assert res.exit_code != 0 and "--targets '4,x' is not valid" in res.output and res.output.strip().count("\n") == 0
    mfcc = [x if x != str(teacher_dir) else "mfcc" for x in common]
    res = CliRunner().invoke(cli, ["distill", "--depth", "2", "--width", "32", "--heads", "2", *mfcc])
    assert res.exit_code != 0 and "is a MfccEncoder, not a HuBERT-family transformer" in res.output
    assert res.output.strip().count("\n") == 0 and not (tmp_path / "run").exists()
    res = CliRunner().invoke(cli, ["distill", "--student", "nope", *common])
    assert res.exit_code != 0 and "distilhubert" in res.output  # the valid presets are listed


def test_a_student_wider_than_its_config_allows_is_one_line(tmp_path, teacher_dir, corpus_dir) -> None:
    from deepwide.models.config import LIMITS

    width = str(LIMITS["width"] + 64)
    common = _common(teacher_dir, corpus_dir, tmp_path / "run")
    for extra in (["--heads", "64"], []):  # heads given; heads from the 64-wide head rule
        res = CliRunner().invoke(cli, ["distill", "--depth", "1", "--width", width, *extra, *common])
        assert res.exit_code == 2 and res.output.startswith("Error: ") and res.output.strip().count("\n") == 0
        assert f"width {width} is beyond the largest accepted" in res.output.replace(",", ""), res.output
        assert not (tmp_path / "run").exists()


def test_help_lists_both_commands() -> None:
    res = CliRunner().invoke(cli, ["distill", "--help"])
    assert res.exit_code == 0 and "sweep" in res.output and "train" in res.output
    res = CliRunner().invoke(cli, ["distill", "sweep", "--help"])
    assert res.exit_code == 0 and "--budget" in res.output and "--depths" in res.output


def test_sweep_dry_run_prints_the_plan(teacher_dir, corpus_dir, tmp_path) -> None:
    res = CliRunner().invoke(cli, [
        "distill", "sweep", "--budget", "60k", "--depths", "1,4", "--objectives", "predlayer,l2l",
        "--head-dim", "16", "--dry-run", *_common(teacher_dir, corpus_dir, tmp_path / "sweep"),
    ])
    assert res.exit_code == 0, res.output
    assert "budget 0.060 M: 4 students" in res.output
    assert "1x64-predlayer" in res.output and "4x32-l2l" in res.output and "+3.6 %" in res.output
    assert not (tmp_path / "sweep").exists()


def test_presets_scale_to_the_teachers_width() -> None:
    from deepwide.models import PRESETS

    def shape(preset, teacher):
        cfg = resolve_student(make_config(teacher="x", corpus="y", steps=1, student=preset), teacher)
        return cfg.depth, cfg.width, cfg.ffn, cfg.heads

    base = PRESETS.get("hubert-base")
    for name in ("distilhubert", "3l-one", "12l-half", "fithubert"):
        p = PRESETS.get(name)
        assert shape(name, base) == (p.depth, p.width, p.ffn, p.heads)
    tiny = tiny_encoder_config(depth=12, width=256)
    assert shape("distilhubert", tiny) == (2, 256, 1024, 4)
    assert shape("12l-half", tiny) == (12, 128, 512, 2)
    assert shape("fithubert", tiny) == (12, 160, 160, 4)
    student = resolve_student(make_config(teacher="x", corpus="y", steps=1, student="3l-one"), tiny)
    assert student.frontend == tiny.frontend and student.layer_drop == 0.0


def test_cli_module_does_not_import_torch() -> None:
    code = "import sys, deepwide.distill.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_heldout_options_reach_the_run_and_its_summary(tmp_path, teacher_dir, corpus_dir) -> None:
    from deepwide.distill.metrics import read_heldout

    args = ["distill", "--depth", "1", "--width", "32", "--heads", "2", "--ffn", "64",
            *_common(teacher_dir, corpus_dir, tmp_path / "run"),
            "--eval-every", "1", "--heldout-fraction", "0.2", "--heldout-max-utts", "3", "--plateau-threshold", "0.5"]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    cfg = json.loads((tmp_path / "run" / "run.json").read_text())["config"]
    assert (cfg["eval_every"], cfg["heldout_fraction"], cfg["heldout_max_utts"], cfg["plateau_threshold"]) == (1, 0.2, 3, 0.5)
    assert [h["step"] for h in read_heldout(tmp_path / "run")] == [1, 2, 3]  # every step, as asked
    assert "held-out loss " in res.output and "plateaued" in res.output
    bad = CliRunner().invoke(cli, [*args[:-2], "--plateau-threshold", "0"])
    assert bad.exit_code != 0 and "--plateau-threshold" in bad.output
