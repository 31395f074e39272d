"""``deepwide study``: the whole deep-versus-wide analysis as one cached plan.

The plan is a list of :class:`Step` objects — corpus, teacher targets, one distillation per
student, one store per model (and per ``random:`` twin) and corpus, probes, similarity,
label-CCA, spectra, figures, report — each with a *key*: a hash of its configuration and of
the keys of everything it reads. A step whose output folder holds a marker with the same key
is skipped, so a rerun with nothing changed only checks markers, and a change reruns exactly
what depends on it.

With no config file the embedded default runs: the synthetic corpus, the bundled
``tiny-teacher``, parameter-matched deep-narrow and shallow-wide students with both
objectives plus a DistilHuBERT-shaped one, every probe task and the analyses.
``configs/paper.toml`` describes the published study on real corpora (``--dry-run`` lists the
plan and names what is missing).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepwide.config import (
    atomic_write_json,
    atomic_write_text,
    config_from_dict,
    config_hash,
    config_to_dict,
    dump_toml,
    load_toml,
)
from deepwide.errors import ConfigError, DeepwideError

log = logging.getLogger(__name__)

MARKER = ".deepwide-step.json"


@dataclass(frozen=True)
class StudyConfig:
    """The study: which corpus, teacher, students, tasks and analyses, and how much compute.

    Attributes:
        corpus: corpus spec used for distillation and (by default) for every probe task.
        probe_corpora: task → corpus spec for tasks probed on another corpus (paper setup:
            ``sid = "voxceleb1:/data/VoxCeleb1"``).
        teacher: teacher model spec.
        shallow_depth: depth of the shallow-wide students; they keep the teacher's width.
        deep_depths: depths of the deep-narrow students; widths solved (budget solver) to
            match the shallow-wide students' parameter count.
        objectives: distillation objectives of the deep/shallow students.
        distilhubert: also a DistilHuBERT-shaped student (2 layers × teacher width, PredLayer).
        head_dim, ffn_ratio: head size and FFN/width ratio of the solved students.
        distill_steps, distill_batch_seconds, distill_max_crop_seconds, distill_lr: training.
        teacher_targets: distil from a stored teacher (``--frames all`` store) instead of
            running the teacher every step.
        frames: what the probe/analysis stores keep (``sample:K`` keeps K frames per utterance).
        store_dtype: ``float16`` or ``float32``.
        extract_batch_seconds: padded audio seconds per extraction batch.
        tasks: probe tasks.
        baselines: feature baselines probed beside the models (``mfcc``, ``mfcc-context``).
        max_train_frames: cap of training frames for frame-level probes.
        n_boot: bootstrap replicates of every interval.
        measures: similarity measures (teacher × student grids, with the students' nulls).
        frames_per_utt: frames per utterance sampled for similarity grids and label-CCA.
        labels: label-CCA label kinds.
        device: ``auto``, ``cpu`` or ``cuda``.
    """

    corpus: str = "synth"
    probe_corpora: Mapping[str, str] = field(default_factory=dict)
    teacher: str = "tiny-teacher"
    shallow_depth: int = 3
    deep_depths: tuple[int, ...] = (12,)
    objectives: tuple[str, ...] = ("predlayer", "l2l")
    distilhubert: bool = True
    head_dim: int = 64
    ffn_ratio: float = 4.0
    distill_steps: int = 150
    distill_batch_seconds: float = 12.0
    distill_max_crop_seconds: float = 3.0
    distill_lr: float = 1e-3
    teacher_targets: bool = True
    frames: str = "sample:24"
    store_dtype: str = "float16"
    extract_batch_seconds: float = 64.0
    tasks: tuple[str, ...] = ("phone", "ks", "ic", "sid", "sid-frame", "asv")
    baselines: tuple[str, ...] = ("mfcc", "mfcc-context")
    max_train_frames: int = 40_000
    n_boot: int = 1000
    measures: tuple[str, ...] = ("cka-debiased",)
    frames_per_utt: int = 8
    labels: tuple[str, ...] = ("phone", "speaker")
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.shallow_depth < 1 or any(d < 1 for d in self.deep_depths):
            raise ValueError("student depths must be ≥ 1")
        positive = {"distill_steps": self.distill_steps, "head_dim": self.head_dim,
                    "ffn_ratio": self.ffn_ratio, "distill_batch_seconds": self.distill_batch_seconds,
                    "distill_max_crop_seconds": self.distill_max_crop_seconds, "distill_lr": self.distill_lr,
                    "extract_batch_seconds": self.extract_batch_seconds,
                    "max_train_frames": self.max_train_frames, "frames_per_utt": self.frames_per_utt}
        for name, value in positive.items():
            if not value > 0:
                raise ValueError(f"{name} must be > 0, got {value!r}")
        for name in ("tasks", "objectives", "measures", "labels"):
            values = getattr(self, name)
            if not values:
                raise ValueError(f"{name} must name at least one entry")
            if len(set(values)) != len(values):
                raise ValueError(f"{name} repeats an entry: {list(values)}")
        if not (self.frames == "all" or self.frames.startswith("sample:")):
            raise ValueError(f"frames must be 'all' or 'sample:K' (probes need frames), got {self.frames!r}")
        unknown = sorted(set(self.probe_corpora) - set(self.tasks))
        if unknown:
            raise ValueError(f"probe_corpora names task(s) not in tasks: {', '.join(unknown)}")

    def corpus_for(self, task: str) -> str:
        return self.probe_corpora.get(task, self.corpus)


def load_study_config(path: str | Path | None) -> StudyConfig:
    """The embedded default (``None``) or a TOML file of :class:`StudyConfig` fields."""
    if path is None:
        return StudyConfig()
    return config_from_dict(StudyConfig, load_toml(path), where=str(path))


# ------------------------------------------------------------------------------ the plan
@dataclass
class Step:
    """One cached unit of work.

    Attributes:
        name: short label (``distill 3x256-l2l``).
        kind: ``corpus``, ``targets``, ``distill``, ``extract``, ``probe``, ``similarity``,
            ``labels``, ``spectrum``, ``figures``, ``report``.
        out: folder (or store) the step writes; its marker sits inside it (beside it for stores).
        key: hash of everything the result depends on.
        run: the work; called only when the marker is missing or stale.
        needs: paths that must exist before the study can start (checked by ``--dry-run``).
    """

    name: str
    kind: str
    out: Path
    key: str
    run: Callable[[], Any]
    needs: tuple[str, ...] = ()

    def marker(self) -> Path:
        return self.out.parent / f"{self.out.name}{MARKER}" if self.out.suffix == ".zarr" else self.out / MARKER

    def is_done(self) -> bool:
        m = self.marker()
        if not m.is_file():
            return False
        try:
            return json.loads(m.read_text()).get("key") == self.key
        except (json.JSONDecodeError, OSError):
            return False

    def mark_done(self, seconds: float) -> None:
        atomic_write_json(self.marker(), {"key": self.key, "step": self.name, "seconds": round(seconds, 2)})


@dataclass(frozen=True)
class Student:
    """One student of the study."""

    name: str
    depth: int
    width: int
    ffn: int
    heads: int
    objective: str
    targets: tuple[int, ...] | None = None


def plan_students(cfg: StudyConfig, teacher_config: Any) -> list[Student]:
    """The study's students: shallow-wide at the teacher's width, deep-narrow matched to them
    by the budget solver, both objectives each, plus a DistilHuBERT-shaped one."""
    from deepwide.models import count_params, solve_budget, student_config

    t = teacher_config
    heads = max(1, t.width // cfg.head_dim) if t.width % cfg.head_dim == 0 else t.heads
    shallow = student_config(t, cfg.shallow_depth, t.width, ffn=t.ffn, heads=heads)
    budget = count_params(shallow)
    shapes = [(shallow.depth, shallow.width, shallow.ffn, shallow.heads)]
    for row in solve_budget(budget, cfg.deep_depths, template=t, ffn_ratio=cfg.ffn_ratio, head_dim=cfg.head_dim):
        shapes.append((row.depth, row.width, row.ffn, row.heads))
    students = [
        Student(f"{d}x{w}-{obj}", d, w, f, h, obj)
        for d, w, f, h in shapes
        for obj in cfg.objectives
    ]
    if cfg.distilhubert:
        n = t.depth
        targets = tuple(sorted({max(1, round(n * k / 3)) for k in (1, 2, 3)}))
        students.append(Student(f"distilhubert-2x{t.width}", 2, t.width, t.ffn, heads, "predlayer", targets))
    return students


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "-" for c in name)


def build_plan(cfg: StudyConfig, out: Path, *, seed: int = 0, check_only: bool = False) -> tuple[list[Step], list[str]]:
    """Build the study's steps (nothing runs). Returns ``(steps, missing)``: ``missing`` names
    inputs that do not exist (real-corpus paths, checkpoint folders)."""
    from deepwide.models import resolve_config

    check_stage_settings(cfg, seed)
    missing = _missing_inputs(cfg)
    steps: list[Step] = []
    corpora = sorted({cfg.corpus, *cfg.probe_corpora.values()})
    corpus_keys: dict[str, str] = {}
    for spec in corpora:
        if check_only and (any(spec in m for m in missing) or spec.startswith("synth")):
            # a dry run never generates or reads a corpus it cannot reach: a placeholder key
            corpus_keys[spec] = config_hash({"unresolved-corpus": spec})
        else:
            corpus_keys[spec] = _manifest(spec).content_hash()
    teacher_missing = any(m.startswith(f"teacher {cfg.teacher}:") for m in missing)
    if check_only and teacher_missing:
        from deepwide.models import PRESETS

        teacher_cfg = PRESETS.get("hubert-base")  # placeholder shape to list the plan
        teacher_key = config_hash({"unresolved-teacher": cfg.teacher})
    else:
        teacher_cfg = resolve_config(cfg.teacher)
        teacher_key = _model_key(cfg.teacher, check_only=check_only)
    dist_corpus = cfg.corpus
    targets_store = out / "stores" / f"teacher-targets-{_safe(dist_corpus)}.zarr"
    students = plan_students(cfg, teacher_cfg)
    probe_cfg = _probe_config(cfg)

    # teacher targets for distillation
    targets_key = config_hash({"teacher": teacher_key, "corpus": corpus_keys[dist_corpus],
                               "frames": "all", "splits": ["train"], "v": 1})
    if cfg.teacher_targets:
        steps.append(Step(
            "teacher targets", "targets", targets_store, targets_key,
            lambda: _extract(cfg.teacher, dist_corpus, targets_store, "all", ("train",), cfg, seed),
        ))

    # students
    student_dirs: dict[str, tuple[Path, str]] = {}
    for st in students:
        dcfg = _distill_config(cfg, st, targets_store if cfg.teacher_targets else None, seed)
        key = config_hash({"distill": config_to_dict(dcfg), "teacher": teacher_key,
                           "corpus": corpus_keys[dist_corpus],
                           "targets": targets_key if cfg.teacher_targets else None})
        sdir = out / "students" / st.name
        student_dirs[st.name] = (sdir, key)
        steps.append(Step(f"distill {st.name}", "distill", sdir, key,
                          lambda d=dcfg, p=sdir: _distill(d, p)))

    # stores of every model (and random twin) on every probe corpus
    models: list[tuple[str, str, str]] = [
        ("teacher", cfg.teacher, teacher_key),
        ("teacher-random", f"random:{cfg.teacher}", config_hash({"random": teacher_key, "seed": seed})),
    ]
    for st in students:
        sdir, skey = student_dirs[st.name]
        models.append((st.name, str(sdir), skey))
        models.append((f"{st.name}-random", f"random:{sdir}", config_hash({"random": skey, "seed": seed})))
    for b in cfg.baselines:
        models.append((b, b, config_hash({"baseline": b})))

    probe_groups: dict[str, list[str]] = {}
    for task in cfg.tasks:
        probe_groups.setdefault(cfg.corpus_for(task), []).append(task)
    stores: dict[tuple[str, str], tuple[Path, str]] = {}
    for corpus in probe_groups:
        for label, spec, mkey in models:
            path = out / "stores" / f"{label}-{_safe(corpus)}.zarr"
            key = config_hash({"model": mkey, "corpus": corpus_keys[corpus], "frames": cfg.frames,
                               "dtype": cfg.store_dtype, "seed": seed, "v": 1})
            stores[(label, corpus)] = (path, key)
            steps.append(Step(f"extract {label} on {corpus}", "extract", path, key,
                              lambda s=spec, c=corpus, p=path: _extract(s, c, p, cfg.frames, None, cfg, seed)))

    results = out / "results"
    trained = ["teacher"] + [st.name for st in students] + list(cfg.baselines)
    nulls = ["teacher-random"] + [f"{st.name}-random" for st in students]
    for corpus, tasks in probe_groups.items():
        main = [stores[(m, corpus)] for m in trained]
        null = [stores[(m, corpus)] for m in nulls]
        key = config_hash({"stores": [k for _, k in main + null], "tasks": tasks,
                           "probe": config_to_dict(probe_cfg), "seed": seed})
        stem = "probe" if len(probe_groups) == 1 else f"probe-{_safe(corpus)}"
        pdir = results / "steps" / stem
        steps.append(Step(f"probe {','.join(tasks)} on {corpus}", "probe", pdir, key,
                          lambda m=main, n=null, t=tasks, d=pdir: _probe([p for p, _ in m], [p for p, _ in n], t, probe_cfg, d, seed)))

    sim_corpus = cfg.corpus_for("phone")
    tstore = stores[("teacher", sim_corpus)]
    for measure in cfg.measures:
        for st in students:
            sstore, nstore = stores[(st.name, sim_corpus)], stores[(f"{st.name}-random", sim_corpus)]
            key = config_hash({"a": tstore[1], "b": sstore[1], "null": nstore[1], "measure": measure,
                               "k": cfg.frames_per_utt, "seed": seed})
            sdir = results / "steps" / f"similarity-{measure}-{st.name}"
            steps.append(Step(f"{measure} teacher × {st.name}", "similarity", sdir, key,
                              lambda m=measure, b=sstore[0], n=nstore[0], d=sdir: _similarity(tstore[0], b, n, m, cfg, d, seed)))
        tnull = stores[("teacher-random", sim_corpus)]
        key = config_hash({"a": tstore[1], "b": tnull[1], "measure": measure, "k": cfg.frames_per_utt, "seed": seed})
        sdir = results / "steps" / f"similarity-{measure}-teacher-random"
        steps.append(Step(f"{measure} teacher × its random twin", "similarity", sdir, key,
                          lambda m=measure, d=sdir, b=tnull[0]: _similarity(tstore[0], b, None, m, cfg, d, seed)))

    all_labels = trained + nulls
    lab_stores = [stores[(m, sim_corpus)] for m in all_labels]
    key = config_hash({"stores": [k for _, k in lab_stores], "labels": cfg.labels, "k": cfg.frames_per_utt, "seed": seed})
    ldir = results / "steps" / "labels"
    steps.append(Step("label-CCA", "labels", ldir, key,
                      lambda: _labels([p for p, _ in lab_stores], cfg, ldir, seed)))
    key = config_hash({"stores": [k for _, k in lab_stores], "spectrum": 1, "seed": seed})
    spdir = results / "steps" / "spectrum"
    steps.append(Step("effective rank", "spectrum", spdir, key,
                      lambda: _spectrum([p for p, _ in lab_stores], spdir, seed)))

    collect_key = config_hash([s.key for s in steps])
    steps.append(Step("collect results", "collect", results, collect_key,
                      lambda: _collect(results, [s for s in steps if s.out.parent == results / "steps"],
                                       students, student_dirs, cfg, seed)))
    fig_key = config_hash({"results": collect_key, "v": 1})
    steps.append(Step("figures", "figures", out / "figures", fig_key, lambda: _figures(results, out / "figures")))
    steps.append(Step("report", "report", out / "report", fig_key, lambda: _report(results, out / "report")))
    return steps, missing


def run_study(cfg: StudyConfig, out: str | Path, *, seed: int = 0, dry_run: bool = False,
              echo: Callable[[str], None] = print) -> list[Step]:
    """Run (or, with ``dry_run``, list) the plan; returns its steps."""
    out = Path(out)
    steps, missing = build_plan(cfg, out, seed=seed, check_only=dry_run)
    if dry_run:
        for s in steps:
            echo(f"{'cached' if s.is_done() else 'to run':>7}  {s.kind:<10} {s.name}")
        if missing:
            for m in missing:
                echo(f"missing  {m}")
            raise ConfigError(f"{len(missing)} input(s) of the study are missing (listed above); fix the paths in the config")
        echo(f"{len(steps)} steps, {sum(not s.is_done() for s in steps)} to run")
        return steps
    out.mkdir(parents=True, exist_ok=True)
    dump_toml(cfg, out / "study.toml")
    t_all = time.time()
    timings = []
    for i, s in enumerate(steps, 1):
        if s.is_done():
            log.info("[%d/%d] %s: cached", i, len(steps), s.name)
            timings.append({"step": s.name, "kind": s.kind, "cached": True, "seconds": 0.0})
            continue
        log.info("[%d/%d] %s …", i, len(steps), s.name)
        t0 = time.time()
        s.run()
        dt = time.time() - t0
        s.mark_done(dt)
        timings.append({"step": s.name, "kind": s.kind, "cached": False, "seconds": round(dt, 2)})
        log.info("[%d/%d] %s: done in %.1f s", i, len(steps), s.name, dt)
    atomic_write_json(out / "timings.json", {"total_seconds": round(time.time() - t_all, 2), "steps": timings})
    echo(f"report: {out / 'report' / 'report.html'}  (total {time.time() - t_all:.0f} s)")
    return steps


def check_stage_settings(cfg: StudyConfig, seed: int = 0) -> None:
    """Check every name and setting of ``cfg`` against the stage that will use it.

    Builds each stage's own config (probe, extract, similarity, label-CCA, spectrum) and looks
    up every task, objective, measure and baseline in its registry, so that a study config
    error is reported before any step runs (``--dry-run`` included), in one line naming the
    field.

    Raises:
        ConfigError: the first setting a stage would refuse.
    """
    from deepwide.analysis import LabelsConfig, SimilarityConfig, SpectrumConfig
    from deepwide.analysis.grids import MEASURES
    from deepwide.distill.objectives import OBJECTIVES
    from deepwide.extract import ExtractConfig
    from deepwide.models.features import FEATURE_MODELS
    from deepwide.probing.tasks import TASKS
    from deepwide.registry import Registry

    def lookup(field: str, registry: Registry[Any], names: Sequence[str]) -> None:
        for name in names:
            if name not in registry:
                raise ConfigError(f"study config: {field}: unknown {registry.kind} {name!r}; "
                                  f"valid {registry.kind}s: {', '.join(registry.names())}")

    lookup("tasks", TASKS, cfg.tasks)
    lookup("objectives", OBJECTIVES, cfg.objectives)
    lookup("measures", MEASURES, cfg.measures)
    for b in cfg.baselines:
        if b not in FEATURE_MODELS:
            raise ConfigError(f"study config: baselines: unknown feature baseline {b!r}; "
                              f"valid baselines: {', '.join(sorted(FEATURE_MODELS))}")
    stage_configs: list[tuple[str, Callable[[], Any]]] = [
        ("max_train_frames/n_boot/device", lambda: _probe_config(cfg)),
        ("frames/store_dtype/extract_batch_seconds", lambda: ExtractConfig(
            frames=cfg.frames, dtype=cfg.store_dtype, batch_seconds=cfg.extract_batch_seconds, seed=seed)),
        ("labels/frames_per_utt", lambda: LabelsConfig(labels=tuple(cfg.labels), frames_per_utt=cfg.frames_per_utt,
                                                       seed=seed)),
        ("spectrum", lambda: SpectrumConfig(seed=seed)),
        *[(f"measures ({m})", lambda m=m: SimilarityConfig(measure=m, frames_per_utt=cfg.frames_per_utt, seed=seed))
          for m in cfg.measures],
    ]
    for fields, build in stage_configs:
        try:
            build()
        except (TypeError, ValueError, DeepwideError) as exc:
            raise ConfigError(f"study config: {fields}: {exc}") from exc


# ------------------------------------------------------------------------------ step bodies
def _missing_inputs(cfg: StudyConfig) -> list[str]:
    out = []
    for spec in sorted({cfg.corpus, *cfg.probe_corpora.values()}):
        if ":" in spec and not Path(spec).exists():
            path = Path(spec.partition(":")[2]).expanduser()
            if not path.exists():
                out.append(f"corpus {spec}: {path} does not exist")
    t = cfg.teacher
    looks_like_path = t.startswith(("/", ".", "~")) or t.endswith(".pt")
    if looks_like_path and not Path(t).expanduser().exists():
        out.append(f"teacher {t}: no such file or folder")
    return out


def _manifest(spec: str) -> Any:
    from deepwide.corpora import resolve_corpus

    return resolve_corpus(spec)


def _model_key(spec: str, *, check_only: bool = False) -> str:
    from deepwide.models import load_model, resolve_config

    if spec.startswith("torchaudio:") or check_only:
        return config_hash({"torchaudio": spec, "config": config_to_dict(resolve_config(spec))})
    return load_model(spec).weights_hash()


def _probe_config(cfg: StudyConfig) -> Any:
    from deepwide.probing.run import ProbeConfig

    return ProbeConfig(max_train_frames=cfg.max_train_frames, n_boot=cfg.n_boot, device=cfg.device)


def _distill_config(cfg: StudyConfig, st: Student, targets: Path | None, seed: int) -> Any:
    from deepwide.distill import make_config

    return make_config(
        teacher=cfg.teacher, corpus=cfg.corpus, steps=cfg.distill_steps, objective=st.objective,
        depth=st.depth, width=st.width, ffn=st.ffn, heads=st.heads, targets=st.targets,
        batch_seconds=cfg.distill_batch_seconds, max_crop_seconds=cfg.distill_max_crop_seconds,
        lr=cfg.distill_lr, teacher_targets=str(targets) if targets else None, seed=seed,
        device=cfg.device, checkpoint_every=max(100, cfg.distill_steps), log_every=max(1, cfg.distill_steps // 30),
    )


def _fresh(path: Path) -> None:
    """Remove a half-written output of a stale step (never anything else)."""
    import shutil

    if path.exists():
        shutil.rmtree(path)


def _extract(spec: str, corpus: str, out: Path, frames: str,
             splits: Sequence[str] | None, cfg: StudyConfig, seed: int) -> None:
    """Extract ``spec`` on ``corpus`` into ``out``. The random twin of a student folder is
    named ``random:<student model id>`` so that results pair it with its student."""
    from deepwide.extract import ExtractConfig, extract_features
    from deepwide.models import load_model, read_checkpoint_info
    from deepwide.models.loading import is_deepwide_checkpoint
    from deepwide.probing.run import resolve_device

    _fresh(out)
    device = resolve_device(cfg.device)
    encoder = load_model(spec, seed=seed, device=device)
    inner = spec.removeprefix("random:")
    if inner != spec and is_deepwide_checkpoint(inner):
        encoder.model_id = "random:" + read_checkpoint_info(inner)["model_id"]
    ecfg = ExtractConfig(frames=frames, dtype=cfg.store_dtype, splits=tuple(splits) if splits else None,
                         batch_seconds=cfg.extract_batch_seconds, seed=seed)
    extract_features(encoder, _manifest(corpus), out, ecfg, device=device, progress=_progress())


def _progress() -> bool:
    import sys

    return sys.stderr.isatty()


def _distill(dcfg: Any, out: Path) -> None:
    from deepwide.distill import train_student

    _fresh(out)
    train_student(dcfg, out, progress=_progress())


def _probe(main: Sequence[Path], nulls: Sequence[Path], tasks: Sequence[str], pcfg: Any, out: Path, seed: int) -> None:
    from deepwide.probing.run import probe_stores, write_results

    _fresh(out)
    res = probe_stores([str(p) for p in main], list(tasks), pcfg, nulls=[str(p) for p in nulls], seed=seed)
    write_results(res, out)


def _similarity(a: Path, b: Path, null: Path | None, measure: str, cfg: StudyConfig, out: Path, seed: int) -> None:
    from deepwide.analysis import SimilarityConfig, run_similarity

    _fresh(out)
    run_similarity(a, b, out, SimilarityConfig(measure=measure, frames_per_utt=cfg.frames_per_utt, seed=seed),
                   null=null)


def _labels(stores: Sequence[Path], cfg: StudyConfig, out: Path, seed: int) -> None:
    from deepwide.analysis import LabelsConfig, run_labels

    _fresh(out)
    run_labels(stores, out, LabelsConfig(labels=tuple(cfg.labels), frames_per_utt=cfg.frames_per_utt, seed=seed))


def _spectrum(stores: Sequence[Path], out: Path, seed: int) -> None:
    from deepwide.analysis import SpectrumConfig, run_spectrum

    _fresh(out)
    run_spectrum(stores, out, SpectrumConfig(seed=seed))


def _collect(results: Path, steps: Sequence[Step], students: Sequence[Student],
             student_dirs: Mapping[str, tuple[Path, str]], cfg: StudyConfig, seed: int) -> None:
    """Gather every step's result files into ``results/`` (the folder figures read) and write
    ``distill.csv``."""
    import shutil

    import xarray as xr

    from deepwide.distill import read_result
    from deepwide.probing.run import write_results

    probe_parts = sorted((results / "steps").glob("probe*/probe*.nc"))
    if len(probe_parts) == 1:
        for suffix in (".nc", ".csv"):
            shutil.copyfile(probe_parts[0].with_suffix(suffix), results / f"probe{suffix}")
    elif probe_parts:  # tasks probed on several corpora: one probe.nc with every task
        parts = [xr.load_dataset(p) for p in probe_parts]
        merged = xr.concat(parts, dim="task", data_vars="minimal", coords="minimal", compat="override",
                           join="outer")
        write_results(merged, results)
    for s in steps:
        if s.kind in ("similarity", "labels", "spectrum"):
            for f in s.out.glob("*"):
                if f.suffix in (".nc", ".csv"):
                    shutil.copyfile(f, results / f.name)
    rows = ["model,depth,width,ffn,heads,objective,params,steps,final_loss"]
    for st in students:
        r = read_result(student_dirs[st.name][0])
        rows.append(f"{r.model_id},{st.depth},{st.width},{st.ffn},{st.heads},{st.objective},{r.params},{r.steps},{r.final_loss:.6f}")
    atomic_write_text(results / "distill.csv", "\n".join(rows) + "\n")
    atomic_write_json(results / "study.json", {"config": config_to_dict(cfg), "seed": seed})


def _figures(results: Path, out: Path) -> None:
    from deepwide.figures import make_figures

    make_figures(results, out)


def _report(results: Path, out: Path) -> None:
    from deepwide.figures import write_report

    write_report(results, out)


__all__ = ["Step", "Student", "StudyConfig", "build_plan", "check_stage_settings", "load_study_config", "plan_students", "run_study"]
