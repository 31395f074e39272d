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
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepwide.audio import load_audio
from deepwide.config import (
    atomic_target,
    atomic_write_json,
    atomic_write_text,
    config_hash,
    config_to_dict,
)
from deepwide.corpora import Manifest
from deepwide.errors import ConfigError
from deepwide.models.torchfile import CorruptFileError, load_torch_file, numpy_array_globals

log = logging.getLogger(__name__)

WIN = 400  # samples per analysis window (25 ms)
HOP = 320  # samples per frame (20 ms, 50 Hz)

#: Format tag and version of ``state.pt`` (version 2: weights-only-loadable, labels as tensors).
STATE_FORMAT = "deepwide-pretrain-state"
STATE_VERSION = 2
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
        if self.crop_seconds * 16000 < WIN:
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


# -- targets ------------------------------------------------------------------------------------

def num_frames(n_samples: int) -> int:
    """Frames of the 50 Hz grid for ``n_samples`` at 16 kHz: ⌊(S − 400)/320⌋ + 1 (0 if shorter)."""
    return 0 if n_samples < WIN else (n_samples - WIN) // HOP + 1


def mfcc_features(wav: np.ndarray) -> np.ndarray:
    """MFCC + Δ + ΔΔ on the model's frame grid, normalised per utterance.

    Args:
        wav: (S,) float32 at 16 kHz.

    Returns:
        (T, 39) float32 with T = :func:`num_frames` (S); zero mean and unit variance per column.
    """
    import torchaudio

    mfcc = _mfcc_transform()(torch.from_numpy(wav)[None])[0].T  # (T, 13)
    feats = torch.cat(
        [mfcc, torchaudio.functional.compute_deltas(mfcc.T).T,
         torchaudio.functional.compute_deltas(torchaudio.functional.compute_deltas(mfcc.T)).T],
        dim=1,
    ).numpy()
    feats = feats[: num_frames(len(wav))]
    return ((feats - feats.mean(0)) / (feats.std(0) + 1e-5)).astype(np.float32)


_MFCC: Any = None


def _mfcc_transform() -> Any:
    global _MFCC
    if _MFCC is None:
        import torchaudio

        _MFCC = torchaudio.transforms.MFCC(
            sample_rate=16000,
            n_mfcc=13,
            melkwargs={"n_fft": WIN, "win_length": WIN, "hop_length": HOP, "n_mels": 40, "center": False},
        )
    return _MFCC


def frame_phones(utt: Any, n_frames: int, phone_index: dict[str, int]) -> np.ndarray:
    """Phone class of each frame (the segment covering the frame centre), −1 where none.

    Returns:
        (n_frames,) int64.
    """
    out = np.full(n_frames, -1, np.int64)
    centres = (np.arange(n_frames) * HOP + WIN / 2) / 16000
    for phone, start, end in utt.phones:
        sel = (centres >= start) & (centres < end)
        out[sel] = phone_index.get(phone, -1)
    return out


def fit_kmeans(features: Sequence[np.ndarray], n_clusters: int, max_frames: int, seed: int) -> Any:
    """Fit MiniBatchKMeans on up to ``max_frames`` frames sampled (seeded) from ``features``.

    Args:
        features: per-utterance arrays (T_i, F).

    Returns:
        the fitted ``sklearn.cluster.MiniBatchKMeans``.
    """
    from sklearn.cluster import MiniBatchKMeans

    rng = np.random.default_rng(seed)
    allf = np.concatenate(features)
    if len(allf) > max_frames:
        allf = allf[rng.choice(len(allf), max_frames, replace=False)]
    km = MiniBatchKMeans(
        n_clusters=n_clusters, batch_size=10_000, n_init=3, max_iter=100, random_state=seed
    )
    km.fit(allf)
    return km


def cluster_quality(assign: np.ndarray, phones: np.ndarray) -> dict[str, float]:
    """Phone purity and phone-normalised mutual information (PNMI) of cluster assignments.

    Args:
        assign: (N,) cluster ids; phones: (N,) phone ids (−1 ignored).
    """
    keep = phones >= 0
    a, p = assign[keep], phones[keep]
    joint = np.zeros((a.max() + 1, p.max() + 1))
    np.add.at(joint, (a, p), 1)
    joint /= joint.sum()
    pa, pp = joint.sum(1, keepdims=True), joint.sum(0, keepdims=True)
    nz = joint > 0
    mi = float((joint[nz] * np.log(joint[nz] / (pa @ pp)[nz])).sum())
    hp = float(-(pp[pp > 0] * np.log(pp[pp > 0])).sum())
    purity = float(joint.max(1).sum())
    return {"phone_purity": purity, "pnmi": mi / hp if hp > 0 else 0.0}


# -- data -----------------------------------------------------------------------------------------

@dataclass
class PretrainData:
    """The corpus held in memory: int16 audio and per-frame targets/phones.

    Attributes:
        wavs: per utterance (S_i,) int16 audio at 16 kHz.
        phones: per utterance (T_i,) phone ids (−1 none).
        train_idx, heldout_idx: utterance indices by speaker (held-out speakers never train).
    """

    wavs: list[np.ndarray]
    phones: list[np.ndarray]
    train_idx: np.ndarray
    heldout_idx: np.ndarray

    @classmethod
    def load(cls, manifest: Manifest, heldout_frac: float, seed: int) -> PretrainData:
        from tqdm import tqdm

        phone_index = {p: i for i, p in enumerate(manifest.phone_set)}
        wavs, phones = [], []
        for utt in tqdm(manifest.utterances, desc="loading audio", unit="utt", leave=False):
            wav = load_audio(manifest.audio_path(utt), expected_s=utt.duration_s)
            wavs.append(np.clip(np.round(wav * 32767), -32768, 32767).astype(np.int16))
            phones.append(frame_phones(utt, num_frames(len(wav)), phone_index))
        speakers = sorted({u.speaker for u in manifest.utterances})
        rng = np.random.default_rng(seed)
        n_held = max(1, int(round(heldout_frac * len(speakers))))
        held = set(rng.permutation(speakers)[:n_held].tolist())
        is_held = np.array([u.speaker in held for u in manifest.utterances])
        long_enough = np.array([len(w) >= WIN for w in wavs])
        return cls(
            wavs=wavs,
            phones=phones,
            train_idx=np.flatnonzero(~is_held & long_enough),
            heldout_idx=np.flatnonzero(is_held & long_enough),
        )

    def wav_float(self, i: int) -> np.ndarray:
        return self.wavs[i].astype(np.float32) / 32767.0


def sample_batch(
    data: PretrainData, labels: list[np.ndarray], idx: np.ndarray, batch_size: int,
    crop_samples: int, rng: np.random.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random frame-aligned crops (start at a multiple of 320 samples) and their labels.

    Returns:
        ``(wavs (B, S), lengths (B,), labels (B, T))``; padded labels are −1 (never scored:
        the pre-training model masks padding out of both logit sets).
    """
    picks = rng.choice(idx, batch_size, replace=len(idx) < batch_size)
    crops, labs = [], []
    for i in picks:
        wav = data.wavs[i]
        n_fr = num_frames(len(wav))
        want = num_frames(crop_samples)
        start_fr = int(rng.integers(0, max(1, n_fr - want + 1)))
        seg = wav[start_fr * HOP: start_fr * HOP + crop_samples]
        crops.append(seg.astype(np.float32) / 32767.0)
        labs.append(labels[i][start_fr: start_fr + num_frames(len(seg))])
    lengths = torch.tensor([len(c) for c in crops])
    wavs = torch.zeros(len(crops), int(lengths.max()))
    t_max = num_frames(int(lengths.max()))
    lab = torch.full((len(crops), t_max), -1, dtype=torch.long)
    for b, (c, y) in enumerate(zip(crops, labs, strict=True)):
        wavs[b, : len(c)] = torch.from_numpy(c)
        lab[b, : len(y)] = torch.from_numpy(y)
    return wavs, lengths, lab


# -- model -----------------------------------------------------------------------------------------

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
    pooled = _pooled_layer(model, halves, half_lengths, cfg.contrastive_layer)
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


def random_channel(x: torch.Tensor, gain_db: float = 0.0) -> torch.Tensor:
    """One random recording channel: filters, peaking bands, white noise and (optionally) gain.

    High-pass 50–300 Hz, low-pass 3.5–7.5 kHz, three peaking bands of ±8 dB at 150 Hz–6 kHz,
    white noise at 10–30 dB SNR, then a gain uniform in ±``gain_db`` dB (drawn only when
    ``gain_db > 0``, so the draws without it are unchanged). Uses torch's global generator.

    Args:
        x: (S,) audio at 16 kHz.

    Returns:
        (S,) the same length.
    """
    import torchaudio.functional as AF

    r = torch.rand(12)
    y = AF.highpass_biquad(x[None], 16000, float(50 + 250 * r[0]))
    y = AF.lowpass_biquad(y, 16000, float(3500 + 4000 * r[1]))
    for k in range(3):
        y = AF.equalizer_biquad(y, 16000, float(150 * 40 ** r[2 + k]), float(16 * r[5 + k] - 8),
                                float(0.7 + 1.3 * r[8 + k]))
    rms = y.pow(2).mean().sqrt().clamp(min=1e-4)
    y = y + rms * 10 ** (-(10 + 20 * float(r[11])) / 20) * torch.randn_like(y)
    if gain_db > 0:
        y = y * 10 ** (float(torch.rand(1)) * 2 * gain_db / 20 - gain_db / 20)
    return y[0]


def augmented_batch(wavs: torch.Tensor, lengths: torch.Tensor, gain_db: float) -> torch.Tensor:
    """Every row through a :func:`random_channel` of its own (valid samples only; padding stays 0).

    Args:
        wavs: (B, S); lengths: (B,).

    Returns:
        (B, S).
    """
    out = torch.zeros_like(wavs)
    for b in range(len(wavs)):
        n = int(lengths[b])
        out[b, :n] = random_channel(wavs[b, :n], gain_db)
    return out


def augmented_halves(
    wavs: torch.Tensor, lengths: torch.Tensor, gain_db: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut every row in two at a random frame of its middle third; give each half its own channel.

    Each half goes through a :func:`random_channel` of its own (filters, peaking bands, noise,
    and a gain of ±``gain_db`` dB when it is > 0), so the two halves of an utterance share the
    speaker but neither words nor recording conditions. Draws from torch's global generator
    (seeded and checkpointed by the run).

    Args:
        wavs: (B, S); lengths: (B,) valid samples, each ≥ 400.

    Returns:
        ``(halves (2B, S'), lengths (2B,))``: rows ``2j``, ``2j + 1`` are the frames
        ``[0, cut)`` and ``[cut, n)`` of row ``j`` (a one-frame row gives that frame twice).
    """
    parts = []
    for b in range(len(wavs)):
        w = wavs[b, : int(lengths[b])]
        n = num_frames(len(w))
        cut = int(torch.randint(max(1, n // 3), max(2, 2 * n // 3 + 1), (1,)))
        # frames [0, cut) need samples [0, (cut - 1) * HOP + WIN); frames [cut, n) start at cut * HOP
        for part in (w[: (cut - 1) * HOP + WIN], w[cut * HOP:]):
            part = part if len(part) >= WIN else w[:WIN]
            parts.append(random_channel(part, gain_db))
    out_len = torch.tensor([len(x) for x in parts])
    out = torch.zeros(len(parts), int(out_len.max()))
    for i, x in enumerate(parts):
        out[i, : len(x)] = x
    return out, out_len


def _pooled_layer(model: torch.nn.Module, wavs: torch.Tensor, lengths: torch.Tensor, layer: int) -> torch.Tensor:
    """Mean over valid frames of layer ``layer``'s output (unmasked input, layers above not run).

    Args:
        wavs: (B, S); lengths: (B,).

    Returns:
        (B, D).
    """
    w2v = model.wav2vec2
    x, frame_len = w2v.feature_extractor(wavs, lengths)
    x, attn = w2v.encoder._preprocess(x, frame_len)
    transformer = w2v.encoder.transformer
    x = transformer._preprocess(x)
    bias = None
    for lay in transformer.layers[:layer]:
        x, bias = lay(x, attn, position_bias=bias)
    valid = (torch.arange(x.shape[1])[None] < frame_len[:, None]).to(x.dtype)[..., None]
    return (x * valid).sum(1) / valid.sum(1).clamp(min=1)


def lr_at(step: int, total: int, cfg: PretrainConfig) -> float:
    """Linear warm-up to ``cfg.lr`` then cosine decay to 5 % of it."""
    warm = max(1, int(cfg.warmup_frac * total))
    if step < warm:
        return cfg.lr * (step + 1) / warm
    t = (step - warm) / max(1, total - warm)
    return cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


# -- the run ---------------------------------------------------------------------------------------

def _layer_features(encoder: Any, data: PretrainData, idx: Iterator[int] | Sequence[int], layer: int) -> list[np.ndarray]:
    """Hidden states of ``layer`` for the utterances ``idx`` (per-utterance normalised)."""
    from tqdm import tqdm

    out = []
    encoder.eval()
    with torch.inference_mode():
        for i in tqdm(list(idx), desc=f"layer {layer} features", unit="utt", leave=False):
            wav = torch.from_numpy(data.wav_float(i))[None]
            states, _ = encoder.hidden_states(wav, None)
            f = states[layer][0].numpy()
            out.append(((f - f.mean(0)) / (f.std(0) + 1e-5)).astype(np.float32))
    return out


def make_targets(
    features: list[np.ndarray], data: PretrainData, cfg: PretrainConfig, seed: int
) -> tuple[list[np.ndarray], dict[str, float]]:
    """k-means targets for every utterance, fitted on training speakers only, plus their quality."""
    km = fit_kmeans([features[i] for i in data.train_idx], cfg.n_clusters, cfg.kmeans_frames, seed)
    labels = [km.predict(f).astype(np.int64) if len(f) else np.zeros(0, np.int64) for f in features]
    quality = {}
    for name, idx in (("train", data.train_idx), ("heldout", data.heldout_idx)):
        a = np.concatenate([labels[i] for i in idx])
        p = np.concatenate([data.phones[i][: len(labels[i])] for i in idx])
        q = cluster_quality(a, p)
        quality.update({f"{name}_{k}": v for k, v in q.items()})
    return labels, quality


def pretrain_teacher(
    manifest: Manifest,
    out_dir: str | Path,
    cfg: PretrainConfig,
    *,
    seed: int = 0,
    resume: bool = False,
    threads: int | None = None,
) -> Path:
    """Run the whole recipe and write a deepwide checkpoint (plus ``pretrain_log.jsonl``).

    Args:
        manifest: the corpus (needs phone alignments only for the quality report).
        out_dir: output folder; ``out_dir/model`` is the final deepwide checkpoint,
            ``out_dir/state.pt`` the resumable training state.
        cfg: the recipe.
        seed: seeds data order, masking, k-means and initialisation.
        resume: continue from ``out_dir/state.pt`` (same config required).

    Returns:
        the checkpoint folder.
    """
    from deepwide.models import build_encoder, save_checkpoint

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if threads:
        torch.set_num_threads(threads)
    key = config_hash({"cfg": config_to_dict(cfg), "seed": seed, "manifest": manifest.content_hash()})
    state_path = out / "state.pt"
    log_path = out / "pretrain_log.jsonl"
    state: dict[str, Any] | None = None
    if state_path.exists():
        if not resume:
            raise ConfigError(f"{out} already holds a pre-training run; pass --resume to continue it or choose another --out")
        state = load_state(state_path, hint=f"delete {state_path} to restart the run from the beginning, "
                                            f"or choose another --out")
        if state["key"] != key:
            raise ConfigError(f"{out} holds a run with another config, seed or corpus; use another --out")
        _drop_torn_line(log_path)
    info = {"config": config_to_dict(cfg), "seed": seed, "corpus_id": manifest.corpus_id,
            "manifest_hash": manifest.content_hash()}
    atomic_write_json(out / "pretrain_config.json", info)

    data = PretrainData.load(manifest, cfg.heldout_speakers, seed)
    log.info("pre-training on %d utterances (%d held out)", len(data.train_idx), len(data.heldout_idx))
    encoder = build_encoder(cfg.encoder_config(), seed=seed, model_id="tiny-teacher")
    if state is not None:
        _load_encoder(encoder, state, state_path)
    start_iter = state["iteration"] if state else 0
    for it in range(start_iter, len(cfg.steps)):
        it_seed = seed + 1000 * it
        if state and state["iteration"] == it and "labels" in state:
            labels, quality = state["labels"], state["quality"]
        else:
            if it == 0:
                feats = [mfcc_features(data.wav_float(i)) for i in range(len(data.wavs))]
            else:
                feats = _layer_features(encoder, data, range(len(data.wavs)), cfg.iter_layers[it - 1])
            labels, quality = make_targets(feats, data, cfg, it_seed)
            del feats
        log.info("iteration %d targets: %s", it + 1, quality)
        _append_jsonl(log_path, {"iteration": it + 1, "event": "targets", **quality})
        model = build_pretrain_model(encoder, cfg, cfg.n_clusters, it_seed)
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.98), weight_decay=cfg.weight_decay)
        rng = np.random.default_rng(it_seed)
        step = 0
        if state and state["iteration"] == it and "model" in state:
            try:
                model.load_state_dict(state["model"])
                opt.load_state_dict(state["optimizer"])
                rng.bit_generator.state = state["rng"]
                torch.set_rng_state(state["torch_rng"])
            except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as exc:
                raise CorruptFileError(
                    f"{state_path} does not fit this run's model ({type(exc).__name__}: "
                    f"{str(exc).splitlines()[0][:120] if str(exc) else ''}); delete it to restart the run "
                    f"from the beginning, or choose another --out"
                ) from None
            step = state["step"]
        else:
            torch.manual_seed(it_seed)
            # save the targets at once: k-means is the slow part of a restart
            _save_state(state_path, key=key, iteration=it, step=0, encoder=encoder, model=model,
                        opt=opt, rng=rng, labels=labels, quality=quality)
        state = None
        total = cfg.steps[it]
        crop = int(cfg.crop_seconds * 16000)
        t0, seen = time.time(), 0
        window: list[tuple[float, float]] = []
        from tqdm import tqdm

        bar = tqdm(total=total, initial=step, desc=f"iteration {it + 1}", unit="step")
        while step < total:
            model.train()
            wavs, lengths, lab = sample_batch(data, labels, data.train_idx, cfg.batch_size, crop, rng)
            contrastive = None
            if cfg.contrastive_batch:  # validated: only with contrastive_weight > 0
                contrastive = sample_batch(data, labels, data.train_idx, cfg.contrastive_batch, crop, rng)[:2]
            for g in opt.param_groups:
                g["lr"] = lr_at(step, total, cfg)
            loss, acc, extra = pretrain_loss(model, wavs, lengths, lab, cfg, contrastive)
            if not torch.isfinite(loss):
                raise ConfigError(f"pre-training loss became {loss.item()} at iteration {it + 1} step {step}; "
                                  f"lower --lr or resume from {state_path}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            step += 1
            seen += int(lengths.sum())
            window.append((loss.item(), acc, *extra.values()))
            bar.update(1)
            if step % max(1, min(25, total // 10)) == 0 or step == total:
                # the window means are what the log and its tests read: single batches are noisy
                loss_w, acc_w, *extra_w = (float(v) for v in np.mean(window, axis=0))
                window.clear()
                rec = {"iteration": it + 1, "step": step, "loss": loss_w, "masked_acc": acc_w,
                       **dict(zip(extra, extra_w, strict=True)),
                       "lr": opt.param_groups[0]["lr"], "audio_s_per_s": seen / 16000 / (time.time() - t0)}
                _append_jsonl(log_path, rec)
                bar.set_postfix(loss=f"{loss_w:.3f}", acc=f"{acc_w:.2f}")
            if step % cfg.eval_every == 0 or step == total:
                hacc = heldout_masked_accuracy(model, data, labels, cfg, seed)
                _append_jsonl(log_path, {"iteration": it + 1, "step": step, "event": "eval", "heldout_masked_acc": hacc})
                _save_state(state_path, key=key, iteration=it, step=step, encoder=encoder, model=model,
                            opt=opt, rng=rng, labels=labels, quality=quality)
        bar.close()
        if it + 1 < len(cfg.steps):
            # each iteration's model is kept (HuBERT practice), recorded as the recipe cut there
            info_k, cfg_k = _recipe_cut(info, cfg, it + 1)
            save_checkpoint(encoder, out / f"model-iter{it + 1}", extra=_run_extra(info_k, cfg_k, it + 1, 0))
        # the pre-training model shares the encoder's modules, so the encoder is trained in place
        _save_state(state_path, key=key, iteration=it + 1, step=0, encoder=encoder, model=None,
                    opt=None, rng=None, labels=None, quality=None)
    return save_checkpoint(encoder, out / "model", extra=_run_extra(info, cfg, len(cfg.steps), 0))


def _recipe_cut(info: dict[str, Any], cfg: PretrainConfig, iterations: int) -> tuple[dict[str, Any], PretrainConfig]:
    """The run's record as if its recipe had stopped after ``iterations`` iterations.

    Iteration k depends only on the steps of iterations ≤ k (its learning-rate schedule spans
    its own steps; data order, masks and k-means are seeded per iteration), so the model after
    iteration k of a longer recipe *is* the final model of the recipe cut there — a test checks it.
    """
    cut = replace(cfg, steps=cfg.steps[:iterations], iter_layers=cfg.iter_layers[:iterations - 1])
    return {**info, "config": config_to_dict(cut)}, cut


def _run_extra(info: dict[str, Any], cfg: PretrainConfig, iteration: int, step: int) -> dict[str, Any]:
    """What a teacher checkpoint records of its run (the same for the final model and an export).

    Args:
        info: the run's ``pretrain_config.json`` (config, seed, corpus id, manifest hash).
        iteration, step: where the weights come from, as saved in ``state.pt`` (completed
            iterations, steps into the current one).
    """
    return {"pretrain": info, "iteration": iteration + (1 if step else 0), "step_in_iteration": step,
            "total_steps_done": sum(cfg.steps[:iteration]) + step, "total_steps_planned": sum(cfg.steps)}


def heldout_masked_accuracy(model: torch.nn.Module, data: PretrainData, labels: list[np.ndarray],
                            cfg: PretrainConfig, seed: int, batches: int = 4) -> float:
    """Masked-prediction accuracy on held-out speakers (fixed seeded crops and masks)."""
    if len(data.heldout_idx) == 0:
        return float("nan")
    rng = np.random.default_rng(seed + 7)
    model.eval()
    accs = []
    with torch.random.fork_rng(), torch.inference_mode():
        torch.manual_seed(seed + 7)
        for _ in range(batches):
            wavs, lengths, lab = sample_batch(data, labels, data.heldout_idx, cfg.batch_size,
                                              int(cfg.crop_seconds * 16000), rng)
            model.train()  # masking is only applied in training mode
            _, acc = masked_loss(model, wavs, lengths, lab)
            accs.append(acc)
    model.train()
    return float(np.mean(accs))


def _save_state(path: Path, **state: Any) -> None:
    """Write ``state.pt``: only tensors, plain containers, numbers and strings (weights-only)."""
    payload = {
        "format": STATE_FORMAT,
        "format_version": STATE_VERSION,
        "key": state["key"],
        "iteration": state["iteration"],
        "step": state["step"],
        "encoder": state["encoder"].state_dict(),
    }
    if state["model"] is not None:
        payload.update(
            model=state["model"].state_dict(),
            optimizer=state["opt"].state_dict(),
            rng=state["rng"].bit_generator.state,  # {"bit_generator": "PCG64", "state": {ints}, ...}
            torch_rng=torch.get_rng_state(),
            labels=[torch.from_numpy(np.ascontiguousarray(lab, dtype=np.int64)) for lab in state["labels"]],
            quality={k: float(v) for k, v in state["quality"].items()},
        )
    with atomic_target(path) as tmp:
        torch.save(payload, tmp)


_STATE_KEYS = {"key": str, "iteration": int, "step": int, "encoder": dict}
_ITERATION_KEYS = {"model": dict, "optimizer": dict, "rng": dict, "torch_rng": torch.Tensor, "labels": list,
                   "quality": dict}


def load_state(path: str | Path, *, hint: str) -> dict[str, Any]:
    """Read a pre-training ``state.pt`` without unpickling code, checking its layout.

    Version-2 states hold tensors, plain containers, numbers and strings only; older states
    (no ``format`` tag) also hold numeric numpy arrays (the k-means labels), which are read
    through checked stand-ins for numpy's reconstructors (:mod:`deepwide.models.torchfile`)
    and converted — nothing else a file names is ever built.

    Args:
        path: the ``state.pt``.
        hint: what to do if it cannot be used, appended to the one-line error.

    Returns:
        the state; ``labels`` (when present) as a list of (T_i,) int64 numpy arrays.

    Raises:
        UnsafeFileError: the file holds code or objects outside the allow-list (nothing ran).
        CorruptFileError: truncated, not a torch file, or not a pre-training state.
    """
    p = Path(path)
    state = load_torch_file(p, hint=hint, allow=numpy_array_globals())

    def bad(what: str) -> CorruptFileError:
        return CorruptFileError(f"{p} is not a deepwide pre-training state ({what}); {hint}")

    if not isinstance(state, dict):
        raise bad(f"it holds a {type(state).__name__}, not a dict")
    version = state.get("format_version", 1)
    if state.get("format", STATE_FORMAT) != STATE_FORMAT or isinstance(version, bool) or not isinstance(version, int):
        raise bad(f"format {state.get('format')!r}, version {version!r}")
    if version > STATE_VERSION:
        raise CorruptFileError(f"{p} was written by a newer deepwide (state format {version}); upgrade deepwide")
    wanted = dict(_STATE_KEYS, **(_ITERATION_KEYS if "model" in state else {}))
    for name, kind in wanted.items():
        value = state.get(name)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise bad(f"{name!r} is {type(value).__name__}, not {kind.__name__}")
    if "model" in state:
        labels = []
        for lab in state["labels"]:
            arr = lab.numpy() if isinstance(lab, torch.Tensor) else lab
            if not isinstance(arr, np.ndarray) or arr.dtype != np.int64 or arr.ndim != 1:
                raise bad("its k-means labels are not 1-D int64 arrays")
            labels.append(arr)
        state["labels"] = labels
        if version < STATE_VERSION:
            log.info("read %s, a state written by an older deepwide (its numpy labels converted)", p)
    return state


def _load_encoder(encoder: Any, state: dict[str, Any], path: Path) -> None:
    """The state's encoder weights into ``encoder``; a mismatch is a one-line error."""
    from deepwide.models.loading import load_state_into

    weights = state["encoder"]
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in weights.items()):
        raise CorruptFileError(f"{path} is not a deepwide pre-training state (its encoder holds non-tensors); "
                               f"delete it to restart the run, or choose another --out")
    load_state_into(encoder, weights, source=f"{path} (encoder)")


def _read_run_info(path: Path) -> dict[str, Any]:
    """``pretrain_config.json`` of a run, checked (config dict and integer seed)."""
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}; rerun `deepwide teacher pretrain` into a fresh --out") from None
    if not isinstance(info, dict) or not isinstance(info.get("config"), dict) or type(info.get("seed")) is not int:
        raise ConfigError(f"{path} holds no run record (config and seed); rerun `deepwide teacher pretrain` "
                          f"into a fresh --out")
    return info


def _drop_torn_line(path: Path) -> None:
    """Drop a torn last line of a JSON-lines log (a kill mid-append), rewriting it atomically.

    A complete last record that only lacks its newline is kept (the newline is added), so the
    next append starts a line of its own.
    """
    if not path.is_file():
        return
    text = path.read_text(encoding="utf-8", errors="replace")
    lines = text.splitlines()
    if not lines or text.endswith("\n"):
        return
    try:
        json.loads(lines[-1])
    except json.JSONDecodeError:
        log.warning("dropping the torn last line of %s (a write cut short): %.60s", path, lines[-1])
        lines = lines[:-1]
    atomic_write_text(path, "".join(line + "\n" for line in lines))


def _append_jsonl(path: Path, record: dict[str, Any]) -> None:
    with path.open("a") as fh:
        fh.write(json.dumps(record) + "\n")


def quick_config(cfg: PretrainConfig | None = None) -> PretrainConfig:
    """A few-step variant for tests and smoke runs (tiny width, 2 layers, 8 clusters)."""
    base = cfg or PretrainConfig()
    return replace(base, depth=2, width=32, ffn=64, heads=2, frontend_channels=32, n_clusters=8,
                   kmeans_frames=5000, steps=(30,), iter_layers=(), crop_seconds=1.0, batch_size=4,
                   lr=2e-3, final_dim=16, eval_every=10, contrastive_layer=min(base.contrastive_layer, 2))


def export_teacher(run_dir: str | Path, out_dir: str | Path, *, half: bool = True,
                   iterations: int | None = None) -> Path:
    """Write the encoder of a (possibly unfinished) pre-training run as a deepwide checkpoint.

    The weights are those of the run's last saved state (``state.pt``); ``config.json`` records
    the iteration and step they come from, so a bundled teacher always says how far it got.

    Args:
        run_dir: the ``--out`` folder of ``deepwide teacher pretrain``.
        out_dir: checkpoint folder to write (e.g. ``deepwide/models/assets/tiny-teacher``).
        half: store the weights as float16 (the bundled teacher: ≈ 20 MB instead of 40 MB).
        iterations: the state must be exactly the end of this iteration; the checkpoint then
            records the recipe cut after it (``steps[:iterations]``), whose final model it is.
    """
    from deepwide.config import config_from_dict
    from deepwide.models import build_encoder, save_checkpoint

    run = Path(run_dir)
    if not (run / "state.pt").is_file() or not (run / "pretrain_config.json").is_file():
        raise ConfigError(f"{run} holds no pre-training state; run `deepwide teacher pretrain --out {run}` first")
    info = _read_run_info(run / "pretrain_config.json")
    cfg = config_from_dict(PretrainConfig, info["config"], where=str(run / "pretrain_config.json"))
    if iterations is not None and not 1 <= iterations <= len(cfg.steps):
        raise ConfigError(f"--iterations {iterations}: the recipe in {run} has {len(cfg.steps)} iteration(s)")
    state = load_state(run / "state.pt", hint="the run's state is damaged: rerun `deepwide teacher pretrain` "
                                              "(the same config and seed reproduce it) into a fresh --out")
    encoder = build_encoder(cfg.encoder_config(), seed=info["seed"], model_id="tiny-teacher")
    _load_encoder(encoder, state, run / "state.pt")  # shares its modules with the pre-training model
    done, step = state["iteration"], state["step"]
    if iterations is not None:
        if not ((done, step) == (iterations, 0) or (done, step) == (iterations - 1, cfg.steps[iterations - 1])):
            raise ConfigError(f"{run}/state.pt is at iteration {done + 1}, step {step}, not at the end of iteration "
                              f"{iterations}; export without --iterations, or from a copy saved then")
        info, cfg = _recipe_cut(info, cfg, iterations)
        done, step = iterations, 0
    return save_checkpoint(encoder, out_dir, extra=_run_extra(info, cfg, done, step), half=half)
