"""Benchmark: a full 13 × 13 teacher-vs-student linear-CKA grid, deepwide vs the Gram route.

deepwide streams row chunks through ``LinearCKAAccumulator`` (feature space, float64,
XᵀX once per layer, one GEMM per chunk for all layer pairs; ≈ 169·n·d² multiply-adds).
The baseline is the Gram-matrix approach of common CKA packages, written in torch, float64,
at its best: each layer's centred n × n Gram is built once (26·n²·d) and model B's 13 Grams
are cached, so each pair costs one n²-long dot product (packages that rebuild both Grams
for every pair do 13× more Gram work than this).

The data are random, of realistic shape (n frames × 768 features, 13 layers per model,
neighbouring layers correlated, the student a noisy rotation of the teacher); nothing here
depends on speech, only on shapes.

Parts, each in a fresh process so that its peak memory (``ru_maxrss``) is its own:

1. ``compare`` (n = --gram-n): both routes on the same in-memory data; agreement (max |Δ|
   must be ≤ 1e-6) and times.
2. ``probe`` (n = --probe-n): the Gram route's two unit costs (one Gram build, one pair
   product), to project its full-grid time at larger n (both scale as n²). The full Gram
   grid at n = 20,000 needs 13 cached Grams of 3.2 GB each (39 GiB) or ~180 Gram builds,
   which does not fit a laptop.
3. ``stream`` (n = each of --stream-n): deepwide on chunks generated on the fly (the data
   never exist in memory at once); wall time, generation time and peak memory.

Usage:
    python benchmarks/similarity.py                 # ≈ 5–8 min on 2 cores
    python benchmarks/similarity.py --stream-n 20000 200000   # the full 200k-frame run
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from typing import Any

import numpy as np

log = logging.getLogger("benchmarks.similarity")

DIM = 768
LAYERS = 13


# --------------------------------------------------------------------------------------------
# data


class SyntheticPair:
    """Deterministic chunks of 13 teacher and 13 student layers, float32 ``(c, d)`` each.

    Teacher layers are a random walk (layer l = 0.9·layer l−1 + 0.45·noise); student layer m
    is a fixed signed permutation (an orthogonal map) of teacher layer m, times 0.6, plus
    noise, so the grid has a clear diagonal.
    """

    def __init__(self, dim: int = DIM, layers: int = LAYERS, seed: int = 0) -> None:
        self.dim, self.layers, self.seed = dim, layers, seed
        rng = np.random.default_rng([seed, 999])
        self.perms = [rng.permutation(dim) for _ in range(layers)]
        self.signs = [rng.choice([-1.0, 1.0], size=dim).astype(np.float32) for _ in range(layers)]

    def chunk(self, index: int, rows: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Chunk ``index`` of ``rows`` rows: (teacher layers, student layers)."""
        rng = np.random.default_rng([self.seed, index])
        teacher = [rng.standard_normal((rows, self.dim), dtype=np.float32)]
        for _ in range(1, self.layers):
            nxt = rng.standard_normal((rows, self.dim), dtype=np.float32)
            nxt *= 0.45
            nxt += 0.9 * teacher[-1]
            teacher.append(nxt)
        student = []
        for m in range(self.layers):
            s = rng.standard_normal((rows, self.dim), dtype=np.float32)
            s *= 0.8
            s += 0.6 * teacher[m][:, self.perms[m]] * self.signs[m]
            student.append(s)
        return teacher, student

    def full(self, n: int, chunk_rows: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """All n rows in memory (for the Gram route), identical to concatenated chunks."""
        parts = [
            self.chunk(i, min(chunk_rows, n - start))
            for i, start in enumerate(range(0, n, chunk_rows))
        ]
        return (
            [np.concatenate([p[0][layer] for p in parts]) for layer in range(self.layers)],
            [np.concatenate([p[1][layer] for p in parts]) for layer in range(self.layers)],
        )


# --------------------------------------------------------------------------------------------
# the two routes


def deepwide_grid(chunks: Any, dims: int, layers: int) -> np.ndarray:
    """Biased linear CKA grid via the streaming accumulator over an iterable of chunks."""
    from deepwide.analysis import LinearCKAAccumulator

    acc = LinearCKAAccumulator([dims] * layers, [dims] * layers)
    for chunk_a, chunk_b in chunks:
        acc.update(chunk_a, chunk_b)
    return acc.similarity(debiased=False)


def gram_grid(xs: list[np.ndarray], ys: list[np.ndarray]) -> tuple[np.ndarray, dict[str, float]]:
    """Biased linear CKA grid via centred n × n Grams in torch float64 (B's Grams cached)."""
    import torch

    def centred_gram(x: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(x).double()
        k = t @ t.T
        m = k.mean(dim=0, keepdim=True)  # K is symmetric: row means == column means
        k -= m
        k -= m.T
        k += m.mean()
        return k

    t0 = time.perf_counter()
    kb = [centred_gram(y) for y in ys]
    nb = [float(torch.linalg.vector_norm(k)) for k in kb]
    t_build = time.perf_counter() - t0
    t_pairs = 0.0
    grid = np.zeros((len(xs), len(ys)))
    for i, x in enumerate(xs):
        t1 = time.perf_counter()
        ka = centred_gram(x)
        na = float(torch.linalg.vector_norm(ka))
        t_build += time.perf_counter() - t1
        t2 = time.perf_counter()
        flat = ka.reshape(-1)
        for j, k in enumerate(kb):
            grid[i, j] = float(torch.dot(flat, k.reshape(-1))) / (na * nb[j])
        t_pairs += time.perf_counter() - t2
        del ka, flat
    return grid, {"gram_builds_s": t_build, "pair_products_s": t_pairs}


# --------------------------------------------------------------------------------------------
# parts (each runs in its own process)


def _peak_rss_mb() -> float:
    """Peak resident memory of this process's address space (VmHWM), in MiB.

    ``ru_maxrss`` is not used on Linux: it carries over the parent's peak through fork/exec.
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _warm_up() -> None:
    """Import and touch the libraries before any timing (imports are not part of a route)."""
    import scipy.linalg.blas  # noqa: F401  (deepwide's in-place GEMM)
    import torch

    import deepwide.analysis  # noqa: F401

    a = np.ones((64, 64))
    (torch.from_numpy(a) @ torch.from_numpy(a)).sum()


def part_compare(n: int, dim: int, layers: int, chunk_rows: int, seed: int) -> dict[str, Any]:
    _warm_up()
    data = SyntheticPair(dim, layers, seed)
    xs, ys = data.full(n, chunk_rows)
    t0, c0 = time.perf_counter(), time.process_time()
    chunks = (
        ([x[s : s + chunk_rows] for x in xs], [y[s : s + chunk_rows] for y in ys])
        for s in range(0, n, chunk_rows)
    )
    dw = deepwide_grid(chunks, dim, layers)
    t_dw, c_dw = time.perf_counter() - t0, time.process_time() - c0
    t1, c1 = time.perf_counter(), time.process_time()
    gr, parts = gram_grid(xs, ys)
    t_gram, c_gram = time.perf_counter() - t1, time.process_time() - c1
    return {
        "n": n,
        "deepwide_s": t_dw,
        "gram_s": t_gram,
        "deepwide_cpu_s": c_dw,
        "gram_cpu_s": c_gram,
        "load_avg_1min": os.getloadavg()[0],
        **parts,
        "max_abs_diff": float(np.abs(dw - gr).max()),
        "diag_mean": float(np.diag(dw).mean()),
        "offdiag_min": float(dw.min()),
        "peak_rss_mb": _peak_rss_mb(),
    }


def part_probe(n: int, dim: int, seed: int, repeats: int = 3) -> dict[str, Any]:
    import torch

    _warm_up()
    rng = np.random.default_rng(seed)
    x = torch.from_numpy(rng.standard_normal((n, dim), dtype=np.float32)).double()
    y = torch.from_numpy(rng.standard_normal((n, dim), dtype=np.float32)).double()
    builds = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        k = x @ x.T
        m = k.mean(dim=0, keepdim=True)
        k -= m
        k -= m.T
        k += m.mean()
        builds.append(time.perf_counter() - t0)
    l_ = y @ y.T
    pairs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        float(torch.dot(k.reshape(-1), l_.reshape(-1)))
        pairs.append(time.perf_counter() - t0)
    return {
        "n": n,
        "gram_build_s": float(np.median(builds)),
        "pair_product_s": float(np.median(pairs)),
        "load_avg_1min": os.getloadavg()[0],
        "peak_rss_mb": _peak_rss_mb(),
    }


def part_stream(n: int, dim: int, layers: int, chunk_rows: int, seed: int) -> dict[str, Any]:
    import scipy.linalg.blas  # noqa: F401

    import deepwide.analysis  # noqa: F401  (no torch here: its import would count as memory)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    data = SyntheticPair(dim, layers, seed)
    gen_s = 0.0

    def chunks() -> Any:
        nonlocal gen_s
        for i, start in enumerate(range(0, n, chunk_rows)):
            if i and i % 10 == 0:
                log.info(
                    "stream n=%d: %d rows after %.0f s, peak %.0f MiB",
                    n,
                    start,
                    time.perf_counter() - t0,
                    _peak_rss_mb(),
                )
            t = time.perf_counter()
            chunk = data.chunk(i, min(chunk_rows, n - start))
            gen_s += time.perf_counter() - t
            yield chunk

    t0, c0 = time.perf_counter(), time.process_time()  # t0 is read by chunks() too
    grid = deepwide_grid(chunks(), dim, layers)
    total, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {
        "n": n,
        "wall_s": total,
        "generate_s": gen_s,
        "deepwide_s": total - gen_s,
        "cpu_s": cpu,
        "load_avg_1min": os.getloadavg()[0],
        "diag_mean": float(np.diag(grid).mean()),
        "peak_rss_mb": _peak_rss_mb(),
    }


PARTS = {"compare": part_compare, "probe": part_probe, "stream": part_stream}


def run_part(name: str, **kwargs: Any) -> dict[str, Any]:
    """Run one part in a fresh (spawned) process and return its result."""
    log.info("running %s %s", name, kwargs)
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        result = pool.submit(PARTS[name], **kwargs).result()
    log.info("%s: %s", name, json.dumps(result))
    return result


# --------------------------------------------------------------------------------------------


def machine() -> str:
    """CPU, core count and library versions (torch's version without importing it)."""
    from importlib.metadata import version

    from deepwide.system import cpu_model

    cpu = cpu_model()
    return (
        f"{cpu}, {os.cpu_count()} logical cores, Python {platform.python_version()}, "
        f"numpy {np.__version__}, torch {version('torch')}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--gram-n", type=int, default=5000, help="n for the side-by-side run (default 5000)"
    )
    parser.add_argument("--probe-n", type=int, default=10000, help="n for the Gram unit-cost probe")
    parser.add_argument(
        "--stream-n",
        type=int,
        nargs="+",
        default=[20000, 50000],
        help="n values for the streamed deepwide runs (the target is 200000)",
    )
    parser.add_argument(
        "--target-n", type=int, nargs="+", default=[20000, 200000], help="n values to project to"
    )
    parser.add_argument("--dim", type=int, default=DIM)
    parser.add_argument("--layers", type=int, default=LAYERS)
    parser.add_argument("--chunk-rows", type=int, default=2048)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--parts",
        nargs="+",
        choices=list(PARTS),
        default=list(PARTS),
        help="which parts to run (default all)",
    )
    parser.add_argument(
        "--json", default=None, help="also write all measurements to this JSON file"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    d, L, c = args.dim, args.layers, args.chunk_rows
    print(f"machine: {machine()}")
    print(f"grid: {L} × {L} layers, d = {d}, float64 accumulation, chunks of {c} rows, random data")
    t_all = time.perf_counter()
    cmp_ = probe = None
    streams: list[dict[str, Any]] = []
    if "compare" in args.parts:
        cmp_ = run_part("compare", n=args.gram_n, dim=d, layers=L, chunk_rows=c, seed=args.seed)
    if "probe" in args.parts:
        probe = run_part("probe", n=args.probe_n, dim=d, seed=args.seed)
    if "stream" in args.parts:
        streams = [
            run_part("stream", n=n, dim=d, layers=L, chunk_rows=c, seed=args.seed)
            for n in args.stream_n
        ]

    ok = True
    if cmp_ is not None:
        ok = cmp_["max_abs_diff"] <= 1e-6
        print(f"\n[1] side by side at n = {cmp_['n']} (load average {cmp_['load_avg_1min']:.1f}):")
        print(
            f"    deepwide streaming     {cmp_['deepwide_s']:8.1f} s wall  {cmp_['deepwide_cpu_s']:8.1f} s CPU"
        )
        print(
            f"    Gram route (torch)     {cmp_['gram_s']:8.1f} s wall  {cmp_['gram_cpu_s']:8.1f} s CPU  "
            f"(Gram builds {cmp_['gram_builds_s']:.1f} s, pair products {cmp_['pair_products_s']:.1f} s)"
        )
        print(
            f"    ratio Gram/deepwide    {cmp_['gram_s'] / cmp_['deepwide_s']:8.2f} × wall "
            f"{cmp_['gram_cpu_s'] / cmp_['deepwide_cpu_s']:8.2f} × CPU"
        )
        print(
            f"    agreement max |Δ|      {cmp_['max_abs_diff']:.2e}  ({'OK' if ok else 'FAIL'}: ≤ 1e-6)"
        )
        print(
            f"    peak memory            {cmp_['peak_rss_mb'] / 1024:8.2f} GiB (both routes, data in memory)"
        )
    if probe is not None:
        print(
            f"\n[2] Gram unit costs at n = {probe['n']} (load {probe['load_avg_1min']:.1f}): one Gram "
            f"build {probe['gram_build_s']:.2f} s, one pair product {probe['pair_product_s']:.3f} s"
        )
    if streams:
        print("\n[3] deepwide streamed from generated chunks:")
        for s in streams:
            print(
                f"    n = {s['n']:>7}: {s['deepwide_s']:7.1f} s wall ({s['cpu_s']:.0f} s CPU incl. "
                f"generation; + {s['generate_s']:.1f} s generating data), peak memory "
                f"{s['peak_rss_mb'] / 1024:.2f} GiB, load {s['load_avg_1min']:.1f}"
            )
    if probe is not None and streams:
        dw_per_row = float(np.median([s["deepwide_s"] / s["n"] for s in streams]))
        build_per_n2 = probe["gram_build_s"] / probe["n"] ** 2
        pair_per_n2 = probe["pair_product_s"] / probe["n"] ** 2
        print(
            "\n[4] projection (Gram: 2·L·t_build + L²·t_pair ∝ n², from [2]; deepwide ∝ n, from [3]):"
        )
        for n in args.target_n:
            gram = (2 * L * build_per_n2 + L * L * pair_per_n2) * n * n
            measured = [s["deepwide_s"] for s in streams if s["n"] == n]
            dw = measured[0] if measured else dw_per_row * n
            cache_gib = L * n * n * 8 / 2**30
            print(
                f"    n = {n:>7}: Gram ≈ {gram:9.0f} s (needs {cache_gib:,.0f} GiB of cached Grams), "
                f"deepwide {dw:7.0f} s ({'measured' if measured else 'projected'}), "
                f"ratio ≈ {gram / dw:5.1f} ×"
            )
    print(f"\ntotal benchmark time {time.perf_counter() - t_all:.0f} s")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(
                {"machine": machine(), "compare": cmp_, "probe": probe, "stream": streams},
                fh,
                indent=2,
            )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
