"""Read a results folder (docs/results-schema.md) and derive the tables figures and report share.

Figures and the report read *only* these files: ``probe.nc``, ``similarity_*.nc``,
``labels.nc``, ``spectrum.nc``, ``distill.csv`` and the model roles in ``study.json``. Every
file is optional; what is missing only removes the figures and report sections that need it
(without recorded roles, each model's role is guessed, with a warning). A file that exists but does not
follow the schema (wrong dims, missing variables) is a user error (:class:`StoreError`).

Every number here comes from a results folder; the published SUPERB rows the figures and the
report show beside them are package data, read by :mod:`~deepwide.figures.superb`.
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from deepwide.errors import ConfigError, StoreError

log = logging.getLogger(__name__)

#: Per-model facts every result with a ``model`` dim carries (schema: "Per-model facts").
MODEL_FACTS = ("num_layers", "dim", "params", "is_null", "null_of")

#: file name -> {variable: required dims}; a variable that is present must have these dims.
_SCHEMA: dict[str, dict[str, tuple[str, ...]]] = {
    "probe": {
        "score": ("model", "task", "layer"),
        "ci_low": ("model", "task", "layer"),
        "ci_high": ("model", "task", "layer"),
        "f1": ("model", "task", "layer"),
        "majority": ("model", "task"),
        "higher_is_better": ("task",),
        "kind": ("task",),
        "metric": ("task",),
        "level": ("task",),
        "ws_weight": ("model", "task", "layer"),
        "layer_norm": ("model", "task", "layer"),
        "ws_score": ("model", "task"),
        "ws_ci_low": ("model", "task"),
        "ws_ci_high": ("model", "task"),
    },
    "labels": {"label_cca": ("model", "label", "layer")},
    "spectrum": {
        "effective_rank": ("model", "layer"),
        "participation_ratio": ("model", "layer"),
    },
    "similarity": {
        "similarity": ("layer_a", "layer_b"),
        "null_similarity": ("layer_a", "layer_b"),
    },
}
_REQUIRED = {
    "probe": ("score", "ci_low", "ci_high", "kind", "higher_is_better"),
    "labels": ("label_cca",),
    "spectrum": ("effective_rank",),
    "similarity": ("similarity",),
}
_DISTILL_COLUMNS = ("model", "depth", "width")

#: Roles ``study.json`` records (``"roles": {model_id: role}``) -> the role figures use.
STUDY_ROLES = {"teacher": "teacher", "student": "student", "random": "null", "baseline": "reference"}

@dataclass
class Results:
    """Everything a results folder holds; each part is ``None``/empty when its file is absent."""

    root: Path
    probe: xr.Dataset | None = None
    labels: xr.Dataset | None = None
    spectrum: xr.Dataset | None = None
    similarities: list[xr.Dataset] = field(default_factory=list)
    distill: pd.DataFrame | None = None
    #: model id -> role as ``study.json`` records it (``teacher``/``student``/``random``/
    #: ``baseline``); ``None`` when the folder records no roles (older results).
    recorded_roles: dict[str, str] | None = None
    #: student group -> {distillation seed: model id}, for a study run with several seeds
    #: (``study.json``'s ``seeds``); empty otherwise.
    seed_groups: dict[str, dict[int, str]] = field(default_factory=dict)
    #: trained model id -> its random twin's id (``study.json``'s ``twins``: students of one
    #: shape share one twin); empty for older results, which pair twins by ``null_of`` only.
    twin_of: dict[str, str] = field(default_factory=dict)
    _roles_guess_logged: bool = field(default=False, init=False, repr=False, compare=False)

    @property
    def model_datasets(self) -> list[xr.Dataset]:
        """The loaded datasets that have a ``model`` dim (they carry the per-model facts)."""
        return [d for d in (self.probe, self.labels, self.spectrum) if d is not None]

    def available(self) -> list[str]:
        """Names of the inputs that were found, for logging and the report."""
        out = [n for n in ("probe", "labels", "spectrum") if getattr(self, n) is not None]
        if self.similarities:
            out.append(f"similarity ×{len(self.similarities)}")
        if self.distill is not None:
            out.append("distill")
        return out


def load_results(results_dir: str | Path) -> Results:
    """Load every results file of ``results_dir`` that exists, validating dims against the schema.

    Raises:
        ConfigError: ``results_dir`` does not exist or is not a folder.
        StoreError: a file exists but cannot be read or does not follow the schema.
    """
    root = Path(results_dir)
    if not root.is_dir():
        raise ConfigError(
            f"results folder {root} does not exist; run `deepwide probe`/`deepwide analyze` "
            "(or `deepwide study`) first, or pass the folder they wrote"
        )
    res = Results(root=root)
    for name in ("probe", "labels", "spectrum"):
        path = root / f"{name}.nc"
        if path.is_file():
            setattr(res, name, _read_dataset(path, name))
    for path in sorted(root.glob("similarity_*.nc")):
        res.similarities.append(_read_dataset(path, "similarity"))
    dpath = root / "distill.csv"
    if dpath.is_file():
        res.distill = _read_distill(dpath)
    spath = root / "study.json"
    if spath.is_file():
        res.recorded_roles = _read_roles(spath)
        res.seed_groups = _read_seed_groups(spath)
        res.twin_of = _read_twins(spath)
    log.info("results in %s: %s", root, ", ".join(res.available()) or "nothing")
    return res


def _read_dataset(path: Path, result: str) -> xr.Dataset:
    try:
        with xr.open_dataset(path) as ds:
            data = ds.load()
    except Exception as exc:  # netCDF/HDF errors come in many types
        raise StoreError(
            f"{path} cannot be read as NetCDF ({type(exc).__name__}: {exc}); rewrite it"
        ) from exc
    _validate(data, path, result)
    return _normalise(data)


def _validate(ds: xr.Dataset, path: Path, result: str) -> None:
    missing = [v for v in _REQUIRED[result] if v not in ds.data_vars]
    if missing:
        raise StoreError(
            f"{path.name} lacks {', '.join(missing)} (see docs/results-schema.md); "
            "regenerate it with the stage that writes it"
        )
    for var, dims in _SCHEMA[result].items():
        if var in ds.data_vars and tuple(ds[var].dims) != dims:
            raise StoreError(
                f"{path.name}: {var!r} has dims ({', '.join(map(str, ds[var].dims))}), "
                f"expected ({', '.join(dims)}); regenerate it with the current deepwide"
            )
    if "model" in ds.dims:
        facts = [f for f in ("num_layers", "dim") if f not in ds.data_vars]
        if facts:
            raise StoreError(
                f"{path.name} lacks the per-model facts {', '.join(facts)}; "
                "regenerate it with the current deepwide"
            )


def _normalise(ds: xr.Dataset) -> xr.Dataset:
    """Coerce coordinate labels to str and schema booleans/strings to their Python types."""
    for dim in ("model", "task", "label"):
        if dim in ds.coords:
            ds = ds.assign_coords({dim: [str(v) for v in ds[dim].values]})
    if "model" in ds.dims:
        n = ds.sizes["model"]
        is_null = ds["is_null"].values.astype(bool) if "is_null" in ds else np.zeros(n, bool)
        null_of = ds["null_of"].values if "null_of" in ds else np.full(n, "", object)
        null_of = np.array(["" if _blank(v) else str(v) for v in null_of], dtype=object)
        params = ds["params"].values if "params" in ds else np.full(n, np.nan)
        ds = ds.assign(
            is_null=("model", is_null),
            null_of=("model", null_of),
            params=("model", params.astype(float)),
        )
    for var in ("kind", "metric", "level"):
        if var in ds.data_vars:
            ds[var] = (ds[var].dims, np.array([str(v) for v in ds[var].values], dtype=object))
    if "higher_is_better" in ds.data_vars:
        ds["higher_is_better"] = ds["higher_is_better"].astype(bool)
    return ds


def _blank(v: object) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or str(v) in ("", "nan")


def _read_distill(path: Path) -> pd.DataFrame:
    return read_model_csv(path, _DISTILL_COLUMNS)


def read_model_csv(path: Path, columns: tuple[str, ...]) -> pd.DataFrame:
    """A per-model results CSV (``distill.csv``, ``distill_curves.csv``) that must hold ``columns``;
    ``model`` read as text.

    Raises:
        StoreError: the file cannot be read or lacks a column.
    """
    try:
        df = pd.read_csv(path)
    except Exception as exc:
        raise StoreError(f"{path} cannot be read as CSV ({exc}); rewrite it") from exc
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise StoreError(
            f"{path.name} lacks column(s) {', '.join(missing)} (see docs/results-schema.md)"
        )
    df["model"] = df["model"].astype(str)
    return df


def _read_roles(path: Path) -> dict[str, str] | None:
    """The ``roles`` of ``study.json``, or ``None`` when it records none (older studies)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise StoreError(f"{path} cannot be read as JSON ({exc}); rewrite it or remove it") from exc
    roles = data.get("roles") if isinstance(data, dict) else None
    if roles is None:
        return None
    valid = ", ".join(STUDY_ROLES)
    if not isinstance(roles, dict):
        raise StoreError(
            f"{path.name}: \"roles\" must map model ids to one of {valid}, got "
            f"{type(roles).__name__}; rewrite it with the current `deepwide study`"
        )
    bad = {str(m): r for m, r in roles.items() if r not in STUDY_ROLES}
    if bad:
        m, r = next(iter(bad.items()))
        raise StoreError(
            f"{path.name}: model {m!r} has role {r!r}; a role is one of {valid}"
            + (f" ({len(bad)} such models)" if len(bad) > 1 else "")
        )
    return {str(m): str(r) for m, r in roles.items()}


def _read_seed_groups(path: Path) -> dict[str, dict[int, str]]:
    """``study.json``'s ``seeds`` (model id -> its group and seed) as group -> {seed: model id}."""
    data = json.loads(path.read_text())
    groups: dict[str, dict[int, str]] = {}
    for model, entry in (data.get("seeds") or {}).items():
        try:
            groups.setdefault(str(entry["group"]), {})[int(entry["seed"])] = str(model)
        except (KeyError, TypeError, ValueError) as exc:
            raise StoreError(
                f"{path.name}: \"seeds\" entry of {model!r} must be {{\"group\": NAME, \"seed\": N}}, got {entry!r}; "
                "rewrite it with the current `deepwide study`"
            ) from exc
    return groups


def _read_twins(path: Path) -> dict[str, str]:
    """``study.json``'s ``twins`` (trained model id -> its random twin's id); empty when absent."""
    twins = json.loads(path.read_text()).get("twins") or {}
    if not isinstance(twins, dict) or not all(isinstance(v, str) for v in twins.values()):
        raise StoreError(
            f"{path.name}: \"twins\" must map model ids to their random twins' ids, got {twins!r:.80}; "
            "rewrite it with the current `deepwide study`"
        )
    return {str(m): v for m, v in twins.items()}


# ---------------------------------------------------------------------------------------------
# per-model facts and roles


def model_facts(res: Results) -> pd.DataFrame:
    """One row per model id across all results: num_layers, dim, params, is_null, null_of.

    Later files only fill in models the earlier ones lack; ``distill.csv`` adds ``objective``,
    ``steps``, ``final_loss``, ``ffn`` and ``heads`` where it has them.
    """
    rows: dict[str, dict[str, object]] = {}
    for ds in res.model_datasets:
        for i, m in enumerate(ds["model"].values):
            if m in rows:
                continue
            rows[m] = {f: ds[f].values[i] for f in MODEL_FACTS if f in ds}
    df = pd.DataFrame.from_dict(rows, orient="index")
    if df.empty:
        return pd.DataFrame(columns=list(MODEL_FACTS))
    df.index.name = "model"
    df["num_layers"] = df["num_layers"].astype(int)
    df["dim"] = df["dim"].astype(int)
    df["is_null"] = df["is_null"].astype(bool)
    if res.distill is not None:
        extra = res.distill.set_index("model")
        for col in ("objective", "steps", "final_loss", "ffn", "heads"):
            if col in extra.columns:
                df[col] = extra[col].reindex(df.index)
        if "params" in extra.columns:
            df["params"] = df["params"].fillna(extra["params"].reindex(df.index))
    return df


def model_roles(res: Results, facts: pd.DataFrame | None = None) -> dict[str, str]:
    """Map each model id to ``teacher``, ``student``, ``null`` or ``reference``.

    The roles ``study.json`` records (:attr:`Results.recorded_roles`) are used when there are
    any: ``random`` is ``null`` and ``baseline`` is ``reference``; a model they do not name is
    ``null`` if it is a random-weight model, else ``reference`` (with a warning).

    Older results record no roles; they are then guessed, with a warning (once per
    :class:`Results`): students are the models of ``distill.csv`` when it exists; the teacher
    is then the one trained model that is not a student. Without ``distill.csv`` the teacher is
    the most common ``model_a`` of the similarity files, else the trained model with the most
    parameters.
    """
    facts = model_facts(res) if facts is None else facts
    if res.recorded_roles is not None:
        return _recorded_roles(res, facts, res.recorded_roles)
    return _guessed_roles(res, facts)


def _recorded_roles(res: Results, facts: pd.DataFrame, recorded: dict[str, str]) -> dict[str, str]:
    roles: dict[str, str] = {}
    unnamed = []
    for m in facts.index:
        if m in recorded:
            roles[m] = STUDY_ROLES[recorded[m]]
        else:
            unnamed.append(m)
            roles[m] = "null" if facts.loc[m, "is_null"] else "reference"
    if unnamed and not res._roles_guess_logged:
        res._roles_guess_logged = True
        log.warning(
            "study.json in %s records no role for %s; taken as %s", res.root, ", ".join(unnamed),
            ", ".join(f"{m}: {roles[m]}" for m in unnamed),
        )
    return roles


def _guessed_roles(res: Results, facts: pd.DataFrame) -> dict[str, str]:
    roles: dict[str, str] = {}
    trained = [m for m in facts.index if not facts.loc[m, "is_null"]]
    for m in facts.index:
        if facts.loc[m, "is_null"]:
            roles[m] = "null"
    teacher, rule = _find_teacher(res, facts, trained)
    students = set(res.distill["model"]) if res.distill is not None else set()
    if trained and not res._roles_guess_logged:
        res._roles_guess_logged = True
        log.warning(
            "%s records no model roles (no \"roles\" in study.json): guessing them — teacher %s "
            "(%s), students %s; results written by the current `deepwide study` record them",
            res.root, teacher, rule,
            "from distill.csv" if students else "all other trained models",
        )
    for m in trained:
        if m == teacher:
            roles[m] = "teacher"
        elif not students or m in students:
            roles[m] = "student"
        else:
            roles[m] = "reference"
    return roles


def _find_teacher(res: Results, facts: pd.DataFrame, trained: list[str]) -> tuple[str | None, str]:
    """The guessed teacher and the rule that chose it (for the warning)."""
    if not trained:
        return None, "no trained model"
    if res.distill is not None:
        others = [m for m in trained if m not in set(res.distill["model"])]
        if len(others) == 1:
            return others[0], "the one trained model not in distill.csv"
    counts = Counter(str(s.attrs.get("model_a", "")) for s in res.similarities)
    for m, _ in counts.most_common():
        if m in trained:
            return m, "the most common model_a of the similarity files"
    best = max(trained, key=lambda m: (np.nan_to_num(facts.loc[m, "params"]), m))
    return best, "the trained model with the most parameters"


# ---------------------------------------------------------------------------------------------
# derived tables


def relative_depth(layers: np.ndarray, num_layers: int) -> np.ndarray:
    """Relative depth ``layer / num_layers`` (0 = input to the first layer, 1 = last layer).

    A zero-layer feature baseline (``mfcc``) sits at depth 0.
    """
    return np.asarray(layers, dtype=float) / float(max(num_layers, 1))


def best_layer_table(probe: xr.Dataset) -> pd.DataFrame:
    """Best layer per (model, task), chosen on the stored test scores.

    Returns:
        DataFrame with columns model, task, layer, rel_depth, score, ci_low, ci_high
        (fractions; the best layer is the argmax, or the argmin where lower is better; ties go
        to the lower layer). Rows with no finite score are omitted.
    """
    rows = []
    hib = probe["higher_is_better"]
    for m in probe["model"].values:
        L = int(probe["num_layers"].sel(model=m))
        for t in probe["task"].values:
            s = probe["score"].sel(model=m, task=t).values.astype(float)
            ok = np.isfinite(s)
            if not ok.any():
                continue
            cand = np.where(ok, s if bool(hib.sel(task=t)) else -s, -np.inf)
            i = int(np.argmax(cand))
            layer = int(probe["layer"].values[i])
            rows.append(
                {
                    "model": m,
                    "task": t,
                    "layer": layer,
                    "rel_depth": float(relative_depth(layer, L)),
                    "score": s[i],
                    "ci_low": float(probe["ci_low"].sel(model=m, task=t).values[i]),
                    "ci_high": float(probe["ci_high"].sel(model=m, task=t).values[i]),
                }
            )
    return pd.DataFrame(
        rows, columns=["model", "task", "layer", "rel_depth", "score", "ci_low", "ci_high"]
    )


def ws_table(probe: xr.Dataset) -> pd.DataFrame | None:
    """Weighted-sum probe scores per (model, task), or ``None`` when the probe has none."""
    if not all(v in probe for v in ("ws_score", "ws_ci_low", "ws_ci_high")):
        return None
    df = (
        probe[["ws_score", "ws_ci_low", "ws_ci_high"]]
        .to_dataframe()
        .reset_index()[["model", "task", "ws_score", "ws_ci_low", "ws_ci_high"]]
        .rename(columns={"ws_score": "score", "ws_ci_low": "ci_low", "ws_ci_high": "ci_high"})
    )
    df = df[np.isfinite(df["score"].astype(float))]
    return df.reset_index(drop=True) if not df.empty else None


def headline_scores(probe: xr.Dataset) -> tuple[pd.DataFrame, str]:
    """The score the study compares models by, and its name.

    The weighted-sum probe (the SUPERB protocol, its layer weights learnt on train) when the
    results have it; otherwise the best single layer (chosen on test, so optimistic). A task
    with no weighted-sum score (``asv``: scored, not trained) takes its best layer; the
    ``source`` column says which score each row is (see :func:`best_layer_tasks`).
    """
    cols = ["model", "task", "score", "ci_low", "ci_high"]
    best = best_layer_table(probe)[cols].assign(source="best layer")
    ws = ws_table(probe)
    if ws is None:
        return best, "best layer"
    filled = best[~best["task"].isin(set(ws["task"]))]
    return pd.concat([ws.assign(source="weighted sum"), filled], ignore_index=True), "weighted-sum probe"


def best_layer_tasks(scores: pd.DataFrame) -> list[str]:
    """Tasks of a :func:`headline_scores` table scored by their best layer, in table order."""
    return list(dict.fromkeys(scores.loc[scores["source"] == "best layer", "task"]))


def task_info(probe: xr.Dataset) -> pd.DataFrame:
    """One row per task: kind, metric, level, higher_is_better, n_train, n_test, majority."""
    rows = []
    for t in probe["task"].values:
        row: dict[str, object] = {"task": t}
        for var in ("kind", "metric", "level", "higher_is_better"):
            row[var] = probe[var].sel(task=t).item() if var in probe else None
        for var in ("n_train", "n_test"):
            if var in probe:
                v = probe[var].sel(task=t).values.astype(float)
                v = v[np.isfinite(v)]
                row[var] = int(np.max(v)) if v.size else None
        if "majority" in probe:
            v = probe["majority"].sel(task=t).values.astype(float)
            v = v[np.isfinite(v)]
            row["majority"] = float(np.median(v)) if v.size else math.nan
        rows.append(row)
    return pd.DataFrame(rows).set_index("task")


def ordered_tasks(probe: xr.Dataset) -> list[str]:
    """Tasks with content tasks first, then speaker tasks, then any other kind (stable order)."""
    order = {"content": 0, "speaker": 1}
    tasks = list(probe["task"].values)
    return sorted(
        tasks, key=lambda t: (order.get(str(probe["kind"].sel(task=t).item()), 2), tasks.index(t))
    )


def kind_scores(scores: pd.DataFrame, probe: xr.Dataset) -> pd.DataFrame:
    """Mean headline score per model over each task kind, on a higher-is-better scale.

    Lower-is-better metrics (EER) enter as ``1 − score``. Returns a DataFrame indexed by model
    with one column per kind (``content``, ``speaker``) and ``<kind>_tasks`` naming the tasks.
    """
    info = task_info(probe)
    df = scores.copy()
    hib = info["higher_is_better"].reindex(df["task"]).to_numpy(bool)
    df["good"] = np.where(hib, df["score"], 1.0 - df["score"])
    df["kind"] = info["kind"].reindex(df["task"]).to_numpy()
    out = df.pivot_table(index="model", columns="kind", values="good", aggfunc="mean")
    for k in out.columns:
        tasks = [t for t in info.index if info.loc[t, "kind"] == k]
        out.attrs[f"{k}_tasks"] = tasks
    return out


def mover_difference(
    a: float, a_lo: float, a_hi: float, b: float, b_lo: float, b_hi: float
) -> tuple[float, float, float]:
    """Difference ``a − b`` with a 95 % interval built from the two 95 % intervals (MOVER).

    MOVER (Zou & Donner 2008) combines the two intervals' half-widths in quadrature, each on
    the side it bounds; it assumes the two estimates are independent. Both models are scored
    on the same test utterances, so their errors are usually positively correlated and the
    true interval of the difference is narrower: this one is conservative.

    Returns:
        ``(difference, low, high)``.
    """
    d = a - b
    lo = d - math.sqrt((a - a_lo) ** 2 + (b_hi - b) ** 2)
    hi = d + math.sqrt((a_hi - a) ** 2 + (b - b_lo) ** 2)
    return d, lo, hi


def deep_wide_pairs(
    facts: pd.DataFrame, roles: dict[str, str], max_pairs: int = 4
) -> list[tuple[str, str]]:
    """Pairs (deep-narrow, shallow-wide) of students to compare, most budget-matched first.

    A pair needs the first student to have more layers *and* a smaller width than the second.
    Pairs within a 1.5× parameter ratio are preferred; if there are none, the closest pair is
    used. Ties go to the larger depth contrast.
    """
    students = [m for m, r in roles.items() if r == "student"]
    cands = []
    for d in students:
        for w in students:
            fd, fw = facts.loc[d], facts.loc[w]
            if fd["num_layers"] > fw["num_layers"] and fd["dim"] < fw["dim"]:
                pd_, pw = float(fd["params"]), float(fw["params"])
                ratio = max(pd_, pw) / min(pd_, pw) if min(pd_, pw) > 0 else math.inf
                ratio = ratio if math.isfinite(ratio) else math.inf
                contrast = fd["num_layers"] / fw["num_layers"]
                cands.append((ratio, -contrast, d, w))
    cands.sort()
    matched = [c for c in cands if c[0] <= 1.5]
    chosen = matched[:max_pairs] if matched else cands[:1]
    return [(d, w) for _, _, d, w in chosen]
