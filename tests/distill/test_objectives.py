"""Layer mappings, heads and the masked loss of the two objectives."""

from __future__ import annotations

import math

import pytest
import torch

from deepwide.distill.objectives import (
    OBJECTIVES,
    build_objective,
    distill_loss,
    spread_layers,
)
from deepwide.errors import ConfigError, UnknownNameError


def test_spread_layers_examples_and_properties() -> None:
    assert spread_layers(3, 12) == (4, 8, 12)
    assert spread_layers(12, 12) == tuple(range(1, 13))
    assert spread_layers(1, 7) == (7,)
    for n in range(1, 25):
        for k in range(1, n + 1):
            layers = spread_layers(k, n)
            assert len(set(layers)) == k and layers[-1] == n and layers == tuple(sorted(layers))
            assert all(1 <= x <= n for x in layers)
    with pytest.raises(ValueError):
        spread_layers(5, 4)


def test_registry_lists_both_objectives() -> None:
    assert OBJECTIVES.names() == ["l2l", "predlayer"]
    with pytest.raises(UnknownNameError, match="l2l, predlayer"):
        OBJECTIVES.get("fitnet")


@pytest.mark.parametrize(
    ("objective", "depth", "teacher", "targets", "student_layers", "teacher_layers"),
    [
        ("predlayer", 2, 12, None, (2, 2, 2), (4, 8, 12)),
        ("predlayer", 3, 12, (3, 6, 9, 12), (3, 3, 3, 3), (3, 6, 9, 12)),
        ("predlayer", 2, 2, None, (2, 2), (1, 2)),
        ("l2l", 12, 12, None, tuple(range(1, 13)), tuple(range(1, 13))),
        ("l2l", 3, 12, None, (1, 2, 3), (4, 8, 12)),
        ("l2l", 12, 4, None, (3, 6, 9, 12), (1, 2, 3, 4)),
        ("l2l", 12, 12, (4, 8, 12), (4, 8, 12), (4, 8, 12)),
        ("l2l", 6, 12, (6, 12), (3, 6), (6, 12)),
    ],
)
def test_default_and_given_mappings(objective, depth, teacher, targets, student_layers, teacher_layers) -> None:
    obj = build_objective(objective, depth, 16, teacher, 24, targets)
    assert obj.mapping.student_layers == student_layers
    assert obj.mapping.teacher_layers == teacher_layers


@pytest.mark.parametrize(
    ("objective", "depth", "targets", "message"),
    [
        ("predlayer", 2, (4, 13), "outside the teacher's layers 1..12"),
        ("predlayer", 2, (0, 4), "outside"),
        ("l2l", 2, (4, 8, 12), "exceed the student's 2 layers"),
        ("l2l", 4, (8, 4), "ascending"),
    ],
)
def test_bad_targets_are_one_line_config_errors(objective, depth, targets, message) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        build_objective(objective, depth, 16, 12, 24, targets)
    assert "\n" not in str(info.value)


def test_predlayer_heads_read_the_last_layer() -> None:
    torch.manual_seed(0)
    obj = build_objective("predlayer", 3, 16, 12, 24)
    heads = obj.build_heads()
    assert [type(h).__name__ for h in heads] == ["Linear"] * 3
    assert all(h.weight.shape == (24, 16) for h in heads)
    states = [torch.randn(2, 5, 16) for _ in range(4)]
    preds = obj.predict(heads, states)
    assert [p.shape for p in preds] == [(2, 5, 24)] * 3
    for h, p in zip(heads, preds, strict=True):
        torch.testing.assert_close(p, h(states[3]))
    # changing an earlier layer does not change the predictions
    states[1] = states[1] + 1
    torch.testing.assert_close(obj.predict(heads, states)[0], preds[0])


def test_l2l_projects_only_when_widths_differ() -> None:
    same = build_objective("l2l", 3, 24, 12, 24)
    assert [type(h).__name__ for h in same.build_heads()] == ["Identity"] * 3
    states = [torch.full((1, 2, 24), float(i)) for i in range(4)]
    preds = same.predict(same.build_heads(), states)
    assert [float(p[0, 0, 0]) for p in preds] == [1.0, 2.0, 3.0]  # student layers 1, 2, 3

    narrow = build_objective("l2l", 12, 16, 12, 24, (4, 8, 12))
    heads = narrow.build_heads()
    assert [type(h).__name__ for h in heads] == ["Linear"] * 3
    states = [torch.randn(1, 3, 16) for _ in range(13)]
    preds = narrow.predict(heads, states)
    for h, s, p in zip(heads, (4, 8, 12), preds, strict=True):
        torch.testing.assert_close(p, h(states[s]))


def _naive_loss(preds, targets, lengths, lam):
    """Row-by-row, frame-by-frame float64 reference."""
    per = []
    for p, t in zip(preds, targets, strict=True):
        l1s, sims, n = 0.0, 0.0, 0
        for b, length in enumerate(lengths.tolist()):
            for f in range(length):
                x, y = p[b, f].double(), t[b, f].double()
                l1s += float((x - y).abs().mean())
                cos = float(x @ y / (x.norm() * y.norm()))
                sims += -math.log(1 / (1 + math.exp(-cos)))
                n += 1
        per.append(l1s / n + lam * sims / n)
    return sum(per) / len(per), per


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_loss_matches_naive_implementation(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    preds = [torch.randn(3, 7, 5, generator=g) for _ in range(2)]
    targets = [torch.randn(3, 7, 5, generator=g) for _ in range(2)]
    lengths = torch.tensor([7, 4, 1])
    total, per = distill_loss(preds, targets, lengths, cos_weight=0.7)
    ref_total, ref_per = _naive_loss(preds, targets, lengths, 0.7)
    assert float(total) == pytest.approx(ref_total, rel=1e-5)
    assert per.tolist() == pytest.approx(ref_per, rel=1e-5)


def test_loss_of_perfect_prediction_is_the_cosine_floor() -> None:
    t = [torch.randn(2, 4, 8)]
    total, _ = distill_loss(t, t, torch.tensor([4, 2]))
    assert float(total) == pytest.approx(math.log1p(math.exp(-1.0)), rel=1e-6)


def test_padding_never_reaches_the_loss() -> None:
    g = torch.Generator().manual_seed(3)
    preds = [torch.randn(2, 6, 4, generator=g, requires_grad=True)]
    targets = [torch.randn(2, 6, 4, generator=g)]
    lengths = torch.tensor([6, 3])
    total, _ = distill_loss(preds, targets, lengths)
    garbage_p = preds[0].detach().clone()
    garbage_t = targets[0].clone()
    garbage_p[1, 3:] = float("nan")
    garbage_t[1, 3:] = 1e6
    total2, _ = distill_loss([garbage_p], [garbage_t], lengths)
    assert float(total2) == float(total.detach())
    total.backward()
    assert torch.all(preds[0].grad[1, 3:] == 0)
    # a mean that included padding would differ
    unmasked, _ = distill_loss(preds, targets, torch.tensor([6, 6]))
    assert float(unmasked.detach()) != pytest.approx(float(total.detach()))
