"""Distillation curves and the plateau table in the figures and the report (#19)."""

from __future__ import annotations

import pandas as pd
import pytest

from deepwide.errors import StoreError
from deepwide.figures.curves import PLATEAU_RULE, plateau_table, read_distill_curves
from deepwide.figures.recipes import build_figures
from deepwide.figures.report import build_report, write_report
from deepwide.figures.results import load_results
from deepwide.figures.style import panel_axes
from tests.figures.fake_results import write_fake_results

STEPS = 150


def _add_curves(root) -> pd.DataFrame:
    """Held-out columns in distill.csv and a distill_curves.csv: the first student still falls,
    the others have flattened."""
    distill = pd.read_csv(root / "distill.csv")
    rows = []
    verdicts = []
    for i, m in enumerate(distill["model"]):
        held = []
        for step in range(5, STEPS + 1, 5):
            train = 2.0 / (1 + step / 10)
            heldout = 2.0 / (1 + step / 10) + 0.1 if i == 0 else 0.6 + 1.4 * 0.9 ** step
            rows.append({"model": m, "step": step, "train_loss": train,
                         "heldout_loss": heldout if step % 15 == 0 else float("nan")})
            if step % 15 == 0:
                held.append(heldout)
        fall = (held[-3] - held[-1]) / held[-3]  # ten evaluations: the last three decide
        verdicts.append((held[-1], fall, fall < 0.01))
    distill["heldout_loss"] = [v[0] for v in verdicts]
    distill["plateau_fall"] = [v[1] for v in verdicts]
    distill["plateaued"] = [v[2] for v in verdicts]
    distill.to_csv(root / "distill.csv", index=False)
    pd.DataFrame(rows).to_csv(root / "distill_curves.csv", index=False)
    return distill


@pytest.fixture(scope="module")
def with_curves(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("results")
    write_fake_results(root)
    return root, _add_curves(root)


def test_the_curves_figure_has_a_line_per_student_in_each_panel(with_curves) -> None:
    root, distill = with_curves
    figs, skipped = build_figures(load_results(root))
    fig = next(bf for bf in figs if bf.stem == "fig8_distill_curves")
    assert skipped == [] and fig.title == "Distillation curves" and PLATEAU_RULE in fig.caption
    train_ax, held_ax = panel_axes(fig.figure)
    assert len(train_ax.lines) == len(held_ax.lines) == len(distill)
    assert len(held_ax.lines[0].get_xdata()) == STEPS // 15  # evaluations only
    assert len(train_ax.lines[0].get_xdata()) == STEPS // 5


def test_the_report_shows_the_figure_and_who_counts_as_trained(with_curves, tmp_path) -> None:
    root, distill = with_curves
    html_path, md_path = write_report(root, tmp_path)
    md, html = md_path.read_text(), html_path.read_text()
    assert "Distillation curves" in md and "Distillation curves" in html
    assert (tmp_path / "report_figures" / "fig8_distill_curves.png").is_file()
    assert "Trained to a plateau?" in md and PLATEAU_RULE in md
    n = int(distill["plateaued"].sum())
    assert 0 < n < len(distill)  # the fabricated curves give both verdicts
    assert f"{n} of {len(distill)} students count as trained" in md
    first = distill.iloc[0]
    section = md.split("Trained to a plateau?", 1)[1]
    line = next(li for li in section.splitlines() if li.startswith(f"| {first['model']} |"))
    assert f"{first['heldout_loss']:.4f}" in line and f"{100 * first['plateau_fall']:.2f}" in line
    assert line.rstrip(" |").endswith("no")


def test_older_results_leave_curves_and_plateau_table_out_quietly(tmp_path) -> None:
    root = write_fake_results(tmp_path / "old").root
    res = load_results(root)
    assert read_distill_curves(root) is None and plateau_table(res.distill) is None
    doc, built, skipped = build_report(res)
    assert "fig8_distill_curves" not in {bf.stem for bf in built} | {s.stem for s in skipped}
    assert not any(kind == "h3" and payload == "Trained to a plateau?" for kind, payload in doc.blocks)


def test_a_malformed_curves_file_is_a_one_line_store_error(tmp_path) -> None:
    root = write_fake_results(tmp_path / "bad", parts=("distill",)).root
    (root / "distill_curves.csv").write_text("model,step\nx,1\n")
    with pytest.raises(StoreError, match="lacks column"):
        read_distill_curves(root)
