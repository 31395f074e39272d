"""End-to-end probing on fake stores: planted structure, nulls and the results schema."""

from __future__ import annotations

import json
from pathlib import Path

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


# ---------------------------------------------------------------- issue 18
def test_probe_without_dev_says_which_penalty_it_used(caplog) -> None:
    from tests.fakes import fake_feature_dataset

    ds = fake_feature_dataset(n_speakers=6, utts_per_speaker=2, num_layers=2, dim=8, frames_per_utt=10)
    sid = ds["sid_split"].values.copy()
    sid[sid == "dev"] = "train"  # one training utterance per speaker: no dev can be carved
    ds = ds.assign_coords(sid_split=("utt", sid))
    res = probe_stores([ds], ["sid"], ProbeConfig(n_boot=20, weighted_sum=False, penalties=(1.0, 0.01)))
    used = np.unique(res["penalty"].sel(task="sid").values)
    lines = [r.getMessage() for r in caplog.records if "no penalty was chosen" in r.getMessage()]
    assert len(lines) == 1 and f"fitted with penalty {used[0]:g} of the grid" in lines[0] and used.size == 1


def test_asv_cosine_backend_is_recorded_and_matches_sklearn(fake_ds) -> None:
    from sklearn.metrics import roc_curve
    from sklearn.metrics.pairwise import cosine_similarity
    from sklearn.preprocessing import StandardScaler

    from deepwide.probing.tasks import TASKS

    spk = fake_ds["speaker"].values.copy()
    trials = TASKS.get("asv").prepare(fake_ds)
    spk[~np.isin(spk, list(set(spk[trials.utt_a]) | set(spk[trials.utt_b])))] = "other"
    ds = fake_ds.assign_coords(speaker=("utt", spk))
    res = probe_stores([ds, fake_ds.assign_attrs(model_id="with-lda")], ["asv"], ProbeConfig(n_boot=50))
    assert res["backend"].dims == ("model", "task")
    assert list(res["backend"].sel(task="asv").values) == ["cosine", "lda"]
    r = res.sel(model="fake-model", task="asv")
    np.testing.assert_allclose(r["score"].values, r["eer_cosine"].values)
    other = np.flatnonzero(spk == "other")
    target = trials.target
    for layer in range(5):
        x = ds["pooled"].values[layer].astype(np.float64)
        z = StandardScaler().fit(x[other]).transform(x)
        cos = cosine_similarity(z[trials.utt_a], z[trials.utt_b]).diagonal()
        fpr, tpr, _ = roc_curve(target, cos)
        fnr = 1 - tpr
        i = int(np.flatnonzero(fnr <= fpr)[0])  # first threshold where the curves have crossed
        eer = np.interp(0, [fnr[i - 1] - fpr[i - 1], fnr[i] - fpr[i]][::-1], [fpr[i], fpr[i - 1]])
        tol = 1.0 / min(target.sum(), (~target).sum())
        assert abs(float(r["score"][layer]) - eer) <= tol, layer
    assert np.isfinite(r["ci_low"].values).all() and int(r["n_train"][0]) == 0


def test_null_from_another_corpus_or_other_utterances_is_refused(fake_ds, null_ds) -> None:
    from deepwide.errors import StoreError

    cfg = ProbeConfig(n_boot=20, weighted_sum=False)
    other = null_ds.assign_attrs(corpus_id="librispeech", manifest_hash="abc")
    with pytest.raises(StoreError, match="different corpora") as exc:
        probe_stores([fake_ds], ["sid"], cfg, nulls=[other])
    assert "\n" not in str(exc.value)
    fewer = null_ds.isel(utt=slice(0, 90))  # same corpus, 6 utterances fewer
    with pytest.raises(StoreError, match=r"hold different utterances \(6 only in the first, 0 only in the second\)"):
        probe_stores([fake_ds], ["sid"], cfg, nulls=[fewer])
    renamed = null_ds.assign_attrs(model_id="random:else")  # a null of a model not probed: no twin to check
    assert probe_stores([fake_ds], ["sid"], cfg, nulls=[renamed]).sizes["model"] == 2


def test_result_pair_is_one_result(results: xr.Dataset, tmp_path, monkeypatch) -> None:
    import os

    import deepwide.config
    from deepwide.probing.run import check_results_pair

    out = tmp_path / "pair"
    write_results(results.sel(task=["phone"]), out)
    assert check_results_pair(out) is None
    old_nc = (out / "probe.nc").read_bytes()
    calls = []
    real_replace = os.replace

    def killed_between_renames(src, dst):  # the CSV is renamed, then the run dies
        calls.append(dst)
        if str(dst).endswith(".nc"):
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(deepwide.config.os, "replace", killed_between_renames)
    with pytest.raises(KeyboardInterrupt):
        write_results(results, out)
    monkeypatch.undo()
    assert [Path(c).suffix for c in calls] == [".csv", ".nc"]  # the .nc, which readers use, goes last
    assert (out / "probe.nc").read_bytes() == old_nc  # readers still see the whole earlier result
    problem = check_results_pair(out)
    assert problem is not None and "is not the CSV of probe.nc" in problem and "\n" not in problem
    assert not list(out.glob(".*tmp"))
    write_results(results, out)
    assert check_results_pair(out) is None


def test_merge_replaces_same_tasks_and_keeps_others(results: xr.Dataset, tmp_path) -> None:
    from deepwide.probing.run import merge_results, save_results

    out = tmp_path / "merge"
    first = save_results(results.sel(task=["phone", "sid"]), out)
    assert first.kept == first.replaced == ()
    again = results.sel(task=["sid", "asv"]).copy(deep=True)
    again["score"].loc[{"task": "sid"}] = 0.5
    saved = save_results(again, out)
    assert saved.kept == ("phone",) and saved.replaced == ("sid",)
    assert "kept earlier task(s) phone; replaced task(s) sid" in saved.describe()
    back = xr.load_dataset(out / "probe.nc")
    assert list(back["task"].values) == ["phone", "sid", "asv"]
    assert (back["score"].sel(task="sid").values == 0.5).all()
    xr.testing.assert_allclose(back["score"].sel(task="phone"), results["score"].sel(task="phone"))
    assert str(back["backend"].sel(model="fake-model", task="asv").item()) == "lda"
    assert set(json.loads(back.attrs["tasks_created"])) == {"phone", "sid", "asv"}
    # an older probe.nc without `backend` merges too
    old = results.sel(task=["phone"]).drop_vars("backend")
    merged, _, kept = merge_results(old, results.sel(task=["asv"]))
    assert kept == ["phone"] and str(merged["backend"].sel(model="fake-model", task="phone").item()) == ""
    with pytest.raises(ConfigError, match="seed"):
        merge_results(old.assign_attrs(seed=9), results.sel(task=["asv"]))
    cfg = json.loads(old.attrs["config"])
    on_gpu = old.assign_attrs(config=json.dumps(dict(cfg, device="cuda", max_batch_bytes=1)))
    assert merge_results(on_gpu, results.sel(task=["asv"]))[2] == ["phone"]  # how it ran is no conflict
    with pytest.raises(ConfigError, match="it was probed with tol=0.5"):
        merge_results(old.assign_attrs(config=json.dumps(dict(cfg, tol=0.5))), results.sel(task=["asv"]))


def test_pr_finds_phones_where_they_are_planted_and_refuses_sampled_stores(tmp_path) -> None:
    from deepwide.errors import TaskError
    from deepwide.probing.run import ProbeConfig, probe_stores
    from tests.fakes import fake_feature_dataset

    ds = fake_feature_dataset(n_speakers=10, utts_per_speaker=6, num_layers=3, dim=12, frames_per_utt=30,
                              speaker_strength=0.5, phone_strength=3.0, phone_sequences=True)
    cfg = ProbeConfig(n_boot=100, ctc_steps=150, ctc_lr=3e-2, ctc_eval_every=50)
    res = probe_stores([ds], ["pr"], cfg, seed=0).sel(model="fake-model", task="pr")
    per = res["score"].values
    assert str(res["metric"].item()) == "per" and not bool(res["higher_is_better"])
    assert per[3] < 0.35 < 0.8 < per[0]  # phone signal grows with depth; layer 0 has none
    assert (res["ci_low"].values <= per).all() and (per <= res["ci_high"].values).all()
    assert float(res["ws_score"]) < 0.5 and abs(float(res["ws_weight"].sum()) - 1) < 1e-6
    assert int(res["n_test"][0]) == 12  # utterances of the 2 test speakers
    sampled = ds.assign_attrs(frames_mode="sample:4")
    with pytest.raises(TaskError, match=r"extracted with --frames sample:4; re-extract it with `deepwide extract --frames all`"):
        probe_stores([sampled], ["pr"], cfg)
    with pytest.raises(TaskError, match="phone sequences"):
        probe_stores([ds.drop_vars("phones")], ["pr"], cfg)


def test_asr_scores_words_and_characters_with_either_head() -> None:
    from deepwide.probing.run import ProbeConfig, probe_stores
    from tests.fakes import fake_feature_dataset

    ds = fake_feature_dataset(n_speakers=10, utts_per_speaker=6, num_layers=3, dim=12, frames_per_utt=30,
                              speaker_strength=0.5, phone_strength=3.0, transcripts=True)
    cfg = ProbeConfig(n_boot=100, ctc_steps=150, ctc_lr=3e-2, ctc_eval_every=50, weighted_sum=False)
    res = probe_stores([ds], ["asr"], cfg, seed=0).sel(model="fake-model", task="asr")
    assert str(res["metric"].item()) == "wer" and not bool(res["higher_is_better"])
    cer, wer = res["cer"].values, res["score"].values
    assert cer[3] < 0.35 < 0.8 < cer[0] and wer[3] <= 1.0  # one word per utterance: WER is 0 or 1 each
    assert np.isnan(res["ws_score"])
    blstm = ProbeConfig(n_boot=100, ctc_steps=20, ctc_eval_every=10, asr_head="blstm", blstm_hidden=16)
    res = probe_stores([ds], ["asr"], blstm, seed=0).sel(model="fake-model", task="asr")
    assert np.isnan(res["score"].values).all() and 0 <= float(res["ws_score"]) <= 2
    assert abs(float(res["ws_weight"].sum()) - 1) < 1e-6


def test_frame_and_utterance_tasks_are_certified_to_their_own_gap(fake_ds, monkeypatch) -> None:
    """Frame-level fits are certified to ``frame_gap_tol``, utterance-level ones to ``gap_tol``
    (the sweep to ten times each), and the config rejects a gap outside (0, 1)."""
    import deepwide.probing.run as run

    seen: dict[int, tuple[float, float]] = {}
    real = run.fit_softmax_path

    def spy(x, y, k, penalties, **kw):
        seen[int(x.shape[1])] = (kw["gap_tol"], kw["path_gap_tol"])
        return real(x, y, k, penalties, **kw)

    monkeypatch.setattr(run, "fit_softmax_path", spy)
    cfg = ProbeConfig(n_boot=20, weighted_sum=False, gap_tol=2e-3, frame_gap_tol=3e-2)
    res = probe_stores([fake_ds], ["sid", "phone"], cfg)
    n_utt = int(res["n_train"].sel(model="fake-model", task="sid").values[0])
    n_frames = int(res["n_train"].sel(model="fake-model", task="phone").values[0])
    assert seen[n_utt] == pytest.approx((2e-3, 2e-2)) and seen[n_frames] == pytest.approx((3e-2, 3e-1))
    assert json.loads(res.attrs["config"])["frame_gap_tol"] == 3e-2
    with pytest.raises(ValueError, match="gap_tol and frame_gap_tol"):
        ProbeConfig(frame_gap_tol=1.0)
