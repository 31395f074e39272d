"""The SUPERB-units table and figure: published rows (package data) and measured scores, apart."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from deepwide.figures.document import Doc
from deepwide.figures.markdown_renderer import render_markdown
from deepwide.figures.recipes import build_figures
from deepwide.figures.report import write_report
from deepwide.figures.results import load_results
from deepwide.figures.sections import add_superb_section
from deepwide.figures.style import panel_axes
from deepwide.figures.superb import (
    CAVEAT,
    MEASURED_LABEL,
    PUBLISHED_LABEL,
    SUPERB_TASKS,
    load_published_superb,
    published_superb,
    superb_scores,
)
from tests.figures.fake_results import DEEP, TASKS, TRAINED, model_ids, write_fake_results

#: The "SUPERB results" table of the reference notes (paper.md), typed in here independently of
#: the data file: params M, PR PER, KS acc, IC acc, SID acc, ER acc, ASR WER, ASV EER, SD DER.
REFERENCE = {
    "HuBERT Base": (94.68, 5.41, 96.30, 98.34, 81.42, 64.92, 6.42, 5.11, 5.88),
    "DistilHuBERT": (23.49, 16.27, 95.98, 94.99, 73.54, 63.02, 13.37, 8.55, 6.19),
    "FitHuBERT": (22.49, 13.32, 96.27, 91.25, 55.71, 59.82, 12.09, 8.00, 6.84),
    "3-L One-PredLayer": (30.58, 13.34, 96.69, 94.15, 75.71, 63.95, 12.23, 6.48, 6.56),
    "12-L Half-L2L": (26.87, 10.67, 97.24, 96.97, 69.52, 63.24, 10.96, 6.13, 6.81),
    "DPHuBERT": (23.59, 9.67, 96.36, 97.92, 76.83, 63.16, 10.47, 5.84, 5.92),
    "STaRHuBERT": (22.31, 8.16, 96.27, 97.55, 77.58, 63.01, 9.35, 5.39, 6.05),
}
COLUMNS = ("params_m", "PR", "KS", "IC", "SID", "ER", "ASR", "ASV", "SD")
#: deepwide task of each SUPERB column, as the brief of the table defines it
TASK_OF = {"PR": "pr", "KS": "ks", "IC": "ic", "SID": "sid", "ER": "er", "ASR": "asr", "ASV": "asv"}


def test_the_data_file_holds_exactly_the_reference_table_and_its_source() -> None:
    pub = load_published_superb()
    assert list(pub.rows["model"]) == list(REFERENCE)  # the source's order
    for _, row in pub.rows.iterrows():
        assert tuple(float(row[c]) for c in COLUMNS) == REFERENCE[row["model"]], row["model"]
    for name in ("HuBERT Base", "DistilHuBERT", "3-L One-PredLayer", "12-L Half-L2L"):
        src = pub.rows.set_index("model").loc[name, "source"]
        assert src == "Ashihara et al. 2022, Table 2"
    for token in ("Ashihara", "Interspeech 2022", "arXiv 2207.06867", "Table 2"):
        assert token in pub.citation
    assert "SUPERB" in pub.protocol
    assert published_superb().rows.equals(pub.rows)


def test_every_superb_task_maps_to_its_published_column() -> None:
    assert {st.column: st.task for st in SUPERB_TASKS} == TASK_OF
    lower = {st.column for st in SUPERB_TASKS if not st.higher_is_better}
    assert lower == {"PR", "ASR", "ASV"}


def test_a_malformed_data_file_is_a_one_line_config_error(tmp_path: Path) -> None:
    from deepwide.errors import ConfigError

    bad = tmp_path / "superb.toml"
    bad.write_text(
        '[source]\ncitation = "x"\nprotocol = "y"\nunits = "z"\n[[model]]\nmodel = "A"\n'
    )
    with pytest.raises(ConfigError, match="lacks"):
        load_published_superb(bad)


@pytest.fixture(scope="module")
def with_pr(tmp_path_factory: pytest.TempPathFactory):
    """A fake results folder with a ``pr`` task, the deep student's PR weighted sum removed."""
    root = tmp_path_factory.mktemp("results")
    fake = write_fake_results(root, with_pr=True, measures=("cka",))
    probe = xr.load_dataset(root / "probe.nc")
    probe["ws_score"].loc[{"model": DEEP, "task": "pr"}] = np.nan
    probe.to_netcdf(root / "probe.nc")
    return fake, root, probe


@pytest.fixture(scope="module")
def report(with_pr, tmp_path_factory: pytest.TempPathFactory):
    _, root, _ = with_pr
    out = tmp_path_factory.mktemp("report")
    html_path, md_path = write_report(root, out)
    return html_path.read_text(), md_path.read_text()


def _measured_cell(probe: xr.Dataset, model: str, column: str) -> str:
    """The cell written out longhand: weighted sum when finite, else best layer with a †."""
    task = TASK_OF[column]
    if task not in probe["task"].values:
        return "—"
    ws = float(probe["ws_score"].sel(model=model, task=task))
    if math.isfinite(ws):
        return f"{100 * ws:.1f}"
    s = probe["score"].sel(model=model, task=task).values.astype(float)
    lower = not bool(probe["higher_is_better"].sel(task=task))
    i = int(np.nanargmin(s) if lower else np.nanargmax(s))
    return f"{100 * s[i]:.1f}† (layer {i})"


def _block(md: str, label: str) -> str:
    start = md.index(f"### {label}")
    rest = md[start + 4 :]
    ends = [i for i in (rest.find("\n## "), rest.find("\n### ")) if i >= 0]
    return rest[: min(ends)] if ends else rest


def test_report_has_both_blocks_apart_with_their_labels_and_the_caveat(report) -> None:
    html, md = report
    for label in (PUBLISHED_LABEL, MEASURED_LABEL):
        assert f"### {label}" in md and f"<h3>{label}</h3>" in html
    assert md.index(f"### {PUBLISHED_LABEL}") < md.index(f"### {MEASURED_LABEL}")
    assert f"Caveat: {CAVEAT}" in md
    assert "not comparable across the two blocks" in html
    published, measured = _block(md, PUBLISHED_LABEL), _block(md, MEASURED_LABEL)
    assert not any(m in measured for m in REFERENCE)  # no published row among the measured
    assert not any(f"| {m} |" in published for m in model_ids())
    assert "**" not in published + measured  # nothing is bolded as a winner


def test_report_prints_the_published_numbers_in_the_source_order(report) -> None:
    _, md = report
    published = _block(md, PUBLISHED_LABEL)
    assert (
        "| 12-L Half-L2L | 26.87 | 10.67 | 97.24 | 96.97 | 69.52 | 63.24 | 10.96 | 6.13 |"
        in published
    )
    assert (
        "| HuBERT Base | 94.68 | 5.41 | 96.30 | 98.34 | 81.42 | 64.92 | 6.42 | 5.11 |" in published
    )
    positions = [published.index(f"| {m} |") for m in REFERENCE]
    assert positions == sorted(positions)


def test_report_prints_every_measured_model_in_superb_units(with_pr, report) -> None:
    _, _, probe = with_pr
    _, md = report
    measured = _block(md, MEASURED_LABEL)
    assert "| model | params (M) | PR PER % ↓ | KS acc % |" in measured
    for m in model_ids():
        base = m.removeprefix("random:")
        cells = [f"{TRAINED[base][2] / 1e6:.2f}"] + [
            _measured_cell(probe, m, st.column) for st in SUPERB_TASKS
        ]
        assert f"| {m} | " + " | ".join(cells) + " |" in measured, m
    # the deep student's PR has no weighted sum: its best layer, marked; ER and ASR are missing
    deep = next(line for line in measured.splitlines() if line.startswith(f"| {DEEP} |"))
    assert "†" in deep and deep.count("—") == 2
    assert "† the model has no weighted-sum score" in measured


def test_a_task_the_results_lack_is_a_dash(tmp_path: Path) -> None:
    root = write_fake_results(tmp_path / "r", parts=("probe",)).root  # no pr, er, asr
    res = load_results(root)
    doc = Doc()
    add_superb_section(doc, res)
    md = render_markdown(doc)
    measured = _block(md, MEASURED_LABEL)
    rows = [
        line for line in measured.splitlines() if line.startswith("| ") and "params" not in line
    ]
    assert len(rows) == len(model_ids())
    for line in rows:
        cells = [c.strip() for c in line.strip("|").split("|")]
        by_col = dict(zip([st.column for st in SUPERB_TASKS], cells[2:], strict=True))
        for col, task in TASK_OF.items():
            assert (by_col[col] == "—") == (task not in TASKS), (line, col)


def test_superb_scores_are_percent_and_say_their_source(with_pr) -> None:
    _, _, probe = with_pr
    df = superb_scores(probe).set_index(["model", "column"])
    ws = float(probe["ws_score"].sel(model=DEEP, task="ks"))
    assert df.loc[(DEEP, "KS"), "score"] == pytest.approx(100 * ws)
    assert df.loc[(DEEP, "KS"), "source"] == "weighted sum"
    assert df.loc[(DEEP, "PR"), "source"] == "best layer"
    assert set(df.index.get_level_values("column")) == {"PR", "KS", "IC", "SID", "ASV"}


@pytest.fixture(scope="module")
def fig7(with_pr):
    _, root, probe = with_pr
    built, _ = build_figures(load_results(root))
    return next(bf for bf in built if bf.stem == "fig7_superb_units"), probe


def test_figure_draws_published_and_measured_in_separate_rows(fig7) -> None:
    bf, probe = fig7
    fig = bf.figure
    top, bottom = fig.subfigs
    assert top._suptitle.get_text().startswith(PUBLISHED_LABEL)
    assert bottom._suptitle.get_text().startswith(MEASURED_LABEL)
    measured_cols = ["PR", "KS", "IC", "SID", "ASV"]  # ER and ASR are not measured: skipped
    assert [ax.get_title() for ax in top.axes] == measured_cols
    assert len(panel_axes(fig)) == 2 * len(measured_cols)
    for a in top.axes:  # no axis is shared across the two blocks
        for b in bottom.axes:
            assert not a.get_shared_x_axes().joined(a, b)
            assert not a.get_shared_y_axes().joined(a, b)
    pr_pub = top.axes[0]
    xs = pr_pub.collections[0].get_offsets()[:, 0]
    np.testing.assert_allclose(xs, [REFERENCE[m][1] for m in REFERENCE])
    ks_meas = bottom.axes[1]
    drawn = sorted(float(c.lines[0].get_xdata()[0]) for c in ks_meas.containers)
    expected = sorted(100 * probe["ws_score"].sel(task="ks").values.astype(float))
    np.testing.assert_allclose(drawn, expected)
    assert any(t.get_text() == "†" for t in bottom.axes[0].texts)  # the deep student's best layer


def test_figure_is_skipped_without_a_superb_task(tmp_path: Path) -> None:
    root = tmp_path / "r"
    write_fake_results(root, parts=("probe",))
    probe = xr.load_dataset(root / "probe.nc").sel(task=["phone"])
    probe.to_netcdf(root / "probe.nc")
    built, skipped = build_figures(load_results(root))
    assert "fig7_superb_units" not in {bf.stem for bf in built}
    note = next(s for s in skipped if s.stem == "fig7_superb_units")
    assert "none of the SUPERB tasks" in note.reason
