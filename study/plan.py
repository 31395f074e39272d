"""The study's plan: its students and the cached steps that distil, extract, probe and draw.

The plan is a list of :class:`Step` objects — teacher targets, one distillation per student,
one store per model (and per ``random:`` twin) and corpus, probes, similarity, label-CCA,
spectra, figures, report — each with a *key*: a hash of its configuration and of the keys of
everything it reads. A step whose output holds a marker with the same key is skipped, so a
rerun with nothing changed only checks markers, and a change reruns exactly what depends on it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

from deepwide.config import atomic_write_json, config_hash, config_to_dict
from deepwide.models import (
    PRESETS,
    count_params,
    load_model,
    resolve_config,
    solve_budget,
    student_config,
)
from deepwide.probing.tasks import TASKS
from deepwide.study import stages
from deepwide.study.config import StudyConfig, check_stage_settings, probe_config

MARKER = ".deepwide-step.json"


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
    seed: int | None = None  # its distillation seed (None: the study's seed)
    group: str = ""  # the student it is one seed of ("" : not one of several seeds)


def plan_students(cfg: StudyConfig, teacher_config: Any) -> list[Student]:
    """The study's students: shallow-wide at the teacher's width, deep-narrow matched to them
    by the budget solver — the shallow ones with PredLayer and the deep ones with L2L as in the
    paper (``pairing = "paper"``), or each with every objective (``"crossed"``) — plus a
    DistilHuBERT-shaped one."""
    t = teacher_config
    heads = max(1, t.width // cfg.head_dim) if t.width % cfg.head_dim == 0 else t.heads
    shallow = student_config(t, cfg.shallow_depth, t.width, ffn=t.ffn, heads=heads)
    budget = count_params(shallow)
    shapes = [(shallow.depth, shallow.width, shallow.ffn, shallow.heads)]
    for row in solve_budget(budget, cfg.deep_depths, template=t, ffn_ratio=cfg.ffn_ratio, head_dim=cfg.head_dim,
                            match=cfg.budget_match):
        shapes.append((row.depth, row.width, row.ffn, row.heads))
    def shape_name(d: int, w: int, f: int) -> str:  # an FFN off the usual ratio is named
        usual = t.ffn if (d, w) == (shallow.depth, shallow.width) else round(w * cfg.ffn_ratio)
        return f"{d}x{w}" if f == usual else f"{d}x{w}f{f}"

    def objectives_of(depth: int) -> tuple[str, ...]:
        if cfg.pairing == "crossed":
            return tuple(cfg.objectives)
        return ("predlayer",) if depth == shallow.depth else ("l2l",)  # the paper's pairing

    students = [
        Student(f"{shape_name(d, w, f)}-{obj}", d, w, f, h, obj)
        for d, w, f, h in shapes
        for obj in objectives_of(d)
    ]
    if cfg.seeds:  # one student per seed, named by it
        students = [replace(st, name=f"{st.name}-s{s}", seed=s, group=st.name) for st in students for s in cfg.seeds]
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
    check_stage_settings(cfg, seed)
    missing = missing_inputs(cfg)
    steps: list[Step] = []
    corpora = sorted({cfg.corpus, *cfg.probe_corpora.values()})
    corpus_keys: dict[str, str] = {}
    for spec in corpora:
        if check_only and (any(spec in m for m in missing) or spec.startswith("synth")):
            # a dry run never generates or reads a corpus it cannot reach: a placeholder key
            corpus_keys[spec] = config_hash({"unresolved-corpus": spec})
        else:
            corpus_keys[spec] = stages.resolve_manifest(spec).content_hash()
    teacher_missing = any(m.startswith(f"teacher {cfg.teacher}:") for m in missing)
    if check_only and teacher_missing:
        teacher_cfg = PRESETS.get("hubert-base")  # placeholder shape to list the plan
        teacher_key = config_hash({"unresolved-teacher": cfg.teacher})
    else:
        teacher_cfg = resolve_config(cfg.teacher)
        teacher_key = _model_key(cfg.teacher, check_only=check_only)
    dist_corpus = cfg.corpus
    targets_store = out / "stores" / f"teacher-targets-{_safe(dist_corpus)}.zarr"
    students = plan_students(cfg, teacher_cfg)
    probe_cfg = probe_config(cfg)

    # teacher targets for distillation
    targets_key = config_hash({"teacher": teacher_key, "corpus": corpus_keys[dist_corpus],
                               "frames": "all", "splits": ["train"], "v": 1})
    if cfg.teacher_targets:
        steps.append(Step(
            "teacher targets", "targets", targets_store, targets_key,
            partial(stages.extract_store, cfg.teacher, dist_corpus, targets_store, "all", ("train",), cfg, seed),
        ))

    # students
    student_dirs: dict[str, tuple[Path, str]] = {}
    for st in students:
        dcfg = stages.distill_config(cfg, st, targets_store if cfg.teacher_targets else None,
                                     seed if st.seed is None else st.seed)
        run = config_to_dict(dcfg)
        if run.get("teacher_targets"):  # the store's place: inside ``out``, named by ``targets_key`` below
            run["teacher_targets"] = targets_store.relative_to(out).as_posix()
        key = config_hash({"distill": run, "teacher": teacher_key,
                           "corpus": corpus_keys[dist_corpus],
                           "targets": targets_key if cfg.teacher_targets else None})
        sdir = out / "students" / st.name
        student_dirs[st.name] = (sdir, key)
        steps.append(Step(f"distill {st.name}", "distill", sdir, key,
                          partial(stages.distill_student, dcfg, sdir)))

    # stores of every model (and random twin) on every probe corpus
    models: list[tuple[str, str, str]] = [
        ("teacher", cfg.teacher, teacher_key),
        ("teacher-random", f"random:{cfg.teacher}", config_hash({"random": teacher_key, "seed": seed})),
    ]
    # one random twin per architecture: a twin's weights depend on neither the distillation seed
    # nor the objective, so every student of one shape (depth, width, FFN, heads) shares the twin
    # of the first student of that shape (the PredLayer and L2L twins were byte-identical stores)
    first_of_shape: dict[tuple[int, int, int, int], str] = {}
    for st in students:
        first_of_shape.setdefault((st.depth, st.width, st.ffn, st.heads), st.name)
    twin = {st.name: f"{first_of_shape[(st.depth, st.width, st.ffn, st.heads)]}-random" for st in students}
    for st in students:
        sdir, skey = student_dirs[st.name]
        models.append((st.name, str(sdir), skey))
        if twin[st.name] == f"{st.name}-random":
            models.append((twin[st.name], f"random:{sdir}", config_hash({"random": skey, "seed": seed})))
    for b in cfg.baselines:
        models.append((b, b, config_hash({"baseline": b})))

    sequence_tasks = [t for t in cfg.tasks if TASKS.get(t).level == "sequence"]
    probe_groups: dict[str, list[str]] = {}
    for task in cfg.tasks:
        if task not in sequence_tasks:
            probe_groups.setdefault(cfg.corpus_for(task), []).append(task)
    sim_corpus = cfg.corpus_for("phone")
    stores: dict[tuple[str, str], tuple[Path, str]] = {}
    for corpus in dict.fromkeys([*probe_groups, sim_corpus]):  # probe corpora in order, then the similarity one
        for label, spec, mkey in models:
            path = out / "stores" / f"{label}-{_safe(corpus)}.zarr"
            key = config_hash({"model": mkey, "corpus": corpus_keys[corpus], "frames": cfg.frames,
                               "dtype": cfg.store_dtype, "seed": seed, "v": 1})
            stores[(label, corpus)] = (path, key)
            steps.append(Step(f"extract {label} on {corpus}", "extract", path, key,
                              partial(stages.extract_store, spec, corpus, path, cfg.frames, None, cfg, seed)))

    # sequence tasks (pr, asr): every frame of part of the corpus, the trained models and the
    # teacher's random twin
    seq_groups: dict[str, list[str]] = {}
    for task in sequence_tasks:
        seq_groups.setdefault(cfg.corpus_for(task), []).append(task)
    seq_models = [m for m in models if m[0] == "teacher-random" or not m[0].endswith("-random")]
    seq_stores: dict[tuple[str, str], tuple[Path, str]] = {}
    kinds, max_utts = tuple(cfg.sequence_kinds), (cfg.sequence_max_utts or None)
    for corpus in seq_groups:
        for label, spec, mkey in seq_models:
            path = out / "stores" / f"{label}-{_safe(corpus)}-sequences.zarr"
            key = config_hash({"model": mkey, "corpus": corpus_keys[corpus], "frames": "all", "kinds": list(kinds),
                               "max_utts": max_utts, "dtype": cfg.store_dtype, "seed": seed, "v": 1})
            seq_stores[(label, corpus)] = (path, key)
            steps.append(Step(f"extract {label} on {corpus} (every frame, sequence tasks)", "extract", path, key,
                              partial(stages.extract_store, spec, corpus, path, "all", None, cfg, seed,
                                      kinds=kinds, max_utts=max_utts)))

    results = out / "results"
    trained = ["teacher"] + [st.name for st in students] + list(cfg.baselines)
    nulls = ["teacher-random"] + list(dict.fromkeys(twin.values()))
    seq_probe_cfg = probe_config(cfg, sequence=True)
    for corpus, tasks in seq_groups.items():
        main = [seq_stores[(m, corpus)] for m in trained]
        null = [seq_stores[("teacher-random", corpus)]]
        key = config_hash({"stores": [k for _, k in main + null], "tasks": tasks,
                           "probe": config_to_dict(seq_probe_cfg), "seed": seed})
        pdir = results / "steps" / f"probe-sequences-{_safe(corpus)}"
        steps.append(Step(f"probe {','.join(tasks)} on {corpus} (every frame)", "probe", pdir, key,
                          partial(stages.probe_models, [p for p, _ in main], [p for p, _ in null], tasks,
                                  seq_probe_cfg, pdir, seed)))
    for corpus, tasks in probe_groups.items():
        main = [stores[(m, corpus)] for m in trained]
        null = [stores[(m, corpus)] for m in nulls]
        key = config_hash({"stores": [k for _, k in main + null], "tasks": tasks,
                           "probe": config_to_dict(probe_cfg), "seed": seed})
        stem = "probe" if len(probe_groups) == 1 else f"probe-{_safe(corpus)}"
        pdir = results / "steps" / stem
        steps.append(Step(f"probe {','.join(tasks)} on {corpus}", "probe", pdir, key,
                          partial(stages.probe_models, [p for p, _ in main], [p for p, _ in null], tasks, probe_cfg, pdir, seed)))

    tstore = stores[("teacher", sim_corpus)]
    for measure in cfg.measures:
        for st in students:
            sstore, nstore = stores[(st.name, sim_corpus)], stores[(twin[st.name], sim_corpus)]
            key = config_hash({"a": tstore[1], "b": sstore[1], "null": nstore[1], "measure": measure,
                               "k": cfg.frames_per_utt, "seed": seed})
            sdir = results / "steps" / f"similarity-{measure}-{st.name}"
            steps.append(Step(f"{measure} teacher × {st.name}", "similarity", sdir, key,
                              partial(stages.similarity_grid, tstore[0], sstore[0], nstore[0], measure, cfg, sdir, seed)))
        tnull = stores[("teacher-random", sim_corpus)]
        key = config_hash({"a": tstore[1], "b": tnull[1], "measure": measure, "k": cfg.frames_per_utt, "seed": seed})
        sdir = results / "steps" / f"similarity-{measure}-teacher-random"
        steps.append(Step(f"{measure} teacher × its random twin", "similarity", sdir, key,
                          partial(stages.similarity_grid, tstore[0], tnull[0], None, measure, cfg, sdir, seed)))

    all_labels = trained + nulls
    role_of = {"teacher": "teacher", **{m: "random" for m in nulls}, **{st.name: "student" for st in students},
               **{b: "baseline" for b in cfg.baselines}}
    roles = {stores[(m, sim_corpus)][0]: role_of[m] for m in all_labels}
    twin_stores = {stores[(m, sim_corpus)][0]: stores[(z, sim_corpus)][0]
                   for m, z in [("teacher", "teacher-random"), *twin.items()]}
    lab_stores = [stores[(m, sim_corpus)] for m in all_labels]
    key = config_hash({"stores": [k for _, k in lab_stores], "labels": cfg.labels, "k": cfg.frames_per_utt, "seed": seed})
    ldir = results / "steps" / "labels"
    steps.append(Step("label-CCA", "labels", ldir, key,
                      partial(stages.label_cca, [p for p, _ in lab_stores], cfg, ldir, seed)))
    key = config_hash({"stores": [k for _, k in lab_stores], "spectrum": 1, "seed": seed})
    spdir = results / "steps" / "spectrum"
    steps.append(Step("effective rank", "spectrum", spdir, key,
                      partial(stages.effective_rank, [p for p, _ in lab_stores], spdir, seed)))

    collect_key = config_hash([s.key for s in steps])
    steps.append(Step("collect results", "collect", results, collect_key,
                      partial(stages.collect_results, results, [s for s in steps if s.out.parent == results / "steps"],
                                  students, student_dirs, roles, twin_stores, cfg, seed)))
    fig_key = config_hash({"results": collect_key, "v": 1})
    steps.append(Step("figures", "figures", out / "figures", fig_key, partial(stages.draw_figures, results, out / "figures")))
    steps.append(Step("report", "report", out / "report", fig_key, partial(stages.write_study_report, results, out / "report")))
    return steps, missing


def missing_inputs(cfg: StudyConfig) -> list[str]:
    """What the study reads that does not exist: real-corpus paths, a teacher checkpoint."""
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


def _model_key(spec: str, *, check_only: bool = False) -> str:
    if spec.startswith("torchaudio:") or check_only:
        return config_hash({"torchaudio": spec, "config": config_to_dict(resolve_config(spec))})
    return load_model(spec).weights_hash()
