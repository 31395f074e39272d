"""The report: self-contained HTML + Markdown twin whose numbers come from the results files."""

from __future__ import annotations

import base64
import math
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from deepwide.cli import cli
from deepwide.figures.report import compare, write_report
from deepwide.figures.results import mover_difference
from tests.figures.fake_results import DEEP, TEACHER, TRAINED, WIDE, model_ids, write_fake_results


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("results")
    fake = write_fake_results(root)
    out = tmp_path_factory.mktemp("report")
    html_path, md_path = write_report(root, out)
    return fake, out, html_path.read_text(), md_path.read_text()


def _naive_diff_ci(a, a_lo, a_hi, b, b_lo, b_hi, higher_is_better=True):
    """A second implementation, written out longhand: oriented difference and its MOVER bounds."""
    if not higher_is_better:  # flip to "bigger is better" first
        a, a_lo, a_hi = -a, -a_hi, -a_lo
        b, b_lo, b_hi = -b, -b_hi, -b_lo
    d = a - b
    lower_err = math.hypot(a - a_lo, b_hi - b)
    upper_err = math.hypot(a_hi - a, b - b_lo)
    return d, d - lower_err, d + upper_err


def _expected_sentence(fake, task: str, hib: bool) -> str:
    p = fake.probe
    vals = [
        float(p[v].sel(model=m, task=task))
        for m in (DEEP, WIDE)
        for v in ("ws_score", "ws_ci_low", "ws_ci_high")
    ]
    d, lo, hi = _naive_diff_ci(*vals, higher_is_better=hib)
    nd, nw = f"the {TRAINED[DEEP][0]}-layer student", f"the {TRAINED[WIDE][0]}-layer student"
    if d < 0:
        nd, nw, d, lo, hi = nw, nd, -d, -hi, -lo
    return f"{nd} beats {nw} by {100 * d:.1f} points, 95 % CI [{100 * lo:.1f}, {100 * hi:.1f}]"


def test_html_is_self_contained(report) -> None:
    _, _, html, _ = report
    assert html.startswith("<!DOCTYPE html>")
    srcs = re.findall(r'src="([^"]*)"', html)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert (
        "<link" not in html
        and "<script" not in html
        and "http://" not in html
        and "https://" not in html
    )
    png = base64.b64decode(srcs[0].split(",", 1)[1])
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert len(srcs) == 7  # figures 1, 2 (cka only), 3, 4, 5, 6, 7


def test_deep_vs_wide_numbers_match_the_results(report) -> None:
    fake, _, html, md = report
    for task, hib in (("phone", True), ("ks", True), ("sid", True), ("asv", False)):
        sentence = _expected_sentence(fake, task, hib)
        assert sentence in html, sentence
        assert sentence in md, sentence
    # the fake plants a deep win on ASV EER: the report must say that contradicts the claim
    asv = next(line for line in md.splitlines() if line.startswith("- On asv"))
    assert "contradicts the paper's claim (wide wins)" in asv
    phone = next(line for line in md.splitlines() if line.startswith("- On phone"))
    assert "consistent with the paper's claim (deep wins)" in phone


def test_tables_and_setup_come_from_the_results(report) -> None:
    fake, _, html, md = report
    p = fake.probe
    # best single layer of the teacher on phone, computed here from the stored scores
    L = TRAINED[TEACHER][0]
    s = p["score"].sel(model=TEACHER, task="phone").values[: L + 1]
    i = int(np.nanargmax(s))
    lo, hi = (float(p[v].sel(model=TEACHER, task="phone", layer=i)) for v in ("ci_low", "ci_high"))
    cell = f"{100 * s[i]:.1f} [{100 * lo:.1f}, {100 * hi:.1f}] at layer {i} ({i / L:.2f})"
    assert cell in md and cell in html
    # parameters, depth and width of every model; seeds and corpus from attrs
    for m, (layers, dim, params, _) in TRAINED.items():
        assert f"| {m} | " in md
        assert f"| {layers} | {dim} | {params / 1e6:.2f} M |" in md
    assert "corpus: synth" in md and "seeds: 0" in md
    for m in model_ids():
        assert m in html


def test_every_model_is_compared_with_its_random_twin(report) -> None:
    fake, _, _, md = report
    p = fake.probe
    hib = dict(zip(p["task"].values, p["higher_is_better"].values, strict=True))
    cells = []
    for m in TRAINED:
        for t in p["task"].values:
            vals = [
                float(p[v].sel(model=x, task=t))
                for x in (m, f"random:{m}")
                for v in ("ws_score", "ws_ci_low", "ws_ci_high")
            ]
            cells.append(_naive_diff_ci(*vals, higher_is_better=bool(hib[t])))
    n_above = sum(lo > 0 for _, lo, _ in cells)
    assert f"in {n_above} of {len(cells)} model × task comparisons" in md
    d, lo, hi = cells[0]
    assert f"| {TEACHER} | random:{TEACHER} | {100 * d:.1f} [{100 * lo:.1f}, {100 * hi:.1f}] |" in md


def test_markdown_twin_links_existing_figures(report) -> None:
    _, out, _, md = report
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert len(links) == 7
    for link in links:
        assert (out / link).is_file()


def test_mover_matches_the_naive_implementation_and_is_antisymmetric() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        a, b = rng.uniform(0.2, 0.8, 2)
        a_lo, a_hi = a - rng.uniform(0.01, 0.1), a + rng.uniform(0.01, 0.1)
        b_lo, b_hi = b - rng.uniform(0.01, 0.1), b + rng.uniform(0.01, 0.1)
        d, lo, hi = mover_difference(a, a_lo, a_hi, b, b_lo, b_hi)
        np.testing.assert_allclose((d, lo, hi), _naive_diff_ci(a, a_lo, a_hi, b, b_lo, b_hi))
        d2, lo2, hi2 = mover_difference(b, b_lo, b_hi, a, a_lo, a_hi)
        np.testing.assert_allclose((d2, lo2, hi2), (-d, -hi, -lo))
        # never narrower than either input interval
        assert hi - lo >= max(a_hi - a_lo, b_hi - b_lo) - 1e-12


def test_overlapping_intervals_are_inconclusive() -> None:
    import pandas as pd

    scores = pd.DataFrame(
        [
            ("deep", "ks", 0.80, 0.75, 0.85),
            ("wide", "ks", 0.78, 0.73, 0.83),
            ("deep", "asv", 0.10, 0.08, 0.12),
            ("wide", "asv", 0.20, 0.18, 0.22),
        ],
        columns=["model", "task", "score", "ci_low", "ci_high"],
    )
    c = compare(scores, "deep", "wide", "ks", True)
    assert c is not None and not c.decided and c.lo < 0 < c.hi
    c = compare(scores, "deep", "wide", "asv", False)  # lower EER for deep: deep better
    assert c is not None and c.decided and c.adv == pytest.approx(0.10)
    assert compare(scores, "deep", "nobody", "ks", True) is None


def test_report_without_probe_degrades_and_says_so(tmp_path: Path) -> None:
    root = write_fake_results(tmp_path / "r", parts=("similarity",)).root
    res = CliRunner().invoke(cli, ["report", "--results", str(root)])
    assert res.exit_code == 0, res.output
    md = (root / "report.md").read_text()
    html = (root / "report.html").read_text()
    assert "probe.nc is missing" in md
    assert "Figures not drawn" in md and "fig1_probe_curves" in md
    assert html.count('src="data:image/png;base64,') == 1  # only the similarity heatmaps
