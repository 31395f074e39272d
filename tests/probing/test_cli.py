"""`deepwide probe` through the root CLI."""

from __future__ import annotations

import xarray as xr
from click.testing import CliRunner

from deepwide.cli import cli
from deepwide.errors import TaskError
from deepwide.store import read_attrs


def test_probe_writes_results(store_paths, tmp_path) -> None:
    store, null = store_paths
    out = tmp_path / "res"
    result = CliRunner().invoke(
        cli,
        ["--seed", "3", "probe", "--task", "sid", "--task", "phone", "--store", str(store), "--null", str(null),
         "--out", str(out), "--boot", "50", "--max-train-frames", "500", "--device", "cpu", "--tol", "1e-3"],
    )
    assert result.exit_code == 0, result.output
    assert "fake-model · sid" in result.output and "random:fake-model (null of fake-model) · phone" in result.output
    assert result.output.count("  *\n") == 4  # one best layer per model × task
    ds = xr.open_dataset(out / "probe.nc")
    assert list(ds["task"].values) == ["sid", "phone"] and ds.attrs["seed"] == 3
    assert ds.attrs["corpus_id"] == read_attrs(store)["corpus_id"] != ""
    assert '"tol": 0.001' in ds.attrs["config"]
    assert ds["score"].dims == ("model", "task", "layer")
    assert int(ds["n_train"].sel(model="fake-model", task="phone", layer=0)) == 500
    assert (out / "probe.csv").read_text().startswith("model,task,layer,")


def test_probe_max_iter_reaches_the_solver_and_its_warning(store_paths, tmp_path) -> None:
    store, _ = store_paths
    result = CliRunner().invoke(
        cli, ["probe", "--task", "sid", "--store", str(store), "--out", str(tmp_path / "r"), "--boot", "20",
              "--device", "cpu", "--max-iter", "1", "--tol", "1e-9", "--no-weighted-sum"],
    )
    assert result.exit_code == 0, result.output
    with xr.open_dataset(tmp_path / "r" / "probe.nc") as res:
        assert '"max_iter": 1' in res.attrs["config"]
    warning = [line for line in result.output.splitlines() if line.startswith("WARNING")]
    assert len(warning) == 1 and "fake-model · sid: the chosen fit of layer(s) 0, 1, 2, 3, 4 stopped at max_iter=1" in warning[0]
    assert "raise --max-iter" in warning[0]


def test_probe_all_skips_unservable_and_missing_label_errors(store_paths) -> None:
    store, _ = store_paths
    runner = CliRunner()
    result = runner.invoke(cli, ["probe", "--task", "er", "--store", str(store)])
    assert result.exit_code == TaskError.exit_code
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "emotion" in lines[0] and "it has labels: phone, speaker" in lines[0]
    result = runner.invoke(cli, ["probe", "--task", "nope", "--store", str(store)])
    assert result.exit_code == 2 and "asv" in result.output


def test_probe_help_lists_tasks() -> None:
    result = CliRunner().invoke(cli, ["probe", "--help"])
    assert result.exit_code == 0
    for name in ("phone", "ks", "ic", "sid", "sid-frame", "asv", "er"):
        assert f"  {name} " in result.output


def test_cli_module_imports_nothing_heavy() -> None:
    import subprocess
    import sys

    code = "import sys, deepwide.probing.cli; print('torch' in sys.modules, 'xarray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
