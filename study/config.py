"""The study's configuration: what to distil, extract, probe and analyse, and how much compute.

With no config file the embedded default runs: the synthetic corpus, the bundled
``tiny-teacher``, the paper's two parameter-matched students (3-layer shallow-wide with
PredLayer, 12-layer deep-narrow with L2L), every probe task and the analyses. The
DistilHuBERT-shaped reference student (``distilhubert = true``) is left out of the default to
save time; ``configs/embedded-content-teacher.toml`` and ``configs/paper*.toml`` have it.
``configs/paper.toml`` describes the published study on real corpora.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepwide.analysis import MEASURES, LabelsConfig, SimilarityConfig, SpectrumConfig
from deepwide.config import config_from_dict, load_toml
from deepwide.distill.objectives import OBJECTIVES
from deepwide.errors import ConfigError, DeepwideError
from deepwide.extract import ExtractConfig
from deepwide.models.features import FEATURE_MODELS
from deepwide.probing.run import ProbeConfig
from deepwide.probing.tasks import TASKS
from deepwide.registry import Registry


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
        pairing: which objective each deep/shallow student is distilled with. ``"paper"`` (the
            default): the paper's two students, the shallow-wide one with PredLayer and the
            deep-narrow ones with L2L (its 3-L One-PredLayer and 12-L Half-L2L); ``objectives``
            is then unused. ``"crossed"``: every shape with every objective of ``objectives``,
            which separates depth from objective (``configs/paper*.toml``,
            ``configs/embedded-content-teacher.toml``).
        objectives: distillation objectives of the deep/shallow students (``pairing =
            "crossed"``).
        distilhubert: also a DistilHuBERT-shaped student (2 layers × teacher width, PredLayer).
            Off in the default (it is a reference point, not one of the contrasted students,
            and cost about a sixth of the default's time); on in
            ``configs/embedded-content-teacher.toml`` and ``configs/paper*.toml``.
        head_dim, ffn_ratio: head size and FFN/width ratio of the solved students.
        budget_match: how the deep students meet the shallow ones' parameter count:
            ``"width"`` (the paper's rule: nearest width at ``ffn_ratio``; its 12-L Half is 12 %
            smaller than 3-L One) or ``"ffn"`` (that width, then the FFN size that matches the
            count to 0.1 %; :func:`deepwide.models.solve_budget`).
        distill_steps, distill_batch_seconds, distill_max_crop_seconds, distill_lr: training.
        seeds: distillation seeds of the deep-narrow and shallow-wide students. Empty (the
            default): each is distilled once, with the study's ``--seed``. Given (``[0, 1, 2]``):
            each is distilled once per seed, named ``<student>-s<seed>``; the report's
            deep-versus-wide advantage is then the mean over seeds with an interval over seeds
            and test utterances. Random twins are one per student shape: a twin's weights
            depend on neither the distillation seed nor the objective, so the students of one
            depth × width (× FFN, heads) share the first one's twin.
        teacher_targets: distil from a stored teacher (``--frames all`` store) instead of
            running the teacher every step.
        frames: what the probe/analysis stores keep (``sample:K`` keeps K frames per utterance).
        store_dtype: ``float16`` or ``float32``.
        extract_batch_seconds: padded audio seconds per extraction batch.
        tasks: probe tasks. Sequence tasks (``pr``, ``asr``) need every frame: they are probed
            on stores of their own (``frames = "all"``) of the trained models and the teacher's
            random twin, on the utterances of ``sequence_kinds``, at most ``sequence_max_utts``
            per split.
        sequence_kinds: utterance kinds of the sequence-task stores (``sentence``).
        sequence_max_utts: utterances per split of the sequence-task stores (hashed choice; 0: all).
        ctc_steps: Adam steps of every CTC head of the sequence tasks.
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
    pairing: str = "paper"
    objectives: tuple[str, ...] = ("predlayer", "l2l")
    distilhubert: bool = False
    head_dim: int = 64
    ffn_ratio: float = 4.0
    budget_match: str = "width"
    distill_steps: int = 150
    distill_batch_seconds: float = 12.0
    distill_max_crop_seconds: float = 3.0
    distill_lr: float = 1e-3
    seeds: tuple[int, ...] = ()
    teacher_targets: bool = True
    frames: str = "sample:24"
    store_dtype: str = "float16"
    extract_batch_seconds: float = 64.0
    tasks: tuple[str, ...] = ("phone", "pr", "ks", "ic", "sid", "sid-frame", "asv")
    sequence_kinds: tuple[str, ...] = ("sentence",)
    sequence_max_utts: int = 150
    ctc_steps: int = 400
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
                    "max_train_frames": self.max_train_frames, "frames_per_utt": self.frames_per_utt,
                    "ctc_steps": self.ctc_steps}
        for name, value in positive.items():
            if not value > 0:
                raise ValueError(f"{name} must be > 0, got {value!r}")
        if len(set(self.seeds)) != len(self.seeds) or any(int(x) != x or x < 0 for x in self.seeds):
            raise ValueError(f"seeds must be distinct non-negative integers, got {list(self.seeds)}")
        if self.pairing not in ("paper", "crossed"):
            raise ValueError(f"pairing must be 'paper' or 'crossed', got {self.pairing!r}")
        if self.pairing == "paper" and tuple(self.objectives) != ("predlayer", "l2l"):
            raise ValueError("objectives are used only with pairing = 'crossed' (the paper's pairing distils the "
                             "shallow students with predlayer and the deep ones with l2l); set pairing = \"crossed\"")
        if self.budget_match not in ("width", "ffn"):
            raise ValueError(f"budget_match must be 'width' or 'ffn', got {self.budget_match!r}")
        if self.sequence_max_utts < 0:
            raise ValueError(f"sequence_max_utts must be ≥ 0 (0: all), got {self.sequence_max_utts!r}")
        for name in ("tasks", "objectives", "measures", "labels", "sequence_kinds"):
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


def probe_config(cfg: StudyConfig, *, sequence: bool = False) -> ProbeConfig:
    """The probe settings of the study (``sequence``: those of the sequence tasks' probe step,
    which adds the CTC schedule)."""
    if sequence:
        return ProbeConfig(max_train_frames=cfg.max_train_frames, n_boot=cfg.n_boot, device=cfg.device,
                           ctc_steps=cfg.ctc_steps)
    return ProbeConfig(max_train_frames=cfg.max_train_frames, n_boot=cfg.n_boot, device=cfg.device)


def check_stage_settings(cfg: StudyConfig, seed: int = 0) -> None:
    """Check every name and setting of ``cfg`` against the stage that will use it.

    Builds each stage's own config (probe, extract, similarity, label-CCA, spectrum) and looks
    up every task, objective, measure and baseline in its registry, so that a study config
    error is reported before any step runs (``--dry-run`` included), in one line naming the
    field.

    Raises:
        ConfigError: the first setting a stage would refuse.
    """
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
        ("max_train_frames/n_boot/device/ctc_steps", lambda: probe_config(cfg, sequence=True)),
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
