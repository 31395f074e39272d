"""Fixtures for the distillation tests: a tiny random teacher and a few fabricated WAVs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from deepwide.corpora import Manifest, Utterance

SR = 16_000


def tiny_encoder_config(depth: int = 4, width: int = 32):
    """A HuBERT-layout encoder small enough to train in a second on one CPU thread."""
    from deepwide.models import EncoderConfig, FrontendConfig

    return EncoderConfig(
        depth=depth,
        width=width,
        ffn=2 * width,
        heads=2,
        frontend=FrontendConfig(kind="spectral", n_mels=16, channels=32, kernel=3),
        layer_norm_first=True,
        pos_conv_kernel=8,
        pos_conv_groups=4,
    )


def write_corpus(root: Path, n: int = 10, seed: int = 0) -> Manifest:
    """``n`` WAVs of 0.6–1.6 s (sines with harmonics plus noise), all in the train split."""
    rng = np.random.default_rng(seed)
    utts = []
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        dur = float(rng.uniform(0.6, 1.6))
        t = np.arange(int(dur * SR)) / SR
        f0 = rng.uniform(100, 300)
        wav = sum(np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6)) / k for k in range(1, 4))
        wav = 0.3 * wav * (0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(1, 4) * t)) + 0.05 * rng.normal(size=t.size)
        name = f"u{i:02d}.wav"
        sf.write(root / name, wav.astype(np.float32), SR)
        utts.append(Utterance(utt_id=f"u{i:02d}", path=name, speaker=f"s{i % 3}", split="train",
                              duration_s=t.size / SR))
    utts.append(Utterance(utt_id="held", path="u00.wav", speaker="s9", split="test", duration_s=utts[0].duration_s))
    manifest = Manifest(corpus_id="tiny-test", root=root, utterances=utts)
    manifest.save(root)
    return manifest


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="session")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    write_corpus(root)
    return root


@pytest.fixture(scope="session")
def teacher_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from deepwide.models import build_encoder, save_checkpoint

    out = tmp_path_factory.mktemp("teacher")
    save_checkpoint(build_encoder(tiny_encoder_config(), seed=0, model_id="test-teacher"), out)
    return out


def base_options(teacher_dir: Path, corpus_dir: Path, **kw):
    """DistillConfig keyword arguments for a tiny, fast run on the CPU."""
    opts = dict(
        teacher=str(teacher_dir),
        corpus=str(corpus_dir),
        steps=8,
        depth=2,
        width=32,
        heads=2,
        ffn=64,
        batch_seconds=3.0,
        max_crop_seconds=1.0,
        lr=2e-3,
        warmup=0.1,
        log_every=1,
        checkpoint_every=4,
        device="cpu",
    )
    opts.update(kw)
    return opts


def write_target_store(teacher, manifest: Manifest, path: Path, *, complete: bool = True, frames_mode: str = "all",
                       dtype=np.float32) -> Path:
    """A minimal store of the schema in ../shared/ARCHITECTURE.md, from whole-utterance teacher states."""
    import json

    import xarray as xr

    from deepwide.audio import load_audio

    teacher.eval()
    chunks, counts = [], []
    with torch.no_grad():
        for u in manifest:
            wav = torch.from_numpy(load_audio(manifest.audio_path(u)))[None]
            states, _ = teacher.hidden_states(wav)
            chunks.append(torch.stack([s[0] for s in states]).numpy())  # (L+1, T, D)
            counts.append(chunks[-1].shape[1])
    hidden = np.concatenate(chunks, axis=1).astype(dtype)
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    ds = xr.Dataset(
        {"hidden": (("layer", "frame", "feat"), hidden)},
        coords={
            "layer": np.arange(hidden.shape[0]),
            "utt_id": ("utt", np.array([u.utt_id for u in manifest], dtype=object)),
            "n_frames": ("utt", np.array(counts, np.int64)),
            "n_stored": ("utt", np.array(counts, np.int64)),
            "frame_offset": ("utt", offsets),
        },
        attrs={
            "model_id": teacher.model_id,
            "model_weights_hash": teacher.weights_hash(),
            "frames_mode": frames_mode,
            "completion": json.dumps({"complete": complete, "shards": 1, "done": [0] if complete else []}),
        },
    )
    ds.to_zarr(str(path), mode="w", consolidated=False, zarr_format=3)
    return path
