"""Tiny encoders and corpora for extraction tests, and a subprocess entry point.

``python -m tests.extract.helpers ARGS_JSON`` runs one extraction with :class:`FakeEncoder`
(used by the kill-and-resume and concurrent-shard tests).
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch

from deepwide.corpora.manifest import Manifest, Trial, Utterance

PHONES = ("a", "b", "c", "sil")


class FakeEncoder(torch.nn.Module):
    """A deterministic SpeechEncoder: framed waveform → projection → residual tanh layers.

    Frame ``t`` sees samples ``[320 t, 320 t + 400)``; frame count ``floor((S - 400) / 320) + 1``,
    so every frame depends only on its own utterance's samples (batched == per utterance).
    """

    frame_rate_hz = 50.0
    sample_rate = 16_000

    def __init__(self, num_layers: int = 3, dim: int = 8, seed: int = 0, model_id: str = "fake-encoder") -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.num_layers = num_layers
        self.dim = dim
        self.model_id = model_id
        self.seed = seed
        self.proj = torch.nn.Parameter(torch.randn(400, dim, generator=g) / 4)
        self.weights = torch.nn.ParameterList(
            [torch.nn.Parameter(torch.randn(dim, dim, generator=g) / math.sqrt(dim)) for _ in range(num_layers)]
        )

    def hidden_states(
        self, wavs: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """wavs (B, S), lengths (B,) -> L+1 × (B, T, D), frame lengths (B,)."""
        if lengths is None:
            lengths = torch.full((wavs.shape[0],), wavs.shape[1], dtype=torch.long)
        frames = wavs.unfold(1, 400, 320)  # (B, T, 400)
        x = frames @ self.proj
        states = [x]
        for w in self.weights:
            x = torch.tanh(x @ w) + 0.5 * x
            states.append(x)
        flens = torch.clamp((lengths - 400) // 320 + 1, min=0)
        return states, flens

    def config_dict(self) -> dict[str, Any]:
        return {"kind": "fake", "num_layers": self.num_layers, "dim": self.dim}

    def weights_hash(self) -> str:
        h = hashlib.sha256()
        for p in self.parameters():
            h.update(p.detach().numpy().tobytes())
        return h.hexdigest()[:16]

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def num_frames(self, num_samples: int) -> int:
        return max(0, (num_samples - 400) // 320 + 1)


def write_wav(path: Path, wav: np.ndarray, sr: int = 16_000, subtype: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), wav, sr, subtype=subtype)


def make_corpus(
    root: Path,
    n_utts: int = 12,
    *,
    seed: int = 0,
    n_speakers: int = 3,
    bad: dict[str, str] | None = None,
    min_s: float = 0.3,
    max_s: float = 1.6,
) -> Manifest:
    """Write ``n_utts`` short sine+noise WAVs under ``root`` and return their manifest.

    One file is at 8 kHz (resampled on load) and one is stereo. ``bad`` maps utt ids to a
    defect: ``"corrupt"`` (garbage bytes), ``"nan"`` (float WAV with NaN), ``"short"``
    (under one frame), ``"missing"`` (no file).

    Phones: 0.1 s segments cycling a, b, c with a trailing pause labelled "" (-1 in the store).
    """
    rng = np.random.default_rng(seed)
    bad = bad or {}
    utts: list[Utterance] = []
    splits = ("train", "dev", "test")
    for i in range(n_utts):
        utt_id = f"u{i:03d}"
        spk = f"s{i % n_speakers}"
        dur = float(rng.uniform(min_s, max_s))
        sr = 8000 if i == 1 else 16_000
        n = int(dur * sr)
        t = np.arange(n) / sr
        wav = 0.3 * np.sin(2 * np.pi * (120 + 40 * (i % n_speakers)) * t) + 0.05 * rng.standard_normal(n)
        wav = wav.astype(np.float32)
        path = root / "wav" / f"{utt_id}.wav"
        defect = bad.get(utt_id)
        if defect == "corrupt":
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"RIFF\x00\x00garbage" + bytes(rng.integers(0, 255, 64, dtype=np.uint8)))
        elif defect == "nan":
            wav[10] = np.nan
            write_wav(path, wav, sr, subtype="FLOAT")
        elif defect == "short":
            write_wav(path, wav[:200], sr)
        elif defect == "missing":
            pass
        elif i == 2:
            write_wav(path, np.stack([wav, 0.5 * wav], axis=1), sr)
        else:
            write_wav(path, wav, sr)
        dur_file = n / sr
        phones = []
        start = 0.0
        k = 0
        while start + 0.1 < dur_file - 0.15:
            phones.append((PHONES[k % 3], round(start, 4), round(start + 0.1, 4)))
            start += 0.1
            k += 1
        phones.append(("", round(start, 4), round(dur_file, 4)))
        utts.append(
            Utterance(
                utt_id=utt_id,
                path=f"wav/{utt_id}.wav",
                speaker=spk,
                split=splits[i % 3],
                duration_s=dur_file,
                kind="keyword" if i % 4 == 1 else "sentence",
                sid_split=splits[(i // 3) % 3],
                text=f"utterance {i}",
                keyword="yes" if i % 4 == 1 else None,
                phones=tuple(phones),
            )
        )
    trials = [Trial(utts[i].utt_id, utts[i + 1].utt_id, utts[i].speaker == utts[i + 1].speaker) for i in range(0, n_utts - 1, 2)]
    trials.append(Trial(utts[0].utt_id, utts[n_speakers].utt_id, True))
    man = Manifest(corpus_id="tiny-test", root=root, utterances=utts, phone_set=PHONES, trials=trials)
    man.save(root)
    return man


def reference_features(
    encoder: FakeEncoder, manifest: Manifest, layers: list[int]
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per-utterance (B=1) features: utt_id -> (hidden (L', T, D) float32, pooled (L', D))."""
    from deepwide.audio import load_audio

    out = {}
    with torch.no_grad():
        for utt in manifest.utterances:
            wav = torch.from_numpy(load_audio(manifest.audio_path(utt)))[None]
            states, flens = encoder.hidden_states(wav, torch.tensor([wav.shape[1]]))
            n = int(flens[0])
            h = torch.stack([states[i][0, :n] for i in layers]).numpy()
            out[utt.utt_id] = (h, h.mean(axis=1))
    return out


def main(argv: list[str]) -> None:
    """Subprocess entry: ``{"corpus": DIR, "out": STORE, "config": {...}, "shard": [k, n] | null, ...}``."""
    from deepwide.config import config_from_dict
    from deepwide.extract import ExtractConfig, extract_features

    args = json.loads(argv[0])
    torch.set_num_threads(1)
    manifest = Manifest.load(args["corpus"])
    encoder = FakeEncoder(**args.get("encoder", {}))
    config = config_from_dict(ExtractConfig, args.get("config", {}))
    shard = tuple(args["shard"]) if args.get("shard") else None
    report = extract_features(
        encoder, manifest, args["out"], config, shard=shard, workers=args.get("workers", 0),
        jobs=args.get("jobs"),
        progress=False, frame_chunk=args.get("frame_chunk", 64), utt_chunk=args.get("utt_chunk", 4),
    )
    print(json.dumps({"complete": report.complete, "batches": report.batches}))


if __name__ == "__main__":
    main(sys.argv[1:])
