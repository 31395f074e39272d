"""Benchmark: deepwide's layerwise probe vs the scikit-learn search a user would write by hand.

For the ``phone`` task on one feature store, both sides get the same standardisation inputs
(the float32 features that ``deepwide.probing`` reads, one array per layer and split) and the
same penalty grid, and must pick the penalty on dev and score test:

* **hand-written**: for each layer, ``StandardScaler`` on train, then for each penalty
  ``LogisticRegression(C=1/(λ·n_train), solver="lbfgs", max_iter=1000)`` (default ``tol``),
  dev accuracy, keep the first best, test accuracy;
* **deepwide**: ``standardise`` + ``fit_softmax_path`` (all layers and penalties in one batched,
  warm-started, preconditioned solve) + test predictions.

It prints both wall times, the ratio, each layer's test accuracy and the largest difference
(target: ≥ 5× faster, every layer within 0.5 accuracy points), then the end-to-end
``probe_stores`` time (reading, weighted-sum probe and bootstrap included).

The store is synthetic unless ``--store`` is given: ``--layers`` (13) × ``--dim`` (256)
features, ``--phones`` (40) classes in 5-frame segments, speaker-disjoint splits (60/20/20 %
of speakers). Each layer carries phone signal growing with depth and speaker signal fading with
it, plus unit noise; by default (``--mixing``) the features are then mixed by a random matrix
with a decaying spectrum (anisotropic, correlated dimensions, as real hidden states are);
``--isotropic`` keeps the plain fake-store noise of ``tests/fakes.py``.

Usage::

    python benchmarks/probe.py                       # ~5–10 min on 2 CPU cores
    python benchmarks/probe.py --isotropic
    python benchmarks/probe.py --layers 5 --penalties 1e-1,1e-3   # quick look
    python benchmarks/probe.py --store path/to/store.zarr
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time
import warnings

import numpy as np
import torch
import xarray as xr

from deepwide.probing.run import ProbeConfig, probe_stores
from deepwide.probing.solver import DEFAULT_PENALTIES, fit_softmax_path, sklearn_c, standardise
from deepwide.probing.tasks import TASKS, PrepareOptions
from deepwide.store import open_store

log = logging.getLogger("benchmarks.probe")


def make_store(
    *,
    n_speakers: int = 60,
    utts_per_speaker: int = 8,
    frames_per_utt: int = 100,
    num_layers: int = 12,
    dim: int = 256,
    n_phones: int = 40,
    mixing: bool = True,
    seed: int = 0,
) -> xr.Dataset:
    """A feature-store Dataset (schema of ``tests/fakes.py``) at benchmark size.

    Returns:
        ``xr.Dataset`` with ``hidden (layer, frame, feat)`` float32 and the coords/attrs the
        ``phone`` task reads (``pooled`` is the per-utterance mean).
    """
    rng = np.random.default_rng(seed)
    n_utt = n_speakers * utts_per_speaker
    n_frames = n_utt * frames_per_utt
    phones = [f"p{i:02d}" for i in range(n_phones)]
    ph_vec = rng.normal(size=(n_phones, dim)).astype(np.float32)
    spk_vec = rng.normal(size=(n_speakers, dim)).astype(np.float32)
    seg = rng.integers(0, n_phones, size=n_frames // 5 + 1)
    phone = np.repeat(seg, 5)[:n_frames].astype(np.int16)
    utt_index = np.repeat(np.arange(n_utt), frames_per_utt)
    speaker_of_utt = np.repeat(np.arange(n_speakers), utts_per_speaker)
    spk_frame = speaker_of_utt[utt_index]
    hidden = np.empty((num_layers + 1, n_frames, dim), np.float32)
    for layer in range(num_layers + 1):
        depth = layer / num_layers
        x = rng.standard_normal((n_frames, dim), dtype=np.float32)
        x += (0.05 + 0.15 * depth) * ph_vec[phone] + 0.6 * (1 - depth) * spk_vec[spk_frame]
        if mixing:
            q, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
            scale = 0.2 + 4.0 * np.exp(-np.arange(dim) / (dim / 8))
            x = x @ (q * scale).astype(np.float32) + rng.normal(size=dim).astype(np.float32) * 2
        hidden[layer] = x
    pooled = hidden.reshape(num_layers + 1, n_utt, frames_per_utt, dim).mean(axis=2)
    n_tr, n_dev = int(0.6 * n_speakers), int(0.2 * n_speakers)
    split_of_spk = np.array(["train"] * n_tr + ["dev"] * n_dev + ["test"] * (n_speakers - n_tr - n_dev), dtype=object)
    speakers = np.array([f"spk{s:03d}" for s in speaker_of_utt], dtype=object)
    empty = np.full(n_utt, "", dtype=object)
    return xr.Dataset(
        {"hidden": (("layer", "frame", "feat"), hidden), "pooled": (("layer", "utt", "feat"), pooled)},
        coords={
            "layer": np.arange(num_layers + 1),
            "utt_id": ("utt", np.array([f"u{i:05d}" for i in range(n_utt)], dtype=object)),
            "speaker": ("utt", speakers),
            "split": ("utt", split_of_spk[speaker_of_utt]),
            "sid_split": ("utt", empty),
            "kind": ("utt", np.full(n_utt, "sentence", dtype=object)),
            "keyword": ("utt", empty),
            "intent": ("utt", empty),
            "n_frames": ("utt", np.full(n_utt, frames_per_utt, np.int64)),
            "n_stored": ("utt", np.full(n_utt, frames_per_utt, np.int64)),
            "frame_offset": ("utt", np.arange(n_utt, dtype=np.int64) * frames_per_utt),
            "utt_index": ("frame", utt_index.astype(np.int32)),
            "frame_index": ("frame", np.tile(np.arange(frames_per_utt, dtype=np.int32), n_utt)),
            "phone": ("frame", phone),
        },
        attrs={
            "model_id": "bench-" + ("mixed" if mixing else "isotropic"), "num_layers": num_layers, "dim": dim,
            "model_params": 0, "phone_set": json.dumps(phones), "label_sets": "{}", "trials": "[]",
            "frames_mode": "all",
        },
    )


def hand_written_search(feats: dict[str, np.ndarray], y: dict[str, np.ndarray], penalties: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """The scikit-learn loop: per layer and penalty, fit on train, pick on dev, score test.

    Returns:
        ``(test accuracy (L,), chosen penalty (L,))``.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    n_layers = feats["train"].shape[0]
    acc, chosen = np.zeros(n_layers), np.zeros(n_layers)
    for layer in range(n_layers):
        scaler = StandardScaler().fit(feats["train"][layer])
        xt, xd, xe = (scaler.transform(feats[s][layer]) for s in ("train", "dev", "test"))
        best = -1.0
        for lam in penalties:  # strongest first, as deepwide; first best wins ties
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                clf = LogisticRegression(C=sklearn_c(lam, len(y["train"])), max_iter=1000).fit(xt, y["train"])
            dev_acc = clf.score(xd, y["dev"])
            if dev_acc > best:
                best, chosen[layer], acc[layer] = dev_acc, lam, clf.score(xe, y["test"])
        log.info("sklearn layer %d: test %.4f at λ=%g", layer, acc[layer], chosen[layer])
    return acc, chosen


def deepwide_search(feats: dict[str, np.ndarray], y: dict[str, np.ndarray], penalties: list[float], n_classes: int) -> tuple[np.ndarray, np.ndarray, object]:
    """deepwide's solve of the same search. Returns ``(test accuracy (L,), penalty (L,), stats)``."""
    xt, xd, xe = (torch.from_numpy(feats[s].copy()) for s in ("train", "dev", "test"))
    standardise(xt, xd, xe)
    path = fit_softmax_path(xt, torch.from_numpy(y["train"]), n_classes, penalties,
                            x_dev=xd, y_dev=torch.from_numpy(y["dev"]))
    pred = path.logits(xe).argmax(dim=2).numpy()
    return (pred == y["test"][None]).mean(axis=1), path.best_penalty, path.stats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", help="probe this store instead of a synthetic one")
    ap.add_argument("--layers", type=int, default=12, help="transformer layers (L; L+1 probed)")
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--phones", type=int, default=40)
    ap.add_argument("--speakers", type=int, default=60)
    ap.add_argument("--frames-per-utt", type=int, default=100)
    ap.add_argument("--isotropic", action="store_true", help="plain fake-store noise (no mixing)")
    ap.add_argument("--penalties", default=",".join(str(p) for p in DEFAULT_PENALTIES))
    ap.add_argument("--max-train-frames", type=int, default=50_000)
    ap.add_argument("--skip-sklearn", action="store_true")
    ap.add_argument("--threads", type=int, default=0,
                    help="limit torch and BLAS (threadpoolctl) threads for both sides (0: leave as is)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.threads:
        from threadpoolctl import threadpool_limits

        torch.set_num_threads(args.threads)
        threadpool_limits(args.threads)
    penalties = sorted((float(p) for p in args.penalties.split(",")), reverse=True)

    t0 = time.perf_counter()
    if args.store:
        ds = open_store(args.store)
        source = args.store
    else:
        ds = make_store(n_speakers=args.speakers, frames_per_utt=args.frames_per_utt, num_layers=args.layers,
                        dim=args.dim, n_phones=args.phones, mixing=not args.isotropic, seed=args.seed)
        source = f"synthetic ({'isotropic' if args.isotropic else 'mixed, anisotropic'})"
    data = TASKS.get("phone").prepare(ds, PrepareOptions(max_train_frames=args.max_train_frames, seed=args.seed))
    n_layers = int(ds.sizes["layer"])
    feats: dict[str, np.ndarray] = {}
    for layer in range(n_layers):
        for s, arr in data.load_layer(ds, layer).items():
            feats.setdefault(s, np.empty((n_layers, *arr.shape), np.float32))[layer] = arr
    y = {"train": data.train.labels, "dev": data.dev.labels, "test": data.test.labels}
    print(f"store: {source}; {n_layers} layers × {feats['train'].shape[2]} dims; {len(data.classes)} classes; "
          f"train/dev/test frames {len(y['train'])}/{len(y['dev'])}/{len(y['test'])}; grid {penalties} "
          f"(prepared in {time.perf_counter() - t0:.1f} s)")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch threads "
          f"{torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f} (wall times on a shared machine vary; "
          f"with --threads 1, CPU time is the steadier measure)")

    t0, c0 = time.perf_counter(), time.process_time()
    dw_acc, dw_pen, stats = deepwide_search(feats, y, penalties, len(data.classes))
    t_dw, c_dw = time.perf_counter() - t0, time.process_time() - c0
    print(f"deepwide: {t_dw:.1f} s wall, {c_dw:.1f} s CPU ({stats.iterations} batched iterations, "
          f"{stats.evaluations} layer passes)")
    if not args.skip_sklearn:
        t0, c0 = time.perf_counter(), time.process_time()
        sk_acc, sk_pen = hand_written_search(feats, y, penalties)
        t_sk, c_sk = time.perf_counter() - t0, time.process_time() - c0
        diff = np.abs(sk_acc - dw_acc) * 100
        print(f"sklearn hand-written search: {t_sk:.1f} s wall, {c_sk:.1f} s CPU; deepwide: {t_dw:.1f} s wall, "
              f"{c_dw:.1f} s CPU; speed-up {t_sk / t_dw:.1f}× wall, {c_sk / c_dw:.1f}× CPU")
        print("layer  sklearn  deepwide  |diff| pts  λ sklearn  λ deepwide")
        for layer in range(n_layers):
            print(f"{layer:>5}  {sk_acc[layer]:.4f}   {dw_acc[layer]:.4f}    {diff[layer]:6.2f}     {sk_pen[layer]:7.0e}    {dw_pen[layer]:7.0e}")
        print(f"max |difference| {diff.max():.2f} accuracy points (target ≤ 0.5); speed-up {t_sk / t_dw:.1f}× wall, "
              f"{c_sk / c_dw:.1f}× CPU (target ≥ 5×)")

    t0 = time.perf_counter()
    probe_stores([ds], ["phone"], ProbeConfig(max_train_frames=args.max_train_frames, penalties=tuple(penalties), device="cpu"),
                 seed=args.seed)
    print(f"end-to-end probe_stores(phone) incl. reading, weighted-sum probe, bootstrap: {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
