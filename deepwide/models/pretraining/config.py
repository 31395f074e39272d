"""The tiny teacher's recipe as a frozen config: architecture, targets, optimisation.

:class:`PretrainConfig` is what ``deepwide teacher pretrain --config`` reads and what every
teacher checkpoint records; :func:`quick_config` is the few-step smoke recipe (``--quick``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from deepwide.framing import FRAME_WINDOW, SAMPLE_RATE

#: Largest k-means vocabulary and logit-head size a recipe may ask for (refused beyond).
MAX_CLUSTERS = 65_536
MAX_FINAL_DIM = 16_384


@dataclass(frozen=True)
class PretrainConfig:
    """Architecture, targets and optimisation of the tiny teacher.

    Attributes:
        depth, width, ffn, heads: transformer shape (12 × 256 keeps "layers 4, 8, 12" meaningful).
        n_mels, frontend_channels, frontend_kernel: spectral front-end (log-mel + Conv1d, 50 Hz).
        n_clusters: k-means classes per iteration.
        kmeans_frames: frames sampled (seeded) to fit k-means.
        steps: optimiser steps per iteration (len(steps) iterations).
        iter_layers: layer whose features give the targets of iteration i ≥ 2.
        crop_seconds, batch_size: random crops per step.
        lr, warmup_frac, weight_decay, grad_clip: AdamW with linear warm-up then cosine decay.
        mask_prob, mask_length: HuBERT span masking.
        final_dim: projection size of the logit head (and of the contrastive head).
        contrastive_weight: weight of the utterance-level InfoNCE term (0: plain HuBERT).
        contrastive_layer: layer whose mean-pooled states the InfoNCE term compares.
        contrastive_temp: temperature of its cosine similarities.
        contrastive_batch: utterances per step for the InfoNCE term, cropped separately from
            the masked-prediction batch (more negatives; only layers up to
            ``contrastive_layer`` run on them); 0: the masked-prediction crops themselves.
        augment_channel: put every masked-prediction crop through a random channel, noise and
            gain (±``augment_gain_db``) of its own, targets from the unaugmented audio; the
            InfoNCE halves get the gain too. Meant for a corpus recorded cleanly
            (``deepwide corpus synth --clean``), so that no recording is shared by two halves.
        augment_gain_db: largest |gain| of that augmentation, in dB.
        eval_every: steps between held-out masked-accuracy evaluations.
        heldout_speakers: fraction of speakers held out for evaluation (never trained on).
    """

    depth: int = 12
    width: int = 256
    ffn: int = 1024
    heads: int = 4
    n_mels: int = 80
    frontend_channels: int = 256
    frontend_kernel: int = 3
    n_clusters: int = 100
    kmeans_frames: int = 150_000
    steps: tuple[int, ...] = (3000, 3000)
    iter_layers: tuple[int, ...] = (6,)
    crop_seconds: float = 3.0
    batch_size: int = 8
    lr: float = 7e-4
    warmup_frac: float = 0.08
    weight_decay: float = 0.01
    grad_clip: float = 5.0
    mask_prob: float = 0.65
    mask_length: int = 10
    final_dim: int = 128
    contrastive_weight: float = 0.0
    contrastive_layer: int = 4
    contrastive_temp: float = 0.1
    contrastive_batch: int = 0
    augment_channel: bool = False
    augment_gain_db: float = 6.0
    eval_every: int = 250
    heldout_speakers: float = 0.1

    def __post_init__(self) -> None:
        if self.width % self.heads:
            raise ValueError(f"width {self.width} must be a multiple of heads {self.heads}")
        if not self.steps or any(s < 1 for s in self.steps):
            raise ValueError("steps must list ≥ 1 positive step count (one per iteration)")
        if len(self.iter_layers) < len(self.steps) - 1:
            raise ValueError(f"iter_layers needs a layer for each iteration after the first ({len(self.steps) - 1})")
        if any(not 1 <= layer <= self.depth for layer in self.iter_layers):
            raise ValueError(f"iter_layers must lie in 1..{self.depth}")
        if not 0 < self.mask_prob < 1:
            raise ValueError("mask_prob must lie in (0, 1)")
        if self.contrastive_weight < 0 or self.contrastive_temp <= 0:
            raise ValueError("contrastive_weight must be ≥ 0 and contrastive_temp > 0")
        if self.contrastive_weight and not 1 <= self.contrastive_layer <= self.depth:
            raise ValueError(f"contrastive_layer must lie in 1..{self.depth}")
        if self.contrastive_batch < 0 or self.contrastive_batch == 1:
            raise ValueError("contrastive_batch must be 0 (the masked-prediction crops) or ≥ 2")
        if self.contrastive_batch and not self.contrastive_weight:
            raise ValueError("contrastive_batch is used only by the contrastive term: set contrastive_weight > 0")
        if self.contrastive_weight and (self.contrastive_batch or self.batch_size) < 2:
            raise ValueError("the contrastive term needs batch_size ≥ 2 (other utterances are its negatives)")
        if self.augment_gain_db < 0:
            raise ValueError("augment_gain_db must be ≥ 0")
        if self.crop_seconds * SAMPLE_RATE < FRAME_WINDOW:
            raise ValueError("crop_seconds too short for one frame")
        if not 2 <= self.n_clusters <= MAX_CLUSTERS:
            raise ValueError(f"n_clusters must lie in 2..{MAX_CLUSTERS}, got {self.n_clusters}")
        if not 1 <= self.final_dim <= MAX_FINAL_DIM:
            raise ValueError(f"final_dim must lie in 1..{MAX_FINAL_DIM}, got {self.final_dim}")

    def encoder_config(self) -> Any:
        """The :class:`deepwide.models.EncoderConfig` of the teacher (pre-LN, spectral front-end)."""
        from deepwide.models import EncoderConfig, FrontendConfig

        return EncoderConfig(
            depth=self.depth,
            width=self.width,
            ffn=self.ffn,
            heads=self.heads,
            frontend=FrontendConfig(
                kind="spectral",
                n_mels=self.n_mels,
                channels=self.frontend_channels,
                kernel=self.frontend_kernel,
            ),
            layer_norm_first=True,
        )


def quick_config(cfg: PretrainConfig | None = None) -> PretrainConfig:
    """A few-step variant for tests and smoke runs (tiny width, 2 layers, 8 clusters)."""
    base = cfg or PretrainConfig()
    return replace(base, depth=2, width=32, ffn=64, heads=2, frontend_channels=32, n_clusters=8,
                   kmeans_frames=5000, steps=(30,), iter_layers=(), crop_seconds=1.0, batch_size=4,
                   lr=2e-3, final_dim=16, eval_every=10, contrastive_layer=min(base.contrastive_layer, 2))

