"""The "why" section's student measures and their rank correlations with the task scores."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy.stats import rankdata, spearmanr

from deepwide.figures.explain import measure_score_correlations, rank_correlation, student_measures
from deepwide.figures.report import write_report
from deepwide.figures.results import load_results, model_roles
from tests.figures.fake_results import DEEP, DISTIL, WIDE, write_fake_results


def _exact_p(x: np.ndarray, y: np.ndarray) -> float:
    """Longhand: the share of all n! pairings whose |ρ| reaches the observed one (no ties)."""
    rx, ry = rankdata(x), rankdata(y)
    n = len(x)

    def rho(r: np.ndarray) -> float:
        return 1 - 6 * float(((r - ry) ** 2).sum()) / (n * (n * n - 1))

    obs = abs(rho(rx))
    perms = list(itertools.permutations(rx))
    return sum(abs(rho(np.array(p))) >= obs - 1e-12 for p in perms) / len(perms)


@pytest.mark.parametrize("seed", [0, 1])
def test_rank_correlation_against_scipy_and_exact_enumeration(seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=6)
    y = x + rng.normal(size=6)
    rho, p = rank_correlation(x, y)
    assert rho == pytest.approx(spearmanr(x, y).statistic)
    assert p == pytest.approx(_exact_p(x, y))
    # a perfect ranking of 5 has p = 2 / 5!
    assert rank_correlation(np.arange(5.0), np.arange(5.0) ** 2)[1] == pytest.approx(2 / 120)
    assert all(math.isnan(v) for v in rank_correlation(np.ones(4), np.arange(4.0)))


def test_rank_correlation_uses_random_pairings_beyond_exact(monkeypatch) -> None:
    """9! > 10,000: seeded random pairings, close to the exact value."""
    rng = np.random.default_rng(4)
    x = rng.normal(size=9)
    y = x + 2 * rng.normal(size=9)
    _, p = rank_correlation(x, y)
    assert p == pytest.approx(_exact_p(x, y), abs=0.02)
    assert rank_correlation(x, y) == rank_correlation(x, y)  # seeded


def test_student_measures_and_report_section(tmp_path) -> None:
    fake = write_fake_results(tmp_path / "results")
    res = load_results(tmp_path / "results")
    roles = model_roles(res)
    table = student_measures(res, roles).set_index("model")
    assert set(table.index) == {DEEP, WIDE, DISTIL}
    for g in fake.similarities:
        m = g.attrs["model_b"]
        sim = g["similarity"].transpose("layer_a", "layer_b").values
        assert table.loc[m, "cka_match"] == pytest.approx(sim[:, 1:].max(axis=0).mean())
        assert table.loc[m, "cka_last"] == pytest.approx(sim[-1, -1])
    for m in table.index:
        L = int(fake.spectrum["num_layers"].sel(model=m))
        assert table.loc[m, "erank_last"] == pytest.approx(float(fake.spectrum["effective_rank"].sel(model=m)[L]))
        cca = fake.labels["label_cca"].sel(model=m, label="speaker").values[: L + 1]
        assert table.loc[m, "cca_speaker"] == pytest.approx(np.nanmax(cca))
    corr = measure_score_correlations(table.reset_index(), res)
    row = corr[(corr["measure"] == "cka_match") & (corr["task"] == "asv")].iloc[0]
    # asv is an EER: the correlation is with its negative (> 0: higher measure, better score)
    x = table["cka_match"].to_numpy()
    y = -table["score:asv"].to_numpy()
    assert row["rho"] == pytest.approx(spearmanr(x, y).statistic) and row["n"] == 3
    _, md = write_report(tmp_path / "results", tmp_path / "report")
    text = md.read_text()
    assert "What the students kept, and does it predict their scores?" in text
    assert "the smallest p-value there is, 0.333" in text


def test_two_students_get_the_table_and_no_correlation(tmp_path, monkeypatch) -> None:
    """The default study has two students (the paper's pair): the report still shows what each
    kept, and says why no rank correlation is given instead of leaving the section out."""
    import deepwide.figures.explain as explain
    from deepwide.figures.document import Doc

    write_fake_results(tmp_path / "results")
    res = load_results(tmp_path / "results")
    roles = model_roles(res)
    full = student_measures(res, roles)
    two = full[full["model"].isin([DEEP, WIDE])].reset_index(drop=True)
    monkeypatch.setattr(explain, "student_measures", lambda *_: two)
    doc = Doc()
    explain.add_student_measures_section(doc, res, roles)
    kinds = [k for k, _ in doc.blocks]
    assert kinds[0] == "h3" and "table" in kinds
    table = next(b for k, b in doc.blocks if k == "table")
    assert [r[0] for r in table.rows] == [DEEP, WIDE]
    assert "no rank correlation" in doc.blocks[-1][1] and "at least three" in doc.blocks[-1][1]
    assert not any("Spearman" in str(b) for _, b in doc.blocks)
