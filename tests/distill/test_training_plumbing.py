"""deepwide.training, the one home of the plumbing that distillation and the teacher's
pre-training share: LR schedules, atomic checkpoints, RNG state, the JSON-lines metrics log."""

from __future__ import annotations

import ast
import json
import logging
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from deepwide.errors import ConfigError
from deepwide.models.torchfile import CorruptFileError, load_torch_file
from deepwide.training import (
    append_jsonl,
    atomic_torch_save,
    check_fields,
    generator_state,
    linear_warmup_decay,
    load_checkpoint,
    read_jsonl,
    remove_stale_temporaries,
    rewrite_jsonl,
    rng_state,
    seed_everything,
    set_generator_state,
    set_rng_state,
    warmup_cosine_lr,
)

ROOT = Path(__file__).resolve().parents[2]


# ----------------------------------------------------------------------------------- one home
def _training_sources() -> list[Path]:
    """The files that train something: distillation and the teacher's pre-training."""
    return sorted((ROOT / "distill").glob("*.py")) + [ROOT / "deepwide" / "models" / "pretrain.py"] + sorted(
        (ROOT / "deepwide" / "models" / "pretraining").glob("*.py"))


def test_the_plumbing_is_defined_once_in_the_core() -> None:
    """No training module defines its own schedule, atomic save, RNG capture or JSON-lines
    helpers (as pretrain.py and trainer.py each did), nor saves torch files or RNG states
    itself: both use deepwide.training."""
    duplicated = {"lr_lambda", "atomic_torch_save", "_save_state", "rng_state", "set_rng_state",
                  "_seed_everything", "_append_jsonl", "_drop_torn_line", "_metrics_lines", "_truncate_metrics"}
    found = []
    for path in _training_sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and node.name in duplicated:
                found.append(f"{path.name}:{node.lineno}: def {node.name}")
            if isinstance(node, ast.Attribute):
                text = ast.unparse(node)
                if text in ("torch.save", "random.getstate", "np.random.get_state", "np.random.set_state") \
                        or text.endswith("bit_generator.state"):
                    found.append(f"{path.name}:{node.lineno}: {text}")
    assert found == []


def test_the_old_import_paths_still_work() -> None:
    import deepwide.training as training
    from deepwide.distill import trainer

    assert trainer.atomic_torch_save is training.atomic_torch_save
    assert trainer.rng_state is training.rng_state and trainer.set_rng_state is training.set_rng_state
    assert trainer.lr_lambda is training.linear_warmup_decay


# ----------------------------------------------------------------------------------- schedules
def test_linear_warmup_decay_known_values() -> None:
    f = linear_warmup_decay(4, 12)
    assert [f(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert f(4) == 1.0 and f(8) == pytest.approx(0.5) and f(12) == 0.0 and f(20) == 0.0
    assert linear_warmup_decay(0, 10)(0) == 1.0


def test_linear_warmup_decay_matches_torch_linear_schedulers() -> None:
    """Against torch's own LinearLR warm-up + LinearLR decay (an independent implementation)."""
    warm, total, peak = 3, 10, 0.1
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=peak)
    ref = torch.optim.lr_scheduler.SequentialLR(opt, [
        torch.optim.lr_scheduler.LinearLR(opt, 1 / warm, 1.0, total_iters=warm - 1),
        torch.optim.lr_scheduler.LinearLR(opt, 1.0, 0.0, total_iters=total - warm),
    ], milestones=[warm])
    f = linear_warmup_decay(warm, total)
    for step in range(total):
        assert opt.param_groups[0]["lr"] == pytest.approx(peak * f(step), abs=1e-9), step
        opt.step()
        ref.step()


def test_warmup_cosine_matches_torch_cosine_annealing() -> None:
    """After warm-up: torch's CosineAnnealingLR down to floor × peak (closed form)."""
    peak, warm, total = 2e-3, 5, 40
    assert [warmup_cosine_lr(s, total, peak, warm) for s in range(warm)] == pytest.approx(
        [peak * (s + 1) / warm for s in range(warm)])
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=peak)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total - warm, eta_min=0.05 * peak)
    for step in range(warm, total + 1):
        ref = cosine._get_closed_form_lr()[0]
        assert warmup_cosine_lr(step, total, peak, warm) == pytest.approx(ref, rel=1e-9), step
        opt.step()
        cosine.step()
    assert warmup_cosine_lr(total + 7, total, peak, warm) == pytest.approx(0.05 * peak)


def test_pretraining_uses_the_core_schedule() -> None:
    from deepwide.models.pretrain import lr_at, quick_config

    cfg = quick_config()
    total = 50
    warm = int(cfg.warmup_frac * total)
    assert [lr_at(s, total, cfg) for s in range(total)] == [warmup_cosine_lr(s, total, cfg.lr, warm)
                                                            for s in range(total)]


# ----------------------------------------------------------------------------------- checkpoints
def test_atomic_torch_save_is_weights_only_loadable_and_leaves_no_temporary(tmp_path: Path) -> None:
    atomic_torch_save({"step": 3, "w": torch.arange(4)}, tmp_path / "c.pt")
    back = load_checkpoint(tmp_path / "c.pt", what="test checkpoint", hint="rerun")
    assert back["step"] == 3 and torch.equal(back["w"], torch.arange(4))
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


def test_load_checkpoint_refuses_a_non_dict_in_one_line(tmp_path: Path) -> None:
    atomic_torch_save([1, 2], tmp_path / "c.pt")
    with pytest.raises(CorruptFileError, match=r"not a deepwide test checkpoint \(it holds a list, not a dict\); rerun"):
        load_checkpoint(tmp_path / "c.pt", what="test checkpoint", hint="rerun")


def test_check_fields_names_the_missing_or_mistyped_field() -> None:
    kinds = {"step": int, "model": dict}
    check_fields({"step": 1, "model": {}}, kinds, ValueError)
    with pytest.raises(ValueError, match="missing model"):
        check_fields({"step": 1}, kinds, ValueError)
    with pytest.raises(ValueError, match="'step' is bool, not int"):
        check_fields({"step": True, "model": {}}, kinds, ValueError)


def test_remove_stale_temporaries_clears_only_cut_short_writes(tmp_path: Path) -> None:
    (tmp_path / "state.pt").write_bytes(b"x")
    (tmp_path / ".state.pt.k2j3h4.tmp").write_bytes(b"half")
    (tmp_path / ".hidden").write_bytes(b"keep")
    (tmp_path / "notes.tmp").write_bytes(b"keep")
    removed = remove_stale_temporaries(tmp_path, "state.pt")
    assert [p.name for p in removed] == [".state.pt.k2j3h4.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".hidden", "notes.tmp", "state.pt"]
    assert remove_stale_temporaries(tmp_path / "missing") == []


# ----------------------------------------------------------------------------------- RNG state
@pytest.mark.parametrize("seed", [0, 7, 2**40])
def test_rng_state_round_trips_through_a_weights_only_checkpoint(tmp_path: Path, seed: int) -> None:
    seed_everything(seed)
    random.random(), np.random.normal(), torch.rand(1)  # noqa: B018 - move every stream
    atomic_torch_save({"rng": rng_state()}, tmp_path / "r.pt")
    want = (random.random(), np.random.normal(size=3).tolist(), torch.rand(3).tolist())
    seed_everything(seed + 1)
    set_rng_state(load_torch_file(tmp_path / "r.pt", hint="")["rng"])
    assert (random.random(), np.random.normal(size=3).tolist(), torch.rand(3).tolist()) == want


def test_generator_state_round_trips() -> None:
    rng = np.random.default_rng(5)
    rng.integers(0, 10, 7)
    saved = generator_state(rng)
    want = rng.integers(0, 1000, 5).tolist()
    other = np.random.default_rng(99)
    set_generator_state(other, saved)
    assert other.integers(0, 1000, 5).tolist() == want


# ----------------------------------------------------------------------------------- metrics log
def test_jsonl_append_and_read(tmp_path: Path) -> None:
    log = tmp_path / "m.jsonl"
    append_jsonl(log, {"b": 1, "a": 2})
    append_jsonl(log, {"b": 1, "a": 2}, sort_keys=True)
    assert log.read_text() == '{"b": 1, "a": 2}\n{"a": 2, "b": 1}\n'
    assert [r for _, r in read_jsonl(log)] == [{"b": 1, "a": 2}, {"a": 2, "b": 1}]
    assert read_jsonl(tmp_path / "missing.jsonl") == []


def test_jsonl_torn_last_line_is_dropped_and_a_bad_middle_line_is_one_error(tmp_path: Path, caplog) -> None:
    log = tmp_path / "m.jsonl"
    log.write_text('{"step": 1}\n\n{"step": 2}\n{"step": 3, "lo')
    with caplog.at_level(logging.WARNING):
        assert [r for _, r in read_jsonl(log)] == [{"step": 1}, {"step": 2}]
    assert "torn last line" in caplog.text
    log.write_text('{"step": 1}\n[1, 2]\n{"step": 3}\n')
    with pytest.raises(ConfigError, match=r"line 2 of .*m.jsonl is not a log record; fix or delete that line"):
        read_jsonl(log)
    assert [r for _, r in read_jsonl(log, is_record=lambda r: True)][1] == [1, 2]


def test_rewrite_jsonl_keeps_chosen_records_and_ends_every_line(tmp_path: Path) -> None:
    log = tmp_path / "m.jsonl"
    log.write_text('{"step": 1}\n{"step": 2}\n{"step": 3}')  # complete, but no final newline
    rewrite_jsonl(log)
    assert log.read_text() == '{"step": 1}\n{"step": 2}\n{"step": 3}\n'
    rewrite_jsonl(log, lambda r: r["step"] <= 2)
    assert [json.loads(line) for line in log.read_text().splitlines()] == [{"step": 1}, {"step": 2}]
    append_jsonl(log, {"step": 3})
    assert log.read_text().splitlines()[-1] == '{"step": 3}'
    rewrite_jsonl(tmp_path / "missing.jsonl")
    assert not (tmp_path / "missing.jsonl").exists()
