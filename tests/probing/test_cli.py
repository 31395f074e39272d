"""`deepwide probe` through the root CLI."""

from __future__ import annotations

import errno

import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner

from deepwide.cli import cli
from deepwide.errors import ConfigError, DiskFullError, StoreError, TaskError
from deepwide.store import read_attrs, validate_store


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


# ---------------------------------------------------------------- issue 18
FAST = ["--boot", "20", "--device", "cpu", "--no-weighted-sum", "--max-train-frames", "300"]


def _error_line(result) -> str:
    """The one error line of a failed command (a table printed before it is allowed)."""
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    return errors[0]


@pytest.fixture()
def chunked(tmp_path):
    from tests.probing.damaged import write_chunked_store

    return write_chunked_store(tmp_path / "chunked.zarr", n_speakers=6, utts_per_speaker=5, num_layers=5, dim=8,
                               frames_per_utt=10)


@pytest.mark.parametrize(("task", "array"), [("sid", "pooled"), ("phone", "hidden")])
def test_probe_refuses_a_store_with_a_deleted_chunk(chunked, task: str, array: str) -> None:
    from tests.probing.damaged import delete_chunk

    delete_chunk(chunked, array, 5)
    problems = validate_store(chunked)
    assert any("chunks unwritten" in p for p in problems)  # what `store validate` says
    result = CliRunner().invoke(cli, ["probe", "--task", task, "--store", str(chunked), *FAST])
    assert result.exit_code == StoreError.exit_code
    line = _error_line(result)
    assert f"store {chunked}: `{array}` layer 5 holds" in line and "non-finite" in line
    assert f"deepwide store validate --data {chunked}" in line
    assert "fake-model · " not in result.output  # no table of scores


def test_probe_refuses_a_store_marked_complete_too_early(tmp_path) -> None:
    import json as _json

    from tests.probing.damaged import set_attr, write_chunked_store

    path = write_chunked_store(tmp_path / "early.zarr", n_speakers=6, utts_per_speaker=5, num_layers=2, dim=8,
                               frames_per_utt=10)
    for layer in (1, 2):  # these layers were never written …
        for array in ("pooled", "hidden"):
            (path / array / "c" / str(layer) / "0" / "0").unlink()
    set_attr(path, "completion", _json.dumps({"complete": True, "shards": 1, "done": [0]}))  # … but marked done
    result = CliRunner().invoke(cli, ["probe", "--task", "sid", "--store", str(path), *FAST])
    assert result.exit_code == StoreError.exit_code and "`pooled` layer 1 holds" in _error_line(result)


def test_probe_refuses_a_phone_set_shorter_than_its_labels(chunked) -> None:
    from tests.probing.damaged import set_attr

    set_attr(chunked, "phone_set", '["p0"]')
    result = CliRunner().invoke(cli, ["probe", "--task", "phone", "--store", str(chunked), *FAST])
    assert result.exit_code == StoreError.exit_code
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "frame phone labels run 0..8 but phone_set has 1 phone(s)" in lines[0]


def test_probe_refuses_a_null_of_another_corpus(store_paths, tmp_path) -> None:
    from tests.fakes import write_fake_store

    store, _ = store_paths
    other = write_fake_store(tmp_path / "other-null.zarr", seed=1, structure=False, model_id="random:fake-model")
    from tests.probing.damaged import set_attr

    set_attr(other, "manifest_hash", "another-manifest")
    result = CliRunner().invoke(cli, ["probe", "--task", "sid", "--store", str(store), "--null", str(other),
                                      "--out", str(tmp_path / "r"), *FAST])
    assert result.exit_code == StoreError.exit_code
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "different corpora (manifest_hash 'fake' vs 'another-manifest')" in lines[0]
    assert not (tmp_path / "r").exists()


def test_probe_out_merges_tasks_and_refuses_other_settings(store_paths, tmp_path) -> None:
    store, _ = store_paths
    out = tmp_path / "res"
    run = ["probe", "--store", str(store), "--out", str(out), *FAST]
    first = CliRunner().invoke(cli, [*run, "--task", "sid"])
    assert first.exit_code == 0, first.output
    second = CliRunner().invoke(cli, [*run, "--task", "ks"])
    assert second.exit_code == 0, second.output
    assert "merged with the results there: kept earlier task(s) sid" in second.output
    third = CliRunner().invoke(cli, [*run, "--task", "sid"])
    assert "kept earlier task(s) ks; replaced task(s) sid with this run's" in third.output
    with xr.open_dataset(out / "probe.nc") as ds:
        assert list(ds["task"].values) == ["sid", "ks"]
    csv = (out / "probe.csv").read_text()
    assert ",ks," in csv and ",sid," in csv and "backend" in csv.splitlines()[0]
    other = [*run[:-len(FAST)], *FAST[2:], "--boot", "30"]
    refused = CliRunner().invoke(cli, [*other, "--task", "ks"])
    assert refused.exit_code == ConfigError.exit_code
    lines = refused.output.strip().splitlines()
    assert len(lines) == 1 and "it was probed with n_boot=20, this run with n_boot=30" in lines[0]
    assert "use another --out" in lines[0] and "fake-model ·" not in refused.output  # refused before probing


def _full_disk(monkeypatch, out):
    """netCDF writes under ``out`` fail as on a full disk (elsewhere they work)."""
    real = xr.Dataset.to_netcdf

    def to_netcdf(self, path=None, *args, **kwargs):
        if str(path).startswith(str(out)):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, path, *args, **kwargs)

    monkeypatch.setattr(xr.Dataset, "to_netcdf", to_netcdf)


def test_probe_on_a_full_disk_saves_the_results_elsewhere(store_paths, tmp_path, monkeypatch) -> None:
    import deepwide.probing.run as run

    store, _ = store_paths
    out, spare = tmp_path / "full", tmp_path / "spare"
    spare.mkdir()
    _full_disk(monkeypatch, out)
    monkeypatch.setattr(run.tempfile, "gettempdir", lambda: str(spare))
    monkeypatch.setattr(run, "_device", lambda p: 2 if str(p).startswith(str(spare)) else 1)  # another disk
    result = CliRunner().invoke(cli, ["probe", "--task", "sid", "--store", str(store), "--out", str(out), *FAST])
    assert result.exit_code == DiskFullError.exit_code
    line = _error_line(result)
    assert f"the disk holding {out} is full" in line and "B needed)" in line and " s of probing" in line
    saved = list(spare.glob("deepwide-probe-*/probe.nc"))
    assert len(saved) == 1 and f"were saved to {saved[0].parent} instead" in line
    with xr.open_dataset(saved[0]) as ds:
        assert list(ds["task"].values) == ["sid"] and np.isfinite(ds["score"].sel(task="sid")).any()
    assert not (out / "probe.nc").exists() and not (out / "probe.csv").exists()
    assert "fake-model · sid" in result.output  # the table was printed before


def test_probe_on_a_full_disk_without_another_disk_says_not_saved(store_paths, tmp_path, monkeypatch) -> None:
    store, _ = store_paths
    out = tmp_path / "full"
    _full_disk(monkeypatch, out)
    result = CliRunner().invoke(cli, ["probe", "--task", "sid", "--store", str(store), "--out", str(out), *FAST])
    assert result.exit_code == DiskFullError.exit_code
    line = _error_line(result)
    assert "is full" in line and "were NOT saved" in line and "is on the same disk" in line
    assert "PermissionError" not in result.output and "Errno" not in result.output
