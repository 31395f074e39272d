"""Model roles: read from study.json when the study recorded them, guessed (with a warning) when not."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from deepwide.errors import StoreError
from deepwide.figures.report import build_report, render_markdown
from deepwide.figures.results import load_results, model_roles
from tests.figures.fake_results import (
    DEEP,
    DISTIL,
    TEACHER,
    WIDE,
    build_probe,
    study_roles,
    write_fake_results,
    write_study_json,
)

BIG = "hubert-base"  # a larger reference model probed beside the study's own


def _expected_roles() -> dict[str, str]:
    vocab = {"teacher": "teacher", "student": "student", "random": "null", "baseline": "reference"}
    return {m: vocab[r] for m, r in study_roles().items()}


def _roles_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "role" in r.getMessage() and r.levelno == logging.WARNING]


def test_without_recorded_roles_they_are_guessed_and_a_warning_says_so(tmp_path: Path, caplog) -> None:
    root = write_fake_results(tmp_path / "r", parts=("probe", "distill")).root
    write_study_json(root, roles=None)  # what `deepwide study` wrote before it recorded roles
    res = load_results(root)
    assert res.recorded_roles is None
    with caplog.at_level(logging.WARNING, logger="deepwide.figures"):
        roles = model_roles(res)
        assert model_roles(res) == roles  # asked again: same answer, no second warning
    assert roles == _expected_roles()
    (msg,) = _roles_warnings(caplog)
    assert "records no model roles" in msg and f"teacher {TEACHER}" in msg
    assert "the one trained model not in distill.csv" in msg


def test_recorded_roles_are_used_and_nothing_is_guessed(tmp_path: Path, caplog) -> None:
    root = write_fake_results(tmp_path / "r").root
    write_study_json(root, study_roles())
    res = load_results(root)
    assert res.recorded_roles == study_roles()
    with caplog.at_level(logging.WARNING, logger="deepwide.figures"):
        assert model_roles(res) == _expected_roles()
    assert _roles_warnings(caplog) == []


def _with_big_reference(root: Path) -> None:
    """Add a trained reference model with more parameters than the teacher to probe.nc."""
    probe = build_probe()
    big = probe.sel(model=[TEACHER]).assign_coords(model=[BIG])
    big["params"] = ("model", np.array([94_680_000]))
    xr.concat([probe, big], dim="model", data_vars="minimal", coords="minimal", compat="override").to_netcdf(root / "probe.nc")


def test_recorded_roles_win_where_the_guess_is_wrong(tmp_path: Path, caplog) -> None:
    """No similarity files and two trained models outside distill.csv: the guess takes the
    model with the most parameters for the teacher; the recorded roles say otherwise."""
    root = write_fake_results(tmp_path / "r", parts=("distill",)).root
    _with_big_reference(root)
    with caplog.at_level(logging.WARNING, logger="deepwide.figures"):
        guessed = model_roles(load_results(root))
    assert guessed[BIG] == "teacher" and guessed[TEACHER] == "reference"  # the old guess
    assert "the trained model with the most parameters" in _roles_warnings(caplog)[0]

    write_study_json(root, {**study_roles(), BIG: "baseline"})
    res = load_results(root)
    roles = model_roles(res)
    assert roles[TEACHER] == "teacher" and roles[BIG] == "reference"
    assert {m for m, r in roles.items() if r == "student"} == {DEEP, WIDE, DISTIL}
    md = render_markdown(build_report(res)[0])
    assert f"| {TEACHER} | teacher |" in md and f"| {BIG} | reference |" in md


def test_a_model_the_roles_do_not_name_is_a_reference_with_a_warning(tmp_path: Path, caplog) -> None:
    root = write_fake_results(tmp_path / "r", parts=("probe",)).root
    roles = study_roles()
    del roles[DISTIL], roles[f"random:{DISTIL}"]
    write_study_json(root, roles)
    with caplog.at_level(logging.WARNING, logger="deepwide.figures"):
        got = model_roles(load_results(root))
    assert got[DISTIL] == "reference" and got[f"random:{DISTIL}"] == "null"
    (msg,) = _roles_warnings(caplog)
    assert f"records no role for {DISTIL}, random:{DISTIL}" in msg


def test_recorded_roles_that_agree_with_the_guess_leave_the_report_unchanged(tmp_path: Path) -> None:
    root = write_fake_results(tmp_path / "r").root
    guessed = render_markdown(build_report(load_results(root))[0])
    write_study_json(root, study_roles())
    recorded = render_markdown(build_report(load_results(root))[0])
    assert recorded == guessed


def test_malformed_roles_are_one_line_store_errors(tmp_path: Path) -> None:
    root = write_fake_results(tmp_path / "r", parts=("probe",)).root
    write_study_json(root, {**study_roles(), DEEP: "pupil"})
    with pytest.raises(StoreError, match=r"model 'student-12x128-l2l' has role 'pupil'; a role is one of teacher, student, random, baseline") as ei:
        load_results(root)
    assert "\n" not in str(ei.value)
    (root / "study.json").write_text('{"roles": ["teacher"]}')
    with pytest.raises(StoreError, match='"roles" must map model ids'):
        load_results(root)
    (root / "study.json").write_text("{not json")
    with pytest.raises(StoreError, match="cannot be read as JSON"):
        load_results(root)
