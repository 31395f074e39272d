"""Benchmark: `deepwide extract` against the loop a researcher writes by hand.

In one process, on the same model and corpus, it times

(a) deepwide's extraction (``extract_features``: length-sorted exact batches, audio decoded
    ahead by a thread or ``--workers`` processes, ``inference_mode``, the writer thread
    overlapping Zarr writes with compute), store creation included;
(b) the hand-written loop: per utterance, load the audio, run the model with every hidden
    state under ``no_grad`` and ``np.save`` each layer;
(c) the model's forward passes alone, on deepwide's batches with the audio already in memory
    (the floor any extractor using those batches pays);

checks that (a) and (b) hold the same features, and prints the times and ratios (best of
``--repeats``; wall time and this process's CPU time, which a shared machine disturbs less —
decoding processes' CPU is not counted). Targets: (b)/(a) ≥ 2 on CPU and (a)/(c) ≤ 1.3.

Model: the bundled ``tiny-teacher`` if installed, else a random encoder of its shape (spectral
front-end, 12 × 256). Corpus: ``--corpus SPEC`` or a small synthetic corpus generated into a
temporary folder (espeak-ng), else sine/noise WAVs.

    python benchmarks/extract.py [--corpus SPEC] [--max-utts N] [--repeats R] [--device cpu]
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from deepwide.extract import ExtractConfig
from deepwide.extract.plan import build_plan

from deepwide.audio import load_audio
from deepwide.corpora.manifest import Manifest, Utterance

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

            man = generate_synth(
                SynthConfig(n_speakers=8, utts_per_speaker=12), tmp / "synth", seed=0, workers=2
            )
            desc = "synth (8 speakers × 12 utterances, generated)"
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


def forward_only(
    encoder: Any, manifest: Manifest, config: ExtractConfig, device: str
) -> tuple[float, float]:
    """(wall, CPU) seconds of the model's forward passes on deepwide's batches (audio preloaded)."""
    import torch

    plan = build_plan(manifest, config)
    wavs = [load_audio(p) for p in plan.paths]
    total = np.zeros(2)
    for b in range(plan.n_batches):
        utts = plan.batch_utts(b)
        lens = torch.tensor([len(wavs[u]) for u in utts])
        x = torch.zeros(len(utts), int(lens.max()))
        for j, u in enumerate(utts):
            x[j, : len(wavs[u])] = torch.from_numpy(wavs[u])
        x = x.to(device)
        _sync(device)
        t0 = _clock()
        with torch.inference_mode():
            encoder.hidden_states(x, lens.to(device))
        _sync(device)
        total += _clock() - t0
    return float(total[0]), float(total[1])


def per_utterance_forward(encoder: Any, manifest: Manifest, device: str) -> np.ndarray:
    """[wall, CPU] seconds of the hand loop's forward passes alone (one utterance at a time)."""
    import torch

    wavs = [load_audio(manifest.audio_path(u)) for u in manifest.utterances]
    total = np.zeros(2)
    for w in wavs:
        x = torch.from_numpy(w)[None].to(device)
        _sync(device)
        t0 = _clock()
        with torch.no_grad():
            encoder.hidden_states(x, torch.tensor([x.shape[1]], device=device))
        _sync(device)
        total += _clock() - t0
    return total


class ForwardTimer:
    """Wraps ``encoder.hidden_states`` to add up the wall time spent inside it."""

    def __init__(self, encoder: Any, device: str) -> None:
        self.encoder, self.device, self.seconds = encoder, device, 0.0
        self._inner = encoder.hidden_states

    def __enter__(self) -> ForwardTimer:
        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            out = self._inner(*args, **kwargs)
            _sync(self.device)
            self.seconds += time.perf_counter() - t0
            return out

        self.encoder.hidden_states = timed
        return self

    def __exit__(self, *exc: object) -> None:
        del self.encoder.hidden_states  # back to the class's method


def _clock() -> np.ndarray:
    """[wall, CPU of this process (all threads)] in seconds."""
    return np.array([time.perf_counter(), time.process_time()])


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def compare(store: Path, loop_dir: Path, num_layers: int) -> float:
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
    parser.add_argument(
        "--corpus", default=None, help="corpus spec (default: small generated synth)"
    )
    parser.add_argument("--max-utts", type=int, default=96)
    parser.add_argument("--repeats", type=int, default=3, help="best of R runs of each timing")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--workers", type=int, default=None, help="decoding processes (default: deepwide's)"
    )
    parser.add_argument("--batch-seconds", type=float, default=ExtractConfig.batch_seconds)
    parser.add_argument("--dtype", default="float16", choices=("float16", "float32"))
    parser.add_argument(
        "--threads", type=int, default=None, help="torch intra-op threads (default: torch's)"
    )
    parser.add_argument(
        "--explain", action="store_true", help="also time the hand loop's forward passes alone"
    )
    args = parser.parse_args()
    import torch
    from deepwide.extract import extract_features

    if args.threads:
        torch.set_num_threads(args.threads)

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    tmp = Path(tempfile.mkdtemp(prefix="deepwide-bench-"))
    try:
        encoder, model_desc = load_encoder(args.device)
        manifest, corpus_desc = make_corpus(args.corpus, tmp, args.max_utts)
        config = ExtractConfig(batch_seconds=args.batch_seconds, dtype=args.dtype)
        audio_s = sum(len(load_audio(manifest.audio_path(u))) for u in manifest.utterances) / 16000
        # warm-up (allocator, kernels, page cache)
        hand_loop(
            encoder,
            Manifest(manifest.corpus_id, manifest.root, manifest.utterances[:3]),
            tmp / "warm",
            args.device,
        )

        t_deep, t_hand, t_fwd, t_utt, t_inner = [], [], [], [], []
        for r in range(args.repeats):
            store = tmp / f"store{r}"
            t0 = _clock()
            with ForwardTimer(encoder, args.device) as timer:
                extract_features(
                    encoder,
                    manifest,
                    store,
                    config,
                    device=args.device,
                    workers=args.workers,
                    progress=False,
                )
            t_inner.append(timer.seconds)
            t_deep.append(_clock() - t0)
            loop_dir = tmp / f"loop{r}"
            t0 = _clock()
            hand_loop(encoder, manifest, loop_dir, args.device)
            t_hand.append(_clock() - t0)
            t_fwd.append(np.array(forward_only(encoder, manifest, config, args.device)))
            if args.explain:
                t_utt.append(per_utterance_forward(encoder, manifest, args.device))
        err = compare(tmp / "store0", tmp / "loop0", encoder.num_layers)
        # best of the repeats, wall and CPU separately (the machine may be shared)
        (a, a_cpu), (b, b_cpu), (c, c_cpu) = (np.min(np.stack(t), axis=0) for t in (t_deep, t_hand, t_fwd))
        print(
            f"machine   {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads, device {args.device}"
        )
        print(f"model     {model_desc}")
        print(
            f"corpus    {corpus_desc}: {len(manifest.utterances)} utterances, {audio_s:.1f} s of audio"
        )
        print(
            f"settings  batch_seconds={config.batch_seconds}, dtype={config.dtype}, workers={'auto' if args.workers is None else args.workers}, "
            f"best of {args.repeats}"
        )
        print("                            wall s   × real time     CPU s")
        for name, wall, cpu in (
            ("(a) deepwide extract    ", a, a_cpu),
            ("(b) hand loop (np.save) ", b, b_cpu),
            ("(c) forward passes only ", c, c_cpu),
        ):
            print(f"{name}   {wall:8.2f}   {audio_s / wall:10.1f}   {cpu:8.2f}")
        if t_utt:
            d, d_cpu = np.min(np.stack(t_utt), axis=0)
            print(f"(d) (b)'s forwards only     {d:8.2f}   {audio_s / d:10.1f}   {d_cpu:8.2f}")
        inner = t_inner[int(np.argmin([t[0] for t in t_deep]))]
        print(f"    (a) spent {inner:.2f} s inside the model: {a / inner:.2f}× its own forward passes")
        print(f"speed-up over hand loop    {b / a:8.2f}×  (CPU {b_cpu / a_cpu:.2f}×; target ≥ 2)")
        print(f"overhead over forward      {a / c:8.2f}×  (CPU {a_cpu / c_cpu:.2f}×; target ≤ 1.3)")
        print(
            f"features agree             max |diff| / max |x| = {err:.2e} ({config.dtype} store vs float32 loop)"
        )
        if err > (2e-3 if config.dtype == "float16" else 1e-4):
            raise SystemExit(f"features disagree: relative error {err:.2e}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
