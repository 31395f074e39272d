"""Real-size costs on the CPU: distillation steps, extraction, stored targets, counted FLOPs.

With random weights and fabricated audio (nothing is downloaded), at the paper's sizes — a
HuBERT-Base-shaped teacher (``random:hubert-base``, waveform CNN front end, 12 × 768) and
batches of 2 × 15.625 s crops — it measures, running the code users run:

a) **distill** — for each paper student (3-L One PredLayer, 12-L Half L2L, DistilHuBERT
   PredLayer on teacher layers 4/8/12), :func:`deepwide.distill.train_student` with the
   teacher run online and with its targets read from a store extracted by deepwide: seconds
   per step (forward + backward + AdamW step, data loading included; the median of
   ``--steps`` steps after ``--warmup`` untimed ones) and the peak RSS of a fresh subprocess
   per variant (``resource.getrusage(RUSAGE_SELF).ru_maxrss``), beside its RSS after the
   imports, before training;
b) **extract** — :func:`deepwide.extract.extract_features` of the teacher (every layer,
   ``frames="all"``, float16: the study's teacher-targets store) on the fabricated corpus,
   in audio seconds per second, against the same batches' forward passes alone, in this
   process and in as many forked one-thread jobs as the extraction uses;
c) **store** — that store's size on disk, scaled linearly to one hour of audio, beside the
   formula ``frames/s × layers × dim × bytes``;
d) **flops** — one step of each variant counted by ``torch.utils.flop_counter.FlopCounterMode``
   (forward + backward; attention forced onto the math SDPA kernel, whose matmuls the counter
   sees — the CPU's fused kernel is not in its registry), and from it a **projection** of
   200k steps at batch 24 crops of 15.625 s on one H100 (989 TFLOP/s dense bf16) at an assumed
   utilisation (``--utilisation``, default 35 %).

Writes ``real-size.json`` (every number, the machine, the date) and ``real-size.md`` (the
tables) to ``--out`` and prints the tables.

    python benchmarks/real_size.py --out runs/real-size            # real size (tens of minutes on 2 cores)
    python benchmarks/real_size.py --quick --out /tmp/real-size    # tiny shapes (a test)

``--quick`` uses the tiny teacher's shape (``random:tiny-teacher``, spectral front end,
12 × 256; the students scaled to its width) and 1 s crops; it checks that the script works,
not how fast anything is.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import logging
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

# torch and deepwide are imported inside functions: extraction's decoding processes may be
# spawned and re-import this script, which should stay light (see benchmarks/extract.py).

log = logging.getLogger("real_size")
HERE = Path(__file__).resolve().parent

#: (preset, objective, the paper's name) of the students measured.
PAPER_STUDENTS: tuple[tuple[str, str, str], ...] = (
    ("3l-one", "predlayer", "3-L One PredLayer"),
    ("12l-half", "l2l", "12-L Half L2L"),
    ("distilhubert", "predlayer", "DistilHuBERT"),
)
TARGETS = ("online", "stored")
H100_BF16_DENSE_FLOPS = 989e12  # H100 SXM, dense bf16 tensor-core peak (no sparsity)
PROJECTION_STEPS = 200_000
PROJECTION_CROPS = 24  # configs/paper.toml: distill_batch_seconds = 375 = 24 × 15.625 s
STORE_BYTES = 2  # float16, the study's store_dtype


@dataclass(frozen=True)
class Sizes:
    """How big everything runs (the issue's real size, or the tiny ``--quick`` mode)."""

    teacher: str = "random:hubert-base"
    crop_seconds: float = 15.625
    crops_per_batch: int = 2
    warmup: int = 1
    steps: int = 2
    utts: int = 12  # the corpus: extraction runs over all of it, distillation crops from it
    utt_seconds: float = 16.0


QUICK = Sizes(teacher="random:tiny-teacher", crop_seconds=1.0, warmup=1, steps=1, utts=4, utt_seconds=1.5)


def bench_module(name: str) -> Any:
    """``benchmarks/<name>.py`` imported by path, through ``gpu_check.bench_module`` (one loader)."""
    key = "benchmarks_gpu_check"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, HERE / "gpu_check.py")
        module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        sys.modules[key] = module
        spec.loader.exec_module(module)  # type: ignore[union-attr]
    return sys.modules[key] if name == "gpu_check" else sys.modules[key].bench_module(name)


def rss_now_kib() -> int:
    """This process's resident set size now, in KiB (``VmRSS``; 0 where /proc is missing)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def conv_backward_flops(grad_out_shape: Any, x_shape: Any, w_shape: Any, bias: Any, stride: Any, padding: Any,
                        dilation: Any, transposed: bool, output_padding: Any, groups: int, output_mask: Any,
                        out_shape: Any = None, **kwargs: Any) -> int:
    """``aten.convolution_backward``'s FLOPs: torch's formula with the weight gradient divided by ``groups``.

    torch 2.9's ``conv_backward_flop`` counts a grouped convolution's weight gradient as if the
    convolution were ungrouped (``groups`` × too many: 16 × for HuBERT's positional convolution);
    its input-gradient count is right and is kept.
    """
    from torch.utils.flop_counter import conv_backward_flop

    args = (grad_out_shape, x_shape, w_shape, bias, stride, padding, dilation, transposed, output_padding, groups)
    grad_input = conv_backward_flop(*args, [output_mask[0], False, False], out_val=out_shape)
    grad_weight = conv_backward_flop(*args, [False, output_mask[1], False], out_val=out_shape)
    return grad_input + grad_weight // groups


def count_flops() -> Any:
    """A ``FlopCounterMode`` with the grouped-convolution backward counted right (see above)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    return FlopCounterMode(display=False, custom_mapping={torch.ops.aten.convolution_backward: conv_backward_flops})


# ----------------------------------------------------------------------------- a + d: one variant
def run_variant_child(spec_path: Path) -> int:
    """One distillation variant in this (fresh) process: timed steps, peak RSS, one counted step.

    ``spec_path`` is a JSON object (written by :func:`measure_variant`); the result goes to
    ``<out>/result.json``.
    """
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from deepwide.corpora import Manifest
    from deepwide.distill import read_metrics

    spec = json.loads(spec_path.read_text())
    torch.set_num_threads(spec["threads"])
    distill_gpu = bench_module("distill_gpu")
    manifest = Manifest.load(Path(spec["corpus"]))
    out = Path(spec["out"])
    store = Path(spec["store"]) if spec["store"] else None
    common = dict(device="cpu", precision="fp32", store=store, batch_seconds=spec["batch_seconds"],
                  crop_seconds=spec["crop_seconds"], teacher_spec=spec["teacher"], student=spec["student"],
                  objective=spec["objective"])
    rss_start = rss_now_kib()
    # teacher=None: train_student loads the teacher itself and, with stored targets, lets it go (as the CLI)
    row = distill_gpu.run_variant(None, manifest, out / "timed", steps=spec["steps"], warmup=spec["warmup"], **common)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    step_s = [1.0 / m["steps_per_s"] for m in read_metrics(out / "timed")]
    counter = count_flops()
    with sdpa_kernel(SDPBackend.MATH), counter:
        distill_gpu.run_variant(None, manifest, out / "flops", steps=1, warmup=0, **common)
    flops_by_op = {str(op): int(n) for op, n in counter.get_flop_counts()["Global"].items()}
    result = {
        **{k: spec[k] for k in ("student", "objective", "name")},
        "targets": "stored" if store else "online",
        "params": row["student_params"],
        "step_seconds_all": step_s,
        "step_seconds": statistics.median(step_s[spec["warmup"]:]),
        "audio_s_per_s": row["audio_s_per_s"],
        "rss_start_gib": rss_start / 2**20,
        "peak_rss_gib": peak_kib / 2**20,
        "peak_rss_delta_gib": (peak_kib - rss_start) / 2**20,
        "flops_step": int(counter.get_total_flops()),
        "flops_by_op": flops_by_op,
        "final_loss": row["final_loss"],
    }
    (out / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


def measure_variant(root: Path, sizes: Sizes, corpus: Path, store: Path | None, student: tuple[str, str, str],
                    threads: int) -> dict[str, Any]:
    """Run one variant in a fresh subprocess of this script and return its ``result.json``."""
    preset, objective, name = student
    out = root / "runs" / f"{preset}-{objective}-{'stored' if store else 'online'}"
    out.mkdir(parents=True)
    spec = {"teacher": sizes.teacher, "corpus": str(corpus), "store": str(store) if store else None,
            "student": preset, "objective": objective, "name": name, "out": str(out), "threads": threads,
            "steps": sizes.steps, "warmup": sizes.warmup, "crop_seconds": sizes.crop_seconds,
            "batch_seconds": sizes.crops_per_batch * sizes.crop_seconds}
    (out / "spec.json").write_text(json.dumps(spec))
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--variant", str(out / "spec.json")],
                          capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"variant {out.name} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    result = json.loads((out / "result.json").read_text())
    result["process_seconds"] = time.perf_counter() - t0
    log.info("%s %s: %.2f s/step, peak RSS %.2f GiB, %.1f GFLOP/step (%.0f s in all)", name, result["targets"],
             result["step_seconds"], result["peak_rss_gib"], result["flops_step"] / 1e9, result["process_seconds"])
    return result


# ----------------------------------------------------------------------------- b + c: extraction, store
def measure_extraction(root: Path, sizes: Sizes, manifest: Any, store: Path, threads: int) -> dict[str, Any]:
    """``extract_features`` (the study's targets store) against its batches' forward passes alone."""
    import torch

    from deepwide.extract import ExtractConfig, extract_features
    from deepwide.extract.compute import default_jobs
    from deepwide.models import load_model

    extract_bench = bench_module("extract")
    torch.set_num_threads(threads)
    teacher = load_model(sizes.teacher, seed=0).eval()
    config = ExtractConfig(layers=None, frames="all", dtype="float16")  # study: teacher_targets store
    jobs = default_jobs("cpu")
    audio_s = sum(u.duration_s for u in manifest.utterances)
    batches = extract_bench.padded_batches(manifest, config)
    extract_bench.forward_only(teacher, batches[:1], "cpu")  # warm-up (allocator, kernels)
    t0 = time.perf_counter()
    extract_bench.forward_only(teacher, batches, "cpu")
    forward_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    extract_bench.forward_only_jobs(teacher, batches, jobs)
    forward_jobs_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    report = extract_features(teacher, manifest, store, config, device="cpu", progress=False)
    extract_s = time.perf_counter() - t0
    if not report.complete:
        raise RuntimeError(f"extraction into {store} did not complete")
    return {
        "audio_s": audio_s, "utterances": len(manifest.utterances), "batches": len(batches), "jobs": jobs,
        "threads": threads, "batch_seconds": config.batch_seconds, "extract_s": extract_s, "forward_s": forward_s,
        "forward_jobs_s": forward_jobs_s, "extract_audio_s_per_s": audio_s / extract_s,
        "forward_audio_s_per_s": audio_s / forward_s, "forward_jobs_audio_s_per_s": audio_s / forward_jobs_s,
        "ratio_vs_forward": extract_s / forward_s, "ratio_vs_forward_jobs": extract_s / forward_jobs_s,
    }


def folder_bytes(path: Path) -> int:
    """Bytes of every file under ``path`` (sizes, not blocks)."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def measure_store(store: Path, audio_s: float) -> dict[str, Any]:
    """The store's size on disk, per hour of audio, against ``frames/s × layers × dim × bytes``."""
    from deepwide.store import open_store

    ds = open_store(store)
    frames, layers, dim = int(ds.sizes["frame"]), int(ds.sizes["layer"]), int(ds.sizes["feat"])
    total, hidden = folder_bytes(store), folder_bytes(store / "hidden")
    frame_rate = frames / audio_s
    raw_hidden = frames * layers * dim * STORE_BYTES
    per_hour = 3600.0 / audio_s
    return {
        "audio_s": audio_s, "frames": frames, "layers": layers, "dim": dim, "dtype": str(ds.hidden.dtype),
        "frames_per_s": frame_rate, "bytes": total, "hidden_bytes": hidden, "raw_hidden_bytes": raw_hidden,
        "compressed_fraction": hidden / raw_hidden, "bytes_per_hour": total * per_hour,
        "formula_bytes_per_hour": 3600 * 50 * layers * dim * STORE_BYTES,
        "formula": f"3600 s × 50 frames/s × {layers} layers × {dim} × {STORE_BYTES} B (float16), before zstd",
    }


# ----------------------------------------------------------------------------- projection
def projection(rows: list[dict[str, Any]], sizes: Sizes, utilisation: float) -> list[dict[str, Any]]:
    """200k steps at batch 24 crops on one H100 at ``utilisation``, from each variant's counted FLOPs.

    FLOPs of a step are linear in the number of crops at a fixed crop length, so a step at batch
    24 is ``24 / crops_per_batch`` × the counted one (with ``--quick``, of the tiny shapes).
    """
    scale = PROJECTION_CROPS / sizes.crops_per_batch
    out = []
    for r in rows:
        step = r["flops_step"] * scale
        total = step * PROJECTION_STEPS
        hours = total / (H100_BF16_DENSE_FLOPS * utilisation) / 3600
        out.append({"name": r["name"], "targets": r["targets"], "flops_step_b24": step, "flops_total": total,
                    "h100_hours": hours})
    return out


# ----------------------------------------------------------------------------- machine, output
def machine() -> dict[str, Any]:
    import torch

    from deepwide.system import cpu_model, usable_cpus

    model = cpu_model()

    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {"cpu": model, "arch": platform.machine(), "cpus": os.cpu_count(), "usable_cpus": usable_cpus(),
            "ram_gib": round(mem, 1), "torch": torch.__version__, "python": platform.python_version(),
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}


def gib(b: float) -> str:
    return f"{b / 2**30:.2f} GiB"


def markdown(res: dict[str, Any]) -> str:
    m, s, ex, st = res["machine"], res["sizes"], res["extract"], res["store"]
    util = res["utilisation"]
    lines = [
        f"Real size on CPU — {m['cpu']}, {m['usable_cpus']} of {m['cpus']} CPUs usable, {m['ram_gib']} GiB RAM, "
        f"torch {m['torch']} ({res['threads']} threads), {m['date']}, mode {res['mode']}; load average "
        f"{res['load_before'][0]:.1f} before, {res['load_after'][0]:.1f} after; {res['total_seconds'] / 60:.1f} min",
        "",
        f"Distillation step (teacher {s['teacher']}, batch {s['crops_per_batch']} × {s['crop_seconds']:g} s crops, "
        f"fp32; median of {s['steps']} steps after {s['warmup']} warm-up):",
        "",
        "| student | params (M) | teacher targets | s / step | audio s / s | peak RSS | RSS after imports | "
        "counted GFLOP / step |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in res["distill"]:
        lines.append(
            f"| {r['name']} | {r['params'] / 1e6:.2f} | {r['targets']} | {r['step_seconds']:.2f} | "
            f"{r['audio_s_per_s']:.3g} | {r['peak_rss_gib']:.2f} GiB | {r['rss_start_gib']:.2f} GiB | "
            f"{r['flops_step'] / 1e9:.1f} |"
        )
    lines += [
        "",
        f"Extraction of {s['teacher']} (every layer, frames all, float16) over {ex['audio_s']:.0f} s of audio "
        f"({ex['utterances']} utterances, {ex['batches']} batches of ≤ {ex['batch_seconds']:g} s):",
        "",
        "| what | wall s | audio s / s | extraction / this |",
        "|---|---|---|---|",
        f"| `extract_features` ({ex['jobs']} one-thread jobs, the CPU default) | {ex['extract_s']:.1f} | "
        f"{ex['extract_audio_s_per_s']:.2f} | 1.00 |",
        f"| forward passes alone, this process ({ex['threads']} threads) | {ex['forward_s']:.1f} | "
        f"{ex['forward_audio_s_per_s']:.2f} | {ex['ratio_vs_forward']:.2f} |",
        f"| forward passes alone, {ex['jobs']} one-thread jobs | {ex['forward_jobs_s']:.1f} | "
        f"{ex['forward_jobs_audio_s_per_s']:.2f} | {ex['ratio_vs_forward_jobs']:.2f} |",
        "",
        f"Stored-targets store: {st['frames']} frames ({st['frames_per_s']:.2f} / s) × {st['layers']} layers × "
        f"{st['dim']} {st['dtype']} = {gib(st['bytes'])} on disk for {st['audio_s']:.0f} s "
        f"(hidden {gib(st['hidden_bytes'])}, {st['compressed_fraction']:.3f} of raw after zstd) → "
        f"**{st['bytes_per_hour'] / 1e9:.2f} GB per hour of audio** measured (scaled linearly); formula "
        f"{st['formula']} = {st['formula_bytes_per_hour'] / 1e9:.2f} GB / h.",
        "",
        f"**Projection** (not measured): {PROJECTION_STEPS:,} steps at batch {PROJECTION_CROPS} crops of "
        f"{s['crop_seconds']:g} s (counted FLOPs × {PROJECTION_CROPS // s['crops_per_batch']}) on one H100 at "
        f"{H100_BF16_DENSE_FLOPS / 1e12:.0f} TFLOP/s dense bf16 × {util:.0%} assumed utilisation:",
        "",
        "| student | teacher targets | TFLOP / step at batch 24 | EFLOP for 200k steps | projected H100 hours |",
        "|---|---|---|---|---|",
    ]
    for p in res["projection"]:
        lines.append(f"| {p['name']} | {p['targets']} | {p['flops_step_b24'] / 1e12:.2f} | "
                     f"{p['flops_total'] / 1e18:.1f} | {p['h100_hours']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/real-size"), help="folder for real-size.json/.md")
    parser.add_argument("--quick", action="store_true", help="tiny shapes (a smoke test; not the real size)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps per variant (default 1)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per variant (default 2; 1 with --quick)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--utilisation", type=float, default=0.35, help="assumed H100 utilisation (default 0.35)")
    parser.add_argument("--variant", type=Path, default=None, help=argparse.SUPPRESS)  # the per-variant child
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.variant is not None:
        logging.getLogger().setLevel(logging.WARNING)
        return run_variant_child(args.variant)
    if not 0 < args.utilisation <= 1:
        parser.error("--utilisation must be in (0, 1]")
    sizes = QUICK if args.quick else Sizes()
    overrides = {k: v for k, v in (("warmup", args.warmup), ("steps", args.steps)) if v is not None}
    sizes = Sizes(**{**asdict(sizes), **overrides})
    if sizes.steps < 1 or sizes.warmup < 0:
        parser.error("--steps must be ≥ 1 and --warmup ≥ 0")

    import torch

    torch.set_num_threads(args.threads)
    res: dict[str, Any] = {"machine": machine(), "mode": "quick (tiny shapes)" if args.quick else "real size",
                           "sizes": asdict(sizes), "threads": args.threads, "utilisation": args.utilisation,
                           "load_before": os.getloadavg()}
    log.info("machine: %s", res["machine"])
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="real-size-") as tmp:
        root = Path(tmp)
        manifest = bench_module("distill_gpu").fabricate_corpus(root / "corpus", sizes.utts, sizes.utt_seconds)
        store = root / "teacher-targets.zarr"
        res["extract"] = measure_extraction(root, sizes, manifest, store, args.threads)
        log.info("extraction: %s", res["extract"])
        res["store"] = measure_store(store, res["extract"]["audio_s"])
        log.info("store: %s", res["store"])
        res["distill"] = [
            measure_variant(root, sizes, root / "corpus", store if targets == "stored" else None, student,
                            args.threads)
            for student in PAPER_STUDENTS for targets in TARGETS
        ]
    res["projection"] = projection(res["distill"], sizes, args.utilisation)
    res["total_seconds"] = time.perf_counter() - t_start
    res["load_after"] = os.getloadavg()
    table = markdown(res)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "real-size.json").write_text(json.dumps(res, indent=2, default=str) + "\n")
    (args.out / "real-size.md").write_text(table)
    print("\n" + table)
    print(f"written to {args.out} ({res['total_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
