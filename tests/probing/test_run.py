"""End-to-end probing on fake stores: planted structure, nulls and the results schema."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from scipy.stats import spearmanr

from deepwide.errors import ConfigError, TaskError
from deepwide.probing.run import ProbeConfig, format_table, probe_stores, write_results

FAST = ProbeConfig(n_boot=200, ws_steps=200)


@pytest.fixture(scope="module")
def results(fake_ds, null_ds) -> xr.Dataset:
    return probe_stores([fake_ds], ["phone", "sid", "sid-frame", "asv"], FAST, nulls=[null_ds], seed=0)


def test_schema(results: xr.Dataset) -> None:
    assert dict(results.sizes) == {"model": 2, "task": 4, "layer": 5}
    for name in ("score", "ci_low", "ci_high", "f1", "penalty", "n_train", "n_test", "ws_weight", "layer_norm"):
        assert results[name].dims == ("model", "task", "layer"), name
    for name in ("majority", "ws_score", "ws_ci_low", "ws_ci_high"):
        assert results[name].dims == ("model", "task"), name
    for name in ("num_layers", "dim", "params", "is_null", "null_of"):
        assert results[name].dims == ("model",), name
    for name in ("metric", "higher_is_better", "level", "kind"):
        assert results[name].dims == ("task",), name
    assert results["n_train"].dtype.kind == "i"
    assert list(results["metric"].values) == ["accuracy", "accuracy", "accuracy", "eer"]
    assert list(results["is_null"].values) == [False, True]
    assert list(results["null_of"].values) == ["", "fake-model"]
    assert {"seed", "deepwide_version", "created"} <= set(results.attrs)
    s, lo, hi = (results[v] for v in ("score", "ci_low", "ci_high"))
    assert bool(((lo <= s + 1e-12) & (s <= hi + 1e-12)).all())
    ws = results["ws_weight"].sel(task="phone")
    np.testing.assert_allclose(ws.sum("layer").values, 1.0, atol=1e-6)


def test_planted_structure(results: xr.Dataset) -> None:
    model = results.sel(model="fake-model")
    phone = model["score"].sel(task="phone").values
    sid_frame = model["score"].sel(task="sid-frame").values
    eer = model["score"].sel(task="asv").values
    assert phone[-1] > phone[0] + 0.5 and spearmanr(np.arange(5), phone).statistic > 0.8
    assert sid_frame[0] > sid_frame[-1] + 0.5 and spearmanr(np.arange(5), sid_frame).statistic < -0.8
    assert eer[0] < 0.1 and eer[-1] > eer[0]
    assert int(np.argmax(model["ws_weight"].sel(task="phone").values)) >= 3  # weight where phones are


def test_null_near_chance_and_teacher_beats_it(results: xr.Dataset) -> None:
    null = results.sel(model="random:fake-model")
    model = results.sel(model="fake-model")
    for task, chance in (("phone", 1 / 8), ("sid-frame", 1 / 12)):
        assert np.all(null["score"].sel(task=task).values < chance + 0.1), task
        # best model layer beats best null layer with non-overlapping intervals
        best = int(np.argmax(model["score"].sel(task=task).values))
        nbest = int(np.argmax(null["score"].sel(task=task).values))
        assert float(model["ci_low"].sel(task=task)[best]) > float(null["ci_high"].sel(task=task)[nbest])


def test_write_and_read_back(results: xr.Dataset, tmp_path) -> None:
    nc, csv = write_results(results, tmp_path / "out")
    back = xr.open_dataset(nc)
    xr.testing.assert_allclose(back["score"], results["score"])
    assert back["is_null"].dtype == bool and list(back["task"].values) == list(results["task"].values)
    import pandas as pd

    df = pd.read_csv(csv)
    assert {"model", "task", "layer", "score", "ci_low", "ci_high", "majority"} <= set(df.columns)
    assert len(df) == 2 * 4 * 5
    assert not list((tmp_path / "out").glob(".*tmp"))


def test_table_marks_best_layer(results: xr.Dataset) -> None:
    text = format_table(results)
    block = text.split("fake-model · phone")[1].split("\n\n")[0]
    starred = [line for line in block.splitlines() if line.endswith("*")]
    assert len(starred) == 1 and starred[0].split()[0] == str(int(np.argmax(results["score"].sel(model="fake-model", task="phone").values)))


def test_models_with_different_depths_pad_with_nan() -> None:
    from tests.fakes import fake_feature_dataset

    a = fake_feature_dataset(num_layers=2, model_id="shallow")
    b = fake_feature_dataset(num_layers=4, model_id="deep", seed=2)
    res = probe_stores([a, b], ["sid"], ProbeConfig(n_boot=50, weighted_sum=False))
    assert res.sizes["layer"] == 5
    assert np.isnan(res["score"].sel(model="shallow", layer=4)) and int(res["n_train"].sel(model="shallow", task="sid", layer=4)) == 0
    assert list(res["num_layers"].values) == [2, 4]


def test_errors(fake_ds) -> None:
    with pytest.raises(TaskError, match="emotion"):
        probe_stores([fake_ds], ["er"], FAST)
    with pytest.raises(ConfigError, match="both hold model"):
        probe_stores([fake_ds, fake_ds], ["sid"], FAST)
    res = probe_stores([fake_ds], ["er", "ks"], ProbeConfig(n_boot=50, weighted_sum=False), skip_unservable=True)
    assert list(res["task"].values) == ["ks"]


def test_store_with_a_subset_of_layers(fake_ds) -> None:
    sub = fake_ds.isel(layer=[0, 2, 4])
    res = probe_stores([sub], ["sid"], ProbeConfig(n_boot=50, weighted_sum=False))
    score = res["score"].sel(model="fake-model", task="sid").values
    assert res.sizes["layer"] == 5 and int(res["num_layers"][0]) == 4
    assert np.isfinite(score[[0, 2, 4]]).all() and np.isnan(score[[1, 3]]).all()
    full = probe_stores([fake_ds], ["sid"], ProbeConfig(n_boot=50, weighted_sum=False))
    np.testing.assert_allclose(score[[0, 2, 4]], full["score"].sel(model="fake-model", task="sid").values[[0, 2, 4]])
    assert "\n      1 " not in format_table(res)


def test_er_runs_when_the_store_has_emotions(fake_ds) -> None:
    utt_j = np.arange(fake_ds.sizes["utt"]) % 8
    emo = np.where(utt_j % 2 == 0, "happy", "sad").astype(object)
    ds = fake_ds.assign_coords(emotion=("utt", emo))
    res = probe_stores([ds], ["er"], ProbeConfig(n_boot=50, weighted_sum=False))
    assert str(res["kind"].sel(task="er").item()) == "speaker"
    score = res["score"].sel(model="fake-model", task="er").values
    assert np.isfinite(score).all()
    assert (res["n_test"].sel(model="fake-model", task="er").values > 0).all()
