"""Run probing tasks on feature stores and collect the results as one xarray Dataset.

``probe_stores(stores, tasks, config, nulls=…, seed=…)`` opens each store, prepares each task
(:mod:`deepwide.probing.tasks`), reads its features one layer at a time, fits

* the layerwise linear softmax probes — every layer and every penalty of the grid in one
  batched solve (:mod:`deepwide.probing.solver`): features standardised with training
  statistics, penalty chosen on dev accuracy, the dev-chosen *train* fit scored on test (no
  refit on train + dev);
* the SUPERB weighted-sum probe over all layers (:mod:`deepwide.probing.weighted`);
* for ``asv``: cosine scoring of pooled features (centred on the LDA training mean) and cosine
  scoring after an LDA fitted on training speakers outside the trial list; ``score`` is the EER
  after LDA, ``eer_cosine`` the EER without it;

and returns a Dataset with the layout of ``docs/results-schema.md`` (Probing), written by
:func:`write_results` as ``probe.nc`` + ``probe.csv``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr
from tqdm.auto import tqdm

from deepwide import __version__
from deepwide.config import atomic_write_netcdf, atomic_write_text, config_to_dict
from deepwide.errors import ConfigError, TaskError
from deepwide.probing.solver import DEFAULT_PENALTIES, fit_softmax_path, standardise
from deepwide.probing.stats import (
    DEFAULT_BOOT,
    bootstrap_eer_ci,
    bootstrap_mean_ci,
    equal_error_rate,
    macro_f1,
    majority_accuracy,
)
from deepwide.probing.tasks import TASKS, PrepareOptions, Task, TaskData, TrialData
from deepwide.probing.weighted import fit_weighted_sum, layer_norms

log = logging.getLogger(__name__)

NULL_PREFIX = "random:"


@dataclass(frozen=True)
class ProbeConfig:
    """Everything that changes a probing result (saved in the results' attrs).

    Attributes:
        penalties: L2 grid (mean-loss scale; see :mod:`deepwide.probing.solver`).
        max_train_frames: cap on training frames of frame-level tasks.
        max_eval_frames: cap on dev and on test frames (whole utterances).
        include_silence: keep silence frames in ``phone``.
        segment_frames: ``sid-frame`` sample = mean of this many consecutive frames.
        tol: solver gradient tolerance (as scikit-learn's ``tol``).
        max_iter: solver iterations per run (the penalty sweep and a refinement each get it).
        n_boot: bootstrap replicates.
        weighted_sum: also train the SUPERB weighted-sum probe.
        ws_steps, ws_batch, ws_lr: its Adam schedule.
        device: ``"auto"`` (CUDA when present), ``"cpu"`` or ``"cuda"``.
        max_batch_bytes: memory budget of one batched solve (layers are split to fit).
    """

    penalties: tuple[float, ...] = DEFAULT_PENALTIES
    max_train_frames: int = 50_000
    max_eval_frames: int = 50_000
    include_silence: bool = False
    segment_frames: int = 1
    tol: float = 1e-4
    max_iter: int = 500
    n_boot: int = DEFAULT_BOOT
    weighted_sum: bool = True
    ws_steps: int = 600
    ws_batch: int = 256
    ws_lr: float = 5e-3
    device: str = "auto"
    max_batch_bytes: int = 2 * 1024**3

    def __post_init__(self) -> None:
        if not self.penalties or any(p <= 0 for p in self.penalties):
            raise ValueError("penalties must be a non-empty tuple of positive numbers")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda, not {self.device!r}")
        if self.n_boot < 10:
            raise ValueError("n_boot must be at least 10")
        if self.max_train_frames < 1 or self.max_eval_frames < 1:
            raise ValueError("frame caps must be positive")

    def prepare_options(self, seed: int) -> PrepareOptions:
        """The sampling options for :meth:`Task.prepare`."""
        return PrepareOptions(self.max_train_frames, self.max_eval_frames, self.include_silence, self.segment_frames, seed)


@dataclass
class TaskResult:
    """One task on one model: per-layer arrays of length ``L + 1`` and scalars."""

    task: Task
    layers: np.ndarray  # model layer number of each entry below (stores may hold a subset)
    score: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    f1: np.ndarray
    penalty: np.ndarray
    n_train: np.ndarray
    n_test: np.ndarray
    majority: float
    eer_cosine: np.ndarray | None = None
    ws_weight: np.ndarray | None = None
    layer_norm: np.ndarray | None = None
    ws_score: float = float("nan")
    ws_ci: tuple[float, float] = (float("nan"), float("nan"))


@dataclass
class ModelEntry:
    """A store to probe and its place in the results."""

    ds: Any
    model_id: str
    path: str
    is_null: bool = False
    null_of: str = ""
    results: dict[str, TaskResult] = field(default_factory=dict)


# ----------------------------------------------------------------- store access
def resolve_device(name: str) -> str:
    """``"auto"`` → ``"cuda"`` when available else ``"cpu"``; ``"cuda"`` without CUDA is an error."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for but no CUDA device is available; use --device cpu")
    return name


def _num_layers(ds: Any) -> int:
    """``L`` of the model (a store may hold a subset of its layers)."""
    if "num_layers" in ds.attrs:
        return int(ds.attrs["num_layers"])
    return int(np.max(ds["layer"].values))


def _layer_numbers(ds: Any) -> np.ndarray:
    """``(n_stored_layers,)`` the model layer number of each stored layer position."""
    return np.asarray(ds["layer"].values, np.int64)


def _load_layers(data: TaskData, ds: Any, desc: str) -> dict[str, np.ndarray]:
    """``{"train"|"dev"|"test": (L+1, n, D) float32}``, read one layer at a time."""
    n_layers = int(ds.sizes["layer"])
    out: dict[str, np.ndarray] = {}
    for layer in tqdm(range(n_layers), desc=desc, unit="layer", leave=False, disable=None):
        block = data.load_layer(ds, layer)
        for name, arr in block.items():
            if name not in out:
                out[name] = np.empty((n_layers, *arr.shape), np.float32)
            out[name][layer] = arr
    return out


# ----------------------------------------------------------------- classification
def probe_classification(data: TaskData, ds: Any, config: ProbeConfig, seed: int = 0) -> TaskResult:
    """Layerwise linear probes (+ weighted-sum probe) for one classification task.

    Args:
        data: the prepared task.
        ds: the store.
        config: probe configuration.
        seed: seed for the weighted-sum probe and the bootstrap.

    Returns:
        A :class:`TaskResult` with per-layer arrays of length ``L + 1``.
    """
    device = resolve_device(config.device)
    feats = _load_layers(data, ds, f"{data.task.name}: reading")
    n_layers, _, dim = feats["train"].shape
    k = len(data.classes)
    y_tr, y_dv, y_te = data.train.labels, data.dev.labels, data.test.labels

    result = TaskResult(
        task=data.task, layers=_layer_numbers(ds),
        score=np.full(n_layers, np.nan), ci_low=np.full(n_layers, np.nan), ci_high=np.full(n_layers, np.nan),
        f1=np.full(n_layers, np.nan), penalty=np.full(n_layers, np.nan),
        n_train=np.full(n_layers, len(y_tr), np.int64), n_test=np.full(n_layers, len(y_te), np.int64),
        majority=majority_accuracy(y_tr, y_te),
    )

    if config.weighted_sum:
        result.layer_norm = layer_norms(feats["train"])
        ws = fit_weighted_sum(
            feats["train"], y_tr, k, x_dev=feats["dev"], y_dev=y_dv,
            steps=config.ws_steps, batch_size=config.ws_batch, lr=config.ws_lr, seed=seed, device=device,
        )
        pred = ws.logits(feats["test"]).argmax(dim=1).numpy()
        correct = (pred == y_te).astype(np.float64)
        result.ws_weight = ws.weights
        result.ws_score = float(correct.mean())
        result.ws_ci = bootstrap_mean_ci(correct, data.test.groups, n_boot=config.n_boot, seed=seed)

    per_layer = (len(y_tr) + len(y_dv) + len(y_te)) * dim * 4 * 2 + dim * dim * 8
    chunk = max(1, int(config.max_batch_bytes // max(per_layer, 1)))
    correct_all = np.zeros((len(y_te), n_layers))
    for start in range(0, n_layers, chunk):
        sl = slice(start, min(n_layers, start + chunk))
        xt, xd, xe = (torch.from_numpy(feats[s][sl]).to(device, copy=True) for s in ("train", "dev", "test"))
        standardise(xt, xd, xe)
        path = fit_softmax_path(
            xt, torch.from_numpy(y_tr), k, config.penalties,
            x_dev=xd, y_dev=torch.from_numpy(y_dv), tol=config.tol, max_iter=config.max_iter,
        )
        if path.chosen_max_iter.any():
            layers = ", ".join(str(n) for n in result.layers[sl][path.chosen_max_iter])
            log.warning("%s · %s: the chosen fit of layer(s) %s stopped at max_iter=%d before tol=%g "
                        "(%d (layer, penalty) fits in all); raise --max-iter to be sure of those layers",
                        ds.attrs.get("model_id", "?"), data.task.name, layers, config.max_iter, config.tol,
                        path.stats.max_iter_hits)
        elif path.stats.max_iter_hits:
            log.info("%s: %d (layer, penalty) fits stopped at max_iter=%d, none of them a chosen one",
                     data.task.name, path.stats.max_iter_hits, config.max_iter)
        with torch.no_grad():
            pred = path.logits(xe).argmax(dim=2).cpu().numpy()  # (B, n_test)
        result.penalty[sl] = path.best_penalty
        correct_all[:, sl] = (pred == y_te[None, :]).T
        for j, layer in enumerate(range(sl.start, sl.stop)):
            result.f1[layer] = macro_f1(y_te, pred[j])
        del xt, xd, xe
    result.score = correct_all.mean(axis=0) if len(y_te) else result.score
    lo, hi = bootstrap_mean_ci(correct_all, data.test.groups, n_boot=config.n_boot, seed=seed)
    result.ci_low, result.ci_high = np.asarray(lo), np.asarray(hi)
    return result


# ----------------------------------------------------------------- verification
def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    na = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.einsum("ij,ij->i", a, b) / np.maximum(na, 1e-12)


def probe_asv(data: TrialData, ds: Any, config: ProbeConfig, seed: int = 0) -> TaskResult:
    """EER per layer: cosine scoring of pooled features, and after an LDA back-end.

    The LDA (scikit-learn, eigen solver with Ledoit–Wolf shrinkage, on features standardised
    with the LDA training statistics) is fitted on ``data.lda_utts``: utterances of training
    speakers that appear in no trial. Plain cosine scoring centres on the same training mean.

    Returns:
        A :class:`TaskResult` whose ``score`` is the EER after LDA and ``eer_cosine`` the EER
        of plain cosine scoring; CIs resample utterances of the trial list.
    """
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    n_layers = int(ds.sizes["layer"])
    nan = np.full(n_layers, np.nan)
    result = TaskResult(
        task=data.task, layers=_layer_numbers(ds), score=nan.copy(), ci_low=nan.copy(), ci_high=nan.copy(), f1=nan.copy(),
        penalty=nan.copy(), n_train=np.full(n_layers, data.lda_utts.size, np.int64),
        n_test=np.full(n_layers, data.target.size, np.int64), majority=0.5, eer_cosine=nan.copy(),
    )
    for layer in tqdm(range(n_layers), desc="asv", unit="layer", leave=False, disable=None):
        x = data.load_layer(ds, layer).astype(np.float64)
        train = x[data.lda_utts]
        mu, sd = train.mean(axis=0), train.std(axis=0) + 1e-8
        z = (x - mu) / sd
        result.eer_cosine[layer] = equal_error_rate(_cosine(z[data.utt_a], z[data.utt_b]), data.target)  # type: ignore[index]
        lda = LinearDiscriminantAnalysis(solver="eigen", shrinkage="auto").fit(z[data.lda_utts], data.lda_speakers)
        p = lda.transform(z)
        scores = _cosine(p[data.utt_a], p[data.utt_b])
        result.score[layer] = equal_error_rate(scores, data.target)
        result.ci_low[layer], result.ci_high[layer] = bootstrap_eer_ci(
            scores, data.target, data.utt_a, data.utt_b, n_boot=config.n_boot, seed=seed
        )
    return result


# ----------------------------------------------------------------- several stores
def _entries(stores: Sequence[Any], nulls: Sequence[Any]) -> list[ModelEntry]:
    from deepwide.store import open_store  # validates schema and completion (one-line StoreError)

    def load(s: Any) -> tuple[Any, str]:
        if isinstance(s, xr.Dataset):
            return s, str(s.encoding.get("source", "<in memory>"))
        return open_store(s), str(s)

    entries: list[ModelEntry] = []
    for s in stores:
        ds, path = load(s)
        mid = str(ds.attrs.get("model_id", Path(path).stem))
        is_null = mid.startswith(NULL_PREFIX)
        entries.append(ModelEntry(ds, mid, path, is_null, mid[len(NULL_PREFIX):] if is_null else ""))
    main_ids = [e.model_id for e in entries]
    for i, s in enumerate(nulls):
        ds, path = load(s)
        mid = str(ds.attrs.get("model_id", Path(path).stem))
        if mid.startswith(NULL_PREFIX):
            twin = mid[len(NULL_PREFIX):]
        elif len(nulls) == len(stores):
            twin = main_ids[i]
        elif len(stores) == 1:
            twin = main_ids[0]
        else:
            twin = ""
        if not mid.startswith(NULL_PREFIX):
            mid = NULL_PREFIX + (twin or mid)
        entries.append(ModelEntry(ds, mid, path, True, twin))
    seen: dict[str, str] = {}
    for e in entries:
        if e.model_id in seen:
            raise ConfigError(
                f"stores {seen[e.model_id]} and {e.path} both hold model {e.model_id!r}; probe one of them per run"
            )
        seen[e.model_id] = e.path
    return entries


def probe_stores(
    stores: Sequence[str | Path | xr.Dataset],
    tasks: Sequence[str],
    config: ProbeConfig | None = None,
    *,
    nulls: Sequence[str | Path | xr.Dataset] = (),
    seed: int = 0,
    skip_unservable: bool = False,
) -> xr.Dataset:
    """Probe every task on every store (and null store) and collect the results.

    Args:
        stores: store paths (or opened datasets), one per model.
        tasks: task names (see :data:`deepwide.probing.tasks.TASKS`).
        config: probe configuration (defaults when None).
        nulls: stores of ``random:`` twins; each becomes its own model entry with
            ``is_null=True`` and ``null_of`` = the model it is the twin of (from its
            ``random:`` id, else paired by position, else the single ``--store``).
        seed: seed of every random choice (subsamples, weighted-sum probe, bootstrap).
        skip_unservable: skip (with a warning) tasks a store cannot serve instead of raising.

    Returns:
        The results Dataset (dims ``model, task, layer``; see ``docs/results-schema.md``).

    Raises:
        TaskError: a store cannot serve a task (unless ``skip_unservable``).
    """
    config = config or ProbeConfig()
    task_objs = [TASKS.get(t) for t in tasks]
    entries = _entries(stores, nulls)
    for entry in entries:
        for task in task_objs:
            try:
                data = task.prepare(entry.ds, config.prepare_options(seed))
            except TaskError as exc:
                if not skip_unservable:
                    raise
                log.warning("%s: skipping %s (%s)", entry.model_id, task.name, exc)
                continue
            log.info("%s: probing %s", entry.model_id, task.name)
            if isinstance(data, TrialData):
                entry.results[task.name] = probe_asv(data, entry.ds, config, seed)
            else:
                entry.results[task.name] = probe_classification(data, entry.ds, config, seed)
    if skip_unservable:
        task_objs = [t for t in task_objs if any(t.name in e.results for e in entries)]
        if not task_objs:
            raise TaskError(f"none of the tasks {', '.join(tasks)} can be served by the given stores")
    return results_dataset(entries, task_objs, config, seed)


def results_dataset(entries: Sequence[ModelEntry], tasks: Sequence[Task], config: ProbeConfig, seed: int) -> xr.Dataset:
    """Assemble per-model task results into the schema's Dataset."""
    from deepwide.store import corpus_ids

    n_models, n_tasks = len(entries), len(tasks)
    n_layer = max(_num_layers(e.ds) for e in entries) + 1 if entries else 0
    shape = (n_models, n_tasks, n_layer)

    def full(fill: float = np.nan, dtype: Any = np.float64, s: tuple[int, ...] = shape) -> np.ndarray:
        return np.full(s, fill, dtype)

    v = {name: full() for name in ("score", "ci_low", "ci_high", "f1", "penalty", "eer_cosine", "ws_weight", "layer_norm")}
    n_train, n_test = full(0, np.int64), full(0, np.int64)
    scal = {name: full(s=(n_models, n_tasks)) for name in ("majority", "ws_score", "ws_ci_low", "ws_ci_high")}
    for m, e in enumerate(entries):
        for t, task in enumerate(tasks):
            r = e.results.get(task.name)
            if r is None:
                continue
            nl = r.layers
            for name in ("score", "ci_low", "ci_high", "f1", "penalty"):
                v[name][m, t, nl] = getattr(r, name)
            n_train[m, t, nl] = r.n_train
            n_test[m, t, nl] = r.n_test
            if r.eer_cosine is not None:
                v["eer_cosine"][m, t, nl] = r.eer_cosine
            if r.ws_weight is not None:
                v["ws_weight"][m, t, nl] = r.ws_weight
                v["layer_norm"][m, t, nl] = r.layer_norm
            scal["majority"][m, t] = r.majority
            scal["ws_score"][m, t] = r.ws_score
            scal["ws_ci_low"][m, t], scal["ws_ci_high"][m, t] = r.ws_ci
    dims3, dims2 = ("model", "task", "layer"), ("model", "task")
    data_vars: dict[str, Any] = {name: (dims3, arr) for name, arr in v.items()}
    data_vars.update({"n_train": (dims3, n_train), "n_test": (dims3, n_test)})
    data_vars.update({name: (dims2, arr) for name, arr in scal.items()})
    data_vars.update(
        num_layers=("model", np.array([_num_layers(e.ds) for e in entries], np.int64)),
        dim=("model", np.array([int(e.ds.attrs.get("dim", e.ds.sizes.get("feat", 0))) for e in entries], np.int64)),
        params=("model", np.array([int(e.ds.attrs.get("model_params", 0)) for e in entries], np.int64)),
        is_null=("model", np.array([e.is_null for e in entries], bool)),
        null_of=("model", np.array([e.null_of for e in entries], dtype=object)),
        metric=("task", np.array([t.metric for t in tasks], dtype=object)),
        higher_is_better=("task", np.array([t.higher_is_better for t in tasks], bool)),
        level=("task", np.array([t.level for t in tasks], dtype=object)),
        kind=("task", np.array([t.kind for t in tasks], dtype=object)),
    )
    ds = xr.Dataset(
        data_vars,
        coords={
            "model": np.array([e.model_id for e in entries], dtype=object),
            "task": np.array([t.name for t in tasks], dtype=object),
            "layer": np.arange(n_layer),
        },
        attrs={
            "corpus_id": corpus_ids([e.ds for e in entries]),
            "seed": int(seed),
            "deepwide_version": __version__,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "config": json.dumps(config_to_dict(config), sort_keys=True),
            "stores": json.dumps({e.model_id: e.path for e in entries}, sort_keys=True),
        },
    )
    ds["score"].attrs["description"] = "test metric (fraction); asv: EER after LDA (lower is better)"
    ds["eer_cosine"].attrs["description"] = "asv only: EER of plain cosine scoring (centred); NaN elsewhere"
    return ds


# ----------------------------------------------------------------- output
def write_results(results: xr.Dataset, out_dir: str | Path, name: str = "probe") -> tuple[Path, Path]:
    """Write ``<name>.nc`` (NetCDF4) and ``<name>.csv`` atomically under ``out_dir``.

    Returns:
        The two paths.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    nc_path, csv_path = out / f"{name}.nc", out / f"{name}.csv"
    atomic_write_netcdf(nc_path, results)
    atomic_write_text(csv_path, results.to_dataframe().to_csv())
    return nc_path, csv_path


def format_table(results: xr.Dataset) -> str:
    """A per-layer text table for every model × task, the best layer marked with ``*``."""
    lines: list[str] = []
    for model in results["model"].values:
        r_m = results.sel(model=model)
        n_layers = int(r_m["num_layers"])
        null = f" (null of {r_m['null_of'].item()})" if bool(r_m["is_null"]) else ""
        for task in results["task"].values:
            r = r_m.sel(task=task)
            score = r["score"].values[: n_layers + 1]
            if np.all(np.isnan(score)):
                continue
            hib = bool(r["higher_is_better"])
            best = int(np.nanargmax(score) if hib else np.nanargmin(score))
            metric = str(r["metric"].item())
            shown = [i for i in range(n_layers + 1) if np.isfinite(score[i])]
            lines.append(f"{model}{null} · {task} ({metric}, {r['level'].item()}; "
                         f"n_train {int(r['n_train'][shown[0]])}, n_test {int(r['n_test'][shown[0]])}; "
                         f"{'chance' if metric == 'eer' else 'majority'} {float(r['majority']):.3f})")
            extra = "eer_cos" if metric == "eer" else "f1"
            lines.append(f"  layer  {metric:>8}  95% CI            {extra:>7}  penalty  ws_weight  norm")
            for layer in shown:
                f1 = float(r["eer_cosine"][layer] if metric == "eer" else r["f1"][layer])
                lines.append(
                    f"  {layer:>5}  {score[layer]:8.3f}  [{float(r['ci_low'][layer]):.3f}, {float(r['ci_high'][layer]):.3f}]"
                    f"  {f1:7.3f}  {float(r['penalty'][layer]):7.0e}  {float(r['ws_weight'][layer]):9.3f}"
                    f"  {float(r['layer_norm'][layer]):6.1f}{'  *' if layer == best else ''}"
                )
            if np.isfinite(float(r["ws_score"])):
                lines.append(
                    f"  weighted sum: {float(r['ws_score']):.3f} "
                    f"[{float(r['ws_ci_low']):.3f}, {float(r['ws_ci_high']):.3f}]"
                )
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"
