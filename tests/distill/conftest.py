"""Fixtures for the distillation tests: a tiny random teacher and a few fabricated WAVs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from deepwide.corpora import Manifest, Utterance
from tests.threads import one_thread  # noqa: F401 (autouse fixture)

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


def write_target_store(teacher, manifest: Manifest, path: Path, **config) -> Path:
    """Extract ``teacher`` over ``manifest`` into a store with deepwide's extractor (float32,
    every frame and layer unless ``config`` says otherwise; ``shard=(k, n)`` writes one shard)."""
    from deepwide.extract import ExtractConfig, extract_features

    shard = config.pop("shard", None)
    opts = dict(frames="all", dtype="float32", batch_seconds=4.0)
    opts.update(config)
    extract_features(teacher, manifest, path, ExtractConfig(**opts), shard=shard, workers=0, progress=False)
    return path
