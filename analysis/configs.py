"""Frozen configs of the store-level analyses (similarity grid, label-CCA, spectrum).

Each is validated in ``__post_init__`` and written next to its result
(:func:`deepwide.analysis.output.write_result`); the CLI's ``--layers`` lists are
:data:`deepwide.params.INDEX_LIST` values.
"""

from __future__ import annotations

from dataclasses import dataclass

from deepwide.analysis.measures import MEASURES


@dataclass(frozen=True)
class SimilarityConfig:
    """Options of a similarity grid.

    Attributes:
        measure: a name in :data:`MEASURES`.
        frames_per_utt: K random shared frames per utterance (0 = every shared frame).
        layers_a: layers of model A (empty = all).
        layers_b: layers of model B and of the null (empty = all).
        seed: seed of the frame sample.
        block_rows: rows per streamed block (linear CKA).
    """

    measure: str = "cka-debiased"
    frames_per_utt: int = 10
    layers_a: tuple[int, ...] = ()
    layers_b: tuple[int, ...] = ()
    seed: int = 0
    block_rows: int = 2048

    def __post_init__(self) -> None:
        MEASURES.get(self.measure)
        if self.frames_per_utt < 0:
            raise ValueError(f"frames_per_utt must be ≥ 0 (0 = all), got {self.frames_per_utt}")
        if self.block_rows < 16:
            raise ValueError(f"block_rows must be ≥ 16, got {self.block_rows}")


LABEL_KINDS = ("phone", "speaker")


@dataclass(frozen=True)
class LabelsConfig:
    """Options of the label-CCA table.

    Attributes:
        labels: label kinds, each ``phone`` or ``speaker``.
        level: ``auto`` (phone → frame, speaker → utt), ``frame`` or ``utt`` (pooled).
        frames_per_utt: at frame level, K random labelled frames per utterance (0 = all).
        folds: cross-validation folds (utterance-disjoint at frame level).
        reg: relative ridge on the representation covariance.
        seed: seed of the frame sample and of the folds.
        layers: layers to analyse (empty = all).
    """

    labels: tuple[str, ...] = ("phone", "speaker")
    level: str = "auto"
    frames_per_utt: int = 10
    folds: int = 5
    reg: float = 1e-3
    seed: int = 0
    layers: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not self.labels:
            raise ValueError("need at least one label kind")
        for lab in self.labels:
            if lab not in LABEL_KINDS:
                raise ValueError(f"unknown label {lab!r}; valid labels: {', '.join(LABEL_KINDS)}")
        if self.level not in ("auto", "frame", "utt"):
            raise ValueError(f"level must be auto, frame or utt, got {self.level!r}")
        if self.level == "utt" and "phone" in self.labels:
            raise ValueError("phone labels are frame-level; use level frame or auto")
        if self.frames_per_utt < 0 or self.folds < 2 or self.reg < 0:
            raise ValueError("need frames_per_utt ≥ 0, folds ≥ 2 and reg ≥ 0")

    def level_of(self, label: str) -> str:
        """The level a label kind is measured at."""
        if self.level != "auto":
            return self.level
        return "frame" if label == "phone" else "utt"


@dataclass(frozen=True)
class SpectrumConfig:
    """Options of the spectrum table.

    Attributes:
        level: ``frame`` (stored frames) or ``utt`` (pooled).
        frames_per_utt: at frame level, K random frames per utterance (0 = all stored).
        seed: seed of the frame sample.
        block_rows: rows per streamed block.
        layers: layers to analyse (empty = all).
    """

    level: str = "frame"
    frames_per_utt: int = 0
    seed: int = 0
    block_rows: int = 8192
    layers: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.level not in ("frame", "utt"):
            raise ValueError(f"level must be frame or utt, got {self.level!r}")
        if self.frames_per_utt < 0 or self.block_rows < 16:
            raise ValueError("need frames_per_utt ≥ 0 and block_rows ≥ 16")
