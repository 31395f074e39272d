"""Figures from a fake results folder: files, panels, styles, plotted data, degradation, errors."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner
from matplotlib.colors import to_hex

from deepwide.cli import cli
from deepwide.errors import ConfigError, StoreError
from deepwide.figures.recipes import build_figures, make_figures
from deepwide.figures.results import load_results
from deepwide.figures.style import OKABE_ITO, panel_axes
from deepwide.figures.superb import PUBLISHED_TASKS, SUPERB_TASKS
from tests.figures.fake_results import TASKS, TEACHER, TRAINED, model_ids, write_fake_results

MEASURES = ("cka", "svcca")


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory):
    return write_fake_results(tmp_path_factory.mktemp("results"), measures=MEASURES)


@pytest.fixture(scope="module")
def built(fake):
    figs, skipped = build_figures(load_results(fake.root))
    return {bf.stem: bf.figure for bf in figs}, skipped


def _expected_panels() -> dict[str, int]:
    students = len(TRAINED) - 1
    objectives = len({obj for m, (*_, obj) in TRAINED.items() if m != TEACHER})
    return {
        "fig1_probe_curves": len(TASKS),
        **{f"fig2_similarity_{m}": 2 * students for m in MEASURES},  # students + their nulls
        "fig3_params_vs_score": len(TASKS) + sum(t in PUBLISHED_TASKS for t in TASKS),
        "fig4_depth_width_grid": objectives * 2,  # content and speaker
        "fig5_ws_weights": len(TASKS) + 1,  # + layer norms
        "fig6_label_cca_rank": 2 + 1,  # phone, speaker label-CCA + effective rank
        # published and measured rows, a column per measured SUPERB task
        "fig7_superb_units": 2 * sum(st.task in TASKS for st in SUPERB_TASKS),
    }


def test_make_figures_writes_a_decodable_png_and_a_pdf_per_figure(fake, tmp_path: Path) -> None:
    out = tmp_path / "figs"
    paths = make_figures(fake.root, out)
    stems = {p.stem for p in paths}
    assert stems == set(_expected_panels())
    assert len(paths) == 2 * len(stems)
    for stem in stems:
        png, pdf = out / f"{stem}.png", out / f"{stem}.pdf"
        img = mpimg.imread(png)
        assert img.ndim == 3 and img.shape[0] > 300 and img.shape[1] > 500
        assert float(img[..., :3].var()) > 1e-3, f"{stem}.png looks blank"
        assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 5_000
    assert not list(out.glob(".*tmp")), "temporary files left behind"


def test_each_figure_has_the_expected_panels(built) -> None:
    figs, skipped = built
    assert skipped == []
    counts = {stem: len(panel_axes(fig)) for stem, fig in figs.items()}
    assert counts == _expected_panels()
    # every panel has something drawn on it
    for stem, fig in figs.items():
        for ax in panel_axes(fig):
            assert ax.lines or ax.images or ax.collections, f"empty panel in {stem}"


def test_probe_curves_plot_the_stored_scores_with_twins_dashed_in_their_models_colour(
    fake, built
) -> None:
    fig = built[0]["fig1_probe_curves"]
    ax = next(a for a in panel_axes(fig) if a.get_title() == "phone")
    lines = {ln.get_label(): ln for ln in ax.lines if not ln.get_label().startswith("_")}
    teacher = lines[f"{TEACHER} (teacher)"]
    L = TRAINED[TEACHER][0]
    expected = 100 * fake.probe["score"].sel(model=TEACHER, task="phone").values[: L + 1]
    np.testing.assert_allclose(teacher.get_ydata(), expected)
    np.testing.assert_allclose(teacher.get_xdata(), np.arange(L + 1) / L)
    for m in model_ids():
        if not m.startswith("random:"):
            continue
        twin, base = (
            lines[m],
            lines[next(k for k in lines if k.split(" ")[0] == m.removeprefix("random:"))],
        )
        assert twin.get_linestyle() == "--" and base.get_linestyle() == "-"
        assert to_hex(twin.get_color()) == to_hex(base.get_color())
    # a 3-layer student's curve spans relative depth 0..1 in 4 points
    wide = lines["student-3x256-predlayer"]
    np.testing.assert_allclose(wide.get_xdata(), [0, 1 / 3, 2 / 3, 1])


def test_one_colour_per_model_across_figures_from_the_okabe_ito_palette(built) -> None:
    figs, _ = built
    palette = {c.lower() for c in OKABE_ITO.values()}
    colour_of: dict[str, str] = {}
    for stem in ("fig1_probe_curves", "fig5_ws_weights", "fig6_label_cca_rank"):
        for ax in panel_axes(figs[stem]):
            for ln in ax.lines:
                label = ln.get_label()
                if label.startswith("_"):
                    continue
                c = to_hex(ln.get_color()).lower()
                assert c in palette, f"{label} in {stem} is not an Okabe-Ito colour"
                assert colour_of.setdefault(label, c) == c, f"{label} changes colour in {stem}"
    trained = {k for k in colour_of if not k.startswith("random:")}
    assert len({colour_of[k] for k in trained}) == len(trained) == len(TRAINED)


def test_published_context_is_a_separate_labelled_row(built) -> None:
    fig = built[0]["fig3_params_vs_score"]
    titles = [ax.get_title() for ax in panel_axes(fig)]
    assert sum(t.startswith("published") for t in titles) == sum(
        t in PUBLISHED_TASKS for t in TASKS
    )
    texts = " ".join(sf._suptitle.get_text() for sf in fig.subfigs if sf._suptitle is not None)
    assert "published (SUPERB" in texts and "this study" in texts


def test_similarity_heatmap_shows_the_stored_grid(fake, built) -> None:
    fig = built[0]["fig2_similarity_cka"]
    grid = fake.similarities[0]
    ims = [ax.images[0].get_array() for ax in panel_axes(fig) if ax.images]
    assert any(
        im.shape == grid["similarity"].shape and np.allclose(im, grid["similarity"].values)
        for im in ims
    )
    assert any(
        np.allclose(im, grid["null_similarity"].values)
        for im in ims
        if im.shape == grid["similarity"].shape
    )


def test_missing_inputs_skip_their_figures_and_say_so(fake, tmp_path: Path, caplog) -> None:
    only_probe = write_fake_results(tmp_path / "p", parts=("probe",)).root
    with caplog.at_level(logging.WARNING, logger="deepwide.figures"):
        figs, skipped = build_figures(load_results(only_probe))
    assert {bf.stem for bf in figs} == {
        "fig1_probe_curves",
        "fig3_params_vs_score",
        "fig4_depth_width_grid",
        "fig5_ws_weights",
        "fig7_superb_units",
    }
    assert {s.stem for s in skipped} == {"fig2_similarity", "fig6_label_cca_rank"}
    assert (
        "skipping fig2_similarity" in caplog.text and "skipping fig6_label_cca_rank" in caplog.text
    )
    # labels alone: figure 6 without the effective-rank panel
    only_labels = write_fake_results(tmp_path / "l", parts=("labels",)).root
    figs, skipped = build_figures(load_results(only_labels))
    assert [bf.stem for bf in figs] == ["fig6_label_cca_rank"]
    assert len(panel_axes(figs[0].figure)) == 2
    # an empty folder: nothing drawn, nothing written, no error
    (tmp_path / "empty").mkdir()
    assert make_figures(tmp_path / "empty", tmp_path / "out") == []


def test_malformed_results_raise_one_line_store_errors(fake, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    fake.probe.transpose("layer", "task", "model").to_netcdf(bad / "probe.nc")
    with pytest.raises(
        StoreError,
        match=r"'score' has dims \(layer, task, model\), expected \(model, task, layer\)",
    ) as ei:
        load_results(bad)
    assert "\n" not in str(ei.value)
    (bad / "probe.nc").write_bytes(b"not a netcdf file")
    with pytest.raises(StoreError, match="cannot be read"):
        load_results(bad)
    (bad / "probe.nc").unlink()
    fake.labels.drop_vars("label_cca").to_netcdf(bad / "labels.nc")
    with pytest.raises(StoreError, match="lacks label_cca"):
        load_results(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_results(tmp_path / "nowhere")


def test_cli_missing_results_dir_is_one_line_and_nonzero(tmp_path: Path) -> None:
    runner = CliRunner()
    for cmd in (
        ["figures", "--results", str(tmp_path / "nope"), "--out", str(tmp_path / "o")],
        ["report", "--results", str(tmp_path / "nope")],
    ):
        res = runner.invoke(cli, cmd)
        assert res.exit_code != 0
        assert "does not exist" in res.output
        assert len(res.output.strip().splitlines()) == 1, res.output
        assert "Traceback" not in res.output
    assert not (tmp_path / "o").exists()


def test_cli_figures_writes_files(tmp_path: Path) -> None:
    root = write_fake_results(tmp_path / "r", parts=("labels", "spectrum")).root
    res = CliRunner().invoke(cli, ["figures", "--results", str(root), "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == [
        "fig6_label_cca_rank.pdf",
        "fig6_label_cca_rank.png",
    ]
    # default --out: RESULTS/figures
    res = CliRunner().invoke(cli, ["figures", "--results", str(root)])
    assert res.exit_code == 0 and (root / "figures" / "fig6_label_cca_rank.png").is_file()


def test_cli_module_imports_no_plotting_or_array_libraries() -> None:
    code = (
        "import sys, deepwide.figures, deepwide.figures.cli; "
        "print([m for m in ('matplotlib', 'xarray', 'pandas') if m in sys.modules])"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]"


def test_fake_results_follow_the_schema(fake) -> None:
    probe = xr.open_dataset(fake.root / "probe.nc")
    assert probe["score"].dims == ("model", "task", "layer")
    assert {"num_layers", "dim", "params", "is_null", "null_of"} <= set(probe.data_vars)
    probe.close()
    names = sorted(p.name for p in fake.root.glob("similarity_*.nc"))
    assert "similarity_cka_tiny-teacher__student-12x128-l2l.nc" in names


def test_a_task_without_weighted_sum_is_scored_by_its_best_layer_everywhere(fake) -> None:
    """A real probe has no weighted-sum score for asv (it is scored, not trained): the headline
    table takes its best layer, fig. 3 draws it and says so, and the report names it."""
    from deepwide.figures.report import build_report, render_markdown
    from deepwide.figures.results import best_layer_tasks, headline_scores

    res = load_results(fake.root)
    for v in ("ws_score", "ws_ci_low", "ws_ci_high"):
        res.probe[v].loc[{"task": "asv"}] = np.nan
    scores, name = headline_scores(res.probe)
    assert name == "weighted-sum probe" and best_layer_tasks(scores) == ["asv"]
    assert set(scores["task"]) == {str(t) for t in res.probe["task"].values}
    figs, _ = build_figures(res)
    fig = next(bf.figure for bf in figs if bf.stem == "fig3_params_vs_score")
    ax = next(a for a in panel_axes(fig) if a.get_title() == "asv (best layer)")
    assert ax.lines or ax.collections
    assert any(a.get_title() == "phone" for a in panel_axes(fig))
    doc, _, _ = build_report(res)
    assert "weighted-sum probe score (asv: best layer, chosen on test)" in render_markdown(doc)
