"""The deep-versus-wide section of a study run with several distillation seeds (#19): one pair
per student group, the advantage averaged over the seeds, the interval combining seeds and
utterances as the report states — checked against a longhand computation."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from scipy import stats

from deepwide.figures.findings import Comparison, combine_seeds
from deepwide.figures.report import write_report
from tests.figures.fake_results import (
    DEEP,
    DISTIL,
    TEACHER,
    WIDE,
    study_roles,
    write_fake_results,
    write_study_json,
)


def _mover(a, a_lo, a_hi, b, b_lo, b_hi):
    d = a - b
    return d, d - math.hypot(a - a_lo, b_hi - b), d + math.hypot(a_hi - a, b - b_lo)


def _combined(per_seed):
    """Longhand: mean advantage; each side's mean MOVER half-width and the t half-width of the
    seed mean, added in quadrature."""
    n = len(per_seed)
    mean = sum(d for d, _, _ in per_seed) / n
    sd = math.sqrt(sum((d - mean) ** 2 for d, _, _ in per_seed) / (n - 1))
    seed_half = stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)
    low = sum(d - lo for d, lo, _ in per_seed) / n
    high = sum(hi - d for d, _, hi in per_seed) / n
    return mean, mean - math.hypot(low, seed_half), mean + math.hypot(high, seed_half)


def test_combine_seeds_matches_the_longhand_rule() -> None:
    per_seed = [(0.05, 0.01, 0.08), (0.02, -0.03, 0.06), (0.04, 0.00, 0.09)]
    c = combine_seeds([Comparison("phone", "d", "w", *x) for x in per_seed])
    assert (c.adv, c.lo, c.hi) == pytest.approx(_combined(per_seed), abs=1e-12)
    one = Comparison("phone", "d", "w", 0.05, 0.01, 0.08)
    assert combine_seeds([one]) is one


def test_report_pairs_groups_once_and_averages_their_seeds(tmp_path: Path) -> None:
    root = tmp_path / "results"
    fake = write_fake_results(root)
    write_study_json(root, study_roles())
    study = json.loads((root / "study.json").read_text())
    # two "seeds" per group, made of the fake's models (the mechanics, not the shapes, are tested)
    study["seeds"] = {DEEP: {"group": "deep-l2l", "seed": 0}, TEACHER: {"group": "deep-l2l", "seed": 1},
                      WIDE: {"group": "wide-predlayer", "seed": 0}, DISTIL: {"group": "wide-predlayer", "seed": 1}}
    (root / "study.json").write_text(json.dumps(study))
    _, md_path = write_report(root, tmp_path / "report")
    md = md_path.read_text()
    assert "deep-l2l (12 layers × width 128" in md and "each distilled with 2 seeds (0, 1)" in md
    assert "against wide-predlayer" in md
    p = fake.probe
    per_seed = [
        _mover(*[float(p[v].sel(model=m, task="ks")) for m in (a, b) for v in ("ws_score", "ws_ci_low", "ws_ci_high")])
        for a, b in ((DEEP, WIDE), (TEACHER, DISTIL))
    ]
    d, lo, hi = _combined(per_seed)
    row = next(line for line in md.splitlines() if line.startswith("| ks | content | deep |"))
    assert f"{100 * d:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]" in row
