"""The pre-training model (torchaudio's HuBERTPretrainModel around a deepwide encoder) and its losses.

* :func:`build_pretrain_model` — span masking and cosine logits around the encoder's modules;
* :func:`masked_loss` — HuBERT's masked prediction of the k-means targets;
* :func:`pretrain_loss` — that, plus (``contrastive_weight > 0``) the utterance InfoNCE term
  of :func:`utterance_infonce` between the two augmented halves of every crop.
"""

from __future__ import annotations

from typing import Any

import torch

from deepwide.models.pretraining.augment import augmented_batch, augmented_halves
from deepwide.models.pretraining.config import PretrainConfig
from deepwide.models.torchaudio_private import encoder_input, transformer_input


def build_pretrain_model(encoder: Any, cfg: PretrainConfig, n_clusters: int, seed: int) -> torch.nn.Module:
    """Wrap a deepwide encoder in torchaudio's HuBERTPretrainModel (sharing its modules).

    The label embeddings are re-initialised from N(0, 1): torchaudio's uniform [0, 1]
    initialisation makes all classes nearly parallel under the cosine logits and stalls
    learning.
    """
    from torchaudio.models.wav2vec2.components import LogitGenerator, MaskGenerator
    from torchaudio.models.wav2vec2.model import HuBERTPretrainModel

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        mask = MaskGenerator(
            cfg.width, cfg.mask_prob, "static", 0.0, cfg.mask_length, False, 1, 0.0, "static", 0.0, 1, False, 0
        )
        logits = LogitGenerator(cfg.width, n_clusters, cfg.final_dim, False, True)
        torch.nn.init.normal_(logits.label_embeddings)
    model = HuBERTPretrainModel(encoder.as_torchaudio(), mask, logits, feature_grad_mult=None)
    if cfg.contrastive_weight:
        with torch.random.fork_rng():
            torch.manual_seed(seed + 1)
            model.contrastive_head = torch.nn.Sequential(
                torch.nn.LayerNorm(cfg.width), torch.nn.Linear(cfg.width, cfg.final_dim)
            )
    return model


def masked_loss(model: torch.nn.Module, wavs: torch.Tensor, lengths: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Cross-entropy of masked frames against their clusters, and masked accuracy.

    Returns:
        ``(loss, accuracy)``: the positive class is column 0 of torchaudio's cosine logits.
    """
    # Labels are −1 only on padded frames, which the model's padding mask never selects.
    logit_m, _, _ = model(wavs, labels.clamp(min=0), lengths)
    target = torch.zeros(logit_m.shape[0], dtype=torch.long)
    loss = torch.nn.functional.cross_entropy(logit_m.float(), target)
    acc = float((logit_m.argmax(-1) == 0).float().mean()) if logit_m.numel() else 0.0
    return loss, acc


def pretrain_loss(
    model: torch.nn.Module, wavs: torch.Tensor, lengths: torch.Tensor, labels: torch.Tensor, cfg: PretrainConfig,
    contrastive: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, float, dict[str, float]]:
    """Masked prediction, plus ``cfg.contrastive_weight`` × the utterance InfoNCE term.

    Args:
        wavs: (B, S); lengths: (B,); labels: (B, T) targets, −1 on padding.
        contrastive: ``(wavs (B', S'), lengths (B',))`` crops for the InfoNCE term
            (``cfg.contrastive_batch``); None: ``wavs`` and ``lengths`` themselves.

    Returns:
        ``(loss, masked accuracy, extra)``: ``extra`` holds the InfoNCE loss and accuracy
        when the term is on, else nothing.
    """
    gain_db = cfg.augment_gain_db if cfg.augment_channel else 0.0
    inputs = augmented_batch(wavs, lengths, gain_db) if cfg.augment_channel else wavs
    loss, acc = masked_loss(model, inputs, lengths, labels)
    if not cfg.contrastive_weight:
        return loss, acc, {}
    c_wavs, c_lengths = contrastive if contrastive is not None else (wavs, lengths)
    halves, half_lengths = augmented_halves(c_wavs, c_lengths, gain_db)
    pooled = pooled_layer(model, halves, half_lengths, cfg.contrastive_layer)
    closs, cacc = utterance_infonce(model.contrastive_head(pooled), cfg.contrastive_temp)
    return loss + cfg.contrastive_weight * closs, acc, {"infonce": closs.item(), "infonce_acc": cacc}


def utterance_infonce(pooled: torch.Tensor, temperature: float) -> tuple[torch.Tensor, float]:
    """InfoNCE between the two halves of each utterance (rows 2j and 2j + 1).

    Args:
        pooled: (B, E) one embedding per half, B even.

    Returns:
        ``(loss, accuracy)``: cross-entropy of finding the other half among the B − 1 other
        rows (cosine similarity / ``temperature``), and how often it is the nearest.
    """
    z = torch.nn.functional.normalize(pooled.float(), dim=-1)
    sim = z @ z.T / temperature
    sim = sim.masked_fill(torch.eye(len(z), dtype=torch.bool), float("-inf"))
    partner = torch.arange(len(z)) ^ 1
    return torch.nn.functional.cross_entropy(sim, partner), float((sim.argmax(-1) == partner).float().mean())


def pooled_layer(model: torch.nn.Module, wavs: torch.Tensor, lengths: torch.Tensor, layer: int) -> torch.Tensor:
    """Mean over valid frames of layer ``layer``'s output (unmasked input, layers above not run).

    Args:
        wavs: (B, S); lengths: (B,).

    Returns:
        (B, D).
    """
    w2v = model.wav2vec2
    x, frame_len = w2v.feature_extractor(wavs, lengths)
    x, attn = encoder_input(w2v.encoder, x, frame_len)
    transformer = w2v.encoder.transformer
    x = transformer_input(transformer, x)
    bias = None
    for lay in transformer.layers[:layer]:
        x, bias = lay(x, attn, position_bias=bias)
    valid = (torch.arange(x.shape[1])[None] < frame_len[:, None]).to(x.dtype)[..., None]
    return (x * valid).sum(1) / valid.sum(1).clamp(min=1)

