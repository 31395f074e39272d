"""ER over cross-validation folds: SUPERB's five leave-one-session-out folds from one store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from deepwide.cli import cli
from deepwide.corpora import resolve_corpus
from deepwide.extract import ExtractConfig, extract_features
from deepwide.probing.folds import bootstrap_fold_mean_ci
from deepwide.probing.run import ProbeConfig, probe_stores
from deepwide.probing.stats import bootstrap_mean_ci
from deepwide.probing.tasks import TASKS, FoldedData, TaskData
from deepwide.store import open_store
from tests.corpora import fabricate as fab
from tests.extract.helpers import FakeEncoder

CONFIG = ProbeConfig(n_boot=200, ws_steps=20, device="cpu")


def test_one_fold_is_the_plain_utterance_bootstrap() -> None:
    rng = np.random.default_rng(3)
    values = (rng.random((40, 3)) < 0.6).astype(float)
    groups = np.arange(40)
    lo, hi = bootstrap_fold_mean_ci([values], [groups], n_boot=300, seed=5)
    lo1, hi1 = bootstrap_mean_ci(values, groups, n_boot=300, seed=5)
    np.testing.assert_allclose(lo, lo1)
    np.testing.assert_allclose(hi, hi1)


def test_fold_bootstrap_against_a_plain_loop() -> None:
    """Replicates by hand (index draws per fold, mean of fold means) give the same interval
    within Monte-Carlo error; constant folds give a point."""
    rng = np.random.default_rng(0)
    folds = [(rng.random(n) < p).astype(float) for n, p in ((30, 0.3), (50, 0.7), (20, 0.5))]
    groups = [np.arange(len(f)) for f in folds]
    lo, hi = bootstrap_fold_mean_ci(folds, groups, n_boot=4000, seed=1)
    draw = np.random.default_rng(2)
    reps = [np.mean([f[draw.integers(0, len(f), len(f))].mean() for f in folds]) for _ in range(4000)]
    assert abs(lo[0] - np.quantile(reps, 0.025)) < 0.02 and abs(hi[0] - np.quantile(reps, 0.975)) < 0.02
    assert lo[0] < np.mean([f.mean() for f in folds]) < hi[0]
    flat = [np.ones(5), np.zeros(7)]
    lo, hi = bootstrap_fold_mean_ci(flat, [np.arange(5), np.arange(7)], n_boot=50)
    assert lo[0] == hi[0] == 0.5


@pytest.fixture(scope="module")
def iemocap_stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = fab.make_iemocap(tmp_path_factory.mktemp("iemo"), turns_per_speaker=4).root
    out = tmp_path_factory.mktemp("stores")
    cfg = ExtractConfig(frames="none", dtype="float32", batch_seconds=8.0)
    stores = {}
    for spec in ["iemocap", *(f"iemocap-fold{k}" for k in range(1, 6))]:
        path = out / f"{spec}.zarr"
        extract_features(FakeEncoder(num_layers=2, dim=8), resolve_corpus(f"{spec}:{root}"), path, cfg,
                         jobs=0, workers=0, progress=False)
        stores[spec] = path
    return stores


def test_er_on_a_store_with_folds_is_the_mean_of_the_single_fold_probes(iemocap_stores: dict[str, Path]) -> None:
    whole = open_store(iemocap_stores["iemocap"])
    data = TASKS.get("er").prepare(whole)
    assert isinstance(data, FoldedData) and len(data.folds) == 5
    # each fold's test set is one session, and together they test every utterance once
    sessions = np.array([s[:5] for s in whole["speaker"].values])
    tested = np.concatenate([f.test.groups for f in data.folds])
    assert sorted(tested) == list(range(whole.sizes["utt"]))
    assert [set(sessions[f.test.groups]) for f in data.folds] == [{f"Ses0{k}"} for k in range(1, 6)]
    single = open_store(iemocap_stores["iemocap-fold2"])
    assert isinstance(TASKS.get("er").prepare(single), TaskData)  # no folds: one fold, as before

    folded = probe_stores([iemocap_stores["iemocap"]], ["er"], CONFIG).sel(task="er").isel(model=0)
    per_fold = [probe_stores([iemocap_stores[f"iemocap-fold{k}"]], ["er"], CONFIG).sel(task="er").isel(model=0)
                for k in range(1, 6)]
    scores = np.stack([r["score"].values for r in per_fold])
    assert int(folded["n_folds"]) == 5
    np.testing.assert_allclose(folded["score"].values, scores.mean(axis=0), atol=1e-12)
    np.testing.assert_allclose(folded["fold_sd"].values, scores.std(axis=0, ddof=1), atol=1e-12)
    np.testing.assert_allclose(float(folded["ws_score"]), np.mean([float(r["ws_score"]) for r in per_fold]),
                               atol=1e-12)
    assert int(folded["n_test"][0]) == sum(int(r["n_test"][0]) for r in per_fold) == whole.sizes["utt"]
    assert np.all(folded["ci_low"].values <= folded["score"].values + 1e-12)
    assert np.all(folded["score"].values <= folded["ci_high"].values + 1e-12)
    assert np.isnan(folded["penalty"].values).all()
    assert all(int(r["n_folds"]) == 0 and np.isnan(r["fold_sd"].values).all() for r in per_fold)


def test_probe_cli_prints_the_fold_mean(iemocap_stores: dict[str, Path], tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["probe", "--task", "er", "--store", str(iemocap_stores["iemocap"]),
                                      "--boot", "20", "--device", "cpu", "--out", str(tmp_path / "res")])
    assert result.exit_code == 0, result.output
    assert "er (accuracy, utterance; mean of 5 folds" in result.output and "fold_sd" in result.output
    csv = (tmp_path / "res" / "probe.csv").read_text()
    assert "fold_sd" in csv.splitlines()[0] and "n_folds" in csv.splitlines()[0]


def test_unequal_fold_counts_are_one_line(iemocap_stores: dict[str, Path]) -> None:
    ds = open_store(iemocap_stores["iemocap"])
    folds = ds["folds"].values.copy()
    folds[0] = "train,test"
    from deepwide.errors import TaskError

    with pytest.raises(TaskError, match=r"its 'folds' list 2 or 5 folds per utterance; re-extract it"):
        TASKS.get("er").prepare(ds.assign_coords(folds=("utt", folds)))
