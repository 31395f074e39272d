"""Distillation throughput and memory: HuBERT-Base-sized teacher → DistilHuBERT student.

Times :func:`deepwide.distill.train_student` — the code users run — on a fabricated corpus
(random weights and synthetic audio are fine: speed does not depend on them), in four
variants: fp32 vs bf16 autocast, and the teacher run online vs its targets read from a
feature store extracted beforehand (``--teacher-targets``; the extraction time is reported
separately, it is paid once per corpus). For each: steps/s and audio seconds/s after
``--warmup`` steps, and the peak GPU memory (``torch.cuda.max_memory_allocated``).

    python benchmarks/distill_gpu.py                       # on a GPU: the numbers for docs/benchmarks.md
    python benchmarks/distill_gpu.py --device cpu --steps 2   # smoke mode (the tests run it)

The smoke mode uses a tiny batch and only fp32 (autocast is CUDA-only in deepwide); it checks
that the script works, not how fast anything is.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch

from deepwide.corpora import Manifest, Utterance
from deepwide.devices import resolve_device
from deepwide.distill import make_config, read_metrics, train_student
from deepwide.errors import ConfigError
from deepwide.models import load_model

log = logging.getLogger("distill_gpu")
SR = 16_000
TEACHER = "random:hubert-base"
STUDENT = "distilhubert"


def fabricate_corpus(root: Path, n: int, seconds: float, seed: int = 0) -> Manifest:
    """``n`` WAVs of ``seconds`` (harmonic tones in noise) and their manifest, all in train."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * SR)) / SR
    utts = []
    for i in range(n):
        f0 = rng.uniform(90, 250)
        wav = sum(
            np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 5)
        ) * 0.2 + 0.02 * rng.normal(size=t.size)
        sf.write(root / f"b{i:04d}.wav", wav.astype(np.float32), SR)
        utts.append(
            Utterance(
                utt_id=f"b{i:04d}",
                path=f"b{i:04d}.wav",
                speaker=f"s{i % 8}",
                split="train",
                duration_s=t.size / SR,
            )
        )
    manifest = Manifest(corpus_id="bench", root=root, utterances=utts)
    manifest.save(root)
    return manifest


def extract_targets(
    teacher: Any, manifest: Manifest, path: Path, layers: tuple[int, ...], device: str
) -> float:
    """Write the teacher's ``layers`` for every frame to a store; returns the seconds it took."""
    from deepwide.extract import ExtractConfig, extract_features

    t0 = time.perf_counter()
    config = ExtractConfig(layers=layers, frames="all", dtype="float16", batch_seconds=64.0)
    extract_features(teacher, manifest, path, config, device=device, workers=0, progress=False)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def run_variant(
    teacher: Any,
    manifest: Manifest,
    out: Path,
    *,
    device: str,
    precision: str,
    store: Path | None,
    steps: int,
    warmup: int,
    batch_seconds: float,
    crop_seconds: float,
    teacher_spec: str = TEACHER,
    student: str = STUDENT,
    objective: str = "predlayer",
) -> dict[str, Any]:
    """Train ``warmup + steps`` steps and report the speed of the last ``steps``.

    ``teacher`` is the loaded teacher, ``teacher_spec`` the spec its config records;
    ``student`` a preset (scaled to the teacher's width) and ``objective`` its objective.
    The run folder ``out`` keeps ``metrics.jsonl`` (one line per step).
    """
    config = make_config(
        teacher=teacher_spec,
        corpus=str(manifest.root),
        student=student,
        objective=objective,
        steps=warmup + steps,
        batch_seconds=batch_seconds,
        max_crop_seconds=crop_seconds,
        precision=precision,
        teacher_targets=str(store) if store else None,
        log_every=1,
        checkpoint_every=10**9,  # only the final one (not timed: it follows the last step)
        keep_checkpoints=1,
        num_workers=2 if device.startswith("cuda") else 0,
        device=device,
    )
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    result = train_student(config, out, teacher=teacher, manifest=manifest, progress=False)
    lines = read_metrics(out)[warmup:]
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else float("nan")
    steps_per_s = statistics.median(m["steps_per_s"] for m in lines)
    audio_per_s = statistics.median(m["frames_per_s"] for m in lines) / 50.0
    return {
        "precision": precision,
        "targets": "stored" if store else "online",
        "steps_per_s": steps_per_s,
        "audio_s_per_s": audio_per_s,
        "peak_gib": peak,
        "final_loss": result.final_loss,
        "student_params": result.params,
    }


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (cpu = smoke mode)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per variant")
    parser.add_argument(
        "--warmup", type=int, default=None, help="untimed steps first (default 5; 1 on cpu)"
    )
    parser.add_argument(
        "--batch-seconds", type=float, default=None, help="audio per batch (default 120; 2 on cpu)"
    )
    parser.add_argument(
        "--crop-seconds", type=float, default=None, help="longest crop (default 15.625; 1 on cpu)"
    )
    parser.add_argument(
        "--utts", type=int, default=None, help="fabricated utterances (default 96; 4 on cpu)"
    )
    parser.add_argument(
        "--utt-seconds", type=float, default=None, help="their length (default 16; 2 on cpu)"
    )
    parser.add_argument(
        "--precisions", default=None, help="comma list (default fp32,bf16; fp32 on cpu)"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        device = str(resolve_device(args.device))
    except ConfigError as exc:
        parser.error(f"{exc} (the smoke mode)")
    cpu = device == "cpu"
    warmup = args.warmup if args.warmup is not None else (0 if cpu else 5)
    batch_seconds = args.batch_seconds or (1.0 if cpu else 120.0)
    crop = args.crop_seconds or (1.0 if cpu else 15.625)
    n_utts = args.utts or (2 if cpu else 96)
    utt_seconds = args.utt_seconds or (1.5 if cpu else 16.0)
    precisions = (args.precisions or ("fp32" if cpu else "fp32,bf16")).split(",")
    if cpu:
        torch.set_num_threads(max(1, min(2, torch.get_num_threads())))

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="distill-bench-") as tmp:
        root = Path(tmp)
        manifest = fabricate_corpus(root / "corpus", n_utts, utt_seconds)
        teacher = load_model(TEACHER, seed=0)
        layers = (4, 8, 12)
        extract_s = extract_targets(teacher, manifest, root / "teacher.zarr", layers, device)
        audio_s = n_utts * utt_seconds
        log.info(
            "extracted teacher layers %s of %.0f s of audio in %.1f s", layers, audio_s, extract_s
        )
        for precision in precisions:
            for store in (None, root / "teacher.zarr"):
                name = f"{precision}-{'stored' if store else 'online'}"
                row = run_variant(
                    teacher,
                    manifest,
                    root / name,
                    device=device,
                    precision=precision,
                    store=store,
                    steps=args.steps,
                    warmup=warmup,
                    batch_seconds=batch_seconds,
                    crop_seconds=crop,
                )
                rows.append(row)
                log.info("%s: %s", name, row)
    card = device_name(device)
    print(
        f"\ndistillation {TEACHER} -> {STUDENT} on {card}: batch {batch_seconds:g} s, crops ≤ {crop:g} s, "
        f"{args.steps} timed steps after {warmup}; teacher-target extraction {extract_s:.1f} s "
        f"for {audio_s:.0f} s of audio"
    )
    print("| precision | teacher targets | steps/s | audio s/s | peak GPU memory (GiB) |")
    print("|---|---|---|---|---|")
    for r in rows:
        peak = "n/a" if np.isnan(r["peak_gib"]) else f"{r['peak_gib']:.2f}"
        print(
            f"| {r['precision']} | {r['targets']} | {r['steps_per_s']:.3g} | {r['audio_s_per_s']:.3g} | {peak} |"
        )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "device": card,
                    "batch_seconds": batch_seconds,
                    "crop_seconds": crop,
                    "extract_seconds": extract_s,
                    "rows": rows,
                },
                indent=2,
            )
            + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
