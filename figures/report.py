"""The study report: a self-contained HTML page and its Markdown twin, from results files only.

:func:`write_report` reads a results folder (docs/results-schema.md) and writes
``report.html`` (figures embedded as base64 PNG, inline CSS, no external resources) and
``report.md`` (figures as PNG files in ``report_figures/`` beside it). Sections:

- **Setup**: the models (role, depth, width, parameters, distillation objective), the corpus
  and seeds recorded in the results' attrs, and the probing tasks.
- **Findings**: deep-narrow against shallow-wide students per task, with a 95 % interval of the
  difference and a verdict against the paper's claim (depth for content, width for speaker);
  every model against its random twin; where in depth each kind of information peaks; how
  close each student's layers come to the teacher's.
- **Tables**: best single layer per task (score ± CI) and the weighted-sum probe per task.
- **Figures**, then **Method notes** on how each interval was computed.

Every number comes from the results files; nothing is hard-coded. Difference intervals are
derived from the two stored per-model 95 % bootstrap intervals by MOVER
(:func:`~deepwide.figures.results.mover_difference`), which is conservative here.
"""

from __future__ import annotations

import base64
import html
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from deepwide.config import atomic_write_bytes, atomic_write_text
from deepwide.figures.recipes import BuiltFigure, SkippedFigure, build_figures
from deepwide.figures.results import (
    Results,
    best_layer_table,
    best_layer_tasks,
    deep_wide_pairs,
    headline_scores,
    load_results,
    model_facts,
    model_roles,
    mover_difference,
    ordered_tasks,
    relative_depth,
    task_info,
    ws_table,
)
from deepwide.figures.style import figure_bytes

log = logging.getLogger(__name__)

REPORT_PNG_DPI = 150
#: Folder (beside report.md) holding the PNGs the Markdown twin links to.
FIGURE_DIR = "report_figures"

#: The paper's claim per task kind: which architecture it says wins.
PAPER_CLAIM = {"content": "deep", "speaker": "wide"}


# ---------------------------------------------------------------------------------------------
# a tiny document model rendered twice (HTML and Markdown)


@dataclass
class Table:
    """A table block."""

    header: list[str]
    rows: list[list[str]]
    caption: str = ""


@dataclass
class Doc:
    """An ordered list of blocks: (kind, payload) with kind in h1/h2/h3/p/ul/table/figure."""

    blocks: list[tuple[str, object]] = field(default_factory=list)

    def h(self, level: int, text: str) -> None:
        self.blocks.append((f"h{level}", text))

    def p(self, text: str) -> None:
        self.blocks.append(("p", text))

    def ul(self, items: Sequence[str]) -> None:
        if items:
            self.blocks.append(("ul", list(items)))

    def table(self, t: Table) -> None:
        self.blocks.append(("table", t))

    def figure(self, bf: BuiltFigure, png: bytes) -> None:
        self.blocks.append(("figure", (bf, png)))


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;max-width:1100px;
margin:2em auto;padding:0 1em;color:#111;line-height:1.45}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.8em}
table{border-collapse:collapse;margin:.8em 0;font-size:.88em}
th,td{border:1px solid #ccc;padding:.25em .55em;text-align:left;vertical-align:top}
th{background:#f3f3f3}caption{caption-side:bottom;text-align:left;color:#555;padding-top:.3em}
figure{margin:1.2em 0}figure img{max-width:100%;height:auto}
figcaption{color:#444;font-size:.9em}code{background:#f3f3f3;padding:0 .2em}
.note{color:#555}
"""


def render_html(doc: Doc, title: str) -> str:
    """The document as one self-contained HTML page (inline CSS, figures as data URIs)."""
    e = html.escape
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(title)}</title><style>{_CSS}</style></head><body>",
    ]
    for kind, payload in doc.blocks:
        if kind in ("h1", "h2", "h3"):
            out.append(f"<{kind}>{e(str(payload))}</{kind}>")
        elif kind == "p":
            out.append(f"<p>{e(str(payload))}</p>")
        elif kind == "ul":
            out.append("<ul>" + "".join(f"<li>{e(i)}</li>" for i in payload) + "</ul>")  # type: ignore[union-attr]
        elif kind == "table":
            t: Table = payload  # type: ignore[assignment]
            rows = "".join(
                "<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in t.rows
            )
            cap = f"<caption>{e(t.caption)}</caption>" if t.caption else ""
            head = "".join(f"<th>{e(h)}</th>" for h in t.header)
            out.append(f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif kind == "figure":
            bf, png = payload  # type: ignore[misc]
            b64 = base64.b64encode(png).decode("ascii")
            out.append(
                f'<figure id="{e(bf.stem)}"><img alt="{e(bf.title)}" '
                f'src="data:image/png;base64,{b64}"><figcaption><b>{e(bf.title)}.</b> '
                f"{e(bf.caption)}</figcaption></figure>"
            )
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def render_markdown(doc: Doc, figure_dir: str = FIGURE_DIR) -> str:
    """The document as Markdown; figures link to ``<figure_dir>/<stem>.png``."""
    out: list[str] = []
    for kind, payload in doc.blocks:
        if kind in ("h1", "h2", "h3"):
            out.append("#" * int(kind[1]) + " " + str(payload))
        elif kind == "p":
            out.append(str(payload))
        elif kind == "ul":
            out.append("\n".join(f"- {i}" for i in payload))  # type: ignore[union-attr]
        elif kind == "table":
            t: Table = payload  # type: ignore[assignment]
            cell = lambda c: str(c).replace("|", "\\|")  # noqa: E731
            lines = [
                "| " + " | ".join(cell(h) for h in t.header) + " |",
                "|" + "|".join("---" for _ in t.header) + "|",
            ]
            lines += ["| " + " | ".join(cell(c) for c in r) + " |" for r in t.rows]
            if t.caption:
                lines.append("\n*" + t.caption + "*")
            out.append("\n".join(lines))
        elif kind == "figure":
            bf, _ = payload  # type: ignore[misc]
            out.append(f"![{bf.title}]({figure_dir}/{bf.stem}.png)\n\n*{bf.title}.* {bf.caption}")
    return "\n\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------------
# number formatting


def pts(x: float) -> str:
    """A fraction as percentage points with one decimal (0.1234 → "12.3")."""
    return "n/a" if not np.isfinite(x) else f"{100 * x:.1f}"


def score_ci(s: float, lo: float, hi: float) -> str:
    """``"87.1 [85.0, 89.0]"`` in percent."""
    return f"{pts(s)} [{pts(lo)}, {pts(hi)}]"


def fmt_params(p: float) -> str:
    """Parameter count as "23.49 M" or "412.3 k"."""
    if not np.isfinite(p):
        return "n/a"
    return f"{p / 1e6:.2f} M" if p >= 1e6 else f"{p / 1e3:.1f} k"


# ---------------------------------------------------------------------------------------------
# findings


@dataclass
class Comparison:
    """``a`` against ``b`` on one task, oriented so that a positive ``adv`` means ``a`` is better."""

    task: str
    a: str
    b: str
    adv: float
    lo: float
    hi: float

    @property
    def decided(self) -> bool:
        """Whether the 95 % interval of the difference excludes 0."""
        return self.lo > 0 or self.hi < 0


def compare(
    scores: pd.DataFrame, a: str, b: str, task: str, higher_is_better: bool
) -> Comparison | None:
    """Advantage of ``a`` over ``b`` on ``task`` with its MOVER interval, or ``None`` if missing."""
    idx = scores.set_index(["model", "task"])
    if (a, task) not in idx.index or (b, task) not in idx.index:
        return None
    ra, rb = idx.loc[(a, task)], idx.loc[(b, task)]
    d, lo, hi = mover_difference(
        float(ra["score"]),
        float(ra["ci_low"]),
        float(ra["ci_high"]),
        float(rb["score"]),
        float(rb["ci_low"]),
        float(rb["ci_high"]),
    )
    if not all(map(np.isfinite, (d, lo, hi))):
        return None
    if not higher_is_better:  # lower is better: advantage of a is b − a
        d, lo, hi = -d, -hi, -lo
    return Comparison(task, a, b, d, lo, hi)


def _beats(c: Comparison, name_a: str, name_b: str, metric: str) -> str:
    """One sentence: who beats whom by how much, with the interval, winner-oriented."""
    if c.adv >= 0:
        win, lose, d, lo, hi = name_a, name_b, c.adv, c.lo, c.hi
    else:
        win, lose, d, lo, hi = name_b, name_a, -c.adv, -c.hi, -c.lo
    return f"on {c.task} ({metric}), {win} beats {lose} by {pts(d)} points, 95 % CI [{pts(lo)}, {pts(hi)}]"


def _metric_name(info: pd.DataFrame, task: str) -> str:
    metric = str(info.loc[task, "metric"])
    if metric.lower() == "eer":
        return "EER, lower is better"
    return metric


def _best_layer_note(scores: pd.DataFrame, score_name: str) -> str:
    """`` (asv: best layer, chosen on test)`` for tasks the headline score does not cover."""
    tasks = best_layer_tasks(scores) if score_name != "best layer" else []
    return f" ({', '.join(tasks)}: best layer, chosen on test)" if tasks else ""


def _deep_wide_section(doc: Doc, res: Results, facts: pd.DataFrame, roles: dict[str, str]) -> None:
    assert res.probe is not None
    probe = res.probe
    scores, score_name = headline_scores(probe)
    info = task_info(probe)
    doc.h(3, "Deep-narrow against shallow-wide students")
    pairs = deep_wide_pairs(facts, roles)
    if not pairs:
        doc.p(
            "No pair of students in which one is both deeper and narrower than the other: "
            "the deep-versus-wide comparison needs such a pair."
        )
        return
    doc.p(
        f"The paper's claim: at a fixed parameter budget, depth wins content tasks and width wins "
        f"speaker tasks. Each pair below is tested on the {score_name} score"
        f"{_best_layer_note(scores, score_name)}; the 95 % interval of "
        "each difference comes from the two stored per-model bootstrap intervals (MOVER, see "
        "method notes), and a claim is only called supported when that interval excludes 0."
    )
    for d, w in pairs:
        fd, fw = facts.loc[d], facts.loc[w]
        nd, nw = f"the {fd['num_layers']}-layer student", f"the {fw['num_layers']}-layer student"
        doc.p(
            f"{d} ({fd['num_layers']} layers × width {fd['dim']}, {fmt_params(fd['params'])} "
            f"parameters) against {w} ({fw['num_layers']} layers × width {fw['dim']}, "
            f"{fmt_params(fw['params'])})."
        )
        rows, sentences = [], []
        for t in ordered_tasks(probe):
            kind = str(info.loc[t, "kind"])
            c = compare(scores, d, w, t, bool(info.loc[t, "higher_is_better"]))
            if c is None:
                continue
            claim = PAPER_CLAIM.get(kind)
            verdict = _verdict(c, claim)
            sent = _beats(c, nd, nw, _metric_name(info, t))
            sentences.append(f"{sent[0].upper()}{sent[1:]}: {verdict}.")
            sd = scores.set_index(["model", "task"]).loc[(d, t)]
            sw = scores.set_index(["model", "task"]).loc[(w, t)]
            rows.append(
                [
                    t,
                    kind,
                    claim or "—",
                    score_ci(sd["score"], sd["ci_low"], sd["ci_high"]),
                    score_ci(sw["score"], sw["ci_low"], sw["ci_high"]),
                    f"{pts(c.adv)} [{pts(c.lo)}, {pts(c.hi)}]",
                    verdict,
                ]
            )
        doc.ul(sentences)
        doc.table(
            Table(
                [
                    "task",
                    "kind",
                    "paper expects",
                    f"{d} (deep)",
                    f"{w} (wide)",
                    "deep advantage, points [95 % CI]",
                    "verdict",
                ],
                rows,
                f"{score_name} scores in % with 95 % bootstrap CIs; advantage > 0 means the deep "
                "student is better (for EER: lower).",
            )
        )
        doc.p(_kind_summary(rows))


def _verdict(c: Comparison, claim: str | None) -> str:
    if claim is None:
        return "no claim in the paper for this kind of task"
    expected_sign = 1 if claim == "deep" else -1
    if not c.decided:
        return f"inconclusive (the interval includes 0), so the data do not support the paper's claim ({claim} wins) here"
    if np.sign(c.adv) == expected_sign:
        return f"consistent with the paper's claim ({claim} wins)"
    return f"contradicts the paper's claim ({claim} wins)"


def _kind_summary(rows: list[list[str]]) -> str:
    parts = []
    for kind in ("content", "speaker"):
        rs = [r for r in rows if r[1] == kind]
        if not rs:
            continue
        sup = sum(r[-1].startswith("consistent") for r in rs)
        con = sum(r[-1].startswith("contradicts") for r in rs)
        inc = sum(r[-1].startswith("inconclusive") for r in rs)
        parts.append(
            f"{kind} tasks: the paper's claim holds with an interval excluding 0 on {sup} of "
            f"{len(rs)}, is contradicted on {con}, and is undecided on {inc}"
        )
    return ("In sum — " + "; ".join(parts) + ".") if parts else ""


def _twin_section(doc: Doc, res: Results, facts: pd.DataFrame) -> None:
    assert res.probe is not None
    probe = res.probe
    scores, score_name = headline_scores(probe)
    info = task_info(probe)
    twins = {str(facts.loc[m, "null_of"]): m for m in facts.index if facts.loc[m, "is_null"]}
    doc.h(3, "Every model against its random twin")
    pairs = [(m, twins[m]) for m in facts.index if m in twins and m in set(probe["model"].values)]
    if not pairs:
        doc.p(
            "The results hold no random-weight twins (null models), so no model can be "
            "checked against the floor an untrained network of the same shape reaches."
        )
        return
    tasks = ordered_tasks(probe)
    rows, above, total, weak = [], 0, 0, []
    for m, z in pairs:
        row = [m]
        for t in tasks:
            c = compare(scores, m, z, t, bool(info.loc[t, "higher_is_better"]))
            if c is None:
                row.append("—")
                continue
            total += 1
            above += int(c.lo > 0)
            if c.lo <= 0:
                weak.append(f"{m} on {t}: {pts(c.adv)} points, 95 % CI [{pts(c.lo)}, {pts(c.hi)}]")
            row.append(f"{pts(c.adv)} [{pts(c.lo)}, {pts(c.hi)}]")
        rows.append(row)
    doc.p(
        f"A random twin has the model's architecture with untrained weights; whatever a probe "
        f"finds in it is not learnt. On the {score_name} score{_best_layer_note(scores, score_name)}, "
        "the trained model is better than "
        f"its twin with a 95 % interval excluding 0 in {above} of {total} model × task comparisons."
        + (" Not clearly above the twin:" if weak else "")
    )
    doc.ul(weak)
    doc.table(
        Table(
            ["model"] + tasks,
            rows,
            "Advantage of each trained model over its random twin, points [95 % CI]; > 0 = trained "
            "model better (for EER: lower).",
        )
    )


def _layer_section(doc: Doc, res: Results, facts: pd.DataFrame, roles: dict[str, str]) -> None:
    assert res.probe is not None
    best = best_layer_table(res.probe)
    info = task_info(res.probe)
    doc.h(3, "Where in depth the information sits")
    items = []
    for m in facts.index:
        if roles.get(m) == "null":
            continue
        b = best[best["model"] == m]
        if b.empty:
            continue
        per = {k: b[b["task"].map(info["kind"]) == k] for k in ("content", "speaker")}
        if any(v.empty for v in per.values()):
            continue
        c, s = per["content"]["rel_depth"].mean(), per["speaker"]["rel_depth"].mean()
        order = "above" if c > s else "below" if c < s else "at the same depth as"
        items.append(
            f"{m}: content tasks peak at relative depth {c:.2f} on average "
            f"({', '.join(f'{r.task} {r.rel_depth:.2f}' for r in per['content'].itertuples())}), "
            f"speaker tasks at {s:.2f} "
            f"({', '.join(f'{r.task} {r.rel_depth:.2f}' for r in per['speaker'].itertuples())}): "
            f"content {order} speaker"
        )
    doc.p(
        "Best single layer per task (chosen on the test scores, so a location, not an unbiased "
        "score), as relative depth layer / L. Published layerwise analyses of HuBERT-style "
        "models find content in the middle-to-upper layers and speaker information lower down."
    )
    doc.ul(items)
    if res.labels is not None:
        lab = res.labels
        lab_items = []
        for m in lab["model"].values:
            if bool(lab["is_null"].sel(model=m)):
                continue
            L = int(lab["num_layers"].sel(model=m))
            parts = []
            for label in lab["label"].values:
                y = lab["label_cca"].sel(model=m, label=label).values[: L + 1].astype(float)
                if np.isfinite(y).any():
                    i = int(np.nanargmax(y))
                    parts.append(
                        f"{label} label-CCA peaks at relative depth {float(relative_depth(i, L)):.2f} ({y[i]:.2f})"
                    )
            if parts:
                lab_items.append(f"{m}: " + "; ".join(parts))
        doc.ul(lab_items)


def _similarity_section(doc: Doc, res: Results) -> None:
    if not res.similarities:
        return
    doc.h(3, "How close the students come to the teacher")
    items = []
    for g in res.similarities:
        sim = g["similarity"].transpose("layer_a", "layer_b").values.astype(float)
        best = np.nanmax(sim, axis=0)
        line = (
            f"{g.attrs.get('measure', 'similarity')} {g.attrs.get('model_a')} × "
            f"{g.attrs.get('model_b')}: each student layer's best-matching teacher layer scores "
            f"{np.nanmean(best):.2f} on average; the last student layer matches teacher layer "
            f"{int(g['layer_a'].values[int(np.nanargmax(sim[:, -1]))])} best ({best[-1]:.2f})"
        )
        if "null_similarity" in g:
            nb = np.nanmax(
                g["null_similarity"].transpose("layer_a", "layer_b").values.astype(float), axis=0
            )
            line += f"; with the student's random twin instead: {np.nanmean(nb):.2f}"
        items.append(line)
    doc.ul(items)
    doc.p("The similarity files store no uncertainty, so these are point values.")


# ---------------------------------------------------------------------------------------------
# setup and tables


def _setup_section(doc: Doc, res: Results, facts: pd.DataFrame, roles: dict[str, str]) -> None:
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
                    _cell(f.get("objective")),
                    _cell(f.get("steps")),
                    _cell(f.get("final_loss")),
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
                    _metric_name(info, t),
                    _cell(r.get("n_train")),
                    _cell(r.get("n_test")),
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


def _cell(v: object) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "—"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _tables_section(doc: Doc, res: Results, roles: dict[str, str]) -> None:
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


# ---------------------------------------------------------------------------------------------


def build_report(res: Results) -> tuple[Doc, list[BuiltFigure], list[SkippedFigure]]:
    """The report document of ``res`` and the figures it embeds."""
    facts = model_facts(res)
    roles = model_roles(res, facts) if not facts.empty else {}
    doc = Doc()
    doc.h(1, "deepwide: deep versus wide students")
    doc.p(
        f"Results folder: {res.root}. Every number below is read from the results files there; "
        "scores are percentages of the task metric on the test split."
    )
    _setup_section(doc, res, facts, roles)
    doc.h(2, "Findings")
    if res.probe is None:
        doc.p("probe.nc is missing, so there are no probing findings; run `deepwide probe`.")
    else:
        _deep_wide_section(doc, res, facts, roles)
        _twin_section(doc, res, facts)
        _layer_section(doc, res, facts, roles)
    _similarity_section(doc, res)
    if res.probe is not None:
        _tables_section(doc, res, roles)
    built, skipped = build_figures(res)
    doc.h(2, "Figures")
    for bf in built:
        doc.figure(bf, figure_bytes(bf.figure, "png", REPORT_PNG_DPI))
    if skipped:
        doc.p("Figures not drawn, for lack of input:")
        doc.ul([f"{s.title} ({s.stem}): {s.reason}" for s in skipped])
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
    return doc, built, skipped


def write_report(results_dir: str | Path, out_dir: str | Path | None = None) -> tuple[Path, Path]:
    """Write ``report.html`` (self-contained) and ``report.md`` for ``results_dir``.

    Args:
        results_dir: a results folder (any of its files may be missing).
        out_dir: where to write (default: ``results_dir``); the Markdown twin's figures go to
            ``out_dir/report_figures/<stem>.png``.

    Returns:
        ``(html_path, md_path)``.

    Raises:
        ConfigError: ``results_dir`` does not exist.
        StoreError: a results file does not follow the schema.
    """
    res = load_results(results_dir)
    out = Path(out_dir) if out_dir is not None else res.root
    doc, built, _ = build_report(res)
    for kind, payload in doc.blocks:
        if kind == "figure":
            bf, png = payload  # type: ignore[misc]
            atomic_write_bytes(out / FIGURE_DIR / f"{bf.stem}.png", png)
    title = "deepwide report"
    html_path, md_path = out / "report.html", out / "report.md"
    atomic_write_text(html_path, render_html(doc, title))
    atomic_write_text(md_path, render_markdown(doc, FIGURE_DIR))
    log.info("wrote %s and %s (%d figures)", html_path, md_path, len(built))
    return html_path, md_path
