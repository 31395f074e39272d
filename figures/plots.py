"""One function per figure: results objects in (xarray/pandas), a matplotlib ``Figure`` out.

Scores are stored as fractions (docs/results-schema.md) and drawn as percent. Relative depth of
layer ``i`` is ``i / num_layers``. Random twins are dashed in their model's colour. Every
function takes an optional :class:`~deepwide.figures.style.ModelStyles` so that one results
folder keeps one model → colour mapping across figures; without it a mapping is derived from
the data (teacher = the trained model with the most parameters).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.axes import Axes
from matplotlib.figure import Figure, SubFigure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullLocator

from deepwide.figures.results import ordered_tasks, relative_depth, task_info
from deepwide.figures.style import (
    PUBLISHED_COLOR,
    SEQUENTIAL_CMAP,
    SIMILARITY_CMAP,
    ModelStyle,
    ModelStyles,
    figure_width,
    finish_axes,
    model_styles,
    new_figure,
    styled,
)
from deepwide.figures.superb import (
    MEASURED_LABEL,
    PUBLISHED_LABEL,
    PUBLISHED_TASKS,
    SuperbTask,
)

log = logging.getLogger(__name__)

MEASURE_LABELS = {
    "cka": "linear CKA",
    "cka-debiased": "debiased linear CKA",
    "cka-rbf": "RBF CKA",
    "svcca": "SVCCA",
    "pwcca": "PWCCA",
}


# ---------------------------------------------------------------------------------------------
# helpers


def default_styles(*datasets: xr.Dataset | None) -> ModelStyles:
    """A model → style mapping from the per-model facts of ``datasets`` (teacher = most params)."""
    facts: dict[str, dict[str, object]] = {}
    for ds in datasets:
        if ds is None or "model" not in ds.dims:
            continue
        for i, m in enumerate(ds["model"].values):
            facts.setdefault(
                str(m),
                {
                    "num_layers": int(ds["num_layers"].values[i]),
                    "dim": int(ds["dim"].values[i]),
                    "params": float(ds["params"].values[i]) if "params" in ds else 0.0,
                    "null_of": str(ds["null_of"].values[i]) if "null_of" in ds else "",
                    "is_null": bool(ds["is_null"].values[i]) if "is_null" in ds else False,
                },
            )
    trained = [m for m, f in facts.items() if not f["is_null"]]
    teacher = (
        max(trained, key=lambda m: (np.nan_to_num(facts[m]["params"]), m)) if trained else None
    )
    return model_styles(
        list(facts),
        num_layers={m: f["num_layers"] for m, f in facts.items()},  # type: ignore[misc]
        dim={m: f["dim"] for m, f in facts.items()},  # type: ignore[misc]
        null_of={m: (f["null_of"] or ("?" if f["is_null"] else "")) for m, f in facts.items()},  # type: ignore[misc]
        teacher=teacher,
    )


def metric_label(metric: str, higher_is_better: bool) -> str:
    """Axis label of a probe metric drawn in percent, with ↓ where lower is better."""
    name = "EER" if metric.lower() == "eer" else metric
    return f"{name} (%)" + ("" if higher_is_better else " ↓ better")


def _legend(fig: Figure, styles: ModelStyles, models: Sequence[str], *, twins: bool) -> None:
    handles: list[Line2D] = []
    for m in styles.order(models):
        st = styles[m]
        if st.linestyle != "-":
            continue
        handles.append(Line2D([], [], **st.line_kwargs()))
    if twins:
        handles.append(
            Line2D(
                [],
                [],
                color="#555555",
                linestyle="--",
                marker="o",
                markerfacecolor="white",
                label="random twin (dashed)",
            )
        )
    if handles:
        per_row = max(1, int(fig.get_figwidth() // 1.9))
        fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), per_row))


def _layers(ds: xr.Dataset, model: str) -> np.ndarray:
    return np.arange(int(ds["num_layers"].sel(model=model)) + 1)


def _groups(tasks: Sequence[str], kinds: Sequence[str]) -> list[tuple[str, list[str]]]:
    out: list[tuple[str, list[str]]] = []
    for t, k in zip(tasks, kinds, strict=True):
        if out and out[-1][0] == k:
            out[-1][1].append(t)
        else:
            out.append((k, [t]))
    return out


def _subfigures(
    fig: Figure, ratios: Sequence[int], *, rows: bool = False
) -> list[SubFigure | Figure]:
    if len(ratios) == 1:
        return [fig]
    if rows:
        sfs = fig.subfigures(len(ratios), 1, height_ratios=list(ratios), hspace=0.03)
    else:
        sfs = fig.subfigures(1, len(ratios), width_ratios=list(ratios), wspace=0.03)
    return list(np.atleast_1d(sfs))


def _ci_point(
    ax: Axes,
    x: float,
    y: float,
    style: ModelStyle,
    *,
    markersize: float,
    xerr: list[list[float]] | None = None,
    yerr: list[list[float]] | None = None,
) -> None:
    """One model's score at ``(x, y)`` with its CI bar; hollow unless the style's line is solid."""
    ax.errorbar(
        [x],
        [y],
        xerr=xerr,
        yerr=yerr,
        color=style.color,
        marker=style.marker,
        markersize=markersize,
        markerfacecolor="white" if style.linestyle != "-" else style.color,
        linestyle="none",
        capsize=2,
        elinewidth=0.8,
        alpha=style.alpha,
    )


def _log_params_axis(ax: Axes) -> None:
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_locator(NullLocator())


def _rel_depth_axes(ax: Axes) -> None:
    ax.set_xlim(-0.03, 1.03)
    ax.set_xticks([0, 0.25, 0.5, 0.75, 1.0], ["0", ".25", ".5", ".75", "1"])
    ax.set_xlabel("relative depth (layer / L)")
    finish_axes(ax)


# ---------------------------------------------------------------------------------------------
# figure 1


@styled
def plot_probe_curves(
    probe: xr.Dataset, styles: ModelStyles | None = None, tasks: Sequence[str] | None = None
) -> Figure:
    """Figure 1: probe score ± 95 % CI against relative depth, one panel per task.

    Content tasks are grouped on the left, speaker tasks on the right; one line per model,
    random twins dashed, the majority-class score as a grey dotted line.

    Args:
        probe: the ``probe.nc`` dataset (dims model, task, layer).
        styles: model → style mapping; derived from ``probe`` when ``None``.
        tasks: tasks to draw (default: all, content first).
    """
    styles = styles or default_styles(probe)
    tasks = list(tasks) if tasks is not None else ordered_tasks(probe)
    info = task_info(probe)
    models = [str(m) for m in probe["model"].values]
    fig = new_figure(figure_width(len(tasks)), 2.55)
    groups = _groups(tasks, [str(info.loc[t, "kind"]) for t in tasks])
    for sf, (kind, ts) in zip(_subfigures(fig, [len(g) for _, g in groups]), groups, strict=True):
        sf.suptitle(f"{kind} tasks")
        axes = sf.subplots(1, len(ts), squeeze=False)[0]
        for ax, t in zip(axes, ts, strict=True):
            hib = bool(info.loc[t, "higher_is_better"])
            for m in styles.order(models):
                layers = _layers(probe, m)
                x = relative_depth(layers, layers[-1])
                sel = {"model": m, "task": t, "layer": layers}
                y = 100 * probe["score"].sel(sel).values.astype(float)
                if not np.isfinite(y).any():
                    continue
                lo = 100 * probe["ci_low"].sel(sel).values.astype(float)
                hi = 100 * probe["ci_high"].sel(sel).values.astype(float)
                st = styles[m]
                band = 0.15 if st.linestyle == "-" else 0.07
                ax.fill_between(x, lo, hi, color=st.color, alpha=band, linewidth=0)
                ax.plot(x, y, **st.line_kwargs())
            maj = info.loc[t, "majority"] if "majority" in info else np.nan
            if np.isfinite(maj):
                ax.axhline(100 * maj, color="#888888", linestyle=":", linewidth=1.0)
            ax.set_title(t if hib else f"{t} (lower is better)")
            ax.set_ylabel(metric_label(str(info.loc[t, "metric"]), hib))
            _rel_depth_axes(ax)
    _legend(fig, styles, models, twins=bool(probe["is_null"].values.any()))
    return fig


# ---------------------------------------------------------------------------------------------
# figure 2


@styled
def plot_similarity_heatmaps(
    grids: Sequence[xr.Dataset], styles: ModelStyles | None = None
) -> Figure:
    """Figure 2: teacher layers × student layers similarity, one panel per student.

    A second row shows each grid's null (``null_similarity``: the student replaced by its
    random twin) where the file has one. All panels share one colour scale, 0 to 1.

    Args:
        grids: ``similarity_<measure>_*.nc`` datasets of one measure (dims layer_a, layer_b).
        styles: used only to colour the panel titles.
    """
    if not grids:
        raise ValueError("plot_similarity_heatmaps needs at least one grid")
    measure = str(grids[0].attrs.get("measure", "similarity"))
    has_null = ["null_similarity" in g for g in grids]
    nrows = 2 if any(has_null) else 1
    ncols = len(grids)
    fig = new_figure(figure_width(ncols, 1.6) + 0.5, 1.75 * nrows + 0.5)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    im = None
    for j, g in enumerate(grids):
        a, b = str(g.attrs.get("model_a", "model a")), str(g.attrs.get("model_b", "model b"))
        panels = [("similarity", b)]
        if has_null[j]:
            panels.append(("null_similarity", "null: its random twin"))
        for i in range(nrows):
            ax = axes[i, j]
            if i >= len(panels):
                fig.delaxes(ax)
                continue
            var, title = panels[i]
            im = ax.imshow(
                g[var].transpose("layer_a", "layer_b").values.astype(float),
                origin="lower",
                aspect="auto",
                vmin=0.0,
                vmax=1.0,
                cmap=SIMILARITY_CMAP,
                extent=(-0.5, g.sizes["layer_b"] - 0.5, -0.5, g.sizes["layer_a"] - 0.5),
                interpolation="nearest",
            )
            color = styles[b].color if styles is not None else "black"
            ax.set_title(title, color=color, fontsize=7)
            ax.set_xlabel("student layer" if i == nrows - 1 or not any(has_null) else "")
            ax.set_ylabel(f"{a} layer" if j == 0 else "")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=5))
            ax.yaxis.set_major_locator(MaxNLocator(integer=True, nbins=6))
            ax.grid(False)
            finish_axes(ax)
    fig.suptitle(f"{MEASURE_LABELS.get(measure, measure)}: teacher layer × student layer")
    if im is not None:
        cb = fig.colorbar(im, ax=[ax for ax in axes.ravel() if ax.figure is fig], shrink=0.8)
        cb.set_label(MEASURE_LABELS.get(measure, measure))
        cb.ax.tick_params(labelsize=7)
    return fig


# ---------------------------------------------------------------------------------------------
# figure 3


@styled
def plot_params_vs_score(
    scores: pd.DataFrame,
    probe: xr.Dataset,
    published: pd.DataFrame | None = None,
    styles: ModelStyles | None = None,
    score_name: str = "weighted-sum probe",
    title_notes: Mapping[str, str] | None = None,
) -> Figure:
    """Figure 3: parameters against task score; published SUPERB models as a separate row.

    Top row ("this study"): each model's headline score ± 95 % CI against its parameter count
    (log scale); random twins hollow. Bottom row ("published (SUPERB)"): the published models
    on their own axes (different models, corpora, metrics and scale: context, not comparison);
    only for tasks with a published counterpart.

    Args:
        scores: rows (model, task, score, ci_low, ci_high), scores as fractions.
        probe: the probe dataset (tasks' metric/direction, per-model facts).
        published: rows like :attr:`~deepwide.figures.superb.PublishedSuperb.rows`, or ``None``.
        styles: model → style mapping.
        score_name: what ``scores`` is, for the row title.
        title_notes: task → note shown in its panel title (e.g. ``"best layer"`` for a task
            whose scores come from another source than ``score_name``).
    """
    styles = styles or default_styles(probe)
    notes = dict(title_notes or {})
    tasks = ordered_tasks(probe)
    info = task_info(probe)
    params = dict(zip(probe["model"].values, probe["params"].values.astype(float), strict=True))
    pub_tasks = [t for t in tasks if published is not None and t in PUBLISHED_TASKS]
    nrows = 2 if pub_tasks else 1
    fig = new_figure(figure_width(len(tasks)), 2.2 * nrows + 0.4)
    sfs = _subfigures(fig, [1] * nrows, rows=True)
    sfs[0].suptitle(f"this study ({score_name}, 95 % CI; hollow = random twin)")
    top = sfs[0].subplots(1, len(tasks), squeeze=False)[0]
    models = [str(m) for m in probe["model"].values]
    for ax, t in zip(top, tasks, strict=True):
        hib = bool(info.loc[t, "higher_is_better"])
        sub = scores[scores["task"] == t].set_index("model")
        for m in styles.order([m for m in models if m in sub.index]):
            st = styles[m]
            s, lo, hi = (100 * float(sub.loc[m, c]) for c in ("score", "ci_low", "ci_high"))
            _ci_point(ax, params[m] / 1e6, s, st, markersize=5, yerr=[[s - lo], [hi - s]])
        _log_params_axis(ax)
        ax.set_title(f"{t} ({notes[t]})" if t in notes else t)
        ax.set_xlabel("parameters (M)")
        ax.set_ylabel(metric_label(str(info.loc[t, "metric"]), hib))
        finish_axes(ax)
    if pub_tasks and published is not None:
        sfs[1].suptitle(
            "published (SUPERB, Ashihara et al. 2022) — context only: other models, data and metrics",
            color=PUBLISHED_COLOR,
        )
        bottom = sfs[1].subplots(1, len(tasks), squeeze=False)[0]
        for ax, t in zip(bottom, tasks, strict=True):
            if t not in pub_tasks:
                sfs[1].delaxes(ax)
                continue
            col, label, _ = PUBLISHED_TASKS[t]
            ax.scatter(
                published["params_m"],
                published[col],
                marker="s",
                s=14,
                color=PUBLISHED_COLOR,
                zorder=3,
            )
            for _, row in published.iterrows():
                ax.annotate(
                    str(row.get("short", row["model"])),
                    (row["params_m"], row[col]),
                    fontsize=5.5,
                    xytext=(3, 0),
                    textcoords="offset points",
                    va="center",
                    color="#333333",
                )
            _log_params_axis(ax)
            ax.margins(x=0.35)
            ax.set_title(f"published {col}", color=PUBLISHED_COLOR)
            ax.set_xlabel("parameters (M)")
            ax.set_ylabel(label + ("" if PUBLISHED_TASKS[t][2] else " ↓ better"))
            finish_axes(ax)
    _legend(fig, styles, models, twins=False)
    return fig


# ---------------------------------------------------------------------------------------------
# figure 4


@styled
def plot_depth_width_grid(table: pd.DataFrame, score_name: str = "weighted-sum probe") -> Figure:
    """Figure 4: the sweep's depth × width grid, coloured by content and by speaker score.

    Args:
        table: one row per student with columns ``model``, ``depth``, ``width``, optional
            ``objective``, and one column per task kind (``content``, ``speaker``) holding the
            mean headline score of that kind on a higher-is-better scale (fractions).
            ``table.attrs`` may name each kind's tasks as ``<kind>_tasks``.
        score_name: what the scores are, for the titles.

    Cells of the grid without a student stay blank; a cell with several students (same
    objective) shows their mean and ``n``.
    """
    kinds = [k for k in ("content", "speaker") if k in table.columns]
    objectives = (
        sorted(table["objective"].dropna().astype(str).unique()) if "objective" in table else []
    )
    objectives = objectives or ["all"]
    depths = sorted(int(d) for d in table["depth"].unique())
    widths = sorted(int(w) for w in table["width"].unique())
    nrows, ncols = len(objectives), len(kinds)
    cell_in = 0.34
    width = max(3.4, ncols * (cell_in * len(depths) + 1.6))
    fig = new_figure(width, nrows * (cell_in * len(widths) + 0.9) + 0.5)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for j, kind in enumerate(kinds):
        vals = table[kind].astype(float) * 100
        vmin, vmax = float(np.nanmin(vals)), float(np.nanmax(vals))
        vmin, vmax = (vmin - 0.5, vmax + 0.5) if vmax - vmin < 1e-9 else (vmin, vmax)
        im = None
        for i, obj in enumerate(objectives):
            ax = axes[i, j]
            sub = table if obj == "all" else table[table["objective"].astype(str) == obj]
            grid = np.full((len(widths), len(depths)), np.nan)
            count = np.zeros_like(grid, dtype=int)
            for _, r in sub.iterrows():
                y, x = widths.index(int(r["width"])), depths.index(int(r["depth"]))
                v = 100 * float(r[kind])
                grid[y, x] = (
                    v if count[y, x] == 0 else (grid[y, x] * count[y, x] + v) / (count[y, x] + 1)
                )
                count[y, x] += 1
            im = ax.imshow(
                np.ma.masked_invalid(grid),
                origin="lower",
                cmap=SEQUENTIAL_CMAP,
                vmin=vmin,
                vmax=vmax,
                aspect="auto",
            )
            for (y, x), v in np.ndenumerate(grid):
                if np.isfinite(v):
                    frac = (v - vmin) / (vmax - vmin)
                    txt = f"{v:.1f}" + (f"\nn={count[y, x]}" if count[y, x] > 1 else "")
                    ax.text(
                        x,
                        y,
                        txt,
                        ha="center",
                        va="center",
                        fontsize=6.5,
                        color="black" if frac > 0.55 else "white",
                    )
            ax.set_xticks(range(len(depths)), [str(d) for d in depths])
            ax.set_yticks(range(len(widths)), [str(w) for w in widths])
            ax.set_xlabel("depth (layers)")
            ax.set_ylabel("width (dim)" if j == 0 else "")
            tasks = table.attrs.get(f"{kind}_tasks")
            title = f"{kind}" + (f" ({', '.join(tasks)})" if tasks else "")
            ax.set_title(title + (f"\nobjective: {obj}" if obj != "all" else ""), fontsize=7)
            ax.set_facecolor("#f0f0f0")
            ax.grid(False)
            finish_axes(ax)
        if im is not None:
            cb = fig.colorbar(im, ax=list(axes[:, j]), shrink=0.85)
            cb.set_label(f"{kind} score (%)")
            cb.ax.tick_params(labelsize=7)
    fig.suptitle(f"depth × width sweep ({score_name}; blank = not trained)")
    return fig


# ---------------------------------------------------------------------------------------------
# figure 5


@styled
def plot_ws_weights(probe: xr.Dataset, styles: ModelStyles | None = None) -> Figure:
    """Figure 5: weighted-sum probe layer weights per task and model, layer norms beside.

    Weights are drawn as ``weight × (L + 1)`` so that 1 means "uniform" for every model depth;
    the last panel shows each layer's mean feature norm (averaged over tasks, log scale), which
    the softmax weights must be read against.

    Args:
        probe: the probe dataset with ``ws_weight`` (and optionally ``layer_norm``).
        styles: model → style mapping.
    """
    styles = styles or default_styles(probe)
    tasks = ordered_tasks(probe)
    has_norm = "layer_norm" in probe
    n = len(tasks) + int(has_norm)
    nrows = math.ceil(n / 4)
    ncols = math.ceil(n / nrows)
    fig = new_figure(figure_width(ncols, 1.7), 2.1 * nrows + 0.4)
    grid = fig.subplots(nrows, ncols, squeeze=False)
    for ax in grid.ravel()[n:]:
        fig.delaxes(ax)
    axes = list(grid.ravel()[:n])
    models = [str(m) for m in probe["model"].values]
    for k, (ax, t) in enumerate(zip(axes, tasks, strict=False)):
        for m in styles.order(models):
            layers = _layers(probe, m)
            w = probe["ws_weight"].sel(model=m, task=t, layer=layers).values.astype(float)
            if not np.isfinite(w).any():
                continue
            ax.plot(relative_depth(layers, layers[-1]), w * len(layers), **styles[m].line_kwargs())
        ax.axhline(1.0, color="#888888", linestyle=":", linewidth=1.0)
        ax.set_title(t)
        ax.set_ylabel("weight × (L+1)\n(1 = uniform)" if k % ncols == 0 else "")
        _rel_depth_axes(ax)
    if has_norm:
        ax = axes[-1]
        for m in styles.order(models):
            layers = _layers(probe, m)
            norm = probe["layer_norm"].sel(model=m, layer=layers).mean("task", skipna=True)
            ax.plot(relative_depth(layers, layers[-1]), norm.values.astype(float), **styles[m].line_kwargs())
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_locator(NullLocator())
        ax.set_title("layer norm")
        ax.set_ylabel("mean L2 norm (avg. over tasks)")
        _rel_depth_axes(ax)
    _legend(fig, styles, models, twins=bool(probe["is_null"].values.any()))
    return fig


# ---------------------------------------------------------------------------------------------
# figure 6


@styled
def plot_label_cca_rank(
    labels: xr.Dataset | None, spectrum: xr.Dataset | None, styles: ModelStyles | None = None
) -> Figure:
    """Figure 6: label-CCA (one panel per label) and effective rank against relative depth.

    Args:
        labels: ``labels.nc`` (dims model, label, layer), or ``None``.
        spectrum: ``spectrum.nc`` (dims model, layer), or ``None``.
        styles: model → style mapping.
    """
    if labels is None and spectrum is None:
        raise ValueError("plot_label_cca_rank needs labels or spectrum")
    styles = styles or default_styles(labels, spectrum)
    label_names = [str(v) for v in labels["label"].values] if labels is not None else []
    n = len(label_names) + int(spectrum is not None)
    fig = new_figure(figure_width(n, 1.8), 2.5)
    axes = list(fig.subplots(1, n, squeeze=False)[0])
    models: list[str] = []
    if labels is not None:
        models += [str(m) for m in labels["model"].values]
        for ax, lab in zip(axes, label_names, strict=False):
            for m in styles.order([str(x) for x in labels["model"].values]):
                layers = _layers(labels, m)
                y = labels["label_cca"].sel(model=m, label=lab, layer=layers).values.astype(float)
                ax.plot(relative_depth(layers, layers[-1]), y, **styles[m].line_kwargs())
            ax.set_title(f"label-CCA: {lab}")
            ax.set_ylabel("mean canonical correlation")
            _rel_depth_axes(ax)
    if spectrum is not None:
        ax = axes[-1]
        smodels = [str(x) for x in spectrum["model"].values]
        models += [m for m in smodels if m not in models]
        for m in styles.order(smodels):
            layers = _layers(spectrum, m)
            y = spectrum["effective_rank"].sel(model=m, layer=layers).values.astype(float)
            ax.plot(relative_depth(layers, layers[-1]), y, **styles[m].line_kwargs())
        ax.set_title("effective rank")
        ax.set_ylabel("exp(spectral entropy)")
        _rel_depth_axes(ax)
    null_any = any(
        bool(ds["is_null"].values.any())
        for ds in (labels, spectrum)
        if ds is not None and "is_null" in ds
    )
    _legend(fig, styles, models, twins=null_any)
    return fig


# ---------------------------------------------------------------------------------------------
# figure 7


@styled
def plot_superb_units(
    published: pd.DataFrame,
    measured: pd.DataFrame,
    tasks: Sequence[SuperbTask],
    styles: ModelStyles | None = None,
    models: Sequence[str] | None = None,
) -> Figure:
    """Figure 7: published SUPERB rows and this study's scores in SUPERB units, in two rows.

    Top row ("published, SUPERB protocol"): one dot per published model and task. Bottom row
    ("measured here, deepwide protocol"): each model's score ± 95 % CI, random twins hollow,
    ``†`` beside a best-layer score. The rows never share an axis (different protocols: not
    comparable); within a row the panels share the model axis: the published models in the
    source's order, the measured ones in style order (each model followed by its random twin),
    neither ranked by score.

    Args:
        published: rows like :attr:`~deepwide.figures.superb.PublishedSuperb.rows` (in %).
        measured: :func:`~deepwide.figures.superb.superb_scores` (model, column, score,
            ci_low, ci_high in %, source).
        tasks: the SUPERB tasks to draw, one column each (those with a measurement).
        styles: model → style mapping.
        models: the measured model ids to draw (default: those of ``measured``).
    """
    styles = styles or ModelStyles({})
    models = list(models) if models is not None else list(dict.fromkeys(measured["model"]))
    models = [m for m in styles.order(models) if m in set(measured["model"])]
    n_pub, n_meas = len(published), len(models)
    fig = new_figure(figure_width(len(tasks), 1.5) + 1.2, 0.16 * (n_pub + n_meas) + 2.2)
    top, bottom = _subfigures(fig, [n_pub + 4, n_meas + 4], rows=True)
    top.suptitle(f"{PUBLISHED_LABEL} (Ashihara et al. 2022 and neighbours)", color=PUBLISHED_COLOR)
    bottom.suptitle(f"{MEASURED_LABEL} (weighted-sum probe, 95 % CI; † best layer)")
    pub_axes = top.subplots(1, len(tasks), squeeze=False, sharey=True)[0]
    meas_axes = bottom.subplots(1, len(tasks), squeeze=False, sharey=True)[0]
    y_pub = np.arange(n_pub)[::-1]
    y_meas = {m: n_meas - 1 - i for i, m in enumerate(models)}
    for j, st in enumerate(tasks):
        ax = pub_axes[j]
        ax.scatter(published[st.column], y_pub, marker="s", s=14, color=PUBLISHED_COLOR, zorder=3)
        ax.set_title(st.column, color=PUBLISHED_COLOR)
        ax.set_xlabel(st.header)
        ax = meas_axes[j]
        sub = measured[measured["column"] == st.column].set_index("model")
        for m in models:
            if m not in sub.index:
                continue
            r, sty, y = sub.loc[m], styles[m], y_meas[m]
            s, lo, hi = float(r["score"]), float(r["ci_low"]), float(r["ci_high"])
            _ci_point(ax, s, y, sty, markersize=4, xerr=[[max(s - lo, 0.0)], [max(hi - s, 0.0)]])
            if r["source"] == "best layer":
                ax.annotate("†", (s, y), xytext=(4, 2), textcoords="offset points", fontsize=7)
        ax.set_title(f"{st.column} ({st.task})")
        ax.set_xlabel(st.header)
    for ax, labels, ys in (
        (pub_axes[0], list(published["model"]), y_pub),
        (meas_axes[0], models, [y_meas[m] for m in models]),
    ):
        ax.set_yticks(list(ys), labels)
    for ax in (*pub_axes, *meas_axes):
        ax.margins(x=0.15, y=0.08)
        ax.grid(axis="y", visible=False)
        finish_axes(ax)
    return fig


# ---------------------------------------------------------------------------------------------
# distillation curves


@styled
def plot_distill_curves(curves: pd.DataFrame, styles: ModelStyles | None = None) -> Figure:
    """Training and held-out distillation loss against the optimiser step, one line per student.

    Args:
        curves: ``distill_curves.csv`` (columns model, step, train_loss, heldout_loss; NaN
            where a step has only the other loss).
        styles: model → style mapping; without one, or when it lacks a student, the students
            get the palette in id order.
    """
    models = [str(m) for m in dict.fromkeys(curves["model"])]
    if styles is None or any(m not in styles for m in models):
        styles = model_styles(models, num_layers={}, dim={}, null_of={}, teacher=None)
    fig = new_figure(figure_width(2, 2.6), 2.4)
    axes = list(fig.subplots(1, 2, squeeze=False, sharey=True)[0])
    for ax, column, title in (
        (axes[0], "train_loss", "training loss (logged window mean)"),
        (axes[1], "heldout_loss", "held-out loss"),
    ):
        for m in styles.order(models):
            rows = curves[(curves["model"] == m) & curves[column].notna()]
            if not rows.empty:
                ax.plot(rows["step"].to_numpy(), rows[column].to_numpy(float), markersize=3,
                        markevery=max(1, len(rows) // 10), **styles[m].line_kwargs())
        ax.set_title(title)
        ax.set_xlabel("optimiser step")
        finish_axes(ax)
    axes[0].set_ylabel("distillation loss")
    _legend(fig, styles, models, twins=False)
    return fig


__all__ = [
    "default_styles",
    "metric_label",
    "plot_distill_curves",
    "plot_depth_width_grid",
    "plot_label_cca_rank",
    "plot_params_vs_score",
    "plot_probe_curves",
    "plot_similarity_heatmaps",
    "plot_superb_units",
    "plot_ws_weights",
]
