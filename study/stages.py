"""The work of the study's steps: each calls one stage's public API on the study's settings."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import xarray as xr

from deepwide.analysis import (
    LabelsConfig,
    SimilarityConfig,
    SpectrumConfig,
    run_labels,
    run_similarity,
    run_spectrum,
)
from deepwide.config import atomic_write_json, atomic_write_text, config_to_dict
from deepwide.corpora import resolve_corpus
from deepwide.devices import resolve_device
from deepwide.distill import make_config, read_heldout, read_metrics, read_result, train_student
from deepwide.extract import ExtractConfig, extract_features
from deepwide.figures import make_figures, write_report
from deepwide.models import load_model
from deepwide.probing.run import probe_stores, write_results
from deepwide.store import read_attrs

if TYPE_CHECKING:
    from deepwide.study.config import StudyConfig
    from deepwide.study.plan import Step, Student

def resolve_manifest(spec: str) -> Any:
    """The corpus named by ``spec``."""
    return resolve_corpus(spec)


def distill_config(cfg: StudyConfig, st: Student, targets: Path | None, seed: int) -> Any:
    """The distillation run of student ``st`` (from stored teacher ``targets`` when given)."""
    return make_config(
        teacher=cfg.teacher, corpus=cfg.corpus, steps=cfg.distill_steps, objective=st.objective,
        depth=st.depth, width=st.width, ffn=st.ffn, heads=st.heads, targets=st.targets,
        batch_seconds=cfg.distill_batch_seconds, max_crop_seconds=cfg.distill_max_crop_seconds,
        lr=cfg.distill_lr, teacher_targets=str(targets) if targets else None, seed=seed,
        device=cfg.device, checkpoint_every=max(100, cfg.distill_steps), log_every=max(1, cfg.distill_steps // 30),
    )


def _fresh(path: Path) -> None:
    """Remove a half-written output of a stale step (never anything else)."""
    if path.exists():
        shutil.rmtree(path)


def _progress() -> bool:
    return sys.stderr.isatty()


def extract_store(spec: str, corpus: str, out: Path, frames: str,
                  splits: Sequence[str] | None, cfg: StudyConfig, seed: int, *,
                  kinds: Sequence[str] | None = None, max_utts: int | None = None) -> None:
    """Extract ``spec`` on ``corpus`` into ``out`` (the random twin of a student folder is
    called ``random:<student model id>`` by :func:`load_model`, so results pair the two);
    ``kinds`` and ``max_utts`` restrict the utterances (:class:`ExtractConfig`)."""
    _fresh(out)
    device = str(resolve_device(cfg.device))
    encoder = load_model(spec, seed=seed, device=device)
    ecfg = ExtractConfig(frames=frames, dtype=cfg.store_dtype, splits=tuple(splits) if splits else None,
                         batch_seconds=cfg.extract_batch_seconds, seed=seed,
                         kinds=tuple(kinds) if kinds else None, max_utts=max_utts)
    extract_features(encoder, resolve_manifest(corpus), out, ecfg, device=device, progress=_progress())


def distill_student(dcfg: Any, out: Path) -> None:
    """Distil one student into run folder ``out``."""
    _fresh(out)
    train_student(dcfg, out, progress=_progress())


def probe_models(main: Sequence[Path], nulls: Sequence[Path], tasks: Sequence[str], pcfg: Any, out: Path,
                 seed: int) -> None:
    """Probe every store of ``main`` (with ``nulls`` as their random twins) on ``tasks``."""
    _fresh(out)
    res = probe_stores([str(p) for p in main], list(tasks), pcfg, nulls=[str(p) for p in nulls], seed=seed)
    write_results(res, out)


def similarity_grid(a: Path, b: Path, null: Path | None, measure: str, cfg: StudyConfig, out: Path,
                    seed: int) -> None:
    """The ``measure`` grid between stores ``a`` and ``b`` (and ``null``, ``b``'s random twin)."""
    _fresh(out)
    run_similarity(a, b, out, SimilarityConfig(measure=measure, frames_per_utt=cfg.frames_per_utt, seed=seed),
                   null=null)


def label_cca(stores: Sequence[Path], cfg: StudyConfig, out: Path, seed: int) -> None:
    """Label-CCA of every store, per layer."""
    _fresh(out)
    run_labels(stores, out, LabelsConfig(labels=tuple(cfg.labels), frames_per_utt=cfg.frames_per_utt, seed=seed))


def effective_rank(stores: Sequence[Path], out: Path, seed: int) -> None:
    """Effective rank of every store, per layer."""
    _fresh(out)
    run_spectrum(stores, out, SpectrumConfig(seed=seed))


def collect_results(results: Path, steps: Sequence[Step], students: Sequence[Student],
                    student_dirs: Mapping[str, tuple[Path, str]], roles: Mapping[Path, str],
                    twins: Mapping[Path, Path], cfg: StudyConfig, seed: int) -> None:
    """Gather every step's result files into ``results/`` (the folder figures read) and write
    ``distill.csv`` and ``study.json`` (the config, the seed, and each model's role:
    ``teacher``, ``student``, ``random`` or ``baseline``, keyed by model id; ``roles`` maps
    each store to its model's role; ``seeds``: for a study with several distillation seeds,
    each student's group and seed, keyed by model id; ``twins``: each trained model's random
    twin, keyed by model id, from ``twins``, which maps a model's store to its twin's — students
    of one shape share one twin), and ``distill_curves.csv``: each
    student's training and held-out loss per logged step (:func:`distill_curves`)."""
    probe_parts = sorted((results / "steps").glob("probe*/probe*.nc"))
    if len(probe_parts) == 1:
        for suffix in (".nc", ".csv"):
            shutil.copyfile(probe_parts[0].with_suffix(suffix), results / f"probe{suffix}")
    elif probe_parts:  # tasks probed on several corpora: one probe.nc with every task
        # without the parts' encodings: the first part's string widths (task 'ic' is <U2) would
        # cut the merged names ('phone' -> 'ph') when it is written
        parts = [xr.load_dataset(p).drop_encoding() for p in probe_parts]
        merged = xr.concat(parts, dim="task", data_vars="minimal", coords="minimal", compat="override",
                           join="outer")
        for name, var in parts[0].data_vars.items():  # counts of models a part did not probe: 0, as probe writes
            if var.dtype.kind in "iu" and merged[name].dtype != var.dtype:
                merged[name] = merged[name].fillna(0).astype(var.dtype)
        write_results(merged, results)
    for s in steps:
        if s.kind in ("similarity", "labels", "spectrum"):
            for f in s.out.glob("*"):
                if f.suffix in (".nc", ".csv"):
                    shutil.copyfile(f, results / f.name)
    rows = ["model,depth,width,ffn,heads,objective,params,steps,final_loss,heldout_loss,plateau_fall,plateaued"]
    curves = [DISTILL_CURVES_HEADER]
    seeds: dict[str, dict[str, Any]] = {}  # model id -> its student's group and distillation seed
    for st in students:
        r = read_result(student_dirs[st.name][0])
        if st.group:
            seeds[r.model_id] = {"group": st.group, "seed": st.seed}
        rows.append(f"{r.model_id},{st.depth},{st.width},{st.ffn},{st.heads},{st.objective},{r.params},{r.steps},"
                    f"{r.final_loss:.6f},{r.heldout_loss:.6f},{r.plateau_fall:.6f},{r.plateaued}")
        curves += distill_curves(r.model_id, student_dirs[st.name][0])
    atomic_write_text(results / "distill.csv", "\n".join(rows) + "\n")
    atomic_write_text(results / "distill_curves.csv", "\n".join(curves) + "\n")
    model_roles = {str(read_attrs(path)["model_id"]): role for path, role in roles.items()}
    twin_ids = {str(read_attrs(m)["model_id"]): str(read_attrs(z)["model_id"]) for m, z in twins.items()}
    atomic_write_json(results / "study.json", {"config": config_to_dict(cfg), "seed": seed, "roles": model_roles,
                                               "seeds": seeds, "twins": twin_ids})


DISTILL_CURVES_HEADER = "model,step,train_loss,heldout_loss"


def distill_curves(model_id: str, run: Path) -> list[str]:
    """``distill_curves.csv`` rows of one student's run folder: one per step with a training
    metrics line or a held-out evaluation (the other column empty where it has only one)."""
    by_step: dict[int, list[str]] = {}
    for m in read_metrics(run):
        by_step.setdefault(m["step"], ["", ""])[0] = f"{m['loss']:.6f}"
    for h in read_heldout(run):
        by_step.setdefault(h["step"], ["", ""])[1] = f"{h['heldout_loss']:.6f}"
    return [f"{model_id},{step},{train},{held}" for step, (train, held) in sorted(by_step.items())]


def draw_figures(results: Path, out: Path) -> None:
    """The paper's figures from ``results``."""
    make_figures(results, out)


def write_study_report(results: Path, out: Path) -> None:
    """The report from ``results``."""
    write_report(results, out)
