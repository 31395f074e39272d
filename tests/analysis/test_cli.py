"""`deepwide analyze …` through the root CLI, on fake stores with planted structure."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner

from deepwide.cli import cli
from tests.fakes import write_fake_store


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("cli_stores")
    out = {
        "teacher": write_fake_store(
            root / "teacher.zarr", model_id="tiny-teacher", seed=0, num_layers=4, dim=16
        ),
        "student": write_fake_store(
            root / "student.zarr", model_id="student-2x24", seed=1, num_layers=2, dim=24
        ),
        "null": write_fake_store(
            root / "null.zarr",
            model_id="random:student-2x24",
            seed=2,
            num_layers=2,
            dim=24,
            structure=False,
        ),
    }
    return {k: str(v) for k, v in out.items()}


def _invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["--seed", "7", *args])
    return result.exit_code, result.stdout, result.stderr


def _similarity_args(a: str, b: str, out: Path, *options: str) -> list[str]:
    """Arguments of ``analyze similarity`` between stores *a* and *b*, writing to *out*."""
    return ["analyze", "similarity", "--a", a, "--b", b, *options, "--out", str(out)]


@pytest.mark.parametrize("measure", ["cka", "cka-debiased", "cka-rbf", "svcca", "pwcca"])
def test_similarity_command(paths: dict[str, str], tmp_path: Path, measure: str) -> None:
    code, out, _ = _invoke(
        *_similarity_args(
            paths["teacher"],
            paths["student"],
            tmp_path,
            "--measure",
            measure,
            "--frames-per-utt",
            "4",
            "--null",
            paths["null"],
        )
    )
    assert code == 0, out
    nc = tmp_path / f"similarity_{measure}_tiny-teacher__student-2x24.nc"
    assert nc.exists() and nc.with_suffix(".csv").exists()
    ds = xr.load_dataset(nc)
    assert (
        ds["similarity"].shape == (5, 3)
        and ds.attrs["seed"] == 7
        and ds.attrs["frames_per_utt"] == 4
        and ds.attrs["corpus_id"] != ""
    )
    assert ds.attrs["n_samples"] == 96 * 4
    assert float(ds["similarity"].sel(layer_a=0, layer_b=0)) > float(ds["null_similarity"].max())
    assert f"{measure} similarity: tiny-teacher (rows) vs student-2x24 (columns), 384 frames" in out
    assert "null: tiny-teacher (rows) vs random:student-2x24 (columns)" in out


def test_similarity_layers_option(paths: dict[str, str], tmp_path: Path) -> None:
    code, out, _ = _invoke(
        *_similarity_args(paths["teacher"], paths["teacher"], tmp_path, "--layers", "0-4:2")
    )
    assert code == 0, out
    ds = xr.load_dataset(tmp_path / "similarity_cka-debiased_tiny-teacher__tiny-teacher.nc")
    assert list(ds["layer_a"].values) == [0, 2, 4] == list(ds["layer_b"].values)
    np.testing.assert_allclose(np.diag(ds["similarity"].values), 1.0, atol=1e-9)


def test_labels_command_places_speaker_low_and_phone_high(
    paths: dict[str, str], tmp_path: Path
) -> None:
    code, out, _ = _invoke(
        "analyze",
        "labels",
        "--store",
        paths["teacher"],
        "--store",
        paths["null"],
        "--label",
        "phone",
        "--label",
        "speaker",
        "--out",
        str(tmp_path),
    )
    assert code == 0, out
    ds = xr.load_dataset(tmp_path / "labels.nc")
    t = ds["label_cca"].sel(model="tiny-teacher")
    assert t.sel(label="phone", layer=4) > t.sel(label="phone", layer=0) + 0.5
    assert t.sel(label="speaker", layer=0) > t.sel(label="speaker", layer=4) + 0.5
    assert "tiny-teacher phone" in out and "random:student-2x24 speaker" in out
    assert (tmp_path / "labels.csv").exists()


def test_spectrum_command(paths: dict[str, str], tmp_path: Path) -> None:
    code, out, _ = _invoke(
        "analyze",
        "spectrum",
        "--store",
        paths["teacher"],
        "--store",
        paths["student"],
        "--out",
        str(tmp_path),
    )
    assert code == 0, out
    ds = xr.load_dataset(tmp_path / "spectrum.nc")
    assert ds["effective_rank"].dims == ("model", "layer")
    assert np.isnan(ds["effective_rank"].sel(model="student-2x24", layer=4))
    assert "effective rank by layer" in out and "participation ratio by layer" in out


def test_user_errors_are_one_line(paths: dict[str, str], tmp_path: Path) -> None:
    args = _similarity_args(paths["teacher"], str(tmp_path / "missing.zarr"), tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "deepwide", *args], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 2
    assert (
        proc.stderr.strip().lower().startswith("error:")
        and len(proc.stderr.strip().splitlines()) == 1
    )
    code, _, _ = _invoke(
        *_similarity_args(paths["teacher"], paths["student"], tmp_path, "--layers", "0,9")
    )
    assert code != 0
    code, _, err = _invoke(
        *_similarity_args(paths["teacher"], paths["student"], tmp_path, "--measure", "nope")
    )
    assert code == 2 and "nope" in err


def test_cli_module_imports_no_torch_or_xarray() -> None:
    code = "import sys, deepwide.analysis.cli; print(any(m in sys.modules for m in ('torch', 'xarray')))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "False"


def test_damaged_store_is_refused_in_one_line(tmp_path: Path) -> None:
    from tests.probing.damaged import delete_chunk, write_chunked_store

    bad = write_chunked_store(tmp_path / "bad.zarr", n_speakers=4, utts_per_speaker=4, num_layers=2, dim=8,
                              frames_per_utt=10)
    delete_chunk(bad, "hidden", 1)
    for args in (["spectrum", "--store", str(bad)], ["labels", "--store", str(bad), "--label", "phone"]):
        code, out, err = _invoke("analyze", *args, "--out", str(tmp_path / "out"))
        assert code == 2, out + err
        lines = [line for line in err.strip().splitlines() if line.startswith("Error")]  # (log lines aside)
        assert len(lines) == 1 and "Traceback" not in err
        assert f"store {bad}: `hidden` layer 1 holds" in lines[0] and f"deepwide store validate --data {bad}" in lines[0]
        assert not (tmp_path / "out" / "spectrum.nc").exists()
