"""Pre-training targets: k-means clusters of MFCCs (iteration 1) or of a layer (later ones).

Also the measures of how good the clusters are, against the corpus alignments: phone purity
and phone-normalised mutual information (PNMI), taken *before* training each iteration.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from deepwide.framing import mfcc_transform, num_frames
from deepwide.models.mfcc import with_deltas
from deepwide.models.pretraining.config import PretrainConfig
from deepwide.models.pretraining.data import PretrainData


def mfcc_features(wav: np.ndarray) -> np.ndarray:
    """MFCC + Δ + ΔΔ on the model's frame grid, normalised per utterance.

    Args:
        wav: (S,) float32 at 16 kHz.

    Returns:
        (T, 39) float32 with T = :func:`num_frames` (S); zero mean and unit variance per column.
    """
    feats = with_deltas(_mfcc_transform()(torch.from_numpy(wav)[None])[0]).numpy()  # (T, 39)
    feats = feats[: num_frames(len(wav))]
    return ((feats - feats.mean(0)) / (feats.std(0) + 1e-5)).astype(np.float32)


_MFCC: Any = None


def _mfcc_transform() -> Any:
    global _MFCC
    if _MFCC is None:
        _MFCC = mfcc_transform(13)
    return _MFCC


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


def layer_features(encoder: Any, data: PretrainData, idx: Iterator[int] | Sequence[int], layer: int) -> list[np.ndarray]:
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

