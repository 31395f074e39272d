"""Parameter-matched sweeps: the budget solver picks widths, every student is trained once."""

from __future__ import annotations

import csv
import json

import pytest

from deepwide.distill.sweep import plan_sweep, run_sweep
from deepwide.errors import ConfigError
from tests.distill.conftest import base_options, tiny_encoder_config

BUDGET = 60_000


def _options(teacher_dir, corpus_dir, **kw):
    opts = base_options(teacher_dir, corpus_dir, steps=2, **kw)
    for k in ("depth", "width", "ffn", "heads"):
        opts.pop(k)
    return opts


def test_plan_matches_the_budget_deep_narrow_and_shallow_wide(teacher_dir, corpus_dir) -> None:
    from deepwide.models import build_encoder, count_params, student_config

    teacher_cfg = tiny_encoder_config()
    entries = plan_sweep(_options(teacher_dir, corpus_dir), teacher_cfg, BUDGET, (1, 4), ("predlayer", "l2l"),
                         head_dim=16, tolerance=0.1)
    assert [e.name for e in entries] == ["1x64-predlayer", "1x64-l2l", "4x32-predlayer", "4x32-l2l"]
    for e in entries:
        assert abs(e.deviation) <= 0.1
        assert e.config.teacher == str(teacher_dir) and e.config.steps == 2
        cfg = student_config(teacher_cfg, e.config.depth, e.config.width, ffn=e.config.ffn, heads=e.config.heads)
        assert cfg.frontend == teacher_cfg.frontend
        assert count_params(cfg) == e.params == build_encoder(cfg).num_params()
        assert e.deviation == pytest.approx((e.params - BUDGET) / BUDGET)
    shallow, deep = entries[0].config, entries[2].config
    assert shallow.width > deep.width and shallow.depth < deep.depth
    with pytest.raises(ConfigError, match=r"at depth 4 .* off the 0.060 M budget"):
        plan_sweep(_options(teacher_dir, corpus_dir), teacher_cfg, BUDGET, (1, 4), ("l2l",), head_dim=16, tolerance=0.05)


def test_sweep_trains_each_student_and_resumes(tmp_path, teacher_dir, corpus_dir) -> None:
    entries = plan_sweep(_options(teacher_dir, corpus_dir), tiny_encoder_config(), BUDGET, (1, 4), ("predlayer", "l2l"),
                         head_dim=16)
    rows = run_sweep(entries, tmp_path / "sweep", BUDGET, progress=False)
    assert [r["model"] for r in rows] == [
        "student-1x64-predlayer", "student-1x64-l2l", "student-4x32-predlayer", "student-4x32-l2l",
    ]
    for row, e in zip(rows, entries, strict=True):
        assert row["params"] == e.params and abs(row["deviation"]) <= 0.1
        assert (tmp_path / "sweep" / e.name / "model.safetensors").is_file()
    with (tmp_path / "sweep" / "sweep.csv").open() as fh:
        table = list(csv.DictReader(fh))
    assert [int(r["params"]) for r in table] == [r["params"] for r in rows]
    assert {r["objective"] for r in table} == {"predlayer", "l2l"}
    # a rerun with resume trains nothing and returns the same table
    before = (tmp_path / "sweep" / "1x64-l2l" / "model.safetensors").stat().st_mtime_ns
    again = run_sweep(entries, tmp_path / "sweep", BUDGET, resume=True, progress=False)
    assert json.dumps(again) == json.dumps(rows)  # as JSON: a NaN plateau_fall (2 steps) equals itself
    assert {"heldout_loss", "plateau_fall", "plateaued"} <= set(table[0])
    assert (tmp_path / "sweep" / "1x64-l2l" / "model.safetensors").stat().st_mtime_ns == before
