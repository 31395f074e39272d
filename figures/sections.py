"""The report's sections other than the findings: the setup (models, corpus, seeds, tasks, and
whether each student is trained to a plateau), the score tables, the SUPERB-units tables (published and measured, apart), and the method notes on
how each interval was computed."""

from __future__ import annotations

import math

import pandas as pd

from deepwide.figures.curves import PLATEAU_RULE, plateau_table
from deepwide.figures.document import Doc, Table
from deepwide.figures.formatting import fmt_params, format_cell, metric_name, pts, score_ci
from deepwide.figures.results import Results, best_layer_table, ordered_tasks, task_info, ws_table
from deepwide.figures.superb import (
    CAVEAT,
    MEASURED_LABEL,
    PUBLISHED_LABEL,
    SUPERB_TASKS,
    published_superb,
    superb_scores,
)


def add_setup_section(doc: Doc, res: Results, facts: pd.DataFrame, roles: dict[str, str]) -> None:
    """The models and their roles, the corpus and seeds from the results' attrs, the tasks, and
    whether each student is trained to a plateau (:func:`add_plateau_section`)."""
    doc.h(2, "Setup")
    if facts.empty:
        doc.p(
            "No results file with a model dimension (probe.nc, labels.nc, spectrum.nc) was found."
        )
    else:
        rows = []
        for m in facts.index:
            f = facts.loc[m]
            role = roles.get(m, "")
            if role == "null":
                role = f"random twin of {f['null_of']}" if f["null_of"] else "random (null)"
            rows.append(
                [
                    m,
                    role,
                    str(f["num_layers"]),
                    str(f["dim"]),
                    fmt_params(float(f["params"])),
                    format_cell(f.get("objective")),
                    format_cell(f.get("steps")),
                    format_cell(f.get("final_loss")),
                ]
            )
        doc.table(
            Table(
                [
                    "model",
                    "role",
                    "layers (depth)",
                    "width (dim)",
                    "parameters",
                    "objective",
                    "distillation steps",
                    "final loss",
                ],
                rows,
                "From the per-model facts of the results files and distill.csv.",
            )
        )
    attrs: dict[str, set[str]] = {}
    for ds in [*res.model_datasets, *res.similarities]:
        for key in (
            "corpus",
            "corpus_id",
            "seed",
            "deepwide_version",
            "created",
            "n_samples",
            "frames_per_utt",
        ):
            if key in ds.attrs:
                attrs.setdefault(key, set()).add(str(ds.attrs[key]))
    corpus = attrs.get("corpus") or attrs.get("corpus_id")
    items = [
        "corpus: "
        + (", ".join(sorted(corpus)) if corpus else "not recorded in the results' attrs"),
        "seeds: " + (", ".join(sorted(attrs["seed"])) if "seed" in attrs else "not recorded"),
    ]
    if "n_samples" in attrs:
        items.append("similarity samples (frames): " + ", ".join(sorted(attrs["n_samples"])))
    if "deepwide_version" in attrs:
        items.append("deepwide version: " + ", ".join(sorted(attrs["deepwide_version"])))
    if "created" in attrs:
        items.append("results created: " + ", ".join(sorted(attrs["created"])))
    items.append("inputs found: " + (", ".join(res.available()) or "none"))
    doc.ul(items)
    if res.probe is not None:
        info = task_info(res.probe)
        rows = []
        for t in ordered_tasks(res.probe):
            r = info.loc[t]
            rows.append(
                [
                    t,
                    str(r["kind"]),
                    str(r.get("level", "")),
                    metric_name(info, t),
                    format_cell(r.get("n_train")),
                    format_cell(r.get("n_test")),
                    pts(float(r.get("majority", math.nan))),
                ]
            )
        doc.table(
            Table(
                [
                    "task",
                    "kind",
                    "level",
                    "metric",
                    "train samples",
                    "test samples",
                    "majority class (%)",
                ],
                rows,
                "Probing tasks as recorded in probe.nc.",
            )
        )
    add_plateau_section(doc, res)


def add_plateau_section(doc: Doc, res: Results) -> None:
    """Each student's final held-out loss, its fall over the last quarter of the evaluations and
    whether it counts as trained by the plateau rule; nothing when ``distill.csv`` lacks the
    held-out columns (older results)."""
    table = plateau_table(res.distill)
    if table is None:
        return
    doc.h(3, "Trained to a plateau?")
    doc.p(PLATEAU_RULE)
    rows = [
        [
            str(r["model"]),
            format_cell(r.get("steps")),
            _loss(r.get("final_loss")),
            _loss(r["heldout_loss"]),
            f"{100 * float(r['plateau_fall']):.2f}" if math.isfinite(float(r["plateau_fall"])) else "—",
            "yes" if r["plateaued"] else "no",
        ]
        for _, r in table.iterrows()
    ]
    n = sum(bool(r["plateaued"]) for _, r in table.iterrows())
    doc.table(
        Table(
            ["model", "distillation steps", "final training loss", "final held-out loss",
             "held-out fall over the last quarter (%)", "trained (plateaued)"],
            rows,
            f"From distill.csv; {n} of {len(rows)} students count as trained. Training loss: the "
            "mean of the last logged window; held-out loss: the last evaluation. — : fewer than "
            "three held-out evaluations.",
        )
    )
    if n < len(rows):
        doc.p(
            "Students that do not count as trained were still improving on held-out utterances when "
            "distillation stopped: their probing scores may understate what their architecture "
            "reaches with more steps."
        )


def _loss(v: object) -> str:
    try:
        x = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "—"
    return f"{x:.4f}" if math.isfinite(x) else "—"


def add_tables_section(doc: Doc, res: Results, roles: dict[str, str]) -> None:
    """Best single layer per task and the weighted-sum probe per task, score [95 % CI]."""
    assert res.probe is not None
    probe = res.probe
    tasks = ordered_tasks(probe)
    best = best_layer_table(probe).set_index(["model", "task"])
    doc.h(2, "Tables")
    doc.h(3, "Best single layer per task")
    rows = []
    for m in probe["model"].values:
        row = [m]
        for t in tasks:
            if (m, t) in best.index:
                r = best.loc[(m, t)]
                row.append(
                    f"{score_ci(r['score'], r['ci_low'], r['ci_high'])} at layer {int(r['layer'])} ({r['rel_depth']:.2f})"
                )
            else:
                row.append("—")
        rows.append(row)
    doc.table(
        Table(
            ["model"] + tasks,
            rows,
            "Score in % [95 % bootstrap CI] of the best layer, its index and relative depth; the best "
            "layer is chosen on the test scores, so these scores are optimistic.",
        )
    )
    ws = ws_table(probe)
    if ws is not None:
        doc.h(3, "Weighted-sum probe per task")
        wsi = ws.set_index(["model", "task"])
        rows = [
            [m]
            + [
                score_ci(*wsi.loc[(m, t), ["score", "ci_low", "ci_high"]])
                if (m, t) in wsi.index
                else "—"
                for t in tasks
            ]
            for m in probe["model"].values
        ]
        doc.table(
            Table(
                ["model"] + tasks,
                rows,
                "Score in % [95 % bootstrap CI] of a probe on the softmax-weighted sum of all layers "
                "(weights learnt on train, as in SUPERB).",
            )
        )


def add_superb_section(doc: Doc, res: Results) -> None:
    """Every model's scores in SUPERB units beside the published SUPERB rows, as two tables.

    The blocks are never sorted or ranked together: the published rows keep their source's
    order, the measured rows the probe's model order; a task the results lack is ``—``.
    """
    assert res.probe is not None
    pub = published_superb()
    header = ["model", "params (M)"] + [st.header for st in SUPERB_TASKS]
    doc.h(2, "SUPERB units")
    doc.p(
        "Each model's score on the SUPERB tasks the results have, in SUPERB's units (PER, WER "
        "and EER in %, lower is better (↓); accuracy in %), and apart from them the published "
        "SUPERB rows."
    )
    doc.p("Caveat: " + CAVEAT)
    doc.h(3, PUBLISHED_LABEL)
    rows = [
        [r["model"], f"{r['params_m']:.2f}"]
        + [f"{r[st.column]:.2f}" for st in SUPERB_TASKS]
        + [r["source"]]
        for _, r in pub.rows.iterrows()
    ]
    doc.table(
        Table(
            header + ["source"],
            rows,
            f"{PUBLISHED_LABEL}. Source: {pub.citation} (the rows whose source column says so; "
            f"the others from their own papers). Protocol: {pub.protocol}. In the source's order, "
            "not ranked; parameters as published (HuBERT Base counts its pre-training heads).",
        )
    )
    doc.h(3, MEASURED_LABEL)
    scores = superb_scores(res.probe).set_index(["model", "column"])
    params = dict(
        zip(res.probe["model"].values, res.probe["params"].values.astype(float), strict=True)
    )
    rows = []
    for m in res.probe["model"].values:
        row = [m, f"{params[m] / 1e6:.2f}" if math.isfinite(params[m]) else "—"]
        for st in SUPERB_TASKS:
            if (m, st.column) in scores.index:
                r = scores.loc[(m, st.column)]
                mark = f"† (layer {int(r['layer'])})" if r["source"] == "best layer" else ""
                row.append(f"{r['score']:.1f}{mark}")
            else:
                row.append("—")
        rows.append(row)
    doc.table(
        Table(
            header,
            rows,
            f"{MEASURED_LABEL}: score in % on the test split of the weighted-sum probe (layer "
            "weights learnt on train, as SUPERB's downstreams sit on the weighted sum); † the "
            "model has no weighted-sum score for that task, so it is its best single layer's "
            "(chosen on test, optimistic). — : the results have no such task. In the probe's "
            "model order, not ranked. Not comparable with the published block.",
        )
    )


def add_method_notes(doc: Doc) -> None:
    """The method notes: where the intervals come from and what the headline score is."""
    doc.h(2, "Method notes")
    doc.ul(
        [
            "Per-model intervals are the stored 95 % bootstrap intervals (resampling test utterances).",
            "Differences between two models use MOVER (Zou & Donner 2008): lower = d − √((a − a_low)² + "
            "(b_high − b)²), upper = d + √((a_high − a)² + (b − b_low)²). It assumes the two models' "
            "errors are independent; both are scored on the same test utterances, so their errors are "
            "usually positively correlated and the true interval is narrower — these intervals are "
            "conservative. No bootstrap replicates are stored, so a paired bootstrap is not possible.",
            "The headline score is the weighted-sum probe where the results have it (its layer weights "
            "are learnt on train), else the best single layer (chosen on test, so optimistic).",
            "For EER (lower is better) an advantage is the reduction in EER.",
        ]
    )
