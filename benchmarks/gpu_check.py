"""One-command GPU check: distillation, DDP, extraction and probe solvers on one machine.

In one process (plus one ``torchrun`` child for DDP), with random weights and fabricated
audio (nothing is downloaded):

1. **distill** — steps/s, audio s/s and peak GPU memory (``torch.cuda.max_memory_allocated``)
   of the paper's students (configs/paper.toml: DistilHuBERT with PredLayer; 3-L One and
   12-L Half, each with PredLayer and L2L) from a HuBERT-Base-shaped random teacher
   (``random:hubert-base``), batches of 2 × 15.625 s crops, fp32 vs bf16 autocast, the
   teacher run online vs its targets read from a store extracted once. Also which
   scaled-dot-product-attention kernel torchaudio's attention dispatches to (``sdpa``).
2. **bf16** — each student's first-step loss under bf16 autocast against fp32: same
   weights, same crops (step 1 runs before any update); relative difference ≤ 5e-2.
3. **ddp** — ``torchrun --nproc_per_node=<visible GPUs>`` (NCCL) running deepwide's trainer
   (``WORLD_SIZE`` from torchrun) on a corpus whose every batch is the same two crops, so
   the loss at every step must equal a single-process run's (relative difference ≤ 1e-3),
   and every rank's final student must equal the saved one (max |Δ| ≤ 1e-6).
4. **extract** — ``extract_features`` of HuBERT Base (random weights) in audio s/s, against
   the same batches' bare forward passes (the ratio is what extraction's bookkeeping costs;
   reported, not checked).
5. **probe** — ``fit_softmax_path`` (13 layers, random features, the default penalty grid)
   and ``fit_ctc_layers`` (13 linear CTC heads): seconds per call on the device, and the
   device result against the CPU's on a small input: the objective of every fit converged
   on both within 2e-3 (relative), the trained CTC heads' training loss within 1e-2.

Every check is a row; a part that raises is a FAIL row with the exception and the other
parts still run. Writes ``gpu-check.json`` (every number, device name, torch/CUDA versions,
date) and ``gpu-check.md`` to ``--out``, prints the table, and exits 1 if a row FAILed.

    python benchmarks/gpu_check.py --out runs/gpu-check             # on a GPU (sized for ≤ 8 min on one H100/H200; not yet timed)
    python benchmarks/gpu_check.py --device cpu --smoke --out DIR    # everything tiny on the CPU (a test)

The smoke mode uses the tiny teacher's shape (``random:tiny-teacher``, spectral front-end,
12 × 256; the paper students scaled to its width), 1 s crops, 2 steps, fp32 only (deepwide's
trainer autocasts on CUDA only, so the bf16 rows are skipped), DDP with 2 gloo processes on
the CPU, and small probe inputs; it checks that the script works, not how fast anything is.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import logging
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# torch and deepwide are imported inside functions: extraction's decoding processes are
# spawned and re-import this script, which should stay light (see benchmarks/extract.py).

log = logging.getLogger("gpu_check")
HERE = Path(__file__).resolve().parent

#: The paper's students and objectives (configs/paper.toml: distilhubert, 3-L One, 12-L Half).
PAPER_STUDENTS: tuple[tuple[str, str], ...] = (
    ("distilhubert", "predlayer"),
    ("3l-one", "predlayer"),
    ("3l-one", "l2l"),
    ("12l-half", "predlayer"),
    ("12l-half", "l2l"),
)
BF16_LOSS_RTOL = 5e-2
DDP_LOSS_RTOL = 1e-3
DDP_PARAM_ATOL = 1e-6
PROBE_OBJECTIVE_RTOL = 2e-3  # two fits, each certified within gap_tol = 1e-3 of the optimum
CTC_LOSS_RTOL = 1e-2


@dataclass(frozen=True)
class Sizes:
    """How big each part runs (GPU defaults, or the tiny smoke mode)."""

    teacher: str = "random:hubert-base"
    crop_seconds: float = 15.625
    crops_per_batch: int = 2
    steps: int = 8
    warmup: int = 2
    precisions: tuple[str, ...] = ("fp32", "bf16")
    distill_utts: int = 16
    ddp_steps: int = 4
    extract_utts: int = 128
    extract_utt_seconds: float = 16.0
    extract_frames: str = "sample:20"
    probe_shape: tuple[int, int, int, int] = (13, 20_000, 768, 40)  # layers, frames, dim, classes
    probe_small: tuple[int, int, int, int] = (13, 2_000, 64, 10)
    ctc_shape: tuple[int, int, int, int] = (13, 200, 768, 40)  # layers, utterances, dim, labels
    ctc_small: tuple[int, int, int, int] = (13, 40, 32, 10)
    ctc_steps: int = 100
    ctc_small_steps: int = 20


SMOKE = Sizes(
    teacher="random:tiny-teacher",
    crop_seconds=1.0,
    steps=2,
    warmup=0,
    precisions=("fp32",),
    distill_utts=2,
    ddp_steps=2,
    extract_utts=6,
    extract_utt_seconds=2.0,
    probe_shape=(13, 600, 16, 5),
    probe_small=(13, 300, 8, 4),
    ctc_shape=(13, 12, 16, 5),
    ctc_small=(13, 8, 8, 4),
    ctc_steps=5,
    ctc_small_steps=5,
)


@dataclass
class Report:
    """The check's rows and numbers; a row is ``part, check, status (PASS/FAIL/SKIP), result, note``."""

    rows: list[dict[str, str]] = field(default_factory=list)
    numbers: dict[str, Any] = field(default_factory=dict)

    def add(self, part: str, check: str, ok: bool | None, result: str, note: str = "") -> None:
        status = "SKIP" if ok is None else ("PASS" if ok else "FAIL")
        self.rows.append({"part": part, "check": check, "status": status, "result": result, "note": note})
        log.info("%s %s: %s %s %s", part, check, status, result, note)

    @property
    def failed(self) -> int:
        return sum(r["status"] == "FAIL" for r in self.rows)


def bench_module(name: str) -> Any:
    """``benchmarks/<name>.py`` imported by path (as ``benchmarks_<name>``), to reuse its functions."""
    key = f"benchmarks_{name}"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, HERE / f"{name}.py")
        module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        sys.modules[key] = module
        spec.loader.exec_module(module)  # type: ignore[union-attr]
    return sys.modules[key]


def synchronize(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def run_part(report: Report, part: str, fn: Callable[[], None]) -> None:
    """Run one part; an exception becomes a FAIL row naming it, and the next part still runs."""
    t0 = time.perf_counter()
    try:
        fn()
    except Exception as exc:  # a check must report, not stop the others
        log.debug("%s failed:\n%s", part, traceback.format_exc())
        report.add(part, "ran without an exception", False, f"{type(exc).__name__}: {exc}"[:300])
    report.numbers.setdefault("part_seconds", {})[part] = time.perf_counter() - t0


# ----------------------------------------------------------------------------- 1 + 2: distill
def check_distill(report: Report, sizes: Sizes, device: str, root: Path, teacher: Any) -> None:
    """Steps/s and peak memory of every paper student × precision × teacher targets; bf16 vs fp32."""
    from deepwide.distill import read_metrics

    distill_gpu = bench_module("distill_gpu")
    batch_seconds = sizes.crops_per_batch * sizes.crop_seconds
    manifest = distill_gpu.fabricate_corpus(root / "corpus", sizes.distill_utts, sizes.crop_seconds + 0.5)
    store = root / "teacher.zarr"
    layers = tuple(range(1, teacher.num_layers + 1))  # l2l on 12-L Half needs every layer
    extract_s = distill_gpu.extract_targets(teacher, manifest, store, layers, device)
    report.numbers["distill_targets_extract_s"] = extract_s
    runs: list[dict[str, Any]] = []
    for student, objective in PAPER_STUDENTS:
        for precision in sizes.precisions:
            for targets in ("online", "stored"):
                name = f"{student}-{objective}-{precision}-{targets}"
                out = root / "runs" / name
                try:
                    row = distill_gpu.run_variant(
                        teacher, manifest, out, device=device, precision=precision,
                        store=store if targets == "stored" else None, steps=sizes.steps,
                        warmup=sizes.warmup, batch_seconds=batch_seconds, crop_seconds=sizes.crop_seconds,
                        teacher_spec=sizes.teacher, student=student, objective=objective,
                    )
                except Exception as exc:
                    report.add("distill", name, False, f"{type(exc).__name__}: {exc}"[:300])
                    continue
                row.update(student=student, objective=objective, first_loss=read_metrics(out)[0]["loss"])
                runs.append(row)
                peak = "n/a" if math.isnan(row["peak_gib"]) else f"{row['peak_gib']:.2f} GiB"
                ok = math.isfinite(row["final_loss"]) and row["steps_per_s"] > 0
                report.add("distill", name, ok,
                           f"{row['steps_per_s']:.3g} steps/s, {row['audio_s_per_s']:.3g} audio s/s, peak {peak}",
                           f"{row['student_params'] / 1e6:.2f} M params")
    report.numbers["distill"] = runs
    compare_bf16(report, runs, device)


def compare_bf16(report: Report, runs: list[dict[str, Any]], device: str) -> None:
    """bf16's first-step loss against fp32's for every student and teacher-target variant."""
    if not device.startswith("cuda"):
        report.add("bf16", "bf16 loss vs fp32", None, "not run",
                   "CPU: deepwide's trainer autocasts on CUDA only, so every CPU run is fp32")
        return
    by_key = {(r["student"], r["objective"], r["targets"], r["precision"]): r for r in runs}
    diffs = []
    for (student, objective, targets, precision), r in sorted(by_key.items()):
        if precision != "bf16" or (student, objective, targets, "fp32") not in by_key:
            continue
        ref = by_key[(student, objective, targets, "fp32")]["first_loss"]
        rel = abs(r["first_loss"] - ref) / max(abs(ref), 1e-12)
        diffs.append({"student": student, "objective": objective, "targets": targets, "fp32": ref,
                      "bf16": r["first_loss"], "rel_diff": rel})
        report.add("bf16", f"{student}-{objective}-{targets} step-1 loss", rel <= BF16_LOSS_RTOL,
                   f"fp32 {ref:.5g}, bf16 {r['first_loss']:.5g}, rel. diff {rel:.2e}", f"tolerance {BF16_LOSS_RTOL:g}")
    report.numbers["bf16"] = diffs
    if not diffs:
        report.add("bf16", "bf16 loss vs fp32", False, "no fp32/bf16 pair ran")


def check_sdpa(report: Report, teacher: Any, device: str, sizes: Sizes) -> None:
    """Which aten SDPA kernels a teacher forward dispatches to, in fp32 and (CUDA) bf16 autocast."""
    import contextlib

    import torch
    from torch.profiler import ProfilerActivity, profile

    wav = torch.randn(1, int(sizes.crop_seconds * 16_000), device=device) * 0.1
    lengths = torch.tensor([wav.shape[1]], device=device)
    modes = [("fp32", contextlib.nullcontext)]
    if device.startswith("cuda"):
        modes.append(("bf16", lambda: torch.autocast("cuda", dtype=torch.bfloat16)))
    found: dict[str, list[str]] = {}
    for name, ctx in modes:
        with torch.inference_mode(), ctx():
            teacher.hidden_states(wav, lengths)  # warm-up
            synchronize(device)
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                teacher.hidden_states(wav, lengths)
                synchronize(device)
        kernels = sorted({e.key for e in prof.key_averages() if "scaled_dot_product" in e.key})
        found[name] = kernels
        report.add("distill", f"SDPA in torchaudio attention ({name})", bool(kernels),
                   ", ".join(k.removeprefix("aten::") for k in kernels) or "no scaled_dot_product op")
    report.numbers["sdpa_kernels"] = found


# ----------------------------------------------------------------------------- 3: DDP
def ddp_options(sizes: Sizes, corpus: Path, device: str) -> dict[str, Any]:
    """DistillConfig options of the DDP check: every batch is the same two whole utterances."""
    return {
        "teacher": sizes.teacher, "corpus": str(corpus), "student": "distilhubert", "objective": "predlayer",
        "steps": sizes.ddp_steps, "batch_seconds": sizes.crops_per_batch * sizes.crop_seconds,
        "max_crop_seconds": sizes.crop_seconds, "precision": "fp32", "log_every": 1,
        "checkpoint_every": 10**9, "keep_checkpoints": 1, "device": device,
    }


def check_ddp(report: Report, sizes: Sizes, device: str, root: Path, nproc: int, backend: str) -> None:
    """A torchrun world of ``nproc`` against one process on identical batches."""
    from deepwide.distill import make_config, read_metrics, train_student

    distill_gpu = bench_module("distill_gpu")
    corpus = root / "ddp-corpus"
    distill_gpu.fabricate_corpus(corpus, sizes.crops_per_batch, sizes.crop_seconds)  # utterance = crop: no offsets
    opts = ddp_options(sizes, corpus, device)
    (root / "ddp-options.json").write_text(json.dumps(opts))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           str(Path(__file__).resolve()), "--ddp-worker", str(root / "ddp-options.json"), "--out", str(root / "ddp")]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    ddp_s = time.perf_counter() - t0
    if proc.returncode != 0:
        report.add("ddp", f"torchrun × {nproc} ({backend})", False, f"exit {proc.returncode}",
                   proc.stderr.strip().splitlines()[-1][:300] if proc.stderr.strip() else "")
        return
    ranks = json.loads((root / "ddp" / "ranks.json").read_text())
    single = train_student(make_config(**opts), root / "single", progress=False)
    losses_ddp = [m["loss"] for m in read_metrics(root / "ddp")]
    losses_one = [m["loss"] for m in read_metrics(root / "single")]
    rel = max(abs(a - b) / max(abs(b), 1e-12) for a, b in zip(losses_ddp, losses_one, strict=True))
    note = "" if nproc > 1 else "one visible GPU: world size 1, no process group (NCCL needs ≥ 2 GPUs)"
    report.add("ddp", f"torchrun × {nproc} ({backend}) completes", ranks["world_size"] == nproc,
               f"{ddp_s:.1f} s for {sizes.ddp_steps} steps (process start included)", note)
    report.add("ddp", "every rank's final student == the saved one", ranks["max_abs_diff"] <= DDP_PARAM_ATOL,
               f"max |Δ| {ranks['max_abs_diff']:.2e} over {ranks['world_size']} rank(s)", f"tolerance {DDP_PARAM_ATOL:g}")
    report.add("ddp", "loss per step == one process's", rel <= DDP_LOSS_RTOL,
               f"max rel. diff {rel:.2e} over {len(losses_one)} steps (final {single.final_loss:.5g})",
               f"tolerance {DDP_LOSS_RTOL:g}")
    report.numbers["ddp"] = {"nproc": nproc, "backend": backend, "seconds": ddp_s, "losses_ddp": losses_ddp,
                             "losses_single": losses_one, "loss_rel_diff": rel, **ranks}


def ddp_worker(options: Path, out: Path) -> int:
    """One torchrun process: train with deepwide's trainer, then compare this rank's student.

    The process group is created here first, so the trainer joins it and leaves it open; the
    trained :class:`DistillModel` is caught by a global forward hook (deepwide is not patched).
    Rank 0 writes ``out/ranks.json``: world size and the largest |Δ| between any rank's final
    student and the saved ``model.safetensors``.
    """
    import torch
    import torch.distributed as dist
    from safetensors.torch import load_file

    from deepwide.distill import make_config, train_student
    from deepwide.distill.student import DistillModel

    opts = json.loads(options.read_text())
    cuda = opts["device"].startswith("cuda")
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    caught: list[DistillModel] = []

    def catch(module: Any, args: Any, output: Any) -> None:
        if isinstance(module, DistillModel) and not caught:
            caught.append(module)

    handle = torch.nn.modules.module.register_module_forward_hook(catch)
    try:
        train_student(make_config(**opts), out, progress=False)
    finally:
        handle.remove()
    saved = load_file(str(out / "model.safetensors"))
    state = caught[0].student.state_dict()
    diff = max(float((state[k].detach().cpu().float() - v.float()).abs().max()) for k, v in saved.items())
    value = torch.tensor([diff], device=f"cuda:{torch.cuda.current_device()}" if cuda else "cpu")
    if world > 1:
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        rank = dist.get_rank()
    else:
        rank = 0
    if rank == 0:
        (out / "ranks.json").write_text(json.dumps({"world_size": world, "max_abs_diff": float(value)}))
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return 0


# ----------------------------------------------------------------------------- 4: extraction
def check_extract(report: Report, sizes: Sizes, device: str, root: Path, teacher: Any) -> None:
    """``extract_features`` against the bare forward passes of the same batches."""
    from deepwide.extract import ExtractConfig, extract_features

    distill_gpu, extract_bench = bench_module("distill_gpu"), bench_module("extract")
    manifest = distill_gpu.fabricate_corpus(root / "extract-corpus", sizes.extract_utts, sizes.extract_utt_seconds)
    audio_s = sizes.extract_utts * sizes.extract_utt_seconds
    config = ExtractConfig(frames=sizes.extract_frames)
    batches = extract_bench.padded_batches(manifest, config)
    extract_bench.forward_only(teacher, batches[:1], device)  # warm-up (kernels, allocator)
    t0 = time.perf_counter()
    extract_bench.forward_only(teacher, batches, device)
    forward_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    result = extract_features(teacher, manifest, root / "extract.zarr", config, device=device, progress=False)
    synchronize(device)
    extract_s = time.perf_counter() - t0
    ratio = extract_s / forward_s
    report.add("extract", f"extract_features, {audio_s:.0f} s of audio, --frames {sizes.extract_frames}",
               bool(result.complete), f"{audio_s / extract_s:.4g} audio s/s vs {audio_s / forward_s:.4g} forward-only "
               f"({ratio:.2f}× the forward passes)", "ratio reported, not checked (CPU target ≤ 1.3×)")
    report.numbers["extract"] = {"audio_s": audio_s, "extract_s": extract_s, "forward_s": forward_s,
                                 "ratio": ratio, "batches": len(batches), "frames": sizes.extract_frames}


# ----------------------------------------------------------------------------- 5: probe solvers
def random_probe_data(shape: tuple[int, int, int, int], seed: int) -> tuple[Any, Any, Any, Any]:
    """``(x_train (L, n, d), y_train (n,), x_dev (L, n/4, d), y_dev)``: class means growing with the layer, plus noise."""
    import torch

    nl, n, d, k = shape
    gen = torch.Generator().manual_seed(seed)
    means = torch.randn(k, d, generator=gen)
    scale = torch.linspace(0.05, 0.6, nl)[:, None, None]

    def draw(m: int) -> tuple[Any, Any]:
        y = torch.randint(0, k, (m,), generator=gen)
        return scale * means[y][None] + torch.randn(nl, m, d, generator=gen), y

    (x, y), (xd, yd) = draw(n), draw(max(n // 4, k))
    return x, y, xd, yd


def fit_path(data: tuple[Any, Any, Any, Any], k: int, device: str) -> Any:
    from deepwide.probing.solver import fit_softmax_path

    x, y, xd, yd = data
    path = fit_softmax_path(x.to(device), y.to(device), k, x_dev=xd.to(device), y_dev=yd.to(device))
    synchronize(device)
    return path


def check_probe(report: Report, sizes: Sizes, device: str) -> None:
    """``fit_softmax_path``: time on the device, and the objective against the CPU's."""
    nl, n, d, k = sizes.probe_shape
    fit_path(random_probe_data(sizes.probe_small, seed=1), sizes.probe_small[3], device)  # warm-up
    data = random_probe_data(sizes.probe_shape, seed=0)
    t0 = time.perf_counter()
    path = fit_path(data, k, device)
    seconds = time.perf_counter() - t0
    report.add("probe", f"fit_softmax_path {nl} layers × {n} × {d}, {k} classes, {len(path.penalties)} penalties",
               bool(np.all(np.isfinite(path.objective))), f"{seconds:.3g} s per call",
               f"{int(path.converged.sum())} of {path.converged.size} fits converged to tol")
    small = random_probe_data(sizes.probe_small, seed=2)
    on_device, on_cpu = fit_path(small, sizes.probe_small[3], device), fit_path(small, sizes.probe_small[3], "cpu")
    both = on_device.converged & on_cpu.converged
    rel = np.abs(on_device.objective - on_cpu.objective) / np.abs(on_cpu.objective)
    worst = float(rel[both].max()) if both.any() else float("nan")
    same_choice = float(np.mean(on_device.best_index == on_cpu.best_index))
    report.add("probe", f"fit_softmax_path {device} vs cpu ({'x'.join(map(str, sizes.probe_small))})",
               bool(both.any()) and worst <= PROBE_OBJECTIVE_RTOL,
               f"objective max rel. diff {worst:.2e} over {int(both.sum())} fits converged on both; "
               f"same penalty chosen on {same_choice:.0%} of layers", f"tolerance {PROBE_OBJECTIVE_RTOL:g}")
    report.numbers["probe"] = {"shape": sizes.probe_shape, "seconds": seconds, "small_shape": sizes.probe_small,
                               "objective_rel_diff": worst, "same_choice": same_choice}


def random_ctc_set(shape: tuple[int, int, int, int], seed: int) -> Any:
    """A :class:`CtcSet` of ``U`` utterances (40–120 frames, about one label per 4 frames)."""
    from deepwide.probing.ctc import CtcSet

    nl, u, d, v = shape
    rng = np.random.default_rng(seed)
    lengths = rng.integers(40, 121, size=u)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    targets = tuple(rng.integers(1, v + 1, size=max(1, int(t) // 4)).astype(np.int64) for t in lengths)
    x = rng.standard_normal((nl, int(offsets[-1]), d)).astype(np.float32)
    return CtcSet(x=x, offsets=offsets, targets=targets)


def ctc_train_loss(fit: Any, data: Any) -> np.ndarray:
    """``(L,)`` each head's CTC loss over all of ``data`` (computed on the CPU)."""
    import torch

    from deepwide.probing.ctc import layer_ctc_losses

    utts = np.arange(data.num_utts)
    xb, lens = data.batch(utts, torch.device("cpu"))
    logp = torch.log_softmax(torch.einsum("lbtd,ldc->lbtc", xb, fit.weight) + fit.bias[:, None, None], dim=-1)
    with torch.no_grad():
        return layer_ctc_losses(logp, lens, [data.targets[i] for i in utts]).numpy()


def check_ctc(report: Report, sizes: Sizes, device: str) -> None:
    """``fit_ctc_layers``: time on the device, and the trained heads' loss against the CPU's."""
    from deepwide.probing.ctc import fit_ctc_layers

    nl, u, d, v = sizes.ctc_shape
    warm = random_ctc_set(sizes.ctc_small, seed=1)
    fit_ctc_layers(warm, sizes.ctc_small[3], steps=2, device=device)  # warm-up
    data = random_ctc_set(sizes.ctc_shape, seed=0)
    t0 = time.perf_counter()
    fit = fit_ctc_layers(data, v, steps=sizes.ctc_steps, device=device)
    synchronize(device)
    seconds = time.perf_counter() - t0
    report.add("probe", f"fit_ctc_layers {nl} layers × {u} utts × {d}, {v} labels, {sizes.ctc_steps} steps",
               bool(torch_finite(fit.weight)), f"{seconds:.3g} s per call ({seconds / sizes.ctc_steps * 1e3:.3g} ms/step)")
    small = random_ctc_set(sizes.ctc_small, seed=2)
    kw = {"steps": sizes.ctc_small_steps, "batch_utts": 8}
    fit_dev = fit_ctc_layers(small, sizes.ctc_small[3], device=device, **kw)
    fit_cpu = fit_ctc_layers(small, sizes.ctc_small[3], device="cpu", **kw)
    loss_dev, loss_cpu = ctc_train_loss(fit_dev, small), ctc_train_loss(fit_cpu, small)
    rel = float(np.max(np.abs(loss_dev - loss_cpu) / np.abs(loss_cpu)))
    report.add("probe", f"fit_ctc_layers {device} vs cpu ({'x'.join(map(str, sizes.ctc_small))})",
               rel <= CTC_LOSS_RTOL, f"training CTC loss max rel. diff {rel:.2e} over {nl} heads",
               f"tolerance {CTC_LOSS_RTOL:g}")
    report.numbers["ctc"] = {"shape": sizes.ctc_shape, "steps": sizes.ctc_steps, "seconds": seconds,
                             "small_shape": sizes.ctc_small, "loss_rel_diff": rel}


def torch_finite(t: Any) -> bool:
    import torch

    return bool(torch.isfinite(t).all())


# ----------------------------------------------------------------------------- output
def environment(device: str, smoke: bool, sizes: Sizes) -> dict[str, Any]:
    import torch

    return {
        "device": bench_module("distill_gpu").device_name(device),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.cuda.is_available() else None,
        "visible_gpus": torch.cuda.device_count() if torch.cuda.is_available() else 0,
        "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "mode": "smoke (tiny shapes, see sizes)" if smoke else "full",
        "sizes": {k: v for k, v in vars(sizes).items()},
    }


def markdown(report: Report, env: dict[str, Any]) -> str:
    lines = [
        f"GPU check on {env['device']} — torch {env['torch']}, CUDA {env['cuda']}, {env['date']}, mode {env['mode']}",
        "",
        "| part | check | status | result | note |",
        "|---|---|---|---|---|",
    ]
    for r in report.rows:
        cells = [r[k].replace("|", "\\|") for k in ("part", "check", "status", "result", "note")]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"{len(report.rows)} rows, {report.failed} FAIL"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda or cuda:N (cpu: with --smoke)")
    parser.add_argument("--smoke", action="store_true", help="everything tiny (CPU smoke mode, for tests)")
    parser.add_argument("--out", type=Path, default=Path("runs/gpu-check"), help="folder for gpu-check.json/.md")
    parser.add_argument("--parts", default="distill,ddp,extract,probe", help="comma list of parts to run")
    parser.add_argument("--ddp-worker", type=Path, default=None, help=argparse.SUPPRESS)  # the torchrun child
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.ddp_worker is not None:
        return ddp_worker(args.ddp_worker, args.out)

    import torch

    from deepwide.devices import resolve_device
    from deepwide.errors import ConfigError
    from deepwide.models import load_model

    try:
        device = str(resolve_device(args.device))
    except ConfigError as exc:
        parser.error(f"{exc} --smoke (the CPU smoke mode)")
    sizes = SMOKE if args.smoke else Sizes()
    if device == "cpu":
        torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
        if not args.smoke:
            log.warning("--device cpu without --smoke runs the full sizes on the CPU: this takes hours")
    parts = set(args.parts.split(","))
    report = Report()
    env = environment(device, args.smoke, sizes)
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        root = Path(tmp)
        teacher = load_model(sizes.teacher, seed=0).to(device).eval()
        if "distill" in parts:
            run_part(report, "distill", lambda: check_distill(report, sizes, device, root / "distill", teacher))
            run_part(report, "sdpa", lambda: check_sdpa(report, teacher, device, sizes))
        if "ddp" in parts:
            nproc, backend = (torch.cuda.device_count(), "nccl") if device.startswith("cuda") else (2, "gloo")
            run_part(report, "ddp", lambda: check_ddp(report, sizes, "cuda" if device.startswith("cuda") else "cpu",
                                                     root / "ddp", max(nproc, 1), backend))
        if "extract" in parts:
            run_part(report, "extract", lambda: check_extract(report, sizes, device, root / "extract", teacher))
        if "probe" in parts:
            run_part(report, "probe", lambda: check_probe(report, sizes, device))
            run_part(report, "ctc", lambda: check_ctc(report, sizes, device))
    env["total_seconds"] = time.perf_counter() - t_start
    table = markdown(report, env)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu-check.json").write_text(
        json.dumps({**env, "rows": report.rows, "numbers": report.numbers, "failed": report.failed},
                   indent=2, default=str) + "\n")
    (args.out / "gpu-check.md").write_text(table)
    print("\n" + table)
    print(f"{'FAIL' if report.failed else 'PASS'}: {report.failed} of {len(report.rows)} rows failed "
          f"({env['total_seconds']:.0f} s); written to {args.out}")
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
