"""``deepwide study``: the whole deep-versus-wide analysis as one cached plan.

The only package that imports stages: each step calls one stage's public API (extract,
distill, probing, analysis, figures). :mod:`~deepwide.study.config` holds the study's
settings and checks them against every stage before anything runs;
:mod:`~deepwide.study.plan` turns them into cached steps; :mod:`~deepwide.study.stages` is the
work of each step; :mod:`~deepwide.study.run` runs the plan.
"""

from __future__ import annotations

from deepwide.study.config import StudyConfig, check_stage_settings, load_study_config
from deepwide.study.plan import Step, Student, build_plan, plan_students
from deepwide.study.run import run_study

__all__ = ["Step", "Student", "StudyConfig", "build_plan", "check_stage_settings", "load_study_config",
           "plan_students", "run_study"]
