#!/usr/bin/env python
"""The sid probe on plain log-mel statistics: how far a speaker can be told from the spectrum alone.

Takes the `sid` split of a store extracted from `synth` (the same train/dev/test utterances,
labels and penalty grid as `deepwide probe --task sid`) and probes the per-utterance mean (80)
and mean + std (160) of the 80-bin log-mel spectrum (25 ms windows, 20 ms hop) instead of the
store's features. docs/teacher.md compares it with the teacher and its random twin.

Usage: .venv/bin/python scripts/logmel-speaker-baseline.py runs/teval2/random-tiny-teacher.zarr
"""

from __future__ import annotations

import sys

import numpy as np
import torch
import torchaudio
from tqdm import tqdm

from deepwide.audio import load_audio
from deepwide.corpora import resolve_corpus
from deepwide.probing.run import ProbeConfig
from deepwide.probing.solver import DEFAULT_PENALTIES, fit_softmax_path, standardise
from deepwide.probing.tasks import TASKS
from deepwide.store import open_store


def main(store: str) -> None:
    ds = open_store(store)
    manifest = resolve_corpus("synth")
    if ds.attrs.get("corpus_id") != manifest.corpus_id:
        raise SystemExit(f"error: {store} was extracted from {ds.attrs.get('corpus_id')!r}, not the default "
                         f"synth corpus {manifest.corpus_id!r}; pass a store of `--corpus synth`")
    data = TASKS.get("sid").prepare(ds, ProbeConfig().prepare_options(0))
    ids = [str(u) for u in ds["utt_id"].values]
    by_id = {u.utt_id: u for u in manifest.utterances}
    mel = torchaudio.transforms.MelSpectrogram(16000, n_fft=400, hop_length=320, n_mels=80, center=False)

    def stats(i: int) -> np.ndarray:
        logmel = (mel(torch.from_numpy(load_audio(manifest.audio_path(by_id[ids[i]])))) + 1e-6).log()  # (80, T)
        return torch.cat([logmel.mean(1), logmel.std(1)]).numpy()

    splits = ("train", "dev", "test")
    x = {s: np.stack([stats(int(g)) for g in tqdm(getattr(data, s).groups, desc=f"log-mel, {s}", leave=False)])
         .astype(np.float32) for s in splits}
    y = {s: torch.from_numpy(getattr(data, s).labels) for s in splits}
    for name, cols in (("mean log-mel (80)", slice(0, 80)), ("mean + std log-mel (160)", slice(0, 160))):
        xt, xd, xe = (torch.from_numpy(x[s][:, cols].copy())[None] for s in splits)
        standardise(xt, xd, xe)
        path = fit_softmax_path(xt, y["train"], len(data.classes), DEFAULT_PENALTIES, x_dev=xd, y_dev=y["dev"])
        acc = float((path.logits(xe).argmax(2)[0] == y["test"]).float().mean())
        print(f"{name:26s} sid test accuracy {acc:.3f} (n_test {len(y['test'])}, penalty {path.best_penalty[0]:.0e})")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(f"usage: {sys.argv[0]} STORE  (a store extracted from the default synth corpus)")
    main(sys.argv[1])
