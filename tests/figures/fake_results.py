"""A results folder built in code, exactly per docs/results-schema.md, for figure/report tests.

One 12-layer teacher, three students (deep-narrow 12×128 L2L, shallow-wide 3×256 PredLayer,
DistilHuBERT-shaped 2×256 PredLayer) and a random twin of each; tasks phone/ks/ic (content)
and sid/asv (speaker). Planted structure: content scores grow with relative depth and are
higher for the deep student, speaker scores fall with depth and are higher for the wide
students, except ASV, where the deep student has the lower EER (so one finding contradicts the
paper's claim). Random twins sit near the majority class. ``with_pr=True`` adds a SUPERB PR
task (``pr``: content, metric ``per``, lower is better; PER falls with depth, lower for the deep
student; random twins near 1.0, the PER of an empty output).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

TEACHER = "tiny-teacher"
DEEP = "student-12x128-l2l"
WIDE = "student-3x256-predlayer"
DISTIL = "student-2x256-predlayer"

#: model id -> (num_layers, dim, params, objective)
TRAINED: dict[str, tuple[int, int, int, str]] = {
    TEACHER: (12, 256, 9_612_544, ""),
    DEEP: (12, 128, 2_412_160, "l2l"),
    WIDE: (3, 256, 2_621_696, "predlayer"),
    DISTIL: (2, 256, 1_832_192, "predlayer"),
}
#: task -> (kind, metric, level, majority)
TASKS: dict[str, tuple[str, str, str, float]] = {
    "phone": ("content", "accuracy", "frame", 0.14),
    "ks": ("content", "accuracy", "utterance", 0.25),
    "ic": ("content", "accuracy", "utterance", 0.34),
    "sid": ("speaker", "accuracy", "utterance", 1 / 12),
    "asv": ("speaker", "eer", "utterance", float("nan")),
}
#: (model, kind) -> amplitude of the planted signal
_AMP = {
    (TEACHER, "content"): 0.62,
    (TEACHER, "speaker"): 0.55,
    (DEEP, "content"): 0.50,
    (DEEP, "speaker"): 0.36,
    (WIDE, "content"): 0.36,
    (WIDE, "speaker"): 0.52,
    (DISTIL, "content"): 0.30,
    (DISTIL, "speaker"): 0.47,
}
_ASV_EER = {TEACHER: 0.08, DEEP: 0.11, WIDE: 0.16, DISTIL: 0.18}
#: the optional SUPERB PR task (``with_pr``): task -> (kind, metric, level, majority)
PR_TASK: dict[str, tuple[str, str, str, float]] = {"pr": ("content", "per", "sequence", 1.0)}
#: best (lowest) PER of each trained model on ``pr``
_PR_PER = {TEACHER: 0.21, DEEP: 0.27, WIDE: 0.38, DISTIL: 0.42}


@dataclass
class FakeResults:
    """What was written: the folder, the in-memory datasets, and the model ids."""

    root: Path
    probe: xr.Dataset
    labels: xr.Dataset
    spectrum: xr.Dataset
    similarities: list[xr.Dataset]
    distill: pd.DataFrame


def model_ids() -> list[str]:
    """Trained models followed by their random twins."""
    return list(TRAINED) + [f"random:{m}" for m in TRAINED]


def _facts() -> dict[str, np.ndarray]:
    ids = model_ids()
    base = [m.removeprefix("random:") for m in ids]
    return {
        "num_layers": np.array([TRAINED[b][0] for b in base], np.int32),
        "dim": np.array([TRAINED[b][1] for b in base], np.int32),
        "params": np.array([TRAINED[b][2] for b in base], np.int64),
        "is_null": np.array([m.startswith("random:") for m in ids]),
        "null_of": np.array(
            [b if m.startswith("random:") else "" for m, b in zip(ids, base, strict=True)],
            dtype=object,
        ),
    }


def _with_facts(ds: xr.Dataset) -> xr.Dataset:
    return ds.assign({k: ("model", v) for k, v in _facts().items()})


def build_probe(seed: int = 0, with_pr: bool = False) -> xr.Dataset:
    """The ``probe.nc`` dataset: dims (model, task, layer), layer 0..12 (+ ``pr`` if asked)."""
    rng = np.random.default_rng(seed)
    all_tasks = {**TASKS, **(PR_TASK if with_pr else {})}
    ids, tasks, layers = model_ids(), list(all_tasks), np.arange(13)
    shape = (len(ids), len(tasks), len(layers))
    score = np.full(shape, np.nan)
    lo, hi, f1 = (np.full(shape, np.nan) for _ in range(3))
    wsw, norm = np.full(shape, np.nan), np.full(shape, np.nan)
    ws = np.full(shape[:2], np.nan)
    ws_lo, ws_hi = np.full(shape[:2], np.nan), np.full(shape[:2], np.nan)
    n_test = {"phone": 6000, "ks": 400, "ic": 360, "sid": 288, "asv": 500, "pr": 200}
    for i, m in enumerate(ids):
        base = m.removeprefix("random:")
        null = m != base
        L = TRAINED[base][0]
        rel = np.arange(L + 1) / L
        for j, t in enumerate(tasks):
            kind, metric, _, maj = all_tasks[t]
            if metric == "eer":
                best = 0.45 if null else _ASV_EER[base]
                s = best + (0.5 - best) * 0.6 * rel + rng.normal(0, 0.003, L + 1)
            elif metric == "per":
                best = 0.95 if null else _PR_PER[base]
                s = best + (0.98 - best) * (1 - rel) ** 2 + rng.normal(0, 0.003, L + 1)
            else:
                amp = 0.03 if null else _AMP[(base, kind)]
                shape_ = (
                    np.exp(-((rel - 0.75) ** 2) / 0.15) if kind == "content" else (1 - 0.7 * rel)
                )
                s = maj + amp * shape_ + rng.normal(0, 0.004, L + 1)
            s = np.clip(s, 0.0, 1.0)
            half = 1.96 * np.sqrt(s * (1 - s) / n_test[t])
            score[i, j, : L + 1] = s
            lo[i, j, : L + 1] = s - half * 1.05
            hi[i, j, : L + 1] = s + half * 0.95
            f1[i, j, : L + 1] = s - 0.03 if metric == "accuracy" else np.nan
            good = s if metric == "accuracy" else -s
            logits = 12 * (good - good.max())
            w = np.exp(logits) / np.exp(logits).sum()
            wsw[i, j, : L + 1] = w
            norm[i, j, : L + 1] = 5.0 * (1 + 2 * rel) * (1.0 if not null else 0.6)
            wbest = s.max() if metric == "accuracy" else s.min()
            ws[i, j] = wbest + (0.012 if metric == "accuracy" else -0.004)
            h = 1.96 * np.sqrt(ws[i, j] * (1 - ws[i, j]) / n_test[t])
            ws_lo[i, j], ws_hi[i, j] = ws[i, j] - h, ws[i, j] + h * 0.9
    dims3, dims2 = ("model", "task", "layer"), ("model", "task")
    majority = np.array([[all_tasks[t][3] for t in tasks] for _ in ids])
    ds = xr.Dataset(
        {
            "score": (dims3, score),
            "ci_low": (dims3, lo),
            "ci_high": (dims3, hi),
            "f1": (dims3, f1),
            "penalty": (dims3, np.where(np.isfinite(score), 1.0, np.nan)),
            "n_train": (
                dims3,
                np.where(
                    np.isfinite(score), 3 * np.array([n_test[t] for t in tasks])[None, :, None], 0
                ).astype(np.int64),
            ),
            "n_test": (
                dims3,
                np.where(
                    np.isfinite(score), np.array([n_test[t] for t in tasks])[None, :, None], 0
                ).astype(np.int64),
            ),
            "majority": (dims2, majority),
            "metric": ("task", np.array([all_tasks[t][1] for t in tasks], dtype=object)),
            "higher_is_better": (
                "task",
                np.array([all_tasks[t][1] not in ("eer", "per") for t in tasks]),
            ),
            "level": ("task", np.array([all_tasks[t][2] for t in tasks], dtype=object)),
            "kind": ("task", np.array([all_tasks[t][0] for t in tasks], dtype=object)),
            "ws_weight": (dims3, wsw),
            "layer_norm": (dims3, norm),
            "ws_score": (dims2, ws),
            "ws_ci_low": (dims2, ws_lo),
            "ws_ci_high": (dims2, ws_hi),
        },
        coords={"model": ids, "task": tasks, "layer": layers},
        attrs={
            "seed": seed,
            "deepwide_version": "0.0.0-test",
            "created": "2024-01-01T00:00:00",
            "corpus": "synth",
        },
    )
    return _with_facts(ds)


def build_labels(seed: int = 0) -> xr.Dataset:
    """The ``labels.nc`` dataset: dims (model, label, layer)."""
    rng = np.random.default_rng(seed + 1)
    ids = model_ids()
    cca = np.full((len(ids), 2, 13), np.nan)
    for i, m in enumerate(ids):
        base = m.removeprefix("random:")
        L = TRAINED[base][0]
        rel = np.arange(L + 1) / L
        g = 0.15 if m != base else 1.0
        cca[i, 0, : L + 1] = 0.1 + g * 0.6 * rel**0.8 + rng.normal(0, 0.01, L + 1)
        cca[i, 1, : L + 1] = 0.1 + g * 0.7 * (1 - rel) + rng.normal(0, 0.01, L + 1)
    ds = xr.Dataset(
        {"label_cca": (("model", "label", "layer"), cca)},
        coords={"model": ids, "label": ["phone", "speaker"], "layer": np.arange(13)},
        attrs={"seed": seed},
    )
    return _with_facts(ds)


def build_spectrum(seed: int = 0) -> xr.Dataset:
    """The ``spectrum.nc`` dataset: dims (model, layer)."""
    rng = np.random.default_rng(seed + 2)
    ids = model_ids()
    er, pr = np.full((len(ids), 13), np.nan), np.full((len(ids), 13), np.nan)
    for i, m in enumerate(ids):
        base = m.removeprefix("random:")
        L, D = TRAINED[base][:2]
        rel = np.arange(L + 1) / L
        top = D * (0.9 if m != base else 0.97)
        er[i, : L + 1] = top * (0.3 + 0.4 * np.sin(np.pi * rel) ** 2) + rng.normal(0, 1, L + 1)
        pr[i, : L + 1] = er[i, : L + 1] / 3
    ds = xr.Dataset(
        {
            "effective_rank": (("model", "layer"), er),
            "participation_ratio": (("model", "layer"), pr),
        },
        coords={"model": ids, "layer": np.arange(13)},
        attrs={"seed": seed},
    )
    return _with_facts(ds)


def build_similarity(student: str, measure: str = "cka", seed: int = 0) -> xr.Dataset:
    """A teacher × student grid (dims layer_a, layer_b) with the student's random twin as null."""
    rng = np.random.default_rng(seed + 3)
    La, Lb = TRAINED[TEACHER][0], TRAINED[student][0]
    ra = np.arange(La + 1)[:, None] / La
    rb = np.arange(Lb + 1)[None, :] / Lb
    sim = 0.15 + 0.8 * np.exp(-((ra - rb) ** 2) / 0.04) + rng.normal(0, 0.01, (La + 1, Lb + 1))
    null = 0.5 * np.exp(-3 * ra) * np.ones_like(rb) + 0.05 + rng.normal(0, 0.01, (La + 1, Lb + 1))
    return xr.Dataset(
        {
            "similarity": (("layer_a", "layer_b"), np.clip(sim, 0, 1)),
            "null_similarity": (("layer_a", "layer_b"), np.clip(null, 0, 1)),
        },
        coords={"layer_a": np.arange(La + 1), "layer_b": np.arange(Lb + 1)},
        attrs={
            "measure": measure,
            "model_a": TEACHER,
            "model_b": student,
            "null_model": f"random:{student}",
            "n_samples": 2000,
            "frames_per_utt": 10,
            "seed": seed,
            "num_layers_a": La,
            "num_layers_b": Lb,
        },
    )


def build_distill() -> pd.DataFrame:
    """``distill.csv``: one row per student."""
    rows = []
    for m, (L, D, p, obj) in TRAINED.items():
        if m == TEACHER:
            continue
        rows.append(
            {
                "model": m,
                "depth": L,
                "width": D,
                "ffn": 4 * D,
                "heads": max(1, D // 64),
                "objective": obj,
                "params": p,
                "steps": 200,
                "final_loss": round(0.5 + 0.01 * L, 3),
            }
        )
    return pd.DataFrame(rows)


def study_roles() -> dict[str, str]:
    """Each fake model's role as ``deepwide study`` records it in ``study.json``."""
    roles = {m: "student" for m in TRAINED}
    roles[TEACHER] = "teacher"
    roles.update({f"random:{m}": "random" for m in TRAINED})
    return roles


def write_study_json(root: Path, roles: dict[str, str] | None) -> Path:
    """``study.json`` as the study writes it: config and seed, plus ``roles`` unless ``None``."""
    data: dict[str, object] = {"config": {"teacher": TEACHER}, "seed": 0}
    if roles is not None:
        data["roles"] = roles
    path = root / "study.json"
    path.write_text(json.dumps(data, indent=2))
    return path


def sanitise(model_id: str) -> str:
    """Model id as it appears in a similarity file name."""
    return re.sub(r"[^A-Za-z0-9_.-]", "-", model_id)


def write_fake_results(
    root: Path,
    *,
    parts: tuple[str, ...] = ("probe", "labels", "spectrum", "similarity", "distill"),
    measures: tuple[str, ...] = ("cka",),
    seed: int = 0,
    with_pr: bool = False,
) -> FakeResults:
    """Write the chosen parts of a fake results folder (NetCDF + CSV twins) under ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    fr = FakeResults(
        root,
        build_probe(seed, with_pr=with_pr),
        build_labels(seed),
        build_spectrum(seed),
        [build_similarity(s, me, seed) for me in measures for s in (DEEP, WIDE, DISTIL)],
        build_distill(),
    )
    # both NetCDF engines the schema allows
    if "probe" in parts:
        fr.probe.to_netcdf(root / "probe.nc", engine="netcdf4")
        fr.probe.to_dataframe().to_csv(root / "probe.csv")
    if "labels" in parts:
        fr.labels.to_netcdf(root / "labels.nc", engine="netcdf4")
        fr.labels.to_dataframe().to_csv(root / "labels.csv")
    if "spectrum" in parts:
        fr.spectrum.to_netcdf(root / "spectrum.nc", engine="scipy")
        fr.spectrum.to_dataframe().to_csv(root / "spectrum.csv")
    if "similarity" in parts:
        for g in fr.similarities:
            stem = f"similarity_{g.attrs['measure']}_{sanitise(g.attrs['model_a'])}__{sanitise(g.attrs['model_b'])}"
            g.to_netcdf(root / f"{stem}.nc", engine="scipy")
            g.to_dataframe().to_csv(root / f"{stem}.csv")
    if "distill" in parts:
        fr.distill.to_csv(root / "distill.csv", index=False)
    return fr
