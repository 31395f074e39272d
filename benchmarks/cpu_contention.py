"""Step rates on 2 shared cores: deepwide's CPU paths idle and beside one competing job.

On a machine whose cores another job also uses, torch's OpenMP workers spin at every barrier
while the thread they wait for is descheduled; a small model's step (thousands of small
parallel regions) then slows down far more than the fair 2x. On a machine that is busy when it
starts, the deepwide command sets ``OMP_WAIT_POLICY=PASSIVE`` before torch starts
(``deepwide.system.prefer_sleeping_openmp_threads``). This script measures what PASSIVE (and a
short GOMP spin) buys and costs, idle and loaded, against torch as it ships (the baseline a
user gets from a hand-written loop, or from deepwide on free cores), in one run:

* ``distill``: steps/s of the embedded study's slowest student (12 × 128, layer-to-layer, from
  the bundled tiny-teacher run online) through deepwide's own trainer on a small synth corpus;
* ``pretrain``: audio seconds per second of the tiny-teacher's pre-training (deepwide's own
  recipe, ``configs/tiny-teacher.toml``, shortened; timed from its first step);
* ``probe``: seconds of one batched softmax-probe path (13 layers × 20,000 frames × 128 dims,
  40 classes, the phone probe's shape in the embedded study), as rate = 1/seconds.

Each workload runs in a fresh process (the wait policy is read once, when libgomp starts),
first alone, then beside one competing job: a 2-thread torch matrix loop with torch's default
OpenMP settings (what "another job on the machine" usually is). It prints, per workload and
policy, the idle rate, the loaded rate, and loaded/idle (the bar: >= 0.40).

Usage: ``python benchmarks/cpu_contention.py [--work DIR] [--seconds 40] [--only distill]``.
Run it on an otherwise idle machine; it takes ~10 minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

WORKLOADS = ("distill", "pretrain", "probe")
#: name -> environment of the worker; the baseline (torch as it ships) last. The deepwide command
#: chooses PASSIVE when the machine is busy when it starts, torch's default otherwise.
POLICIES = {
    "PASSIVE": {"DEEPWIDE_OPENMP_DEFAULTS": "1", "OMP_WAIT_POLICY": "PASSIVE"},
    "spin 10k (GOMP)": {"DEEPWIDE_OPENMP_DEFAULTS": "1", "GOMP_SPINCOUNT": "10000"},
    "torch default": {"DEEPWIDE_OPENMP_DEFAULTS": "1"},
}

COMPETITOR = """
import time, torch
torch.set_num_threads(2)
a = torch.randn(32, 192, 192)
end = time.time() + {seconds}
while time.time() < end:
    torch.bmm(a, a)
"""


# ------------------------------------------------------------------------------ workers
def _worker_distill(work: Path, seconds: float) -> float:
    from deepwide.distill import make_config, train_student
    from deepwide.distill.trainer import read_metrics
    from deepwide.models import resolve_config
    from deepwide.study import StudyConfig, plan_students

    study = StudyConfig()
    st = next(s for s in plan_students(study, resolve_config(study.teacher)) if s.name.endswith("-l2l") and s.depth == 12)
    steps = max(8, int(seconds * 2))
    cfg = make_config(teacher=study.teacher, corpus=str(work / "corpus"), steps=steps, objective=st.objective,
                      depth=st.depth, width=st.width, ffn=st.ffn, heads=st.heads, targets=st.targets,
                      batch_seconds=study.distill_batch_seconds, max_crop_seconds=study.distill_max_crop_seconds,
                      lr=study.distill_lr, seed=0, device="cpu", checkpoint_every=10**6, log_every=2)
    out = Path(tempfile.mkdtemp(dir=work, prefix="distill-"))
    train_student(cfg, out, progress=False)  # steps sized to take about ``seconds`` on free cores
    rows = read_metrics(out)[1:]  # drop the first window (warm-up)
    return sum(r["steps_per_s"] for r in rows) / len(rows)


def _worker_pretrain(work: Path, seconds: float) -> float:
    import torch

    from deepwide.config import config_from_dict, load_toml
    from deepwide.corpora import resolve_corpus
    from deepwide.models.pretrain import PretrainConfig, pretrain_teacher

    recipe = config_from_dict(PretrainConfig, load_toml(Path(__file__).parents[1] / "configs" / "tiny-teacher.toml"))
    cfg = replace(recipe, steps=(max(6, int(seconds)),), eval_every=10**6)
    out = Path(tempfile.mkdtemp(dir=work, prefix="pretrain-"))
    pretrain_teacher(resolve_corpus(str(work / "corpus")), out, cfg, seed=0, threads=torch.get_num_threads())
    rows = [json.loads(line) for line in (out / "pretrain_log.jsonl").read_text().splitlines() if line.strip()]
    return [r for r in rows if "audio_s_per_s" in r][-1]["audio_s_per_s"]  # audio seconds per second


def _worker_probe(work: Path, seconds: float) -> float:
    import torch

    from deepwide.probing.solver import fit_softmax_path, standardise

    g = torch.Generator().manual_seed(0)
    b, n, d, k = 13, 20_000, 128, 40
    y = torch.randint(0, k, (n,), generator=g)
    means = torch.randn(k, d, generator=g)
    x = means[y][None].repeat(b, 1, 1) + 3.0 * torch.randn(b, n, d, generator=g)
    xd = means[y[:4000]][None].repeat(b, 1, 1) + 3.0 * torch.randn(b, 4000, d, generator=g)
    standardise(x, xd)
    t0 = time.perf_counter()
    runs = 0
    while runs == 0 or time.perf_counter() - t0 < seconds:
        fit_softmax_path(x, y, k, x_dev=xd, y_dev=y[:4000])
        runs += 1
    return runs / (time.perf_counter() - t0)


# ------------------------------------------------------------------------------ driver
def _run_worker(name: str, env_extra: dict[str, str], work: Path, seconds: float) -> float:
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "DEEPWIDE_OPENMP_DEFAULTS")}
    env.update(env_extra)
    cmd = [sys.executable, __file__, "--worker", name, "--work", str(work), "--seconds", str(seconds)]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        sys.exit(f"worker {name} failed:\n{res.stderr[-3000:]}")
    return float(res.stdout.strip().splitlines()[-1])


def _prepare(work: Path) -> None:
    corpus = work / "corpus"
    if not (corpus / "manifest.jsonl").exists():
        subprocess.run([sys.executable, "-m", "deepwide", "corpus", "synth", "--out", str(corpus),
                        "--speakers", "10", "--utts-per-speaker", "12"], check=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (a temporary one by default)")
    ap.add_argument("--seconds", type=float, default=40.0, help="timed seconds per measurement")
    ap.add_argument("--only", choices=WORKLOADS, action="append", help="run only these workloads")
    ap.add_argument("--worker", choices=WORKLOADS, help=argparse.SUPPRESS)
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="deepwide-contention-"))
    work.mkdir(parents=True, exist_ok=True)
    if args.worker:
        from deepwide.system import prefer_sleeping_openmp_threads

        prefer_sleeping_openmp_threads()  # as the deepwide command does, before torch starts
        rate = {"distill": _worker_distill, "pretrain": _worker_pretrain, "probe": _worker_probe}[args.worker](
            work, args.seconds)
        print(f"{rate:.6g}")
        return
    _prepare(work)
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
          f"{args.seconds:.0f} s per measurement; competitor: a 2-thread torch bmm loop")
    print(f"{'workload':<9} {'policy':<20} {'idle /s':>9} {'loaded /s':>10} {'loaded/idle':>12}  load avg before")
    results = []
    for name in args.only or WORKLOADS:
        for policy, env_extra in POLICIES.items():
            load_before = os.getloadavg()[0]
            idle = _run_worker(name, env_extra, work, args.seconds)
            comp_env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
            competitor = subprocess.Popen([sys.executable, "-c", COMPETITOR.format(seconds=args.seconds * 6 + 120)],
                                          env=comp_env)
            try:
                time.sleep(2.0)
                loaded = _run_worker(name, env_extra, work, args.seconds)
            finally:
                competitor.kill()
                competitor.wait()
            results.append({"workload": name, "policy": policy, "idle": idle, "loaded": loaded})
            print(f"{name:<9} {policy:<20} {idle:>9.3f} {loaded:>10.3f} {loaded / idle:>12.2f}  {load_before:.2f}",
                  flush=True)
    for name in args.only or WORKLOADS:
        rows = [r for r in results if r["workload"] == name]
        ours, base = rows[0], rows[-1]
        print(f"{name}: under load PASSIVE runs {ours['loaded'] / base['loaded']:.2f}x the torch-default rate "
              f"(idle: {ours['idle'] / base['idle']:.2f}x)")


if __name__ == "__main__":
    main()
