"""The pre-training corpus in memory (int16 audio, frame phones, speaker split) and its batches."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from deepwide.audio import load_audio
from deepwide.corpora import Manifest
from deepwide.framing import FRAME_HOP, FRAME_WINDOW, num_frames, phone_labels


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
            phones.append(phone_labels(utt.phones, num_frames(len(wav)), phone_index).astype(np.int64))
        speakers = sorted({u.speaker for u in manifest.utterances})
        rng = np.random.default_rng(seed)
        n_held = max(1, int(round(heldout_frac * len(speakers))))
        held = set(rng.permutation(speakers)[:n_held].tolist())
        is_held = np.array([u.speaker in held for u in manifest.utterances])
        long_enough = np.array([len(w) >= FRAME_WINDOW for w in wavs])
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
        seg = wav[start_fr * FRAME_HOP: start_fr * FRAME_HOP + crop_samples]
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

