"""Pre-training the tiny teacher: HuBERT masked prediction of k-means targets, on a CPU.

The recipe (HuBERT, Hsu et al. 2021, scaled down):

1. iteration 1 targets: k-means on MFCC + Δ + ΔΔ, normalised *per utterance* (corpus-wide
   normalisation gave clusters with phone purity 0.33; per-utterance 0.40 — see the card);
2. train a 12-layer encoder with torchaudio's :class:`HuBERTPretrainModel` (span masking,
   cosine logits against label embeddings) on random crops;
3. iteration 2 targets: k-means on a middle layer of the iteration-1 model, then train again
   (continuing from the iteration-1 weights with a fresh logit head).

Optional, off by default (``contrastive_weight > 0``): an utterance-level InfoNCE term. Every
crop of the batch is cut in two at a random frame, each half goes through a random channel and
noise of its own, and the two halves' mean-pooled ``contrastive_layer`` states (unmasked pass,
layers above not run), projected, must find each other among the batch. The halves share the
speaker but neither words nor recording conditions, so the term asks for the speaker, which
k-means targets of per-utterance-normalised MFCCs (speaker NMI 0.04) never do. No labels are
used (cf. Zhang et al. 2021, contrastive self-supervised speaker verification). Without the
independent channels the halves are matched by their shared recording instead (docs/teacher.md);
with ``augment_channel`` on a cleanly recorded corpus (``deepwide corpus synth --clean``) they
share no recording at all, and the masked prediction sees random channels too.

Cluster quality (phone purity, PNMI) is measured against the corpus alignments *before*
training each iteration; it predicts the gain. Every step is seeded; checkpoints hold the
model, optimiser, scheduler, RNG states and the step, so ``--resume`` continues a killed run.

The recipe lives in :mod:`deepwide.models.pretraining`, one module per job (config, data,
targets, augmentation, model and losses, state, the run, export); this module re-exports its
public names, which is where other code imports them from.
"""

from __future__ import annotations

from deepwide.models.pretraining.augment import augmented_batch, augmented_halves, random_channel
from deepwide.models.pretraining.config import (
    MAX_CLUSTERS,
    MAX_FINAL_DIM,
    PretrainConfig,
    quick_config,
)
from deepwide.models.pretraining.data import PretrainData, sample_batch
from deepwide.models.pretraining.export import export_teacher
from deepwide.models.pretraining.model import (
    build_pretrain_model,
    masked_loss,
    pooled_layer,
    pretrain_loss,
    utterance_infonce,
)
from deepwide.models.pretraining.run import heldout_masked_accuracy, lr_at, pretrain_teacher
from deepwide.models.pretraining.state import STATE_FORMAT, STATE_VERSION, load_state
from deepwide.models.pretraining.targets import (
    cluster_quality,
    fit_kmeans,
    layer_features,
    make_targets,
    mfcc_features,
)

__all__ = [
    "MAX_CLUSTERS", "MAX_FINAL_DIM", "STATE_FORMAT", "STATE_VERSION", "PretrainConfig",
    "PretrainData", "augmented_batch", "augmented_halves", "build_pretrain_model", "cluster_quality",
    "export_teacher", "fit_kmeans", "heldout_masked_accuracy", "layer_features", "load_state",
    "lr_at", "make_targets", "masked_loss", "mfcc_features", "pooled_layer", "pretrain_loss",
    "pretrain_teacher", "quick_config", "random_channel", "sample_batch", "utterance_infonce",
]
