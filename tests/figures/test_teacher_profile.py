"""The report's teacher profiles (#19): layer-0, peak and last-layer scores and the slope with
relative depth, checked against scipy's linear regression on the fake results."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from deepwide.figures.findings import teacher_profiles
from deepwide.figures.report import write_report
from tests.figures.fake_results import TEACHER, study_roles, write_fake_results, write_study_json


def test_teacher_profiles_match_scipy_and_reach_the_report(tmp_path: Path) -> None:
    root = tmp_path / "results"
    fake = write_fake_results(root)
    write_study_json(root, study_roles())
    prof = teacher_profiles(fake.probe, TEACHER).set_index("task")
    L = int(fake.probe["num_layers"].sel(model=TEACHER))
    for task in ("phone", "sid"):
        s = fake.probe["score"].sel(model=TEACHER, task=task).values[: L + 1].astype(float)
        fit = stats.linregress(np.arange(L + 1) / L, s)
        assert prof.loc[task, "slope"] == pytest.approx(fit.slope, rel=1e-9)
        assert prof.loc[task, "first"] == s[0] and prof.loc[task, "last"] == s[-1]
        assert prof.loc[task, "peak"] == s.max() and prof.loc[task, "peak_layer"] == int(s.argmax())
    # lower is better: the peak is the minimum
    eer = fake.probe["score"].sel(model=TEACHER, task="asv").values[: L + 1].astype(float)
    assert prof.loc["asv", "peak"] == np.nanmin(eer)
    _, md = write_report(root, tmp_path / "report")
    text = md.read_text()
    assert "### What the teacher offers: its layerwise profiles" in text
    row = next(line for line in text.splitlines() if line.startswith("| phone | content | ") and "of " in line)
    assert f"{100 * prof.loc['phone', 'slope']:.1f} |" in row
