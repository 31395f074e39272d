"""Benchmark: deepwide's CTC probes (``probe --task pr``) vs the s3prl-style training loop.

In one process, on the same model (the bundled ``tiny-teacher``, 13 layers × 256), the same
utterances and the same phone targets, it trains the same linear CTC head with the same
schedule (Adam, learning rate, steps, utterances per batch, seed, batch order, dev evaluation
points and kept-best-on-dev rule) two ways:

* **deepwide**: ``extract_features(ExtractConfig(frames="all"))`` writes every layer to a store
  once; the ``pr`` task is prepared on it (utterance splits, phone targets), the cached frames
  are read, and ``fit_ctc_layers`` trains the head of one layer, then the heads of all 13
  layers in one batched problem; test utterances are decoded greedily from the cache;
* **s3prl-style**: the waveforms are decoded once and kept in memory (as s3prl's dataloader
  does, minus its per-epoch re-reading); every training step runs the teacher forward
  (``hidden_states`` under ``no_grad``) on the batch's audio, takes the chosen layer, applies
  the linear head, ``ctc_loss`` and an Adam step; each dev evaluation and the final test
  decoding run the teacher on the dev/test audio again.

The utterance split and targets of both come from the prepared ``pr`` task; the s3prl side
replays ``fit_ctc_layers``'s initialisation and batch order, so with the same features the two
would train the same head. The only difference in the features is the store's float16
(``--dtype float32`` stores float32). The PER of both is computed with
:func:`deepwide.probing.ctc.error_rate`.

It prints the machine and its load average (before and after), each wall time, the PERs, the
one-layer speed-up (target ≥ 10× on a CPU) and the cost of 13 layers relative to one in deepwide
(target ≤ 2×). The speed-up grows with the passes over the training set (``steps × batch /
train utterances``): the s3prl loop pays one teacher forward per utterance per epoch, deepwide
one per utterance.

Corpus: sentence utterances of the default synthetic corpus when it is in the cache (``deepwide
corpus synth`` / the embedded default generate it), the first ``--train``/``--dev``/``--test``
of each split (speaker-disjoint); otherwise a small synthetic corpus generated into a temporary
folder.

Usage::

    python benchmarks/ctc.py            # a few minutes on 2 CPU cores
    python benchmarks/ctc.py --quick    # smoke run, well under a minute (tests/test_benchmarks_ctc.py)
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepwide.audio import load_audio
from deepwide.corpora.manifest import Manifest
from deepwide.extract import ExtractConfig, extract_features
from deepwide.models import load_model
from deepwide.probing.ctc import CtcSchedule, CtcSet, error_rate, fit_ctc_layers, greedy_collapse
from deepwide.probing.run import ProbeConfig, load_task_layers
from deepwide.probing.tasks import TASKS, SequenceData
from deepwide.store import open_store

log = logging.getLogger("benchmarks.ctc")

SPLITS = ("train", "dev", "test")


# ----------------------------------------------------------------------------- data
def make_corpus(counts: dict[str, int], tmp: Path) -> tuple[Manifest, str]:
    """The first ``counts[split]`` sentence utterances of each split, and a description.

    From the cached default synthetic corpus when it exists (nothing is generated into the
    cache); else from a small corpus generated into ``tmp``.
    """
    from deepwide.corpora.synth import SynthConfig, generate_synth
    from deepwide.corpora.synth.cache import default_corpus_dir

    cached = default_corpus_dir()
    if (cached / "manifest.jsonl").is_file():
        man, desc = Manifest.load(cached), f"default synth corpus ({cached.name}, cached)"
    else:
        per_speaker = 10  # 90 % sentences: ~9 per speaker; speakers split 70/10/20 %
        n_speakers = max(8, int(np.ceil(max(counts["train"] / 0.7, counts["dev"] / 0.1, counts["test"] / 0.2) / 9)))
        cfg = replace(SynthConfig(), n_speakers=n_speakers, utts_per_speaker=per_speaker,
                      kind_fractions=(0.9, 0.05, 0.05))
        man = generate_synth(cfg, tmp / "synth", seed=0, workers=2)
        desc = f"synth generated here ({n_speakers} speakers × {per_speaker} utterances)"
    picked = []
    for split in SPLITS:
        rows = [u for u in man.utterances if u.kind == "sentence" and u.split == split][: counts[split]]
        if len(rows) < counts[split]:
            log.warning("only %d %s sentences in the corpus (asked for %d)", len(rows), split, counts[split])
        picked += rows
    return Manifest(man.corpus_id, man.root, picked, man.phone_set, [], man.meta), desc


def prepare_pr(store: Path, seed: int) -> tuple[Any, SequenceData]:
    """The store and its prepared ``pr`` task (no frame cap binds: every chosen utterance kept)."""
    ds = open_store(store)
    config = ProbeConfig(max_train_frames=10**9, max_eval_frames=10**9)
    return ds, TASKS.get("pr").prepare(ds, config.prepare_options(seed))


# -------------------------------------------------------------------------- deepwide
def deepwide_fit(feats: dict[str, np.ndarray], data: SequenceData, layers: slice, sched: CtcSchedule) -> tuple[np.ndarray, float]:
    """``fit_ctc_layers`` on the cached frames of ``layers`` and greedy test decoding.

    Returns:
        ``(test PER per fitted layer (L',), wall seconds of training + decoding)``.
    """
    t0 = time.perf_counter()
    sets = {s: CtcSet(x=feats[s][layers], offsets=data.offsets(getattr(data, s)), targets=getattr(data, s).targets)
            for s in SPLITS}
    fit = fit_ctc_layers(sets["train"], len(data.vocabulary), dev=sets["dev"], steps=sched.steps,
                         batch_utts=sched.batch_utts, lr=sched.lr, eval_every=sched.eval_every, seed=sched.seed,
                         device="cpu")
    per = np.array([error_rate(h, sets["test"].targets) for h in fit.decode(sets["test"])])
    return per, time.perf_counter() - t0


# ------------------------------------------------------------------------ s3prl-style
class LiveLayer:
    """One layer of the teacher, computed on the fly from waveforms held in memory."""

    def __init__(self, encoder: Any, wavs: list[np.ndarray], n_frames: np.ndarray, layer: int) -> None:
        self.encoder, self.wavs, self.n_frames, self.layer = encoder, wavs, n_frames, layer
        self.forwards = 0  # utterances run through the teacher

    def batch(self, utts: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """``((B, T_max, D) float32 states of the layer, (B,) int64 frame lengths)``."""
        lens = torch.tensor([len(self.wavs[u]) for u in utts], dtype=torch.int64)
        x = torch.zeros(len(utts), int(lens.max()))
        for i, u in enumerate(utts):
            x[i, : lens[i]] = torch.from_numpy(self.wavs[u])
        with torch.no_grad():
            states, flens = self.encoder.hidden_states(x, lens)
        self.forwards += len(utts)
        if not np.array_equal(flens.numpy(), self.n_frames[utts]):
            raise SystemExit(f"frame counts differ from the store's: {flens.tolist()} vs {self.n_frames[utts].tolist()}")
        return states[self.layer][:, : int(flens.max())], flens


def live_decode(source: LiveLayer, weight: torch.Tensor, bias: torch.Tensor, batch_utts: int = 32) -> list[list[int]]:
    """Greedy decoding of every utterance of ``source`` (teacher forward included)."""
    out: list[list[int]] = []
    with torch.no_grad():
        for s in range(0, len(source.wavs), batch_utts):
            h, lens = source.batch(np.arange(s, min(s + batch_utts, len(source.wavs))))
            best = (h @ weight + bias).argmax(-1).numpy()
            out.extend(greedy_collapse(best[i, : int(lens[i])]) for i in range(len(lens)))
    return out


def s3prl_loop(sources: dict[str, LiveLayer], targets: dict[str, tuple[np.ndarray, ...]], num_labels: int,
               sched: CtcSchedule) -> float:
    """The hand-written loop: teacher forward per batch, linear CTC head, Adam; best head on dev.

    Replays ``fit_ctc_layers``'s head initialisation (one layer) and batch order.

    Returns:
        The test PER of the kept head.
    """
    train, dev, test = sources["train"], sources["dev"], sources["test"]
    n_train = len(train.wavs)
    gen = torch.Generator().manual_seed(sched.seed)
    d, c = train.encoder.dim, num_labels + 1
    weight = (torch.randn(1, d, c, generator=gen)[0] * (0.01 / np.sqrt(d))).requires_grad_(True)
    bias = torch.zeros(c, requires_grad=True)
    adam = torch.optim.Adam([weight, bias], lr=sched.lr)
    best = (weight.detach().clone(), bias.detach().clone())
    best_err = np.inf
    rng = np.random.default_rng(sched.seed)
    order, pos = rng.permutation(n_train), 0
    batch_utts = min(sched.batch_utts, n_train)
    for step in range(1, sched.steps + 1):
        if pos + batch_utts > len(order):
            order, pos = rng.permutation(n_train), 0
        utts = np.sort(order[pos : pos + batch_utts])
        pos += batch_utts
        h, lens = train.batch(utts)
        logp = torch.log_softmax(h @ weight + bias, dim=-1)
        tgt = [targets["train"][u] for u in utts]
        loss = torch.nn.functional.ctc_loss(
            logp.transpose(0, 1), torch.from_numpy(np.concatenate(tgt)), lens,
            torch.tensor([len(t) for t in tgt]), blank=0, reduction="sum", zero_infinity=True,
        ) / len(utts)
        adam.zero_grad(set_to_none=True)
        loss.backward()
        adam.step()
        if len(dev.wavs) and (step % sched.eval_every == 0 or step == sched.steps):
            err = error_rate(live_decode(dev, weight.detach(), bias.detach()), targets["dev"])
            if err < best_err:
                best, best_err = (weight.detach().clone(), bias.detach().clone()), err
    if not len(dev.wavs):
        best = (weight.detach().clone(), bias.detach().clone())
    return error_rate(live_decode(test, *best), targets["test"])


# ------------------------------------------------------------------------------ main
def machine() -> str:
    """CPU model, cores, torch threads."""
    from deepwide.system import cpu_model

    model = cpu_model()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{model}, {cores} cores usable ({os.cpu_count()} online), torch {torch.__version__} with {torch.get_num_threads()} threads"


def load() -> str:
    return "load average " + " / ".join(f"{x:.2f}" for x in os.getloadavg()) + " (1 / 5 / 15 min)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke run: 12/4/4 utterances, 20 steps, batch 4")
    ap.add_argument("--train", type=int, default=300, help="training utterances")
    ap.add_argument("--dev", type=int, default=50)
    ap.add_argument("--test", type=int, default=100)
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--batch", type=int, default=ProbeConfig.ctc_batch, help="utterances per step")
    ap.add_argument("--lr", type=float, default=ProbeConfig.ctc_lr)
    ap.add_argument("--eval-every", type=int, default=ProbeConfig.ctc_eval_every)
    ap.add_argument("--layer", type=int, default=None, help="layer of the one-layer comparison (default: the top)")
    ap.add_argument("--dtype", default="float16", choices=("float16", "float32"), help="store dtype")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.quick:
        args.train, args.dev, args.test, args.steps, args.batch, args.eval_every = 12, 4, 4, 20, 4, 10
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    sched = CtcSchedule(args.steps, args.batch, args.lr, args.eval_every, args.seed)  # both sides train with it
    load_before = load()

    tmp = Path(tempfile.mkdtemp(prefix="deepwide-bench-ctc-"))
    try:
        manifest, corpus_desc = make_corpus({"train": args.train, "dev": args.dev, "test": args.test}, tmp)
        encoder = load_model("tiny-teacher")
        layer = encoder.num_layers if args.layer is None else args.layer

        # deepwide: extract once, prepare pr, read the cache, train
        t0 = time.perf_counter()
        extract_features(encoder, manifest, tmp / "store.zarr", ExtractConfig(frames="all", dtype=args.dtype),
                         device="cpu", progress=False)
        t_extract = time.perf_counter() - t0
        t0 = time.perf_counter()
        ds, data = prepare_pr(tmp / "store.zarr", args.seed)
        feats = load_task_layers(data, ds, "pr: reading")
        t_read = time.perf_counter() - t0
        n_layers = feats["train"].shape[0]
        deepwide_fit(feats, data, slice(layer, layer + 1), replace(sched, steps=2, eval_every=1))  # warm-up
        per_one, t_one = deepwide_fit(feats, data, slice(layer, layer + 1), sched)
        per_all, t_all = deepwide_fit(feats, data, slice(None), sched)

        # s3prl-style: the same utterances (the store's order of each split) as waveforms in memory
        t0 = time.perf_counter()
        by_id = manifest.by_id()
        utt_ids = [str(u) for u in ds["utt_id"].values]
        wavs = {s: [load_audio(manifest.audio_path(by_id[utt_ids[u]])) for u in getattr(data, s).utts] for s in SPLITS}
        t_audio = time.perf_counter() - t0
        sources = {s: LiveLayer(encoder, wavs[s], data.n_frames[getattr(data, s).utts], layer) for s in SPLITS}
        sources["train"].batch(np.arange(min(sched.batch_utts, len(wavs["train"]))))  # warm-up
        sources["train"].forwards = 0
        t0 = time.perf_counter()
        per_s3prl = s3prl_loop(sources, {s: getattr(data, s).targets for s in SPLITS}, len(data.vocabulary), sched)
        t_loop = time.perf_counter() - t0
        forwards = sum(src.forwards for src in sources.values())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    n_utts = {s: len(getattr(data, s)) for s in SPLITS}
    n_frames = {s: int(data.n_frames[getattr(data, s).utts].sum()) for s in SPLITS}
    audio_s = sum(len(w) for ws in wavs.values() for w in ws) / 16000
    epochs = sched.steps * min(sched.batch_utts, n_utts["train"]) / n_utts["train"]
    t_s3prl = t_audio + t_loop
    dw_one, dw_all = t_extract + t_read + t_one, t_extract + t_read + t_all
    diff = abs(per_one[0] - per_s3prl) * 100
    print(f"machine: {machine()}")
    print(f"before:  {load_before}")
    print(f"model:   tiny-teacher ({n_layers} layers 0..{n_layers - 1}, dim {encoder.dim}); one-layer comparison on layer {layer}")
    print(f"corpus:  {corpus_desc}; train/dev/test {n_utts['train']}/{n_utts['dev']}/{n_utts['test']} utterances, "
          f"{n_frames['train']}/{n_frames['dev']}/{n_frames['test']} frames, {audio_s:.0f} s of audio; "
          f"{len(data.vocabulary)} phones")
    print(f"schedule: {sched.steps} Adam steps × {sched.batch_utts} utterances (≈ {epochs:.1f} epochs), lr {sched.lr:g}, "
          f"dev every {sched.eval_every} steps, seed {sched.seed}; store dtype {args.dtype}")
    print(f"{'':58s}{'wall s':>8s}")
    print(f"{'deepwide extract (13 layers, frames=all)':58s}{t_extract:8.2f}")
    print(f"{'deepwide prepare pr + read cached frames':58s}{t_read:8.2f}")
    print(f"{'deepwide fit_ctc_layers, 1 layer (+ test decoding)':58s}{t_one:8.2f}")
    print(f"{'deepwide fit_ctc_layers, 13 layers (+ test decoding)':58s}{t_all:8.2f}")
    print(f"{'deepwide 1 layer, extract + read + train':58s}{dw_one:8.2f}")
    print(f"{'deepwide 13 layers, extract + read + train':58s}{dw_all:8.2f}")
    print(f"{'s3prl-style: decode audio into memory':58s}{t_audio:8.2f}")
    print(f"{f's3prl-style: train + dev + test ({forwards} teacher forwards)':58s}{t_loop:8.2f}")
    print(f"{'s3prl-style total, 1 layer':58s}{t_s3prl:8.2f}")
    print("PER by layer (deepwide, 13 heads in one problem): " + " ".join(f"{p * 100:.1f}" for p in per_all))
    print(f"PER layer {layer}: deepwide {per_one[0] * 100:.2f} %, s3prl-style {per_s3prl * 100:.2f} %, "
          f"|difference| {diff:.2f} points (target ≤ 0.5)")
    print(f"speed-up, 1 layer: s3prl-style / deepwide (extract + read + train) {t_s3prl / dw_one:.1f}× (target ≥ 10×); "
          f"training only {t_loop / t_one:.1f}×")
    print(f"13 layers vs 1 layer in deepwide: {dw_all / dw_one:.2f}× with extraction (target ≤ 2×); "
          f"training only {t_all / t_one:.2f}×")
    print(f"after:   {load()}")
    if diff > 0.5:
        print(f"WARNING: the PERs differ by {diff:.2f} points (> 0.5)")


if __name__ == "__main__":
    main()
