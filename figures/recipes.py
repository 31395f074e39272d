"""The paper figures of a results folder: which figure needs which file, and writing them.

:func:`make_figures` reads only results files (docs/results-schema.md), builds every figure
its inputs allow, writes each as PNG and PDF, and logs one line for each figure it skips.
:func:`build_figures` is the same without writing; the report uses it.

Figures (file stems):

1. ``fig1_probe_curves`` — probe score ± CI against relative depth, one panel per task.
2. ``fig2_similarity_<measure>`` — teacher × student similarity heatmaps (+ the nulls).
3. ``fig3_params_vs_score`` — parameters against score, published SUPERB models beside.
4. ``fig4_depth_width_grid`` — the sweep's depth × width grid by content and speaker score.
5. ``fig5_ws_weights`` — weighted-sum layer weights per task and model, layer norms beside.
6. ``fig6_label_cca_rank`` — label-CCA and effective rank against relative depth.
7. ``fig7_superb_units`` — published SUPERB rows and this study's scores in SUPERB units,
   in separate rows (never on a shared axis).
8. ``fig8_distill_curves`` — each student's training and held-out distillation loss against
   the step (``distill_curves.csv``; left out without a note for older results that lack it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from deepwide.config import atomic_write_bytes
from deepwide.figures import plots
from deepwide.figures.curves import PLATEAU_RULE, read_distill_curves
from deepwide.figures.results import (
    Results,
    best_layer_tasks,
    headline_scores,
    kind_scores,
    load_results,
    model_facts,
    model_roles,
)
from deepwide.figures.style import ModelStyles, figure_bytes, model_styles
from deepwide.figures.superb import measured_superb_tasks, published_superb, superb_scores

log = logging.getLogger(__name__)

MEASURE_ORDER = ("cka", "cka-debiased", "cka-rbf", "svcca", "pwcca")


@dataclass
class BuiltFigure:
    """One drawn figure: its file stem, a title, a caption saying what it shows, the Figure."""

    stem: str
    title: str
    caption: str
    figure: Figure


@dataclass
class SkippedFigure:
    """A figure the inputs did not allow, and why."""

    stem: str
    title: str
    reason: str


class _Skip(Exception):
    """Raised by a recipe whose inputs are missing (a note, not an error)."""


def study_styles(res: Results) -> ModelStyles:
    """The fixed model → style mapping of one results folder (teacher black, twins dashed)."""
    facts = model_facts(res)
    roles = model_roles(res, facts)
    teacher = next((m for m, r in roles.items() if r == "teacher"), None)
    return model_styles(
        list(facts.index),
        num_layers=facts["num_layers"].to_dict(),
        dim=facts["dim"].to_dict(),
        null_of={
            m: (facts.loc[m, "null_of"] or ("?" if facts.loc[m, "is_null"] else ""))
            for m in facts.index
        },
        teacher=teacher,
    )


def sweep_table(res: Results) -> pd.DataFrame:
    """One row per student: model, depth, width, objective, and content/speaker score.

    Depth and width are the models' ``num_layers`` and ``dim``; the scores are the mean headline
    score per task kind (see :func:`~deepwide.figures.results.kind_scores`).
    """
    if res.probe is None:
        raise _Skip("needs probe.nc")
    facts = model_facts(res)
    roles = model_roles(res, facts)
    students = [m for m, r in roles.items() if r == "student"]
    scores, _ = headline_scores(res.probe)
    ks = kind_scores(scores, res.probe)
    rows = []
    for m in students:
        if m not in ks.index:
            continue
        row = {
            "model": m,
            "depth": int(facts.loc[m, "num_layers"]),
            "width": int(facts.loc[m, "dim"]),
        }
        if "objective" in facts.columns and isinstance(facts.loc[m, "objective"], str):
            row["objective"] = facts.loc[m, "objective"]
        for k in ks.columns:
            row[k] = float(ks.loc[m, k])
        rows.append(row)
    table = pd.DataFrame(rows)
    table.attrs.update(ks.attrs)
    return table


# ---------------------------------------------------------------------------------------------
# one recipe per figure: Results, styles -> list of BuiltFigure (or _Skip)


def _layerwise_probe_curves(res: Results, styles: ModelStyles) -> list[BuiltFigure]:
    """Paper figure 1: probe score ± CI against relative depth, one panel per task."""
    if res.probe is None:
        raise _Skip("needs probe.nc")
    fig = plots.plot_probe_curves(res.probe, styles)
    return _single(
        "fig1_probe_curves",
        "Test score of a linear probe on each layer (95 % bootstrap CI shaded) against relative "
        "depth (layer / number of layers); content tasks left, speaker tasks right. Dashed: "
        "random-weight twins; dotted grey: majority class.",
        fig,
    )


def _similarity_heatmaps(res: Results, styles: ModelStyles) -> list[BuiltFigure]:
    """Paper figure 2: teacher × student similarity heatmaps, one figure per measure (+ nulls)."""
    if not res.similarities:
        raise _Skip("needs similarity_<measure>_*.nc files")
    by_measure: dict[str, list] = {}
    for g in res.similarities:
        by_measure.setdefault(str(g.attrs.get("measure", "similarity")), []).append(g)
    order = sorted(
        by_measure, key=lambda m: (MEASURE_ORDER.index(m) if m in MEASURE_ORDER else 99, m)
    )
    out = []
    for measure in order:
        grids = by_measure[measure]
        grids = [grids[i] for i in _style_sorted_index(grids, styles)]
        fig = plots.plot_similarity_heatmaps(grids, styles)
        label = plots.MEASURE_LABELS.get(measure, measure)
        out.append(
            BuiltFigure(
                f"fig2_similarity_{measure}",
                f"{label}: teacher × student",
                f"{label} between every teacher layer (rows) and every student layer (columns), "
                "one panel per student; the lower row replaces the student by its random twin (the "
                "null). 1 = identical up to the measure's invariances.",
                fig,
            )
        )
    return out


def _style_sorted_index(grids: list, styles: ModelStyles) -> list[int]:
    names = [str(g.attrs.get("model_b")) for g in grids]
    ordered = styles.order(names)
    return sorted(range(len(grids)), key=lambda i: ordered.index(names[i]))


def _params_against_score(res: Results, styles: ModelStyles) -> list[BuiltFigure]:
    """Paper figure 3: parameters against score, the published SUPERB models beside."""
    if res.probe is None:
        raise _Skip("needs probe.nc")
    if not pd.notna(res.probe["params"].values).any():
        raise _Skip("probe.nc has no params")
    scores, name = headline_scores(res.probe)
    notes = {} if name == "best layer" else {t: "best layer" for t in best_layer_tasks(scores)}
    fig = plots.plot_params_vs_score(
        scores, res.probe, published_superb().rows, styles, name, title_notes=notes
    )
    return _single(
        "fig3_params_vs_score",
        f"Top: this study's models, {name} score with 95 % CI against parameter count (log "
        "scale); hollow markers are random twins. Bottom: the published SUPERB results of "
        "Ashihara et al. (2022) and neighbours, on their own axes — a context layer of other "
        "models, corpora and metrics (PER, EER: lower is better), not a comparison.",
        fig,
    )


def _depth_width_grid(res: Results, styles: ModelStyles) -> list[BuiltFigure]:
    """Paper figure 4: the students on the depth × width grid, by content and speaker score."""
    table = sweep_table(res)
    if len(table) < 2 or (table["depth"].nunique() < 2 and table["width"].nunique() < 2):
        raise _Skip("needs at least two students that differ in depth or width")
    _, name = headline_scores(res.probe)  # type: ignore[arg-type]
    fig = plots.plot_depth_width_grid(table, name)
    return _single(
        "fig4_depth_width_grid",
        f"Each trained student at its depth (layers) and width (dim), coloured by the mean "
        f"{name} score over content tasks and over speaker tasks (EER enters as 1 − EER); "
        "one row per distillation objective.",
        fig,
    )


def _weighted_sum_weights(res: Results, styles: ModelStyles) -> list[BuiltFigure]:
    """Paper figure 5: weighted-sum layer weights per task and model, layer norms beside."""
    if res.probe is None or "ws_weight" not in res.probe:
        raise _Skip("needs ws_weight in probe.nc")
    fig = plots.plot_ws_weights(res.probe, styles)
    return _single(
        "fig5_ws_weights",
        "Softmax layer weights of the weighted-sum probe, scaled by the number of layers (1 = "
        "uniform), against relative depth; last panel: each layer's mean feature norm, which "
        "the weights multiply.",
        fig,
    )


def _label_cca_and_rank(res: Results, styles: ModelStyles) -> list[BuiltFigure]:
    """Paper figure 6: label-CCA and effective rank against relative depth."""
    if res.labels is None and res.spectrum is None:
        raise _Skip("needs labels.nc or spectrum.nc")
    fig = plots.plot_label_cca_rank(res.labels, res.spectrum, styles)
    parts = (
        ["label-CCA (mean canonical correlation with one-hot labels)"]
        if res.labels is not None
        else []
    ) + (["effective rank (exp of the spectral entropy)"] if res.spectrum is not None else [])
    return _single(
        "fig6_label_cca_rank",
        f"{' and '.join(parts)} of each layer against relative depth; dashed: random twins.",
        fig,
    )


def _superb_units(res: Results, styles: ModelStyles) -> list[BuiltFigure]:
    """Figure 7: the published SUPERB rows and the measured scores in SUPERB units, apart."""
    if res.probe is None:
        raise _Skip("needs probe.nc")
    tasks = measured_superb_tasks(res.probe)
    if not tasks:
        raise _Skip("probe.nc has none of the SUPERB tasks (pr, ks, ic, sid, er, asr, asv)")
    pub = published_superb()
    measured = superb_scores(res.probe)
    fig = plots.plot_superb_units(
        pub.rows, measured, tasks, styles, [str(m) for m in res.probe["model"].values]
    )
    return _single(
        "fig7_superb_units",
        "Top: the published SUPERB results (Ashihara et al. 2022, Table 2, and neighbours; "
        "SUPERB protocol). Bottom: this study's models on the same tasks in the same units "
        "(PER, WER, EER: lower is better; accuracy), weighted-sum probe score with 95 % CI, "
        "† where only the best single layer has a score; hollow markers are random twins. "
        "Only tasks the results measure are drawn. deepwide's protocol (linear probes on "
        "cached features, synthetic or smaller data) is not SUPERB's: the rows are not "
        "comparable and have separate axes.",
        fig,
    )


def _distill_curves(res: Results, styles: ModelStyles) -> list[BuiltFigure]:
    """Figure 8: training and held-out distillation loss against the step, one line per student.

    Results from before the held-out loss have no ``distill_curves.csv``: the figure is then
    left out quietly (no skip note), as the report's optional sections are.
    """
    curves = read_distill_curves(res.root)
    if curves is None:
        log.debug("no distill_curves.csv in %s (older results): no distillation curves", res.root)
        return []
    if curves.empty:
        raise _Skip("distill_curves.csv has no rows")
    fig = plots.plot_distill_curves(curves, styles)
    return _single(
        "fig8_distill_curves",
        "Distillation loss of each student against the optimiser step: left, the training loss "
        "(mean over each logged window of training batches); right, the held-out loss (the same "
        f"objective, student in eval mode). {PLATEAU_RULE}",
        fig,
    )


RECIPES: list[tuple[str, str, Callable[[Results, ModelStyles], list[BuiltFigure]]]] = [
    ("fig1_probe_curves", "Layerwise probes", _layerwise_probe_curves),
    ("fig2_similarity", "Similarity heatmaps", _similarity_heatmaps),
    ("fig3_params_vs_score", "Parameters against score", _params_against_score),
    ("fig4_depth_width_grid", "Depth × width", _depth_width_grid),
    ("fig5_ws_weights", "Weighted-sum layer weights", _weighted_sum_weights),
    ("fig6_label_cca_rank", "Label-CCA and effective rank", _label_cca_and_rank),
    ("fig7_superb_units", "SUPERB units: published and measured", _superb_units),
    ("fig8_distill_curves", "Distillation curves", _distill_curves),
]


def _single(stem: str, caption: str, fig: Figure) -> list[BuiltFigure]:
    """The one figure of a single-figure recipe, with its title from :data:`RECIPES`."""
    title = next(t for s, t, _ in RECIPES if s == stem)
    return [BuiltFigure(stem, title, caption, fig)]


def build_figures(res: Results) -> tuple[list[BuiltFigure], list[SkippedFigure]]:
    """Draw every figure ``res`` allows; log and return a note for each one it cannot draw."""
    styles = study_styles(res) if res.model_datasets else ModelStyles({})
    built: list[BuiltFigure] = []
    skipped: list[SkippedFigure] = []
    for stem, title, recipe in RECIPES:
        try:
            built.extend(recipe(res, styles))
        except _Skip as note:
            log.warning("skipping %s (%s): %s in %s", stem, title, note, res.root)
            skipped.append(SkippedFigure(stem, title, str(note)))
    return built, skipped


def make_figures(results_dir: str | Path, out_dir: str | Path) -> list[Path]:
    """Write the paper figures of ``results_dir`` to ``out_dir`` as PNG and PDF.

    Args:
        results_dir: a results folder (probe.nc, similarity_*.nc, labels.nc, spectrum.nc,
            distill.csv, distill_curves.csv; any may be missing).
        out_dir: where ``<stem>.png`` and ``<stem>.pdf`` go (created if needed).

    Returns:
        The written paths, PNG then PDF for each figure, in figure order.

    Raises:
        ConfigError: ``results_dir`` does not exist.
        StoreError: a results file does not follow the schema.
    """
    res = load_results(results_dir)
    out = Path(out_dir)
    built, _ = build_figures(res)
    paths: list[Path] = []
    for bf in built:
        for fmt in ("png", "pdf"):
            path = out / f"{bf.stem}.{fmt}"
            atomic_write_bytes(path, figure_bytes(bf.figure, fmt))
            paths.append(path)
        log.info("wrote %s.{png,pdf}", out / bf.stem)
    if not built:
        log.warning("no figure could be drawn from %s", res.root)
    return paths
