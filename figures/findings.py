"""The report's findings, in prose: deep-narrow against shallow-wide students with a verdict on
the paper's claim, every model against its random twin, where in depth each kind of information
peaks, and how close the students' layers come to the teacher's."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr

from deepwide.figures.document import Doc, Table
from deepwide.figures.formatting import fmt_params, metric_name, pts, score_ci
from deepwide.figures.results import (
    Results,
    best_layer_table,
    best_layer_tasks,
    deep_wide_pairs,
    headline_scores,
    mover_difference,
    ordered_tasks,
    relative_depth,
    task_info,
)

#: The paper's claim per task kind: which architecture it says wins.
PAPER_CLAIM = {"content": "deep", "speaker": "wide"}


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


def combine_seeds(per_seed: list[Comparison]) -> Comparison:
    """One deep-versus-wide comparison over ``S`` distillation seeds (all scored on the same test
    utterances).

    The advantage is the mean over seeds. Its 95 % interval adds, in quadrature and on each
    side, two uncertainties: the seeds' — ``t(0.975, S − 1) · sd / √S`` of the per-seed
    advantages — and the test utterances' — the mean over seeds of each side's per-seed
    (MOVER) half-width. The utterance part is not divided by ``√S``: every seed is scored on the
    same utterances, so their sampling error is shared, not averaged out.
    """
    from scipy.stats import t as student_t

    if len(per_seed) == 1:
        return per_seed[0]
    adv = np.array([c.adv for c in per_seed])
    mean = float(adv.mean())
    seed_half = float(student_t.ppf(0.975, len(adv) - 1) * adv.std(ddof=1) / np.sqrt(len(adv)))
    low_half = float(np.mean([c.adv - c.lo for c in per_seed]))
    high_half = float(np.mean([c.hi - c.adv for c in per_seed]))
    first = per_seed[0]
    return Comparison(first.task, first.a, first.b, mean, mean - float(np.hypot(low_half, seed_half)),
                      mean + float(np.hypot(high_half, seed_half)))


def _beats(c: Comparison, name_a: str, name_b: str, metric: str) -> str:
    """One sentence: who beats whom by how much, with the interval, winner-oriented."""
    if c.adv >= 0:
        win, lose, d, lo, hi = name_a, name_b, c.adv, c.lo, c.hi
    else:
        win, lose, d, lo, hi = name_b, name_a, -c.adv, -c.hi, -c.lo
    return f"on {c.task} ({metric}), {win} beats {lose} by {pts(d)} points, 95 % CI [{pts(lo)}, {pts(hi)}]"


def _best_layer_note(scores: pd.DataFrame, score_name: str) -> str:
    """`` (asv: best layer, chosen on test)`` for tasks the headline score does not cover."""
    tasks = best_layer_tasks(scores) if score_name != "best layer" else []
    return f" ({', '.join(tasks)}: best layer, chosen on test)" if tasks else ""


def add_deep_wide_section(doc: Doc, res: Results, facts: pd.DataFrame, roles: dict[str, str]) -> None:
    """Each deep-narrow × shallow-wide student pair, task by task, with a verdict on the paper's claim."""
    assert res.probe is not None
    probe = res.probe
    scores, score_name = headline_scores(probe)
    info = task_info(probe)
    doc.h(3, "Deep-narrow against shallow-wide students")
    # several distillation seeds: each student group is paired once, by its first seed's model
    groups = {g: members for g, members in res.seed_groups.items() if all(m in facts.index for m in members.values())}
    rep_group = {members[min(members)]: g for g, members in groups.items()}
    seeded = {m for members in groups.values() for m in members.values()}
    pairs = deep_wide_pairs(facts, {m: r for m, r in roles.items() if m not in seeded or m in rep_group})
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
        + (" Each student was distilled with several seeds: a pair's advantage is the mean over "
           "the seeds both students share, and its interval adds the seeds' spread (t interval "
           "of the mean) and the test utterances' (the mean per-seed MOVER half-width, not "
           "shrunk by the seed count, since every seed is scored on the same utterances) in "
           "quadrature." if groups else "")
    )
    for d, w in pairs:
        fd, fw = facts.loc[d], facts.loc[w]
        if d in rep_group and w in rep_group:
            common = sorted(set(groups[rep_group[d]]) & set(groups[rep_group[w]]))
            runs = [(groups[rep_group[d]][k], groups[rep_group[w]][k]) for k in common]
        else:
            common, runs = [], [(d, w)]
        nd, nw = f"the {fd['num_layers']}-layer student", f"the {fw['num_layers']}-layer student"
        dname = rep_group.get(d, d) if common else d
        wname = rep_group.get(w, w) if common else w
        doc.p(
            f"{dname} ({fd['num_layers']} layers × width {fd['dim']}, {fmt_params(fd['params'])} "
            f"parameters) against {wname} ({fw['num_layers']} layers × width {fw['dim']}, "
            f"{fmt_params(fw['params'])})"
            + (f", each distilled with {len(common)} seeds ({', '.join(map(str, common))})." if common else ".")
        )
        rows, sentences = [], []
        for t in ordered_tasks(probe):
            kind = str(info.loc[t, "kind"])
            per_seed = [compare(scores, a, b, t, bool(info.loc[t, "higher_is_better"])) for a, b in runs]
            if any(c is None for c in per_seed):
                continue
            c = combine_seeds([c for c in per_seed if c is not None])
            claim = PAPER_CLAIM.get(kind)
            verdict = _verdict(c, claim)
            sent = _beats(c, nd, nw, metric_name(info, t))
            sentences.append(f"{sent[0].upper()}{sent[1:]}: {verdict}.")
            by = scores.set_index(["model", "task"])
            sd = by.loc[[(a, t) for a, _ in runs]].mean(numeric_only=True)  # over seeds
            sw = by.loc[[(b, t) for _, b in runs]].mean(numeric_only=True)
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
                    f"{dname} (deep)",
                    f"{wname} (wide)",
                    "deep advantage, points [95 % CI]",
                    "verdict",
                ],
                rows,
                f"{score_name} scores in % with 95 % bootstrap CIs"
                + (f" (means over the {len(common)} seeds of the score and of each bound)" if common else "")
                + "; advantage > 0 means the deep student is better (for EER: lower).",
            )
        )
        doc.p(_kind_summary(rows))


def _verdict(c: Comparison, claim: str | None) -> str:
    """What ``c`` says about the paper's claim (``deep``/``wide`` wins, or none) for its task."""
    if claim is None:
        return "no claim in the paper for this kind of task"
    expected_sign = 1 if claim == "deep" else -1
    if not c.decided:
        return f"inconclusive (the interval includes 0), so the data do not support the paper's claim ({claim} wins) here"
    if np.sign(c.adv) == expected_sign:
        return f"consistent with the paper's claim ({claim} wins)"
    return f"contradicts the paper's claim ({claim} wins)"


def _kind_summary(rows: list[list[str]]) -> str:
    """One sentence counting, per task kind, the verdicts of a deep-versus-wide table."""
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


def add_twin_section(doc: Doc, res: Results, facts: pd.DataFrame) -> None:
    """Every trained model against its random twin (the floor an untrained network reaches)."""
    assert res.probe is not None
    probe = res.probe
    scores, score_name = headline_scores(probe)
    info = task_info(probe)
    twins = {str(facts.loc[m, "null_of"]): m for m in facts.index if facts.loc[m, "is_null"]}
    # the study's record pairs every student with its shape's (shared) twin; older results: null_of
    twins.update({m: z for m, z in res.twin_of.items() if z in facts.index})
    doc.h(3, "Every model against its random twin")
    probed = set(probe["model"].values)
    pairs = [(m, twins[m]) for m in facts.index if m in twins and m in probed and twins[m] in probed]
    if not pairs:
        doc.p(
            "The results hold no random-weight twins (null models), so no model can be "
            "checked against the floor an untrained network of the same shape reaches."
        )
        return
    tasks = ordered_tasks(probe)
    rows, above, total, weak = [], 0, 0, []
    for m, z in pairs:
        row = [m, z]
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
            ["model", "twin"] + tasks,
            rows,
            "Advantage of each trained model over its random twin, points [95 % CI]; > 0 = trained "
            "model better (for EER: lower). Students of one shape share one twin: its weights "
            "depend on neither the objective nor the distillation seed.",
        )
    )


def add_layer_section(doc: Doc, res: Results, facts: pd.DataFrame, roles: dict[str, str]) -> None:
    """Where in depth content and speaker information peak (best layers, label-CCA)."""
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


def add_similarity_section(doc: Doc, res: Results) -> None:
    """How close each student's layers come to the teacher's (best-matching layer similarity)."""
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


def teacher_profiles(probe: xr.Dataset, teacher: str) -> pd.DataFrame:
    """The teacher's layerwise profile on every task: where it starts, peaks and ends, and its
    least-squares slope against relative depth.

    Returns:
        One row per task with a finite score: task, kind, first (layer-0 score), peak, peak_layer,
        last, slope (score change per unit of relative depth, from a least-squares line through
        every layer's score; scores as stored, fractions) and num_layers.
    """
    rows = []
    L = int(probe["num_layers"].sel(model=teacher))
    info = task_info(probe)
    for t in ordered_tasks(probe):
        s = probe["score"].sel(model=teacher, task=t).values.astype(float)[: L + 1]
        layers = probe["layer"].values[: L + 1].astype(float)
        ok = np.isfinite(s)
        if ok.sum() < 2:
            continue
        hib = bool(info.loc[t, "higher_is_better"])
        i = int(np.nanargmax(s) if hib else np.nanargmin(s))
        slope = float(np.polyfit(relative_depth(layers[ok], L), s[ok], 1)[0])
        rows.append({"task": t, "kind": str(info.loc[t, "kind"]), "first": float(s[ok][0]), "peak": float(s[i]),
                     "peak_layer": int(layers[i]), "last": float(s[ok][-1]), "slope": slope, "num_layers": L,
                     "higher_is_better": hib})
    return pd.DataFrame(rows)


def add_teacher_profile_section(doc: Doc, res: Results, roles: dict[str, str]) -> None:
    """What the teacher offers its students, task by task: its layerwise profile (issue #19's
    "why" section, first part)."""
    assert res.probe is not None
    teacher = next((m for m, r in roles.items() if r == "teacher"), None)
    if teacher is None or teacher not in set(res.probe["model"].values):
        return
    prof = teacher_profiles(res.probe, teacher)
    if prof.empty:
        return
    doc.h(3, "What the teacher offers: its layerwise profiles")
    doc.p(
        f"A student distilled from {teacher} can only copy what the teacher's layers hold. For each "
        "task: the teacher's score at layer 0 (the input to its first Transformer layer), at its "
        "peak and at its last layer, and the least-squares slope of its per-layer scores "
        "against relative depth (points per unit of depth; > 0: the score grows with depth, for "
        "EER and error rates: worsens). Per-layer scores are test scores, so the peak is a location, "
        "not an unbiased score."
    )
    rows = [
        [r.task, r.kind, pts(r.first), f"{pts(r.peak)} (layer {r.peak_layer} of {r.num_layers})", pts(r.last),
         f"{pts(r.slope)}"]
        for r in prof.itertuples()
    ]
    doc.table(Table(["task", "kind", "layer 0", "peak", "last layer", "slope per unit depth"], rows,
                    "Scores in % (points); the slope is per unit of relative depth (layer / L)."))
    sentences = []
    for kind in ("content", "speaker"):
        part = prof[prof["kind"] == kind]
        if part.empty:
            continue
        rel = [f"{r.task} peaks at relative depth {r.peak_layer / r.num_layers:.2f}" for r in part.itertuples()]
        sentences.append(f"{kind} tasks: " + ", ".join(rel) + ".")
    doc.ul(sentences)
