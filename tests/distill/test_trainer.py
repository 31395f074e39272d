"""Training: both objectives learn, outputs load, resume is exact, failures are safe and loud."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from deepwide.corpora import Manifest
from deepwide.distill import trainer as trainer_mod
from deepwide.distill.config import make_config
from deepwide.distill.trainer import (
    DivergenceError,
    load_heads,
    read_metrics,
    read_result,
    train_student,
)
from deepwide.errors import ConfigError
from tests.distill.conftest import base_options, write_target_store


def _losses(out: Path) -> list[float]:
    return [m["loss"] for m in read_metrics(out)]


@pytest.mark.parametrize(("objective", "width"), [("predlayer", 32), ("l2l", 16)])
def test_both_objectives_learn_and_write_a_loadable_student(tmp_path, teacher_dir, corpus_dir, objective, width) -> None:
    from deepwide.models import load_model

    cfg = make_config(**base_options(teacher_dir, corpus_dir, objective=objective, width=width, steps=24, lr=3e-3))
    result = train_student(cfg, tmp_path / "run", progress=False)
    losses = _losses(tmp_path / "run")
    assert len(losses) == 24
    assert sum(losses[-4:]) / 4 < 0.8 * sum(losses[:4]) / 4, losses

    student = load_model(str(tmp_path / "run"))
    assert student.num_layers == 2 and student.dim == width
    assert student.model_id == f"student-2x{width}-{objective}" == result.model_id
    assert student.num_params() == result.params
    teacher = load_model(str(teacher_dir))
    assert student.config.frontend == teacher.config.frontend

    heads, meta = load_heads(tmp_path / "run" / "heads.safetensors")
    assert meta["objective"] == objective
    assert meta["teacher_layers"] == result.mapping["teacher_layers"]
    if objective == "predlayer":
        assert result.mapping == {"student_layers": [2, 2, 2], "teacher_layers": [1, 3, 4]}
        assert {tuple(v.shape) for k, v in heads.items() if k.endswith("weight")} == {(32, 32)}
        assert len(heads) == 6
    else:
        assert result.mapping == {"student_layers": [1, 2], "teacher_layers": [2, 4]}
        assert {tuple(v.shape) for k, v in heads.items() if k.endswith("weight")} == {(32, 16)}

    line = read_metrics(tmp_path / "run")[-1]
    for layer in result.mapping["teacher_layers"]:
        assert f"loss_{layer}" in line
    assert {"step", "loss", "lr", "frames_per_s"} <= set(line)
    assert line["step"] == 24 and line["frames_per_s"] > 0
    summary = json.loads((tmp_path / "run" / "distill.json").read_text())
    assert summary["complete"] and read_result(tmp_path / "run") == result


def test_front_end_is_copied_from_the_teacher_and_teacher_is_untouched(tmp_path, teacher_dir, corpus_dir) -> None:
    from deepwide.models import load_model

    cfg = make_config(**base_options(teacher_dir, corpus_dir, steps=1, lr=1e-12, warmup=0.0))
    train_student(cfg, tmp_path / "run", progress=False)
    student, teacher = load_model(str(tmp_path / "run")), load_model(str(teacher_dir))
    for k, v in teacher.frontend.state_dict().items():
        torch.testing.assert_close(student.frontend.state_dict()[k], v)
    # the transformer is not copied without --init-from-teacher
    a = student.encoder.transformer.layers[0].feed_forward.intermediate_dense.weight
    b = teacher.encoder.transformer.layers[0].feed_forward.intermediate_dense.weight
    assert not torch.allclose(a, b)


def test_init_from_teacher_copies_the_first_layers(tmp_path, teacher_dir, corpus_dir) -> None:
    from deepwide.models import load_model

    cfg = make_config(**base_options(teacher_dir, corpus_dir, steps=1, lr=1e-12, warmup=0.0, init_from_teacher=True))
    train_student(cfg, tmp_path / "run", progress=False)
    student, teacher = load_model(str(tmp_path / "run")), load_model(str(teacher_dir))
    t_state = teacher.encoder.state_dict()
    for k, v in student.encoder.state_dict().items():
        torch.testing.assert_close(v, t_state[k], atol=1e-6, rtol=0)
    narrow = make_config(**base_options(teacher_dir, corpus_dir, width=16, init_from_teacher=True))
    with pytest.raises(ConfigError, match="width 16 vs 32") as info:
        train_student(narrow, tmp_path / "narrow", progress=False)
    assert "\n" not in str(info.value)


def test_padding_does_not_change_the_training_loss(teacher_dir, corpus_dir) -> None:
    """Through the real student and teacher: padded samples never reach the loss."""
    from deepwide.distill.objectives import build_objective, distill_loss
    from deepwide.distill.trainer import DistillModel, resolve_student
    from deepwide.models import build_encoder, load_model

    teacher = load_model(str(teacher_dir))
    cfg = make_config(**base_options(teacher_dir, corpus_dir, objective="l2l", width=16))
    scfg = resolve_student(cfg, teacher.config)
    obj = build_objective("l2l", scfg.depth, scfg.width, teacher.num_layers, teacher.dim)
    torch.manual_seed(0)
    model = DistillModel(build_encoder(scfg, seed=0), obj).eval()
    g = torch.Generator().manual_seed(0)
    wavs = 0.1 * torch.randn(2, 16000, generator=g)
    lengths = torch.tensor([16000, 9000])

    def loss_of(w: torch.Tensor) -> float:
        with torch.no_grad():
            preds, frames = model(w, lengths)
            tstates, _ = teacher.hidden_states(w, lengths)
            return float(distill_loss(preds, [tstates[t] for t in obj.mapping.teacher_layers], frames)[0])

    noisy = wavs.clone()
    noisy[1, 9000:] = torch.randn(7000, generator=g)
    assert loss_of(noisy) == pytest.approx(loss_of(wavs), abs=1e-6)
    changed = wavs.clone()
    changed[1, :9000] += 0.05 * torch.randn(9000, generator=g)
    assert loss_of(changed) != pytest.approx(loss_of(wavs), abs=1e-6)


class _Killed(BaseException):
    """Stands in for SIGKILL: nothing after it runs."""


def _kill_at_loss_call(monkeypatch, n: int) -> None:
    calls = {"n": 0}
    real = trainer_mod.distill_loss

    def dying(*args, **kwargs):
        calls["n"] += torch.is_grad_enabled()  # training steps only, not held-out evaluations
        if calls["n"] == n:
            raise _Killed()
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer_mod, "distill_loss", dying)


def _strip_speed(lines: list[dict]) -> list[dict]:
    return [{k: v for k, v in m.items() if k not in ("frames_per_s", "steps_per_s")} for m in lines]


def test_resume_replays_the_uninterrupted_run_exactly(tmp_path, teacher_dir, corpus_dir, monkeypatch) -> None:
    cfg = make_config(**base_options(teacher_dir, corpus_dir, steps=10, checkpoint_every=4, dropout=0.1))
    train_student(cfg, tmp_path / "whole", progress=False)

    with monkeypatch.context() as m:
        _kill_at_loss_call(m, 7)  # dies during step 7, after logging 5 and 6 past the step-4 checkpoint
        with pytest.raises(_Killed):
            train_student(cfg, tmp_path / "split", progress=False)
    assert len(read_metrics(tmp_path / "split")) == 6
    assert read_result(tmp_path / "split") is None
    with pytest.raises(ConfigError, match="--resume"):
        train_student(cfg, tmp_path / "split", progress=False)
    train_student(cfg, tmp_path / "split", resume=True, progress=False)

    assert _strip_speed(read_metrics(tmp_path / "split")) == _strip_speed(read_metrics(tmp_path / "whole"))
    a = load_file(str(tmp_path / "whole" / "model.safetensors"))
    b = load_file(str(tmp_path / "split" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ha, _ = load_heads(tmp_path / "whole" / "heads.safetensors")
    hb, _ = load_heads(tmp_path / "split" / "heads.safetensors")
    assert all(torch.equal(ha[k], hb[k]) for k in ha)
    # a finished run resumes to itself
    again = train_student(cfg, tmp_path / "split", resume=True, progress=False)
    assert again.steps == 10


def test_resume_refuses_other_settings(tmp_path, teacher_dir, corpus_dir, monkeypatch) -> None:
    cfg = make_config(**base_options(teacher_dir, corpus_dir, steps=6, checkpoint_every=2))
    with monkeypatch.context() as m:
        _kill_at_loss_call(m, 4)
        with pytest.raises(_Killed):
            train_student(cfg, tmp_path / "run", progress=False)
    other = make_config(**base_options(teacher_dir, corpus_dir, steps=6, checkpoint_every=2, lr=1e-3))
    with pytest.raises(ConfigError, match="lr differ"):
        train_student(other, tmp_path / "run", resume=True, progress=False)
    # settings that do not change results may differ
    fine = make_config(**base_options(teacher_dir, corpus_dir, steps=6, checkpoint_every=3))
    assert train_student(fine, tmp_path / "run", resume=True, progress=False).steps == 6


def test_a_crash_while_writing_a_checkpoint_keeps_the_previous_one(tmp_path, teacher_dir, corpus_dir, monkeypatch) -> None:
    cfg = make_config(**base_options(teacher_dir, corpus_dir, steps=8, checkpoint_every=3, keep_checkpoints=5))
    real_save = torch.save
    calls = {"n": 0}

    def torn_save(obj, f, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:  # the step-6 checkpoint: write half of it, then die
            f.write(b"\x80\x02partial")
            f.flush()
            raise _Killed()
        return real_save(obj, f, *args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(trainer_mod.torch, "save", torn_save)
        with pytest.raises(_Killed):
            train_student(cfg, tmp_path / "run", progress=False)
    folder = tmp_path / "run" / "checkpoints"
    assert sorted(p.name for p in folder.iterdir()) == ["latest.json", "step-00000003.pt"]
    assert json.loads((folder / "latest.json").read_text())["file"] == "step-00000003.pt"
    torch.load(folder / "step-00000003.pt", weights_only=True)
    train_student(cfg, tmp_path / "run", resume=True, progress=False)
    whole = train_student(cfg, tmp_path / "whole", progress=False)
    assert _strip_speed(read_metrics(tmp_path / "run")) == _strip_speed(read_metrics(whole.out))


def test_nan_loss_stops_with_step_and_last_checkpoint(tmp_path, teacher_dir, corpus_dir, monkeypatch) -> None:
    cfg = make_config(**base_options(teacher_dir, corpus_dir, steps=10, checkpoint_every=4))
    real = trainer_mod.distill_loss
    calls = {"n": 0}

    def poisoned(preds, targets, frames, cos_weight=1.0):
        calls["n"] += torch.is_grad_enabled()  # training steps only, not held-out evaluations
        total, per = real(preds, targets, frames, cos_weight)
        if calls["n"] == 6:
            total = total * float("nan")
        return total, per

    monkeypatch.setattr(trainer_mod, "distill_loss", poisoned)
    with pytest.raises(DivergenceError) as info:
        train_student(cfg, tmp_path / "run", progress=False)
    msg = str(info.value)
    assert "\n" not in msg
    assert "at step 6" in msg and "step-00000004.pt" in msg and "nan" in msg
    # the model was not stepped with the bad loss: the checkpoint is intact and resumable
    monkeypatch.setattr(trainer_mod, "distill_loss", real)
    assert train_student(cfg, tmp_path / "run", resume=True, progress=False).steps == 10


def test_nan_before_any_checkpoint_says_so(tmp_path, teacher_dir, corpus_dir) -> None:
    cfg = make_config(**base_options(teacher_dir, corpus_dir, steps=3, lr=1e30, grad_clip=0.0, warmup=0.0))
    with pytest.raises(DivergenceError, match=r"at step \d+; last good checkpoint: none"):
        train_student(cfg, tmp_path / "run", progress=False)


def test_stored_teacher_targets_train_without_running_the_teacher(tmp_path, teacher_dir, corpus_dir, monkeypatch) -> None:
    from deepwide.models import load_model
    from deepwide.models.encoder import Encoder

    teacher = load_model(str(teacher_dir))
    manifest = Manifest.load(corpus_dir)
    store = write_target_store(teacher, manifest, tmp_path / "teacher.zarr")
    real = Encoder.hidden_states
    runs = {"teacher": 0}

    def counting(self, *args, **kwargs):
        if self.model_id == teacher.model_id:
            runs["teacher"] += 1
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Encoder, "hidden_states", counting)
    cfg = make_config(**base_options(teacher_dir, corpus_dir, steps=20, lr=3e-3, teacher_targets=str(store)))
    train_student(cfg, tmp_path / "run", teacher=teacher, progress=False)
    assert runs["teacher"] == 0
    losses = _losses(tmp_path / "run")
    assert sum(losses[-4:]) < 0.8 * sum(losses[:4])

    other = write_target_store(load_model(f"random:{teacher_dir}", seed=3), manifest, tmp_path / "other.zarr")
    bad = make_config(**base_options(teacher_dir, corpus_dir, teacher_targets=str(other)))
    from deepwide.errors import StoreError

    with pytest.raises(StoreError, match="not from the teacher"):
        train_student(bad, tmp_path / "bad", progress=False)


def test_stored_targets_of_a_teacher_off_the_50_hz_grid_are_refused(tmp_path, corpus_dir) -> None:
    """A 25 Hz teacher (one more stride-2 conv) distils online, but its stored targets would be
    paired with the wrong student frames (crops are cut on the 320-sample grid): one line,
    nothing written."""
    from deepwide.errors import StoreError
    from deepwide.models import EncoderConfig, FrontendConfig, build_encoder, save_checkpoint

    conv = ((32, 10, 5),) + ((32, 3, 2),) * 4 + ((32, 2, 2),) * 3  # hop 640 samples: 25 Hz
    slow = EncoderConfig(depth=2, width=32, ffn=64, heads=2, pos_conv_kernel=8, pos_conv_groups=4,
                         frontend=FrontendConfig(conv_layers=conv))
    teacher = build_encoder(slow, seed=0, model_id="teacher-25hz")
    save_checkpoint(teacher, tmp_path / "teacher")
    store = write_target_store(teacher, Manifest.load(corpus_dir), tmp_path / "targets.zarr")
    cfg = make_config(**base_options(tmp_path / "teacher", corpus_dir, teacher_targets=str(store)))
    with pytest.raises(StoreError, match="gives 25 frames/s, but stored teacher targets are cut at 50") as info:
        train_student(cfg, tmp_path / "run", progress=False)
    assert "\n" not in str(info.value) and not (tmp_path / "run").exists()


def test_run_folder_guards(tmp_path, teacher_dir, corpus_dir) -> None:
    cfg = make_config(**base_options(teacher_dir, corpus_dir, steps=2))
    train_student(cfg, tmp_path / "run", progress=False)
    with pytest.raises(ConfigError, match="already holds a distillation run"):
        train_student(cfg, tmp_path / "run", progress=False)


_CHILD = """
import sys, torch
torch.set_num_threads(1)
sys.path.insert(0, {root!r})
from deepwide.distill.config import make_config
from deepwide.distill.trainer import train_student
from tests.distill.conftest import base_options
train_student(make_config(**base_options({teacher!r}, {corpus!r}, steps=400, checkpoint_every=2, dropout=0.1)),
              {out!r}, progress=False)
"""


def test_sigkill_then_resume_equals_the_uninterrupted_run(tmp_path, teacher_dir, corpus_dir) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    root = str(Path(__file__).resolve().parents[2])
    out = tmp_path / "killed"
    code = _CHILD.format(root=root, teacher=str(teacher_dir), corpus=str(corpus_dir), out=str(out))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    latest = out / "checkpoints" / "latest.json"
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if latest.is_file() and json.loads(latest.read_text())["step"] >= 6:
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    killed_at = len(read_metrics(out))
    assert 6 <= killed_at < 400

    assert not list((out / "checkpoints").glob("step-*.pt.*"))  # no torn file under a final name
    # reference: the same 400-step run, uninterrupted, stopped a few steps past the kill point
    full = make_config(**base_options(teacher_dir, corpus_dir, steps=400, checkpoint_every=2, dropout=0.1))
    whole = tmp_path / "whole"
    with pytest.MonkeyPatch.context() as m:
        _kill_at_loss_call(m, killed_at + 7)
        with pytest.raises(_Killed):
            train_student(full, whole, progress=False)
    with pytest.MonkeyPatch.context() as m:
        _kill_at_loss_call(m, 7)  # resume: 6 more steps past the last checkpoint, then stop
        with pytest.raises(_Killed):
            train_student(full, out, resume=True, progress=False)
    a = _strip_speed(read_metrics(whole))
    b = _strip_speed(read_metrics(out))
    assert len(b) >= killed_at and b == a[: len(b)]
