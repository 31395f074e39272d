"""The two bundled teachers (#19): `tiny-teacher` (speaker-aware) and `tiny-teacher-content` (the
first bundled one, masked prediction only, restored from commit 9c2c593) — each loads by name
with its own id and the hash its docs record, carries a model card that agrees with its weights
and its section of docs/teacher.md, and records the recipe of its configs/ file."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from deepwide.models import load_model
from deepwide.models.zoo import assets_dir

ROOT = Path(__file__).resolve().parents[2]
CONTENT_HEADING = "## The first bundled teacher"

# name -> (weights hash recorded in docs/teacher.md, its recipe in configs/)
BUNDLED = {
    "tiny-teacher": ("1ce88c91cbeb167a", "tiny-teacher.toml"),
    "tiny-teacher-content": ("686702520ac7baea", "tiny-teacher-content.toml"),
}


def _docs_section(name: str) -> str:
    """The part of docs/teacher.md about ``name``: the content teacher's section up to its
    trials, or everything before it for `tiny-teacher`."""
    docs = (ROOT / "docs" / "teacher.md").read_text(encoding="utf-8")
    before, content = docs.split(CONTENT_HEADING, 1)
    return content.split("### Trials", 1)[0] if name == "tiny-teacher-content" else before


@pytest.mark.parametrize("name", sorted(BUNDLED))
def test_bundled_teacher_loads_by_name_with_its_id_and_recorded_hash(name: str) -> None:
    weights_hash, _ = BUNDLED[name]
    model = load_model(name)
    assert model.model_id == name
    assert model.weights_hash() == weights_hash
    meta = json.loads((assets_dir() / name / "config.json").read_text(encoding="utf-8"))
    assert meta["model_id"] == name and meta["weights_hash"] == weights_hash
    assert f"Weights hash `{weights_hash}`" in _docs_section(name)
    twin = load_model(f"random:{name}", seed=0)
    assert twin.model_id == f"random:{name}" and twin.config == model.config
    assert twin.weights_hash() != weights_hash


@pytest.mark.parametrize("name", sorted(BUNDLED))
def test_bundled_teacher_carries_a_model_card_that_agrees_with_its_weights_and_docs(name: str) -> None:
    card = (assets_dir() / name / "README.md").read_text(encoding="utf-8")
    assert card.startswith("---\n") and "\nlicense: mit\n" in card.split("\n---\n", 1)[0]
    assert card.split("\n---\n", 1)[1].lstrip().startswith(f"# {name}\n")
    assert f'load_model("{name}")' in card and f"`random:{name}`" in card
    model = load_model(name)
    assert f"Weights hash `{model.weights_hash()}`" in card
    assert f"{model.num_params():,} parameters" in card
    assert f"`configs/{BUNDLED[name][1]}`" in card
    # every figure of the card's evaluation table is one of its own section of docs/teacher.md
    section = _docs_section(name)
    table = card.split("## Evaluation", 1)[1].split("## Limitations", 1)[0]
    figures = re.findall(r"\d+\.\d %|\[\d+\.\d, \d+\.\d\]|\(layer \d+\)", table)
    assert len(figures) >= 30
    assert [f for f in figures if f not in section] == []


@pytest.mark.parametrize("name", sorted(BUNDLED))
def test_bundled_teacher_is_the_finished_recipe_of_its_config(name: str) -> None:
    from deepwide.config import config_from_dict, load_toml
    from deepwide.models.pretrain import PretrainConfig

    recipe = config_from_dict(PretrainConfig, load_toml(ROOT / "configs" / BUNDLED[name][1]))
    meta = json.loads((assets_dir() / name / "config.json").read_text(encoding="utf-8"))
    extra = meta["extra"]
    # read with today's defaults (fields added since, like contrastive_weight, are off by default)
    assert config_from_dict(PretrainConfig, extra["pretrain"]["config"]) == recipe
    assert extra["pretrain"]["seed"] == 0
    assert extra["total_steps_done"] == extra["total_steps_planned"] == sum(recipe.steps)
    assert meta["config"]["depth"] == 12 and meta["num_params"] == 10_130_816


def test_the_two_teachers_share_an_architecture_but_not_their_hidden_states() -> None:
    torch.set_num_threads(1)
    wav = 0.1 * torch.randn(1, 16_000, generator=torch.Generator().manual_seed(0))  # 1 s
    states = {}
    with torch.no_grad():
        for name in BUNDLED:
            model = load_model(name)
            layers, frames = model.hidden_states(wav)
            assert len(layers) == 13 and frames.tolist() == [49]
            assert all(h.shape == (1, 49, 256) and torch.isfinite(h).all() for h in layers)
            states[name] = layers
    a, b = states.values()
    assert all(not torch.allclose(x, y, atol=1e-2) for x, y in zip(a, b, strict=True))
