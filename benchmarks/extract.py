"""Benchmark: `deepwide extract` against the loop a researcher writes by hand.

In one process, on the same model and corpus, it times

(a)  deepwide's extraction with its defaults (on a CPU: forked one-thread compute jobs, one per
     core; length-sorted exact batches; ``inference_mode``; the writer thread overlapping Zarr
     writes with compute), store creation included;
(a0) the same with ``--jobs 0`` (the model runs in this process, audio decoded ahead);
(b)  the hand-written loop: per utterance, load the audio, run the model with every hidden
     state under ``no_grad`` and ``np.save`` each layer;
(c)  the model's forward passes alone on deepwide's batches, audio preloaded, in this process;
(cj) the same forward passes run by the jobs (the floor for (a) on a CPU);
(d)  with ``--explain``: (b)'s forward passes alone;

interleaving the rows in each of ``--repeats`` rounds and keeping each row's best, checks that
(a) and (b) hold the same features, and prints times (wall, and CPU of this process plus its
reaped children) and ratios. Targets: (b)/(a) ≥ 2 on CPU; (a) within 1.3× of its forward
passes alone.

Model: the bundled ``tiny-teacher`` if installed, else a random encoder of its shape (spectral
front-end, 12 × 256). Corpus: ``--corpus SPEC`` or a small synthetic corpus generated into a
temporary folder (espeak-ng), else sine/noise WAVs.

    python benchmarks/extract.py [--corpus SPEC] [--max-utts N] [--repeats R] [--explain]
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import resource
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from deepwide.audio import load_audio
from deepwide.corpora.manifest import Manifest, Utterance
from deepwide.extract import ExtractConfig
from deepwide.extract.loading import batch_requests, load_batch
from deepwide.extract.plan import build_plan

# torch, xarray and the extraction module are imported inside the functions, as the CLI does:
# decoding processes started with `spawn` re-import this script and should stay light.

log = logging.getLogger("benchmarks.extract")


def load_encoder(device: str) -> tuple[Any, str]:
    """The tiny teacher, or a random encoder of its shape. Returns (encoder, description)."""
    from deepwide.errors import ModelError
    from deepwide.models import build_encoder, load_model

    try:
        return load_model("tiny-teacher", device=device), "tiny-teacher (bundled)"
    except ModelError:
        from deepwide.models.pretrain import PretrainConfig

        cfg = PretrainConfig().encoder_config()
        enc = build_encoder(cfg, seed=0, model_id="random:tiny-teacher-shape").to(device).eval()
        return enc, f"random encoder of tiny-teacher shape ({cfg.describe()})"


def make_corpus(spec: str | None, tmp: Path, max_utts: int) -> tuple[Manifest, str]:
    """The benchmark corpus and its description."""
    if spec:
        from deepwide.corpora import resolve_corpus

        man = resolve_corpus(spec)
        desc = spec
    else:
        try:
            from deepwide.corpora.synth import SynthConfig, generate_synth

            cfg = SynthConfig(n_speakers=16, utts_per_speaker=24)
            man = generate_synth(cfg, tmp / "synth", seed=0, workers=2)
            desc = "synth (16 speakers × 24 utterances, generated)"
        except Exception as exc:  # espeak missing etc.: fall back to generated WAVs
            log.warning("synthetic corpus unavailable (%s); using sine/noise WAVs", exc)
            man, desc = _wav_corpus(tmp / "wavs", max_utts), "generated sine/noise WAVs"
    if len(man.utterances) > max_utts:
        man = Manifest(
            man.corpus_id, man.root, man.utterances[:max_utts], man.phone_set, [], man.meta
        )
    return man, desc


def _wav_corpus(root: Path, n: int) -> Manifest:
    import soundfile as sf

    rng = np.random.default_rng(0)
    utts = []
    for i in range(n):
        dur = float(rng.uniform(1.0, 6.0))
        t = np.arange(int(dur * 16000)) / 16000
        wav = 0.3 * np.sin(2 * np.pi * (100 + 10 * (i % 7)) * t) + 0.05 * rng.standard_normal(
            t.size
        )
        root.mkdir(parents=True, exist_ok=True)
        sf.write(root / f"u{i:04d}.wav", wav.astype(np.float32), 16000)
        utts.append(
            Utterance(
                f"u{i:04d}", f"u{i:04d}.wav", f"s{i % 7}", ("train", "dev", "test")[i % 3], dur
            )
        )
    return Manifest("bench-wavs", root, utts)


def hand_loop(encoder: Any, manifest: Manifest, out: Path, device: str) -> None:
    """What a researcher writes: one utterance at a time, every layer to its own .npy."""
    import torch

    out.mkdir(parents=True, exist_ok=True)
    for utt in manifest.utterances:
        wav = torch.from_numpy(load_audio(manifest.audio_path(utt)))[None].to(device)
        with torch.no_grad():
            states, flens = encoder.hidden_states(wav, torch.tensor([wav.shape[1]], device=device))
        n = int(flens[0])
        for layer, s in enumerate(states):
            np.save(out / f"{utt.utt_id}_{layer}.npy", s[0, :n].cpu().numpy())


def padded_batches(manifest: Manifest, config: ExtractConfig) -> list[tuple[np.ndarray, np.ndarray]]:
    """deepwide's batches of ``manifest``, decoded and padded by deepwide's own loader:
    [(wavs (B, S), lengths (B,))]."""
    plan = build_plan(manifest, config)
    batches = range(plan.n_batches)
    utt_ids = [u.utt_id for u in plan.utts]
    requests = batch_requests(batches, [plan.batch_utts(b) for b in batches], plan.paths, plan.n_samples, utt_ids)
    return [load_batch(req)[1:] for req in requests]


def forward_only(encoder: Any, batches: list[tuple[np.ndarray, np.ndarray]], device: str) -> None:
    """The model's forward passes alone, in this process, on preloaded batches."""
    import torch

    with torch.inference_mode():
        for x, lens in batches:
            encoder.hidden_states(torch.from_numpy(x).to(device), torch.from_numpy(lens).to(device))
    _sync(device)


def forward_only_jobs(encoder: Any, batches: list[tuple[np.ndarray, np.ndarray]], jobs: int) -> None:
    """The model's forward passes alone, in ``jobs`` forked one-thread processes (as deepwide's
    CPU jobs run them), on preloaded batches inherited through ``fork``."""
    import torch

    from deepwide.extract.compute import BatchTask, ForkedJobs
    from deepwide.extract.loading import BatchRequest

    def run(task: BatchTask) -> tuple[None, np.ndarray]:
        x, lens = batches[task.request.index]
        with torch.inference_mode():
            encoder.hidden_states(torch.from_numpy(x), torch.from_numpy(lens))
        return None, np.zeros(1)

    tasks = [BatchTask(BatchRequest(i, (), (), ()), np.zeros(0), None) for i in range(len(batches))]
    with ForkedJobs(run, jobs) as pool:
        for _ in pool.run(tasks):
            pass


def per_utterance_forward(encoder: Any, manifest: Manifest, device: str) -> None:
    """The hand loop's forward passes alone (one utterance at a time, audio preloaded)."""
    import torch

    wavs = [torch.from_numpy(load_audio(manifest.audio_path(u)))[None] for u in manifest.utterances]
    with torch.no_grad():
        for w in wavs:
            x = w.to(device)
            encoder.hidden_states(x, torch.tensor([x.shape[1]], device=device))
    _sync(device)


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn: Any, *args: Any, **kwargs: Any) -> np.ndarray:
    """[wall s, CPU s of this process and of the child processes it reaped] of one call."""
    def clock() -> np.ndarray:
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        return np.array([time.perf_counter(), time.process_time() + kids.ru_utime + kids.ru_stime])

    t0 = clock()
    fn(*args, **kwargs)
    return clock() - t0


def compare(store: Path, loop_dir: Path) -> float:
    """Largest |store − hand loop| relative to the largest |feature|, over every layer and utterance."""
    from deepwide.store import open_store

    ds = open_store(store)
    worst, scale = 0.0, 0.0
    hidden = ds.hidden.values
    for i, uid in enumerate(ds.utt_id.values):
        o, n = int(ds.frame_offset[i]), int(ds.n_stored[i])
        for j, layer in enumerate(ds.layer.values):
            ref = np.load(loop_dir / f"{uid}_{int(layer)}.npy")
            assert ref.shape[0] == n, f"{uid}: {ref.shape[0]} frames by hand, {n} in the store"
            worst = max(worst, float(np.abs(hidden[j, o : o + n].astype(np.float32) - ref).max()))
            scale = max(scale, float(np.abs(ref).max()))
    return worst / scale


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", default=None, help="corpus spec (default: small generated synth)")
    parser.add_argument("--max-utts", type=int, default=384)
    parser.add_argument("--repeats", type=int, default=3, help="best of R runs of each timing")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workers", type=int, default=None, help="decoding processes (default: deepwide's)")
    parser.add_argument("--jobs", type=int, default=None, help="CPU compute jobs (default: deepwide's)")
    parser.add_argument("--batch-seconds", type=float, default=ExtractConfig.batch_seconds)
    parser.add_argument("--dtype", default="float16", choices=("float16", "float32"))
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--explain", action="store_true", help="also time the hand loop's forwards alone")
    args = parser.parse_args()
    import torch

    from deepwide.extract import extract_features
    from deepwide.extract.compute import default_jobs

    if args.threads:
        torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    jobs = default_jobs(args.device) if args.jobs is None else args.jobs

    tmp = Path(tempfile.mkdtemp(prefix="deepwide-bench-"))
    try:
        encoder, model_desc = load_encoder(args.device)
        manifest, corpus_desc = make_corpus(args.corpus, tmp, args.max_utts)
        config = ExtractConfig(batch_seconds=args.batch_seconds, dtype=args.dtype)
        audio_s = sum(len(load_audio(manifest.audio_path(u))) for u in manifest.utterances) / 16000
        batches = padded_batches(manifest, config)
        hand_loop(encoder, Manifest(manifest.corpus_id, manifest.root, manifest.utterances[:3]), tmp / "warm", args.device)

        def deepwide(name: str, n_jobs: int) -> None:
            extract_features(
                encoder, manifest, tmp / name, config, device=args.device, workers=args.workers,
                jobs=n_jobs, progress=False,
            )

        rows: dict[str, list[np.ndarray]] = {}
        for r in range(args.repeats):  # interleaved, so a change of machine load hits every row
            measures = {
                "a": lambda r=r: deepwide(f"store{r}", jobs),
                "a0": lambda r=r: deepwide(f"store0-{r}", 0),
                "b": lambda r=r: hand_loop(encoder, manifest, tmp / f"loop{r}", args.device),
                "c": lambda: forward_only(encoder, batches, args.device),
            }
            if jobs > 0:
                measures["cj"] = lambda: forward_only_jobs(encoder, batches, jobs)
            if args.explain:
                measures["d"] = lambda: per_utterance_forward(encoder, manifest, args.device)
            for key, fn in measures.items():
                rows.setdefault(key, []).append(timed(fn))
        err = compare(tmp / "store0", tmp / "loop0")
        best = {k: np.min(np.stack(v), axis=0) for k, v in rows.items()}  # best wall, best CPU

        labels = {
            "a": f"(a)  deepwide extract ({jobs} one-thread jobs)" if jobs else "(a)  deepwide extract",
            "a0": "(a0) deepwide extract --jobs 0 (model here)",
            "b": "(b)  hand loop (np.save per layer)",
            "c": "(c)  forward passes only, this process",
            "cj": f"(cj) forward passes only, {jobs} one-thread jobs",
            "d": "(d)  (b)'s forward passes only",
        }
        print(f"machine   {platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, "
              f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}")
        print(f"model     {model_desc}")
        print(f"corpus    {corpus_desc}: {len(manifest.utterances)} utterances, {audio_s:.1f} s of audio")
        print(f"settings  batch_seconds={config.batch_seconds}, dtype={config.dtype}, "
              f"workers={'auto' if args.workers is None else args.workers}, jobs={jobs}, best of {args.repeats}")
        print(f"{'':46s}{'wall s':>8s} {'× real time':>12s} {'CPU s':>8s}")
        for key, label in labels.items():
            if key in best:
                wall, cpu = best[key]
                print(f"{label:46s}{wall:8.2f} {audio_s / wall:12.1f} {cpu:8.2f}")
        a, b, c, a0 = best["a"][0], best["b"][0], best["c"][0], best["a0"][0]
        floor = best["cj"][0] if "cj" in best else c
        print(f"speed-up over the hand loop   (b)/(a)   {b / a:6.2f}×   (target ≥ 2)")
        print(f"overhead over forward passes  (a)/({'cj' if 'cj' in best else 'c'})  {a / floor:6.2f}×   (target ≤ 1.3)")
        print(f"                              (a0)/(c)  {a0 / c:6.2f}×   (model in this process)")
        print(f"features agree: max |store - hand loop| / max |x| = {err:.2e} ({config.dtype} store vs float32 .npy)")
        if err > (2e-3 if config.dtype == "float16" else 1e-4):
            raise SystemExit(f"features disagree: relative error {err:.2e}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
