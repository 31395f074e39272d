"""DistillConfig validation and the small parsers the CLI uses."""

from __future__ import annotations

import pytest

from deepwide.config import config_from_dict, config_to_dict
from deepwide.distill.config import (
    DistillConfig,
    make_config,
)
from deepwide.errors import ConfigError


def _cfg(**kw) -> DistillConfig:
    opts = dict(teacher="tiny-teacher", corpus="synth", steps=100, depth=2, width=64)
    opts.update(kw)
    return make_config(**opts)


def test_defaults_follow_the_reference_recipe() -> None:
    c = _cfg()
    assert (c.lr, c.betas, c.eps, c.warmup, c.grad_clip, c.objective) == (2e-4, (0.9, 0.98), 1e-6, 0.07, 5.0, "predlayer")
    assert c.max_crop_seconds * 16_000 == 250_000
    assert c.warmup_steps == 7 and c.student_name() == "2x64-predlayer"
    assert _cfg(depth=None, width=None, student="distilhubert").student_name() == "distilhubert-predlayer"


def test_round_trips_through_a_dict() -> None:
    c = _cfg(targets=(4, 8, 12), teacher_targets="t.zarr", dropout=0.1)
    assert config_from_dict(DistillConfig, config_to_dict(c)) == c


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"student": "distilhubert"}, "not both"),
        ({"depth": None}, "give a student"),
        ({"depth": None, "width": None, "student": "distilhubert", "ffn": 8}, "only apply"),
        ({"objective": "kd"}, "valid objectives: l2l, predlayer"),
        ({"targets": (8, 4)}, "ascending"),
        ({"targets": (0,)}, "≥ 1"),
        ({"steps": 0}, "steps"),
        ({"precision": "fp8"}, "precision"),
        ({"warmup": 1.0}, "warmup"),
        ({"lr": -1.0}, "lr"),
        ({"device": "tpu"}, "device"),
        ({"splits": ()}, "splits"),
        ({"min_utt_seconds": 0.01}, "min_utt_seconds"),
        ({"dropout": 1.5}, "dropout"),
    ],
)
def test_bad_configs_are_one_line_config_errors(kw, message) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        _cfg(**kw)
    assert "\n" not in str(info.value)


