"""The report's "why" section, second part: what each student kept of the teacher, and whether
those representation measures predict the students' task scores.

For every student the study has: its layers' debiased-CKA match to the teacher (similarity
grids), the effective rank of its last layer (spectrum) and its peak label-CCA with phones and
with speakers (labels). :func:`student_measures` gathers them with the headline task scores;
:func:`measure_score_correlations` ranks students by each measure and by each task's score
(Spearman's ρ, two-sided permutation p-value: exact while ``n! ≤ 10,000``, else 9,999 seeded
random pairings), which says how far a measure explains the deep-versus-wide verdicts — with as
many points as there are students, which is few.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from deepwide.figures.document import Doc, Table
from deepwide.figures.results import Results, headline_scores, ordered_tasks, task_info

#: the measures, their column names and how the report labels them
MEASURES: dict[str, str] = {
    "cka_match": "CKA match (mean over student layers of the best teacher layer)",
    "cka_last": "CKA of the last student layer with the teacher's last layer",
    "erank_last": "effective rank of the last layer",
    "cca_phone": "peak phone label-CCA",
    "cca_speaker": "peak speaker label-CCA",
}
#: permutations of the rank test (exact enumeration when n! is at most this)
N_PERMUTATIONS = 9_999


def student_measures(res: Results, roles: dict[str, str]) -> pd.DataFrame:
    """One row per student (role ``student``): the measures of :data:`MEASURES` (NaN where their
    results file is absent) and, per task, the headline score (column ``score:<task>``).

    The CKA columns come from the first similarity grid whose ``model_b`` is the student (layer 0,
    the input to the first Transformer layer, is left out of the match); the spectrum and
    label-CCA columns from ``spectrum.nc`` and ``labels.nc``, over the layers ``0..L``.
    """
    assert res.probe is not None
    students = [m for m, r in roles.items() if r == "student" and m in set(res.probe["model"].values)]
    scores, _ = headline_scores(res.probe)
    rows = []
    for m in students:
        row: dict[str, object] = {"model": m, **{k: math.nan for k in MEASURES}}
        grid = next((g for g in res.similarities if str(g.attrs.get("model_b")) == m), None)
        if grid is not None:
            sim = grid["similarity"].transpose("layer_a", "layer_b").values.astype(float)
            if sim.shape[1] > 1:
                row["cka_match"] = float(np.nanmean(np.nanmax(sim[:, 1:], axis=0)))
            row["cka_last"] = float(sim[-1, -1])
        if res.spectrum is not None and m in set(res.spectrum["model"].values):
            L = int(res.spectrum["num_layers"].sel(model=m))
            row["erank_last"] = float(res.spectrum["effective_rank"].sel(model=m).values[L])
        if res.labels is not None and m in set(res.labels["model"].values):
            L = int(res.labels["num_layers"].sel(model=m))
            for label in ("phone", "speaker"):
                if label in set(res.labels["label"].values):
                    y = res.labels["label_cca"].sel(model=m, label=label).values[: L + 1].astype(float)
                    row[f"cca_{label}"] = float(np.nanmax(y)) if np.isfinite(y).any() else math.nan
        for r in scores[scores["model"] == m].itertuples():
            row[f"score:{r.task}"] = float(r.score)
        rows.append(row)
    return pd.DataFrame(rows)


def rank_correlation(x: np.ndarray, y: np.ndarray, *, seed: int = 0) -> tuple[float, float]:
    """Spearman's ρ of ``x`` and ``y`` ``(n,)`` and its two-sided permutation p-value (exact
    while ``n! ≤`` :data:`N_PERMUTATIONS` + 1, else that many seeded random pairings).
    NaN, NaN with fewer than three pairs or a constant side."""
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = np.asarray(x, float)[ok], np.asarray(y, float)[ok]
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan, math.nan

    def rho(a: np.ndarray) -> float:
        return float(stats.spearmanr(a, y).statistic)

    test = stats.permutation_test((x,), rho, permutation_type="pairings", n_resamples=N_PERMUTATIONS,
                                  alternative="two-sided", random_state=np.random.default_rng(seed))
    return float(test.statistic), float(test.pvalue)


def measure_score_correlations(table: pd.DataFrame, res: Results) -> pd.DataFrame:
    """Per measure × task: ``rho`` (oriented so that > 0 means a higher measure goes with a
    better score, for EER and error rates a lower one), ``p``, and ``n`` students."""
    assert res.probe is not None
    info = task_info(res.probe)
    rows = []
    for measure in MEASURES:
        for t in ordered_tasks(res.probe):
            col = f"score:{t}"
            if col not in table or measure not in table:
                continue
            x, y = table[measure].to_numpy(float), table[col].to_numpy(float)
            sign = 1.0 if bool(info.loc[t, "higher_is_better"]) else -1.0
            rho, p = rank_correlation(x, sign * y)
            n = int((np.isfinite(x) & np.isfinite(y)).sum())
            rows.append({"measure": measure, "task": t, "kind": str(info.loc[t, "kind"]), "rho": rho, "p": p, "n": n})
    return pd.DataFrame(rows)


def add_student_measures_section(doc: Doc, res: Results, roles: dict[str, str]) -> None:
    """What the students kept, and whether it predicts their scores (the "why" section, part 2)."""
    if res.probe is None:
        return
    table = student_measures(res, roles)
    have = [k for k in MEASURES if k in table and table[k].notna().any()] if not table.empty else []
    if table.empty or not have:
        return
    doc.h(3, "What the students kept, and does it predict their scores?")
    tasks = [t for t in ordered_tasks(res.probe) if f"score:{t}" in table]
    doc.p(
        "Per student: " + "; ".join(f"{k} = {MEASURES[k]}" for k in have) + ". Debiased CKA of "
        "each student layer with every teacher layer, on the similarity step's frames; effective "
        "rank and label-CCA as in their figures. The task columns are the headline scores (%)."
    )
    rows = [[r["model"], *(f"{r[k]:.2f}" if np.isfinite(r[k]) else "—" for k in have),
             *(f"{100 * r[f'score:{t}']:.1f}" if np.isfinite(r.get(f"score:{t}", math.nan)) else "—" for t in tasks)]
            for _, r in table.iterrows()]
    doc.table(Table(["student", *have, *tasks], rows, "Representation measures and task scores per student."))
    if len(table) < 3:
        doc.p(
            f"With {len(table)} student{'s' if len(table) != 1 else ''} no rank correlation between a "
            "measure and a score can be tested (at least three are needed, and with three the smallest "
            "permutation p-value is 0.33). The study configs with more students give it: "
            "`configs/embedded-full.toml` (three seeds per student) or `pairing = \"crossed\"`."
        )
        return
    corr = measure_score_correlations(table[["model", *have, *[f"score:{t}" for t in tasks]]], res)
    if corr.empty:
        return
    n = int(corr["n"].max())
    exact = math.factorial(n) <= N_PERMUTATIONS + 1
    grid = []
    for k in have:
        cells = [k]
        for t in tasks:
            c = corr[(corr["measure"] == k) & (corr["task"] == t)]
            cells.append("—" if c.empty or not np.isfinite(c["rho"].iloc[0])
                         else f"{c['rho'].iloc[0]:+.2f} (p {c['p'].iloc[0]:.2f})")
        grid.append(cells)
    floor = 2.0 / math.factorial(n) if exact else 2.0 / (N_PERMUTATIONS + 1)
    doc.p(
        f"Spearman's ρ between each measure and each task's score across the {n} students "
        "(> 0: a higher measure goes with a better score), with its two-sided permutation p-value "
        f"({'exact' if exact else f'{N_PERMUTATIONS:,} seeded random pairings'}). With {n} students the "
        f"smallest p-value there is, {floor:.3f}, needs a perfect ranking, so this can show a "
        "measure that orders the students as the task does, not establish one."
    )
    doc.table(Table(["measure", *tasks], grid, "Rank correlation of measure and score across students."))
    hits = corr[(corr["p"] < 0.05) & np.isfinite(corr["rho"])]
    if hits.empty:
        doc.p("No measure orders the students as a task's score does at p < 0.05.")
    else:
        doc.ul([f"{r.measure} with {r.task} ({r.kind}): ρ {r.rho:+.2f}, p {r.p:.3f}" for r in hits.itertuples()])
