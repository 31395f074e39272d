"""Task registry and split policies on fake stores."""

from __future__ import annotations

import json

import numpy as np
import pytest

from deepwide.errors import StoreError, TaskError, UnknownNameError
from deepwide.probing.tasks import TASKS, PrepareOptions, TaskData, TrialData, store_labels
from tests.fakes import fake_feature_dataset


def _speakers(ds, data: TaskData, split: str) -> set[str]:
    spk = ds["speaker"].values
    return set(spk[getattr(data, split).groups])


def test_registry_lists_all_tasks() -> None:
    assert TASKS.names() == sorted(["phone", "pr", "asr", "ks", "ic", "sid", "sid-frame", "asv", "er"])
    with pytest.raises(UnknownNameError, match="valid tasks: asr, asv, er"):
        TASKS.get("nope")
    for name in TASKS.names():
        t = TASKS.get(name)
        assert t.level in ("frame", "utterance", "sequence") and t.kind in ("content", "speaker")
        assert t.metric in ("accuracy", "eer", "per", "wer")
    assert not TASKS.get("asv").higher_is_better and TASKS.get("sid").higher_is_better
    assert not TASKS.get("pr").higher_is_better and TASKS.get("pr").level == "sequence"


@pytest.mark.parametrize("name", ["phone", "ks", "ic"])
def test_content_tasks_are_speaker_disjoint(fake_ds, name: str) -> None:
    data = TASKS.get(name).prepare(fake_ds)
    tr, dv, te = (_speakers(fake_ds, data, s) for s in ("train", "dev", "test"))
    assert tr and te
    assert not tr & te and not tr & dv


def test_content_guard_drops_overlapping_speakers() -> None:
    ds = fake_feature_dataset(seed=0)
    split = ds["split"].values.copy()
    spk = ds["speaker"].values
    # put one utterance of a training speaker into test: the policy must drop it
    leak = np.flatnonzero((split == "train") & (ds["kind"].values == "keyword"))[0]
    split[leak] = "test"
    ds = ds.assign_coords(split=("utt", split))
    data = TASKS.get("ks").prepare(ds)
    assert leak not in data.test.groups
    assert not _speakers(ds, data, "train") & set(spk[data.test.groups])


def test_ks_and_ic_filter_by_kind(fake_ds) -> None:
    kind = fake_ds["kind"].values
    ks, ic = TASKS.get("ks").prepare(fake_ds), TASKS.get("ic").prepare(fake_ds)
    for split in ("train", "dev", "test"):
        assert set(kind[getattr(ks, split).groups]) == {"keyword"}
        assert set(kind[getattr(ic, split).groups]) == {"command"}
    assert set(ks.classes) <= {"yes", "no", "up", "down"}


def test_sid_same_speakers_disjoint_utterances(fake_ds) -> None:
    data = TASKS.get("sid").prepare(fake_ds)
    tr, te = _speakers(fake_ds, data, "train"), _speakers(fake_ds, data, "test")
    assert te and te <= tr
    assert len(tr) == 12
    assert not set(data.train.groups) & set(data.test.groups)
    assert not set(data.train.groups) & set(data.dev.groups)
    assert set(fake_ds["sid_split"].values[data.test.groups]) == {"test"}


def test_sid_frame_uses_sid_utterances(fake_ds) -> None:
    sid = TASKS.get("sid").prepare(fake_ds)
    frames = TASKS.get("sid-frame").prepare(fake_ds)
    for split in ("train", "dev", "test"):
        assert set(getattr(frames, split).groups) <= set(getattr(sid, split).groups)
    assert frames.classes == sid.classes
    seg = TASKS.get("sid-frame").prepare(fake_ds, PrepareOptions(segment_frames=5))
    assert seg.train.rows.shape[1] == 5
    utt = fake_ds["utt_index"].values
    assert np.all(utt[seg.train.rows] == utt[seg.train.rows[:, :1]])  # a segment stays in one utterance


def test_asv_lda_speakers_are_held_out(fake_ds) -> None:
    data = TASKS.get("asv").prepare(fake_ds)
    assert isinstance(data, TrialData)
    spk = fake_ds["speaker"].values
    trial_spk = set(spk[data.utt_a]) | set(spk[data.utt_b])
    assert trial_spk and not trial_spk & set(spk[data.lda_utts])
    assert data.target.any() and not data.target.all()


def test_phone_silence_excluded_unless_asked(fake_ds) -> None:
    phone_set = json.loads(fake_ds.attrs["phone_set"])
    default = TASKS.get("phone").prepare(fake_ds)
    assert "sil" not in default.classes and len(default.classes) == len(phone_set) - 1
    with_sil = TASKS.get("phone").prepare(fake_ds, PrepareOptions(include_silence=True))
    assert "sil" in with_sil.classes
    assert len(with_sil.train) > len(default.train)


def test_frame_caps(fake_ds) -> None:
    opts = PrepareOptions(max_train_frames=300, max_eval_frames=100, seed=3)
    data = TASKS.get("phone").prepare(fake_ds, opts)
    assert len(data.train) == 300
    n_frames = int(fake_ds["n_frames"].values[0])
    # dev/test keep whole utterances (≤ cap of frames once silence is removed)
    for split in (data.dev, data.test):
        assert 0 < len(split) <= 100
        utts, counts = np.unique(split.groups, return_counts=True)
        full = TASKS.get("phone").prepare(fake_ds)
        full_counts = dict(zip(*np.unique(full.test.groups.tolist() + full.dev.groups.tolist(), return_counts=True), strict=True))
        assert all(full_counts[u] == c for u, c in zip(utts, counts, strict=True))
        assert counts.max() <= n_frames
    again = TASKS.get("phone").prepare(fake_ds, opts)
    assert np.array_equal(again.train.rows, data.train.rows)  # seeded


def test_missing_label_is_one_line_task_error(fake_ds) -> None:
    with pytest.raises(TaskError) as exc:
        TASKS.get("er").prepare(fake_ds)
    msg = str(exc.value)
    assert "\n" not in msg and "emotion" in msg
    assert "phone, speaker, keyword, intent" in msg
    assert store_labels(fake_ds) == ["phone", "speaker", "keyword", "intent", "trials"]


def test_frames_none_store_refuses_phone(fake_ds) -> None:
    ds = fake_ds.isel(frame=slice(0, 0)).assign_attrs(frames_mode="none")
    with pytest.raises(TaskError, match="frames_mode='none'"):
        TASKS.get("phone").prepare(ds)
    # utterance tasks still work on a pooled-only store
    assert len(TASKS.get("sid").prepare(ds).test) > 0


def test_er_with_emotion_labels(fake_ds) -> None:
    emo = np.array(["happy", "sad"] * (fake_ds.sizes["utt"] // 2), dtype=object)
    ds = fake_ds.assign_coords(emotion=("utt", emo))
    data = TASKS.get("er").prepare(ds)
    assert data.classes == ["happy", "sad"] and len(data.test) > 0


def test_load_layer_shapes(fake_ds) -> None:
    data = TASKS.get("phone").prepare(fake_ds)
    block = data.load_layer(fake_ds, 2)
    assert block["train"].shape == (len(data.train), fake_ds.sizes["feat"])
    i = 5
    np.testing.assert_array_equal(block["train"][i], fake_ds["hidden"].values[2, data.train.rows[i, 0]])


def test_missing_dev_is_carved_from_train(fake_ds, caplog) -> None:
    split = fake_ds["split"].values.copy()
    split[split == "dev"] = "train"
    ds = fake_ds.assign_coords(split=("utt", split))
    data = TASKS.get("ks").prepare(ds)
    assert len(data.dev) > 0 and "no dev utterances" in caplog.text
    spk = ds["speaker"].values
    assert not set(spk[data.dev.groups]) & set(spk[data.train.groups])  # carved by speaker
    sid_split = fake_ds["sid_split"].values.copy()
    sid_split[sid_split == "dev"] = "train"
    sid = TASKS.get("sid").prepare(fake_ds.assign_coords(sid_split=("utt", sid_split)))
    assert len(sid.dev) > 0 and set(spk[sid.dev.groups]) <= set(spk[sid.train.groups])


# ---------------------------------------------------------------- issue 18: small corpora, damaged stores
def _no_sid_dev(utts_per_speaker: int):
    """A store whose speakers have ``utts_per_speaker - 1`` sid training utterances and no sid dev."""
    ds = fake_feature_dataset(n_speakers=6, utts_per_speaker=utts_per_speaker, num_layers=2, dim=8, frames_per_utt=10)
    sid = ds["sid_split"].values.copy()
    sid[sid == "dev"] = "train"
    return ds.assign_coords(sid_split=("utt", sid))


@pytest.mark.parametrize("per_speaker", [4, 5])  # 3 or 4 sid training utterances: 20 % of them is 0
def test_sid_dev_carves_one_utterance_per_speaker_of_a_small_corpus(per_speaker: int, caplog) -> None:
    ds = _no_sid_dev(per_speaker)
    n_train = per_speaker - 1  # every utterance but the test one
    data = TASKS.get("sid").prepare(ds)
    spk = ds["speaker"].values
    dev_spk, dev_n = np.unique(spk[data.dev.groups], return_counts=True)
    assert len(dev_spk) == 6 and (dev_n == 1).all()  # one dev utterance of every speaker
    assert (np.unique(spk[data.train.groups], return_counts=True)[1] == n_train - 1).all()
    assert not set(data.dev.groups) & set(data.train.groups)
    assert "using 6 training utterances (6 of 6 speakers: at least one each) as dev" in caplog.text
    frames = TASKS.get("sid-frame").prepare(ds)
    assert set(frames.dev.groups) == set(data.dev.groups)  # the same carve for the frame task


def test_no_dev_to_carve_says_so(caplog) -> None:
    ds = _no_sid_dev(2)  # one sid training utterance per speaker: nothing to spare
    data = TASKS.get("sid").prepare(ds)
    assert len(data.dev) == 0 and "training without dev" in caplog.text


def test_asv_without_lda_speakers_falls_back_to_cosine(fake_ds, caplog) -> None:
    spk = fake_ds["speaker"].values.copy()
    trials = TASKS.get("asv").prepare(fake_ds)
    trial_spk = set(spk[trials.utt_a]) | set(spk[trials.utt_b])
    spk[~np.isin(spk, list(trial_spk))] = "the-only-other"  # 1 training speaker outside the trials
    ds = fake_ds.assign_coords(speaker=("utt", spk))
    data = TASKS.get("asv").prepare(ds)
    assert data.backend == "cosine" and data.lda_utts.size == 0
    assert set(spk[data.centre_utts]) == {"the-only-other"}
    warning = [r.getMessage() for r in caplog.records if "asv" in r.getMessage()]
    assert len(warning) == 1 and "fewer than the 2 an LDA needs; scoring with plain cosine" in warning[0]
    assert trials.backend == "lda"


def test_phone_labels_outside_the_phone_set_are_refused(fake_ds) -> None:
    short = fake_ds.assign_attrs(phone_set=json.dumps(["p0"]))
    with pytest.raises(StoreError) as exc:
        TASKS.get("phone").prepare(short)
    msg = str(exc.value)
    assert "\n" not in msg and "phone labels run 0..8 but phone_set has 1 phone(s)" in msg
    assert "deepwide store validate --data" in msg
    dup = fake_ds.assign_attrs(phone_set=json.dumps(["p0"] * 9))
    with pytest.raises(StoreError, match="more than once"):
        TASKS.get("phone").prepare(dup)


@pytest.mark.parametrize(("task", "array"), [("sid", "pooled"), ("phone", "hidden"), ("asv", "pooled")])
def test_load_layer_refuses_non_finite_features(fake_ds, task: str, array: str) -> None:
    values = fake_ds[array].values.copy()
    values[2] = np.nan  # layer 2 as a deleted chunk reads
    ds = fake_ds.assign({array: (fake_ds[array].dims, values)})
    data = TASKS.get(task).prepare(ds)
    data.load_layer(ds, 1)
    with pytest.raises(StoreError) as exc:
        data.load_layer(ds, 2)
    msg = str(exc.value)
    assert "\n" not in msg and f"`{array}` layer 2 holds" in msg and "non-finite" in msg


def test_asv_with_one_utterance_per_lda_speaker_falls_back_to_cosine(fake_ds, caplog) -> None:
    trials = TASKS.get("asv").prepare(fake_ds)
    keep = np.zeros(fake_ds.sizes["utt"], bool)
    for s in np.unique(fake_ds["speaker"].values[trials.lda_utts]):  # one training utterance per speaker
        keep[trials.lda_utts[fake_ds["speaker"].values[trials.lda_utts] == s][0]] = True
    sid = np.where(np.isin(np.arange(keep.size), trials.lda_utts) & ~keep, "test", fake_ds["sid_split"].values)
    split = np.where(np.isin(np.arange(keep.size), trials.lda_utts) & ~keep, "test", fake_ds["split"].values)
    ds = fake_ds.assign_coords(sid_split=("utt", sid.astype(object)), split=("utt", split.astype(object)))
    data = TASKS.get("asv").prepare(ds)  # sklearn's LDA would raise: samples must outnumber classes
    assert data.backend == "cosine" and "too few for an LDA" in caplog.text


def test_asv_with_two_utterances_per_lda_speaker_falls_back_to_cosine(fake_ds, caplog) -> None:
    """sklearn's shrinkage LDA cannot be fitted when no speaker has 3 utterances (VoxCeleb1
    layouts with 4 utterances per speaker, 2 of them in sid train): plain cosine, not a crash."""
    from deepwide.probing.run import ProbeConfig, probe_asv

    trials = TASKS.get("asv").prepare(fake_ds)
    spk = fake_ds["speaker"].values
    keep = np.zeros(fake_ds.sizes["utt"], bool)
    for s in np.unique(spk[trials.lda_utts]):  # two training utterances per speaker
        keep[trials.lda_utts[spk[trials.lda_utts] == s][:2]] = True
    assert np.unique(spk[trials.lda_utts], return_counts=True)[1].max() >= 3  # the fake store had more
    drop = np.isin(np.arange(keep.size), trials.lda_utts) & ~keep
    sid = np.where(drop, "test", fake_ds["sid_split"].values)
    split = np.where(drop, "test", fake_ds["split"].values)
    ds = fake_ds.assign_coords(sid_split=("utt", sid.astype(object)), split=("utt", split.astype(object)))
    data = TASKS.get("asv").prepare(ds)
    assert data.backend == "cosine" and "at most 2 per speaker, too few for an LDA" in caplog.text
    res = probe_asv(data, ds, ProbeConfig(n_boot=10))
    assert np.isfinite(res.score).all() and res.backend == "cosine"
